"""JSON Schemas (draft-07) of every WebSocket frame: the wire contract.

Draft-07 because fastjsonschema, which validates inbound frames in the
Lambda, does not implement 2020-12.  ``tools/export_schemas.py`` writes these
to ``docs/schemas/`` and a test keeps the two in sync; another test validates
the frames the server really sends against ``OUTBOUND``.
"""
from __future__ import annotations

from typing import Any

from ..identity import ROLES as COMPANY_ROLES
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
# A message body's limit is in UTF-8 bytes (MAX_BODY_BYTES, 8 KB by default), which a schema cannot say:
# the service checks it and answers payload_too_large (413) with `limit`, over WebSocket and REST alike.
# No maxLength here, so a long body never gets validation_failed on one surface and 413 on the other.
TEXT = {"type": "string", "minLength": 1,
        "description": "UTF-8 text, not blank, at most MAX_BODY_BYTES bytes (8 KB by default); longer is "
                       "payload_too_large (413) with `limit` in bytes."}
NAME = {"type": "string", "minLength": 1, "maxLength": 80}
TOPIC = {"type": ["string", "null"], "maxLength": 250}
EMOJI = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\s]+$"}
USER_IDS = {"type": "array", "items": ID, "minItems": 1, "maxItems": 100}
CONV = {"conversationId": ID}
EMAILS = {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 3, "maxLength": 254,
                                                      "pattern": "^[^@\\s]+@[^@\\s]+$"}}
MSG = {"conversationId": ID, "seq": SEQ}
FILE_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
CONTENT_TYPE = {"type": "string", "minLength": 3, "maxLength": 127,
                "pattern": "^[A-Za-z0-9][A-Za-z0-9!#&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#&^_.+-]*$"}
FILE = {"type": "object", "required": ["fileId", "name", "size", "contentType", "uploader"], "properties": {
    "fileId": FILE_ID, "name": FILE_NAME, "size": {"type": "integer"}, "contentType": {"type": "string"},
    "uploader": {"type": "object"}}}

# Client -> server, by action.
INBOUND: dict[str, dict[str, Any]] = {
    "ping": _action("ping"),
    "conversation.create": _action("conversation.create", {
        "kind": {"enum": ["direct", "group", "channel"]},
        "members": {"type": "array", "items": ID, "maxItems": 100},
        "memberEmails": EMAILS,
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
    "member.add": _action("member.add", {**CONV, "userIds": USER_IDS, "memberEmails": EMAILS}, ["conversationId"]),
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
    "file.upload.request": _action("file.upload.request", {
        **CONV, "name": FILE_NAME, "size": {"type": "integer", "minimum": 1, "maximum": 9007199254740991},
        "contentType": CONTENT_TYPE, "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    }, ["conversationId", "name", "size", "contentType"]),
    "file.download.request": _action("file.download.request", {"fileId": FILE_ID}, ["fileId"]),
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
        "custom": {"type": ["object", "null"]}, "devices": {"type": "integer"}, "lastSeenAt": {"type": "integer"},
        "updatedAt": {"type": "integer"}},
        ["user", "status", "custom", "devices", "lastSeenAt", "updatedAt"]),
    "file.ready": _event("file.ready", {"conversationId": ID, "seq": SEQ, "file": FILE},
                         ["conversationId", "seq", "file"]),
    "file.rejected": _event("file.rejected", {
        "conversationId": ID, "fileId": FILE_ID, "name": FILE_NAME,
        "reason": {"enum": ["malware", "type_mismatch", "size_mismatch", "checksum_mismatch", "scan_failed",
                            "not_allowed", "blocked_content"]},
        "message": {"type": "string"},
        # blocked_content only: the rule that refused the file's text, as message_blocked names it
        "ruleId": {"type": "string"}, "ruleName": {"type": "string"}, "side": {"type": "string"}},
        ["conversationId", "fileId", "name", "reason", "message"]),
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


PEER = {"peerTenantId": ID}
# Local time of day of a policy window; the service also checks start < end (not expressible here).
HHMM = {"type": "string", "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"}
# REST-only operations of tenant admins (validated like frames; not WebSocket actions).
ADMIN: dict[str, dict[str, Any]] = {
    "admin.connections.list": _action("admin.connections.list"),
    "admin.connections.invite": {**_action("admin.connections.invite", {
        "tenantId": ID, "domain": {"type": "string", "minLength": 3, "maxLength": 253}}),
        "description": "The company to invite: its tenantId, or a domain it owns.",
        "anyOf": [{"required": ["tenantId"]}, {"required": ["domain"]}]},
    "admin.connections.accept": _action("admin.connections.accept", PEER, ["peerTenantId"]),
    "admin.connections.decline": _action("admin.connections.decline", PEER, ["peerTenantId"]),
    "admin.connections.revoke": _action("admin.connections.revoke", PEER, ["peerTenantId"]),
    "admin.connections.settings": _action("admin.connections.settings", {
        **PEER, "presence": {"type": "boolean"}, "files": {"type": "boolean"},
        "whoMayStart": {"enum": ["everyone", "admins"]}}, ["peerTenantId"]),
    "admin.policy.get": _action("admin.policy.get"),
    "admin.policy.set": _action("admin.policy.set", {
        "mode": {"enum": ["off", "all", "partners", "users"]},
        "partners": {"type": "array", "items": ID, "maxItems": 500},
        "users": {"type": "array", "items": ID, "maxItems": 1000},
        "groups": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 128}, "maxItems": 100},
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64,
                     "description": "an IANA time zone name (checked on save); default UTC"},
        "windowMode": {"enum": ["inside", "outside"]},
        "windows": {"type": "array", "maxItems": 14, "items": {
            "type": "object", "required": ["start", "end"], "additionalProperties": False,
            "description": "local HH:MM, start < end (checked on save), end exclusive; days 0 = Monday, all when "
                           "omitted", "properties": {
                "days": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}, "maxItems": 7},
                "start": HHMM, "end": HHMM}}},
    }, ["mode"]),
    "admin.users.list": _action("admin.users.list", {"limit": LIMIT, "cursor": CURSOR}),
    "admin.users.roles": _action("admin.users.roles", {
        "userId": ID, "roles": {"type": "array", "items": {"enum": list(COMPANY_ROLES)},
                                "minItems": 1, "maxItems": len(COMPANY_ROLES)}}, ["userId", "roles"]),
    "admin.audit.list": _action("admin.audit.list", {
        "from": {"type": "integer", "minimum": 0}, "to": {"type": "integer", "minimum": 0},
        "actor": ID, "actionName": {"type": "string", "maxLength": 64}, "limit": LIMIT,
        "cursor": {"type": "string", "maxLength": 64}}),
}


