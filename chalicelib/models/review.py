"""Screening's review entries: flags and blocked attempts, and the reviewers' queues (docs/compliance.md).

Apart from the rule sets (``screening``): a send reads the rules every time
and writes an entry only when a rule matched, so its cold start does not
build these four classes.
"""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .base import _Meta, _S


class FlagsByQueue(GlobalSecondaryIndex["DlpFlag"]):
    """The review queue: a company's entries in one state and of one kind, by time (R1)."""

    class Meta:
        index_name = "by_queue"
        projection = AllProjection()

    queue_key = UnicodeAttribute(hash_key=True)  # "<tenant>#<state>#<kind>"
    flag_id = UnicodeAttribute(range_key=True)


class FlagsByConversation(GlobalSecondaryIndex["DlpFlag"]):
    """A company's entries about one conversation, by time (R2; sparse: entries with a conversation)."""

    class Meta:
        index_name = "by_conversation"
        projection = AllProjection()

    conversation_key = UnicodeAttribute(hash_key=True)  # "<tenant>#<conversation>"
    flag_id = UnicodeAttribute(range_key=True)


class FlagsBySender(GlobalSecondaryIndex["DlpFlag"]):
    """A company's entries about one sender (its own user, or another company's in a shared conversation) (R3)."""

    class Meta:
        index_name = "by_sender"
        projection = AllProjection()

    review_sender = UnicodeAttribute(hash_key=True)  # "<tenant>#<sender tenant>#<sender user>"
    flag_id = UnicodeAttribute(range_key=True)


class DlpFlag(Model):
    """One screening hit kept for the company's reviewers: a flag rule matched, or a block
    rule of this company refused the text (``action`` = ``block``: a blocked attempt, nothing stored).

    ``flag_id`` = ``<ms:13>#<uuid hex>``: a Query on the tenant's partition
    pages by time.  ``excerpt`` is a short piece of the text around the match
    with every match masked: the sensitive value itself is never stored here.

    Review (docs/compliance.md "Review queue"): ``state`` open -> claimed ->
    resolved (claimed -> open again on release), each transition one
    conditional UpdateItem that also appends to ``history`` and moves
    ``queue_key``.  An entry written before the queue existed has no state
    (it reads as open) and none of the index keys until its first transition.
    """

    class Meta(_Meta):
        table_name = _S.dlp_flags_table

    tenant_id = UnicodeAttribute(hash_key=True)
    flag_id = UnicodeAttribute(range_key=True)
    at = NumberAttribute()
    source = UnicodeAttribute()  # message | edit | file | file_content | name | topic | reaction | status
    conversation_id = UnicodeAttribute(null=True)  # None: a custom status, or a refused conversation.create
    seq = NumberAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    file_id = UnicodeAttribute(null=True)
    sender_key = UnicodeAttribute()  # "<tenant>#<user>" (in an external conversation, maybe the other company's)
    rule_ids = ListAttribute(of=UnicodeAttribute, default=list)
    action = UnicodeAttribute()  # what happened to the text: flag (delivered as is) | redact | block (refused)
    excerpt = UnicodeAttribute(default="")
    # A blocked attempt's text as the company's policy says (``DlpRules.blocked_text``):
    # ``text`` the whole original (kept), ``text_hash`` its HMAC (hashed); neither otherwise.
    text_policy = UnicodeAttribute(null=True)
    text = UnicodeAttribute(null=True)
    text_truncated = BooleanAttribute(null=True)
    text_hash = UnicodeAttribute(null=True)
    # A blocked attempt: the conversation's last seq when it was refused (where a case's context is).
    after_seq = NumberAttribute(null=True)
    # review
    state = UnicodeAttribute(null=True)  # open | claimed | resolved (absent: open, written before the queue)
    queue_key = UnicodeAttribute(null=True)
    conversation_key = UnicodeAttribute(null=True)
    review_sender = UnicodeAttribute(null=True)
    claimed_by = UnicodeAttribute(null=True)
    claimed_at = NumberAttribute(null=True)
    resolution = UnicodeAttribute(null=True)  # dismissed | confirmed | escalated
    note = UnicodeAttribute(null=True)
    resolved_by = UnicodeAttribute(null=True)
    resolved_at = NumberAttribute(null=True)
    history = ListAttribute(of=MapAttribute, null=True)  # [{at, by, event, resolution?, note?}], oldest first

    by_queue = FlagsByQueue()
    by_conversation = FlagsByConversation()
    by_sender = FlagsBySender()

    @property
    def kind(self) -> str:
        """``block`` (a blocked attempt) or ``flag`` (stored text: flagged, maybe redacted)."""
        return "block" if self.action == "block" else "flag"

    @property
    def review_state(self) -> str:
        return self.state or "open"

    @staticmethod
    def queue_of(tenant_id: str, state: str, kind: str) -> str:
        return f"{tenant_id}#{state}#{kind}"

    def index_keys(self) -> None:
        """Fill the index keys from the entry's own fields (on write, and on a legacy entry's first transition)."""
        self.queue_key = self.queue_of(self.tenant_id, self.review_state, self.kind)
        self.conversation_key = f"{self.tenant_id}#{self.conversation_id}" if self.conversation_id else None
        self.review_sender = f"{self.tenant_id}#{self.sender_key}"

    @classmethod
    def find(cls, tenant_id: str, flag_id: str) -> "DlpFlag | None":
        """GetItem (strongly consistent): 1 request."""
        try:
            return cls.get(tenant_id, flag_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def page(cls, tenant_id: str, lower: str, upper: str, limit: int) -> list["DlpFlag"]:
        """Query on the ``flag_id`` range, newest first: 1 request."""
        return list(cls.query(tenant_id, cls.flag_id.between(lower, upper),
                              scan_index_forward=False, limit=limit))
