"""The connection's life: $connect and $disconnect (the $connect authorizer: ``authorizer``).

Functions of their own on AWS (``websocket_connect``, ``websocket_disconnect``),
so this module loads identity, the connection records and presence, and never
the message path, files or screening.
Every refusal is a structured error (a handshake refusal on $connect);
anything unexpected is logged and answered ``internal``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from . import logs, metrics, runtime
from .authorizer import verifier
from .identity import principal_from, token_from_ws_connect
from .config import settings
from .models import user_key
from .protocol import frames
from .protocol.errors import ERROR_CODES, ChatError, Internal
from .services import connections

log = logging.getLogger("chat.ws")


def _refusal(authorizer: dict[str, Any]) -> ChatError | None:
    """The authorizer's refusal, as the error $connect answers (its code, status and message)."""
    code = authorizer.get("refusedCode")
    if not code:
        return None
    if code not in ERROR_CODES:
        return Internal()
    err = ChatError(str(authorizer.get("refusedMessage") or "") or None)
    err.code = str(code)
    return err


@metrics.flushed("websocket_connect")
def on_connect(event: dict[str, Any]) -> dict[str, Any]:
    """$connect: register the connection of the authorizer's principal, or refuse the handshake.

    Without an authorizer in front (``requestContext.authorizer`` absent) the token is verified here.
    """
    ctx = runtime.context_of(event)
    cid = ctx.get("connectionId", "")
    token_ctx = logs.bind(requestId=ctx.get("requestId"), connectionId=cid, route="$connect")
    try:
        headers = event.get("headers") or {}
        query = event.get("queryStringParameters") or {}
        authorizer = ctx.get("authorizer") or {}
        refused = _refusal(authorizer)
        if refused is not None:
            raise refused
        req = connections.ConnectRequest(
            connection_id=cid,
            token=token_from_ws_connect(headers, query),
            source_ip=(ctx.get("identity") or {}).get("sourceIp"),
            device=query.get("device"),
        )
        principal = connections.connect(verifier, runtime.clock, settings().connection_ttl_seconds,
                                        req, principal=principal_from(authorizer), alive=_alive)
        log.info("connected", extra={"tenantId": principal.tenant_id, "userId": principal.user_id})
        _publish_presence(user_key(principal.tenant_id, principal.user_id))
        response: dict[str, Any] = {"statusCode": 200}
        offered = [p.strip() for p in _header(headers, "sec-websocket-protocol").split(",") if p.strip()]
        if "chat.v1" in offered:
            response["headers"] = {"Sec-WebSocket-Protocol": "chat.v1"}
        return response
    except ChatError as err:
        log.info("connect refused", extra={"code": err.code, "reason": err.message})
        metrics.refusal(err.code)
        refusal: dict[str, Any] = {"statusCode": err.status, "body": frames.dumps({"error": err.to_body()})}
        if "retryAfter" in err.fields:  # rate_limited: also as the HTTP header
            refusal["headers"] = {"Retry-After": str(max(1, math.ceil(err.fields["retryAfter"])))}
        return refusal
    except Exception:  # noqa: BLE001 - never leak a traceback to the client
        log.exception("connect failed")
        metrics.count("InternalErrors")
        return {"statusCode": 500, "body": frames.dumps({"error": Internal().to_body()})}
    finally:
        logs.unbind(token_ctx)


@metrics.flushed("websocket_disconnect")
def on_disconnect(event: dict[str, Any]) -> dict[str, Any]:
    ctx = runtime.context_of(event)
    cid = ctx.get("connectionId", "")
    token_ctx = logs.bind(requestId=ctx.get("requestId"), connectionId=cid, route="$disconnect")
    try:
        gone = connections.disconnect(cid)
        if gone is not None:
            _publish_presence(gone.tenant_user)
        log.info("disconnected", extra={"disconnectStatusCode": ctx.get("disconnectStatusCode")})
    except Exception:  # noqa: BLE001 - TTL removes the record if this fails
        log.exception("disconnect cleanup failed")
    finally:
        logs.unbind(token_ctx)
    return {"statusCode": 200}


def _alive(connection_id: str) -> bool:
    """Is the socket still open at the gateway (GetConnection)?  Only Gone means no."""
    from botocore.exceptions import ClientError

    try:
        runtime.management_client().get_connection(ConnectionId=connection_id)
    except ClientError as exc:
        gone = (exc.response.get("Error") or {}).get("Code") == "GoneException" \
            or (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") == 410
        return not gone
    except Exception:  # noqa: BLE001 - unsure: keep the id (the limit refuses, as before)
        log.exception("GetConnection failed")
    return True


def _publish_presence(key: str) -> None:
    """Presence follows connects and disconnects; failure here must not fail the socket.  The
    presence service (and the conversation policy it reads) loads here, so the authorizer, which
    shares this module, never loads it."""
    from .services import presence

    try:
        presence.publish(runtime.presence_env(), key)
    except Exception:  # noqa: BLE001 - watchers converge on the next change or roster read
        log.exception("presence publish failed")


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
