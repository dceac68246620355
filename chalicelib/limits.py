"""Per-tenant usage limits (issue #21): devices per user, connects per second per tenant, sends per
second per user and per tenant; the delivery workers' posts-per-second budget (checked by
chalicelib/fair.py).  docs/operations.md "Limits" has the defaults, docs/data-model.md the
items and their cost.

Every rate is a fixed one-second window: a counter item ``{kind}#{subject}#{second}`` in the
ratelimits table, advanced by ``ADD count 1`` under ``count < limit`` (one conditional write per
checked action, or one item of the send's own transaction) and expiring by TTL a minute later.
A window that is full refuses until the next second starts: ``retryAfter`` is the time left in it.

A container remembers what it has learnt of the current windows (``known``): once a window has
refused it, or its own takes have filled it, the next attempt in the same second is refused
without a request.  A flood at many times its limit then costs DynamoDB about one refused write
per window, second and container, not one per attempt.

A tenant-wide counter written by every send of a large company would be a hot key (one DynamoDB
partition takes ~1,000 writes/s, a transactional write counts twice), so tenant windows are
**sharded**: ``shards(limit)`` sub-windows, each with ``limit / shards`` (rounded up), and a user
always lands in the same one (a hash of the user key).  The tenant's total is then at most
``shards * ceil(limit / shards)``; a tenant whose traffic comes from few users may be refused a
little below its limit (its users share fewer shards) — the price of never having a hot key.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any, Callable, NamedTuple

from .config import settings
from .protocol.errors import RateLimited

WINDOW_TTL_SECONDS = 60   # a window item is removed by TTL this long after its second
SHARD_CAPACITY = 200      # at most this many takes per second land on one shard item
MAX_SHARDS = 64

# tenant record field -> TenantLimits attribute (tenantctl limits writes these)
FIELDS = {"devicesPerUser": "devices_per_user", "connectsPerSecond": "connects_per_second",
          "sendsPerSecondUser": "sends_per_second_user", "sendsPerSecondTenant": "sends_per_second_tenant",
          "deliveryPostsPerSecond": "delivery_posts_per_second"}


class TenantLimits(NamedTuple):
    devices_per_user: int
    connects_per_second: int
    sends_per_second_user: int
    sends_per_second_tenant: int
    delivery_posts_per_second: int = 2000  # the delivery workers' budget for the company (chalicelib/fair.py)

    @classmethod
    def defaults(cls) -> "TenantLimits":
        s = settings()
        return cls(s.devices_per_user, s.connects_per_second, s.sends_per_second, s.sends_per_second_tenant,
                   s.delivery_posts_per_second_tenant)

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> "TenantLimits":
        """The stored overrides (tenant record ``limits``) over the defaults; a bad value is ignored."""
        base = cls.defaults()
        values = {attr: getattr(base, attr) for attr in FIELDS.values()}
        for field, attr in FIELDS.items():
            raw = (stored or {}).get(field)
            if isinstance(raw, (int, float)) and int(raw) >= 1:
                values[attr] = int(raw)
        return cls(**values)


class Window(NamedTuple):
    """One fixed one-second window: its counter item's key, limit, TTL and the time left in it."""

    key: str
    limit: int
    expires_at: int
    retry_after: float
    what: str

    def refused(self) -> RateLimited:
        """The refusal; the window's company is counted as throttled (``TenantThrottled``, by tenant)."""
        from . import metrics

        metrics.tenant_throttled(self.key.split("#", 2)[1])
        return RateLimited(retry_after=self.retry_after, message=f"At most {self.what}.")


def shards(limit: int) -> int:
    """How many sub-windows a tenant-wide limit is split into (none under SHARD_CAPACITY)."""
    return max(1, min(MAX_SHARDS, math.ceil(limit / SHARD_CAPACITY)))


def shard_of(user_key: str, count: int) -> int:
    """The user's shard: stable (the same user always writes the same sub-window)."""
    if count <= 1:
        return 0
    return int.from_bytes(hashlib.blake2b(user_key.encode(), digest_size=4).digest(), "big") % count


def window(kind: str, subject: str, limit: int, now: float, what: str) -> Window:
    second = int(now)
    return Window(f"{kind}#{subject}#{second}", limit, second + WINDOW_TTL_SECONDS,
                  max(0.001, second + 1 - now), what)


def tenant_window(kind: str, tenant_id: str, user_key: str, limit: int, now: float, what: str) -> Window:
    """The user's shard of a tenant-wide window: ``ceil(limit / shards)`` of it."""
    n = shards(limit)
    return window(kind, f"{tenant_id}#{shard_of(user_key, n)}", math.ceil(limit / n), now, what)