# --- compliance: screening (DLP, docs/compliance.md "Screening (DLP)") -------------------
# Shapes only; chalicelib/dlp.py checks the rest at save time (unique ids, limits, patterns
# compiled by re2) and names the offending rule in its validation_failed message.
DLP_DETECTORS = ["payment_card", "iban", "us_ssn", "aws_access_key", "private_key", "file_unscreened"]  # = dlp.DETECTORS
DLP_RULE = {"type": "object", "required": ["id", "type", "action"], "additionalProperties": False,
            "description": "A detector rule takes `detector`, a keyword rule `keywords`, a regex rule `pattern` (RE2); "
                           "ids are unique. Checked on save; a refusal names the rule in `error.ruleId`.",
            "properties": {
    "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
    "name": {"type": "string", "minLength": 1, "maxLength": 80},
    "type": {"enum": ["detector", "keyword", "regex"]},
    "action": {"enum": ["block", "redact", "flag"]},
    "enabled": {"type": "boolean"},
    "detector": {"enum": DLP_DETECTORS},
    "keywords": {"type": "array", "minItems": 1, "maxItems": 200,
                 "items": {"type": "string", "minLength": 1, "maxLength": 1024}},
    "pattern": {"type": "string", "minLength": 1, "maxLength": 4096},
    "caseSensitive": {"type": "boolean"}}}
BLOCKED_TEXT = {"enum": ["masked", "kept", "hashed", "dropped"],
                "description": "what a blocked attempt's review entry keeps of the refused text: masked (an "
                "excerpt, every match masked), kept (the excerpt and the whole text), hashed (an HMAC of the "
                "text under the company's own key, no text), dropped (nothing); unchanged when absent"}
ADMIN.update({
    "admin.dlp.rules.get": _action("admin.dlp.rules.get"),
    "admin.dlp.rules.set": _action("admin.dlp.rules.set", {
        "rules": {"type": "array", "maxItems": 200, "items": DLP_RULE},
        "version": {"type": "integer", "minimum": 0},
        "blockedText": BLOCKED_TEXT}, ["rules"]),
    "admin.dlp.flags.list": _action("admin.dlp.flags.list", {
        "from": {"type": "integer", "minimum": 0}, "to": {"type": "integer", "minimum": 0}, "limit": LIMIT,
        "cursor": {"type": "string", "maxLength": 64}}),
})


# --- compliance: the review queue (docs/compliance.md "Review queue") ---------------------
REVIEW_ITEM_ID = {"type": "string", "pattern": "^[0-9]{13}-[0-9a-f]{32}$"}
REVIEW_STATE = {"enum": ["open", "claimed", "resolved"]}
REVIEW_KIND = {"enum": ["flag", "block"], "description": "block: a blocked attempt; flag: stored text (flagged, "
               "maybe redacted)"}
_REVIEW_WINDOW = {"from": {"type": "integer", "minimum": 0}, "to": {"type": "integer", "minimum": 0},
                  "cursor": {"type": "string", "maxLength": 64}}
_REVIEW_WHO = {"conversationId": ID, "userId": ID,
               "userTenantId": {**ID, "description": "the sender's company (default: the caller's)"}}
REVIEW_CONTEXT = {"type": "integer", "minimum": 0, "maximum": 20,
                  "description": "messages either side of the flagged one (default 5)"}
ADMIN.update({
    "admin.review.list": _action("admin.review.list", {
        "state": REVIEW_STATE, "kind": REVIEW_KIND, **_REVIEW_WHO, **_REVIEW_WINDOW, "limit": LIMIT}),
    "admin.review.get": _action("admin.review.get", {"itemId": REVIEW_ITEM_ID}, ["itemId"]),
    "admin.review.claim": _action("admin.review.claim", {"itemId": REVIEW_ITEM_ID}, ["itemId"]),
    "admin.review.release": _action("admin.review.release", {"itemId": REVIEW_ITEM_ID}, ["itemId"]),
    "admin.review.resolve": _action("admin.review.resolve", {
        "itemId": REVIEW_ITEM_ID, "resolution": {"enum": ["dismissed", "confirmed", "escalated"]},
        "note": {"type": "string", "minLength": 1, "maxLength": 2000}}, ["itemId", "resolution", "note"]),
    "admin.review.case": _action("admin.review.case", {"itemId": REVIEW_ITEM_ID, "context": REVIEW_CONTEXT},
                                 ["itemId"]),
    "admin.review.cases": {**_action("admin.review.cases", {
        **_REVIEW_WHO, "state": REVIEW_STATE, "kind": REVIEW_KIND, **_REVIEW_WINDOW,
        "limit": {"type": "integer", "minimum": 1, "maximum": 20}, "context": REVIEW_CONTEXT}),
        "description": "Name a conversationId or a userId.",
        "anyOf": [{"required": ["conversationId"]}, {"required": ["userId"]}]},
})


# --- directory sync: the tenant's SCIM token (docs/scim.md) ----------------------------
# The role map: the IdP's role values (matched case-insensitively, stored lower-cased) -> one of ours.
SCIM_ROLE_MAP = {"type": "object", "maxProperties": 100, "propertyNames": {"minLength": 1, "maxLength": 256},
                 "additionalProperties": {"enum": list(COMPANY_ROLES)},
                 "description": "the IdP's role value -> admin | member | guest | reviewer; keys are matched "
                                "case-insensitively; a role neither here nor one of ours maps to member; {} clears"}
# The SCIM endpoints themselves speak RFC 7643/7644 (validated by scim2-models in the scim function).
ADMIN.update({
    "admin.scim.token.get": _action("admin.scim.token.get"),
    "admin.scim.token.create": _action("admin.scim.token.create"),
    "admin.scim.token.revoke": _action("admin.scim.token.revoke"),
    "admin.scim.roles.get": _action("admin.scim.roles.get"),
    "admin.scim.roles.set": _action("admin.scim.roles.set", {"roleMap": SCIM_ROLE_MAP}, ["roleMap"]),
})


# --- compliance: retention, legal holds, export (docs/compliance.md) ----------------------
# Request bodies in ADMIN; COMPLIANCE_RESPONSES are the replies (docs/openapi.json, checked by the e2e tests).
from ..retention import ALLOWED_DAYS  # noqa: E402 - one list for schemas, write path and S3 lifecycle rules

RETENTION_DAYS = {"type": ["integer", "null"], "enum": [*ALLOWED_DAYS, None],
                  "description": "one of the allowed periods (days); null = keep forever"}
