"""Usage each company can see (issue #21): per tenant and UTC day, what its users did and cost.

Counted where the events happen, as **sharded counters** (``UsageDay``: ``USAGE_SHARDS`` items per
tenant-day, the shard in the partition key, every count an ``ADD``), never a Scan and never one hot
key: a company sending 1,000 messages a second spreads its counting over 8 partitions.  What each
count costs (docs/data-model.md "Usage by day", U1-U6):

* messages sent: one more item in the send's own TransactWriteItems (the sender's shard, stable per
  user like the rate windows, so it adds no new transaction conflicts): **+2 WCU, no request**;
* posts delivered and pushes: tallied in the invocation that posts (``Tally``, by the tenant of the
  job's origin) and written once when it ends, one UpdateItem per tenant: **1 WCU per socket frame,
  REST request or delivery worker batch**, whatever the number of posts;
* uploads and their bytes: 1 UpdateItem (1 WCU) per file accepted clean;
* connection-minutes: 1 UpdateItem (1 WCU) per socket closed (``$disconnect`` or the Gone cleanup,
  whichever removes the record);
* DLP flags: 1 UpdateItem (1 WCU) per screening entry written.

Reading a range is one Query per shard (``day BETWEEN``; ~0.5 RCU each for a month), summed; the
stored bytes are the company's file usage item now (1 GetItem).  A count that cannot be written is
logged and counted (``UsageWriteFailures``), never raised: usage must not fail a send.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from . import metrics
from .config import settings

log = logging.getLogger("chat.usage")

USAGE_KEEP_DAYS = 400  # a day's items are removed by TTL this long after it

# name in the API -> UsageDay attribute
COUNTERS = {"messages": "messages", "postsDelivered": "posts", "pushes": "pushes", "uploads": "uploads",
            "uploadBytes": "upload_bytes", "connectionMinutes": "connection_minutes", "dlpFlags": "dlp_flags"}


def day_of(seconds: float) -> str:
    """The UTC day of an epoch time, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d")


def expires_of(day: str) -> int:
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(start.timestamp()) + USAGE_KEEP_DAYS * 86400


def shard_count() -> int:
    return max(1, settings().usage_shards)


def _actions(counts: dict[str, int], day: str) -> list[Any]:
    from .models import UsageDay

    actions = [getattr(UsageDay, COUNTERS[name]).add(int(n)) for name, n in sorted(counts.items()) if n]
    if actions:
        actions.append(UsageDay.expires_at.set(expires_of(day)))
    return actions


def send_item(tenant_id: str, user_key: str, now: float) -> tuple[Any, list[Any]]:
    """The item and actions the send's transaction adds: ``messages + 1`` on the sender's shard."""
    from .limits import shard_of
    from .models import UsageDay

    day = day_of(now)
    return UsageDay(UsageDay.key_of(tenant_id, shard_of(user_key, shard_count())), day), _actions({"messages": 1}, day)


def add(tenant_id: str, now: float | None = None, **counts: int) -> None:
    """Count now: 1 UpdateItem on a random shard of the tenant's day (never raises)."""
    from .models import UsageDay

    unknown = set(counts) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown usage counters {sorted(unknown)}")
    day = day_of(time.time() if now is None else now)
    actions = _actions(counts, day)
    if not actions or not tenant_id:
        return
    try:
        UsageDay(UsageDay.key_of(tenant_id, random.randrange(shard_count())), day).update(actions=actions)
    except Exception:  # noqa: BLE001 - counting must never fail what was counted
        metrics.count("UsageWriteFailures")
        log.exception("usage not counted", extra={"tenant": tenant_id, "counts": counts})


def connection_minutes(connected_at: float, closed_at: float) -> int:
    """A socket's lifetime in minutes, rounded up (as API Gateway bills them): at least 1."""
    return max(1, math.ceil(max(0.0, closed_at - connected_at) / 60))


class Tally:
    """What one invocation counted, by tenant; written once, when the invocation ends (``flush``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # posts of a fan-out are counted from its threads' results
        self._by_tenant: dict[str, Counter[str]] = {}

    def charge(self, tenant_id: str | None, **counts: int) -> None:
        if not tenant_id:
            return
        with self._lock:
            into = self._by_tenant.setdefault(tenant_id, Counter())
            for name, n in counts.items():
                if n:
                    into[name] += int(n)

    def pending(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {t: dict(c) for t, c in self._by_tenant.items() if any(c.values())}

    def flush(self, now: float | None = None) -> None:
        """One UpdateItem per tenant counted (usually one)."""
        with self._lock:
            taken, self._by_tenant = self._by_tenant, {}
        for tenant_id, counts in sorted(taken.items()):
            if any(counts.values()):
                add(tenant_id, now, **{k: v for k, v in counts.items() if v})


# --- reading ------------------------------------------------------------------------------------

MAX_DAYS = 366


def parse_day(raw: str, what: str) -> date:
    from .protocol.errors import ValidationFailed

    try:
        return datetime.strptime(raw, "%Y-%m-%d").date()
    except (TypeError, ValueError):
        raise ValidationFailed(f"{what} must be a UTC day, YYYY-MM-DD.") from None


def window(raw_from: str | None, raw_to: str | None, today: date) -> tuple[date, date]:
    """``[from, to]`` as days: ``to`` defaults to today, ``from`` to 30 days before ``to``."""
    from .protocol.errors import ValidationFailed

    last = parse_day(raw_to, "to") if raw_to else today
    first = parse_day(raw_from, "from") if raw_from else last - timedelta(days=30)
    if first > last:
        raise ValidationFailed("The window is empty: from must not be after to.")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailed(f"At most {MAX_DAYS} days at once.")
    return first, last


def read(tenant_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """Every day of ``[first, last]`` with its counters summed over the shards (zeros where nothing
    was counted): one Query per shard."""
    from .models import UsageDay

    lo, hi = first.isoformat(), last.isoformat()
    totals: dict[str, Counter[str]] = {}
    for shard in range(shard_count()):
        for item in UsageDay.days(tenant_id, shard, lo, hi):
            into = totals.setdefault(item.day, Counter())
            for name, attr in COUNTERS.items():
                into[name] += int(getattr(item, attr) or 0)
    out = []
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        counted = totals.get(day, Counter())
        out.append({"day": day, **{name: int(counted[name]) for name in COUNTERS}})
    return out


def stored_bytes(tenant_id: str) -> int:
    """The company's stored file bytes now (its quota item; 1 GetItem)."""
    from .models import TenantUsage

    item = TenantUsage.find(tenant_id)
    return int(item.file_bytes or 0) if item is not None else 0


CSV_COLUMNS = ("tenantId", "day", *COUNTERS)


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """RFC 4180 CSV, header first; one line per tenant-day."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in CSV_COLUMNS])
    return buf.getvalue()
