"""The company's usage, for its admins (``GET /admin/usage``; chalicelib/usage.py counts it)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import usage
from .audit import require_admin
from .context import Call, Text


def get_usage(call: Call, body: dict[str, Any]) -> dict[str, Any] | Text:
    """The company's usage by UTC day: messages sent, posts delivered, pushes, uploads and their bytes,
    connection-minutes, DLP flags; and the file bytes it stores now.

    ``from``/``to`` are UTC days (``YYYY-MM-DD``, both included; default the last 31 days, at most
    366); ``format=csv`` answers ``text/csv``.  Cost: 1 Query per usage shard (8) + 1 GetItem.
    """
    require_admin(call)
    tenant = call.principal.tenant_id
    today = datetime.fromtimestamp(call.clock(), timezone.utc).date()
    first, last = usage.window(body.get("from"), body.get("to"), today)
    days = usage.read(tenant, first, last)
    if body.get("format") == "csv":
        return Text(usage.csv_text({"tenantId": tenant, **d} for d in days), "text/csv; charset=utf-8")
    totals = {name: sum(d[name] for d in days) for name in usage.COUNTERS}
    return {"tenantId": tenant, "from": first.isoformat(), "to": last.isoformat(), "days": days,
            "totals": totals, "storedBytes": usage.stored_bytes(tenant)}
