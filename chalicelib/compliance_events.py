"""Entry point of the compliance queue: legal-hold sweeps and eDiscovery export steps.

SQS delivers at least once; both jobs are idempotent (a sweep recomputes
each message's expiry from the holds as they are now; an export step is
keyed by its step number).  A failed record is logged and re-raised after
the others were handled, so SQS redelivers it and, after
``MAX_RECEIVES``, moves it to the dead-letter queue (alarmed).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from . import logs, metrics, runtime

log = logging.getLogger("chat.compliance_events")


def handle(job: dict[str, Any]) -> str:
    kind = job.get("job")
    if kind == "hold.sweep":
        from .services import compliance

        return compliance.sweep_step(runtime.env(), job)
    if kind == "retention.backfill":
        from .services import compliance

        return compliance.backfill_step(runtime.env(), job)
    if kind == "export":
        from .services import exports

        return exports.export_step(runtime.env(), job)
    if kind == "expert.escalate":
        from .services import experts

        return experts.escalate(runtime.env(delivery=runtime.outbox()), job)
    if kind == "expert.online":
        from .services import experts

        return experts.on_available(runtime.env(delivery=runtime.outbox()), job)
    log.warning("unknown compliance job dropped", extra={"job": str(kind)[:64]})
    return "dropped"


@metrics.flushed("compliance_job")
def on_records(records: list[dict[str, Any]]) -> None:
    failed = 0
    for record in records:
        try:
            job = json.loads(record.get("body") or "{}")
            if not isinstance(job, dict) or "tenantId" not in job:
                raise ValueError("not a job")
        except (ValueError, TypeError):
            log.warning("bad compliance message dropped")
            continue
        ctx = logs.bind(route=f"compliance:{job.get('job')}", tenant=str(job.get("tenantId"))[:64])
        try:
            outcome = handle(job)
            log.info("compliance job step", extra={"outcome": outcome})
        except Exception:  # noqa: BLE001 - handle the others, then fail for a redelivery
            log.exception("compliance job failed")
            failed += 1
        finally:
            logs.unbind(ctx)
    if failed:
        raise RuntimeError(f"{failed} compliance job step(s) failed")
