"""JSON Schemas (draft-07) of every WebSocket frame: the wire contract.

Draft-07 because fastjsonschema, which validates inbound frames in the
Lambda, does not implement 2020-12.  ``tools/export_schemas.py`` writes these
to ``docs/schemas/`` and a test keeps the two in sync; another test validates
the frames the server really sends against ``OUTBOUND``.
"""
from __future__ import annotations

from typing import Any

from .errors import ERROR_CODES

DRAFT = "http://json-schema.org/draft-07/schema#"

REQUEST_ID = {"type": "string", "minLength": 1, "maxLength": 64}

# Every inbound frame: an object with an action and a requestId.
ENVELOPE: dict[str, Any] = {
    "$schema": DRAFT,
    "type": "object",
    "required": ["action", "requestId"],
    "properties": {
        "action": {"type": "string", "minLength": 1, "maxLength": 64},
        "requestId": REQUEST_ID,
    },
}


def _action(name: str, properties: dict[str, Any] | None = None,
            required: list[str] | None = None) -> dict[str, Any]:
    props = {"action": {"const": name}, "requestId": REQUEST_ID}
    props.update(properties or {})
    return {
        "$schema": DRAFT,
        "title": name,
        "type": "object",
        "required": ["action", "requestId"] + (required or []),
        "properties": props,
        "additionalProperties": False,
    }


def _event(name: str, properties: dict[str, Any] | None = None,
           required: list[str] | None = None) -> dict[str, Any]:
    props = {"type": {"const": name}}
    props.update(properties or {})
    return {
        "$schema": DRAFT,
        "title": name,
        "type": "object",
        "required": ["type"] + (required or []),
        "properties": props,
        "additionalProperties": False,
    }


ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"}
SEQ = {"type": "integer", "minimum": 1, "maximum": 9007199254740991}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 100}
CURSOR = {"type": ["string", "null"], "maxLength": 256}
TEXT = {"type": "string", "minLength": 1, "maxLength": 65536}
NAME = {"type": "string", "minLength": 1, "maxLength": 80}
TOPIC = {"type": ["string", "null"], "maxLength": 250}
EMOJI = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\s]+$"}
USER_IDS = {"type": "array", "items": ID, "minItems": 1, "maxItems": 100}
CONV = {"conversationId": ID}
MSG = {"conversationId": ID, "seq": SEQ}

# Client -> server, by action.
INBOUND: dict[str, dict[str, Any]] = {
    "ping": _action("ping"),
    "conversation.create": _action("conversation.create", {
        "kind": {"enum": ["direct", "group", "channel"]},
        "members": {"type": "array", "items": ID, "maxItems": 100},
        "name": NAME, "topic": TOPIC, "visibility": {"enum": ["public", "private"]},
        "receipts": {"type": "boolean"},
    }, ["kind"]),
    "conversation.get": _action("conversation.get", CONV, ["conversationId"]),
    "conversation.list": _action("conversation.list", {"limit": LIMIT, "cursor": CURSOR}),
    "conversation.update": _action("conversation.update", {
        **CONV, "name": NAME, "topic": TOPIC, "receipts": {"type": "boolean"}, "archived": {"type": "boolean"},
    }, ["conversationId"]),
    "conversation.join": _action("conversation.join", CONV, ["conversationId"]),
    "conversation.leave": _action("conversation.leave", CONV, ["conversationId"]),
    "channel.list": _action("channel.list", {"limit": LIMIT, "cursor": CURSOR}),
    "member.list": _action("member.list", CONV, ["conversationId"]),
    "member.add": _action("member.add", {**CONV, "userIds": USER_IDS}, ["conversationId", "userIds"]),
    "member.remove": _action("member.remove", {**CONV, "userId": ID}, ["conversationId", "userId"]),
    "member.role": _action("member.role", {**CONV, "userId": ID, "role": {"enum": ["owner", "admin", "member"]}},
                           ["conversationId", "userId", "role"]),
    "message.send": _action("message.send", {
        **CONV, "clientMessageId": {"type": "string", "minLength": 1, "maxLength": 64},
        "body": TEXT, "threadRootSeq": SEQ,
    }, ["conversationId", "clientMessageId", "body"]),
    "message.edit": _action("message.edit", {**MSG, "body": TEXT}, ["conversationId", "seq", "body"]),
    "message.delete": _action("message.delete", MSG, ["conversationId", "seq"]),
    "message.revisions": _action("message.revisions", MSG, ["conversationId", "seq"]),
    "reaction.add": _action("reaction.add", {**MSG, "emoji": EMOJI}, ["conversationId", "seq", "emoji"]),
    "reaction.remove": _action("reaction.remove", {**MSG, "emoji": EMOJI}, ["conversationId", "seq", "emoji"]),
    "history": _action("history", {**CONV, "beforeSeq": SEQ, "limit": LIMIT}, ["conversationId"]),
    "thread.history": _action("thread.history", {**CONV, "rootSeq": SEQ, "afterSeq": {"type": "integer",
                              "minimum": 0}, "limit": LIMIT}, ["conversationId", "rootSeq"]),
    "sync": _action("sync", {"conversations": {
        "type": "array", "maxItems": 100, "items": {
            "type": "object", "required": ["conversationId", "afterSeq"], "additionalProperties": False,
            "properties": {"conversationId": ID, "afterSeq": {"type": "integer", "minimum": 0}}}}},
        ["conversations"]),
    "read": _action("read", {**MSG}, ["conversationId", "seq"]),
    "typing.start": _action("typing.start", CONV, ["conversationId"]),
    "typing.stop": _action("typing.stop", CONV, ["conversationId"]),
    "presence.set": _action("presence.set", {
        "status": {"enum": ["available", "away", "busy", "do_not_disturb", "in_meeting"]},
        "until": {"type": "integer", "minimum": 0}}, ["status"]),
    "presence.custom": _action("presence.custom", {
        "text": {"type": ["string", "null"], "maxLength": 100}, "emoji": {"type": ["string", "null"], "maxLength": 64},
        "expiresAt": {"type": ["integer", "null"], "minimum": 0}}),
    "presence.heartbeat": _action("presence.heartbeat", {"active": {"type": "boolean"}}),
    "presence.subscribe": _action("presence.subscribe", {
        "watch": {"type": "array", "items": ID, "maxItems": 100}, "limit": LIMIT, "cursor": CURSOR}),
    "presence.unsubscribe": _action("presence.unsubscribe"),
}