EPOCH_MS = {"type": "integer", "minimum": 0, "maximum": 9_999_999_999_999}
HOLD_ID = {"type": "string", "pattern": "^[0-9]{13}-[0-9a-f]{12}$"}
EXPORT_ID = HOLD_ID
ADMIN.update({
    "admin.retention.get": _action("admin.retention.get"),
    "admin.retention.set": _action("admin.retention.set", {"days": RETENTION_DAYS}, ["days"]),
    "admin.retention.conversation": {**_action("admin.retention.conversation", {
        **CONV, "days": RETENTION_DAYS, "inherit": {"type": "boolean"}}, ["conversationId"]),
        "description": "days sets the override; inherit: true removes it.",
        "anyOf": [{"required": ["days"]}, {"required": ["inherit"], "properties": {"inherit": {"const": True}}}]},
    "admin.holds.place": {**_action("admin.holds.place", {
        "kind": {"enum": ["user", "conversation"]}, "userId": ID, "conversationId": ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 200}}, ["kind"]),
        "description": "A user hold names userId, a conversation hold conversationId.",
        "allOf": [{"if": {"properties": {"kind": {"const": k}}}, "then": {"required": [f]}}
                  for k, f in (("user", "userId"), ("conversation", "conversationId"))]},
    "admin.holds.list": _action("admin.holds.list", {"limit": LIMIT, "cursor": {"type": "string", "maxLength": 64}}),
    "admin.holds.release": _action("admin.holds.release", {"holdId": HOLD_ID}, ["holdId"]),
    "admin.exports.start": _action("admin.exports.start", {
        "from": EPOCH_MS, "to": EPOCH_MS, "userIds": USER_IDS,
        "conversationIds": {"type": "array", "items": ID, "minItems": 1, "maxItems": 100}}, ["from", "to"]),
    "admin.exports.get": _action("admin.exports.get", {"exportId": EXPORT_ID}, ["exportId"]),
    # a company member's file, also one deleted while a legal hold covered it (docs/compliance.md)
    "admin.files.download": _action("admin.files.download", {"fileId": FILE_ID}, ["fileId"]),
})

_NULL_INT = {"type": ["integer", "null"]}
_NULL_STR = {"type": ["string", "null"]}
_RETENTION = {"type": "object", "required": ["days", "allowedDays", "updatedAt"], "properties": {
    "days": _NULL_INT, "allowedDays": {"type": "array", "items": {"type": "integer"}}, "updatedAt": _NULL_INT,
    "appliesTo": {"type": "string"},
    "backfill": {"type": ["object", "null"], "description": "the recomputation of existing messages' expiry a "
                 "change started (null: none yet); a newer change supersedes a running one",
                 "required": ["state", "processed", "startedAt"],
                 "properties": {"state": {"enum": ["running", "done"]}, "processed": {"type": "integer"},
                                "startedAt": {"type": "integer"}, "finishedAt": _NULL_INT,
                                "conversationIds": {"type": ["array", "null"], "items": {"type": "string"}}}}}}
_HOLD = {"type": "object", "required": ["holdId", "kind", "state", "createdAt", "createdBy", "sweep", "swept"],
         "properties": {"holdId": {"type": "string"}, "kind": {"enum": ["user", "conversation"]},
                        "userId": {"type": "string"}, "conversationId": {"type": "string"}, "name": _NULL_STR,
                        "state": {"enum": ["active", "released"]}, "createdAt": {"type": "integer"},
                        "createdBy": {"type": "string"}, "releasedAt": _NULL_INT, "releasedBy": _NULL_STR,
                        "sweep": {"enum": ["pending", "done"]}, "swept": {"type": "integer"}}}
_EXPORT = {"type": "object", "required": ["exportId", "state", "from", "to", "progress", "download"], "properties": {
    "exportId": {"type": "string"}, "state": {"enum": ["queued", "running", "done", "failed"]},
    "from": {"type": "integer"}, "to": {"type": "integer"},
    "userIds": {"type": ["array", "null"], "items": {"type": "string"}},
    "conversationIds": {"type": ["array", "null"], "items": {"type": "string"}},
    "createdAt": {"type": "integer"}, "createdBy": {"type": "string"},
    "progress": {"type": "object", "required": ["conversationsTotal", "conversationsDone", "messages", "files",
                                                "tombstones", "bytes"],
                 "properties": {"conversationsTotal": {"type": "integer", "description":
                                                       "conversations listed so far (all of them once listingDone)"},
                                "listingDone": {"type": "boolean", "description":
                                                "every conversation in scope has been listed (listed in chunks)"}},
                 "additionalProperties": {"type": "integer"}},
    "error": _NULL_STR, "finishedAt": _NULL_INT,
    "download": {"type": ["object", "null"], "required": ["url", "expiresAt"], "properties": {
        "url": {"type": "string"}, "expiresAt": {"type": "integer"}}}}}
COMPLIANCE_RESPONSES: dict[str, dict[str, Any]] = {
    "admin.retention.get": {"type": "object", "required": ["retention"], "properties": {"retention": _RETENTION}},
    "admin.retention.set": {"type": "object", "required": ["retention"], "properties": {"retention": _RETENTION}},
    "admin.retention.conversation": {
        "type": "object", "required": ["conversationId", "override", "days", "allowedDays"], "properties": {
            "conversationId": {"type": "string"}, "override": {"type": "boolean"}, "days": _NULL_INT,
            "allowedDays": {"type": "array", "items": {"type": "integer"}}}},
    "admin.holds.place": {"type": "object", "required": ["hold"], "properties": {"hold": _HOLD}},
    "admin.holds.list": {"type": "object", "required": ["holds", "nextCursor"], "properties": {
        "holds": {"type": "array", "items": _HOLD}, "nextCursor": _NULL_STR}},
    "admin.holds.release": {"type": "object", "required": ["hold"], "properties": {"hold": _HOLD}},
    "admin.exports.start": {"type": "object", "required": ["export"], "properties": {"export": _EXPORT}},
    "admin.exports.get": {"type": "object", "required": ["export"], "properties": {"export": _EXPORT}},
    "admin.files.download": {"type": "object", "required": ["file", "download"], "properties": {
        "file": {"type": "object", "required": ["fileId", "name", "size", "contentType", "uploader", "conversationId",
                                                "status", "versionId", "held", "heldAt"], "properties": {
            "fileId": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"},
            "contentType": {"type": "string"}, "uploader": {"type": "object"}, "conversationId": {"type": "string"},
            "status": {"enum": ["clean", "deleted"]}, "seq": _NULL_INT, "createdAt": {"type": "integer"},
            "versionId": _NULL_STR, "held": {"type": "boolean"}, "heldAt": _NULL_INT}},
        "download": {"type": "object", "required": ["url", "expiresAt"], "properties": {
            "url": {"type": "string"}, "expiresAt": {"type": "integer"}}}}},
}


# --- people: users.get (docs/protocol.md "People") ----------------------------------------
# A user key as views and events spell it: "<tenantId>#<userId>", each part an ID.
USER_KEY = {"type": "string", "minLength": 3, "maxLength": 257,
            "pattern": "^[A-Za-z0-9._:-]{1,128}#[A-Za-z0-9._:-]{1,128}$"}
INBOUND["users.get"] = _action("users.get", {
    "keys": {"type": "array", "items": USER_KEY, "minItems": 1, "maxItems": 100}}, ["keys"])
PERSON = {"type": "object", "additionalProperties": False,
          "required": ["tenantId", "userId", "displayName", "email", "external", "active"], "properties": {
              "tenantId": {"type": "string"}, "userId": {"type": "string"}, "displayName": {"type": "string"},
              "email": {"type": ["string", "null"]}, "external": {"type": "boolean"},
              "active": {"type": "boolean"}}}
