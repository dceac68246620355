"""Write the protocol's JSON Schemas to docs/schemas/, and docs/openapi.json (REST) and docs/asyncapi.json
(WebSocket) built from them (``make schemas``); tests/unit/test_docs_current.py checks they are current."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    files["../asyncapi.json"] = asyncapi()
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


# --- REST: docs/openapi.json ---------------------------------------------------------------
# Built from app.py's routes (each handler names the action it validates as, with its path
# fields, query parameters and success status), the request schemas the handler validates with
# (schemas.INBOUND / schemas.ADMIN) and the reply schemas (schemas.RESPONSES). Nothing about an
# operation is written twice, so the document cannot drift from the code.

# app.py routes deliberately left out of docs/openapi.json, with the reason (tests/unit/test_api_contract.py).
# None today: /dev/... (the local stack's IdP and controls) are served by devstack/gateway.py, not app.py,
# and /scim/v2/... is the SCIM function's RFC 7644 protocol (docs/scim.md), also outside app.routes.
UNDOCUMENTED: dict[str, str] = {}

SUMMARIES: dict[str, str] = {
    "conversation.list": "My conversations by last activity, with unread counts",
    "conversation.get": "One conversation",
    "users.search": "Find people by the start of a name or email word: my company's and connected companies' "
                    "that allow it (docs/protocol.md \"People search\")",
    "push.register": "Register (or replace) one of my phones for mobile push: its SNS endpoint (docs/push.md)",
    "push.unregister": "Remove one of my phones from mobile push (sign-out)",
    "push.preferences.get": "My mobile push preferences: default level, keywords, quiet hours (docs/push.md)",
    "push.preferences.set": "Replace my mobile push preferences (fields left out take their defaults)",
    "push.conversation.set": "My push level and mute in one conversation",
    "admin.push.get": "The company's notification preview policy (admins)",
    "admin.push.set": "Set the company's notification preview policy: full, sender or none (admins; audited)",
    "expert.ask": "Ask a topic's experts (who they are stays hidden): offered to the reachable ones in waves "
                  "(docs/experts.md)",
    "expert.cancel": "Withdraw my open question: the experts it was offered to hear expert.question.cancelled",
    "expert.answered": "Keep the expert's chosen messages as the topic's Q&A entry (the asker, once accepted)",
    "expert.search": "Search the company's Q&A entries by words and/or topic (shown before asking)",
    "expert.topics": "The expert topics I may ask: my company's and connected companies' shared ones",
    "admin.experts.topics.share": "Offer an expert topic to a connected company, or stop (admins; audited)",
    "admin.experts.shared.accept": "Accept (or withdraw) a connected company's shared expert topic (admins; audited)",
    "expert.queue": "A topic's waiting questions (nobody reachable took them), for the people of its pool",
    "admin.experts.topics.list": "The company's expert topics (admins)",
    "admin.experts.topics.create": "Create an expert topic: tiers of users and directory groups, wave size, "
                                   "timeout (admins; audited)",
    "admin.experts.topics.update": "Change an expert topic (admins; audited)",
    "admin.experts.topics.delete": "Delete an expert topic (admins; audited)",
    "history": "History, newest first",
    "message.send": "Send a message (idempotent by clientMessageId)",
    "read": "Move my read marker forward",
    "file.upload.request": "Ask to upload a file: a presigned POST for exactly this file (docs/files.md)",
    "file.download.request": "A short-lived download URL of a clean file",
    "admin.connections.list": "Our side of every company connection (admins)",
    "admin.connections.invite": "Invite a company to connect, by tenantId or a domain it owns; approves if it "
                                "already invited us (admins; audited)",
    "admin.connections.settings": "What we share with a connected company: presence, files, who may start "
                                  "(admins; audited)",
    "admin.connections.accept": "Accept a company's invitation: both sides become active (admins; audited)",
    "admin.connections.decline": "Decline a company's invitation (admins; audited)",
    "admin.connections.revoke": "Revoke a connection, effective on the next event (admins; audited)",
    "admin.policy.get": "The company's external-access policy (admins)",
    "admin.policy.set": "Replace the company's external-access policy (admins; audited)",
    "admin.users.list": "The company's users and their roles, by user id (admins)",
    "admin.users.roles": "Set a user's roles; admins cannot drop their own admin role nor grant themselves "
                         "reviewer (admins; audited)",
    "admin.audit.list": "The company's audit log, newest first, by time window (admins)",
    "admin.usage.get": "The company's usage by UTC day: messages, posts delivered, pushes, uploads and bytes, "
                       "connection-minutes, DLP flags; JSON or CSV (admins)",
    "admin.dlp.rules.get": "The company's screening (DLP) rules (admins)",
    "admin.dlp.rules.set": "Replace the company's screening rules: validated, versioned, audited (admins)",
    "admin.dlp.flags.list": "Screening hits (flagged, redacted, blocked attempts), newest first (reviewers; "
                            "audited)",
    "admin.scim.token.get": "Whether the company has a SCIM token, and who made it when (admins)",
    "admin.scim.token.create": "Create or rotate the company's SCIM token; shown once, the old one stops at once "
                               "(admins; audited)",
    "admin.scim.roles.get": "The company's SCIM role map: the IdP's role values -> ours (admins)",
    "admin.scim.roles.set": "Replace the company's SCIM role map; applies from the IdP's next write of each user "
                            "(admins; audited)",
    "admin.scim.token.revoke": "Revoke the company's SCIM token: provisioning stops (admins; audited)",
    "admin.retention.get": "The company's default retention and the allowed periods (admins)",
    "admin.retention.set": "Set the company's default retention: new messages and files of its members (admins)",
    "admin.retention.conversation": "Override the company's retention in one conversation, for its own members' "
                                    "messages (admins)",
    "admin.holds.place": "Place a legal hold on a user or a conversation (admins; audited)",
    "admin.holds.list": "The company's legal holds (admins)",
    "admin.holds.release": "Release a legal hold (admins; audited)",
    "admin.exports.start": "Start an eDiscovery export (JSON Lines, asynchronous; admins; audited)",
    "admin.exports.get": "An export's state and progress; a presigned download when done (admins; audited)",
    "admin.files.download": "A presigned download of a file of the company's members, clean or kept by a legal "
                            "hold after its deletion (admins and reviewers; audited)",
    "admin.review.list": "The review queue: screening entries by state, kind, conversation, sender and time, "
                         "newest first (reviewers; audited)",
    "admin.review.get": "One review item with its history (reviewers; audited)",
    "admin.review.claim": "Claim an open item; of concurrent claims exactly one wins (reviewers; audited)",
    "admin.review.release": "Put a claimed item back in the queue: its claimant, or anyone after a day "
                            "(reviewers; audited)",
    "admin.review.resolve": "Resolve a claimed item as dismissed, confirmed or escalated, with a note; the "
                            "claimant only (reviewers; audited)",
    "admin.review.case": "Export one item as a case: the item, its history and the messages around it "
                         "(reviewers; audited)",
    "admin.review.cases": "Export the items about one conversation or one sender as cases, paged "
                          "(reviewers; audited)",
}

# Request examples (media-type examples; schemathesis sends them too).
EXAMPLES: dict[str, dict] = {
    "message.send": {"clientMessageId": "c-7f3a", "body": "Hello @bob"},
    "read": {"seq": 42},
    "file.upload.request": {"name": "plan.pdf", "size": 52311, "contentType": "application/pdf"},
    "admin.connections.invite": {"domain": "globex.example"},
    "admin.connections.settings": {"presence": True, "files": False, "whoMayStart": "admins"},
    "admin.policy.set": {"mode": "users", "users": ["u-123"], "groups": ["sales"], "partners": [],
                         "timezone": "Europe/Berlin", "windowMode": "inside",
                         "windows": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]},
    "admin.users.roles": {"roles": ["member", "reviewer"]},
    "admin.scim.roles.set": {"roleMap": {"global administrator": "admin", "external": "guest"}},
    "push.preferences.set": {"level": "mentions", "keywords": ["outage"], "timezone": "Europe/Berlin",
                             "quietHours": {"start": "22:00", "end": "07:00"}, "notifyAnyway": "mentions"},
    "push.conversation.set": {"level": "nothing", "mutedUntil": 1764800000000},
    "admin.push.set": {"preview": "sender"},
    "expert.ask": {"topicId": "et-0123456789abcdef", "text": "Can we ship lithium batteries to Norway?"},
    "admin.experts.topics.create": {"name": "Export control", "tiers": [{"users": ["u-123"]}, {"groups": ["g-9"]}],
                                    "waveSize": 3, "timeoutSeconds": 120},
    "admin.review.resolve": {"resolution": "dismissed", "note": "Test data, not a real card."},
    "admin.dlp.rules.set": {"version": 0, "rules": [
        {"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card",
         "action": "block"}]},
    "admin.retention.set": {"days": 365},
    "admin.retention.conversation": {"inherit": True},
    "admin.holds.place": {"kind": "user", "userId": "u-123", "name": "Case 2024-17"},
    "admin.exports.start": {"from": 1704067200000, "to": 1735689599999, "userIds": ["u-123"]},
}

ERROR_EXAMPLES = {"validation_failed": "roles must contain at least 1 items", "unauthorized": "Token expired.",
                  "forbidden": "Only the tenant's admins may do this.", "not_found": "No such conversation.",
                  "conflict": "The connection is active.", "rate_limited": "Too many requests."}


@dataclass(frozen=True)
class RestRoute:
    """One (path, method) of app.py and what its handler hands to chalicelib.rest_api.handle."""
    path: str
    method: str
    view: str
    action: str | None  # None: not a rest_api route (/health)
    fn: Any = None
    path_fields: tuple[tuple[str, str], ...] = ()  # (path parameter, field of the action's schema)
    query: tuple[str, ...] = ()
    status: int = 200


def rest_routes() -> list[RestRoute]:
    """Every route of app.py, by calling its handler with ``rest_api.handle`` replaced by a recorder."""
    import app as app_module
    from chalicelib import rest_api

    app = app_module.app
    seen: list[dict] = []

    def record(headers, raw_body, query, action, fn, path_fields, query_names=(), status=200, context=None):
        seen.append({"action": action, "fn": fn, "path_fields": path_fields, "query": tuple(query_names),
                     "status": status})
        return status, {}, {}

    class _Request:
        headers: dict = {}
        raw_body = b""
        query_params = None
        context: dict = {}

    real = rest_api.handle
    rest_api.handle, app.current_request, app.lambda_context = record, _Request(), None
    out = []
    try:
        for path, methods in app.routes.items():
            for method, entry in methods.items():
                seen.clear()
                entry.view_function(**{name: f"{{{name}}}" for name in entry.view_args})
                if not seen:
                    out.append(RestRoute(path, method, entry.view_name, None))
                    continue
                got = seen[0]
                by_value = {v: k for k, v in got["path_fields"].items()}
                out.append(RestRoute(path, method, entry.view_name, got["action"], got["fn"],
                                     tuple((name, by_value[f"{{{name}}}"]) for name in entry.view_args),
                                     got["query"], got["status"]))
    finally:
        rest_api.handle = real
        del app.current_request, app.lambda_context
    return out


def _plain(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k not in ("$schema", "title")}


def _query_schema(schema: dict) -> dict:
    """A query parameter is a string on the wire: no null (an absent parameter is the null)."""
    out = dict(schema)
    if isinstance(out.get("type"), list):
        kinds = [t for t in out["type"] if t != "null"]
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    return out


def _error_responses() -> dict:
    """One response per error status; its schema names the codes that use that status."""
    from chalicelib.protocol.errors import ERROR_CODES

    by_status: dict[int, list[str]] = {}
    for code, (status, _) in ERROR_CODES.items():
        by_status.setdefault(status, []).append(code)
    out = {}
    for status, codes in sorted(by_status.items()):
        first = next((c for c in codes if c in ERROR_EXAMPLES), codes[0])
        example = {"code": first, "message": ERROR_EXAMPLES.get(first, ERROR_CODES[first][1])}
        if first == "rate_limited":
            example["retryAfter"] = 0.8
        resp = {"description": "; ".join(f"`{c}`: {ERROR_CODES[c][1].rstrip('.')}" for c in codes),
                "content": {"application/json": {
                    "schema": {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {"error": {
                        "properties": {"code": {"enum": codes}}}}}]},
                    "example": {"error": example}}}}
        if status == 401:
            resp["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                    "description": 'Bearer error="invalid_token"'}}
        if status == 429:
            resp["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                               "description": "seconds"}}
        out[str(status)] = resp
    return out


def _operation(route: RestRoute, errors: dict) -> dict:
    from chalicelib.protocol import schemas

    action = route.action
    src = (schemas.ADMIN if action.startswith("admin.") else schemas.INBOUND)[action]
    props = src["properties"]
    fields = dict(route.path_fields)
    params = [{"name": name, "in": "path", "required": True, "schema": props[field],
               **({"description": f"the `{field}`"} if field != name else {})}
              for name, field in route.path_fields]
    params += [{"name": name, "in": "query", "required": False, "schema": _query_schema(props[name])}
               for name in route.query]
    doc = (route.fn.__doc__ or "").strip().split("\n\n")[0]
    desc = " ".join(line.strip() for line in doc.splitlines())
    if action in schemas.INBOUND:
        desc = (desc + "\n\n" if desc else "") + f"Same as the WebSocket action `{action}` (docs/protocol.md)."
    if action.startswith("admin.review.") or action == "admin.dlp.flags.list":
        desc = (desc + "\n\n" if desc else "") + ("Only the company's reviewers (role `reviewer`, per the "
                                                  "directory) may call this; anyone else, admins included, gets "
                                                  "`forbidden`. Every call is audited.")
    elif action.startswith("admin."):
        desc = (desc + "\n\n" if desc else "") + ("Only the company's admins (per the directory) may call this; "
                                                  "anyone else gets `forbidden`.")
    segs = route.path.strip("/").split("/")
    tag = f"admin: {segs[1]}" if segs[0] == "admin" else segs[0]
    op = {"operationId": action.replace(".", "_"), "summary": SUMMARIES[action], "description": desc,
          "tags": [tag], "parameters": params,
          "responses": {str(route.status): {"description": "OK", "content": {"application/json": {
              "schema": {"$ref": f"#/components/schemas/{_component(action)}"}}}},
              **{k: {"$ref": f"#/components/responses/Error{k}"} for k in errors}}}
    if "format" in route.query and "csv" in (props["format"].get("enum") or ()):
        op["responses"][str(route.status)]["content"]["text/csv"] = {
            "schema": {"type": "string", "description": "with format=csv: a header line, then one line per row"}}
    skip = {"action", "requestId", *fields.values(), *route.query}
    body_props = {k: v for k, v in props.items() if k not in skip}
    if route.method in ("POST", "PUT", "PATCH") and body_props:
        body = {"type": "object", "additionalProperties": False, "properties": body_props}
        required = [r for r in src["required"] if r not in skip]
        if required:
            body["required"] = required
        for key in ("anyOf", "allOf", "oneOf", "description"):
            if key in src:
                body[key] = src[key]
        media = {"schema": body}
        if action in EXAMPLES:
            media["example"] = EXAMPLES[action]
        op["requestBody"] = {"required": bool(required or "anyOf" in body or "oneOf" in body),
                             "content": {"application/json": media}}
    return op


# Reply component names published before the generator walked app.py (clients generated from the
# document know these types); the others are derived from the action.
COMPONENT_NAMES = {"conversation.list": "Inbox", "conversation.get": "ConversationResult", "history": "History",
                   "message.send": "Sent", "read": "ReadMarker", "file.upload.request": "UploadGrant",
                   "file.download.request": "DownloadGrant"}


def _component(action: str) -> str:
    """A reply schema's component name: ``admin.connections.list`` -> ``AdminConnectionsListReply``."""
    if action in COMPONENT_NAMES:
        return COMPONENT_NAMES[action]
    return "".join(part[:1].upper() + part[1:] for part in action.split(".")) + "Reply"


