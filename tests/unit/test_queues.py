"""The local stack's SQS event sources behave like Lambda's (devstack/queues.py): concurrent batches
that scale with the backlog, partial batch failures, crashes that delete nothing, a visibility
timeout and a dead-letter queue after MAX_RECEIVES receives.  Driven against moto's SQS in-process
with a fake Lambda pool, so what the poller deletes and when messages come back is what SQS does."""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import boto3
import pytest
from chalice import Chalice
from moto import mock_aws

from devstack import queues, sqs_receive
from devstack.lambda_pool import Crash, LambdaPool, _Workers
from devstack.queues import QueuePoller


@pytest.fixture
def sqs():
    sqs_receive.apply()  # as the stack does
    with mock_aws():  # narrow test of the event source against moto's SQS, not of the app
        yield boto3.client("sqs", region_name="us-east-1")


class FakePool:
    """``invoke_event`` as LambdaPool's: ``reply(records, call_number)`` decides the result."""

    def __init__(self, reply=lambda records, n: None, delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls: list[list[dict]] = []
        self.in_flight = 0
        self.in_flight_max = 0

    async def invoke_event(self, function_name, event):
        self.calls.append(event["Records"])
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            result = self.reply(event["Records"], len(self.calls))
        finally:
            self.in_flight -= 1
        return {"statusCode": 200} if result is None else result

    def bodies(self) -> list[str]:
        return [r["body"] for batch in self.calls for r in batch]


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def visible_and_in_flight(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


async def started(poller: QueuePoller) -> asyncio.Task:
    return asyncio.create_task(poller.run())


async def stopped(poller: QueuePoller, task: asyncio.Task) -> None:
    poller.stop()
    await asyncio.wait_for(task, 10)


async def test_a_backlog_runs_concurrent_batches_up_to_the_maximum_then_drops_back(sqs):
    pool = FakePool(delay=0.15)
    poller = QueuePoller(pool, sqs, "backlog", "consume", batch_size=2, max_concurrency=3, visibility_seconds=30)
    for i in range(0, 40, 10):
        sqs.send_message_batch(QueueUrl=poller.url, Entries=[
            {"Id": str(j), "MessageBody": f"m{i + j}"} for j in range(10)])
    task = await started(poller)
    try:
        await until(lambda: poller.stats.deleted == 40)
        assert pool.in_flight_max == poller.stats.in_flight_max == 3  # > 1, never above the maximum
        assert sorted(pool.bodies()) == sorted(f"m{i}" for i in range(40))  # each exactly once
        await until(lambda: poller.stats.lanes == 1, timeout=10)  # the queue is empty: back to one lane
        assert visible_and_in_flight(sqs, poller.url) == 0
    finally:
        await stopped(poller, task)


async def test_a_sources_sharing_worker_slots_never_invoke_more_at_once_than_there_are_workers(sqs):
    pool = FakePool(delay=0.1)  # one pool, as the SQS functions share the event workers
    slots = asyncio.Semaphore(2)
    pollers = [QueuePoller(pool, sqs, name, "consume", batch_size=1, max_concurrency=4, visibility_seconds=30,
                           slots=slots) for name in ("shared-a", "shared-b")]
    for poller in pollers:
        sqs.send_message_batch(QueueUrl=poller.url, Entries=[
            {"Id": str(i), "MessageBody": f"{poller.queue}-{i}"} for i in range(10)])
    tasks = [await started(p) for p in pollers]
    try:
        await until(lambda: sum(p.stats.deleted for p in pollers) == 20)
        assert pool.in_flight_max == 2  # both sources had a backlog, two workers
        assert sorted(pool.bodies()) == sorted(f"shared-{q}-{i}" for q in "ab" for i in range(10))  # once each
    finally:
        for poller, task in zip(pollers, tasks):
            await stopped(poller, task)


async def test_a_trickle_stays_on_one_lane(sqs):
    pool = FakePool()
    poller = QueuePoller(pool, sqs, "trickle", "consume", batch_size=10, max_concurrency=4, visibility_seconds=30)
    task = await started(poller)
    try:
        for i in range(5):  # fewer than a batch at a time: no backlog, nothing to run alongside
            sqs.send_message(QueueUrl=poller.url, MessageBody=f"t{i}")
            await until(lambda: poller.stats.deleted == i + 1)
        assert poller.stats.in_flight_max == 1 and poller.stats.lanes == 1
    finally:
        await stopped(poller, task)


async def test_b_partial_batch_failure_deletes_only_the_successes_and_the_failure_comes_back(sqs):
    def reply(records, n):
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records
                                      if r["body"] == "bad" and n == 1]}

    pool = FakePool(reply)
    poller = QueuePoller(pool, sqs, "partial", "consume", batch_size=10, max_concurrency=1, visibility_seconds=1)
    sqs.send_message_batch(QueueUrl=poller.url, Entries=[
        {"Id": str(i), "MessageBody": body} for i, body in enumerate(["ok1", "bad", "ok2"])])
    task = await started(poller)
    try:
        await until(lambda: len(pool.calls) == 1)
        first_at = time.monotonic()
        assert sorted(pool.bodies()) == ["bad", "ok1", "ok2"]
        await until(lambda: poller.stats.deleted == 2)
        assert visible_and_in_flight(sqs, poller.url) == 1  # only the failed one is left
        await until(lambda: len(pool.calls) == 2)
        assert time.monotonic() - first_at >= 0.9  # not before the visibility timeout
        (again,) = pool.calls[1]
        assert again["body"] == "bad" and again["attributes"]["ApproximateReceiveCount"] == "2"
        await until(lambda: poller.stats.deleted == 3)
        assert poller.stats.failed_items == 1 and poller.stats.crashes == 0
    finally:
        await stopped(poller, task)


