"""Per-tenant limits (chalicelib/limits.py): window math, shards, stored overrides, the cache."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from chalicelib import limits
from chalicelib.protocol.errors import ERROR_CODES, RateLimited, TooManyDevices


def test_window_key_limit_ttl_and_retry_after():
    w = limits.window("send-user", "acme#alice", 10, 1000.25, "10 messages per second per user")
    assert w.key == "send-user#acme#alice#1000" and w.limit == 10
    assert w.expires_at == 1000 + limits.WINDOW_TTL_SECONDS
    assert w.retry_after == pytest.approx(0.75)
    # the next second is a new window (a new item), the same second the same one
    assert limits.window("k", "s", 1, 1001.0, "").key != w.key.replace("send-user", "k")
    assert limits.window("k", "s", 1, 1000.99, "").key == limits.window("k", "s", 1, 1000.0, "").key
    # at the very end of a second retryAfter stays positive
    assert limits.window("k", "s", 1, 1000.99999, "").retry_after >= 0.001
    err = w.refused()
    assert isinstance(err, RateLimited) and err.to_body()["retryAfter"] == 0.75 and err.status == 429


@pytest.mark.parametrize("limit,expected", [(1, 1), (100, 1), (200, 1), (201, 2), (1000, 5), (50_000, 64)])
def test_shards_keep_each_item_under_its_capacity(limit, expected):
    n = limits.shards(limit)
    assert n == expected
    per_shard = math.ceil(limit / n)
    assert per_shard <= limits.SHARD_CAPACITY or n == limits.MAX_SHARDS
    assert n * per_shard >= limit  # the tenant's whole limit is reachable, at most n-1 over it


def test_tenant_window_is_the_users_stable_shard():
    w1 = limits.tenant_window("send-tenant", "acme", "acme#u1", 1000, 5.5, "")
    w2 = limits.tenant_window("send-tenant", "acme", "acme#u1", 1000, 5.9, "")
    assert w1.key == w2.key and w1.limit == 200
    shards = Counter(limits.shard_of(f"acme#user{i}", 5) for i in range(5000))
    assert set(shards) == set(range(5)) and min(shards.values()) > 800  # spread evenly
    small = limits.tenant_window("connect", "acme", "acme#u1", 50, 5.0, "")
    assert small.key == "connect#acme#0#5" and small.limit == 50


def test_stored_overrides_over_defaults(monkeypatch):
    d = limits.TenantLimits.defaults()
    assert (d.devices_per_user, d.connects_per_second, d.sends_per_second_user, d.sends_per_second_tenant) \
        == (10, 100, 10, 1000)
    got = limits.TenantLimits.of({"devicesPerUser": 3, "sendsPerSecondTenant": 50, "connectsPerSecond": 0,
                                  "sendsPerSecondUser": "x", "other": 7})
    assert got == limits.TenantLimits(3, 100, 10, 50)
    assert limits.TenantLimits.of(None) == d


def test_cache_reads_once_per_ttl():
    now = [0.0]
    cache = limits._Cache(clock=lambda: now[0])
    loads = []

    def load(tid):
        loads.append(tid)
        return limits.TenantLimits(len(loads), 1, 1, 1)

    assert cache.get("acme", 30, load).devices_per_user == 1
    now[0] = 29.9
    assert cache.get("acme", 30, load).devices_per_user == 1
    assert cache.get("globex", 30, load).devices_per_user == 2
    now[0] = 30.0
    assert cache.get("acme", 30, load).devices_per_user == 3
    assert loads == ["acme", "globex", "acme"]


def test_take_refuses_a_full_window(monkeypatch):
    from chalicelib.models import RateCounter

    counts: Counter = Counter()

    def take(key, expires_at, limit):
        if counts[key] >= limit:
            return False
        counts[key] += 1
        return True

    monkeypatch.setattr(RateCounter, "take", take)
    w = limits.window("connect", "acme#0", 3, 7.4, "3 new connections per second for the company")
    for _ in range(3):
        limits.take(w)
    with pytest.raises(RateLimited) as exc:
        limits.take(w)
    assert exc.value.fields["retryAfter"] == pytest.approx(0.6)
    limits.take(limits.window("connect", "acme#0", 3, 8.0, ""))  # the next second starts afresh


def test_too_many_devices_is_a_documented_handshake_refusal():
    err = TooManyDevices(3)
    assert err.status == 403 == ERROR_CODES["too_many_devices"][0]
    assert err.to_body() == {"code": "too_many_devices", "limit": 3, "message": err.message}


def test_a_window_known_full_here_refuses_without_a_request(monkeypatch):
    """After one refusal in a second, this container refuses the rest of that second itself."""
    from chalicelib.models import RateCounter

    requests: list[str] = []

    def take(key, expires_at, limit):
        requests.append(key)
        return requests.count(key) <= limit

    monkeypatch.setattr(RateCounter, "take", take)
    w = limits.window("connect", "acme#0", 2, 7.4, "2 new connections per second for the company")
    limits.take(w)
    limits.take(w)                      # this container's own takes fill the window...
    for _ in range(5):
        with pytest.raises(RateLimited) as exc:
            limits.take(w)              # ...so the rest of the second costs no request
        assert exc.value.fields["retryAfter"] == pytest.approx(0.6)
    assert len(requests) == 2
    limits.take(limits.window("connect", "acme#0", 2, 8.0, ""))  # the next second asks again
    assert len(requests) == 3


def test_known_is_exact_refusals_and_own_takes_only():
    known = limits.Known()
    w = limits.window("send-user", "acme#alice", 3, 100.0, "")
    assert not known.refuses(w)
    known.taken(w)
    known.taken(w)
    assert not known.refuses(w)         # 2 of 3 taken here: another may still fit
    known.taken(w)
    assert known.refuses(w)             # 3 of 3 here: DynamoDB has at least as many
    budget = limits.window("deliver", "acme#0", 40, 100.0, "")
    known.refused(budget, 8)
    assert known.refuses(budget, 8) and known.refuses(budget, 20) and not known.refuses(budget, 4)
    big = limits.window("deliver", "globex#0", 40, 100.0, "")
    assert not known.refuses(big, 500)  # never taken here: the window may be empty, which takes any job
    later = limits.window("send-user", "acme#alice", 3, 101.2, "")
    known.taken(later)                  # a new second: the old one is forgotten
    assert not known.refuses(later) and not known._taken.get(w.key)
