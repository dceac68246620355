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


# Client -> server, by action.
INBOUND: dict[str, dict[str, Any]] = {
    "ping": _action("ping"),
}

# Server -> client, by type.
OUTBOUND: dict[str, dict[str, Any]] = {
    "pong": _event("pong", {"requestId": REQUEST_ID, "serverTime": {"type": "integer"}},
                   ["requestId", "serverTime"]),
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
