"""Fault injection for the load and fault tests (local stack only; everything off by default).

One process-wide :data:`FAULTS`, read by the DynamoDB metering proxy and the
gateway's ``@connections`` API, switched at run time through
``GET|POST /dev/stack/faults`` (a POST sets the given rates, omitted ones
are left as they were; ``{"reset": true}`` turns everything off), so a test
turns faults on for itself and off again without restarting the stack.

Rates are probabilities per request:

``dynamodbThrottle``
    a data-plane request (GetItem, Query, TransactWriteItems, ...) is not
    forwarded and is answered ``400 ProvisionedThroughputExceededException``
    or ``ThrottlingException`` (half each), as DynamoDB answers over capacity.
``dynamodbLostReply``
    a write is forwarded and committed, then the caller gets ``500
    InternalServerError``: the reply was lost, so botocore retries a write
    that already happened (a conditional one then fails its own condition).
``dynamodbCommitThenFail``
    like ``dynamodbLostReply``, and botocore's retries of that same request
    (identical bytes, within 30 s) are forwarded and answered 500 as well: the
    handler itself sees the failure *after* its write committed, as if it had
    crashed between two writes; the client's retry must then not duplicate.
``connectionsGone``
    a ``@connections`` POST finds the socket dropped: the gateway aborts that
    WebSocket (the client sees an abnormal close and reconnects) and answers
    ``410 GoneException``, which makes the app delete the connection record.
``connectionsError``
    a ``@connections`` POST is answered ``500 InternalServerError`` and not
    delivered.
``workerCrash``
    an invocation of an SQS-triggered function (the delivery workers, the
    presence, files and compliance consumers) dies: half of the time before
    its handler ran, half of the time after the handler did its work but
    before it answered (a crash mid-shard, seen from the data: some or all
    posts made, no reply). Either way nothing of its batch is deleted and SQS
    delivers the batch again after the visibility timeout. No process is
    killed: the local Lambda pool is shared, and killing a worker would fail
    every invocation in flight on it, not just this one.

Counters of injected faults are returned by every call, so a test can show
that its faults really happened.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any

RATES = ("dynamodbThrottle", "dynamodbLostReply", "dynamodbCommitThenFail", "connectionsGone", "connectionsError",
         "workerCrash")
WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_STICKY_SECONDS = 30.0


class Faults:
    """Probabilities and counters; thread-safe (the proxy runs on its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.rates: dict[str, float] = dict.fromkeys(RATES, 0.0)
        self.injected: dict[str, int] = dict.fromkeys(RATES, 0)
        self._sticky: dict[int, float] = {}  # hash of a failed request -> until (monotonic)

    @property
    def active(self) -> bool:
        return any(self.rates.values())

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``{name: rate}`` (0..1); ``reset: true`` first zeroes rates and counters."""
        with self._lock:
            if changes.get("reset"):
                self.rates = dict.fromkeys(RATES, 0.0)
                self.injected = dict.fromkeys(RATES, 0)
                self._sticky.clear()
            for name in RATES:
                value = changes.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.rates[name] = min(1.0, max(0.0, float(value)))
            return self.snapshot_locked()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.snapshot_locked()

    def snapshot_locked(self) -> dict[str, Any]:
        return {"rates": dict(self.rates), "injected": dict(self.injected)}

    def _roll(self, name: str) -> bool:
        rate = self.rates[name]
        if rate <= 0 or self._rng.random() >= rate:
            return False
        self.injected[name] += 1
        return True

    # --- DynamoDB (called by the metering proxy for each request) -------------------------

    def dynamodb(self, op: str, body: bytes) -> str | None:
        """What to do with one request: None (forward), ``throttle`` (answer without forwarding),
        ``fail_after`` (forward, then answer 500)."""
        if not self.active:
            return None
        with self._lock:
            if op in WRITE_OPS and self._sticky:
                now = time.monotonic()
                self._sticky = {h: t for h, t in self._sticky.items() if t > now}
                if hash(body) in self._sticky:
                    self.injected["dynamodbCommitThenFail"] += 1
                    return "fail_after"
            if op in WRITE_OPS and self._roll("dynamodbCommitThenFail"):
                self._sticky[hash(body)] = time.monotonic() + _STICKY_SECONDS
                return "fail_after"
            if op in WRITE_OPS and self._roll("dynamodbLostReply"):
                return "fail_after"
            if self._roll("dynamodbThrottle"):
                return "throttle"
        return None

    def throttle_code(self) -> str:
        return "ProvisionedThroughputExceededException" if self._rng.random() < 0.5 else "ThrottlingException"

    # --- @connections (called by the gateway for each POST) --------------------------------

    def post(self) -> str | None:
        """None (deliver), ``gone`` (drop the socket, answer 410) or ``error`` (answer 500)."""
        if not self.active:
            return None
        with self._lock:
            if self._roll("connectionsGone"):
                return "gone"
            if self._roll("connectionsError"):
                return "error"
        return None


    # --- SQS-triggered invocations (called by devstack/queues.py for each batch) ---------------

    def worker(self) -> str | None:
        """None (run normally), ``before`` (die before the handler runs) or ``after`` (run it, then die)."""
        if not self.active:
            return None
        with self._lock:
            if self._roll("workerCrash"):
                return "before" if self._rng.random() < 0.5 else "after"
        return None


FAULTS = Faults()
