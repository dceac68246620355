"""Where events go once their write has committed: inline posts, or shards on the delivery queue.

A service describes an event as a *job* (a JSON-able dict: who should hear
it and what to post, see ``services/events.py``).  The ``Outbox`` of the
invocation decides where the job runs:

* on a WebSocket frame the outbox is *deferred*: jobs wait until the ack has
  been posted, so the caller's ack never waits for anyone's delivery;
* a job whose audience is a large conversation is not resolved in the
  request at all: it is queued whole and a delivery worker resolves it;
* once the connections of a job are known, up to ``inline_max`` are posted
  right here (cheaper than a queue hop); more are cut into shards of
  ``shard_size`` connections and queued, one SQS message per shard, posted
  by the delivery workers independently and retried alone.

Events are at least once: a retried shard may post again; clients drop a
seq they already have (docs/protocol.md "Delivery").

Every post the gateway accepts is counted for the company whose user caused
the event (``tenant``: the job's ``tenant``, else its ``origin``'s) in the
outbox's ``tally``, which the invocation writes once when it ends
(``chalicelib/usage.py``); queued shards carry the tenant on.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable, NamedTuple

from . import metrics
from .usage import Tally

log = logging.getLogger("chat.fanout")

# A shard's SQS message must stay under SQS's 256 KB: connection ids are ~16-20 bytes.
SQS_BATCH = 10
JOB_VERSION = 1


class FanoutLimits(NamedTuple):
    inline_max: int      # connections posted inside the invocation that found them
    shard_size: int      # connections per delivery shard (one queue message, one worker batch item)
    large_members: int   # conversations with more members are resolved by a worker, not in the request
    roster_page: int = 5000     # roster entries read (1 Query) before they are posted
    roster_range: int = 50000   # a longer roster is split into ranges of about this many, one worker each


Runner = Callable[["Outbox", dict[str, Any]], Any]


class Outbox:
    """One invocation's hand-off point between services and delivery.

    ``run(outbox, job)`` resolves a job's recipients and calls ``post``;
    ``enqueue(messages)`` sends JSON bodies to the delivery queue.
    """

    def __init__(self, delivery: Any, enqueue: Callable[[list[str], int], None], limits: FanoutLimits,
                 run: Runner, *, deferred: bool = False, worker: bool = False) -> None:
        self.delivery = delivery
        self.limits = limits
        self.worker = worker  # a delivery worker posts the first shard of what it resolves itself
        self._enqueue = enqueue
        self._run = run
        self._deferred = deferred
        self._pending: list[dict[str, Any]] = []
        self.tally = Tally()            # usage of this invocation, by tenant (written by its entry point)
        self.tenant: str | None = None  # whose job is running: its posts are counted for this company

    # --- what services call ------------------------------------------------------------

    def add(self, job: dict[str, Any], *, on_worker: bool = False) -> None:
        """Deliver ``job``: now, after the reply (deferred outbox), or on a worker (``on_worker``)."""
        job = {"v": JOB_VERSION, **job}
        if on_worker:
            job["queued"] = True
        if self._deferred:
            self._pending.append(job)
        else:
            self._dispatch(job)

    def fan_out(self, connection_ids: Iterable[str], payload: str | bytes) -> None:
        """Post one rendered frame to known connections (presence watchers): inline or in shards."""
        ids = list(dict.fromkeys(connection_ids))
        if ids:
            self.add({"kind": "connections", "connections": ids,
                      "payload": payload.decode() if isinstance(payload, bytes) else payload})

    def run(self, job: dict[str, Any], runner: Runner | None = None) -> Any:
        """Run one job here (a worker's record, or a deferred job), its posts counted for its tenant."""
        self.tenant = job_tenant(job)
        try:
            return (runner or self._run)(self, job)
        finally:
            self.tenant = None

    def flush(self) -> None:
        """Run what was deferred (after the ack has gone out).  Each job alone: one failing
        job must not stop the others (its events are caught up by sync)."""
        pending, self._pending = self._pending, []
        for job in pending:
            try:
                self._dispatch(job)
            except Exception:  # noqa: BLE001 - the write is committed; clients catch up by sync
                metrics.count("DeliveryJobFailures")
                log.exception("event delivery failed", extra={"kind": job.get("kind")})

    # --- what the runner calls -----------------------------------------------------------

    def post(self, connection_ids: list[str], payload: str) -> list[str]:
        """Post ``payload`` to ``connection_ids``: inline up to ``inline_max``, else in queued shards.

        On a worker (which just resolved a large audience) the first shard is posted
        here and only the rest is queued.  Returns the connections that failed inline
        after the delivery's own retries (the caller may retry them).
        """
        ids = list(dict.fromkeys(connection_ids))
        if not ids:
            return []
        size = max(1, self.limits.shard_size)
        if len(ids) <= self.limits.inline_max:
            return self._posted(self.delivery.fan_out(ids, payload))
        shards = [ids[i:i + size] for i in range(0, len(ids), size)]
        first = shards.pop(0) if self.worker else None
        whose = {"tenant": self.tenant} if self.tenant else {}
        self.queue([{"v": JOB_VERSION, "kind": "connections", "connections": shard, "payload": payload, **whose}
                    for shard in shards])
        metrics.count("DeliveryShardsQueued", len(shards))
        return self._posted(self.delivery.fan_out(first, payload)) if first else []

    def _posted(self, report: Any) -> list[str]:
        """Count the posts the gateway accepted for the running job's tenant; the failed ones."""
        self.tally.charge(self.tenant, postsDelivered=len(report.delivered))
        return list(report.failed)

    def queue(self, jobs: list[dict[str, Any]], delay_seconds: int = 0) -> None:
        if jobs:
            self._enqueue([json.dumps(job, separators=(",", ":")) for job in jobs], delay_seconds)

    # --- internals ---------------------------------------------------------------------------

    def _dispatch(self, job: dict[str, Any]) -> None:
        if job.pop("queued", False):
            self.queue([job])
            metrics.count("DeliveryJobsQueued")
        else:
            self.run(job)


def job_tenant(job: dict[str, Any]) -> str | None:
    """The company a job's posts are counted for: its ``tenant``, else its origin user's (None: nobody's,
    e.g. presence changes)."""
    if job.get("tenant"):
        return str(job["tenant"])
    origin = job.get("origin")
    return origin.split("#", 1)[0] if isinstance(origin, str) and "#" in origin else None


def batches(bodies: list[str], size: int = SQS_BATCH) -> list[list[str]]:
    """SendMessageBatch takes at most 10 entries."""
    return [bodies[i:i + size] for i in range(0, len(bodies), size)]
