"""The WebSocket frames ($default): parse, dispatch by action, answer an ack or an error frame.

``app.py`` hands each frame here; every error becomes a structured frame, and
anything unexpected is logged and answered ``internal``.  $connect, $disconnect
and the authorizer live in ``ws_connect.py`` (functions that never load the
message path).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

from . import logs, metrics, runtime
from .identity import Principal, principal_from
from .config import settings
from .protocol import frames
from .protocol.errors import ChatError, Internal


log = logging.getLogger("chat.ws")

# (principal, frame, connection id, outbox) -> reply.  The outbox holds the events the action
# produced; they are delivered after the reply has been posted (ack after commit).
Handler = Callable[[Principal | None, frames.Frame, str, Any], dict[str, Any] | None]


def _ping(_principal: Principal | None, frame: frames.Frame, _cid: str, _out: Any) -> dict[str, Any]:
    return {"type": "pong", "requestId": frame.request_id, "serverTime": logs.now_ms()}


def _function(path: str) -> Callable[..., dict[str, Any]]:
    """``"module.function"`` of ``chalicelib.services``, imported on the action's first use: a cold
    container loads the services of the actions it runs, not all of them (docs/proof.md "Cold start")."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(f"chalicelib.services.{module}"), name)


def _service(path: str, *args: Any) -> Handler:
    """Adapt ``fn(call, body, *args) -> result`` (``path`` names it) to an action handler replying with ``ack``."""
    def handle(principal: Principal | None, frame: frames.Frame, cid: str, out: Any) -> dict[str, Any]:
        assert principal is not None
        fn = _function(path)
        call = runtime.env(delivery=out).acting(principal, connection_id=cid)
        result = fn(call, frame.body, *args)
        return {"type": "ack", "requestId": frame.request_id, "action": frame.action, "result": result}
    return handle


# action -> (handler, needs_principal).  Actions that need the caller's
# identity read the connection record (1 GetItem); ping does not.
ACTIONS: dict[str, tuple[Handler, bool]] = {
    "ping": (_ping, False),
    "conversation.create": (_service("conversations.create"), True),
    "conversation.get": (_service("conversations.get"), True),
    "conversation.list": (_service("conversations.inbox"), True),
    "conversation.update": (_service("conversations.update"), True),
    "conversation.join": (_service("conversations.join"), True),
    "conversation.leave": (_service("conversations.leave"), True),
    "channel.list": (_service("conversations.public_channels"), True),
    "member.list": (_service("conversations.members"), True),
    "member.add": (_service("conversations.add_members"), True),
    "member.remove": (_service("conversations.remove_member"), True),
    "member.role": (_service("conversations.set_role"), True),
    "message.send": (_service("messages.send"), True),
    "message.edit": (_service("messages.edit"), True),
    "message.delete": (_service("messages.delete"), True),
    "message.revisions": (_service("messages.revisions"), True),
    "reaction.add": (_service("messages.react", True), True),
    "reaction.remove": (_service("messages.react", False), True),
    "history": (_service("messages.history"), True),
    "thread.history": (_service("messages.thread"), True),
    "sync": (_service("messages.sync"), True),
    "read": (_service("messages.read"), True),
    "typing.start": (_service("messages.typing", True), True),
    "typing.stop": (_service("messages.typing", False), True),
    "presence.set": (_service("presence.set_status"), True),
    "presence.custom": (_service("presence_status.set_custom"), True),
    "presence.heartbeat": (_service("presence.heartbeat"), True),
    "presence.subscribe": (_service("presence.subscribe"), True),
    "presence.unsubscribe": (_service("presence.unsubscribe"), True),
    "file.upload.request": (_service("files.request_upload"), True),
    "file.download.request": (_service("files.request_download"), True),
    # people: display names for the user keys clients see (docs/protocol.md "People")
    "users.get": (_service("people.get_users"), True),
    "users.search": (_service("people.search_users"), True),
    # mobile push: the caller's own devices (docs/push.md)
    "push.register": (_service("push.register"), True),
    "push.unregister": (_service("push.unregister"), True),
    "push.preferences.get": (_service("push.get_preferences"), True),
    "push.preferences.set": (_service("push.set_preferences"), True),
    "push.conversation.set": (_service("push.set_conversation"), True),
    # ask the experts (docs/experts.md)
    "expert.ask": (_service("experts.ask"), True),
    "expert.accept": (_service("experts.accept"), True),
    "expert.decline": (_service("experts.decline"), True),
    "expert.cancel": (_service("experts.cancel"), True),
    "expert.queue": (_service("experts.queue"), True),
    "expert.answered": (_service("experts.answered"), True),
    "expert.search": (_service("experts.search"), True),
    "expert.topics": (_service("experts.list_member_topics"), True),
}


def _principal_of(connection_id: str) -> Principal:
    """The connection record's principal, for a connection whose authorizer context has none: the
    connection records' service (and its models) loads only then, not on every cold start."""
    from .services import connections

    return connections.principal_of(connection_id)


@metrics.flushed("websocket_message")
def on_message(event: dict[str, Any]) -> dict[str, Any]:
    """$default: one frame in, one ack/result or error frame out (plus any events)."""
    ctx = runtime.context_of(event)
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
            principal = principal_from(ctx.get("authorizer")) or _principal_of(cid)
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
        out.tally.flush()  # their posts, counted for the company (chalicelib/usage.py): 1 UpdateItem
    finally:
        logs.unbind(token_ctx)
    return {"statusCode": 200}
