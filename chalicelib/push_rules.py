"""Whether one recipient's phones get a push of one message, and what it may show (docs/push.md).

Pure: no I/O, no clock, no settings.  ``chalicelib/push.py`` reads the facts
(presence, the member item, the user's preferences, the companies' preview
policies) and asks here; ``tests/unit/test_push_rules.py`` walks the decision
table.  The order of the checks is the table's order: the first that says no
names the reason.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import NamedTuple

LEVELS = ("all", "mentions", "nothing")
DEFAULT_LEVEL = "mentions"  # DMs, mentions and keywords
NOTIFY_ANYWAY = ("none", "mentions", "mentions_and_direct")
HOLDING_STATUSES = ("do_not_disturb", "in_meeting")
# Tenant preview policy, from the most to the least shown.
PREVIEWS = ("full", "sender", "none")

PUSH = "push"
# Why not (also the ``PushesHeld`` metric's reason).
ACTIVE, MUTED, LEVEL, QUIET, STATUS = "active", "muted", "level", "quiet_hours", "status"


class Event(NamedTuple):
    """What the message is to this recipient."""

    direct: bool = False     # a DM (the recipient is the other side)
    mentioned: bool = False  # an explicit <@user> mention of the recipient
    keyword: bool = False    # the text holds one of the recipient's keywords


class Prefs(NamedTuple):
    """A user's own preferences (``push.preferences.set``); the defaults are a user who set nothing."""

    level: str = DEFAULT_LEVEL
    keywords: tuple[str, ...] = ()
    timezone: str = "UTC"
    quiet_start: str | None = None  # "HH:MM" local; start > end spans midnight
    quiet_end: str | None = None
    quiet_days: tuple[int, ...] = ()  # 0 = Monday, of the day the window starts; empty = every day
    notify_anyway: str = "none"     # what still pushes in quiet hours / do-not-disturb
    status_holds: bool = True       # do_not_disturb / in_meeting hold pushes like quiet hours


class Recipient(NamedTuple):
    """The facts about one recipient at the time of the message."""

    prefs: Prefs = Prefs()
    active: bool = False               # a device active within PUSH_ACTIVE_SECONDS
    conversation_level: str | None = None  # the member's own level here; None follows prefs.level
    muted_until: int | None = None     # ms; the conversation is muted until then
    status: str | None = None          # the manual presence status, if still in force


def _minutes(hhmm: str) -> int:
    h, _, m = hhmm.partition(":")
    return int(h) * 60 + int(m)


def in_quiet_hours(prefs: Prefs, now_ms: int) -> bool:
    """Whether ``now`` falls in the user's quiet window, in the user's own time zone."""
    if not prefs.quiet_start or not prefs.quiet_end:
        return False
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only quiet hours need one (zoneinfo loads sysconfig)

    try:
        zone = ZoneInfo(prefs.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(now_ms / 1000, timezone.utc).astimezone(zone)
    now, start, end = local.hour * 60 + local.minute, _minutes(prefs.quiet_start), _minutes(prefs.quiet_end)
    if start == end:
        return False
    days = set(prefs.quiet_days or ())
    if start < end:
        return start <= now < end and (not days or local.weekday() in days)
    # Spans midnight: the early part belongs to the window that started the day before.
    if now >= start:
        return not days or local.weekday() in days
    if now < end:
        return not days or (local.weekday() - 1) % 7 in days
    return False


def breaks_through(event: Event, notify_anyway: str) -> bool:
    """What still pushes while quiet hours or a status hold pushes."""
    if notify_anyway == "mentions":
        return event.mentioned
    if notify_anyway == "mentions_and_direct":
        return event.mentioned or event.direct
    return False


def decide(event: Event, who: Recipient, now_ms: int) -> str:
    """``PUSH`` or the reason it is not pushed (the decision table, docs/push.md)."""
    if who.active:
        return ACTIVE
    if who.conversation_level == "nothing" or (who.muted_until is not None and who.muted_until > now_ms):
        return MUTED
    level = who.conversation_level or who.prefs.level or DEFAULT_LEVEL
    if level == "nothing":
        return LEVEL
    if level == "mentions" and not (event.direct or event.mentioned or event.keyword):
        return LEVEL
    held_by = QUIET if in_quiet_hours(who.prefs, now_ms) else None
    if held_by is None and who.prefs.status_holds and who.status in HOLDING_STATUSES:
        held_by = STATUS
    if held_by is not None and not breaks_through(event, who.prefs.notify_anyway):
        return held_by
    return PUSH


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def keyword_hit(keywords: tuple[str, ...] | list[str], text: str) -> bool:
    """A keyword matches a whole word or phrase of the text, case and accents ignored."""
    if not keywords or not text:
        return False
    folded = " ".join(_fold(text).split())
    return any(re.search(rf"(?<!\w){re.escape(' '.join(_fold(k).split()))}(?!\w)", folded)
               for k in keywords if k.strip())


def stricter(*previews: str | None) -> str:
    """The strictest of the companies' preview policies (an unset policy is ``full``)."""
    return max((p if p in PREVIEWS else "full" for p in previews), key=PREVIEWS.index, default="full")


GENERIC_TITLE = "New message"


def content(preview_policy: str, sender_name: str, text_preview: str) -> tuple[str, str]:
    """(title, body) a notification may show under the policy: the text is already DLP-redacted."""
    if preview_policy == "none":
        return GENERIC_TITLE, ""
    if preview_policy == "sender":
        return sender_name, GENERIC_TITLE
    return sender_name, text_preview