# Server -> client, by type.
OUTBOUND: dict[str, dict[str, Any]] = {
    "pong": _event("pong", {"requestId": REQUEST_ID, "serverTime": {"type": "integer"}},
                   ["requestId", "serverTime"]),
    "ack": _event("ack", {"requestId": REQUEST_ID, "action": {"type": "string"},
                          "result": {"type": "object"}}, ["requestId", "action", "result"]),
    "message.created": _event("message.created", {"message": {"type": "object"}, "mention": {"type": "boolean"}},
                              ["message", "mention"]),
    "message.edited": _event("message.edited", {"message": {"type": "object"}}, ["message"]),
    "message.deleted": _event("message.deleted", {"conversationId": ID, "seq": SEQ}, ["conversationId", "seq"]),
    "reaction.changed": _event("reaction.changed", {
        "conversationId": ID, "seq": SEQ, "emoji": {"type": "string"}, "user": {"type": "object"},
        "added": {"type": "boolean"}, "count": {"type": "integer"}, "reactions": {"type": "object"}},
        ["conversationId", "seq", "emoji", "user", "added", "count", "reactions"]),
    "receipt": _event("receipt", {"conversationId": ID, "user": {"type": "object"}, "seq": SEQ},
                      ["conversationId", "user", "seq"]),
    "typing": _event("typing", {"conversationId": ID, "user": {"type": "object"}, "typing": {"type": "boolean"},
                                "expiresAt": {"type": "integer"}}, ["conversationId", "user", "typing", "expiresAt"]),
    "conversation.created": _event("conversation.created", {"conversation": {"type": "object"}}, ["conversation"]),
    "conversation.updated": _event("conversation.updated", {"conversation": {"type": "object"}}, ["conversation"]),
    "members.changed": _event("members.changed", {
        "conversationId": ID, "change": {"enum": ["added", "removed", "left", "joined"]},
        "users": {"type": "array", "items": {"type": "object"}}}, ["conversationId", "change", "users"]),
    "presence.changed": _event("presence.changed", {
        "user": {"type": "object"}, "status": {"enum": ["available", "away", "busy", "do_not_disturb", "in_meeting",
                                                        "offline"]},
        "custom": {"type": ["object", "null"]}, "devices": {"type": "integer"}, "lastSeenAt": {"type": "integer"}},
        ["user", "status", "custom", "devices", "lastSeenAt"]),
    "error": _event(
        "error",
        {
            # null when the frame was too broken to carry a readable requestId
            "requestId": {"type": ["string", "null"]},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"enum": sorted(ERROR_CODES)},
                    "message": {"type": "string"},
                    "retryAfter": {"type": "number", "minimum": 0},
                },
            },
        },
        ["requestId", "error"],
    ),
}
