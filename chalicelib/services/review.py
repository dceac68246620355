"""The review queue: a company's reviewers (compliance officers) work its screening entries.

Entries are the ``DlpFlag`` items screening writes (flags, and blocked
attempts with ``action`` ``block``).  Every route requires the ``reviewer``
role in the caller's directory record now (an admin without it is refused:
admins manage the rules, reviewers read what they caught), reads and writes
only the caller's company's partition, and is audited - reads included
(``review.list``, ``review.view``, ``review.case.export``,
``review.cases.export``; ``review.claim``, ``review.release``,
``review.resolve``).

States: ``open`` -> ``claimed`` (one reviewer; a conditional UpdateItem, so
of two concurrent claims exactly one wins) -> ``resolved`` as ``dismissed``,
``confirmed`` or ``escalated`` with a note (only the claimant).  The claimant
may ``release`` (back to ``open``); another reviewer may release a claim
older than ``CLAIM_STALE_MS``.  Every transition appends to the entry's
``history`` in the same write.  See docs/compliance.md "Review queue" and
the access patterns Q1-Q9 in docs/data-model.md.
"""
from __future__ import annotations

import heapq
from typing import Any, Iterable

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from .. import policy
from ..identity import Principal
from ..models import Conversation, DlpFlag, Message, condition_failed, split_user_key
from ..protocol.errors import Conflict, Forbidden, NotFound, ValidationFailed
from .audit import audit, next_cursor, require_reviewer, time_window
from .context import Call
from .screening_admin import flag_view

STATES = ("open", "claimed", "resolved")
KINDS = ("flag", "block")
RESOLUTIONS = ("dismissed", "confirmed", "escalated")
CLAIM_STALE_MS = 24 * 3600 * 1000  # another reviewer may release a claim this old
MAX_HISTORY = 100                   # transitions kept per entry (the item stays far below 400 KB)
DEFAULT_CONTEXT = 5                 # messages either side of the flagged one in a case
CASES_PAGE = 10                     # entries per case-set page by default (max 20)


# --- ids and views -------------------------------------------------------------------

def item_id(flag_id: str) -> str:
    """The entry's id in URLs: the sort key with ``#`` as ``-`` (no escaping in a path)."""
    return flag_id.replace("#", "-", 1)


def _flag_id(value: str) -> str:
    return value.replace("-", "#", 1)


def _view(f: DlpFlag, history: bool = False) -> dict[str, Any]:
    out = {**flag_view(f), "itemId": item_id(f.flag_id), "kind": f.kind, "state": f.review_state,
           "claimedBy": f.claimed_by, "claimedAt": int(f.claimed_at) if f.claimed_at else None,
           "resolution": f.resolution, "note": f.note, "resolvedBy": f.resolved_by,
           "resolvedAt": int(f.resolved_at) if f.resolved_at else None}
    if history:
        out["history"] = [{k: (int(v) if k == "at" else v) for k, v in h.as_dict().items()}
                          if hasattr(h, "as_dict") else dict(h) for h in (f.history or [])]
    return out


def _find(call: Call, value: str) -> DlpFlag:
    """The caller's company's entry (1 GetItem); another company's id is simply not there."""
    item = DlpFlag.find(call.principal.tenant_id, _flag_id(value))
    if item is None:
        raise NotFound("No such review item.")
    return item


# --- listing -----------------------------------------------------------------------------

def _sender(call: Call, body: dict[str, Any]) -> str | None:
    if not body.get("userId"):
        if body.get("userTenantId"):
            raise ValidationFailed("userTenantId needs userId.")
        return None
    return f"{body.get('userTenantId') or call.principal.tenant_id}#{body['userId']}"


def _filter(states: Iterable[str] | None, kind: str | None, sender: str | None) -> Any:
    """A FilterExpression for what a conversation's or a sender's partition does not key on."""
    parts = []
    if states is not None:
        cond = None
        for st in states:
            c = DlpFlag.state == st
            if st == "open":
                c = c | DlpFlag.state.does_not_exist()
            cond = c if cond is None else cond | c
        parts.append(cond)
    if kind == "block":
        parts.append(DlpFlag.action == "block")
    elif kind == "flag":
        parts.append(DlpFlag.action != "block")
    if sender:
        parts.append(DlpFlag.sender_key == sender)
    out = None
    for p in parts:
        out = p if out is None else out & p
    return out


