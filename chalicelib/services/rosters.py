"""Online rosters of large conversations: who is online in a channel, without reading its members.

A conversation with more than ``delivery_large_members`` members gets a
roster: one ``OnlineEntry`` per live connection of each member, written at
$connect for every conversation named in the user's ``Presence.rooms`` and
deleted at $disconnect (``services/connections.py``).  Delivery then reads
the roster (1 Query per ~9,000 online connections) instead of every
membership plus every member's presence; a roster longer than one page is
cut into ranges of slots that several workers read at once (``plan``).

Switching a conversation over happens once, on the delivery workers:
``roster`` goes ``building`` (events still resolve through the member list),
``build_step`` pages through the members adding the conversation to each
one's ``rooms`` and writing entries for their live connections, then
``roster`` goes ``ready``.  No event is lost at the switch: until ``ready``
the member path is used, and after it every online member has entries
(a connect during the build sees ``rooms`` already set, or is seen by the
build's read of the live set, whichever comes second).

The one invariant that matters for confidentiality: a user who is not a
member never keeps the conversation in ``rooms``.  Membership changes made
during the build are applied to rooms by the change itself (it re-reads
``roster`` after its own write), and the build re-checks each page's
memberships after writing rooms and undoes those that left meanwhile.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Iterator

from ..models import Conversation, Member, OnlineEntry, Presence, condition_failed

log = logging.getLogger("chat.rosters")

BUILD_PAGE = 100  # members per build step (1 Query + 1 UpdateItem each + BatchWrites)


def _leave(conversation_id: str, keys: Iterable[str]) -> None:
    for key in keys:
        OnlineEntry.remove({conversation_id}, Presence.leave_room(key, conversation_id))


def members_changed(out: Any, conv: Conversation, added: list[str], removed: list[str], *,
                    now_s: int, ttl_seconds: int) -> None:
    """After a membership change committed: keep the roster current, or start building one.

    Reads ``roster`` again (consistent GetItem) because a build may have begun
    after the caller read the conversation.
    """
    fresh = Conversation.find(conv.conversation_id, consistent=True)
    if fresh is None:
        return
    if fresh.roster:
        joined = {key: Presence.join_room(key, conv.conversation_id) for key in added}
        OnlineEntry.add_members(conv.conversation_id, joined, now_s + ttl_seconds)
        _leave(conv.conversation_id, removed)
    elif int(fresh.member_count or 0) > out.limits.large_members:
        start(out, fresh, ttl_seconds)


def start(out: Any, conv: Conversation, ttl_seconds: int) -> bool:
    """Mark the roster ``building`` (once: a conditional UpdateItem) and queue the first build step."""
    try:
        conv.update(actions=[Conversation.roster.set("building")], condition=Conversation.roster.does_not_exist())
    except Exception as exc:  # noqa: BLE001 - only a failed condition is expected
        if condition_failed(exc):
            return False
        raise
    out.queue([{"v": 1, "kind": "roster.build", "conversationId": conv.conversation_id, "ttl": ttl_seconds}])
    log.info("roster build started", extra={"conversationId": conv.conversation_id,
                                            "members": int(conv.member_count or 0)})
    return True


def build_step(out: Any, job: dict[str, Any], now_s: int) -> None:
    """One page of the build (a delivery-queue job); queues the next page or marks ``ready``."""
    conv_id = job["conversationId"]
    query = Member.query(conv_id, limit=BUILD_PAGE, last_evaluated_key=job.get("cursor"),
                         attributes_to_get=["conversation_id", "user_key"])
    keys = [m.user_key for m in query]
    live = {key: Presence.join_room(key, conv_id) for key in keys}
    OnlineEntry.add_members(conv_id, live, now_s + int(job.get("ttl") or 0))
    if keys:  # undo rooms for members who left while this page was written (see the module)
        still = {m.user_key for m in Member.batch_get([(conv_id, k) for k in keys],
                                                      attributes_to_get=["conversation_id", "user_key"])}
        _leave(conv_id, [k for k in keys if k not in still])
    cursor = query.last_evaluated_key
    if cursor:
        out.queue([{**job, "cursor": cursor}])
        return
    try:
        Conversation(conversation_id=conv_id).update(actions=[Conversation.roster.set("ready")],
                                                     condition=Conversation.roster == "building")
    except Exception as exc:  # noqa: BLE001
        if not condition_failed(exc):
            raise
    log.info("roster ready", extra={"conversationId": conv_id})


MAX_RANGES = 256  # ranges one planner may queue for the rest of a roster


def by_user(entries: Iterable[OnlineEntry]) -> dict[str, set[str]]:
    """Roster entries as user key -> live connection ids."""
    out: dict[str, set[str]] = {}
    for entry in entries:
        out.setdefault(entry.user_key, set()).add(entry.connection)
    return out


def plan(conversation_id: str, page: int, per_range: int) -> tuple[list[OnlineEntry], list[tuple[str, str]]]:
    """The start of a roster (1 Query of up to ``page`` entries) and, when there is more,
    the rest of it cut into ranges of about ``per_range`` entries, each for its own worker.

    Entries are spread evenly over the slots (``OnlineEntry.slot_of``), so the
    share of slots the first page covered estimates the size of the rest.
    A roster that fits in one page (nearly all) costs exactly one Query.
    """
    entries, last = OnlineEntry.first_page(conversation_id, page)
    if last is None:
        return entries, []
    covered = OnlineEntry.slot_position(last) + 1
    rest = len(entries) * (OnlineEntry.SLOTS - covered) / covered
    count = max(1, min(MAX_RANGES, math.ceil(rest / max(1, per_range))))
    cuts = [covered + (OnlineEntry.SLOTS - covered) * i // count for i in range(count + 1)]
    ranges = [(last if i == 0 else OnlineEntry.slot_bound(cuts[i]), OnlineEntry.slot_bound(cuts[i + 1]))
              for i in range(count)]
    return entries, ranges


def in_range(conversation_id: str, after: str, below: str, page: int) -> Iterator[list[OnlineEntry]]:
    """A range of the roster (``plan``), ``page`` entries at a time (1 Query per 1 MB read)."""
    chunk: list[OnlineEntry] = []
    for entry in OnlineEntry.in_range(conversation_id, after, below):
        chunk.append(entry)
        if len(chunk) >= page:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
