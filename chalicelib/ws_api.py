"""WebSocket entry points: turn API Gateway events into service calls and frames.

``app.py`` hands each event here; this module parses, dispatches by action,
and maps every error to a structured frame (or a handshake refusal on
$connect).  Anything unexpected is logged and answered ``internal``.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

from . import logs, metrics, runtime
from .auth import Principal, token_from_ws_connect
from .models import user_key
from .config import settings
from .protocol import frames
from .protocol.errors import ERROR_CODES, ChatError, Internal
from .services import connections, conversations, files, messages, presence
from .services import people
from .services.context import Call

log = logging.getLogger("chat.ws")

# (principal, frame, connection id, outbox) -> reply.  The outbox holds the events the action
# produced; they are delivered after the reply has been posted (ack after commit).
Handler = Callable[[Principal | None, frames.Frame, str, Any], dict[str, Any] | None]


def _ping(_principal: Principal | None, frame: frames.Frame, _cid: str, _out: Any) -> dict[str, Any]:
    return {"type": "pong", "requestId": frame.request_id, "serverTime": logs.now_ms()}


def _service(fn: Callable[..., dict[str, Any]], *args: Any) -> Handler:
    """Adapt ``fn(call, body, *args) -> result`` to an action handler replying with ``ack``."""
    def handle(principal: Principal | None, frame: frames.Frame, cid: str, out: Any) -> dict[str, Any]:
        assert principal is not None
        call = Call(principal=principal, delivery=out, clock=runtime.clock,
                    settings=settings(), connection_id=cid)
        result = fn(call, frame.body, *args)
        return {"type": "ack", "requestId": frame.request_id, "action": frame.action, "result": result}
    return handle


def _presence(fn: Callable[..., dict[str, Any]], with_connection: bool = False) -> Handler:
    def handle(principal: Principal | None, frame: frames.Frame, cid: str, out: Any) -> dict[str, Any]:
        assert principal is not None
        args = (principal, cid) if with_connection else (principal,)
        env = dataclasses.replace(runtime.presence_env(), delivery=out)
        result = fn(env, *args, frame.body)
        return {"type": "ack", "requestId": frame.request_id, "action": frame.action, "result": result}
    return handle


# action -> (handler, needs_principal).  Actions that need the caller's
# identity read the connection record (1 GetItem); ping does not.
ACTIONS: dict[str, tuple[Handler, bool]] = {
    "ping": (_ping, False),
    "conversation.create": (_service(conversations.create), True),
    "conversation.get": (_service(conversations.get), True),
    "conversation.list": (_service(conversations.inbox), True),
    "conversation.update": (_service(conversations.update), True),
    "conversation.join": (_service(conversations.join), True),
    "conversation.leave": (_service(conversations.leave), True),
    "channel.list": (_service(conversations.public_channels), True),
    "member.list": (_service(conversations.members), True),
    "member.add": (_service(conversations.add_members), True),
    "member.remove": (_service(conversations.remove_member), True),
    "member.role": (_service(conversations.set_role), True),
    "message.send": (_service(messages.send), True),
    "message.edit": (_service(messages.edit), True),
    "message.delete": (_service(messages.delete), True),
    "message.revisions": (_service(messages.revisions), True),
    "reaction.add": (_service(messages.react, True), True),
    "reaction.remove": (_service(messages.react, False), True),
    "history": (_service(messages.history), True),
    "thread.history": (_service(messages.thread), True),
    "sync": (_service(messages.sync), True),
    "read": (_service(messages.read), True),
    "typing.start": (_service(messages.typing, True), True),
    "typing.stop": (_service(messages.typing, False), True),
    "presence.set": (_presence(presence.set_status), True),
    "presence.custom": (_presence(presence.set_custom), True),
    "presence.heartbeat": (_presence(presence.heartbeat, with_connection=True), True),
    "presence.subscribe": (_presence(presence.subscribe, with_connection=True), True),
    "presence.unsubscribe": (_presence(presence.unsubscribe, with_connection=True), True),
    "file.upload.request": (_service(files.request_upload), True),
    "file.download.request": (_service(files.request_download), True),
    # people: display names for the user keys clients see (docs/protocol.md "People")
    "users.get": (_service(people.get_users), True),
}


def _context(event: dict[str, Any]) -> dict[str, Any]:
    ctx = event.get("requestContext") or {}
    runtime.remember_endpoint(ctx.get("apiId", ""), ctx.get("stage", ""), ctx.get("domainName", ""))
    return ctx


# --- identity that travels with the connection ------------------------------------------
# The $connect route has a Lambda REQUEST authorizer (``authorize``): it verifies the token once
# and API Gateway hands its ``context`` to every later event of that connection as
# ``requestContext.authorizer``, so a frame needs no read to know who sent it.  The authorizer
# allows even a refused token, with the refusal in its context: $connect then answers the same
# structured refusal as ever (API Gateway's own 401/403 would carry no error code).

def _principal_context(principal: Principal) -> dict[str, Any]:
    # (authorizer context values must be strings, numbers or booleans)
    return {"tenantId": principal.tenant_id, "userId": principal.user_id, "email": principal.email,
            "roles": ",".join(principal.roles)}


def _principal_from(authorizer: dict[str, Any] | None) -> Principal | None:
    if not authorizer or not authorizer.get("tenantId") or not authorizer.get("userId"):
        return None
    roles = tuple(r for r in str(authorizer.get("roles") or "").split(",") if r)
    return Principal(tenant_id=str(authorizer["tenantId"]), user_id=str(authorizer["userId"]),
                     email=str(authorizer.get("email") or ""), roles=roles)


@metrics.flushed("ws_authorizer")
def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """The $connect REQUEST authorizer: verify the token (1 GetItem of the user), pass who it is on."""
    ctx = event.get("requestContext") or {}
    token_ctx = logs.bind(requestId=ctx.get("requestId"), connectionId=ctx.get("connectionId"), route="authorizer")
    try:
        token = token_from_ws_connect(event.get("headers") or {}, event.get("queryStringParameters") or {})
        principal, _user = connections.authenticate(runtime.verifier(), token)
        principal_id, context = user_key(principal.tenant_id, principal.user_id), _principal_context(principal)
    except ChatError as err:
        principal_id, context = "refused", {"refusedCode": err.code, "refusedStatus": err.status,
                                            "refusedMessage": err.message}
    except Exception:  # noqa: BLE001 - $connect answers `internal`; never a traceback
        log.exception("authorizer failed")
        metrics.count("InternalErrors")
        principal_id, context = "refused", {"refusedCode": "internal", "refusedStatus": 500,
                                            "refusedMessage": Internal().message}
    finally:
        logs.unbind(token_ctx)
    return {"principalId": principal_id, "context": context, "policyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event.get("methodArn", "*")}]}}


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
    ctx = _context(event)
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
        principal = connections.connect(runtime.verifier(), runtime.clock, settings().connection_ttl_seconds,
                                        req, principal=_principal_from(authorizer))
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
        return {"statusCode": err.status, "body": frames.dumps({"error": err.to_body()})}
    except Exception:  # noqa: BLE001 - never leak a traceback to the client
        log.exception("connect failed")
        metrics.count("InternalErrors")
        return {"statusCode": 500, "body": frames.dumps({"error": Internal().to_body()})}
    finally:
        logs.unbind(token_ctx)


@metrics.flushed("websocket_disconnect")
def on_disconnect(event: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(event)
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


@metrics.flushed("websocket_message")
def on_message(event: dict[str, Any]) -> dict[str, Any]:
    """$default: one frame in, one ack/result or error frame out (plus any events)."""
    ctx = _context(event)
    cid = ctx.get("connectionId", "")
    token_ctx = logs.bind(requestId=ctx.get("requestId"), connectionId=cid, route="$default")
    request_id: str | None = None
    out = runtime.outbox(deferred=True)
    try:
        frame = frames.parse(event.get("body"), is_base64=bool(event.get("isBase64Encoded")),
                             max_bytes=settings().max_frame_bytes)
        request_id = frame.request_id
        handler, needs_principal = ACTIONS[frame.action]
        principal = None
        if needs_principal:  # from the $connect authorizer's context; else the connection record (1 GetItem)
            principal = _principal_from(ctx.get("authorizer")) or connections.principal_of(cid)
        reply = handler(principal, frame, cid, out)
    except frames.FrameError as err:
        log.info("frame rejected", extra={"code": err.error.code, "reason": err.error.message})
        metrics.refusal(err.error.code)
        reply = frames.error_frame(err.error, err.request_id)
    except ChatError as err:
        log.info("action refused", extra={"code": err.code, "reason": err.message})
        metrics.refusal(err.code)
        reply = frames.error_frame(err, request_id)
    except Exception:  # noqa: BLE001 - never leak a traceback to the client
        log.exception("action failed")
        metrics.count("InternalErrors")
        reply = frames.error_frame(Internal(), request_id)
    try:
        if reply is not None:
            runtime.delivery().send(cid, frames.dumps(reply))
        out.flush()  # the events of what was just committed, after the ack
    finally:
        logs.unbind(token_ctx)
    return {"statusCode": 200}


def _publish_presence(key: str) -> None:
    """Presence follows connects and disconnects; failure here must not fail the socket."""
    try:
        presence.publish(runtime.presence_env(), key)
    except Exception:  # noqa: BLE001 - watchers converge on the next change or roster read
        log.exception("presence publish failed")


@metrics.flushed("presence_flush")
def on_presence_flush(records: list[dict[str, Any]]) -> None:
    """Delayed presence publications (queue messages ``{"userKey": ...}``)."""
    env = runtime.presence_env()
    for record in records:
        try:
            key = frames.loads(record.get("body") or "{}").get("userKey")
        except ChatError:
            key = None
        if isinstance(key, str) and "#" in key:
            presence.flush(env, key)
        else:
            log.warning("bad presence queue message dropped")


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
