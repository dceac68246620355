"""Local API Gateway: WebSocket API, @connections management API and REST, on one origin.

Each WebSocket connect, frame and close becomes the API Gateway v2 event
AWS would send, handed to the same Chalice handlers through
:class:`LambdaPool`.  The management API answers like AWS, down to the
``410`` + ``x-amzn-ErrorType: GoneException`` that botocore turns into
``GoneException``.

Local only, for benchmarks: *virtual connections* (devstack/virtual_connections.py),
ids the management API serves without a socket, created and read through
``/dev/stack/virtual-connections``; none exist unless a client asks.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from aiohttp import WSMsgType, web

from .faults import FAULTS
from .lambda_pool import Crash, LambdaPool
from .virtual_connections import MAX_PER_CALL, VIRTUAL_USER_AGENT, Latency, VirtualConn, VirtualConnections

log = logging.getLogger("devstack.gateway")

_MGMT_PATH = re.compile(r"^/(?P<stage>[^/]+)/(?:@|%40)connections/(?P<id>[^/?]+)$")
# The reference web client (local only): served at / and /web/*.
# Its page may also talk to the local S3 endpoint (uploads), on another loopback port.
_WEB_CONNECT = "http://127.0.0.1:* http://localhost:*"
_WEB_DIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "web"))
_VIRTUAL_PATH = "/dev/stack/virtual-connections"
_VIRTUAL_LIFECYCLE_CONCURRENCY = 32  # $connect/$disconnect invocations of a bulk call in flight at once
_WEB_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
              ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class WsLimits:
    """API Gateway WebSocket quotas (AWS defaults; configurable)."""

    max_message_bytes: int = 128 * 1024
    idle_timeout_s: float = 600.0
    max_age_s: float = 7200.0

    @classmethod
    def from_env(cls) -> "WsLimits":
        return cls(
            max_message_bytes=int(os.environ.get("WS_MAX_MESSAGE_BYTES", 128 * 1024)),
            idle_timeout_s=float(os.environ.get("WS_IDLE_TIMEOUT_SECONDS", 600)),
            max_age_s=float(os.environ.get("WS_MAX_CONNECTION_AGE_SECONDS", 7200)),
        )


@dataclass
class _Conn:
    connection_id: str
    ws: web.WebSocketResponse
    connected_at_ms: int
    source_ip: str
    user_agent: str
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = 0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    close_reason: str | None = None

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_ms = int(time.time() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _new_connection_id() -> str:
    # API Gateway ids look like "L0SM9cOFvHcCIhw=": base64 of random bytes, so
    # they contain '+', '/' and '=' and must be URL-encoded in management calls.
    return base64.b64encode(os.urandom(10)).decode()


@dataclass
class _PostCounter:
    """@connections POSTs: how many, how many bytes, by outcome (200, 410 Gone, other)."""

    posts: int = 0
    bytes: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: {"200": 0, "410": 0, "other": 0})
    since: float = field(default_factory=time.time)

    def record(self, status: int, size: int) -> None:
        self.posts += 1
        self.bytes += size
        self.by_status[str(status) if status in (200, 410) else "other"] += 1


def _request_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


class Gateway:
    def __init__(self, pool: LambdaPool, *, stage: str, api_id: str, domain_name: str,
                 limits: WsLimits, idp: Any | None = None, meter: Any | None = None,
                 authorizer: str | None = None) -> None:
        self.pool = pool
        # The $connect route's Lambda REQUEST authorizer (a function name), as infra/ attaches it on AWS:
        # run before $connect, its context travels in requestContext.authorizer of every later event.
        self.authorizer = authorizer
        self._authorized: dict[str, dict[str, Any]] = {}  # connection id -> requestContext.authorizer
        self.meter = meter  # devstack.metering.Meter of the DynamoDB proxy, if any
        self.posts = _PostCounter()
        self.stage = stage
        self.api_id = api_id
        self.domain_name = domain_name
        self.limits = limits
        self.idp = idp
        self.conns: dict[str, _Conn] = {}
        self.virtual = VirtualConnections()  # local-only sinks for benchmarks; never in self.conns
        self.pollers: list[Any] = []  # devstack.queues.QueuePoller, for the metrics
        self._tasks: set[asyncio.Task[Any]] = set()

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        # [\s\S], not ".": a path may carry an encoded newline (%0A), which API Gateway routes like any byte.
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        if path == "/ws" and request.method == "GET":
            return await self._websocket(request)
        m = _MGMT_PATH.match(path)
        if m and m.group("stage") == self.stage:
            resp = await self._management(request, unquote(m.group("id")))
            if request.method == "POST":
                self.posts.record(resp.status, request.content_length or 0)
            return resp
        if path == "/dev/stack/limits":
            return await self._limits(request)
        if path in ("/dev/stack/metrics", "/dev/stack/metrics/reset"):
            return self._metrics(request, path)
        if path == "/dev/stack/pushes":
            from .pushes import handle as pushes

            return await pushes(request)
        if path == "/dev/stack/faults":
            return await self._faults(request)
        if path == _VIRTUAL_PATH or path.startswith(_VIRTUAL_PATH + "/"):
            return await self._virtual_control(request, path)
        if self.idp is not None and (path == "/dev/idp" or path.startswith("/dev/idp/")):
            return await self.idp.handle(request, path)
        if request.method in ("GET", "HEAD") and (path == "/" or path.startswith("/web/")):
            return self._web(path)
        if path == "/scim/v2" or path.startswith("/scim/v2/"):
            return await self._scim(request)
        return await self._rest(request)

    def _web(self, path: str) -> web.Response:
        """Local-only: the reference web client's static files (devstack/web/)."""
        name = "index.html" if path == "/" else unquote(path[len("/web/"):])
        full = os.path.realpath(os.path.join(_WEB_DIR, name))
        ctype = _WEB_TYPES.get(os.path.splitext(full)[1])
        if not full.startswith(_WEB_DIR + os.sep) or ctype is None or not os.path.isfile(full):
            return web.json_response({"message": "Not Found"}, status=404)
        with open(full, "rb") as fh:
            body = fh.read()
        return web.Response(body=body, content_type=ctype, charset="utf-8" if ctype.startswith("text/") else None,
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                                "img-src 'self' data:; frame-ancestors 'none'; "
                                                                # uploads go straight to the S3 endpoint
                                                                # (presigned POST, another port: _WEB_CONNECT)
                                                                f"connect-src 'self' {_WEB_CONNECT}"})

    async def _limits(self, request: web.Request) -> web.Response:
        """Local-only control: read or change the WebSocket quotas (tests shorten the idle timeout)."""
        if request.method == "PUT":
            try:
                changes = {k: v for k, v in (await request.json()).items()
                           if k in WsLimits.__dataclass_fields__ and isinstance(v, (int, float))}
            except ValueError:
                return web.json_response({"message": "expected a JSON object"}, status=400)
            self.limits = dataclasses.replace(self.limits, **changes)
        return web.json_response(dataclasses.asdict(self.limits))

    def _metrics(self, request: web.Request, path: str) -> web.Response:
        """Local-only control: counters measured at the stack's endpoints (benchmarks read these).

        ``GET /dev/stack/metrics`` is a snapshot; ``POST /dev/stack/metrics/reset``
        zeroes every counter and answers with the values just before.
        """
        reset = path.endswith("/reset")
        if request.method != ("POST" if reset else "GET"):
            return web.json_response({"message": "Method not allowed"}, status=405)
        ddb = self.meter and (self.meter.reset() if reset else self.meter.snapshot())
        posts = dataclasses.asdict(self.posts)
        if reset:
            self.posts = _PostCounter()
        return web.json_response({"dynamodb": ddb, "connections_api": posts,
                                  "websockets_open": len(self.conns),
                                  "virtual_connections": len(self.virtual.conns),
                                  "event_sources": {p.queue: p.snapshot() for p in self.pollers}})

    async def _faults(self, request: web.Request) -> web.Response:
        """Local-only control: fault injection for the load tests (devstack/faults.py); off by default."""
        if request.method == "GET":
            return web.json_response(FAULTS.snapshot())
        if request.method != "POST":
            return web.json_response({"message": "Method not allowed"}, status=405)
        try:
            changes = await request.json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            return web.json_response({"message": "expected a JSON object"}, status=400)
        return web.json_response(FAULTS.configure(changes))

    # --- events ----------------------------------------------------------------

    def _context(self, route_key: str, event_type: str, conn_id: str, connected_at_ms: int,
                 source_ip: str, user_agent: str, **extra: Any) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        ctx = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": base64.b64encode(os.urandom(12)).decode(),
            "requestTime": _request_time(now_ms),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at_ms,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "requestId": base64.b64encode(os.urandom(12)).decode(),
            "domainName": self.domain_name,
            "connectionId": conn_id,
            "apiId": self.api_id,
        }
        ctx.update(extra)
        return ctx

    def _connect_event(self, conn_id: str, connected_at: int, source_ip: str, user_agent: str,
                       header_items: list[tuple[str, str]], query_string: str, scheme: str) -> dict[str, Any]:
        """The ``$connect`` event of a handshake (a real socket's or a virtual connection's)."""
        headers = dict(header_items)
        headers.setdefault("X-Forwarded-For", source_ip)
        headers.setdefault("X-Forwarded-Proto", scheme)
        multi_headers: dict[str, list[str]] = {}
        for k, v in header_items:
            multi_headers.setdefault(k, []).append(v)
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        multi_query: dict[str, list[str]] = {}
        for k, v in parse_qsl(query_string, keep_blank_values=True):
            multi_query.setdefault(k, []).append(v)
        return {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "requestContext": self._context("$connect", "CONNECT", conn_id, connected_at,
                                            source_ip, user_agent),
            "isBase64Encoded": False,
        }

    async def _authorize(self, event: dict[str, Any]) -> web.Response | None:
        """Run the $connect authorizer as API Gateway does: a refusal is API Gateway's own reply
        (401/403/500 with a fixed body); an Allow puts the context into the $connect event."""
        if not self.authorizer:
            return None
        ctx = event["requestContext"]
        started = time.monotonic()
        result = await self.pool.invoke_event(self.authorizer, {
            "type": "REQUEST", "methodArn": f"arn:aws:execute-api:us-east-1:000000000000:{self.api_id}/{self.stage}/$connect",
            "headers": event["headers"], "multiValueHeaders": event["multiValueHeaders"],
            "queryStringParameters": event["queryStringParameters"],
            "multiValueQueryStringParameters": event["multiValueQueryStringParameters"],
            "stageVariables": {}, "requestContext": ctx})
        if isinstance(result, Crash) or not isinstance(result, dict):
            return web.json_response({"message": "Internal server error"}, status=500)
        statements = (result.get("policyDocument") or {}).get("Statement") or []
        allowed = any(st.get("Effect") == "Allow" for st in statements) and \
            not any(st.get("Effect") == "Deny" for st in statements)
        if not allowed or not result.get("principalId"):
            return web.json_response({"message": "Forbidden"}, status=403)
        context = {k: v for k, v in (result.get("context") or {}).items() if isinstance(v, (str, int, float, bool))}
        ctx["authorizer"] = {**context, "principalId": result["principalId"],
                             "integrationLatency": int((time.monotonic() - started) * 1000)}
        self._authorized[ctx["connectionId"]] = ctx["authorizer"]
        return None

    def _with_authorizer(self, event: dict[str, Any]) -> dict[str, Any]:
        authorizer = self._authorized.get(event["requestContext"]["connectionId"])
        if authorizer is not None:
            event["requestContext"]["authorizer"] = authorizer
        return event

    def _disconnect_event(self, conn_id: str, connected_at: int, source_ip: str, user_agent: str,
                          code: int, reason: str) -> dict[str, Any]:
        return {
            "headers": {"Host": self.domain_name, "x-api-key": "", "X-Forwarded-For": "",
                        "x-restapi": ""},
            "multiValueHeaders": {},
            "requestContext": self._context(
                "$disconnect", "DISCONNECT", conn_id, connected_at, source_ip, user_agent,
                disconnectStatusCode=code, disconnectReason=reason),
            "isBase64Encoded": False,
        }

    def _unused_connection_id(self) -> str:
        while True:
            conn_id = _new_connection_id()
            if conn_id not in self.conns and conn_id not in self.virtual.conns:
                return conn_id

    # --- WebSocket API ---------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        conn_id = self._unused_connection_id()
        connected_at = int(time.time() * 1000)
        source_ip = request.remote or "127.0.0.1"
        user_agent = request.headers.get("User-Agent", "")
        event = self._connect_event(conn_id, connected_at, source_ip, user_agent, list(request.headers.items()),
                                    request.query_string, request.scheme)
        refused = await self._authorize(event)
        if refused is not None:
            return refused
        reply = await self.pool.invoke_ws("$connect", event)
        status = int(reply.get("statusCode") or 200)
        if not 200 <= status < 300:
            self._authorized.pop(conn_id, None)
            body = reply.get("body") or json.dumps({"message": "Forbidden"})
            return web.Response(status=status, body=body, content_type="application/json")
        chosen = None
        for k, v in (reply.get("headers") or {}).items():
            if k.lower() == "sec-websocket-protocol":
                chosen = v
        ws = web.WebSocketResponse(protocols=(chosen,) if chosen else (), autoping=False,
                                   max_msg_size=self.limits.max_message_bytes, compress=False)
        await ws.prepare(request)
        conn = _Conn(conn_id, ws, connected_at, source_ip, user_agent)
        conn.touch()
        self.conns[conn_id] = conn
        try:
            await self._read_loop(conn)
        finally:
            self.conns.pop(conn_id, None)
            if not ws.closed:
                try:
                    await ws.close(code=1001, message=b"Going away")
                except (ConnectionError, RuntimeError):  # the transport is gone: $disconnect runs all the same
                    pass
            code = ws.close_code if ws.close_code is not None else 1006
            await self.pool.invoke_ws("$disconnect", self._with_authorizer(self._disconnect_event(
                conn_id, connected_at, source_ip, user_agent, code, conn.close_reason or "")))
            self._authorized.pop(conn_id, None)
        return ws

    async def _read_loop(self, conn: _Conn) -> None:
        ws = conn.ws
        while True:
            now = time.monotonic()
            idle_left = conn.last_active + self.limits.idle_timeout_s - now
            age_left = conn.connected_at_ms / 1000 + self.limits.max_age_s - time.time()
            if idle_left <= 0 or age_left <= 0:
                conn.close_reason = "Idle timeout" if idle_left <= 0 else "Maximum connection age"
                await ws.close(code=1001, message=b"Going away")
                return
            try:
                msg = await ws.receive(timeout=min(idle_left, age_left))
            except asyncio.TimeoutError:
                continue
            if msg.type == WSMsgType.TEXT:
                conn.touch()
                self._spawn(self._frame(conn, msg.data, is_binary=False))
            elif msg.type == WSMsgType.BINARY:
                conn.touch()
                self._spawn(self._frame(conn, base64.b64encode(msg.data).decode(), is_binary=True))
            elif msg.type == WSMsgType.PING:
                conn.touch()
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                conn.touch()
            else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. 1009 message too big)
                if msg.type == WSMsgType.ERROR:
                    conn.close_reason = str(msg.data)[:200]
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _frame(self, conn: _Conn, body: str, *, is_binary: bool) -> None:
        event = {
            "requestContext": self._context(
                "$default", "MESSAGE", conn.connection_id, conn.connected_at_ms, conn.source_ip,
                conn.user_agent, messageId=base64.b64encode(os.urandom(9)).decode()),
            "body": body,
            "isBase64Encoded": is_binary,
        }
        await self.pool.invoke_ws("$default", self._with_authorizer(event))

    # --- @connections management API -------------------------------------------

    async def _management(self, request: web.Request, conn_id: str) -> web.Response:
        rid = str(uuid.uuid4())
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256"):
            return web.json_response({"message": "Missing Authentication Token"}, status=403, headers={
                "x-amzn-ErrorType": "MissingAuthenticationTokenException", "x-amzn-RequestId": rid})
        conn = self.conns.get(conn_id)
        if conn is None and conn_id in self.virtual.conns:
            return await self._virtual_management(request, self.virtual.conns[conn_id], rid)
        if conn is None or conn.ws.closed:
            return web.Response(status=410, body=b"{}", content_type="application/json", headers={
                "x-amzn-ErrorType": "GoneException", "x-amzn-RequestId": rid})
        if request.method == "POST":
            data = await request.read()
            fault = FAULTS.post()  # None unless a test turned faults on
            if fault == "gone":  # the socket dropped under the post
                log.info("fault: dropping connection %s under a post", conn_id)
                conn.close_reason = "Dropped (injected fault)"
                if conn.ws._writer is not None:  # noqa: SLF001 - abort, no close frame, like a lost network
                    conn.ws._writer.transport.abort()
                return web.Response(status=410, body=b"{}", content_type="application/json", headers={
                    "x-amzn-ErrorType": "GoneException", "x-amzn-RequestId": rid})
            if fault == "error":
                return web.json_response({"message": "Internal server error"}, status=500, headers={
                    "x-amzn-ErrorType": "InternalServerErrorException", "x-amzn-RequestId": rid})
            if len(data) > self.limits.max_message_bytes:
                return web.json_response({"message": "Message too long"}, status=413, headers={
                    "x-amzn-ErrorType": "PayloadTooLargeException", "x-amzn-RequestId": rid})
            try:
                async with conn.send_lock:
                    try:
                        await conn.ws.send_str(data.decode("utf-8"))
                    except UnicodeDecodeError:
                        await conn.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                return web.Response(status=410, body=b"{}", content_type="application/json", headers={
                    "x-amzn-ErrorType": "GoneException", "x-amzn-RequestId": rid})
            return web.Response(status=200, headers={"x-amzn-RequestId": rid})
        if request.method == "GET":
            return web.json_response({
                "connectedAt": _iso(conn.connected_at_ms),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                "lastActiveAt": _iso(conn.last_active_ms),
            }, headers={"x-amzn-RequestId": rid})
        if request.method == "DELETE":
            conn.close_reason = "Connection deleted by the management API"
            await conn.ws.close(code=1000, message=b"")
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        return web.json_response({"message": "Method not allowed"}, status=405)

    # --- virtual connections (local only, for benchmarks; devstack/virtual_connections.py) --------

    async def _virtual_management(self, request: web.Request, conn: VirtualConn, rid: str) -> web.Response:
        """@connections for a virtual id: the same answers as for a socket, the frame only counted."""
        gone = web.Response(status=410, body=b"{}", content_type="application/json", headers={
            "x-amzn-ErrorType": "GoneException", "x-amzn-RequestId": rid})
        if request.method == "POST":
            data = await request.read()
            fault = FAULTS.post()  # None unless a test turned faults on
            if fault == "gone":  # the "socket" dropped under the post
                self.virtual.rejected += 1
                self._virtual_drop(conn, 1006, "Dropped (injected fault)")
                return gone
            if fault == "error":
                self.virtual.rejected += 1
                return web.json_response({"message": "Internal server error"}, status=500, headers={
                    "x-amzn-ErrorType": "InternalServerErrorException", "x-amzn-RequestId": rid})
            if len(data) > self.limits.max_message_bytes:
                self.virtual.rejected += 1
                return web.json_response({"message": "Message too long"}, status=413, headers={
                    "x-amzn-ErrorType": "PayloadTooLargeException", "x-amzn-RequestId": rid})
            self.virtual.post_started()
            try:
                await asyncio.sleep(conn.latency.sample_seconds(self.virtual.rng))
            finally:
                self.virtual.post_ended()
            if self.virtual.conns.get(conn.connection_id) is not conn:  # went away while the frame travelled
                return gone
            self.virtual.delivered(conn, data)
            return web.Response(status=200, headers={"x-amzn-RequestId": rid})
        if request.method == "GET":
            return web.json_response({
                "connectedAt": _iso(conn.connected_at_ms),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                "lastActiveAt": _iso(conn.connected_at_ms),  # a virtual client never sends
            }, headers={"x-amzn-RequestId": rid})
        if request.method == "DELETE":
            self._virtual_drop(conn, 1000, "Connection deleted by the management API")
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        return web.json_response({"message": "Method not allowed"}, status=405)

    def _virtual_drop(self, conn: VirtualConn, code: int, reason: str) -> None:
        """Forget one virtual connection; ``$disconnect`` runs afterwards, as for a socket (not awaited:
        the caller may be a handler, and $disconnect may need the very worker it occupies)."""
        self.virtual.conns.pop(conn.connection_id, None)
        if conn.opened:
            self._spawn(self.pool.invoke_ws("$disconnect", self._with_authorizer(self._disconnect_event(
                conn.connection_id, conn.connected_at_ms, conn.source_ip, conn.user_agent, code, reason))))
        self._authorized.pop(conn.connection_id, None)

    async def _virtual_control(self, request: web.Request, path: str) -> web.Response:
        """``/dev/stack/virtual-connections[/arrivals]``: create, read, remove virtual connections."""
        sub = path[len(_VIRTUAL_PATH):]
        if sub == "" and request.method == "POST":
            return await self._virtual_create(request)
        if sub == "" and request.method == "GET":
            return web.json_response(self.virtual.totals())
        if sub == "" and request.method == "DELETE":
            removed = len(self.virtual.conns)
            opened = self.virtual.remove_all()
            await self._virtual_lifecycle(len(opened), lambda i: self._virtual_disconnect(opened[i]))
            return web.json_response({"removed": removed, "disconnected": len(opened)})
        if sub == "/arrivals" and request.method == "GET":
            query = request.query
            if "type" not in query:
                return web.json_response({"keys": self.virtual.arrivals.recent()})
            scope = query.get("conversationId", query.get("key", ""))
            version = query.get("seq", query.get("updatedAt", ""))
            return web.json_response(self.virtual.arrivals.get((query["type"], scope, version)))
        if sub == "/arrivals" and request.method == "DELETE":
            self.virtual.arrivals.clear()
            self.virtual.reset_counters()
            return web.json_response(self.virtual.totals())
        if sub in ("", "/arrivals"):
            return web.json_response({"message": "Method not allowed"}, status=405)
        return web.json_response({"message": "Not Found"}, status=404)

    async def _virtual_create(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            return web.json_response({"message": "expected a JSON object"}, status=400)
        count, token, device = spec.get("count"), spec.get("token"), spec.get("device")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PER_CALL:
            return web.json_response({"message": f"count must be an integer from 1 to {MAX_PER_CALL}"}, status=400)
        if token is not None and not (isinstance(token, str) and token):
            return web.json_response({"message": "token must be a non-empty string"}, status=400)
        if device is not None and not isinstance(device, str):
            return web.json_response({"message": "device must be a string"}, status=400)
        try:
            latency = Latency.parse(spec.get("latencyMs"))
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        if token is None:  # pure sinks: the caller registers them wherever it needs
            now_ms = int(time.time() * 1000)
            ids = [self.virtual.add(self._unused_connection_id(), now_ms, latency, opened=False).connection_id
                   for _ in range(count)]
            return web.json_response({"connectionIds": ids, "refused": 0})
        query = urlencode({"token": token, **({"device": device} if device is not None else {})})
        opened: list[str] = []

        async def open_one(_: int) -> None:
            conn_id = await self._virtual_connect(latency, query)
            if conn_id is not None:
                opened.append(conn_id)

        await self._virtual_lifecycle(count, open_one)
        return web.json_response({"connectionIds": opened, "refused": count - len(opened)})

    async def _virtual_connect(self, latency: Latency, query_string: str) -> str | None:
        """Open one virtual connection as a client's handshake would: its id if ``$connect`` answered 2xx."""
        conn_id = self._unused_connection_id()
        connected_at = int(time.time() * 1000)
        header_items = [("Host", self.domain_name), ("User-Agent", VIRTUAL_USER_AGENT), ("Connection", "Upgrade"),
                        ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode())]
        event = self._connect_event(conn_id, connected_at, "127.0.0.1", VIRTUAL_USER_AGENT, header_items,
                                    query_string, "http")
        if await self._authorize(event) is not None:
            return None
        reply = await self.pool.invoke_ws("$connect", event)
        if not 200 <= int(reply.get("statusCode") or 200) < 300:
            self._authorized.pop(conn_id, None)
            return None
        self.virtual.add(conn_id, connected_at, latency, opened=True)
        return conn_id

    async def _virtual_disconnect(self, conn: VirtualConn) -> None:
        await self.pool.invoke_ws("$disconnect", self._with_authorizer(self._disconnect_event(
            conn.connection_id, conn.connected_at_ms, conn.source_ip, conn.user_agent, 1000,
            "Virtual connections removed")))
        self._authorized.pop(conn.connection_id, None)

    @staticmethod
    async def _virtual_lifecycle(count: int, step: Any) -> None:
        """Run ``step(i)`` for i in range(count), a bounded number at once (100k tasks at once would not do)."""
        next_index = iter(range(count))

        async def worker() -> None:
            for i in next_index:
                await step(i)

        await asyncio.gather(*(worker() for _ in range(min(count, _VIRTUAL_LIFECYCLE_CONCURRENCY))))

    # --- REST API ----------------------------------------------------------------

    async def _scim(self, request: web.Request) -> web.Response:
        """/scim/v2/{proxy+} (ANY) -> the ``scim`` function, as an API Gateway REST (v1) proxy event."""
        body = await request.read()
        path = request.path  # decoded, as API Gateway's ``path`` is
        multi_query: dict[str, list[str]] = {}
        for k, v in parse_qsl(request.query_string, keep_blank_values=True):
            multi_query.setdefault(k, []).append(v)
        multi_headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            multi_headers.setdefault(k, []).append(v)
        try:
            text, is_b64 = (body.decode("utf-8"), False) if body else (None, False)
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        now_ms = int(time.time() * 1000)
        event = {
            "resource": "/scim/v2/{proxy+}", "path": path, "httpMethod": request.method,
            "headers": {k: v for k, v in request.headers.items()}, "multiValueHeaders": multi_headers,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": {"proxy": path[len("/scim/v2/"):]} if path.startswith("/scim/v2/") else None,
            "stageVariables": None, "body": text, "isBase64Encoded": is_b64,
            "requestContext": {"resourcePath": "/scim/v2/{proxy+}", "httpMethod": request.method, "path": path,
                               "stage": self.stage, "requestId": str(uuid.uuid4()), "requestTimeEpoch": now_ms,
                               "requestTime": _request_time(now_ms), "domainName": self.domain_name,
                               "apiId": self.api_id, "protocol": "HTTP/1.1",
                               "identity": {"sourceIp": request.remote or "127.0.0.1",
                                            "userAgent": request.headers.get("User-Agent", "")}},
        }
        reply = await self.pool.invoke_event("scim", event)
        payload = reply.get("body") or ""
        payload = base64.b64decode(payload) if reply.get("isBase64Encoded") else str(payload).encode()
        return web.Response(status=int(reply.get("statusCode", 502)), body=payload,
                            headers=dict(reply.get("headers") or {}))

    async def _rest(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()}
        reply = await self.pool.invoke_rest(request.method, request.raw_path, headers, body or None)
        out_headers = dict(reply.get("headers") or {})
        for k, values in (reply.get("multiValueHeaders") or {}).items():
            out_headers[k] = ", ".join(values)
        if not any(k.lower() == "content-type" for k in out_headers):  # API Gateway's proxy default
            out_headers["Content-Type"] = "application/json"
        payload = reply.get("body") or b""
        if isinstance(payload, str):
            payload = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        return web.Response(status=int(reply.get("statusCode", 502)), body=payload, headers=out_headers)

    async def close_all(self) -> None:
        for conn in list(self.conns.values()):
            conn.close_reason = "Local stack shutting down"
            await conn.ws.close(code=1001, message=b"Going away")
