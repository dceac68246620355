"""Virtual connections: ``@connections`` targets without a socket (local stack only).

Benchmarks of 10,000-100,000 recipients need more WebSocket clients than one
machine holds.  A virtual connection is an id shaped like API Gateway's that the
gateway's management API accepts like a real one: a POST waits a sampled
network latency (``asyncio.sleep``, so many overlap as on AWS), is counted and
answered 200.  Nothing is sent anywhere; instead each frame's *arrival* is
recorded under a key naming the event, so a benchmark can ask when the first
and the last recipient got it.  The gateway (devstack/gateway.py) owns the
routes; this module holds the state, apart from the real connections.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_PER_CALL = 100_000  # connections one POST /dev/stack/virtual-connections may create
MAX_LATENCY_MS = 60_000.0
ARRIVAL_KEYS_MAX = 4096  # events tracked at once (least recently arrived dropped first)
ARRIVAL_KEY_TTL_S = 300.0  # an event none arrived for in this long is dropped
VIRTUAL_USER_AGENT = "devstack-virtual-connection"


def _number(spec: dict[str, Any], name: str, *, low: float = 0.0) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"latencyMs.{name} must be a number")
    if not low <= value <= MAX_LATENCY_MS:
        raise ValueError(f"latencyMs.{name} must be between {low:g} and {MAX_LATENCY_MS:g}")
    return float(value)


@dataclass(frozen=True)
class Latency:
    """A delivery-latency distribution in ms: fixed, uniform(low, high) or lognormal(median, sigma)."""

    dist: str = "fixed"
    a: float = 0.0  # fixed: value; uniform: low; lognormal: median
    b: float = 0.0  # uniform: high; lognormal: sigma

    @classmethod
    def parse(cls, spec: Any) -> "Latency":
        """From the request's ``latencyMs`` (None = no latency); ValueError says what is wrong."""
        if spec is None:
            return cls()
        if not isinstance(spec, dict):
            raise ValueError("latencyMs must be an object")
        dist = spec.get("dist")
        if dist == "fixed":
            return cls("fixed", _number(spec, "value"))
        if dist == "uniform":
            low, high = _number(spec, "low"), _number(spec, "high")
            if low > high:
                raise ValueError("latencyMs.low must not exceed latencyMs.high")
            return cls("uniform", low, high)
        if dist == "lognormal":
            median, sigma = _number(spec, "median", low=0.001), _number(spec, "sigma")
            if sigma > 5:
                raise ValueError("latencyMs.sigma must be between 0 and 5")
            return cls("lognormal", median, sigma)
        raise ValueError('latencyMs.dist must be "fixed", "uniform" or "lognormal"')

    def sample_seconds(self, rng: random.Random) -> float:
        if self.dist == "uniform":
            ms = rng.uniform(self.a, self.b)
        elif self.dist == "lognormal":
            ms = rng.lognormvariate(math.log(self.a), self.b)
        else:
            ms = self.a
        return min(ms, MAX_LATENCY_MS) / 1000.0


@dataclass(slots=True)
class VirtualConn:
    connection_id: str
    index: int  # position in the arrival bitmaps
    connected_at_ms: int
    latency: Latency
    opened: bool  # opened with a token through $connect: its going runs $disconnect
    source_ip: str = "127.0.0.1"
    user_agent: str = VIRTUAL_USER_AGENT


def arrival_key(frame: Any) -> tuple[str, str, str] | None:
    """``(type, scope, version)`` naming the event a frame carries, or None for a frame without a type.

    ``message.created``: scope and version are ``message.conversationId``/``message.seq``;
    ``presence.changed``: ``user.tenantId#user.userId`` and ``updatedAt``; any other
    type: its own ``conversationId`` and ``seq`` ("" when absent).
    """
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return None
    kind = frame["type"]
    if kind == "presence.changed":
        user = frame.get("user") if isinstance(frame.get("user"), dict) else {}
        scope, version = f"{user.get('tenantId', '')}#{user.get('userId', '')}", frame.get("updatedAt")
    else:
        holder = frame.get("message") if kind == "message.created" and isinstance(frame.get("message"), dict) \
            else frame
        scope, version = holder.get("conversationId"), holder.get("seq")
    return kind, "" if scope is None else str(scope), "" if version is None else str(version)