# users.search (docs/protocol.md "People search"): q's longest word needs >= 2 characters (the service
# says so as validation_failed); the cursor is opaque and tied to the query.
INBOUND["users.search"] = _action("users.search", {
    "q": {"type": "string", "minLength": 1, "maxLength": 256,
          "description": "words; each must start a word of the person's name or email (case and accents ignored)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "default 20"},
    "cursor": {"type": ["string", "null"], "maxLength": 2048, "pattern": "^[A-Za-z0-9_=-]*$",
               "description": "the previous page's nextCursor (base64url)"}}, ["q"])
_SEARCH_RESULT = {"type": "object", "additionalProperties": False, "required": ["users", "nextCursor"],
                  "properties": {"users": {"type": "array", "items": PERSON, "maxItems": 50},
                                 "nextCursor": {"type": ["string", "null"],
                                                "description": "pass as `cursor` (with the same q) for the next "
                                                               "page; null on the last. A page may hold fewer "
                                                               "than `limit` people and still have a cursor"}}}
# --- mobile push (docs/push.md): the caller's own devices -----------------------------------
DEVICE_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"}
INBOUND["push.register"] = _action("push.register", {
    "deviceId": {**DEVICE_ID, "description": "the app's own id of this installation (stable across token rotation)"},
    "platform": {"enum": ["apns", "apns_sandbox", "fcm"]},
    "appId": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$",
              "description": "bundle id / package name; with platform it names the SNS platform application"},
    "token": {"type": "string", "minLength": 8, "maxLength": 4096, "pattern": "^[A-Za-z0-9_:.\\-]+$",
              "description": "the APNs device token (hex) or FCM registration token"},
    "locale": {"type": ["string", "null"], "maxLength": 35, "pattern": "^[A-Za-z0-9_-]*$"}},
    ["deviceId", "platform", "appId", "token"])
INBOUND["push.unregister"] = _action("push.unregister", {"deviceId": DEVICE_ID}, ["deviceId"])
PUSH_DEVICE = {"type": "object", "additionalProperties": False,
               "required": ["deviceId", "platform", "appId", "locale", "registeredAt"], "properties": {
                   "deviceId": {"type": "string"}, "platform": {"enum": ["apns", "apns_sandbox", "fcm"]},
                   "appId": {"type": "string"}, "locale": {"type": ["string", "null"]},
                   "registeredAt": {"type": "integer"}}}
_PUSH_REGISTER_RESULT = {"type": "object", "additionalProperties": False, "required": ["device"],
                         "properties": {"device": PUSH_DEVICE}}
_PUSH_UNREGISTER_RESULT = {"type": "object", "additionalProperties": False, "required": ["deviceId", "removed"],
                           "properties": {"deviceId": {"type": "string"},
                                          "removed": {"type": "boolean",
                                                      "description": "false: the caller had no such device"}}}
# Preferences (docs/push.md "Preferences"): the caller's own, and per conversation on the member item.
PUSH_LEVEL = {"enum": ["all", "mentions", "nothing"],
              "description": "all: every message; mentions: DMs, @-mentions of me and my keywords; nothing"}
_NOTIFY_ANYWAY = {"enum": ["none", "mentions", "mentions_and_direct"],
                  "description": "what still pushes in quiet hours and (statusHolds) do_not_disturb / in_meeting"}
_QUIET_HOURS = {"type": ["object", "null"], "additionalProperties": False, "required": ["start", "end"],
                "description": "local HH:MM in `timezone`, start != end (start > end spans midnight), end "
                               "exclusive; days (0 = Monday) are the days a window starts, all when omitted; "
                               "null = none",
                "properties": {"start": HHMM, "end": HHMM,
                               "days": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6},
                                        "maxItems": 7}}}
_PREFS_FIELDS = {
    "level": {**PUSH_LEVEL, "description": "the default level of my conversations (default mentions)"},
    "keywords": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 64},
                 "description": "words or phrases that push like a mention (whole words; case and accents "
                                "ignored) in conversations of at most PUSH_GROUP_MEMBERS members"},
    "timezone": {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "IANA time zone of quietHours (checked on save); default UTC"},
    "quietHours": _QUIET_HOURS,
    "notifyAnyway": _NOTIFY_ANYWAY,
    "statusHolds": {"type": "boolean", "description": "do_not_disturb / in_meeting hold pushes (default true)"}}
INBOUND["push.preferences.get"] = _action("push.preferences.get")
INBOUND["push.preferences.set"] = _action("push.preferences.set", dict(_PREFS_FIELDS))
INBOUND["push.conversation.set"] = _action("push.conversation.set", {
    "conversationId": ID,
    "level": {"enum": ["all", "mentions", "nothing", None],
              "description": "my level here; null follows my default level"},
    "mutedUntil": {"type": ["integer", "null"], "minimum": 0, "maximum": 9007199254740991,
                   "description": "ms since the epoch: no push from here until then; null unmutes"}},
    ["conversationId"])
_PREFS_VIEW = {"type": "object", "additionalProperties": False,
               "required": ["level", "keywords", "timezone", "quietHours", "notifyAnyway", "statusHolds", "updatedAt"],
               "properties": {**_PREFS_FIELDS, "keywords": {"type": "array", "items": {"type": "string"}},
                              "updatedAt": {"type": ["integer", "null"], "description": "null: never set (defaults)"}}}
_PUSH_PREFS_RESULT = {"type": "object", "additionalProperties": False, "required": ["preferences"],
                      "properties": {"preferences": _PREFS_VIEW}}
_PUSH_CONVERSATION_RESULT = {"type": "object", "additionalProperties": False, "required": ["conversationId", "push"],
                             "properties": {"conversationId": {"type": "string"}, "push": {
                                 "type": "object", "additionalProperties": False, "required": ["level", "mutedUntil"],
                                 "properties": {"level": {"enum": ["all", "mentions", "nothing", None]},
                                                "mutedUntil": _NULL_INT}}}}
# Tenant preview policy (admins, REST only).
ADMIN["admin.push.get"] = _action("admin.push.get")
ADMIN["admin.push.set"] = _action("admin.push.set", {"preview": {
    "enum": ["full", "sender", "none"],
    "description": "what a notification of a message to our users shows: full (sender and the DLP-redacted "
                   "text preview), sender (sender and \"New message\"), none (\"New message\" only); across "
                   "companies the stricter side wins"}}, ["preview"])
_PUSH_POLICY = {"type": "object", "additionalProperties": False, "required": ["preview"],
                "properties": {"preview": {"enum": ["full", "sender", "none"]}}}
# The ``result`` of an ``ack``, for actions whose result shape is pinned (docs/schemas/result/).
RESULTS: dict[str, dict[str, Any]] = {
    "push.register": {"$schema": DRAFT, "title": "push.register result", **_PUSH_REGISTER_RESULT},
    "push.unregister": {"$schema": DRAFT, "title": "push.unregister result", **_PUSH_UNREGISTER_RESULT},
    "push.preferences.get": {"$schema": DRAFT, "title": "push.preferences.get result", **_PUSH_PREFS_RESULT},
    "push.preferences.set": {"$schema": DRAFT, "title": "push.preferences.set result", **_PUSH_PREFS_RESULT},
    "push.conversation.set": {"$schema": DRAFT, "title": "push.conversation.set result",
                              **_PUSH_CONVERSATION_RESULT},
    "users.search": {"$schema": DRAFT, "title": "users.search result", **_SEARCH_RESULT},
    "users.get": {"$schema": DRAFT, "title": "users.get result", "type": "object", "additionalProperties": False,
                  "required": ["users", "notFound"], "properties": {
                      "users": {"type": "array", "items": PERSON, "maxItems": 100},
                      "notFound": {"type": "array", "items": {"type": "string"}, "maxItems": 100}}},
}


