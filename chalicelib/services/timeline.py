"""The ordered, gap-free, idempotent append every message kind goes through (text from ``send``,
file notices from the files' event side), and the view of a stored message.

One TransactWriteItems per message advances the conversation's seq under a condition on its
previous value, writes the message and its idempotency key and moves the author's read marker
(docs/data-model.md M2b).  Here so that ``messages`` (the actions) and ``files`` (the notice of a
clean file) share it without importing each other.
"""
from __future__ import annotations

import random
import time
import uuid
from typing import Any, Callable

from pynamodb.exceptions import TransactWriteError

from .. import limits, metrics, policy
from ..models import Conversation, Idempotency, Member, Message, RateCounter, transaction, user_ref
from ..protocol.errors import Conflict, NotFound, RateLimited
from . import events, holds
from .context import Call, Env

IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600
MAX_SEND_ATTEMPTS = 25
BUSY_RETRY_SECONDS = 1.0  # retryAfter of a send that lost every race for the conversation's next seq
PREVIEW_CHARS = 120


def message_view(msg: Message) -> dict[str, Any]:
    view: dict[str, Any] = {
        "conversationId": msg.conversation_id, "seq": int(msg.seq), "messageId": msg.message_id,
        "clientMessageId": msg.client_message_id, "sender": user_ref(msg.sender_key), "kind": msg.kind,
        "body": None if msg.deleted else msg.body, "createdAt": int(msg.created_at),
        "editedAt": int(msg.edited_at) if msg.edited_at else None, "deleted": bool(msg.deleted),
        "threadRootSeq": int(msg.thread_root_seq) if msg.thread_root_seq else None,
        "replyCount": int(msg.reply_count or 0),
        "mentions": list(msg.mentions or []), "mentionAll": bool(msg.mention_all),
        "reactions": reaction_counts(msg),
    }
    if msg.kind == "file":
        view["file"] = None if msg.deleted or not msg.file else dict(msg.file.as_dict())
    return view


def reaction_counts(msg: Message) -> dict[str, int]:
    raw = msg.reaction_sets()
    return {emoji: len(users) for emoji, users in sorted(raw.items()) if users}


def rate_limit(call: Call) -> None:
    """The send windows checked on their own (an upload request counts as a send): 1 conditional
    UpdateItem per window (the user's, then the user's shard of the tenant's)."""
    for window in rate_windows(call):
        limits.take(window)


def rate_windows(call: Call) -> tuple[limits.Window, ...]:
    """The sender's one-second send windows (chalicelib/limits.py): the user's (all devices and REST
    together) and the user's shard of the tenant's; advanced inside the send's own transaction."""
    now = call.clock()
    tenant = call.principal.tenant_id
    me = policy.key_of(call.principal)
    mine = limits.for_tenant(tenant)
    return (limits.user_send_window(mine, me, now), limits.tenant_send_window(mine, tenant, me, now))


def original_of(idem_key: str, conv_id: str) -> Message | None:
    hit = Idempotency.find(idem_key)
    return Message.find(conv_id, hit.seq) if hit else None