async def test_b_an_empty_list_or_a_dict_without_one_is_a_complete_success(sqs):
    replies = [{"batchItemFailures": []}, {"statusCode": 502}, {"something": "else"}]
    pool = FakePool(lambda records, n: replies[n - 1])
    poller = QueuePoller(pool, sqs, "success", "consume", batch_size=1, max_concurrency=1, visibility_seconds=30)
    task = await started(poller)
    try:
        for i in range(3):
            sqs.send_message(QueueUrl=poller.url, MessageBody=f"s{i}")
            await until(lambda: poller.stats.deleted == i + 1)
        assert len(pool.calls) == 3
    finally:
        await stopped(poller, task)


def test_b_a_malformed_failure_list_fails_the_whole_batch(sqs):
    poller = QueuePoller(FakePool(), sqs, "malformed", "consume", batch_size=10, visibility_seconds=30)
    msgs = [{"MessageId": "m1"}, {"MessageId": "m2"}]
    assert poller._kept_ids({"batchItemFailures": [{"itemIdentifier": "m2"}]}, msgs) == {"m2"}
    for bad in ({"batchItemFailures": "m1"}, {"batchItemFailures": [{"itemIdentifier": ""}]},
                {"batchItemFailures": [{"itemIdentifier": "unknown"}]}, {"batchItemFailures": [{"id": "m1"}]}):
        assert poller._kept_ids(bad, msgs) == {"m1", "m2"}, bad


@pytest.mark.parametrize("how", ["crash", "raise"])
async def test_c_a_crash_deletes_nothing(sqs, how):
    def reply(records, n):
        if n == 1 and how == "raise":
            raise RuntimeError("the fake pool itself broke")
        return Crash("worker died") if n == 1 else None

    pool = FakePool(reply)
    poller = QueuePoller(pool, sqs, f"crash-{how}", "consume", batch_size=10, max_concurrency=1,
                         visibility_seconds=1)
    sqs.send_message_batch(QueueUrl=poller.url, Entries=[
        {"Id": str(i), "MessageBody": f"c{i}"} for i in range(3)])
    task = await started(poller)
    try:
        await until(lambda: len(pool.calls) == 1)
        await asyncio.sleep(0.3)
        assert poller.stats.deleted == 0 and visible_and_in_flight(sqs, poller.url) == 3
        await until(lambda: poller.stats.deleted == 3)  # all three came back after the visibility timeout
        assert sorted(r["body"] for r in pool.calls[1]) == ["c0", "c1", "c2"]
        assert poller.stats.crashes == 1
    finally:
        await stopped(poller, task)