# --- REST replies (docs/openapi.json) ------------------------------------------------------
# The body of a 2xx reply of every REST route, by the action its handler validates as.
# tools/export_schemas.py builds docs/openapi.json from app.py's routes, these and the request
# schemas above; tests/e2e/test_fuzz.py checks real replies against them (schemathesis).
_OBJ = {"type": "object"}
_PAGE_CURSOR = {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"}
LINK = {"type": "object", "additionalProperties": False,
        "required": ["peerTenantId", "state", "presence", "files", "whoMayStart", "updatedAt", "revokedAt"],
        "properties": {
            "peerTenantId": {"type": "string"},
            "state": {"enum": ["invited", "pending", "active", "declined", "revoked"],
                      "description": "our side: invited = we asked, pending = they asked us"},
            "presence": {"type": "boolean"}, "files": {"type": "boolean"},
            "whoMayStart": {"enum": ["everyone", "admins"]}, "updatedAt": {"type": "integer"},
            "revokedAt": _NULL_INT}}
_CONNECTION = {"type": "object", "required": ["connection"], "properties": {"connection": LINK}}
_POLICY = {"type": "object", "required": ["policy"], "properties": {"policy": {
    "type": "object", "required": ["mode"],
    "properties": {k: v for k, v in ADMIN["admin.policy.set"]["properties"].items() if k not in ("action", "requestId")}}}}
_SCIM_TOKEN = {"type": "object", "additionalProperties": False, "required": ["configured", "createdAt", "createdBy"],
               "properties": {"configured": {"type": "boolean"}, "createdAt": _NULL_INT, "createdBy": _NULL_STR}}
_SCIM_ROLES = {"type": "object", "additionalProperties": False, "required": ["roleMap", "roles"], "properties": {
    "roleMap": {"type": "object", "additionalProperties": {"enum": list(COMPANY_ROLES)}},
    "roles": {"type": "array", "items": {"enum": list(COMPANY_ROLES)}, "description": "the roles a map may name"}}}
_DLP_RULES = {"type": "object", "required": ["rules", "version", "blockedText", "detectors", "limits"], "properties": {
    "rules": {"type": "array", "items": DLP_RULE}, "version": {"type": "integer"}, "blockedText": BLOCKED_TEXT,
    "detectors": {"type": "array", "items": {"enum": DLP_DETECTORS}},
    "limits": {"type": "object", "additionalProperties": {"type": "integer"}}}}
_DLP_FLAG = {"type": "object", "required": ["id", "at", "source", "conversationId", "sender", "ruleIds", "action",
                                            "excerpt", "textPolicy", "text", "textTruncated", "textHash"],
             "properties": {
    "id": {"type": "string"}, "at": {"type": "integer"},
    "source": {"enum": ["message", "edit", "file", "file_content", "name", "topic", "reaction", "status", "expert.question"]},
    "conversationId": {"type": ["string", "null"], "description": "null for a custom status and for a "
                       "refused conversation.create"}, "seq": _NULL_INT,
    "messageId": _NULL_STR, "fileId": _NULL_STR,
    "sender": {"type": "object"}, "ruleIds": {"type": "array", "items": {"type": "string"}},
    "action": {"enum": ["flag", "redact", "block"], "description": "what happened to the text: delivered as "
               "typed, redacted, or refused (block: a blocked attempt, nothing was stored)"},
    "excerpt": {"type": "string", "description": "around the first match, every match masked (empty for a "
                "blocked attempt under hashed or dropped)"},
    "textPolicy": {"enum": ["masked", "kept", "hashed", "dropped", None],
                   "description": "a blocked attempt: the company's blockedText when it was refused; null for a "
                   "flag and for attempts recorded before the setting existed (masked)"},
    "text": {"type": ["string", "null"], "description": "kept: the whole refused text (at most 16,000 characters)"},
    "textTruncated": {"type": ["boolean", "null"], "description": "kept: the text was longer and is cut"},
    "textHash": {"type": ["string", "null"], "pattern": "^hmac-sha256:[0-9a-f]{64}$",
                 "description": "hashed: equal for equal texts within the company"}}}
_REVIEW_ITEM = {"type": "object", "required": [*_DLP_FLAG["required"], "itemId", "kind", "state", "claimedBy",
                                                "claimedAt", "resolution", "note", "resolvedBy", "resolvedAt"],
                "properties": {
    **_DLP_FLAG["properties"], "itemId": {"type": "string"}, "kind": REVIEW_KIND, "state": REVIEW_STATE,
    "claimedBy": _NULL_STR, "claimedAt": _NULL_INT,
    "resolution": {"enum": ["dismissed", "confirmed", "escalated", None]}, "note": _NULL_STR,
    "resolvedBy": _NULL_STR, "resolvedAt": _NULL_INT,
    "history": {"type": "array", "description": "every transition, oldest first", "items": {
        "type": "object", "required": ["at", "by", "event"], "properties": {
            "at": {"type": "integer"}, "by": {"type": "string"}, "event": {"enum": ["claim", "release", "resolve"]},
            "resolution": {"type": "string"}, "note": {"type": "string"},
            "claimedBy": {"type": "string", "description": "release: whose claim ended"}}}}}}
_REVIEW_ONE = {"type": "object", "required": ["item"], "properties": {"item": _REVIEW_ITEM}}
_CASE = {"type": "object", "required": ["item", "context"], "properties": {
    "item": _REVIEW_ITEM,
    "context": {"type": "object", "required": ["conversationId", "anchorSeq", "messages", "gone", "reason"],
                "properties": {
        "conversationId": _NULL_STR, "anchorSeq": _NULL_INT,
        "messages": {"type": "array", "items": {"type": "object", "required": [
            "seq", "messageId", "sender", "kind", "createdAt", "body", "deleted", "flagged"], "properties": {
            "seq": {"type": "integer"}, "messageId": {"type": "string"}, "sender": {"type": "object"},
            "kind": {"type": "string"}, "createdAt": {"type": "integer"}, "body": _NULL_STR,
            "editedAt": _NULL_INT, "deleted": {"type": "boolean"}, "revisions": {"type": "array"},
            "threadRootSeq": _NULL_INT, "file": {"type": ["object", "null"]},
            "flagged": {"type": "boolean", "description": "the message the entry is about"}}}},
        "gone": {"type": "array", "items": {"type": "integer"},
                 "description": "seqs in the window no longer kept (retention) or past a revocation"},
        "reason": {"enum": ["no_conversation", "conversation_gone", "no_anchor", None],
                   "description": "why there is no context"}}}}}
REVIEW_RESPONSES: dict[str, dict[str, Any]] = {
    "admin.review.list": {"type": "object", "required": ["items", "nextCursor"], "properties": {
        "items": {"type": "array", "items": _REVIEW_ITEM}, "nextCursor": _PAGE_CURSOR}},
    "admin.review.get": _REVIEW_ONE, "admin.review.claim": _REVIEW_ONE, "admin.review.release": _REVIEW_ONE,
    "admin.review.resolve": _REVIEW_ONE,
    "admin.review.case": {"type": "object", "required": ["case", "exportedAt", "exportedBy"], "properties": {
        "case": _CASE, "exportedAt": {"type": "integer"}, "exportedBy": {"type": "string"}}},
    "admin.review.cases": {"type": "object", "required": ["cases", "exportedAt", "exportedBy", "nextCursor"],
                           "properties": {"cases": {"type": "array", "items": _CASE},
                                          "exportedAt": {"type": "integer"}, "exportedBy": {"type": "string"},
                                          "nextCursor": _PAGE_CURSOR}},
}
RESPONSES: dict[str, dict[str, Any]] = {
    # conversations, messages, files (the WebSocket ack's result, the same object)
    "conversation.list": {"type": "object", "required": ["conversations", "nextCursor"], "properties": {
        "conversations": {"type": "array", "items": _OBJ}, "nextCursor": _PAGE_CURSOR}},
    "conversation.get": {"type": "object", "required": ["conversation"], "properties": {"conversation": _OBJ}},
    "users.search": _SEARCH_RESULT,
    "push.register": _PUSH_REGISTER_RESULT,
    "push.unregister": _PUSH_UNREGISTER_RESULT,
    "push.preferences.get": _PUSH_PREFS_RESULT, "push.preferences.set": _PUSH_PREFS_RESULT,
    "push.conversation.set": _PUSH_CONVERSATION_RESULT,
    "admin.push.get": _PUSH_POLICY, "admin.push.set": _PUSH_POLICY,
    "history": {"type": "object", "required": ["messages", "nextBeforeSeq"], "properties": {
        "messages": {"type": "array", "items": _OBJ}, "nextBeforeSeq": _NULL_INT}},
    "message.send": {"type": "object", "required": ["message", "duplicate"], "properties": {
        "message": _OBJ, "duplicate": {"type": "boolean"}}},
    "read": {"type": "object", "required": ["conversationId", "lastReadSeq", "unread"], "properties": {
        "conversationId": {"type": "string"}, "lastReadSeq": {"type": "integer"}, "unread": {"type": "integer"}}},
    "file.upload.request": {"type": "object", "required": ["file", "upload"], "properties": {
        "file": _OBJ, "upload": {"type": "object", "required": ["method", "url", "fields", "expiresAt"],
                                 "properties": {"method": {"const": "POST"}, "url": {"type": "string"},
                                                "fields": {"type": "object"}, "expiresAt": {"type": "integer"}}}}},
    "file.download.request": {"type": "object", "required": ["file", "download"], "properties": {
        "file": _OBJ, "download": {"type": "object", "required": ["url", "expiresAt"], "properties": {
            "url": {"type": "string"}, "expiresAt": {"type": "integer"}}}}},
    # tenant admins: connections, policy, users, audit (docs/federation.md)
    "admin.connections.list": {"type": "object", "required": ["connections"], "properties": {
        "connections": {"type": "array", "items": LINK}}},
    "admin.connections.invite": _CONNECTION, "admin.connections.accept": _CONNECTION,
    "admin.connections.decline": _CONNECTION, "admin.connections.revoke": _CONNECTION,
    "admin.connections.settings": _CONNECTION,
    "admin.policy.get": _POLICY, "admin.policy.set": _POLICY,
    "admin.users.list": {"type": "object", "required": ["users", "nextCursor"], "properties": {
        "users": {"type": "array", "items": {
            "type": "object", "required": ["userId", "email", "displayName", "roles", "status", "groups"],
            "properties": {"userId": {"type": "string"}, "email": {"type": "string"},
                           "displayName": {"type": "string"},
                           "roles": {"type": "array", "items": {"type": "string"}},
                           "status": {"type": "string", "description": "active | deactivated"},
                           "groups": {"type": "array", "items": {"type": "string"}}}}},
        "nextCursor": _PAGE_CURSOR}},
    "admin.users.roles": {"type": "object", "required": ["userId", "roles"], "properties": {
        "userId": {"type": "string"}, "roles": {"type": "array", "items": {"enum": list(COMPANY_ROLES)}}}},
    "admin.audit.list": {"type": "object", "required": ["entries", "nextCursor"], "properties": {
        "entries": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "at", "actor", "action", "target", "before", "after", "sourceIp", "requestId"],
            "properties": {"id": {"type": "string"}, "at": {"type": "integer"}, "actor": {"type": "string"},
                           "action": {"type": "string"}, "target": _NULL_STR,
                           "before": {"type": ["object", "null"]}, "after": {"type": ["object", "null"]},
                           "sourceIp": _NULL_STR, "requestId": _NULL_STR}}},
        "nextCursor": _PAGE_CURSOR}},
    # screening (DLP)
    "admin.dlp.rules.get": _DLP_RULES, "admin.dlp.rules.set": _DLP_RULES,
    "admin.dlp.flags.list": {"type": "object", "required": ["flags", "nextCursor"], "properties": {
        "flags": {"type": "array", "items": _DLP_FLAG}, "nextCursor": _PAGE_CURSOR}},
    # directory sync: the SCIM token (docs/scim.md); the secret only in the reply that creates it
    "admin.scim.token.get": {"type": "object", "required": ["scimToken"], "properties": {"scimToken": _SCIM_TOKEN}},
    "admin.scim.token.create": {"type": "object", "required": ["token", "scimToken"], "properties": {
        "token": {"type": "string", "pattern": "^scim_", "description": "shown once; only its hash is stored"},
        "scimToken": _SCIM_TOKEN}},
    "admin.scim.token.revoke": {"type": "object", "required": ["scimToken"], "properties": {
        "scimToken": _SCIM_TOKEN}},
    "admin.scim.roles.get": _SCIM_ROLES, "admin.scim.roles.set": _SCIM_ROLES,
    **COMPLIANCE_RESPONSES,
    **REVIEW_RESPONSES,
}

