"""Python SDK for the enterprise chat service (WebSocket protocol in docs/protocol.md).

    import asyncio
    from chatsdk import ChatClient

    async def main():
        async with ChatClient("http://127.0.0.1:8000", email="alice@acme.example") as chat:
            print(await chat.call("conversation.list"))

    asyncio.run(main())
"""
from .auth import DEFAULT_URL, DevTokenProvider, dev_token, dev_token_grant, load_token, save_token, token_file
from .client import ChatClient, EventStream, backoff_delays, ws_url_for
from .errors import ChatError, ClientClosed, ConnectionLost, HandshakeRefused, RequestTimeout
from .events import (Connected, ConversationCreated, ConversationUpdated, Disconnected, Event, ExpertQuestionAccepted,
                     ExpertQuestionAnswered, ExpertQuestionCancelled, ExpertQuestionEvent, ExpertQuestionOffered,
                     ExpertQuestionTaken, ExpertQuestionUnanswered, ExpertQuestionWave, FileReady,
                     FileRejected, MembersChanged, MessageCreated, MessageDeleted, MessageEdited, PresenceChanged,
                     ReactionChanged, Receipt, ServerError, Synced, Typing, UnknownEvent, parse_event)
from .models import Conversation, Message, PeoplePage, Person, SendResult, UserRef
from .rest import RestClient

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL", "ChatClient", "ChatError", "ClientClosed", "Connected", "ConnectionLost", "Conversation",
    "ConversationCreated", "ConversationUpdated", "DevTokenProvider", "Disconnected", "Event", "EventStream",
    "ExpertQuestionAccepted", "ExpertQuestionAnswered", "ExpertQuestionCancelled", "ExpertQuestionEvent",
    "ExpertQuestionOffered", "ExpertQuestionTaken", "ExpertQuestionUnanswered", "ExpertQuestionWave",
    "FileReady", "FileRejected", "HandshakeRefused", "MembersChanged", "Message", "MessageCreated", "MessageDeleted", "MessageEdited",
    "PeoplePage", "Person", "PresenceChanged", "ReactionChanged", "Receipt", "RequestTimeout", "RestClient", "SendResult", "ServerError",
    "Synced", "Typing", "UnknownEvent", "UserRef", "backoff_delays", "dev_token", "dev_token_grant",
    "load_token", "parse_event", "save_token", "token_file", "ws_url_for",
]
