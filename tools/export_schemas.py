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
    files.update({f"result/{name}.json": s for name, s in schemas.RESULTS.items()})  # ack results (pinned)
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
    doc = {
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
    doc["paths"].update(_screening_paths({k: v for k, v in errors.items() if k != "200"}))
    doc["paths"].update(_compliance_paths({k: v for k, v in errors.items() if k != "200"}))
    return doc


# --- compliance: screening (DLP) admin routes (docs/compliance.md) -------------------------

def _screening_paths(errors: dict) -> dict:
    """GET/PUT /admin/dlp/rules and GET /admin/dlp/flags, bodies from ``schemas.ADMIN``."""
    from chalicelib.protocol import schemas

    def body(action: str) -> dict:
        src = schemas.ADMIN[action]
        return {"type": "object", "additionalProperties": False,
                "required": [r for r in src["required"] if r not in ("action", "requestId")],
                "properties": {k: v for k, v in src["properties"].items() if k not in ("action", "requestId")}}

    def ok(schema: dict) -> dict:
        return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}, **errors}

    rules = {"type": "object", "required": ["rules", "version", "detectors", "limits"], "properties": {
        "rules": {"type": "array", "items": schemas.DLP_RULE}, "version": {"type": "integer"},
        "detectors": {"type": "array", "items": {"enum": schemas.DLP_DETECTORS}},
        "limits": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    flag = {"type": "object", "required": ["id", "at", "source", "conversationId", "sender", "ruleIds", "action",
                                           "excerpt"], "properties": {
        "id": {"type": "string"}, "at": {"type": "integer"},
        "source": {"enum": ["message", "edit", "file", "name", "topic", "reaction", "status"]},
        "conversationId": {"type": ["string", "null"], "description": "null for a custom status and for a "
                           "refused conversation.create"}, "seq": {"type": ["integer", "null"]},
        "messageId": {"type": ["string", "null"]}, "fileId": {"type": ["string", "null"]},
        "sender": {"type": "object"}, "ruleIds": {"type": "array", "items": {"type": "string"}},
        "action": {"enum": ["flag", "redact", "block"], "description": "what happened to the text: delivered as "
                   "typed, redacted, or refused (block: a blocked attempt, nothing was stored)"},
        "excerpt": {"type": "string"}}}
    query = [{"name": n, "in": "query", "schema": s} for n, s in (
        ("from", {"type": "integer", "minimum": 0}), ("to", {"type": "integer", "minimum": 0}),
        ("limit", schemas.LIMIT), ("cursor", {"type": "string", "maxLength": 64}))]
    sec = [{"bearer": []}]
    return {
        "/admin/dlp/rules": {
            "get": {"summary": "The company's screening (DLP) rules (admins)", "operationId": "admin_dlp_rules_get",
                    "security": sec, "responses": ok(rules)},
            "put": {"summary": "Replace the company's screening rules: validated, versioned, audited (admins)",
                    "operationId": "admin_dlp_rules_set", "security": sec,
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": body("admin.dlp.rules.set")}}},
                    "responses": ok(rules)}},
        "/admin/dlp/flags": {
            "get": {"summary": "Screening hits for review (flagged, redacted, blocked attempts), newest first "
                               "(admins)",
                    "operationId": "admin_dlp_flags_list", "security": sec, "parameters": query,
                    "responses": ok({"type": "object", "required": ["flags", "nextCursor"], "properties": {
                        "flags": {"type": "array", "items": flag}, "nextCursor": {"type": ["string", "null"]}}})}},
    }



# --- compliance: retention, legal holds, export (docs/compliance.md) --------------------------

def _compliance_paths(errors: dict) -> dict:
    """The retention, hold and export admin routes; bodies from ``schemas.ADMIN``, replies from
    ``schemas.COMPLIANCE_RESPONSES``."""
    from chalicelib.protocol import schemas

    sec = [{"bearer": []}]

    def op(summary: str, action: str, status: str = "200", params=(), drop=(), body: bool = False) -> dict:
        o = {"summary": summary, "operationId": action.replace(".", "_"), "security": sec,
             "parameters": list(params),
             "responses": {status: {"description": "OK", "content": {"application/json": {
                 "schema": schemas.COMPLIANCE_RESPONSES[action]}}}, **errors}}
        if body:
            src = schemas.ADMIN[action]
            skip = {"action", "requestId", *drop}
            o["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "required": [r for r in src["required"] if r not in skip],
                "properties": {k: v for k, v in src["properties"].items() if k not in skip}}}}}
        return o

    def path(name: str, schema: dict) -> dict:
        return {"name": name, "in": "path", "required": True, "schema": schema}

    return {
        "/admin/retention": {
            "get": op("The company's default retention and the allowed periods (admins)", "admin.retention.get"),
            "put": op("Set the company's default retention: new messages and files of its members (admins)",
                      "admin.retention.set", body=True)},
        "/admin/conversations/{conversation_id}/retention": {
            "put": op("Override the company's retention in one conversation, for its own members' messages "
                      "(admins)", "admin.retention.conversation", params=[path("conversation_id", schemas.ID)],
                      drop=("conversationId",), body=True)},
        "/admin/holds": {
            "post": op("Place a legal hold on a user or a conversation (admins; audited)", "admin.holds.place",
                       "201", body=True),
            "get": op("The company's legal holds (admins)", "admin.holds.list", params=[
                {"name": "limit", "in": "query", "schema": schemas.LIMIT},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 64}}])},
        "/admin/holds/{hold_id}/release": {
            "post": op("Release a legal hold (admins; audited)", "admin.holds.release",
                       params=[path("hold_id", schemas.HOLD_ID)])},
        "/admin/exports": {
            "post": op("Start an eDiscovery export (JSON Lines, asynchronous; admins; audited)",
                       "admin.exports.start", "202", body=True)},
        "/admin/exports/{export_id}": {
            "get": op("An export's state and progress; a presigned download when done (admins; audited)",
                      "admin.exports.get", params=[path("export_id", schemas.EXPORT_ID)])},
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
