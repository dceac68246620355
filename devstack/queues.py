"""SQS event-source mappings: poll moto's SQS and invoke the app's ``on_sqs_message``
handlers with the event AWS would send, the way Lambda's pollers do.

* **Concurrency.** Each event source runs up to ``maximum_concurrency`` batches at
  once (Chalice's ``SQSEventConfig``; else ``DEVSTACK_SQS_MAX_CONCURRENCY``, default
  4). It starts with one *lane* (receive, invoke, delete, repeat); a receive that
  returns a full batch means a backlog, so that lane starts one more; a lane whose
  receive comes back empty stops, except the last one. So a burst ramps up to the
  maximum and an idle queue drops back to one long-polling lane.
* **Worker slots.** The SQS functions share a few worker processes; pollers that
  share ``slots`` (one per process) invoke only while holding one, and start no
  extra lane while none is free, so received batches do not queue up behind
  busy workers while their visibility timeout runs out (Lambda's pollers, too,
  only pull what the function's concurrency can take).
* **Partial batch failures** (``ReportBatchItemFailures``): a handler's
  ``{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`` keeps the
  listed messages and deletes the others; a missing or empty list is a complete
  success; a malformed one (not a list, an entry without a known messageId) is a
  complete failure, as Lambda treats it. A crashed invocation (a
  :class:`~devstack.lambda_pool.Crash`: the handler raised or its worker died)
  deletes nothing. Kept messages come back after the visibility timeout.
* **Visibility timeout and dead-letter queue**: each queue is created with
  ``VisibilityTimeout`` = ``DEVSTACK_SQS_VISIBILITY_SECONDS`` (default 30) and a
  ``RedrivePolicy`` to ``<name>-dlq`` after :data:`MAX_RECEIVES` receives, as
  ``infra/`` declares them. moto 5.2.5 honours the policy on receive: the receive
  after the fifth moves the message to the dead-letter queue.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from .faults import FAULTS
from .lambda_pool import Crash

log = logging.getLogger("devstack.queues")

MAX_RECEIVES = 5  # = tools/render_infra.py's MAX_RECEIVES (receives before the dead-letter queue)
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_VISIBILITY_SECONDS = 30


class SqsSource(NamedTuple):
    queue: str
    function_name: str
    batch_size: int
    maximum_concurrency: int | None


def sqs_sources(app: Any) -> list[SqsSource]:
    """Every SQS event source of the Chalice app."""
    out = []
    for source in getattr(app, "event_sources", []):
        if type(source).__name__ == "SQSEventConfig":
            out.append(SqsSource(source.queue, source.name, source.batch_size,
                                 getattr(source, "maximum_concurrency", None)))
    return out


def ensure_queue(sqs: Any, name: str, *, visibility_seconds: int, max_receives: int = MAX_RECEIVES) -> str:
    """Create ``name`` and its dead-letter queue ``<name>-dlq`` (idempotent); the queue's URL."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    # Set after creating: create_queue refuses different attributes for a queue that already exists.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "VisibilityTimeout": str(visibility_seconds),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
    })
    return url


@dataclass
class PollerStats:
    """What one event source did (``GET /dev/stack/metrics`` → ``event_sources``)."""

    lanes: int = 0
    in_flight: int = 0
    in_flight_max: int = 0
    batches: int = 0
    deleted: int = 0
    failed_items: int = 0  # messages a handler listed in batchItemFailures (left for redelivery)
    crashes: int = 0  # invocations that crashed (their whole batch left for redelivery)


