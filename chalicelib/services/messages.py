"""Messages: ordered, gap-free, idempotent sends; edits, tombstones, reactions, threads,
mentions, history, sync, read markers and typing.

Send = 1 BatchGetItem (membership, conversation, retention rules)
+ 1 TransactWriteItems (``timeline.append``: seq advance + message + idempotency key + sender's
read marker + the user's and the tenant shard's rate windows [+ thread root])
+ fan-out (see ``events``); the tenant's limits are cached (chalicelib/limits.py).  The seq is advanced
under a condition on its previous value inside the same transaction as the
message, so concurrent sends retry instead of colliding and no seq is ever
skipped or half-written.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from pynamodb.exceptions import TransactWriteError, UpdateError

from .. import limits, metrics, policy, push_jobs, retention
from ..models import (batch_get_across, condition_failed, Conversation, HeldOriginal, Idempotency, Member, Message,
                      RetentionRule, tenant_of, transaction, user_ref)
from ..protocol.errors import ChatError, Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from . import events, holds, screening, timeline
from .context import Call
from .timeline import message_view

REDELIVER_WINDOW_MS = 120_000  # a retried send re-announces its original for this long (see _redeliver)
MAX_REVISIONS = 20
MAX_EMOJI_PER_MESSAGE = 50
MENTION = re.compile(r"<@([A-Za-z0-9._:-]{1,128})>")
MENTION_ALL = "<!channel>"




def _check_body(call: Call, body: str) -> str:
    size = len(body.encode("utf-8", "surrogatepass"))
    if not body.strip():
        raise ValidationFailed("body must not be empty.")
    if size > call.settings.max_body_bytes:
        raise PayloadTooLarge(f"body is {size} bytes; the limit is {call.settings.max_body_bytes}.",
                              limit=call.settings.max_body_bytes)
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed("body is not valid UTF-8 text.") from None
    return body


def _mentions(conv: Conversation, body: str) -> tuple[list[str], bool]:
    """Resolve ``<@userId>`` tokens to members (a member's user id, or ``tenant:user``).

    Reads only the mentioned memberships (BatchGetItem: a plain user id is looked
    up in each company of the conversation), never the whole member list.
    """
    ids = list(dict.fromkeys(MENTION.findall(body)))[:50]
    if not ids:
        return [], MENTION_ALL in body
    tenants = sorted({conv.tenant_id, *(conv.tenants or ())})
    candidates = {uid: [uid.replace(":", "#", 1)] if ":" in uid else [f"{t}#{uid}" for t in tenants] for uid in ids}
    wanted = list(dict.fromkeys((conv.conversation_id, k) for keys in candidates.values() for k in keys))
    found = {m.user_key: m for m in Member.batch_get(wanted)}
    resolved = []
    for uid in ids:
        target = next((found[k] for k in candidates[uid] if k in found), None)
        if target is None:
            raise ValidationFailed(f"Mentioned user {uid[:64]} is not a member of this conversation.")
        resolved.append(target.user_id)
    return resolved, MENTION_ALL in body


def _read_for_send(conversation_id: str, me: str) -> tuple[Conversation, Member, dict[str, Any]]:
    """The conversation (strongly consistent: its seq counter), the caller's membership and the
    retention rules of this sender here, in one BatchGetItem; ``not_found`` unless a member."""
    subjects = retention.subjects_for(me, conversation_id)
    conv, member, *rules = batch_get_across(
        [(Conversation, (conversation_id,), True), (Member, (conversation_id, me), True)]
        + [(RetentionRule, (subject,), False) for subject in subjects])
    if conv is None or member is None:
        raise NotFound("No such conversation.")
    return conv, member, {r.subject: r for r in rules if r is not None}


def send(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """1 BatchGetItem + 1 TransactWriteItems (rate limit and idempotency inside it) + the events."""
    p = call.principal
    conv_id = body["conversationId"]
    text = _check_body(call, body["body"])
    me = policy.key_of(p)
    rates = timeline.rate_windows(call)
    limits.refuse_if_known(rates)  # a flood past its limit: refused before any request (chalicelib/limits.py)
    conv, member, rules = _read_for_send(conv_id, me)
    idem_key = Idempotency.key_for(conv_id, me, body["clientMessageId"])
    try:
        if conv.archived:
            raise Conflict("The conversation is archived.")
        policy.write_access(p, conv, call.now_ms())
        verdict = screening.screen(call, conv, text)  # DLP: raises message_blocked; may redact
        root_seq = body.get("threadRootSeq")
        if root_seq is not None:
            root = Message.find(conv_id, root_seq)
            if root is None or root.thread_root_seq is not None or root.deleted:
                raise ValidationFailed("threadRootSeq must be an existing, undeleted top-level message.")
        mentions, mention_all = _mentions(conv, verdict.text)
        if mention_all and conv.kind == "channel" and member.role not in policy.MANAGER_ROLES \
                and (conv.member_count or 0) > 50:
            raise Forbidden("Only owners and admins may notify a channel of more than 50 members.")
    except ChatError:
        # A retry of a send that was stored before (the conversation was archived, a policy or a
        # rule changed since): the original's ack, as always for a duplicate.  Read only on refusals.
        original = timeline.original_of(idem_key, conv_id)
        if original is None:
            raise
        return {"message": _redeliver(call, conv, message_view(original)), "duplicate": True}
    text = verdict.text
    now = call.now_ms()

    def build(seq: int) -> Message:
        return Message(
            conversation_id=conv_id, seq=seq, message_id=str(uuid.uuid4()),
            client_message_id=body["clientMessageId"], sender_key=me, kind="text", body=text,
            created_at=now, thread_root_seq=root_seq,
            thread_key=f"{conv_id}#{root_seq}" if root_seq is not None else None,
            mentions=mentions, mention_all=mention_all, reactions={},
        )

    kept = timeline.retention_attributes(call, me, conv_id, now, rules)
    msg, duplicate = timeline.append(conv, member, idem_key, now, build, text, root_seq, kept=kept,
                             rates=rates)
    view = message_view(msg)
    if duplicate:
        return {"message": _redeliver(call, conv, view), "duplicate": True}
    screening.record_flags(call, verdict, conv_id, "message", seq=int(msg.seq), message_id=msg.message_id)
    _announce(call, conv, view)
    metrics.count("MessagesSent")
    # The company's usage of the day (chalicelib/usage.py): written with the posts of this invocation.
    tally = getattr(call.delivery, "tally", None)
    if tally is not None:
        tally.charge(call.principal.tenant_id, messages=1)
    return {"message": view, "duplicate": False}


def _redeliver(call: Call, conv: Conversation, view: dict[str, Any]) -> dict[str, Any]:
    """Fan a retried send's original out again if it is recent: the attempt that stored it may
    have died between its commit and its fan-out (then nobody got it live).  Events are at least
    once; clients drop a seq they already have.  Returns ``view``."""
    if call.now_ms() - int(view["createdAt"]) <= REDELIVER_WINDOW_MS and not view["deleted"]:
        _announce(call, conv, view)
    return view


def _announce(call: Call, conv: Conversation, view: dict[str, Any]) -> None:
    """``message.created`` to every member's devices but the sending one, ``mention`` set per recipient."""
    events.to_conversation(call.delivery, conv, {"type": "message.created", "message": view},
                           mention={"all": bool(view["mentionAll"]), "users": list(view["mentions"])},
                           exclude_connection=call.connection_id, origin=policy.key_of(call.principal),
                           now_ms=call.now_ms())
    # Mobile push of a DM or a mention to recipients with no active device: a job for a delivery
    # worker, so the ack never waits for SNS (docs/push.md).
    job = push_jobs.job_for(conv, view, policy.key_of(call.principal), call.now_ms(), call.settings)
    if job is not None:
        call.delivery.add(job, on_worker=True)


def _own_message(call: Call, body: dict[str, Any], write: bool = True) -> tuple[Conversation, Member, Message]:
    conv, member = policy.access(call.principal, body["conversationId"])
    if write:
        policy.write_access(call.principal, conv, call.now_ms())
    msg = Message.find(conv.conversation_id, body["seq"])
    # a write that passed write_access may read everything (the connection is active, policies allow)
    cutoff = None if write else policy.read_cutoff(call.principal, conv, call.now_ms())
    if msg is None or (cutoff is not None and msg.created_at > cutoff):
        raise NotFound("No such message.")
    return conv, member, msg


def edit(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member, msg = _own_message(call, body)
    if msg.sender_key != member.user_key:
        raise Forbidden("Only the author may edit a message.")
    if msg.deleted:
        raise Conflict("The message was deleted.")
    if msg.kind == "file":
        raise ValidationFailed("A file message cannot be edited; delete it and upload again.")
    text = _check_body(call, body["body"])
    # DLP: raises message_blocked (the attempt is recorded with this seq); may redact
    verdict = screening.screen(call, conv, text, "edit", seq=int(msg.seq), message_id=msg.message_id)
    text = verdict.text
    now = call.now_ms()
    revision = {"body": msg.body, "at": int(msg.edited_at or msg.created_at)}
    revisions = (list(msg.revisions or []) + [revision])[-MAX_REVISIONS:]
    _replace(msg, [Message.body.set(text), Message.edited_at.set(now), Message.revisions.set(revisions)],
             "edited", now)
    msg.body, msg.edited_at, msg.revisions = text, now, revisions
    screening.record_flags(call, verdict, conv.conversation_id, "edit", seq=int(msg.seq), message_id=msg.message_id)
    view = message_view(msg)
    events.to_conversation(call.delivery, conv, {"type": "message.edited", "message": view},
                           exclude_connection=call.connection_id, origin=policy.key_of(call.principal),
                           now_ms=call.now_ms())
    return {"message": view}


def _replace(msg: Message, actions: list[Any], kind: str, now: int) -> bool:
    """Apply an edit or delete to ``msg`` (under ``deleted = false``); True if a legal hold kept the original.

    Not held (no active hold of the sender's company on the sender or on this
    conversation): 1 consistent BatchGetItem of the 2 hold markers + the
    UpdateItem as before.  Held: 1 TransactWriteItems instead of the UpdateItem:
    the update (+ ``held_versions`` ADD 1) and a HeldOriginal item with the
    replaced version (docs/compliance.md "What a hold keeps").  ``conflict``
    if the message was deleted meanwhile.
    """
    not_deleted = Message.deleted == False  # noqa: E712
    if not holds.held_now(msg.sender_key, msg.conversation_id):
        try:
            msg.update(actions=actions, condition=not_deleted)
        except UpdateError as exc:
            if condition_failed(exc):
                raise Conflict("The message was deleted.") from None
            raise
        return False
    file_id = msg.file.as_dict().get("fileId") if kind == "deleted" and msg.kind == "file" and msg.file else None
    original = HeldOriginal(
        conversation_id=msg.conversation_id, version=HeldOriginal.version_of(msg.seq, now, uuid.uuid4().hex[:6]),
        seq=int(msg.seq), message_id=msg.message_id, sender_key=msg.sender_key,
        tenant_id=tenant_of(msg.sender_key), kind=kind, body=msg.body,
        at=int(msg.edited_at or msg.created_at), replaced_at=now,
        revisions=list(msg.revisions or []) if kind == "deleted" and msg.revisions else None,
        file_id=file_id, created_at=int(msg.created_at),
        retain_s=int(msg.retain_s) if msg.retain_s is not None else None)
    try:
        with transaction() as tx:
            tx.update(msg, actions=actions + [Message.held_versions.add(1)], condition=not_deleted)
            tx.save(original, condition=HeldOriginal.version.does_not_exist())
    except TransactWriteError as exc:
        reasons = [r.code if r else None for r in (exc.cancellation_reasons or [])]
        if "ConditionalCheckFailed" in reasons:  # the original's key is new: it was the message's condition
            raise Conflict("The message was deleted.") from None
        raise
    msg.held_versions = int(msg.held_versions or 0) + 1
    return True


def revisions(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    _, _, msg = _own_message(call, body, write=False)
    revs = [{"body": r["body"] if not msg.deleted else None, "at": int(r["at"])}
            for r in (x.as_dict() if hasattr(x, "as_dict") else x for x in (msg.revisions or []))]
    return {"seq": int(msg.seq), "revisions": revs, "current": message_view(msg)}


def delete(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member, msg = _own_message(call, body)
    if msg.sender_key != member.user_key and member.role not in policy.MANAGER_ROLES:
        raise Forbidden("Only the author or a conversation admin may delete a message.")
    held = False
    if not msg.deleted:
        now = call.now_ms()
        try:
            held = _replace(msg, [Message.deleted.set(True), Message.body.remove(), Message.revisions.set([]),
                                  Message.edited_at.set(now)], "deleted", now)
        except Conflict:  # a concurrent delete won: the same outcome
            msg = Message.get(msg.conversation_id, msg.seq, consistent_read=True)
        else:
            msg.deleted, msg.body, msg.revisions, msg.edited_at = True, None, [], now
    if msg.kind == "file" and msg.file:
        holds.file_message_deleted(call, msg.file.as_dict()["fileId"], call.now_ms(), held=held)
    event = {"type": "message.deleted", "conversationId": conv.conversation_id, "seq": int(msg.seq)}
    events.to_conversation(call.delivery, conv, event, exclude_connection=call.connection_id,
                           origin=policy.key_of(call.principal), now_ms=call.now_ms())
    return {"message": message_view(msg)}


def react(call: Call, body: dict[str, Any], add: bool) -> dict[str, Any]:
    conv, member, msg = _own_message(call, body)
    if msg.deleted:
        raise Conflict("The message was deleted.")
    emoji = body["emoji"]
    verdict = None
    if add:  # DLP on the emoji key: a block refuses it; a redact does not apply to a key (stored as typed)
        verdict = screening.screen(call, conv, emoji, "reaction", seq=int(msg.seq), message_id=msg.message_id)
    current = msg.reaction_sets()
    if add and emoji not in current and len(current) >= MAX_EMOJI_PER_MESSAGE:
        raise ValidationFailed(f"At most {MAX_EMOJI_PER_MESSAGE} different reactions per message.")
    path = Message.reaction_path(emoji)
    action = path.add({member.user_key}) if add else path.delete({member.user_key})
    try:
        msg.update(actions=[action])
    except UpdateError as exc:
        # Removing a reaction nobody made (no such emoji set yet) is a no-op.
        if add or not condition_failed(exc) and "document path" not in str(exc):
            raise
    if verdict is not None:  # the key was stored as typed: its review entries say "flag", even under a redact
        screening.record_flags(call, verdict._replace(action="flag") if verdict.action else verdict,
                               conv.conversation_id, "reaction", seq=int(msg.seq), message_id=msg.message_id)
    counts = timeline.reaction_counts(msg)
    event = {"type": "reaction.changed", "conversationId": conv.conversation_id, "seq": int(msg.seq),
             "emoji": emoji, "user": user_ref(member.user_key), "added": add, "count": counts.get(emoji, 0),
             "reactions": counts}
    events.to_conversation(call.delivery, conv, event, exclude_connection=call.connection_id,
                           origin=policy.key_of(call.principal), now_ms=call.now_ms())
    return {"seq": int(msg.seq), "reactions": counts}


def history(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Newest first, from the newest or before ``beforeSeq``; 1 Query."""
    conv, _ = policy.access(call.principal, body["conversationId"])
    limit = int(body.get("limit") or call.settings.page_size)
    # The window is a seq range, not "the next `limit` items": seqs removed by retention inside it
    # come back as tombstones without reading anything more (docs/compliance.md).
    top = min(int(body.get("beforeSeq") or 2 ** 53), int(conv.last_seq or 0) + 1)
    low = max(1, top - limit)
    page = Message.page(conv.conversation_id, before=top, after=low - 1, limit=limit,
                        consistent=_recent(call, conv)) if top > 1 else []
    cutoff = policy.read_cutoff(call.principal, conv, call.now_ms())
    if cutoff is not None:  # the other side's copy ends where access was revoked
        page = [m for m in page if m.created_at <= cutoff]
    views = _with_tombstones(conv.conversation_id, page, low, top - 1, cutoff is not None) if top > 1 else []
    views.sort(key=lambda v: -v["seq"])
    return {"messages": views, "nextBeforeSeq": low if low > 1 and top > 1 else None}


def thread(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, _ = policy.access(call.principal, body["conversationId"])
    limit = int(body.get("limit") or call.settings.page_size)
    root = Message.find(conv.conversation_id, body["rootSeq"])
    cutoff = policy.read_cutoff(call.principal, conv, call.now_ms())  # the guest side's copy ends at a revocation
    if root is None or (cutoff is not None and root.created_at > cutoff):
        raise NotFound("No such message.")
    replies = Message.thread(conv.conversation_id, body["rootSeq"], after=int(body.get("afterSeq") or 0),
                             limit=limit)
    if cutoff is not None:
        replies = [m for m in replies if m.created_at <= cutoff]
    return {"root": message_view(root), "replies": [message_view(m) for m in replies],
            "hasMore": len(replies) == limit}


def sync(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Everything after seq N per conversation, one page each; ``hasMore`` means: fetch history."""
    limit = call.settings.page_size
    out = []
    for item in body["conversations"]:
        try:
            conv, member = policy.access(call.principal, item["conversationId"])
        except NotFound:
            out.append({"conversationId": item["conversationId"], "error": {"code": "not_found",
                                                                          "message": "No such conversation."}})
            continue
        after = int(item["afterSeq"])
        try:
            cutoff = policy.read_cutoff(call.principal, conv, call.now_ms())
        except policy.ExternalAccessDenied as err:
            out.append({"conversationId": conv.conversation_id, "error": err.to_body()})
            continue
        high = min(int(conv.last_seq or 0), after + limit)  # a seq window: gaps are retention tombstones
        msgs = Message.page(conv.conversation_id, after=after, before=high + 1, limit=limit, newest_first=False,
                            consistent=_recent(call, conv)) if high > after else []
        if cutoff is not None:
            msgs = [m for m in msgs if m.created_at <= cutoff]
        views = _with_tombstones(conv.conversation_id, msgs, after + 1, high, cutoff is not None) \
            if high > after else []
        views.sort(key=lambda v: v["seq"])
        out.append({"conversationId": conv.conversation_id, "messages": views,
                    "lastSeq": int(conv.last_seq or 0), "hasMore": int(conv.last_seq or 0) > high,
                    "lastReadSeq": int(member.last_read_seq or 0)})
    return {"conversations": out}


def read(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Move my read marker forward (never back): one conditional UpdateItem."""
    conv, member = policy.access(call.principal, body["conversationId"])
    policy.write_access(call.principal, conv, call.now_ms())
    seq = int(body["seq"])
    if seq > int(conv.last_seq or 0):
        raise ValidationFailed(f"seq {seq} is beyond the last message ({int(conv.last_seq or 0)}).")
    moved = False
    try:
        member.update(actions=[Member.last_read_seq.set(seq)], condition=Member.last_read_seq < seq)
        moved = True
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        member.refresh(consistent_read=True)
    last_read = int(member.last_read_seq or 0)
    if moved and conv.receipts:
        event = {"type": "receipt", "conversationId": conv.conversation_id, "user": user_ref(member.user_key),
                 "seq": last_read}
        events.to_conversation(call.delivery, conv, event, exclude_connection=call.connection_id,
                               origin=policy.key_of(call.principal), now_ms=call.now_ms())
    if moved and call.settings.push_enabled:
        # Read elsewhere clears: the user's phones drop this conversation's notifications and set the
        # badge; a delivery worker's job, so the reply never waits for SNS (docs/push.md).
        call.delivery.add(push_jobs.clear_job(member.user_key, conv.conversation_id, last_read, call.connection_id),
                          on_worker=True)
    return {"conversationId": conv.conversation_id, "lastReadSeq": last_read,
            "unread": max(0, int(conv.last_seq or 0) - last_read)}


def typing(call: Call, body: dict[str, Any], started: bool) -> dict[str, Any]:
    """Relayed, never stored; a start expires by itself after ``typing_ttl_seconds``."""
    conv, member = policy.access(call.principal, body["conversationId"])
    now = call.now_ms()
    policy.write_access(call.principal, conv, now)
    event = {"type": "typing", "conversationId": conv.conversation_id, "user": user_ref(member.user_key),
             "typing": started, "expiresAt": now + call.settings.typing_ttl_seconds * 1000 if started else now}
    events.to_conversation(call.delivery, conv, event, skip_keys=[member.user_key], origin=member.user_key,
                           now_ms=now)
    return {"conversationId": conv.conversation_id, "typing": started}


# --- retention (docs/compliance.md) -------------------------------------------------------

RECENT_WRITE_MS = 5000  # a conversation written this recently is read strongly consistent (see _recent)


def _recent(call: Call, conv: Conversation) -> bool:
    """Read a seq window strongly consistent when the conversation was just written to.

    A gap in the window is shown as removed by retention, so the Query must
    not miss a message that an eventually consistent read has not seen yet.
    """
    return call.now_ms() - int(conv.last_activity_at or 0) < RECENT_WRITE_MS


def tombstone_view(conversation_id: str, seq: int) -> dict[str, Any]:
    """A seq whose message retention removed: the seq stays, nothing else is known."""
    return {"conversationId": conversation_id, "seq": int(seq), "deleted": True, "reason": "retention"}


def _with_tombstones(conversation_id: str, page: list[Message], low: int, high: int,
                     cut: bool) -> list[dict[str, Any]]:
    """Views of ``page`` plus a tombstone for each seq in [low, high] without an item.

    With a read cutoff (the guest side after a revocation) no tombstone is
    shown above the newest visible message: those seqs may be hidden, not gone.
    """
    from ..retention import missing_seqs

    views = [message_view(m) for m in page]
    if cut:
        high = min(high, max((int(m.seq) for m in page), default=low - 1))
    views += [tombstone_view(conversation_id, s) for s in missing_seqs((m.seq for m in page), low, high)]
    return views