def backfill_queue(tenant_id: str, after: str | None = None, max_items: int = 1000) -> dict[str, Any]:
    """Put a company's entries written before the queue existed into it (ops: ``tenantctl review-backfill``).

    Such an entry has no ``state`` and no index keys, so only the tenant-wide
    listing and a direct GET find it.  One Query over the company's partition
    from ``after`` (a FilterExpression keeps the entries without ``queue_key``;
    the read cost is the partition's pages, an ops action, never a request
    path) and one conditional UpdateItem each: ``state`` open and its index
    keys, only if it still has none (a transition meanwhile did it).
    Idempotent; stops after ``max_items`` entries written and returns
    ``cursor`` (the last ``flag_id`` looked at) to resume from, ``None`` when done.
    """
    cond = DlpFlag.flag_id > after if after else None
    done, cursor = 0, None
    pages = DlpFlag.query(tenant_id, cond, filter_condition=DlpFlag.queue_key.does_not_exist())
    for flag in pages:
        cursor = flag.flag_id
        flag.state = flag.state or "open"
        flag.index_keys()
        try:
            flag.update(actions=[DlpFlag.state.set(flag.state), DlpFlag.queue_key.set(flag.queue_key),
                                 DlpFlag.review_sender.set(flag.review_sender)]
                        + ([DlpFlag.conversation_key.set(flag.conversation_key)] if flag.conversation_key else []),
                        condition=DlpFlag.queue_key.does_not_exist())
            done += 1
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        if done >= max_items:
            return {"written": done, "cursor": cursor}
    return {"written": done, "cursor": None}


def _page(call: Call, body: dict[str, Any], limit: int) -> tuple[list[DlpFlag], bool]:
    """Up to ``limit`` entries newest first, and whether there may be more.

    One Query per source: the tenant's partition (no filter), a ``by_queue``
    partition per (state, kind) asked for (merged by time), or the
    ``by_conversation`` / ``by_sender`` partition with the other filters as a
    FilterExpression (those partitions are one conversation's or one person's).
    """
    tenant = call.principal.tenant_id
    lower, upper = time_window(body)
    cond = DlpFlag.flag_id.between(lower, upper)
    state, kind, sender = body.get("state"), body.get("kind"), _sender(call, body)
    states = [state] if state else None
    sources: list[Iterable[DlpFlag]] = []
    if body.get("conversationId"):
        sources.append(DlpFlag.by_conversation.query(
            f"{tenant}#{body['conversationId']}", cond, filter_condition=_filter(states, kind, sender),
            scan_index_forward=False, limit=limit + 1, page_size=limit + 1))
    elif sender:
        sources.append(DlpFlag.by_sender.query(
            f"{tenant}#{sender}", cond, filter_condition=_filter(states, kind, None),
            scan_index_forward=False, limit=limit + 1, page_size=limit + 1))
    elif state or kind:
        for st in states or STATES:
            for kd in [kind] if kind else KINDS:
                sources.append(DlpFlag.by_queue.query(DlpFlag.queue_of(tenant, st, kd), cond,
                                                      scan_index_forward=False, limit=limit + 1))
    else:
        sources.append(DlpFlag.query(tenant, cond, scan_index_forward=False, limit=limit + 1))
    merged = heapq.merge(*(list(s) for s in sources), key=lambda f: f.flag_id, reverse=True)
    items = [f for _, f in zip(range(limit + 1), merged)]
    return items[:limit], len(items) > limit