class QueuePoller:
    """One SQS event-source mapping: a queue, a function, up to ``max_concurrency`` batches in flight."""

    def __init__(self, pool: Any, sqs: Any, queue: str, function_name: str, batch_size: int, *,
                 max_concurrency: int | None = None, visibility_seconds: int | None = None,
                 max_receives: int = MAX_RECEIVES, wait_seconds: int = 1,
                 slots: asyncio.Semaphore | None = None) -> None:
        self.pool = pool
        self.slots = slots  # worker processes shared with other event sources (None: no limit here)
        self.sqs = sqs
        self.queue = queue
        self.function_name = function_name
        self.batch_size = max(1, min(10, batch_size))
        self.max_concurrency = max(1, max_concurrency or int(
            os.environ.get("DEVSTACK_SQS_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)))
        if visibility_seconds is None:
            visibility_seconds = int(os.environ.get("DEVSTACK_SQS_VISIBILITY_SECONDS", DEFAULT_VISIBILITY_SECONDS))
        self.visibility_seconds = visibility_seconds
        self.wait_seconds = wait_seconds
        self.url = ensure_queue(sqs, queue, visibility_seconds=visibility_seconds, max_receives=max_receives)
        self.stats = PollerStats()
        # Blocking boto3 calls run here, not in the loop's default executor, which other
        # event sources' long polls would otherwise fill.
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=f"sqs-{queue}")
        # moto has no lock in its receive: two concurrent receives can hand out the same message.
        # SQS never does within the visibility timeout, so receives of one queue take turns.
        self._receive_lock = asyncio.Lock()
        self._lanes: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def _record(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": msg["MessageId"], "receiptHandle": msg["ReceiptHandle"], "body": msg["Body"],
            "attributes": msg.get("Attributes", {}), "messageAttributes": msg.get("MessageAttributes", {}),
            "md5OfBody": hashlib.md5(msg["Body"].encode()).hexdigest(), "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{self.queue}", "awsRegion": "us-east-1",
        }

    async def _call(self, fn: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, **kwargs))

    async def run(self) -> None:
        """Poll until :meth:`stop`; then let every lane finish its batch."""
        self._add_lane()
        try:
            await self._stop.wait()
            await asyncio.gather(*list(self._lanes), return_exceptions=True)
        finally:
            for lane in list(self._lanes):
                lane.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self._stop.set()

    def _add_lane(self) -> None:
        if self._stop.is_set() or self.stats.lanes >= self.max_concurrency:
            return
        self.stats.lanes += 1  # counted here, not in a done callback, so two lanes never both quit as "not last"
        task = asyncio.create_task(self._lane(), name=f"sqs-{self.queue}-lane")
        self._lanes.add(task)
        task.add_done_callback(self._lanes.discard)

    async def _lane(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = await self._receive()
                if msgs is None:  # SQS unreachable for a moment (or the stack is stopping)
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    if self.stats.lanes > 1:
                        return  # no backlog: drop back, the last lane keeps polling
                    continue
                if len(msgs) >= self.batch_size and not (self.slots and self.slots.locked()):
                    self._add_lane()  # a full batch: there is a backlog and a free worker, run one more alongside
                await self._process(msgs)
        finally:
            self.stats.lanes -= 1

    async def _receive(self) -> list[dict[str, Any]] | None:
        async with self._receive_lock:
            if self._stop.is_set():
                return []
            try:
                resp = await self._call(self.sqs.receive_message, QueueUrl=self.url,
                                        MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=self.wait_seconds,
                                        AttributeNames=["All"], MessageAttributeNames=["All"])
            except (BotoCoreError, ClientError) as exc:
                log.warning("sqs receive from %s failed: %r", self.queue, exc)
                return None
        return resp.get("Messages") or []

    async def _process(self, msgs: list[dict[str, Any]]) -> None:
        if self.slots is not None:
            async with self.slots:
                result = await self._invoke(msgs)
        else:
            result = await self._invoke(msgs)
        kept = self._kept_ids(result, msgs)
        done = [m for m in msgs if m["MessageId"] not in kept]
        if isinstance(result, Crash):
            self.stats.crashes += 1
        else:
            self.stats.failed_items += len(kept)
        if done:
            await self._delete(done)

    async def _invoke(self, msgs: list[dict[str, Any]]) -> Any:
        self.stats.batches += 1
        self.stats.in_flight += 1
        self.stats.in_flight_max = max(self.stats.in_flight_max, self.stats.in_flight)
        crash = FAULTS.worker()  # None unless a test turned faults on
        try:
            if crash == "before":
                return Crash("injected fault: died before the handler ran")
            result = await self.pool.invoke_event(self.function_name, {"Records": [self._record(m) for m in msgs]})
            return Crash("injected fault: died before answering") if crash == "after" else result
        except Exception:  # noqa: BLE001 - whatever broke the invocation, it is a crash: keep the batch
            log.exception("invoking %s failed", self.function_name)
            return Crash("invoke raised")
        finally:
            self.stats.in_flight -= 1

    def _kept_ids(self, result: Any, msgs: list[dict[str, Any]]) -> set[str]:
        """Ids of the messages to leave in the queue: a crash or a malformed reply keeps all (as Lambda does)."""
        every = {m["MessageId"] for m in msgs}
        if isinstance(result, Crash):
            return every
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if failures is None:
            return set()
        if not isinstance(failures, list):
            log.warning("%s: batchItemFailures is not a list, the whole batch fails", self.function_name)
            return every
        kept = set()
        for item in failures:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not isinstance(ident, str) or ident not in every:
                log.warning("%s: bad batchItemFailures entry %r, the whole batch fails", self.function_name, item)
                return every
            kept.add(ident)
        return kept

    async def _delete(self, msgs: list[dict[str, Any]]) -> None:
        try:
            resp = await self._call(self.sqs.delete_message_batch, QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        except (BotoCoreError, ClientError) as exc:  # the messages come back after the visibility timeout
            log.warning("sqs delete from %s failed: %r", self.queue, exc)
            return
        self.stats.deleted += len(resp.get("Successful") or [])
        for failed in resp.get("Failed") or []:
            log.warning("sqs delete from %s failed: %s", self.queue, failed)

    def snapshot(self) -> dict[str, Any]:
        return {"function": self.function_name, "max_concurrency": self.max_concurrency,
                "visibility_timeout": self.visibility_seconds, **asdict(self.stats)}