@dataclass(slots=True)
class _KeyStats:
    count: int = 0
    distinct: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    touched: float = 0.0  # monotonic, for expiry
    seen: bytearray = field(default_factory=bytearray)  # one bit per connection index: 12.5 KB per 100k

    def add(self, index: int, at_ms: float, now: float) -> None:
        byte, bit = index >> 3, 1 << (index & 7)
        if byte >= len(self.seen):
            self.seen.extend(bytes(byte + 1 - len(self.seen)))
        if not self.seen[byte] & bit:
            self.seen[byte] |= bit
            self.distinct += 1
        if self.count == 0:
            self.first_at = at_ms
        self.count += 1
        self.last_at = at_ms
        self.touched = now

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "distinct": self.distinct,
                "firstAt": self.first_at if self.count else None, "lastAt": self.last_at if self.count else None}


class Arrivals:
    """Per event key: arrivals, distinct recipients, first and last arrival (epoch ms); bounded in keys."""

    def __init__(self, max_keys: int = ARRIVAL_KEYS_MAX, ttl_s: float = ARRIVAL_KEY_TTL_S) -> None:
        self.max_keys = max_keys
        self.ttl_s = ttl_s
        self._keys: OrderedDict[tuple[str, str, str], _KeyStats] = OrderedDict()  # least recently arrived first

    def __len__(self) -> int:
        return len(self._keys)

    def record(self, key: tuple[str, str, str], index: int) -> None:
        now = time.monotonic()
        stats = self._keys.get(key)
        if stats is None:
            while self._keys and (len(self._keys) >= self.max_keys
                                  or next(iter(self._keys.values())).touched < now - self.ttl_s):
                self._keys.popitem(last=False)
            stats = self._keys[key] = _KeyStats()
        else:
            self._keys.move_to_end(key)
        stats.add(index, round(time.time() * 1000, 3), now)

    def get(self, key: tuple[str, str, str]) -> dict[str, Any]:
        stats = self._keys.get(key)
        return (stats or _KeyStats()).as_json()

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        out = []
        for (kind, scope, version), stats in reversed(self._keys.items()):
            if len(out) >= limit:
                break
            out.append({"type": kind, "key": scope, "seq": version, **stats.as_json()})
        return out

    def clear(self) -> None:
        self._keys.clear()


class VirtualConnections:
    """The gateway's virtual connections and their counters (never mixed with real connections)."""

    def __init__(self) -> None:
        self.conns: dict[str, VirtualConn] = {}
        self.arrivals = Arrivals()
        self.rng = random.Random()
        self._next_index = 0
        self.in_flight = 0  # posts waiting out their latency now (never reset: they are real)
        self.reset_counters()

    def reset_counters(self) -> None:
        self.posts = 0  # delivered (answered 200)
        self.bytes = 0
        self.rejected = 0  # answered 413 or an injected fault
        self.in_flight_max = self.in_flight

    def add(self, connection_id: str, connected_at_ms: int, latency: Latency, *, opened: bool) -> VirtualConn:
        conn = VirtualConn(connection_id, self._next_index, connected_at_ms, latency, opened)
        self._next_index += 1
        self.conns[connection_id] = conn
        return conn

    def remove_all(self) -> list[VirtualConn]:
        """Forget every connection, arrival and counter; the connections that were opened with a token."""
        opened = [c for c in self.conns.values() if c.opened]
        self.conns.clear()
        self.arrivals.clear()
        self._next_index = 0
        self.reset_counters()
        return opened

    def post_started(self) -> None:
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)

    def post_ended(self) -> None:
        self.in_flight -= 1

    def delivered(self, conn: VirtualConn, data: bytes) -> None:
        self.posts += 1
        self.bytes += len(data)
        try:
            key = arrival_key(json.loads(data))
        except (ValueError, UnicodeDecodeError):  # not JSON: counted, but names no event
            return
        if key is not None:
            self.arrivals.record(key, conn.index)

    def totals(self) -> dict[str, Any]:
        return {"connections": len(self.conns), "opened": sum(1 for c in self.conns.values() if c.opened),
                "posts": self.posts, "bytes": self.bytes, "rejected": self.rejected,
                "inFlight": self.in_flight, "inFlightMax": self.in_flight_max, "arrivalKeys": len(self.arrivals)}