def retention_attributes(env: Env, sender_key: str, conversation_id: str, now: int,
               rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retention attributes of a new message of ``sender_key``: expiry unless a legal hold covers it
    (``rules``: the rule items, when already read)."""
    return holds.message_retention(sender_key, conversation_id, now, env.settings.retention_day_seconds, rules)


# Positions of _append's items in the TransactWriteItems request, as cancellation reasons name them:
# pynamodb sends the puts first, then the updates, each in the order they were added; the rate
# windows (the user's, the tenant shard's) are _TX_RATE, _TX_RATE + 1, then the thread root.
_TX_MESSAGE, _TX_IDEMPOTENCY, _TX_CONVERSATION, _TX_MEMBER, _TX_RATE = range(5)

def append(conv: Conversation, member: Member, idem_key: str, now: int, build: Callable[[int], Message],
            preview_text: str, root_seq: int | None = None, *, kept: dict[str, Any],
            rates: tuple[limits.Window, ...] = ()) -> tuple[Message, bool]:
    """Write ``build(seq)`` at the next seq: (message, duplicate).

    One TransactWriteItems advances ``last_seq`` under a condition on its
    previous value, writes the message and the idempotency key and moves the
    author's read marker [, advances the sender's rate windows, each under
    ``count < limit``] [and the thread root's reply count]; a lost race
    reloads the counter and retries.  The idempotency key's condition is the
    duplicate check: a retried append returns the original instead of a
    second message, with no read before the write.  ``kept``: the retention
    attributes (``retention_attributes``).
    """
    conv_id = conv.conversation_id
    me = member.user_key
    for attempt in range(MAX_SEND_ATTEMPTS):
        seq = int(conv.last_seq or 0) + 1
        msg = build(seq)
        for name, value in kept.items():
            setattr(msg, name, value)
        preview = {"seq": seq, "sender": me, "text": preview_text[:PREVIEW_CHARS], "at": now}
        try:
            with transaction() as tx:
                tx.update(conv, actions=[Conversation.last_seq.set(seq), Conversation.last_activity_at.set(now),
                                         Conversation.last_preview.set(preview)],
                          condition=(Conversation.last_seq == (seq - 1)) & (Conversation.archived == False))  # noqa: E712
                tx.save(msg, condition=Message.seq.does_not_exist())
                tx.save(Idempotency(key=idem_key, seq=seq, expires_at=int(now / 1000) + IDEMPOTENCY_TTL_SECONDS),
                        condition=Idempotency.key.does_not_exist())
                tx.update(member, actions=[Member.last_read_seq.set(seq)], condition=Member.user_key.exists())
                for rate in rates:
                    tx.update(RateCounter(key=rate.key), actions=[RateCounter.count.add(1),
                                                                  RateCounter.expires_at.set(rate.expires_at)],
                              condition=RateCounter.under(rate.limit))
                if root_seq is not None:
                    tx.update(Message(conversation_id=conv_id, seq=root_seq),
                              actions=[Message.reply_count.add(1)], condition=Message.seq.exists())
        except TransactWriteError as exc:
            reasons = [r.code if r else None for r in (exc.cancellation_reasons or [])]
            failed = {i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
            if _TX_IDEMPOTENCY in failed:
                original = original_of(idem_key, conv_id)  # this send was stored before (a retry)
                if original is not None:
                    return original, True
            if _TX_MEMBER in failed:
                raise NotFound("No such conversation.") from None
            full = [rate for i, rate in enumerate(rates) if _TX_RATE + i in failed]
            for rate in full:
                limits.known.refused(rate)  # the next attempt in this second is refused without a request
            if full:
                raise full[0].refused() from None
            # Another send took this seq (or the item was busy): reload and retry.
            time.sleep(random.uniform(0, min(0.2, 0.005 * (2 ** attempt))))
            conv = Conversation.find(conv_id, consistent=True)
            if conv is None:
                raise NotFound("No such conversation.") from None
            if conv.archived:
                raise Conflict("The conversation is archived.") from None
            continue
        for rate in rates:
            limits.known.taken(rate)
        return msg, False
    # Every attempt lost the race for the next seq: the conversation takes sends faster than one
    # item can order them (docs/proof.md, "Rate into one conversation").  Back-pressure, not a
    # failure: nothing was stored, and the client's retry with the same clientMessageId is safe.
    metrics.count("ConversationBusy")
    raise RateLimited(retry_after=BUSY_RETRY_SECONDS,
                      message="The conversation is busy; retry with the same clientMessageId.")


def post_file_notice(env: Env, conv: Conversation, member: Member, file: dict[str, Any],
                     now: int) -> tuple[dict[str, Any], bool]:
    """Post the notice of a clean file into its conversation, as its uploader: (message view, duplicate).

    The same ordered, gap-free, idempotent path as ``send`` (the idempotency
    key is the file id, so a redelivered S3 event never posts twice): the
    notice has a seq, shows in history and sync, and moves unread counts.
    Members get ``message.created`` and ``file.ready`` on every device.
    """
    conv_id = conv.conversation_id
    client_message_id = f"file:{file['fileId']}"
    idem_key = Idempotency.key_for(conv_id, member.user_key, client_message_id)
    original = original_of(idem_key, conv_id)
    if original is not None:
        return message_view(original), True
    if conv.archived:
        raise Conflict("The conversation is archived.")

    def build(seq: int) -> Message:
        return Message(conversation_id=conv_id, seq=seq, message_id=str(uuid.uuid4()),
                       client_message_id=client_message_id, sender_key=member.user_key, kind="file",
                       body=file["name"], created_at=now, mentions=[], mention_all=False, reactions={}, file=file)

    kept = retention_attributes(env, member.user_key, conv_id, now)  # retention / legal hold: 1 BatchGetItem
    msg, duplicate = append(conv, member, idem_key, now, build, file["name"], kept=kept)
    holds.tag_file(env, msg)  # the object follows its message's retention (docs/compliance.md)
    view = message_view(msg)
    if not duplicate:
        events.to_conversation(env.delivery, conv, {"type": "message.created", "message": view, "mention": False},
                               origin=member.user_key, now_ms=now, purpose="files")
        events.to_conversation(env.delivery, conv, {"type": "file.ready", "conversationId": conv_id,
                                                "seq": int(msg.seq), "file": file},
                               origin=member.user_key, now_ms=now, purpose="files")
    return view, duplicate
