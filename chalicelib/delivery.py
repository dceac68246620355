"""The only module that posts to WebSocket connections.

Fan-out runs with bounded parallelism; ``GoneException`` means the
connection is dead and its record is removed (that one only); throttling
and 5xx are retried with jittered backoff a bounded number of times, then
logged and dropped: delivery is best effort, clients catch up by sync.
"""
from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from . import metrics

log = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({
    "LimitExceededException", "ThrottlingException", "TooManyRequestsException",
    "InternalServerError", "InternalFailure", "ServiceUnavailable",
})


_OUTCOME_METRIC = {"delivered": "DeliveriesPosted", "gone": "DeliveriesGone", "failed": "DeliveriesFailed"}


class DeliveryReport(NamedTuple):
    """Which connections a fan-out reached, which are gone (410) and which failed."""

    delivered: list[str] | tuple[str, ...] = ()
    gone: list[str] | tuple[str, ...] = ()
    failed: list[str] | tuple[str, ...] = ()


class Delivery:
    """Posts frames to connections through an ``apigatewaymanagementapi`` client."""

    def __init__(self, client: Any, on_gone: Callable[[str], None], *, max_in_flight: int = 32,
                 max_attempts: int = 3, base_backoff: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._on_gone = on_gone
        self._max_in_flight = max(1, max_in_flight)
        self._max_attempts = max(1, max_attempts)
        self._base_backoff = base_backoff
        self._sleep = sleep

    def _post_one(self, connection_id: str, data: bytes) -> str:
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._client.post_to_connection(ConnectionId=connection_id, Data=data)
                return "delivered"
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "GoneException" or status == 410:
                    self._forget(connection_id)
                    return "gone"
                if code not in RETRYABLE_CODES and status < 500 and status != 429:
                    log.warning("post_to_connection refused", extra={
                        "connectionId": connection_id, "errorCode": code, "status": status})
                    return "failed"
            except BotoCoreError as exc:  # connection errors, timeouts
                code = type(exc).__name__
            if attempt < self._max_attempts:
                self._sleep(random.uniform(0, self._base_backoff * (2 ** attempt)))
        log.warning("post_to_connection gave up", extra={
            "connectionId": connection_id, "errorCode": code, "attempts": self._max_attempts})
        return "failed"

    def _forget(self, connection_id: str) -> None:
        try:
            self._on_gone(connection_id)
            metrics.count("GoneCleanups")
        except Exception:  # noqa: BLE001 - cleanup is best effort; TTL removes leftovers
            metrics.count("GoneCleanupFailures")
            log.exception("gone-connection cleanup failed", extra={"connectionId": connection_id})

    def send(self, connection_id: str, data: str | bytes) -> str:
        """Post one frame; returns ``delivered``, ``gone`` or ``failed``."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        outcome = self._post_one(connection_id, payload)
        metrics.count(_OUTCOME_METRIC[outcome])
        return outcome

    def fan_out(self, connection_ids: Iterable[str], data: str | bytes) -> DeliveryReport:
        """Post the same frame to many connections, at most ``max_in_flight`` at once."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        ids = list(dict.fromkeys(connection_ids))
        report = DeliveryReport([], [], [])
        if not ids:
            return report
        if len(ids) == 1:
            outcomes = [self._post_one(ids[0], payload)]
        else:
            with ThreadPoolExecutor(max_workers=min(self._max_in_flight, len(ids))) as pool:
                outcomes = list(pool.map(lambda cid: self._post_one(cid, payload), ids))
        for cid, outcome in zip(ids, outcomes):
            getattr(report, outcome).append(cid)
        # Counted once per fan-out, not per post: the invocation's single EMF line sums them.
        metrics.count("DeliveriesPosted", len(report.delivered))
        metrics.count("DeliveriesGone", len(report.gone))
        metrics.count("DeliveriesFailed", len(report.failed))
        return report
