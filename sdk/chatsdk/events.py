"""Typed server events (docs/protocol.md, "Events") and the SDK's own connection events.

``parse_event(frame)`` turns a frame without ``requestId`` into one of the
dataclasses below; a type this SDK does not know becomes ``UnknownEvent``, so
new server events never break a client.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .models import Conversation, Message, UserRef


@dataclass
class Event:
    type: ClassVar[str] = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)

    def target_conversation(self) -> str | None:
        """The conversation this event is about, if any (used for filtering)."""
        for name in ("message", "conversation"):
            obj = getattr(self, name, None)
            if obj is not None and hasattr(obj, "conversation_id"):
                return obj.conversation_id
        cid = getattr(self, "conversation_id", None)
        return cid if isinstance(cid, str) else self.raw.get("conversationId")

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-able dict: the server's frame, or the SDK event's fields."""
        if self.raw:
            return self.raw
        out: dict[str, Any] = {"type": self.type}
        for k, v in dataclasses.asdict(self).items():
            if k != "raw":
                out[_camel(k)] = v
        return out


@dataclass
class MessageCreated(Event):
    type: ClassVar[str] = "message.created"
    message: Message
    mention: bool = False
    replayed: bool = False  # True when delivered by the SDK's sync after a reconnect, not live

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "MessageCreated":
        return cls(Message.from_dict(f.get("message") or {}), bool(f.get("mention")), raw=f)


@dataclass
class MessageEdited(Event):
    type: ClassVar[str] = "message.edited"
    message: Message

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "MessageEdited":
        return cls(Message.from_dict(f.get("message") or {}), raw=f)


@dataclass
class MessageDeleted(Event):
    type: ClassVar[str] = "message.deleted"
    conversation_id: str
    seq: int

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "MessageDeleted":
        return cls(f.get("conversationId", ""), int(f.get("seq") or 0), raw=f)


@dataclass
class ReactionChanged(Event):
    type: ClassVar[str] = "reaction.changed"
    conversation_id: str
    seq: int
    emoji: str
    user: UserRef
    added: bool
    count: int
    reactions: dict[str, int]

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ReactionChanged":
        return cls(f.get("conversationId", ""), int(f.get("seq") or 0), f.get("emoji", ""),
                   UserRef.from_dict(f.get("user")), bool(f.get("added")), int(f.get("count") or 0),
                   dict(f.get("reactions") or {}), raw=f)


@dataclass
class Receipt(Event):
    type: ClassVar[str] = "receipt"
    conversation_id: str
    user: UserRef
    seq: int

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "Receipt":
        return cls(f.get("conversationId", ""), UserRef.from_dict(f.get("user")), int(f.get("seq") or 0), raw=f)


@dataclass
class Typing(Event):
    type: ClassVar[str] = "typing"
    conversation_id: str
    user: UserRef
    typing: bool
    expires_at: int | None = None

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "Typing":
        return cls(f.get("conversationId", ""), UserRef.from_dict(f.get("user")), bool(f.get("typing")),
                   f.get("expiresAt"), raw=f)


@dataclass
class PresenceChanged(Event):
    type: ClassVar[str] = "presence.changed"
    user: UserRef
    status: str
    custom: dict[str, Any] | None = None
    devices: int = 0
    last_seen_at: int | None = None
    updated_at: int = 0  # orders publications: keep the greatest per user

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "PresenceChanged":
        return cls(UserRef.from_dict(f.get("user")), f.get("status", ""), f.get("custom"),
                   int(f.get("devices") or 0), f.get("lastSeenAt"), int(f.get("updatedAt") or 0), raw=f)


@dataclass
class MembersChanged(Event):
    type: ClassVar[str] = "members.changed"
    conversation_id: str
    change: str
    users: list[UserRef]

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "MembersChanged":
        return cls(f.get("conversationId", ""), f.get("change", ""),
                   [UserRef.from_dict(u) for u in f.get("users") or []], raw=f)


@dataclass
class ConversationCreated(Event):
    type: ClassVar[str] = "conversation.created"
    conversation: Conversation

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ConversationCreated":
        return cls(Conversation.from_dict(f.get("conversation") or {}), raw=f)


@dataclass
class ConversationUpdated(Event):
    type: ClassVar[str] = "conversation.updated"
    conversation: Conversation

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ConversationUpdated":
        return cls(Conversation.from_dict(f.get("conversation") or {}), raw=f)


@dataclass
class FileReady(Event):
    """A shared file passed the scan; its notice is message ``seq`` of the conversation."""

    type: ClassVar[str] = "file.ready"
    conversation_id: str
    seq: int
    file: dict[str, Any]

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "FileReady":
        return cls(f.get("conversationId", ""), int(f.get("seq") or 0), dict(f.get("file") or {}), raw=f)


@dataclass
class FileRejected(Event):
    """An upload of ours was refused after the fact (malware, type/size/checksum mismatch …)."""

    type: ClassVar[str] = "file.rejected"
    conversation_id: str
    file_id: str
    name: str
    reason: str
    message: str

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "FileRejected":
        return cls(f.get("conversationId", ""), f.get("fileId", ""), f.get("name", ""), f.get("reason", ""),
                   f.get("message", ""), raw=f)


