"""The outbox's decisions with fakes: after the ack, inline or sharded, worker retries (no network)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from chalicelib import delivery_worker
from chalicelib.delivery import DeliveryReport
from chalicelib.fanout import FanoutLimits, Outbox
from chalicelib.services import events


class FakeDelivery:
    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.posts: list[tuple[list[str], str]] = []
        self.failing = set(failing)

    def fan_out(self, ids, payload):
        self.posts.append((list(ids), payload))
        return DeliveryReport(delivered=[i for i in ids if i not in self.failing],
                              failed=[i for i in ids if i in self.failing])


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[dict, int]] = []

    def __call__(self, bodies, delay_seconds=0):
        self.sent += [(json.loads(b), delay_seconds) for b in bodies]


LIMITS = FanoutLimits(inline_max=3, shard_size=2, large_members=10)


def outbox(delivery=None, queue=None, run=events.run, **kw):
    return Outbox(delivery or FakeDelivery(), queue or FakeQueue(), LIMITS, run, **kw)


def test_a_deferred_outbox_delivers_nothing_until_flushed():
    delivery = FakeDelivery()
    out = outbox(delivery, deferred=True)
    out.fan_out(["c1", "c2"], "{}")
    assert delivery.posts == []
    out.flush()
    assert delivery.posts == [(["c1", "c2"], "{}")]
    out.flush()  # flushed jobs do not run twice
    assert len(delivery.posts) == 1


def test_up_to_inline_max_connections_are_posted_in_the_invocation():
    delivery, queue = FakeDelivery(), FakeQueue()
    outbox(delivery, queue).fan_out(["a", "b", "c"], "x")
    assert delivery.posts == [(["a", "b", "c"], "x")] and queue.sent == []


def test_more_than_inline_max_go_to_the_queue_in_shards_of_shard_size():
    delivery, queue = FakeDelivery(), FakeQueue()
    outbox(delivery, queue).fan_out(["a", "b", "c", "d", "e"], "x")
    assert delivery.posts == []
    shards = [job["connections"] for job, _ in queue.sent]
    assert shards == [["a", "b"], ["c", "d"], ["e"]]
    assert all(job["kind"] == "connections" and job["payload"] == "x" for job, _ in queue.sent)


def test_a_worker_posts_the_first_shard_itself_and_queues_the_rest():
    delivery, queue = FakeDelivery(), FakeQueue()
    outbox(delivery, queue, worker=True).post(["a", "b", "c", "d", "e"], "x")
    assert delivery.posts == [(["a", "b"], "x")]
    assert [job["connections"] for job, _ in queue.sent] == [["c", "d"], ["e"]]


def test_a_large_conversation_is_queued_whole_and_never_resolved_in_the_request():
    ran, queue = [], FakeQueue()
    out = outbox(queue=queue, run=lambda o, job: ran.append(job), deferred=True)
    conv = SimpleNamespace(conversation_id="c1", member_count=LIMITS.large_members + 1)
    events.to_conversation(out, conv, {"type": "x"}, origin="t#u", now_ms=1)
    out.flush()
    assert ran == [] and [job["conversationId"] for job, _ in queue.sent] == ["c1"]
    small = SimpleNamespace(conversation_id="c2", member_count=LIMITS.large_members)
    events.to_conversation(out, small, {"type": "x"}, origin="t#u", now_ms=1)
    out.flush()
    assert [job["conversationId"] for job in ran] == ["c2"]


def test_one_failing_job_does_not_stop_the_others_after_the_ack():
    ran = []

    def run(_out, job):
        if job["n"] == 1:
            raise RuntimeError("boom")
        ran.append(job["n"])

    out = outbox(run=run, deferred=True)
    for n in range(3):
        out.add({"kind": "x", "n": n})
    out.flush()
    assert ran == [0, 2]


def _record(job, mid):
    return {"messageId": mid, "body": json.dumps(job)}


def test_worker_reports_only_the_failing_record_and_requeues_failed_posts(monkeypatch):
    delivery, queue = FakeDelivery(failing={"bad"}), FakeQueue()
    out = outbox(delivery, queue, worker=True)
    monkeypatch.setattr(delivery_worker.runtime, "outbox", lambda **_kw: out)
    real_run = events.run

    def run(o, job):
        if job.get("explode"):
            raise RuntimeError("throttled")
        return real_run(o, job)

    monkeypatch.setattr(events, "run", run)
    reply = delivery_worker.on_records([
        _record({"kind": "connections", "connections": ["ok", "bad"], "payload": "p"}, "m1"),
        _record({"kind": "connections", "connections": ["x"], "payload": "p", "explode": True}, "m2"),
        {"messageId": "m3", "body": "not json"},
    ])
    assert reply == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    (retry, delay), = queue.sent
    assert retry["connections"] == ["bad"] and retry["attempt"] == 1 and delay == 2


def test_worker_gives_up_on_posts_after_the_last_attempt(monkeypatch):
    delivery, queue = FakeDelivery(failing={"bad"}), FakeQueue()
    out = outbox(delivery, queue, worker=True)
    monkeypatch.setattr(delivery_worker.runtime, "outbox", lambda **_kw: out)
    job = {"kind": "connections", "connections": ["bad"], "payload": "p",
           "attempt": delivery_worker.MAX_SHARD_ATTEMPTS}
    assert delivery_worker.on_records([_record(job, "m1")]) == {"batchItemFailures": []}
    assert queue.sent == []


@pytest.mark.parametrize("kind", ["nope", None])
def test_an_unknown_job_kind_is_an_error_not_a_silent_drop(kind):
    with pytest.raises(ValueError):
        events.run(outbox(), {"kind": kind})