def openapi() -> dict:
    """The REST API description (OpenAPI 3.1), built from app.py's routes and the protocol's schemas."""
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ERROR_CODES

    errors = _error_responses()
    paths: dict[str, dict] = {}
    replies = {}
    for route in rest_routes():
        if f"{route.method} {route.path}" in UNDOCUMENTED:
            continue
        if route.action is None:
            if route.path == "/health":
                paths.setdefault(route.path, {})[route.method.lower()] = {
                    "operationId": "health", "summary": "Liveness", "tags": ["health"], "security": [],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Health"}}}}}}
            elif route.path == "/auth/discovery":
                paths.setdefault(route.path, {})[route.method.lower()] = {
                    "operationId": "authDiscovery", "tags": ["auth"], "security": [],
                    "summary": "Which OIDC issuer signs in the users of an email domain (public; docs/protocol.md "
                               "\"Signing in from a browser\")",
                    "parameters": [{"name": "domain", "in": "query", "required": True, "schema": {
                        "type": "string", "maxLength": 254}, "description": "an email domain (or a whole email)"}],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/AuthDiscovery"}}}},
                        "404": {"description": "not_found: no active company signs in with this domain (the same "
                                               "answer for unknown, suspended and malformed)",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
            else:
                raise ValueError(f"{route.method} {route.path} does not go through rest_api.handle: document it")
            continue
        replies[_component(route.action)] = schemas.RESPONSES[route.action]
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, errors)
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "description": "Further fields may be added; clients must ignore unknown ones.",
        "properties": {
            "code": {"enum": sorted(ERROR_CODES)}, "message": {"type": "string"},
            "retryAfter": {"type": "number", "minimum": 0, "description": "seconds (rate_limited)"},
            "limit": {"type": "integer", "description": "the size limit exceeded (payload_too_large)"},
            "side": {"type": "string", "description": "the tenant whose connection, policy or rule refused"},
            "reason": {"type": "string", "description": "why (external_access_revoked, forbidden)"},
            "ruleId": {"type": "string"}, "ruleName": {"type": "string"},
            "version": {"type": "integer", "description": "the current version (conflict on DLP rules)"},
            "allowedDays": {"type": "array", "items": {"type": "integer"}},
            "userId": {"type": "string"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Enterprise chat REST API", "version": "1.0.0",
                 "description": "For offline and mobile clients and tenant admins. Authenticate with the same "
                                "OIDC token as the WebSocket: `Authorization: Bearer <jwt>`. Every error is "
                                "`{\"error\": {\"code\", \"message\", ...}}` with the code's HTTP status "
                                "(docs/protocol.md, Error codes). Generated by `make schemas` from app.py and "
                                "chalicelib/protocol/schemas.py; do not edit."},
        "servers": [{"url": "http://127.0.0.1:8000", "description": "local stack"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                           "description": "the OIDC access token of the company's identity "
                                                          "provider (the same as on the WebSocket's $connect)"}},
            "schemas": {"Error": error, "Health": {"type": "object", "required": ["status"], "properties": {
                "status": {"const": "ok"}}}, "AuthDiscovery": schemas.AUTH_DISCOVERY, **replies},
            "responses": {f"Error{k}": v for k, v in errors.items()},
        },
        "paths": paths,
    }


# --- WebSocket: docs/asyncapi.json ----------------------------------------------------------
# AsyncAPI 3.0 from the same schemas the socket validates with (INBOUND) and its outbound frames
# (OUTBOUND); an ack's result is pinned where RESULTS or the REST reply schemas know it.
DRAFT07 = "application/schema+json;version=draft-07"


def _msg_key(name: str) -> str:
    return name.replace(".", "_")


def asyncapi() -> dict:
    """The WebSocket protocol as an AsyncAPI 3.0 document, from the view of the server."""
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ERROR_CODES

    messages: dict[str, dict] = {}

    def message(key: str, title: str, summary: str, schema: dict) -> dict:
        messages[key] = {"name": key, "title": title, "summary": summary,
                         "payload": {"schemaFormat": DRAFT07, "schema": _plain(schema)}}
        return {"$ref": f"#/channels/socket/messages/{key}"}

    operations: dict[str, dict] = {}
    error_ref = message("error", "error", "A refused frame: the code's meaning is in docs/protocol.md, Error codes "
                        "(" + ", ".join(f"`{c}`" for c in sorted(ERROR_CODES)) + ").", schemas.OUTBOUND["error"])
    generic_ack = message("ack", "ack", "The reply to an accepted action; `result` is the action's result.",
                          schemas.OUTBOUND["ack"])
    for action, schema in schemas.INBOUND.items():
        key = _msg_key(action)
        ref = message(f"in_{key}", action, f"Client → server: the `{action}` action.", schema)
        if action == "ping":
            replies = [message("pong", "pong", "The reply to `ping`.", schemas.OUTBOUND["pong"])]
        else:
            result = schemas.RESULTS.get(action) or schemas.RESPONSES.get(action)
            if result is not None:
                ack = {**schemas.OUTBOUND["ack"], "title": f"ack of {action}"}
                ack["properties"] = {**ack["properties"], "action": {"const": action}, "result": _plain(result)}
                replies = [message(f"ack_{key}", f"ack of {action}", f"The reply to an accepted `{action}`.", ack)]
            else:
                replies = [generic_ack]
        operations[f"receive_{key}"] = {
            "action": "receive", "channel": {"$ref": "#/channels/socket"}, "title": action,
            "summary": f"The client sends `{action}`; the server replies with the same requestId.",
            "messages": [ref],
            "reply": {"channel": {"$ref": "#/channels/socket"}, "messages": replies + [error_ref]}}
    for kind, schema in schemas.OUTBOUND.items():
        if kind in ("ack", "pong", "error"):
            continue
        ref = message(f"out_{_msg_key(kind)}", kind, f"Server → client: the `{kind}` event.", schema)
        operations[f"send_{_msg_key(kind)}"] = {
            "action": "send", "channel": {"$ref": "#/channels/socket"}, "title": kind,
            "summary": f"The server pushes `{kind}` events (docs/protocol.md).", "messages": [ref]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Enterprise chat WebSocket protocol", "version": "1.0.0",
                 "description": "One socket per device; JSON text frames. The client sends actions "
                                "(`{action, requestId, ...}`) and the server answers each with `ack`, `pong` or "
                                "`error` carrying the same requestId, and pushes events. Operations are from the "
                                "server's view: `receive` = a client action, `send` = an event. Prose, limits and "
                                "the handshake's refusals: docs/protocol.md. Generated by `make schemas` from "
                                "chalicelib/protocol/schemas.py; do not edit."},
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:8000", "pathname": "/ws", "protocol": "ws",
                      "description": "the local stack (`make run`)",
                      "security": [{"$ref": "#/components/securitySchemes/queryToken"},
                                   {"$ref": "#/components/securitySchemes/subprotocolToken"}]},
            "aws": {"host": "{apiId}.execute-api.{region}.amazonaws.com", "pathname": "/{stage}", "protocol": "wss",
                    "variables": {"apiId": {"description": "the API Gateway WebSocket API's id"},
                                  "region": {"description": "the AWS region"},
                                  "stage": {"default": "dev", "description": "the Chalice stage"}},
                    "security": [{"$ref": "#/components/securitySchemes/queryToken"},
                                 {"$ref": "#/components/securitySchemes/subprotocolToken"}]}},
        "channels": {"socket": {
            "address": "/", "title": "The connection",
            "description": "Every frame in both directions travels on the one socket.",
            "messages": messages,
            "bindings": {"ws": {"query": {"type": "object", "properties": {
                "token": {"type": "string", "description": "the OIDC token (or offer the subprotocols "
                                                           "`chat.v1` and `bearer.<jwt>`)"},
                "device": {"type": "string", "description": "names the device in the connection record"}}}}}}},
        "operations": operations,
        "components": {
            "securitySchemes": {
                "queryToken": {"type": "httpApiKey", "name": "token", "in": "query",
                               "description": "an OIDC access or ID token of the company's identity provider"},
                "subprotocolToken": {"type": "httpApiKey", "name": "Sec-WebSocket-Protocol", "in": "header",
                                     "description": "browsers: offer `chat.v1` and `bearer.<jwt>`; the server "
                                                    "selects `chat.v1`"}}},
    }


def main() -> int:
    os.environ.setdefault("AWS_REGION", "us-east-1")  # importing app.py needs a region, never a request
    files = rendered()
    for name, text in files.items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} files under docs/")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
