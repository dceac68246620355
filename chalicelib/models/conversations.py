"""Conversations and their members (the member item is also the read marker)."""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import BooleanAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .base import _Meta, _S


class PublicChannels(GlobalSecondaryIndex["Conversation"]):
    """Sparse: public channels of a tenant, by name (only they carry ``public_tenant``)."""

    class Meta:
        index_name = "public_channels"
        projection = AllProjection()

    public_tenant = UnicodeAttribute(hash_key=True)
    name_lower = UnicodeAttribute(range_key=True)


class Conversation(Model):
    """A direct conversation, group or channel; also holds the per-conversation seq counter.

    ``last_seq`` is advanced by the same transaction that writes the message,
    under a condition on its previous value, so seqs are gap-free.
    """

    class Meta(_Meta):
        table_name = _S.conversations_table

    conversation_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # direct | group | channel
    name = UnicodeAttribute(null=True)
    name_lower = UnicodeAttribute(null=True)
    topic = UnicodeAttribute(null=True)
    visibility = UnicodeAttribute(default="private")  # public | private (channels)
    public_tenant = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()
    archived = BooleanAttribute(default=False)
    receipts = BooleanAttribute(default=True)
    member_count = NumberAttribute(default=0)
    last_seq = NumberAttribute(default=0)
    last_activity_at = NumberAttribute(default=0)
    last_preview = MapAttribute(null=True)
    # Tenants whose users are members; more than one makes the conversation external.
    tenants = UnicodeSetAttribute(null=True)
    # Online roster (``OnlineEntry``) of a large conversation: absent, "building" (being filled
    # from the member list; events still resolve through members) or "ready" (events resolve
    # through the roster, never reading every membership).  See docs/delivery.md.
    roster = UnicodeAttribute(null=True)

    public_channels = PublicChannels()

    @classmethod
    def find(cls, conversation_id: str, consistent: bool = False) -> "Conversation | None":
        """GetItem: 1 request."""
        try:
            return cls.get(conversation_id, consistent_read=consistent)
        except cls.DoesNotExist:
            return None


class MembersByUser(GlobalSecondaryIndex["Member"]):
    """A user's conversations (inbox)."""

    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_key = UnicodeAttribute(hash_key=True)
    conversation_id = UnicodeAttribute(range_key=True)


class Member(Model):
    """Membership of one user (of any tenant) in one conversation, with the read marker."""

    class Meta(_Meta):
        table_name = _S.members_table

    conversation_id = UnicodeAttribute(hash_key=True)
    user_key = UnicodeAttribute(range_key=True)  # "<tenant>#<user>"
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    role = UnicodeAttribute(default="member")  # owner | admin | member
    joined_at = NumberAttribute()
    last_read_seq = NumberAttribute(default=0)
    # Mobile push in this conversation (docs/push.md): all | mentions | nothing (None = the user's
    # default level), and muted until (ms).  Read with the member item the push job reads anyway.
    push_level = UnicodeAttribute(null=True)
    push_muted_until = NumberAttribute(null=True)

    by_user = MembersByUser()

    @classmethod
    def find(cls, conversation_id: str, key: str) -> "Member | None":
        """GetItem: 1 request."""
        try:
            return cls.get(conversation_id, key)
        except cls.DoesNotExist:
            return None

    @classmethod
    def of_conversation(cls, conversation_id: str) -> Iterator["Member"]:
        """Query: 1 request per 1 MB page (~thousands of members)."""
        return cls.query(conversation_id)

    @classmethod
    def of_user(cls, key: str) -> Iterator["Member"]:
        """Query by_user: 1 request per page."""
        return cls.by_user.query(key)
