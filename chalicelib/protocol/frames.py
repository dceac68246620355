"""Parse and validate inbound frames; build outbound ones.

Validators are compiled by fastjsonschema on first use and kept for the
life of the container, so a warm Lambda pays only the validation itself.
The schemas and fastjsonschema load on the first frame validated: the
functions that only send frames (delivery, presence, files, compliance)
never load them.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from .errors import (ChatError, InvalidFrame, InvalidJson, PayloadTooLarge,
                     UnknownAction, ValidationFailed)

if TYPE_CHECKING:
    import fastjsonschema

_validators: dict[str, Callable[[Any], Any]] = {}


def _validator(key: str, schema: dict[str, Any]) -> Callable[[Any], Any]:
    fn = _validators.get(key)
    if fn is None:
        import fastjsonschema

        fn = _validators[key] = fastjsonschema.compile(schema)
    return fn


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: str | bytes) -> Any:
    """Strict JSON: no NaN/Infinity; too-deep nesting is an error, not a crash."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJson("JSON nesting is too deep.") from None
    except ValueError as exc:
        raise InvalidJson(f"Not valid JSON: {exc}") from None


class Frame(NamedTuple):
    action: str
    request_id: str
    body: dict[str, Any]


class FrameError(Exception):
    """A rejected frame: the error plus whatever requestId could be read."""

    def __init__(self, error: ChatError, request_id: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


def _request_id_of(obj: Any) -> str | None:
    if isinstance(obj, dict):
        rid = obj.get("requestId")
        if isinstance(rid, str) and 0 < len(rid) <= 64:
            return rid
    return None


def parse(body: str | None, *, is_base64: bool, max_bytes: int) -> Frame:
    """Turn an API Gateway message body into a validated :class:`Frame`.

    Raises :class:`FrameError` for every way a frame can be wrong.
    """
    if is_base64:
        raise FrameError(InvalidFrame("Binary frames are not supported; send UTF-8 JSON text."), None)
    raw = body or ""
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FrameError(PayloadTooLarge(
            f"Frame is {size} bytes; the limit is {max_bytes} bytes.", limit=max_bytes), None)
    try:
        obj = loads(raw)
    except InvalidJson as err:
        raise FrameError(err, None) from None
    if not isinstance(obj, dict):
        raise FrameError(InvalidFrame("A frame must be a JSON object."), None)
    return validate(obj)


def validate(obj: dict[str, Any], registry: dict[str, dict[str, Any]] | None = None) -> Frame:
    """Check a decoded frame against the envelope and its action's schema.

    REST routes use this too, so both APIs accept exactly the same fields.
    """
    import fastjsonschema

    from . import schemas

    request_id = _request_id_of(obj)
    try:
        _validator("$envelope", schemas.ENVELOPE)(obj)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise FrameError(ValidationFailed(_describe(exc)), request_id) from None
    action = obj["action"]
    schema = (schemas.INBOUND if registry is None else registry).get(action)
    if schema is None:
        raise FrameError(UnknownAction(f"Unknown action {action[:64]!r}."), request_id)
    try:
        _validator(action, schema)(obj)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise FrameError(ValidationFailed(_describe(exc)), request_id) from None
    return Frame(action=action, request_id=obj["requestId"], body=obj)


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    msg = exc.message.replace("data.", "", 1) if exc.message.startswith("data.") else exc.message
    return msg.replace("data ", "frame ", 1)[:300]


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error_frame(error: ChatError, request_id: str | None) -> dict[str, Any]:
    return {"type": "error", "requestId": request_id, "error": error.to_body()}
