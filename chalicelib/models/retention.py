"""Retention rules, legal holds and the originals a hold keeps (docs/compliance.md)."""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from .base import _Meta, _S


class RetentionRule(Model):
    """What the write path needs to decide a message's expiry, by subject (1 BatchGetItem per send).

    ``subject`` is one of ``tenant#<tenant>`` (the company's default period),
    ``conv#<tenant>#<conversation>`` (that company's override for one
    conversation: it applies to its own members' messages only),
    ``hold#user#<tenant>#<user>`` and ``hold#conv#<tenant>#<conversation>``
    (the ids of the active legal holds covering them; the item is deleted
    when the last one is released).  ``days`` null = keep forever.
    ``backfill#<tenant>`` is no rule: the state of the company's retention
    backfill (``bf_*``; the newest change's ``bf_gen`` supersedes older steps,
    ``lease`` lets one step run at a time); the write path never reads it.
    """

    class Meta(_Meta):
        table_name = _S.retention_table

    subject = UnicodeAttribute(hash_key=True)
    days = NumberAttribute(null=True)
    holds = UnicodeSetAttribute(null=True)
    updated_at = NumberAttribute(default=0)
    updated_by = UnicodeAttribute(null=True)
    # backfill#<tenant> only
    bf_gen = UnicodeAttribute(null=True)
    bf_state = UnicodeAttribute(null=True)  # running | done
    bf_scope = UnicodeSetAttribute(null=True)  # conversation ids; absent = every conversation of the company
    bf_processed = NumberAttribute(null=True)  # messages whose expiry was recomputed
    bf_started_at = NumberAttribute(null=True)
    bf_finished_at = NumberAttribute(null=True)
    lease = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


class LegalHold(Model):
    """One legal hold of a company on one of its users or on a conversation its members are in.

    ``state``: ``active`` or ``released``; ``sweep``: ``pending`` -> ``done``
    for the asynchronous pass that takes the expiry off (or puts it back on)
    the messages already written, with ``swept`` counting the items touched.
    """

    class Meta(_Meta):
        table_name = _S.holds_table

    tenant_id = UnicodeAttribute(hash_key=True)
    hold_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()  # user | conversation
    target = UnicodeAttribute()  # user id | conversation id
    name = UnicodeAttribute(null=True)
    state = UnicodeAttribute(default="active")
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    released_at = NumberAttribute(null=True)
    released_by = UnicodeAttribute(null=True)
    sweep = UnicodeAttribute(default="pending")
    swept = NumberAttribute(default=0)
    # The current sweep (a new one starts on place and on release; an older one stops) and the lease
    # that keeps two steps of this hold's sweeps from running at once (services/compliance.py).
    sweep_gen = UnicodeAttribute(null=True)
    lease = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


class OriginalsBySender(GlobalSecondaryIndex["HeldOriginal"]):
    """A user hold's sweep finds what it kept of that user's messages, in any conversation."""

    class Meta:
        index_name = "by_sender"
        projection = IncludeProjection(["seq", "created_at", "retain_s", "kind", "file_id", "tenant_id"])

    sender_key = UnicodeAttribute(hash_key=True)
    version = UnicodeAttribute(range_key=True)


class HeldOriginal(Model):
    """One version of a message that a legal hold kept when it was edited or deleted (docs/compliance.md).

    Written in the same TransactWriteItems as the edit or delete, only while a
    hold of the sender's company covers the message (custodian hold on the
    sender, or a hold on the conversation).  One item per replaced version, so
    items stay small (a body <= 8 KB; a ``deleted`` item also snapshots the
    message's last <= 20 revisions: < 200 KB) however often a held message is
    edited.  ``expires_at`` (TTL) is absent while a hold covers it; when the
    last one ends, the sweep gives it the message's expiry (or removes it, for
    a company without retention).
    """

    class Meta(_Meta):
        table_name = _S.originals_table

    conversation_id = UnicodeAttribute(hash_key=True)
    version = UnicodeAttribute(range_key=True)  # "<seq:012>#<replaced_at:013>#<hex6>": per message, in time order
    seq = NumberAttribute()
    message_id = UnicodeAttribute()
    sender_key = UnicodeAttribute()
    tenant_id = UnicodeAttribute()  # the sender's company: whose holds keep it
    kind = UnicodeAttribute()  # edited | deleted: what replaced this version
    body = UnicodeAttribute(null=True)
    at = NumberAttribute()  # when this version became current (written or edited)
    replaced_at = NumberAttribute()  # when the edit or delete replaced it
    revisions = ListAttribute(of=MapAttribute, null=True)  # deleted: the message's revisions as they were
    file_id = UnicodeAttribute(null=True)  # deleted file notice: its File record (the kept object version)
    created_at = NumberAttribute()  # the message's
    retain_s = NumberAttribute(null=True)  # the message's retention period (null: the company keeps forever)
    expires_at = NumberAttribute(null=True)

    by_sender = OriginalsBySender()

    @staticmethod
    def version_of(seq: int, replaced_at: int, nonce: str) -> str:
        return f"{int(seq):012d}#{int(replaced_at):013d}#{nonce}"

    @classmethod
    def of_messages(cls, conversation_id: str, low_seq: int, high_seq: int) -> Iterator["HeldOriginal"]:
        """Query one conversation's originals of seqs ``low..high``: 1 request per 1 MB page."""
        return cls.query(conversation_id, cls.version.between(f"{int(low_seq):012d}#", f"{int(high_seq):012d}#~"))
