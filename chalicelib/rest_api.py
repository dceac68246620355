"""REST entry points for offline and mobile clients: same services, same errors as the socket.

A request carries ``Authorization: Bearer <jwt>`` (the same token as on
``$connect``).  Bodies and query parameters are validated against the same
JSON Schemas as the WebSocket actions; errors are ``{"error": {code, message}}``
with the code's HTTP status.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from . import logs, metrics, runtime
from .identity import token_from_authorization
from .protocol import frames, schemas
from .protocol.errors import ChatError, Internal, ValidationFailed
from .services import authentication
from .services.context import Text

log = logging.getLogger("chat.rest")

Reply = tuple[int, Any, dict[str, str]]


def _error(err: ChatError) -> Reply:
    headers = {"Content-Type": "application/json"}
    if err.code == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if err.code == "rate_limited":
        headers["Retry-After"] = str(max(1, round(err.fields.get("retryAfter", 1))))
    return err.status, {"error": err.to_body()}, headers


def _query_params(query: dict[str, str] | None, names: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    """The route's query parameters, typed as the action's schema types them (integer or string)."""
    out: dict[str, Any] = {}
    props = schema.get("properties", {})
    for name, value in (query or {}).items():
        if name not in names:
            raise ValidationFailed(f"Unknown query parameter {name[:32]!r}.")
        kind = props.get(name, {}).get("type")
        if kind != "integer" and "integer" not in (kind if isinstance(kind, list) else ()):
            out[name] = value
            continue
        try:
            out[name] = int(value)
        except ValueError:
            raise ValidationFailed(f"{name} must be an integer.") from None
    return out


@metrics.flushed("api_handler")
def handle(headers: dict[str, str] | None, raw_body: bytes | str | None, query: dict[str, str] | None,
           action: str, fn: Callable[..., dict[str, Any]], path_fields: dict[str, Any],
           query_names: tuple[str, ...] = (), status: int = 200, context: dict[str, Any] | None = None) -> Reply:
    """Authenticate, validate as ``action``, call ``fn(call, body)``; map every error."""
    request_id = ((context or {}).get("requestId") or "rest")[:64]
    ctx = logs.bind(route=action, api="rest")
    try:
        from .token_verifier import verifier  # pyjwt and cryptography load on the first token checked

        principal, _user = authentication.authenticate(verifier(), token_from_authorization(headers))
        body: dict[str, Any] = {}
        if raw_body:
            body = frames.loads(raw_body)
            if not isinstance(body, dict):
                raise ValidationFailed("Request body must be a JSON object.")
        registry = schemas.ADMIN if action.startswith("admin.") else schemas.INBOUND
        fields = {**body, **_query_params(query, query_names, registry.get(action, {})), **path_fields}
        try:
            frame = frames.validate({**fields, "action": action, "requestId": request_id[:64]}, registry)
        except frames.FrameError as err:
            raise err.error from None
        ctx_info = context or {}
        call = runtime.env(delivery=runtime.outbox()).acting(
            principal, source_ip=(ctx_info.get("identity") or {}).get("sourceIp"), request_id=ctx_info.get("requestId"))
        result = fn(call, {k: v for k, v in frame.body.items() if k not in ("action", "requestId")})
        call.delivery.tally.flush()  # posts made inline, counted for the company (chalicelib/usage.py)
        if isinstance(result, Text):
            return status, result.body, {"Content-Type": result.content_type}
        return status, result, {"Content-Type": "application/json"}
    except ChatError as err:
        log.info("rest request refused", extra={"code": err.code, "reason": err.message})
        metrics.refusal(err.code)
        return _error(err)
    except Exception:  # noqa: BLE001 - never leak a traceback
        log.exception("rest request failed")
        metrics.count("InternalErrors")
        return _error(Internal())
    finally:
        logs.unbind(ctx)
