"""Write the protocol's JSON Schemas to docs/schemas/ (``make schemas``); a test checks they are current."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "schemas"


def rendered() -> dict[str, str]:
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ERROR_CODES

    files = {"envelope.json": schemas.ENVELOPE}
    files.update({f"in/{name}.json": s for name, s in schemas.INBOUND.items()})
    files.update({f"out/{name}.json": s for name, s in schemas.OUTBOUND.items()})
    files["error-codes.json"] = {code: {"status": st, "meaning": m} for code, (st, m) in ERROR_CODES.items()}
    files["../openapi.json"] = openapi()
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def _body_of(action: str) -> dict:
    """An action's schema as a REST body: no envelope fields, no path fields."""
    from chalicelib.protocol import schemas

    src = schemas.INBOUND[action]
    drop = {"action", "requestId", "conversationId"}
    return {"type": "object", "additionalProperties": False,
            "required": [r for r in src["required"] if r not in drop],
            "properties": {k: v for k, v in src["properties"].items() if k not in drop}}


def openapi() -> dict:
    """The REST API description (OpenAPI 3.1), built from the same schemas as the socket."""
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ERROR_CODES

    err = {"$ref": "#/components/schemas/Error"}
    errors = {}
    for code, (st, meaning) in ERROR_CODES.items():
        entry = errors.setdefault(str(st), {"description": "", "content": {"application/json": {"schema": err}}})
        entry["description"] = (entry["description"] + "; " if entry["description"] else "") + f"`{code}`"

    def op(summary: str, action: str, ok: str, result: str, params=(), body: bool = False) -> dict:
        o = {"summary": summary, "operationId": action.replace(".", "_"),
             "description": f"Same as the WebSocket action `{action}` (docs/protocol.md).",
             "security": [{"bearer": []}], "parameters": list(params),
             "responses": {ok: {"description": "OK", "content": {"application/json": {
                 "schema": {"$ref": f"#/components/schemas/{result}"}}}},
                           **{k: v for k, v in errors.items() if k != "200"}}}
        if body:
            o["requestBody"] = {"required": True, "content": {"application/json": {"schema": _body_of(action)}}}
        return o

    conv_id = {"name": "conversation_id", "in": "path", "required": True, "schema": schemas.ID}
    limit = {"name": "limit", "in": "query", "schema": schemas.LIMIT}
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Enterprise chat REST API", "version": "1.0.0",
                 "description": "For offline and mobile clients and tenant admins. Authenticate with the same "
                                "OIDC token as the WebSocket: `Authorization: Bearer <jwt>`."},
        "servers": [{"url": "http://127.0.0.1:8000", "description": "local stack"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": {"enum": sorted(ERROR_CODES)}, "message": {"type": "string"},
                        "retryAfter": {"type": "number"}}}}},
                "Inbox": {"type": "object", "required": ["conversations", "nextCursor"], "properties": {
                    "conversations": {"type": "array", "items": obj}, "nextCursor": {"type": ["string", "null"]}}},
                "ConversationResult": {"type": "object", "required": ["conversation"],
                                       "properties": {"conversation": obj}},
                "History": {"type": "object", "required": ["messages", "nextBeforeSeq"], "properties": {
                    "messages": {"type": "array", "items": obj},
                    "nextBeforeSeq": {"type": ["integer", "null"]}}},
                "Sent": {"type": "object", "required": ["message", "duplicate"], "properties": {
                    "message": obj, "duplicate": {"type": "boolean"}}},
                "ReadMarker": {"type": "object", "required": ["conversationId", "lastReadSeq", "unread"],
                               "properties": {"conversationId": {"type": "string"},
                                              "lastReadSeq": {"type": "integer"}, "unread": {"type": "integer"}}},
                "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
                "UploadGrant": {"type": "object", "required": ["file", "upload"], "properties": {
                    "file": obj, "upload": {"type": "object", "required": ["method", "url", "fields", "expiresAt"],
                                            "properties": {"method": {"const": "POST"}, "url": {"type": "string"},
                                                           "fields": {"type": "object"},
                                                           "expiresAt": {"type": "integer"}}}}},
                "DownloadGrant": {"type": "object", "required": ["file", "download"], "properties": {
                    "file": obj, "download": {"type": "object", "required": ["url", "expiresAt"], "properties": {
                        "url": {"type": "string"}, "expiresAt": {"type": "integer"}}}}},
            },
        },
        "paths": {
            "/health": {"get": {"summary": "Liveness", "operationId": "health", "responses": {
                "200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Health"}}}}}}},
            "/conversations": {"get": op(
                "My conversations by last activity, with unread counts", "conversation.list", "200", "Inbox",
                [limit, {"name": "cursor", "in": "query", "schema": {"type": "string"}}])},
            "/conversations/{conversation_id}": {"get": op(
                "One conversation", "conversation.get", "200", "ConversationResult", [conv_id])},
            "/conversations/{conversation_id}/messages": {
                "get": op("History, newest first", "history", "200", "History",
                          [conv_id, limit, {"name": "beforeSeq", "in": "query", "schema": schemas.SEQ}]),
                "post": op("Send a message (idempotent by clientMessageId)", "message.send", "201", "Sent",
                           [conv_id], body=True)},
            "/conversations/{conversation_id}/read": {"post": op(
                "Move my read marker forward", "read", "200", "ReadMarker", [conv_id], body=True)},
            "/conversations/{conversation_id}/files": {"post": op(
                "Ask to upload a file: a presigned POST for exactly this file (docs/files.md)",
                "file.upload.request", "201", "UploadGrant", [conv_id], body=True)},
            "/files/{file_id}/download": {"get": op(
                "A short-lived download URL of a clean file", "file.download.request", "200", "DownloadGrant",
                [{"name": "file_id", "in": "path", "required": True, "schema": schemas.FILE_ID}])},
        },
    }


def main() -> int:
    for name, text in rendered().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(rendered())} files under docs/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
