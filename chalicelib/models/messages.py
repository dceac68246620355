"""The ordered messages of a conversation, send idempotency and the rate windows."""
from __future__ import annotations

from typing import Any

from pynamodb.attributes import BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from .base import _Meta, _S, condition_failed


class MessagesByThread(GlobalSecondaryIndex["Message"]):
    """Sparse: replies of one thread in order (only replies carry ``thread_key``)."""

    class Meta:
        index_name = "by_thread"
        projection = AllProjection()

    thread_key = UnicodeAttribute(hash_key=True)  # "<conversation>#<root seq>"
    seq = NumberAttribute(range_key=True)


class MessagesByRetainedSender(GlobalSecondaryIndex["Message"]):
    """Sparse: messages under retention, by sender and time (only they carry ``retained_sender``).

    A legal hold on a user finds exactly the messages that user sent - in any
    conversation, also ones they left - to take the expiry off and put it back
    (docs/compliance.md).  Messages of tenants without retention never enter it.
    """

    class Meta:
        index_name = "by_retained_sender"
        projection = IncludeProjection(["retain_s"])  # + keys and created_at: enough to recompute the expiry

    retained_sender = UnicodeAttribute(hash_key=True)  # = sender_key
    created_at = NumberAttribute(range_key=True)


class Message(Model):
    """One message at its seq. Deleting leaves a tombstone: the seq and metadata stay.

    Retention (docs/compliance.md): ``expires_at`` is the DynamoDB TTL, set at
    write time from the sender's company's retention unless a legal hold covers
    the message; ``retain_s`` remembers the period so a released hold can put
    the expiry back.  An expired message leaves a gap in the seqs that history
    and sync render as ``{seq, deleted: true, reason: "retention"}``.
    """

    class Meta(_Meta):
        table_name = _S.messages_table

    conversation_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)
    message_id = UnicodeAttribute()
    client_message_id = UnicodeAttribute()
    sender_key = UnicodeAttribute()
    kind = UnicodeAttribute(default="text")
    body = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    edited_at = NumberAttribute(null=True)
    deleted = BooleanAttribute(default=False)
    revisions = ListAttribute(of=MapAttribute, default=list)
    thread_root_seq = NumberAttribute(null=True)
    thread_key = UnicodeAttribute(null=True)
    reply_count = NumberAttribute(default=0)
    mentions = ListAttribute(of=UnicodeAttribute, default=list)
    mention_all = BooleanAttribute(default=False)
    # emoji (as ``reaction_key`` stores it) -> string set of user keys; read through ``reaction_sets``
    reactions = MapAttribute(default=dict)
    file = MapAttribute(null=True)  # kind "file": {fileId, name, size, contentType, uploader}
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds); absent: kept (no retention, or held)
    retain_s = NumberAttribute(null=True)  # the retention period (seconds) this message was written under
    retained_sender = UnicodeAttribute(null=True)  # = sender_key when retain_s is set (sparse index)
    # How many HeldOriginal items a legal hold kept of this message (edits/delete while held); absent: none,
    # so an export Queries the originals table only for pages that have some.
    held_versions = NumberAttribute(null=True)

    by_thread = MessagesByThread()
    by_retained_sender = MessagesByRetainedSender()

    # A document path cannot name a map key containing "[" or "]" (pynamodb reads "x[0]" as a list
    # index and refuses "a[b"), so those characters (and the escape itself) are %-encoded in keys.
    _REACTION_ESCAPES = (("%", "%25"), ("[", "%5B"), ("]", "%5D"))

    @classmethod
    def reaction_key(cls, emoji: str) -> str:
        for char, escaped in cls._REACTION_ESCAPES:
            emoji = emoji.replace(char, escaped)
        return emoji

    @classmethod
    def reaction_path(cls, emoji: str) -> Any:
        """The document path of one emoji's set of user keys (for ADD/DELETE updates)."""
        return cls.reactions[cls.reaction_key(emoji)]

    def reaction_sets(self) -> dict[str, set[str]]:
        """emoji -> user keys, keys decoded (a key stored before the encoding reads as itself)."""
        raw = self.reactions.as_dict() if self.reactions else {}
        out = {}
        for key, users in raw.items():
            for char, escaped in reversed(self._REACTION_ESCAPES):
                key = key.replace(escaped, char)
            out[key] = set(users or ())
        return out

    @classmethod
    def find(cls, conversation_id: str, seq: int) -> "Message | None":
        try:
            return cls.get(conversation_id, seq)
        except cls.DoesNotExist:
            return None

    @classmethod
    def page(cls, conversation_id: str, *, before: int | None = None, after: int | None = None,
             limit: int = 50, newest_first: bool = True, consistent: bool = False) -> list["Message"]:
        """Query on the seq range: 1 request (``consistent``: strongly consistent, twice the read units)."""
        cond = None
        if before is not None and after is not None:
            cond = cls.seq.between(after + 1, before - 1)
        elif before is not None:
            cond = cls.seq < before
        elif after is not None:
            cond = cls.seq > after
        return list(cls.query(conversation_id, range_key_condition=cond, limit=limit,
                              scan_index_forward=not newest_first, consistent_read=consistent))

    @classmethod
    def thread(cls, conversation_id: str, root_seq: int, after: int = 0, limit: int = 50) -> list["Message"]:
        """Query by_thread: 1 request."""
        return list(cls.by_thread.query(f"{conversation_id}#{root_seq}", cls.seq > after, limit=limit))


class Idempotency(Model):
    """``clientMessageId`` of a sender in a conversation -> the seq it got (kept 7 days)."""

    class Meta(_Meta):
        table_name = _S.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute()
    expires_at = NumberAttribute()

    @staticmethod
    def key_for(conversation_id: str, sender_key: str, client_message_id: str) -> str:
        return f"{conversation_id}#{sender_key}#{client_message_id}"

    @classmethod
    def find(cls, key: str) -> "Idempotency | None":
        try:
            return cls.get(key, consistent_read=True)
        except cls.DoesNotExist:
            return None


class RateCounter(Model):
    """Fixed-window counters shared by all containers (processes share nothing else)."""

    class Meta(_Meta):
        table_name = _S.ratelimits_table

    key = UnicodeAttribute(hash_key=True)
    count = NumberAttribute(default=0)
    expires_at = NumberAttribute()

    @classmethod
    def hit(cls, key: str, expires_at: int) -> int:
        """UpdateItem ADD: 1 request; returns the count in this window."""
        item = cls(key=key)
        item.update(actions=[cls.count.add(1), cls.expires_at.set(expires_at)])
        return int(item.count)

    @classmethod
    def under(cls, limit: int) -> Any:
        """The condition of taking one from a window of ``limit``."""
        return cls.count.does_not_exist() | (cls.count < limit)

    @classmethod
    def take(cls, key: str, expires_at: int, limit: int) -> bool:
        """One conditional UpdateItem: ADD 1 under ``count < limit``; False if the window is full."""
        try:
            cls(key=key).update(actions=[cls.count.add(1), cls.expires_at.set(expires_at)],
                                condition=cls.under(limit))
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