async def test_d_after_max_receives_a_message_moves_to_the_dead_letter_queue(sqs):
    pool = FakePool(lambda records, n: Crash("always"))
    # Visibility 0: a crashed message is visible again at once, so five receives take no time.
    poller = QueuePoller(pool, sqs, "poison", "consume", batch_size=1, max_concurrency=1, visibility_seconds=0)
    dlq_url = sqs.get_queue_url(QueueName="poison-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=poller.url, MessageBody="poison")
    task = await started(poller)
    try:
        await until(lambda: visible_and_in_flight(sqs, dlq_url) == 1)
        assert len(pool.calls) == queues.MAX_RECEIVES == 5
        assert [r["attributes"]["ApproximateReceiveCount"] for (r,) in pool.calls] == ["1", "2", "3", "4", "5"]
        assert visible_and_in_flight(sqs, poller.url) == 0
    finally:
        await stopped(poller, task)
    (dead,) = sqs.receive_message(QueueUrl=dlq_url)["Messages"]
    assert dead["Body"] == "poison"


def test_queues_are_created_as_infra_declares_them(sqs, monkeypatch):
    from tools import render_infra

    assert queues.MAX_RECEIVES == render_infra.MAX_RECEIVES
    monkeypatch.setenv("DEVSTACK_SQS_VISIBILITY_SECONDS", "45")
    sqs.create_queue(QueueName="existing")  # created before, without the attributes: still set
    poller = QueuePoller(FakePool(), sqs, "existing", "consume", batch_size=10)
    attrs = sqs.get_queue_attributes(QueueUrl=poller.url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName="existing-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert attrs["VisibilityTimeout"] == "45"
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}


def test_maximum_concurrency_comes_from_the_app_else_the_environment(sqs, monkeypatch):
    app = Chalice("t")

    @app.on_sqs_message(queue="capped", batch_size=5, maximum_concurrency=7)
    def capped(event):
        return None

    @app.on_sqs_message(queue="plain")
    def plain(event):
        return None

    sources = {s.queue: s for s in queues.sqs_sources(app)}
    assert sources["capped"] == queues.SqsSource("capped", "capped", 5, 7)
    assert sources["plain"].maximum_concurrency is None
    monkeypatch.setenv("DEVSTACK_SQS_MAX_CONCURRENCY", "2")
    made = {s.queue: QueuePoller(FakePool(), sqs, s.queue, s.function_name, s.batch_size,
                                 max_concurrency=s.maximum_concurrency) for s in sources.values()}
    assert made["capped"].max_concurrency == 7 and made["plain"].max_concurrency == 2
    monkeypatch.delenv("DEVSTACK_SQS_MAX_CONCURRENCY")
    assert QueuePoller(FakePool(), sqs, "plain", "plain", 1).max_concurrency == queues.DEFAULT_MAX_CONCURRENCY


# --- the Lambda pool: crashes told apart from return values; SQS consumers on their own processes ---------


def _returns_502() -> dict:
    return {"statusCode": 502, "body": "the handler's own reply"}


def _raises() -> dict:
    raise ValueError("unhandled in the handler")


def _dies() -> dict:
    raise BrokenProcessPool("a worker process died")


async def test_a_crash_is_a_502_crash_and_a_handlers_502_is_not():
    workers = _Workers("test", 1)
    workers.executor.shutdown()
    workers.executor = ThreadPoolExecutor(1)  # the same run() path, without spawning the app
    try:
        own = await workers.run(_returns_502)
        assert own == {"statusCode": 502, "body": "the handler's own reply"} and not isinstance(own, Crash)
        raised = await workers.run(_raises)
        assert isinstance(raised, Crash) and raised["statusCode"] == 502  # what SCIM and S3 callers relay
        thread_pool = workers.executor
        died = await workers.run(_dies)
        assert isinstance(died, Crash) and workers.executor is not thread_pool  # replaced, as a dead worker is
    finally:
        thread_pool.shutdown()
        workers.shutdown()


def test_sqs_consumers_run_on_their_own_processes():
    pool = LambdaPool(1, event_workers=1, event_functions=["presence_flush"])  # processes start on first use
    try:
        assert pool._workers_for("presence_flush") is pool._events
        assert pool._workers_for("scim") is pool._front and pool._workers_for("file_uploaded") is pool._front
    finally:
        pool.shutdown()
    shared = LambdaPool(1, event_workers=0, event_functions=["presence_flush"])
    try:
        assert shared._workers_for("presence_flush") is shared._front
    finally:
        shared.shutdown()
