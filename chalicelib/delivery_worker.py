"""Delivery workers: the SQS-triggered function that posts events to large audiences.

Each queue message is one delivery job (``services/events.py``): a shard of
at most ``delivery_shard_size`` connections with the frame to post, or a
large conversation's event still to be resolved to connections (the worker
resolves it, posts the first shard itself and queues the rest).

Failure handling, record by record (partial batch responses,
``ReportBatchItemFailures``):

* a job that raises (DynamoDB throttled, the worker's own bug) is reported
  as a batch item failure: SQS makes it visible again after the visibility
  timeout, and after ``MAX_RECEIVES`` tries it goes to the dead-letter queue;
* posts that still fail after the delivery's own jittered retries (429/5xx)
  are queued again as a new, smaller shard of just those connections, with
  a growing delay, at most ``MAX_SHARD_ATTEMPTS`` times; Gone is not a
  failure (the connection is forgotten, as everywhere);
* a malformed message is logged and dropped (retrying cannot mend it);
* a job whose company is over its posts-per-second budget is sent back to
  the queue with a growing delay, not posted now (``chalicelib/fair.py``):
  queued, never dropped, so one company's backlog cannot hold the workers.

A retried job may post to some connections twice: events are at least once
and clients drop a seq they already have.

Usage (chalicelib/usage.py): the posts and pushes of the whole batch are
counted per company and written once, when the batch ends (one UpdateItem per
company in the batch, not one per post).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from . import metrics, runtime

log = logging.getLogger("chat.delivery")

MAX_SHARD_ATTEMPTS = 4  # re-queues of the connections whose posts kept failing


@metrics.flushed("deliver")
def on_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One SQS batch; returns the partial batch response."""
    from .services import events

    out = runtime.outbox(worker=True)
    failures = []
    for record in records:
        try:
            job = json.loads(record.get("body") or "")
            if not isinstance(job, dict) or "kind" not in job:
                raise ValueError("not a delivery job")
        except ValueError:
            metrics.count("DeliveryJobsMalformed")
            log.warning("malformed delivery job dropped", extra={"messageId": record.get("messageId")})
            continue
        try:
            if not _admitted(out, job):  # over its company's budget: queued again, later (chalicelib/fair.py)
                continue
            failed = out.run(job, events.run)
        except Exception:  # noqa: BLE001 - reported to SQS, which redelivers this record alone
            metrics.count("DeliveryJobFailures")
            log.exception("delivery job failed", extra={"kind": job.get("kind"),
                                                        "messageId": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        metrics.count("DeliveryJobsDone")
        if failed:
            _retry(out, job, failed)
    out.tally.flush()
    return {"batchItemFailures": failures}


def _admitted(out: Any, job: dict[str, Any]) -> bool:
    """The job's company is within its posts/s budget (1 conditional UpdateItem); if not, the job goes
    back on the queue with a growing delay and this record is done: queued, never dropped."""
    from . import fair
    from .fanout import job_tenant

    decision = fair.decide(job, job_tenant(job), out.limits.shard_size, runtime.clock())
    if decision.delay is None:
        return True
    deferrals = int(job.get("deferrals") or 0) + 1
    out.queue([{**job, "tenant": decision.tenant, "deferrals": deferrals}], delay_seconds=decision.delay)
    metrics.count("DeliveryJobsDeferred")
    metrics.count("DeliveryPostsDeferred", decision.posts)
    metrics.tenant_throttled(decision.tenant)
    log.info("delivery job over its company's budget, queued again",
             extra={"tenant": decision.tenant, "posts": decision.posts, "deferrals": deferrals,
                    "delaySeconds": decision.delay})
    return False


def _retry(out: Any, job: dict[str, Any], failed: dict[str, list[str]]) -> None:
    attempt = int(job.get("attempt") or 0) + 1
    lost = sum(len(ids) for ids in failed.values())
    if attempt > MAX_SHARD_ATTEMPTS:
        metrics.count("DeliveriesAbandoned", lost)
        log.warning("posts abandoned after retries", extra={"connections": lost, "attempts": attempt})
        return
    from .fanout import job_tenant

    tenant = job_tenant(job)
    whose = {"tenant": tenant} if tenant else {}
    out.queue([{"v": 1, "kind": "connections", "connections": ids, "payload": payload, "attempt": attempt, **whose}
               for payload, ids in failed.items()], delay_seconds=2 ** attempt)
    metrics.count("DeliveryRetriesQueued", lost)
