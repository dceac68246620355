"""Typed views of the protocol's shapes (docs/protocol.md, "Shapes used below").

Every dataclass keeps the frame it came from in ``raw``; fields the server adds
later are ignored rather than breaking old clients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserRef:
    tenant_id: str
    user_id: str

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "UserRef":
        d = d or {}
        return cls(str(d.get("tenantId", "")), str(d.get("userId", "")))


@dataclass
class Message:
    conversation_id: str
    seq: int
    message_id: str | None
    client_message_id: str | None
    sender: UserRef
    kind: str
    body: str | None
    created_at: int
    edited_at: int | None = None
    deleted: bool = False
    thread_root_seq: int | None = None
    reply_count: int = 0
    mentions: list[str] = field(default_factory=list)
    mention_all: bool = False
    reactions: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Message":
        return cls(
            conversation_id=d.get("conversationId", ""), seq=int(d.get("seq") or 0),
            message_id=d.get("messageId"), client_message_id=d.get("clientMessageId"),
            sender=UserRef.from_dict(d.get("sender")), kind=d.get("kind", "text"), body=d.get("body"),
            created_at=int(d.get("createdAt") or 0), edited_at=d.get("editedAt"),
            deleted=bool(d.get("deleted")), thread_root_seq=d.get("threadRootSeq"),
            reply_count=int(d.get("replyCount") or 0), mentions=list(d.get("mentions") or []),
            mention_all=bool(d.get("mentionAll")), reactions=dict(d.get("reactions") or {}), raw=d)


@dataclass
class Conversation:
    conversation_id: str
    kind: str
    tenant_id: str | None = None
    name: str | None = None
    topic: str | None = None
    visibility: str | None = None
    archived: bool = False
    member_count: int = 0
    last_seq: int = 0
    last_activity_at: int | None = None
    external: bool = False
    last_message: dict[str, Any] | None = None
    role: str | None = None
    last_read_seq: int | None = None
    unread: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Conversation":
        return cls(
            conversation_id=d.get("conversationId", ""), kind=d.get("kind", ""), tenant_id=d.get("tenantId"),
            name=d.get("name"), topic=d.get("topic"), visibility=d.get("visibility"),
            archived=bool(d.get("archived")), member_count=int(d.get("memberCount") or 0),
            last_seq=int(d.get("lastSeq") or 0), last_activity_at=d.get("lastActivityAt"),
            external=bool(d.get("external")), last_message=d.get("lastMessage"), role=d.get("role"),
            last_read_seq=d.get("lastReadSeq"), unread=d.get("unread"), raw=d)


@dataclass
class SendResult:
    """What ``ChatClient.send`` returns: the stored message and whether it already existed."""

    message: Message
    duplicate: bool
    attempts: int = 1


@dataclass(frozen=True)
class Person:
    """A directory entry as ``users.get`` shows it (docs/protocol.md "People")."""

    tenant_id: str
    user_id: str
    display_name: str
    email: str | None = None  # None for a deactivated colleague
    external: bool = False    # another company's user (show its company)
    active: bool = True
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.tenant_id}#{self.user_id}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Person":
        return cls(tenant_id=str(d.get("tenantId", "")), user_id=str(d.get("userId", "")),
                   display_name=str(d.get("displayName", "")), email=d.get("email"),
                   external=bool(d.get("external")), active=d.get("active", True) is not False, raw=d)


@dataclass
class PeoplePage:
    """One page of ``users.search``: iterate it for its ``Person``s; ``next_cursor`` asks for the next page."""

    people: list[Person]
    next_cursor: str | None = None
    query: str = ""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.people)

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, index: int) -> Person:
        return self.people[index]

    @classmethod
    def from_result(cls, result: dict[str, Any], query: str = "") -> "PeoplePage":
        return cls([Person.from_dict(d) for d in result.get("users") or []], result.get("nextCursor"), query)
