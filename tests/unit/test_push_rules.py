"""The push decision table (chalicelib/push_rules.py, docs/push.md "The decision table")."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from chalicelib.push_rules import (ACTIVE, LEVEL, MUTED, PUSH, QUIET, STATUS, Event, Prefs, Recipient, content,
                                   decide, in_quiet_hours, keyword_hit, stricter)

# Wednesday 2026-12-02 12:00 in Berlin (11:00 UTC)
NOON_BERLIN = int(datetime(2026, 12, 2, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp() * 1000)
QUIET_WINDOW = dict(timezone="Europe/Berlin", quiet_start="11:00", quiet_end="13:00")

DM, MENTION, KEYWORD, PLAIN = Event(direct=True), Event(mentioned=True), Event(keyword=True), Event()

TABLE = [
    # (event, recipient, expected)                                       -- why
    (DM, Recipient(), PUSH),                                             # default level: DMs push
    (MENTION, Recipient(), PUSH),                                        # and mentions
    (KEYWORD, Recipient(), PUSH),                                        # and keywords
    (PLAIN, Recipient(), LEVEL),                                         # an ordinary message does not
    (PLAIN, Recipient(prefs=Prefs(level="all")), PUSH),                  # unless the user's default is all
    (PLAIN, Recipient(conversation_level="all"), PUSH),                  # or the conversation's
    (DM, Recipient(prefs=Prefs(level="nothing")), LEVEL),                # nothing: not even DMs
    (PLAIN, Recipient(prefs=Prefs(level="all"), conversation_level="mentions"), LEVEL),  # conversation wins
    (MENTION, Recipient(prefs=Prefs(level="nothing"), conversation_level="mentions"), PUSH),
    (DM, Recipient(active=True), ACTIVE),                                # a device in use: never
    (MENTION, Recipient(conversation_level="nothing"), MUTED),           # conversation set to nothing
    (MENTION, Recipient(muted_until=NOON_BERLIN + 1), MUTED),            # muted until later
    (MENTION, Recipient(muted_until=NOON_BERLIN - 1), PUSH),             # the mute ran out
    (DM, Recipient(prefs=Prefs(**QUIET_WINDOW)), QUIET),                        # quiet hours hold
    (MENTION, Recipient(prefs=Prefs(**QUIET_WINDOW, notify_anyway="mentions")), PUSH),  # notify anyway: mentions
    (DM, Recipient(prefs=Prefs(**QUIET_WINDOW, notify_anyway="mentions")), QUIET),
    (DM, Recipient(prefs=Prefs(**QUIET_WINDOW, notify_anyway="mentions_and_direct")), PUSH),
    (KEYWORD, Recipient(prefs=Prefs(**QUIET_WINDOW, notify_anyway="mentions_and_direct")), QUIET),
    (MENTION, Recipient(muted_until=NOON_BERLIN + 1, prefs=Prefs(notify_anyway="mentions")), MUTED),  # mute wins
    (DM, Recipient(status="do_not_disturb"), STATUS),                    # do not disturb holds
    (DM, Recipient(status="in_meeting"), STATUS),                        # so does in a meeting
    (DM, Recipient(status="busy"), PUSH),                                # busy does not
    (DM, Recipient(status="in_meeting", prefs=Prefs(status_holds=False)), PUSH),
    (MENTION, Recipient(status="do_not_disturb", prefs=Prefs(notify_anyway="mentions")), PUSH),
]


@pytest.mark.parametrize("event,who,expected", TABLE)
def test_decision_table(event, who, expected):
    assert decide(event, who, NOON_BERLIN) == expected


def test_quiet_hours_are_in_the_users_own_zone_and_may_span_midnight():
    assert in_quiet_hours(Prefs(**QUIET_WINDOW), NOON_BERLIN)
    assert not in_quiet_hours(Prefs(timezone="UTC", quiet_start="11:30", quiet_end="13:00"), NOON_BERLIN)  # 11:00 UTC
    night = Prefs(timezone="Europe/Berlin", quiet_start="22:00", quiet_end="07:00")
    at = lambda h, m=0, d=2: int(datetime(2026, 12, d, h, m, tzinfo=ZoneInfo("Europe/Berlin")).timestamp() * 1000)  # noqa: E731
    assert in_quiet_hours(night, at(23)) and in_quiet_hours(night, at(6, 59)) and not in_quiet_hours(night, at(7))
    assert not in_quiet_hours(night, at(21, 59))
    # days name the day a window starts: Friday night's window runs into Saturday morning
    fri = Prefs(timezone="Europe/Berlin", quiet_start="22:00", quiet_end="07:00", quiet_days=(4,))
    assert in_quiet_hours(fri, at(23, d=4)) and in_quiet_hours(fri, at(6, d=5))
    assert not in_quiet_hours(fri, at(23, d=2)) and not in_quiet_hours(fri, at(6, d=4))
    assert not in_quiet_hours(Prefs(timezone="Europe/Berlin", quiet_start="10:00", quiet_end="10:00"), NOON_BERLIN)
    assert not in_quiet_hours(Prefs(timezone="Not/AZone", quiet_start="10:00", quiet_end="11:00"), NOON_BERLIN)


def test_keywords_match_whole_words_ignoring_case_and_accents():
    assert keyword_hit(["outage"], "Major OUTAGE in eu-west")
    assert not keyword_hit(["outage"], "outages happen")
    assert keyword_hit(["cafe"], "meet at the Café?")
    assert keyword_hit(["release train"], "the Release\n  train leaves")  # phrases: any whitespace between
    assert keyword_hit(["release train"], "the release train leaves")
    assert not keyword_hit([], "anything") and not keyword_hit(["  "], "anything")


def test_the_stricter_preview_policy_wins_and_content_follows_it():
    assert stricter("full", "sender") == "sender" and stricter("none", "full") == "none"
    assert stricter(None, "full") == "full" and stricter("bogus", "sender") == "sender"
    assert content("full", "Alice", "lunch?") == ("Alice", "lunch?")
    assert content("sender", "Alice", "lunch?") == ("Alice", "New message")
    assert content("none", "Alice", "lunch?") == ("New message", "")
