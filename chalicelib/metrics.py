"""Business metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

Why EMF: CloudWatch Logs turns a JSON log line with an ``_aws`` block into
metric data points, so counting costs a dict increment on the hot path and
one ``print`` per invocation - no ``PutMetricData`` call, no client, no
extra dependency in the package.

Counters accumulate in the process while an invocation runs (threads of a
fan-out included) and :func:`flush` writes them as **one** line when the
entry point finishes (:func:`invocation`), so a fan-out to 1,000
connections is one line with ``DeliveriesPosted: 1000``, not 1,000 lines.
Dimensions are the stage and the function only: no tenant or user ids,
which would make a metric per tenant (cardinality and cost). Refusals carry
one more dimension, the error ``code`` (a fixed, small set). One exception:
``TenantThrottled`` (:func:`tenant_throttled`) has the dimensions stage and
``tenant``, written only by an invocation that throttled that company (a
send or connect window refused, a delivery job deferred), so only companies
at their limits ever have one (docs/operations.md "Alarms").

See docs/operations.md ("Metrics") for the names and alarms built on them.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator, TextIO, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

NAMESPACE = "EnterpriseChat"

# name -> what it counts (docs/operations.md repeats these).
METRICS: dict[str, str] = {
    "MessagesSent": "new messages stored by message.send (duplicates excluded)",
    "DeliveriesPosted": "frames posted to a connection",
    "DeliveriesGone": "posts answered 410 Gone (the connection had closed)",
    "DeliveriesFailed": "posts given up after retries or refused",
    "GoneCleanups": "connection records removed after a Gone",
    "GoneCleanupFailures": "Gone cleanups that failed (TTL removes the record later)",
    "InternalErrors": "requests answered `internal` (unexpected exceptions)",
    "FilesClean": "uploads scanned clean and announced",
    "FilesQuarantined": "uploads refused by the scan and moved to quarantine/",
    "FilesRefused": "uploads refused without quarantine (sharing no longer allowed)",
    "ScansDeferred": "scans postponed because the scanner was unavailable",
    # delivery at scale (docs/delivery.md)
    "DeliveryJobsQueued": "events of large conversations handed whole to the delivery workers",
    "DeliveryShardsQueued": "shards of connections queued for the delivery workers",
    "DeliveryRosterRanges": "ranges of a long online roster queued for other delivery workers to read at once",
    "DeliveryJobsDone": "delivery jobs (shards, conversations to resolve) a worker completed",
    "DeliveryJobFailures": "delivery jobs that raised (a worker's record is then retried by SQS)",
    "DeliveryJobsMalformed": "delivery queue messages that were not a job (dropped)",
    "DeliveryRetriesQueued": "connections whose posts kept failing, queued again in a new shard",
    "DeliveriesAbandoned": "connections given up after the last shard retry",
    # usage each company can see (chalicelib/usage.py)
    "UsageWriteFailures": "usage counts that could not be written (logged; the counted action stands)",
    # fair delivery (chalicelib/fair.py)
    "DeliveryJobsDeferred": "delivery jobs over their company's posts/s budget, queued again with a delay",
    "DeliveryPostsDeferred": "posts of those jobs (delivered later, never dropped)",
    "DeliveryBudgetErrors": "budget checks that failed (the job was admitted)",
}
REFUSALS = "Refusals"  # by error code: every structured error answered to a client
TENANT_THROTTLED = "TenantThrottled"  # by tenant: refusals by a rate window + delivery jobs deferred

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_refusals: Counter[str] = Counter()
_throttled: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to a counter of the running invocation (thread-safe; unknown names are ignored)."""
    if n and name in METRICS:
        with _lock:
            _counts[name] += n


def refusal(code: str) -> None:
    """One request refused with this error ``code`` (validation, policy, rate limit, ...)."""
    with _lock:
        _refusals[code if isinstance(code, str) and len(code) <= 40 else "other"] += 1


def tenant_throttled(tenant_id: str | None, n: int = 1) -> None:
    """The company ``tenant_id`` was held to one of its limits (a window refused, a job deferred)."""
    if tenant_id and n:
        with _lock:
            _throttled[str(tenant_id)[:64]] += n


def tenant_lines(throttled: dict[str, int], *, stage: str, function: str, timestamp_ms: int) -> list[dict[str, Any]]:
    """One EMF document per throttled company (dimensions stage, tenant)."""
    return [{"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [["stage", "tenant"]],
                "Metrics": [{"Name": TENANT_THROTTLED, "Unit": "Count"}]}]},
             "stage": stage, "function": function, "tenant": tenant, TENANT_THROTTLED: int(n)}
            for tenant, n in sorted(throttled.items()) if n]


def emf_lines(counts: dict[str, int], refusals: dict[str, int], *, stage: str, function: str,
              timestamp_ms: int) -> list[dict[str, Any]]:
    """The EMF documents for one invocation's counters (pure; empty when nothing was counted).

    The first document carries every plain counter and, when there are refusals,
    the first refusal code too (a second directive with the extra ``code``
    dimension); each further code needs a document of its own because a
    dimension has one value per document.
    """
    base = {"stage": stage, "function": function}
    plain = {k: int(v) for k, v in sorted(counts.items()) if v}
    codes = [(c, int(v)) for c, v in sorted(refusals.items()) if v]
    docs: list[dict[str, Any]] = []
    first = True
    while plain or codes:
        directives: list[dict[str, Any]] = []
        doc: dict[str, Any] = dict(base)
        if first and plain:
            directives.append({"Namespace": NAMESPACE, "Dimensions": [["stage", "function"]],
                               "Metrics": [{"Name": k, "Unit": "Count"} for k in plain]})
            doc.update(plain)
        if codes:
            code, n = codes.pop(0)
            directives.append({"Namespace": NAMESPACE, "Dimensions": [["stage", "function", "code"]],
                               "Metrics": [{"Name": REFUSALS, "Unit": "Count"}]})
            doc.update({"code": code, REFUSALS: n})
        plain = {}
        first = False
        docs.append({"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}, **doc})
    return docs


def flush(function: str, *, stage: str | None = None, out: TextIO | None = None) -> int:
    """Write and reset the counters (one line; more only with several refusal codes). Returns lines written."""
    with _lock:
        counts, refusals, throttled = dict(_counts), dict(_refusals), dict(_throttled)
        _counts.clear()
        _refusals.clear()
        _throttled.clear()
    if not counts and not refusals and not throttled:
        return 0
    if stage is None:
        from .config import settings  # noqa: PLC0415 - settings only when there is something to write

        stage = settings().stage
    now_ms = int(time.time() * 1000)
    docs = emf_lines(counts, refusals, stage=stage, function=function, timestamp_ms=now_ms)
    docs += tenant_lines(throttled, stage=stage, function=function, timestamp_ms=now_ms)
    stream = out or sys.stdout
    for doc in docs:
        stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
    stream.flush()
    return len(docs)


@contextmanager
def invocation(function: str) -> Iterator[None]:
    """Wrap one Lambda invocation: whatever it counted is flushed when it ends, even on error.

    ``function`` is the Chalice function name (``websocket_message``,
    ``api_handler``, ...): stable across deployments, unlike the deployed
    function's generated name.
    """
    try:
        yield
    finally:
        try:
            flush(function)
        except Exception:  # noqa: BLE001 - metrics must never fail a request
            log.exception("metrics flush failed")


def flushed(function: str) -> Callable[[F], F]:
    """Decorator form of :func:`invocation` for an entry point."""
    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with invocation(function):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate
