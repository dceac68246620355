"""Metering proxy in front of DynamoDB: counts what the app really sends, at the wire.

Benchmarks need DynamoDB request counts and consumed capacity measured, not
estimated from reading code.  Every client of the local stack (Lambda
workers, dev IdP, tests, benches) reaches DynamoDB through this loopback
proxy, which forwards each request and counts, per operation (the
``X-Amz-Target`` suffix): requests, non-2xx answers, request and response
bytes (as the client sees them) and consumed capacity.

The app never asks for ``ReturnConsumedCapacity``, so the proxy adds
``"ReturnConsumedCapacity": "TOTAL"`` to operations that support it and
removes ``ConsumedCapacity`` from the answer again, recomputing
``x-amz-crc32`` (botocore checks it for DynamoDB): the client sees exactly
the answer it would have had.  DynamoDB reports no capacity for failed
requests (e.g. a failed condition), so those count as requests only.

It runs on its own event loop in a daemon thread, so it is up before the
stack creates its tables.  It speaks just enough HTTP/1.1 for botocore and
DynamoDB (keep-alive, Content-Length or chunked answers) on plain asyncio
streams: a full HTTP client and server per hop cost about four times as much
(~1.4 ms instead of ~0.3 ms per request here).
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from .faults import FAULTS

CAPACITY_OPS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                          "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems"})
READ_OPS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
_ASKED = b'"ReturnConsumedCapacity"'
_CONSUMED = b'"ConsumedCapacity"'
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})  # rewritten on each hop
Headers = list[tuple[bytes, bytes]]
_FIELDS = ("requests", "errors", "request_bytes", "response_bytes",
           "capacity_units", "read_capacity_units", "write_capacity_units")


class Meter:
    """Counters per DynamoDB operation; thread-safe (written by the proxy, read by the gateway)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, list[float]] = {}
        self._since = time.time()

    def record(self, op: str, status: int, request_bytes: int, response_bytes: int,
               units: tuple[float, float, float]) -> None:
        with self._lock:
            row = self._ops.setdefault(op, [0] * len(_FIELDS))
            row[0] += 1
            row[1] += status >= 300
            row[2] += request_bytes
            row[3] += response_bytes
            row[4] += units[0]
            row[5] += units[1]
            row[6] += units[2]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._render()

    def reset(self) -> dict[str, Any]:
        """Zero every counter; returns the counters as they were just before."""
        with self._lock:
            before = self._render()
            self._ops = {}
            self._since = time.time()
            return before

    def _render(self) -> dict[str, Any]:
        ops = {op: dict(zip(_FIELDS, row)) for op, row in sorted(self._ops.items())}
        total = {f: sum(row[i] for row in self._ops.values()) for i, f in enumerate(_FIELDS)}
        return {"since": self._since, "operations": ops, "total": total}


def _units(op: str, consumed: Any) -> tuple[float, float, float]:
    """(capacity, read, write) units of a ``ConsumedCapacity`` object or list.

    DynamoDB gives ``CapacityUnits`` and only sometimes the read/write split;
    without the split, units count as reads or writes by operation.
    """
    cap = read = write = 0.0
    for entry in consumed if isinstance(consumed, list) else [consumed]:
        if not isinstance(entry, dict):
            continue
        cu = float(entry.get("CapacityUnits") or 0)
        cap += cu
        if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
            read += float(entry.get("ReadCapacityUnits") or 0)
            write += float(entry.get("WriteCapacityUnits") or 0)
        elif op in READ_OPS:
            read += cu
        else:
            write += cu
    return cap, read, write


def _ask_for_capacity(body: bytes) -> bytes:
    """Insert ``"ReturnConsumedCapacity":"TOTAL"`` as the first member of the JSON body."""
    rest = body.lstrip()[1:]
    sep = b"" if rest.lstrip().startswith(b"}") else b","
    return b'{"ReturnConsumedCapacity":"TOTAL"' + sep + rest


def _split_consumed(payload: bytes) -> tuple[Any, bytes]:
    """The top-level ``ConsumedCapacity`` of an answer, and the answer without it.

    DynamoDB writes it as the last member, so the fast path cuts it off the
    end byte for byte (no re-encoding of a large Query answer); anything else
    is parsed and re-encoded.
    """
    at = payload.rfind(_CONSUMED + b":")
    if at > 0 and payload.endswith(b"}") and payload[at - 1:at] in (b",", b"{"):
        try:  # fails unless the value runs exactly to the closing brace of the top level
            consumed = json.loads(payload[at + len(_CONSUMED) + 1:-1])
        except ValueError:
            pass
        else:
            head = payload[:at - 1] if payload[at - 1:at] == b"," else payload[:at]
            return consumed, head + b"}"
    try:
        doc = json.loads(payload)
    except ValueError:
        return None, payload
    if not isinstance(doc, dict) or "ConsumedCapacity" not in doc:
        return None, payload
    consumed = doc.pop("ConsumedCapacity")
    return consumed, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _parse_head(head: bytes) -> tuple[bytes, Headers]:
    lines = head[:-4].split(b"\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(b":") for line in lines[1:] if line)]
    return lines[0], headers


def _header(headers: Headers, name: bytes) -> bytes:
    return next((v for k, v in headers if k.lower() == name), b"")


async def _read_body(reader: asyncio.StreamReader, headers: Headers, until_eof: bool) -> bytes:
    if b"chunked" in _header(headers, b"transfer-encoding").lower():
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return b"".join(parts)
    length = _header(headers, b"content-length")
    if length:
        return await reader.readexactly(int(length))
    return await reader.read() if until_eof else b""


def _render(start: bytes, headers: Headers, body: bytes) -> bytes:
    lines = [start] + [k + b": " + v for k, v in headers if k.lower() not in _FRAMING]
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _fault_reply(status: int, code: str, message: str) -> tuple[bytes, Headers, bytes]:
    """A DynamoDB error answer as botocore parses it (devstack/faults.py)."""
    payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
    reason = b"Bad Request" if status == 400 else b"Internal Server Error"
    return (b"HTTP/1.1 %d %s" % (status, reason),
            [(b"Content-Type", b"application/x-amz-json-1.0"), (b"x-amz-crc32", b"%d" % zlib.crc32(payload))],
            payload)


def _closes(headers: Headers) -> bool:
    return _header(headers, b"connection").lower() == b"close"


class MeteringProxy:
    """A loopback HTTP proxy to one DynamoDB endpoint; ``start()`` returns its own endpoint.

    Each client connection gets its own kept-alive upstream connection.
    """

    def __init__(self, upstream: str, meter: Meter | None = None, *, inject: bool = True) -> None:
        url = urlsplit(upstream)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.meter = meter or Meter()
        self.inject = inject
        self.endpoint = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        self.endpoint = "http://127.0.0.1:%d" % sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="dynamodb-metering",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("metering proxy did not start")
        return self.endpoint

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._thread = None

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._serve, sock=sock))
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for client in self._clients:  # their readers see EOF and the tasks end
                client.close()
            tasks = asyncio.all_tasks(loop)
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=1))
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests in order, each forwarded and metered."""
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._clients.add(writer)
        try:
            while True:
                try:
                    start, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its kept-alive connection
                body = await _read_body(reader, headers, until_eof=False)
                op = _header(headers, b"x-amz-target").rpartition(b".")[2].decode() or "unknown"
                fault = FAULTS.dynamodb(op, body) if op in CAPACITY_OPS else None  # off unless a test asks
                if fault == "throttle":
                    reply = _fault_reply(400, FAULTS.throttle_code(), "Throughput exceeded (injected fault)")
                    self.meter.record(op, 400, len(body), len(reply[2]), (0.0, 0.0, 0.0))
                    writer.write(_render(*reply))
                    await writer.drain()
                    if _closes(headers):
                        return
                    continue
                inject = (self.inject and op in CAPACITY_OPS and body.lstrip()[:1] == b"{"
                          and _ASKED not in body)
                try:
                    upstream, (status_line, out, payload) = await self._exchange(
                        upstream, _render(start, headers, _ask_for_capacity(body) if inject else body))
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    self.meter.record(op, 502, len(body), 0, (0.0, 0.0, 0.0))
                    writer.write(_render(b"HTTP/1.1 502 Bad Gateway", [(b"Connection", b"close")],
                                         f"metering proxy: upstream failed: {exc!r}".encode()))
                    return
                units = (0.0, 0.0, 0.0)
                if _CONSUMED in payload:
                    consumed, stripped = _split_consumed(payload)
                    if consumed is not None:
                        units = _units(op, consumed)
                        if inject:  # the client did not ask: give it the answer it expects
                            payload = stripped
                            out = [(k, b"%d" % zlib.crc32(payload)) if k.lower() == b"x-amz-crc32" else (k, v)
                                   for k, v in out]
                if fault == "fail_after":  # the write happened; its caller is told it failed
                    status_line, out, payload = _fault_reply(500, "InternalServerError",
                                                             "Internal server error (injected fault)")
                status = int(status_line.split(b" ", 2)[1])
                self.meter.record(op, status, len(body), len(payload), units)
                writer.write(_render(status_line, out, payload))
                await writer.drain()
                if _closes(headers):
                    return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return  # a broken client connection
        finally:
            self._clients.discard(writer)
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def _exchange(self, upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
                        request: bytes) -> tuple[Any, tuple[bytes, Headers, bytes]]:
        """Send one request upstream; reconnect once if the kept-alive connection had gone stale."""
        for attempt in (1, 2):
            if upstream is None:
                upstream = await asyncio.open_connection(self.host, self.port)
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                await up_writer.drain()
                head = await up_reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                up_writer.close()
                upstream = None
                stale = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if attempt == 2 or not stale:
                    raise
                continue
            status_line, headers = _parse_head(head)
            closes = _closes(headers) or status_line.startswith(b"HTTP/1.0")
            payload = await _read_body(up_reader, headers, until_eof=closes)
            if closes:
                up_writer.close()
                upstream = None
            return upstream, (status_line, headers, payload)
        raise AssertionError("unreachable")
