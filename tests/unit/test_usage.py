"""Usage counting's decisions with fakes (chalicelib/usage.py): what is tallied for whom, when it is
written (once per invocation, not per post), the window rules and the CSV (no network)."""
from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from chalicelib import delivery_worker, usage
from chalicelib.protocol.errors import ValidationFailed

from .test_fanout import FakeDelivery, FakeQueue, outbox


@pytest.fixture
def written(monkeypatch):
    """Every usage.add call: (tenant, counts)."""
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(usage, "add", lambda tenant, now=None, **counts: calls.append((tenant, counts)))
    return calls


def test_day_is_the_utc_day():
    assert usage.day_of(0) == "1970-01-01"
    assert usage.day_of(86399.9) == "1970-01-01" and usage.day_of(86400) == "1970-01-02"


@pytest.mark.parametrize("seconds,minutes", [(0, 1), (1, 1), (60, 1), (61, 2), (3600, 60), (-5, 1)])
def test_connection_minutes_round_up_to_at_least_one(seconds, minutes):
    assert usage.connection_minutes(1000, 1000 + seconds) == minutes


def test_a_tally_sums_by_tenant_and_writes_once_per_tenant(written):
    tally = usage.Tally()
    tally.charge("acme", postsDelivered=3)
    tally.charge("acme", postsDelivered=2, pushes=1)
    tally.charge("globex", postsDelivered=0)
    tally.charge(None, postsDelivered=9)  # nobody's event (presence): not counted
    tally.flush()
    assert written == [("acme", {"postsDelivered": 5, "pushes": 1})]
    tally.flush()  # flushed counts are not written twice
    assert len(written) == 1


def test_posts_are_counted_for_the_origin_company_and_shards_carry_it(written):
    delivery, queue = FakeDelivery(failing={"bad"}), FakeQueue()
    out = outbox(delivery, queue)
    out.run({"kind": "connections", "connections": ["a", "bad"], "payload": "p", "origin": "acme#u1"})
    out.run({"kind": "connections", "connections": list("bcdefg"), "payload": "p", "tenant": "globex"})
    assert {s["tenant"] for s, _ in queue.sent} == {"globex"}  # the shards say whose they are
    assert out.tally.pending() == {"acme": {"postsDelivered": 1}}  # the failed post is not a delivery
    out.tally.flush()
    assert written == [("acme", {"postsDelivered": 1})]


def test_the_worker_writes_its_batch_once_and_retried_shards_keep_the_tenant(monkeypatch, written):
    from chalicelib import fair

    monkeypatch.setattr(fair, "_budget", lambda tenant: 1000)
    monkeypatch.setattr(fair, "_take", lambda window, posts: True)  # within budget (tests/unit/test_fair.py)
    delivery, queue = FakeDelivery(failing={"bad"}), FakeQueue()
    out = outbox(delivery, queue, worker=True)
    monkeypatch.setattr(delivery_worker.runtime, "outbox", lambda **_kw: out)
    records = [{"messageId": f"m{i}", "body": json.dumps({"kind": "connections", "connections": [f"c{i}", "bad"],
                                                          "payload": "p", "tenant": "acme"})} for i in range(4)]
    delivery_worker.on_records(records)
    assert written == [("acme", {"postsDelivered": 4})]  # one write for the batch, not one per post or job
    assert {job["tenant"] for job, _ in queue.sent} == {"acme"}


def test_window_defaults_and_refusals():
    today = date(2026, 12, 3)
    assert usage.window(None, None, today) == (date(2026, 11, 3), today)  # 31 days
    assert usage.window("2026-12-01", "2026-12-01", today) == (date(2026, 12, 1), date(2026, 12, 1))
    for bad in [("2026-12-02", "2026-12-01"), ("2025-01-01", "2026-12-01"), ("12/01/2026", None),
                (None, "2026-02-30")]:
        with pytest.raises(ValidationFailed):
            usage.window(*bad, today)


def test_csv_has_a_header_and_one_line_per_row():
    row = {"tenantId": "acme, inc", "day": "2026-12-01", **{k: i for i, k in enumerate(usage.COUNTERS)}}
    text = usage.csv_text([row])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("tenantId,day,messages,postsDelivered,")
    assert parsed == [{k: str(v) for k, v in row.items()}]


def test_unknown_counters_are_a_bug_not_a_silent_drop():
    with pytest.raises(ValueError):
        usage.add("acme", messagez=1)