# GET /auth/discovery (public, chalicelib/discovery.py; docs/protocol.md "Signing in from a browser").
AUTH_DISCOVERY = {"type": "object", "additionalProperties": False, "required": ["domain", "issuer", "clientId"],
                  "properties": {
                      "domain": {"type": "string", "description": "the domain asked for, lower-cased"},
                      "issuer": {"type": "string", "format": "uri",
                                 "description": "the company's OIDC issuer: fetch "
                                                "<issuer>/.well-known/openid-configuration for its endpoints"},
                      "clientId": {"type": "string",
                                   "description": "the client_id of the web page at that issuer"}}}


# --- ask the experts (docs/experts.md) -----------------------------------------------------
TOPIC_ID = {**ID, "description": "et-<16 hex>"}
QUESTION_ID = {**ID, "description": "<topicId>.<asked at, ms, 13 digits>.<12 hex>"}
_EXPERT_IDS = {"type": "array", "items": ID, "maxItems": 100}
EXPERT_TIER = {"type": "object", "additionalProperties": False, "properties": {
    "users": {**_EXPERT_IDS, "description": "user ids of the company"},
    "groups": {**_EXPERT_IDS, "description": "directory group ids (SCIM) of the company; their members now"}}}
_TOPIC_FIELDS = {
    "name": NAME,
    "tiers": {"type": "array", "items": EXPERT_TIER, "minItems": 1, "maxItems": 3,
              "description": "tier 1 first; the next tier is asked when every reachable member of one was"},
    "users": {**_EXPERT_IDS, "description": "shorthand for one tier (not with tiers)"},
    "groups": {**_EXPERT_IDS, "description": "shorthand for one tier (not with tiers)"},
    "waveSize": {"type": "integer", "minimum": 1, "maximum": 20, "description": "experts offered at once (3)"},
    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 900,
                       "description": "wait for an accept before the next wave (120; SQS delays at most 900)"},
}
ADMIN.update({
    "admin.experts.topics.list": _action("admin.experts.topics.list"),
    "admin.experts.topics.create": _action("admin.experts.topics.create", _TOPIC_FIELDS, ["name"]),
    "admin.experts.topics.update": _action("admin.experts.topics.update", {"topicId": TOPIC_ID, **_TOPIC_FIELDS},
                                           ["topicId"]),
    "admin.experts.topics.delete": _action("admin.experts.topics.delete", {"topicId": TOPIC_ID}, ["topicId"]),
    "admin.experts.topics.share": _action("admin.experts.topics.share", {
        "topicId": TOPIC_ID, "peerTenantId": {**ID, "description": "a company connected to yours (active)"},
        "shared": {"type": "boolean", "description": "offer the topic to it (its admin accepts), or stop"}},
        ["topicId", "peerTenantId", "shared"]),
    "admin.experts.shared.accept": _action("admin.experts.shared.accept", {
        "peerTenantId": {**ID, "description": "the connected company sharing the topic"}, "topicId": TOPIC_ID,
        "accepted": {"type": "boolean", "description": "let your people ask it, or withdraw that"}},
        ["peerTenantId", "topicId", "accepted"]),
})
INBOUND["expert.ask"] = _action("expert.ask", {
    "tenantId": {**ID, "description": "the topic's company when it is a connected company's shared topic "
                                      "(expert.topics lists them); default: yours"},
    "topicId": TOPIC_ID, "text": {"type": "string", "minLength": 1, "maxLength": 4000}}, ["topicId", "text"])