def user_send_window(limits: TenantLimits, user_key: str, now: float) -> Window:
    return window("send-user", user_key, limits.sends_per_second_user, now,
                  f"{limits.sends_per_second_user} messages per second per user")


def tenant_send_window(limits: TenantLimits, tenant_id: str, user_key: str, now: float) -> Window:
    return tenant_window("send-tenant", tenant_id, user_key, limits.sends_per_second_tenant, now,
                         f"{limits.sends_per_second_tenant} messages per second for the company")


def connect_window(limits: TenantLimits, tenant_id: str, user_key: str, now: float) -> Window:
    return tenant_window("connect", tenant_id, user_key, limits.connects_per_second, now,
                         f"{limits.connects_per_second} new connections per second for the company")


class Known:
    """What this container has learnt of the current windows: enough to refuse without a request.

    Exact, never a guess.  Within its second a window's count only grows, and this container's
    own successful takes are part of it; so if the window refused ``n`` units here, it refuses
    ``n`` or more again, and if this container alone has taken ``t`` > 0 units, any take that
    would pass ``limit`` is refused too (``t`` > 0 also means the window exists, so the "an empty
    window takes any job" rule of the delivery budget cannot apply).  Window keys hold their
    second, so a new second starts unknown; entries of past seconds are dropped as time moves on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second = 0
        self._taken: dict[str, int] = {}
        self._refused: dict[str, int] = {}

    @staticmethod
    def _second_of(w: Window) -> int:
        return w.expires_at - WINDOW_TTL_SECONDS

    def _advance(self, second: int) -> None:
        if second > self._second:  # a new second: what was known of the older ones is of no use
            self._second = second
            self._taken = {k: v for k, v in self._taken.items() if k.endswith(f"#{second}")}
            self._refused = {k: v for k, v in self._refused.items() if k.endswith(f"#{second}")}

    def refuses(self, w: Window, units: int = 1) -> bool:
        """Whether DynamoDB would surely refuse ``units`` more from ``w`` now."""
        with self._lock:
            refused = self._refused.get(w.key)
            if refused is not None and units >= refused:
                return True
            taken = self._taken.get(w.key, 0)
            return taken > 0 and taken + units > w.limit

    def taken(self, w: Window, units: int = 1) -> None:
        with self._lock:
            self._advance(self._second_of(w))
            self._taken[w.key] = self._taken.get(w.key, 0) + units

    def refused(self, w: Window, units: int = 1) -> None:
        with self._lock:
            self._advance(self._second_of(w))
            self._refused[w.key] = min(units, self._refused.get(w.key, units))

    def clear(self) -> None:
        with self._lock:
            self._taken.clear()
            self._refused.clear()


known = Known()


def refuse_if_known(windows: tuple[Window, ...]) -> None:
    """``rate_limited`` at once when this container already knows one of ``windows`` is full (no request)."""
    for w in windows:
        if known.refuses(w):
            raise w.refused()


def take(w: Window) -> None:
    """One conditional UpdateItem (none when the window is known full here); ``rate_limited`` when
    the window is full (or its item throttled)."""
    from pynamodb.exceptions import UpdateError

    from .models import RateCounter

    refuse_if_known((w,))
    try:
        ok = RateCounter.take(w.key, w.expires_at, w.limit)
    except UpdateError as exc:
        if "Throughput" in str(exc) or "Throttl" in str(exc):  # a storm on one key: refuse, do not fail
            raise w.refused() from None
        raise
    if not ok:
        known.refused(w)
        raise w.refused()
    known.taken(w)


# --- the tenant's limits, cached per container ------------------------------------------------

class _Cache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, TenantLimits]] = {}

    def get(self, tenant_id: str, ttl: float, load: Callable[[str], TenantLimits]) -> TenantLimits:
        now = self._clock()
        with self._lock:
            hit = self._items.get(tenant_id)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = load(tenant_id)
        with self._lock:
            self._items[tenant_id] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache()


def _load(tenant_id: str) -> TenantLimits:
    """1 GetItem of the tenant record's ``limits`` (eventually consistent: a change shows within seconds)."""
    from .models import Tenant

    try:
        tenant = Tenant.get(tenant_id, attributes_to_get=["tenant_id", "limits"])
    except Tenant.DoesNotExist:
        return TenantLimits.defaults()
    return TenantLimits.of(tenant.limits.as_dict() if tenant.limits is not None else None)


def for_tenant(tenant_id: str) -> TenantLimits:
    """The tenant's limits, reused for ``TENANT_CACHE_SECONDS`` (30 s) in a warm container."""
    return _cache.get(tenant_id, settings().tenant_cache_seconds, _load)
