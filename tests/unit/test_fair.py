"""Fair delivery's decision with fakes (chalicelib/fair.py): a company over its posts/s budget has its
jobs queued again with a growing delay, never dropped, while another company's jobs are posted."""
from __future__ import annotations

import json
import random

import pytest

from chalicelib import delivery_worker, fair, metrics

from .test_fanout import FakeDelivery, FakeQueue, outbox


class Windows:
    """An in-memory stand-in for the ratelimits table: one count per window key."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def take(self, w, posts: int) -> bool:
        have = self.counts.get(w.key)
        if have is not None and have > w.limit - posts:
            return False
        self.counts[w.key] = (have or 0) + posts
        return True


@pytest.fixture
def windows(monkeypatch):
    store = Windows()
    monkeypatch.setattr(fair, "_take", store.take)
    monkeypatch.setattr(fair, "_budget", lambda tenant: {"flood": 4}.get(tenant, 1000))
    monkeypatch.setattr(delivery_worker.runtime, "clock", lambda: 1_000_000.5)  # one window for the test
    monkeypatch.setattr("chalicelib.usage.add", lambda *a, **k: None)
    return store


def job(tenant: str, n: int, **extra) -> dict:
    return {"kind": "connections", "connections": [f"{tenant}-{i}" for i in range(n)], "payload": "p",
            "tenant": tenant, **extra}


def test_cost_is_the_connections_or_one_shard():
    assert fair.cost(job("a", 3), 250) == 3
    assert fair.cost({"kind": "conversation"}, 250) == 250
    assert fair.cost({"kind": "connections", "connections": []}, 250) == 1


@pytest.mark.parametrize("deferrals,low,high", [(1, 1, 1), (2, 2, 2), (3, 4, 5), (6, 32, 40), (7, 60, 60),
                                                (30, 60, 60)])
def test_the_delay_doubles_and_is_capped(deferrals, low, high):
    rng = random.Random(7)
    assert all(low <= fair.defer_delay(deferrals, rng) <= high for _ in range(50))


def test_nobodys_jobs_pushes_and_roster_builds_are_not_budgeted():
    def never(*_):
        raise AssertionError("no budget check")

    assert fair.decide(job("x", 5), None, 250, 0, never, never).delay is None
    assert fair.decide({"kind": "push"}, "acme", 250, 0, never, never).delay is None
    assert fair.decide({"kind": "roster.build"}, "acme", 250, 0, never, never).delay is None


def test_a_broken_budget_store_admits_the_job():
    def broken(*_):
        raise RuntimeError("throttled")

    assert fair.decide(job("acme", 5), "acme", 250, 0, lambda t: 10, broken).delay is None


def test_a_job_bigger_than_the_whole_budget_goes_when_the_window_is_empty(windows):
    assert fair.decide(job("flood", 50), "flood", 250, 5.0).delay is None
    assert fair.decide(job("flood", 1), "flood", 250, 5.0).delay is not None  # the window is spent


def test_the_flooding_company_is_queued_again_and_the_other_posted(windows, monkeypatch):
    delivery, queue = FakeDelivery(), FakeQueue()
    out = outbox(delivery, queue, worker=True)
    monkeypatch.setattr(delivery_worker.runtime, "outbox", lambda **_kw: out)
    records = [{"messageId": f"f{i}", "body": json.dumps(job("flood", 2))} for i in range(4)]
    records.insert(2, {"messageId": "q1", "body": json.dumps(job("quiet", 3))})
    reply = delivery_worker.on_records(records)
    assert reply == {"batchItemFailures": []}  # nothing left to SQS's retries, nothing dropped
    posted = [c for ids, _ in delivery.posts for c in ids]
    assert [c for c in posted if c.startswith("quiet")] == ["quiet-0", "quiet-1", "quiet-2"]
    assert len([c for c in posted if c.startswith("flood")]) == 4  # its budget: 4 posts this second
    deferred = [(body, delay) for body, delay in queue.sent]
    assert len(deferred) == 2 and all(b["tenant"] == "flood" and b["deferrals"] == 1 and d == 1
                                      for b, d in deferred)
    again = fair.decide(deferred[0][0], "flood", 250, 1_000_000.5)
    assert again.delay == 2  # the second deferral waits longer


def test_throttled_companies_get_their_own_emf_document(capsys):
    metrics.tenant_throttled("flood", 3)
    metrics.tenant_throttled(None)
    metrics.flush("deliver", stage="dev")
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [d for d in docs if d.get("tenant") == "flood"]
    assert len(mine) == 1 and mine[0]["TenantThrottled"] == 3
    assert mine[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["stage", "tenant"]]