INBOUND["expert.accept"] = _action("expert.accept", {"questionId": QUESTION_ID}, ["questionId"])
INBOUND["expert.decline"] = _action("expert.decline", {"questionId": QUESTION_ID}, ["questionId"])
INBOUND["expert.cancel"] = _action("expert.cancel", {
    "tenantId": {**ID, "description": "the topic's company when it is a connected company's shared topic "
                                      "(expert.topics lists them); default: yours"},
    "questionId": QUESTION_ID}, ["questionId"])
INBOUND["expert.topics"] = _action("expert.topics")
INBOUND["expert.answered"] = _action("expert.answered", {
    "tenantId": {**ID, "description": "the topic's company when it is a connected company's shared topic "
                                      "(expert.topics lists them); default: yours"},
    "questionId": QUESTION_ID,
    "messageSeqs": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 10,
                    "description": "the expert's messages in the question's conversation that answer it"}},
    ["questionId", "messageSeqs"])
INBOUND["expert.search"] = _action("expert.search", {
    "q": {"type": "string", "minLength": 1, "maxLength": 500,
          "description": "words (or the start of a draft question, at most 500 characters: it also travels "
                         "in a GET query string): entries with words starting with its longest ones"},
    "topicId": {**TOPIC_ID, "description": "only this topic's entries (without q: its newest)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "10"}})
INBOUND["expert.queue"] = _action("expert.queue", {
    "topicId": TOPIC_ID, "limit": {"type": "integer", "minimum": 1, "maximum": 50,
                                   "description": "oldest first (50)"}}, ["topicId"])
_EXPERT_TOPIC = {"type": "object", "additionalProperties": False,
                 "required": ["topicId", "name", "tiers", "waveSize", "timeoutSeconds", "createdAt", "updatedAt"],
                 "properties": {"topicId": {"type": "string"}, "name": {"type": "string"},
                                "tiers": {"type": "array", "items": EXPERT_TIER},
                                "waveSize": {"type": "integer"}, "timeoutSeconds": {"type": "integer"},
                                "sharedWith": {"type": "array", "items": {"type": "string"},
                                               "description": "connected companies it is offered to"},
                                "createdAt": {"type": "integer"}, "updatedAt": {"type": "integer"}}}
_EXPERT_QUESTION = {"type": "object", "additionalProperties": False,
                    "required": ["questionId", "topicId", "tenantId", "topicName", "text", "state", "waiting",
                                 "createdAt", "conversationId"],
                    "properties": {"questionId": {"type": "string"}, "topicId": {"type": "string"},
                                   "tenantId": {"type": "string", "description": "the topic's company"},
                                   "topicName": {"type": ["string", "null"]}, "text": {"type": "string"},
                                   "state": {"enum": ["open", "accepted", "answered", "cancelled"]},
                                   "waiting": {"type": "boolean",
                                               "description": "every reachable expert was offered it; it waits "
                                                              "in the topic's queue"},
                                   "createdAt": {"type": "integer"},
                                   "conversationId": {"type": ["string", "null"]},
                                   "askedBy": {"type": ["string", "null"],
                                               "description": "the asker's display name (expert.queue only)"}}}
_EXPERT_ASK_RESULT = {"type": "object", "additionalProperties": False, "required": ["question"],
                      "properties": {"question": _EXPERT_QUESTION}}
RESULTS["expert.ask"] = {"$schema": DRAFT, "title": "expert.ask result", **_EXPERT_ASK_RESULT}
RESULTS["expert.accept"] = {"$schema": DRAFT, "title": "expert.accept result", "type": "object",
                            "additionalProperties": False, "required": ["question", "conversation"],
                            "properties": {"question": _EXPERT_QUESTION, "conversation": {"type": "object"}}}
_EXPERT_DECLINE_RESULT = {"type": "object", "additionalProperties": False,
                          "required": ["questionId", "declined", "movedOn"],
                          "properties": {"questionId": {"type": "string"}, "declined": {"type": "boolean"},
                                         "movedOn": {"type": "boolean",
                                                     "description": "the whole latest wave declined: the next "
                                                                    "wave was offered now"}}}
_EXPERT_QUEUE_RESULT = {"type": "object", "additionalProperties": False,
                        "required": ["topicId", "topicName", "questions"],
                        "properties": {"topicId": {"type": "string"}, "topicName": {"type": "string"},
                                       "questions": {"type": "array", "items": _EXPERT_QUESTION}}}
_EXPERT_ENTRY = {"type": "object", "additionalProperties": False,
                 "required": ["questionId", "topicId", "topicName", "question", "answer", "answeredBy",
                              "conversationId", "askedAt", "answeredAt"],
                 "properties": {"questionId": {"type": "string"}, "topicId": {"type": "string"},
                                "topicName": {"type": ["string", "null"]}, "question": {"type": "string"},
                                "answer": {"type": "string", "description": "the expert's chosen messages"},
                                "answeredBy": {"type": ["string", "null"],
                                               "description": "the expert's display name"},
                                "conversationId": {"type": "string"}, "askedAt": {"type": "integer"},
                                "answeredAt": {"type": "integer"}}}
_EXPERT_ANSWERED_RESULT = {"type": "object", "additionalProperties": False, "required": ["entry"],
                           "properties": {"entry": _EXPERT_ENTRY}}
_EXPERT_SEARCH_RESULT = {"type": "object", "additionalProperties": False, "required": ["entries"],
                         "properties": {"entries": {"type": "array", "items": _EXPERT_ENTRY}}}
RESULTS["expert.answered"] = {"$schema": DRAFT, "title": "expert.answered result", **_EXPERT_ANSWERED_RESULT}
RESULTS["expert.search"] = {"$schema": DRAFT, "title": "expert.search result", **_EXPERT_SEARCH_RESULT}
_EXPERT_TOPICS_RESULT = {"type": "object", "additionalProperties": False, "required": ["topics"], "properties": {
    "topics": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["topicId", "name", "tenantId", "shared"],
        "properties": {"topicId": {"type": "string"}, "name": {"type": "string"},
                       "tenantId": {"type": "string", "description": "the topic's company (give it to expert.ask)"},
                       "shared": {"type": "boolean", "description": "a connected company's topic"}}}}}}
RESULTS["expert.topics"] = {"$schema": DRAFT, "title": "expert.topics result", **_EXPERT_TOPICS_RESULT}
RESULTS["expert.decline"] = {"$schema": DRAFT, "title": "expert.decline result", **_EXPERT_DECLINE_RESULT}
RESULTS["expert.cancel"] = {"$schema": DRAFT, "title": "expert.cancel result", **_EXPERT_ASK_RESULT}
RESULTS["expert.queue"] = {"$schema": DRAFT, "title": "expert.queue result", **_EXPERT_QUEUE_RESULT}
RESPONSES.update({
    "expert.ask": _EXPERT_ASK_RESULT,
    "expert.cancel": _EXPERT_ASK_RESULT,
    "expert.queue": _EXPERT_QUEUE_RESULT,
    "expert.answered": _EXPERT_ANSWERED_RESULT,
    "expert.topics": _EXPERT_TOPICS_RESULT,
    "admin.experts.topics.share": {"type": "object", "required": ["topic"], "properties": {"topic": _EXPERT_TOPIC}},
    "admin.experts.shared.accept": {"type": "object", "required": ["tenantId", "topicId", "accepted"], "properties": {
        "tenantId": {"type": "string"}, "topicId": {"type": "string"}, "accepted": {"type": "boolean"}}},
    "expert.search": _EXPERT_SEARCH_RESULT,
    "admin.experts.topics.list": {"type": "object", "required": ["topics"], "properties": {
        "topics": {"type": "array", "items": _EXPERT_TOPIC}}},
    "admin.experts.topics.create": {"type": "object", "required": ["topic"], "properties": {"topic": _EXPERT_TOPIC}},
    "admin.experts.topics.update": {"type": "object", "required": ["topic"], "properties": {"topic": _EXPERT_TOPIC}},
    "admin.experts.topics.delete": {"type": "object", "required": ["topicId", "deleted"], "properties": {
        "topicId": {"type": "string"}, "deleted": {"type": "boolean"}}},
})
_Q = {"questionId": {"type": "string"}, "topicId": {"type": "string"}}
OUTBOUND.update({
    "expert.question.offered": _event("expert.question.offered", {
        **_Q, "topicName": {"type": ["string", "null"]}, "text": {"type": "string"},
        "askedBy": {"type": ["string", "null"], "description": "the asker's display name"},
        "askedAt": {"type": "integer"}}, ["questionId", "topicId", "topicName", "text", "askedBy", "askedAt"]),
    "expert.question.taken": _event("expert.question.taken", _Q, ["questionId", "topicId"]),
    "expert.question.wave": _event("expert.question.wave", {
        **_Q, "wave": {"type": "integer", "minimum": 1, "description": "waves offered so far"},
        "tier": {"type": "integer", "minimum": 1}, "experts": {"type": "integer", "minimum": 1,
                                                               "description": "people offered it in this wave"}},
        ["questionId", "topicId", "wave", "tier", "experts"]),
    "expert.question.accepted": _event("expert.question.accepted", {
        **_Q, "conversationId": {"type": "string"}, "expert": {"type": "object"}},
        ["questionId", "topicId", "conversationId", "expert"]),
    "expert.question.unanswered": _event("expert.question.unanswered", _Q, ["questionId", "topicId"]),
    "expert.question.answered": _event("expert.question.answered", _Q, ["questionId", "topicId"]),
    "expert.question.cancelled": _event("expert.question.cancelled", _Q, ["questionId", "topicId"]),
})


# --- usage each company can see (chalicelib/usage.py, docs/operations.md "Usage") ----------------
_DAY = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "a UTC day, YYYY-MM-DD"}
_USAGE_COUNTS = {
    "messages": "messages sent by the company's users",
    "postsDelivered": "WebSocket posts of events the company's users caused, accepted by the gateway",
    "pushes": "mobile pushes sent for the company's messages",
    "uploads": "files of the company's users accepted (scanned clean)",
    "uploadBytes": "bytes of those files",
    "connectionMinutes": "minutes the company's sockets were open (each rounded up), counted when they close",
    "dlpFlags": "screening entries (flagged, redacted, blocked attempts) written for the company",
}
_USAGE_DAY = {"type": "object", "required": ["day", *_USAGE_COUNTS], "properties": {
    "day": _DAY, **{k: {"type": "integer", "minimum": 0, "description": v} for k, v in _USAGE_COUNTS.items()}}}
ADMIN.update({
    "admin.usage.get": _action("admin.usage.get", {
        "from": {**_DAY, "description": "first UTC day (YYYY-MM-DD); default 30 days before `to`"},
        "to": {**_DAY, "description": "last UTC day (YYYY-MM-DD), included; default today"},
        "format": {"enum": ["json", "csv"], "description": "csv: text/csv, one line per day (header "
                                                           "tenantId,day,messages,...); default json"}}),
})
RESPONSES.update({
    "admin.usage.get": {"type": "object", "required": ["tenantId", "from", "to", "days", "totals", "storedBytes"],
                        "properties": {
        "tenantId": {"type": "string"}, "from": _DAY, "to": _DAY,
        "days": {"type": "array", "items": _USAGE_DAY, "description": "every day of the window, oldest first"},
        "totals": {"type": "object", "required": list(_USAGE_COUNTS), "properties": {
            k: {"type": "integer", "minimum": 0} for k in _USAGE_COUNTS}},
        "storedBytes": {"type": "integer", "minimum": 0,
                        "description": "bytes of files the company holds now (against its quota)"}}},
})
