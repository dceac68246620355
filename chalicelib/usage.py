"""Usage each company can see (issue #21): per tenant and UTC day, what its users did and cost.

Counted where the events happen, as **sharded counters** (``UsageDay``: ``USAGE_SHARDS`` items per
tenant-day, the shard in the partition key, a random shard per write, every count an ``ADD``: no
read, no condition, no conflict), never a Scan and never one hot key: a company's counting spreads
over 8 partitions.  What each count costs (docs/data-model.md "Usage per tenant and day", U1-U6):

* messages sent and posts delivered (and pushes, on the delivery worker): tallied in the invocation
  (``Tally``, by company; a send's by the sender's, a post's by the company of the user who caused
  the event) and written **once when it ends**, one UpdateItem per company counted: the write the
  socket frame, the REST request, the delivery worker's batch or the file event makes anyway for its
  posts also carries the message.  **1 WCU per invocation**, whatever the number of posts;
* uploads and their bytes: 1 UpdateItem (1 WCU) per file accepted clean;
* connection-minutes: 1 UpdateItem (1 WCU) per socket closed (``$disconnect`` or the Gone cleanup,
  whichever removes the record);
* DLP flags: 1 UpdateItem (1 WCU) per screening entry written.

Why not an item in the send's TransactWriteItems: a transactional write costs double (2 WCU on
every send), a plain UpdateItem on an item some transaction holds fails with ``TransactionConflict``
(so sends' items would need shards of their own), and every send's transaction would be one item
longer, while sends into one conversation are serialized on its seq.  The tally's write is the one
the invocation makes for its posts anyway (1 WCU per invocation, after the ack on the socket).  It
counts a stored, non-duplicate send exactly once, unless the function dies between the commit and
the end of its invocation (then not at all: at most once; the client's retry is a duplicate).

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