def list_items(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/review/items: the queue, newest first, filtered; audited with the ids shown."""
    require_reviewer(call)
    limit = int(body.get("limit") or 50)
    items, more = _page(call, body, limit)
    filters = {k: body.get(k) for k in ("state", "kind", "conversationId", "userId", "userTenantId", "from", "to",
                                         "cursor") if body.get(k) is not None}
    audit(call, "review.list", None, after={"filters": filters, "itemIds": [item_id(f.flag_id) for f in items]})
    return {"items": [_view(f) for f in items],
            "nextCursor": next_cursor(items[-1].flag_id) if more and items else None}


def get_item(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/review/items/{itemId}: one entry with its history; audited."""
    require_reviewer(call)
    item = _find(call, body["itemId"])
    audit(call, "review.view", item_id(item.flag_id))
    return {"item": _view(item, history=True)}


# --- transitions -----------------------------------------------------------------------------

def _transition(call: Call, item: DlpFlag, state: str, event: dict[str, Any], condition: Any,
                extra: list[Any]) -> None:
    """One conditional UpdateItem: the new state, its queue key, the history entry (and the
    index keys of an entry written before the queue)."""
    kind = item.kind
    actions = [DlpFlag.state.set(state), DlpFlag.queue_key.set(DlpFlag.queue_of(item.tenant_id, state, kind)),
               DlpFlag.history.set((DlpFlag.history | []).append([event])), *extra]
    if item.review_sender is None:
        item.index_keys()
        actions.append(DlpFlag.review_sender.set(item.review_sender))
        if item.conversation_key:
            actions.append(DlpFlag.conversation_key.set(item.conversation_key))
    room = DlpFlag.history.does_not_exist() | (size(DlpFlag.history) < MAX_HISTORY)
    item.update(actions=actions, condition=condition & room)


def claim(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """POST .../claim: open -> claimed by the caller; of concurrent claims exactly one wins."""
    me = require_reviewer(call).user_id
    item = _find(call, body["itemId"])
    if item.review_state != "open":
        raise Conflict(f"The item is {item.review_state}" + (f" by {item.claimed_by}." if item.claimed_by else "."),
                       state=item.review_state, claimedBy=item.claimed_by)
    now = call.now_ms()
    try:
        _transition(call, item, "claimed", {"at": now, "by": me, "event": "claim"},
                    (DlpFlag.state == "open") | DlpFlag.state.does_not_exist(),
                    [DlpFlag.claimed_by.set(me), DlpFlag.claimed_at.set(now)])
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("Another reviewer claimed the item first.") from None
        raise
    audit(call, "review.claim", item_id(item.flag_id), before={"state": "open"},
          after={"state": "claimed", "claimedBy": me})
    return {"item": _view(item, history=True)}


def release(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """POST .../release: claimed -> open, by the claimant (or anyone once the claim is stale)."""
    me = require_reviewer(call).user_id
    item = _find(call, body["itemId"])
    if item.review_state != "claimed":
        raise Conflict(f"The item is {item.review_state}, not claimed.", state=item.review_state)
    now = call.now_ms()
    stale_before = now - CLAIM_STALE_MS
    if item.claimed_by != me and int(item.claimed_at or 0) > stale_before:
        raise Forbidden("Only the reviewer who claimed the item may release it (until the claim is a day old).",
                        claimedBy=item.claimed_by)
    mine = (DlpFlag.claimed_by == me) | (DlpFlag.claimed_at <= stale_before)
    try:
        _transition(call, item, "open", {"at": now, "by": me, "event": "release",
                                         "claimedBy": item.claimed_by},
                    (DlpFlag.state == "claimed") & mine, [DlpFlag.claimed_by.remove(), DlpFlag.claimed_at.remove()])
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The item changed meanwhile; reload and retry.") from None
        raise
    audit(call, "review.release", item_id(item.flag_id), before={"state": "claimed", "claimedBy": item.claimed_by},
          after={"state": "open"})
    return {"item": _view(item, history=True)}


def resolve(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """POST .../resolve: claimed by the caller -> resolved (dismissed | confirmed | escalated) with a note."""
    me = require_reviewer(call).user_id
    item = _find(call, body["itemId"])
    state = item.review_state
    if state == "claimed" and item.claimed_by != me:
        raise Forbidden("Only the reviewer who claimed the item may resolve it.", claimedBy=item.claimed_by)
    if state != "claimed":
        raise Conflict("Claim the item before resolving it." if state == "open" else "The item is already resolved.",
                       state=state)
    now = call.now_ms()
    resolution, note = body["resolution"], body["note"]
    try:
        _transition(call, item, "resolved",
                    {"at": now, "by": me, "event": "resolve", "resolution": resolution, "note": note},
                    (DlpFlag.state == "claimed") & (DlpFlag.claimed_by == me),
                    [DlpFlag.resolution.set(resolution), DlpFlag.note.set(note), DlpFlag.resolved_by.set(me),
                     DlpFlag.resolved_at.set(now)])
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The item changed meanwhile; reload and retry.") from None
        raise
    audit(call, "review.resolve", item_id(item.flag_id), before={"state": "claimed"},
          after={"state": "resolved", "resolution": resolution, "note": note})
    return {"item": _view(item, history=True)}


# --- cases: an entry with its context ------------------------------------------------------------

def _message(m: Message, flagged_seq: int | None) -> dict[str, Any]:
    tenant, user = split_user_key(m.sender_key)
    revisions = [{"body": r["body"], "at": int(r["at"])}
                 for r in (x.as_dict() if hasattr(x, "as_dict") else x for x in (m.revisions or []))]
    return {"seq": int(m.seq), "messageId": m.message_id, "sender": {"tenantId": tenant, "userId": user},
            "kind": m.kind, "createdAt": int(m.created_at), "body": None if m.deleted else m.body,
            "editedAt": int(m.edited_at) if m.edited_at and not m.deleted else None, "deleted": bool(m.deleted),
            "revisions": revisions, "threadRootSeq": int(m.thread_root_seq) if m.thread_root_seq else None,
            "file": m.file.as_dict() if m.kind == "file" and m.file else None,
            "flagged": flagged_seq is not None and int(m.seq) == flagged_seq}


def _context(call: Call, item: DlpFlag, n: int, convs: dict[str, Conversation | None]) -> dict[str, Any]:
    """The flagged message and ``n`` messages either side (a blocked attempt: ``n`` before and after
    where it was refused), as far as retention still has them: 1 Query (+ 1 GetItem and, for a shared
    conversation, 1 BatchGetItem per conversation)."""
    cid = item.conversation_id
    out: dict[str, Any] = {"conversationId": cid, "anchorSeq": None, "messages": [], "gone": [], "reason": None}
    if cid is None:
        out["reason"] = "no_conversation"  # a custom status, or a refused conversation.create
        return out
    if cid not in convs:
        convs[cid] = Conversation.find(cid)
    conv = convs[cid]
    tenant = call.principal.tenant_id
    if conv is None or (conv.tenant_id != tenant and tenant not in set(conv.tenants or ())):
        out["reason"] = "conversation_gone"
        return out
    anchor = int(item.seq) if item.seq is not None else int(item.after_seq) if item.after_seq is not None else None
    if anchor is None:
        out["reason"] = "no_anchor"  # a name, topic or file name (no message), or an entry from before anchors
        return out
    out["anchorSeq"] = anchor
    last = int(conv.last_seq or 0)
    if item.seq is not None:
        low, high = max(1, anchor - n), min(last, anchor + n)
    else:  # nothing was stored: n before the attempt and n after it
        low, high = max(1, anchor - n + 1), min(last, anchor + n)
    if high < low:
        return out
    cutoff = policy.history_cutoff(Principal(tenant_id=tenant, user_id="", email=""), conv)
    now_s = call.clock()
    found = Message.page(cid, after=low - 1, before=high + 1, limit=high - low + 1, newest_first=False)
    kept = [m for m in found if not (m.expires_at and int(m.expires_at) <= now_s)
            and (cutoff is None or int(m.created_at) <= cutoff)]
    out["messages"] = [_message(m, int(item.seq) if item.seq is not None else None) for m in kept]
    have = {int(m.seq) for m in kept}
    out["gone"] = [s for s in range(low, high + 1) if s not in have]  # expired (retention) or past a cutoff
    return out


def _case(call: Call, item: DlpFlag, n: int, convs: dict[str, Conversation | None]) -> dict[str, Any]:
    return {"item": _view(item, history=True), "context": _context(call, item, n, convs)}


def export_case(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/review/items/{itemId}/case: the entry and its context as JSON; audited."""
    require_reviewer(call)
    item = _find(call, body["itemId"])
    n = int(body.get("context", DEFAULT_CONTEXT))
    case = _case(call, item, n, {})
    audit(call, "review.case.export", item_id(item.flag_id),
          after={"context": n, "seqs": [m["seq"] for m in case["context"]["messages"]]})
    return {"case": case, "exportedAt": call.now_ms(), "exportedBy": call.principal.user_id}


def export_cases(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/review/cases: the entries about one conversation or one sender, each with its
    context, newest first, paged; audited with every id exported."""
    require_reviewer(call)
    if not body.get("conversationId") and not body.get("userId"):
        raise ValidationFailed("Name a conversationId or a userId.")
    limit = int(body.get("limit") or CASES_PAGE)
    n = int(body.get("context", DEFAULT_CONTEXT))
    items, more = _page(call, body, limit)
    convs: dict[str, Conversation | None] = {}
    cases = [_case(call, f, n, convs) for f in items]
    target = (f"conversation:{body['conversationId']}" if body.get("conversationId")
              else f"user:{_sender(call, body)}")
    audit(call, "review.cases.export", target,
          after={"context": n, "itemIds": [item_id(f.flag_id) for f in items],
                 "filters": {k: body[k] for k in ("state", "kind", "from", "to", "cursor") if body.get(k) is not None}})
    return {"cases": cases, "exportedAt": call.now_ms(), "exportedBy": call.principal.user_id,
            "nextCursor": next_cursor(items[-1].flag_id) if more and items else None}
