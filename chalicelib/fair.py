"""Fair delivery (issue #21 item 2): one company's backlog must not hold the shared delivery workers.

Every delivery job on the queue says whose it is (``tenant``, or its ``origin``'s company;
``fanout.job_tenant``).  Before a worker posts a job, the job takes its posts from the company's
**posts-per-second budget** (``deliveryPostsPerSecond``, default ``DELIVERY_POSTS_PER_SECOND_TENANT``;
set per company with ``tenantctl limits``): a one-second window like the send limits
(chalicelib/limits.py), ``ADD posts`` under ``count <= budget - posts``, one conditional UpdateItem
per job (not per post).  A job over the budget is **queued again, never dropped**: the worker sends
it back to the delivery queue with a delay that doubles with each deferral (1, 2, 4 ... 60 s, plus
jitter) and takes the next record.  So a flooding company's jobs cost the workers one write and one
SQS send each while it is over budget, instead of their posts, and the other companies' jobs, which
are under their own budgets, are posted at once.  The flooding company's events arrive late, all of
them, possibly out of order (clients order by seq).

What a job costs: a shard of connections its connection count; a job still to be resolved (a large
conversation, a roster range, named users) one shard (``DELIVERY_SHARD_SIZE``), the shards it queues
then pay their own way.  Jobs of nobody (presence changes), pushes and roster builds are not budgeted.
A window that cannot be written (DynamoDB throttled or down) admits the job: fairness must never stop
delivery.  A job bigger than the whole window is admitted when the window is empty (never starved).
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any, NamedTuple

from . import limits, metrics

log = logging.getLogger("chat.fair")

MAX_DEFER_SECONDS = 60  # the longest wait before a deferred job is tried again (SQS allows 900)
UNBUDGETED = frozenset({"push", "roster.build"})


class Decision(NamedTuple):
    """``delay`` None: post now; else send the job back with this delay (seconds)."""

    tenant: str | None
    posts: int
    delay: int | None = None


def cost(job: dict[str, Any], shard_size: int) -> int:
    """The posts a job is charged before it runs."""
    if job.get("kind") == "connections":
        return max(1, len(job.get("connections") or ()))
    return max(1, shard_size)


def defer_delay(deferrals: int, rng: random.Random | None = None) -> int:
    """Seconds before the ``deferrals``-th retry of a job over budget: 1, 2, 4 ... 60, jittered up by ~25%."""
    base = min(MAX_DEFER_SECONDS, 2 ** max(0, deferrals - 1))
    return min(MAX_DEFER_SECONDS, base + int((rng or random).random() * math.ceil(base / 4 + 0.01)))


def posts_window(budget: int, tenant_id: str, shard_size: int, now: float,
                 rng: random.Random | None = None) -> limits.Window:
    """A random shard of the company's one-second posts window (shards by jobs per second, as the
    send windows are by sends: no item takes more than ~200 jobs a second)."""
    n = limits.shards(math.ceil(budget / max(1, shard_size)))
    shard = (rng or random).randrange(n)
    return limits.window("deliver", f"{tenant_id}#{shard}", math.ceil(budget / n), now,
                         f"{budget} posts per second for the company")


def decide(job: dict[str, Any], tenant_id: str | None, shard_size: int, now: float,
           budget_of: Any = None, take: Any = None) -> Decision:
    """Admit ``job`` against its company's budget, or say how long to hold it."""
    if not tenant_id or job.get("kind") in UNBUDGETED:
        return Decision(tenant_id, 0)
    posts = cost(job, shard_size)
    budget = (budget_of or _budget)(tenant_id)
    w = posts_window(budget, tenant_id, shard_size, now)
    try:
        # a window this container already knows is full costs no request (chalicelib/limits.py Known)
        admitted = not limits.known.refuses(w, posts) and (take or _take)(w, posts)
    except Exception:  # noqa: BLE001 - the budget store failing must not stop delivery
        metrics.count("DeliveryBudgetErrors")
        log.exception("delivery budget not checked; job admitted", extra={"tenant": tenant_id})
        return Decision(tenant_id, posts)
    if admitted:
        limits.known.taken(w, posts)
        return Decision(tenant_id, posts)
    limits.known.refused(w, posts)
    return Decision(tenant_id, posts, defer_delay(int(job.get("deferrals") or 0) + 1))


def _budget(tenant_id: str) -> int:
    return limits.for_tenant(tenant_id).delivery_posts_per_second


def _take(w: limits.Window, posts: int) -> bool:
    """1 conditional UpdateItem: ADD posts under ``count <= limit - posts`` (an empty window takes any job)."""
    from pynamodb.exceptions import UpdateError

    from .models import RateCounter, condition_failed

    try:
        RateCounter(key=w.key).update(
            actions=[RateCounter.count.add(posts), RateCounter.expires_at.set(w.expires_at)],
            condition=RateCounter.count.does_not_exist() | (RateCounter.count <= w.limit - posts))
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True