@dataclass
class ServerError(Event):
    """An ``error`` frame that answers no request of ours (e.g. ``requestId: null``)."""

    type: ClassVar[str] = "error"
    code: str
    message: str

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ServerError":
        err = f.get("error") or {}
        return cls(str(err.get("code", "")), str(err.get("message", "")), raw=f)


@dataclass
class UnknownEvent(Event):
    """Any event type this SDK version does not model; ``raw`` has the whole frame."""

    event_type: str = ""

    @property
    def type(self) -> str:  # type: ignore[override]
        return self.event_type


# --- ask the experts (docs/experts.md) ----------------------------------------------------

@dataclass
class ExpertQuestionEvent(Event):
    """Base of the ``expert.question.*`` events: which question of which topic."""

    question_id: str = ""
    topic_id: str = ""

    @classmethod
    def _ids(cls, f: dict[str, Any]) -> dict[str, Any]:
        return {"question_id": str(f.get("questionId", "")), "topic_id": str(f.get("topicId", "")), "raw": f}

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ExpertQuestionEvent":
        return cls(**cls._ids(f))


@dataclass
class ExpertQuestionOffered(ExpertQuestionEvent):
    """A question on a topic you answer is offered to you: ``ChatClient.accept_question`` or ``decline_question``."""

    type: ClassVar[str] = "expert.question.offered"
    topic_name: str | None = None
    text: str = ""
    asked_by: str | None = None  # the asker's display name
    asked_at: int = 0

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ExpertQuestionOffered":
        return cls(**cls._ids(f), topic_name=f.get("topicName"), text=str(f.get("text", "")),
                   asked_by=f.get("askedBy"), asked_at=int(f.get("askedAt") or 0))


@dataclass
class ExpertQuestionWave(ExpertQuestionEvent):
    """Your question was offered to one more wave (``experts`` people of tier ``tier``; never who)."""

    type: ClassVar[str] = "expert.question.wave"
    wave: int = 0
    tier: int = 0
    experts: int = 0

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ExpertQuestionWave":
        return cls(**cls._ids(f), wave=int(f.get("wave") or 0), tier=int(f.get("tier") or 0),
                   experts=int(f.get("experts") or 0))


@dataclass
class ExpertQuestionAccepted(ExpertQuestionEvent):
    """An expert took your question: ``expert`` ({tenantId, userId, displayName}), the conversation of you two."""

    type: ClassVar[str] = "expert.question.accepted"
    conversation_id: str = ""
    expert: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, f: dict[str, Any]) -> "ExpertQuestionAccepted":
        return cls(**cls._ids(f), conversation_id=str(f.get("conversationId", "")), expert=dict(f.get("expert") or {}))


@dataclass
class ExpertQuestionTaken(ExpertQuestionEvent):
    type: ClassVar[str] = "expert.question.taken"


@dataclass
class ExpertQuestionUnanswered(ExpertQuestionEvent):
    type: ClassVar[str] = "expert.question.unanswered"


@dataclass
class ExpertQuestionCancelled(ExpertQuestionEvent):
    type: ClassVar[str] = "expert.question.cancelled"


@dataclass
class ExpertQuestionAnswered(ExpertQuestionEvent):
    type: ClassVar[str] = "expert.question.answered"


EXPERT_EVENTS = (ExpertQuestionOffered, ExpertQuestionWave, ExpertQuestionAccepted, ExpertQuestionTaken,
                 ExpertQuestionUnanswered, ExpertQuestionCancelled, ExpertQuestionAnswered)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# --- the SDK's own events (never sent by the server; raw is empty) -------------------

@dataclass
class Connected(Event):
    type: ClassVar[str] = "sdk.connected"
    reconnect: bool
    attempt: int = 0


@dataclass
class Disconnected(Event):
    type: ClassVar[str] = "sdk.disconnected"
    code: int | None
    reason: str
    will_reconnect: bool


@dataclass
class Synced(Event):
    """A post-reconnect ``sync`` finished; ``replayed`` counts messages per conversation."""

    type: ClassVar[str] = "sdk.synced"
    replayed: dict[str, int]
    truncated: list[str]  # conversations where more was missed than the SDK replays


EVENT_TYPES: dict[str, Any] = {cls.type: cls for cls in (
    MessageCreated, MessageEdited, MessageDeleted, ReactionChanged, Receipt, Typing, PresenceChanged,
    MembersChanged, ConversationCreated, ConversationUpdated, FileReady, FileRejected, ServerError, *EXPERT_EVENTS)}


def parse_event(frame: dict[str, Any]) -> Event:
    cls = EVENT_TYPES.get(str(frame.get("type")))
    if cls is None:
        return UnknownEvent(event_type=str(frame.get("type", "")), raw=frame)
    try:
        return cls.from_frame(frame)
    except (TypeError, ValueError, AttributeError):
        return UnknownEvent(event_type=str(frame.get("type", "")), raw=frame)
