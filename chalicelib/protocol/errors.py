"""Error codes and the error hierarchy shared by WebSocket and REST.

One source of truth: ``ERROR_CODES`` is what ``docs/protocol.md`` lists and
what the JSON Schemas enumerate.  Services raise :class:`ChatError`
subclasses; handlers turn them into an error frame or an HTTP reply with
:meth:`ChatError.to_body`.  Anything else is logged and answered
``internal`` without details.
"""
from __future__ import annotations

from typing import Any

# code -> (HTTP status, meaning).  Stable: clients switch on these strings.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "The frame is not valid UTF-8 JSON."),
    "invalid_frame": (400, "The frame is not a JSON object, or is a binary frame."),
    "unknown_action": (400, "The action is not one the server knows."),
    "validation_failed": (400, "A field is missing, of the wrong type or out of range."),
    "payload_too_large": (413, "The frame or a field in it exceeds its size limit."),
    "unauthorized": (401, "No valid token: missing, expired, or not verifiable."),
    "forbidden": (403, "The caller may not do this."),
    "not_found": (404, "No such resource visible to the caller."),
    "conflict": (409, "The request conflicts with the current state."),
    "external_access_revoked": (403, "Cross-company access is not allowed now; `side` names the company "
                                     "whose connection or policy refused, `reason` says why."),
    "rate_limited": (429, "Too many requests; retry after `retryAfter` seconds."),
    "too_many_devices": (403, "The user already has `limit` live connections (the company's devices-per-user "
                              "limit); close one, then connect again."),
    "internal": (500, "Unexpected server error; the request may be retried."),
    # Screening (DLP, docs/compliance.md): 422 = well-formed, refused for what it contains.
    "message_blocked": (422, "A company's screening rule blocks this content; nothing was stored or delivered. "
                             "`ruleId`, `ruleName` name the rule and `side` the company whose rule it is."),
}


class ChatError(Exception):
    """Base of every error a client may see."""

    code = "internal"

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.message = message or ERROR_CODES[self.code][1]
        self.fields = fields
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code][0]

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.fields)
        return body


def _error(name: str, code: str) -> type[ChatError]:
    return type(name, (ChatError,), {"code": code, "__doc__": ERROR_CODES[code][1]})


InvalidJson = _error("InvalidJson", "invalid_json")
InvalidFrame = _error("InvalidFrame", "invalid_frame")
UnknownAction = _error("UnknownAction", "unknown_action")
ValidationFailed = _error("ValidationFailed", "validation_failed")
PayloadTooLarge = _error("PayloadTooLarge", "payload_too_large")
Unauthorized = _error("Unauthorized", "unauthorized")
Forbidden = _error("Forbidden", "forbidden")
NotFound = _error("NotFound", "not_found")
Conflict = _error("Conflict", "conflict")
Internal = _error("Internal", "internal")


class RateLimited(ChatError):
    code = "rate_limited"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message, retryAfter=round(retry_after, 3))


class TooManyDevices(ChatError):
    """A handshake beyond the user's live connections limit (never retried by itself: close a device)."""

    code = "too_many_devices"

    def __init__(self, limit: int) -> None:
        super().__init__(f"At most {limit} devices may be connected at once; close one and connect again.",
                         limit=limit)


class MessageBlocked(ChatError):
    """A block rule matched (never carries the matched text, only which rule of which company)."""

    code = "message_blocked"

    def __init__(self, rule_id: str, rule_name: str, side: str) -> None:
        super().__init__(f"Blocked by screening rule {rule_name!r} ({rule_id}) of {side}.",
                         ruleId=rule_id, ruleName=rule_name, side=side)
