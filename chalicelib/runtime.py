"""Collaborators built on first use and reused while the container is warm.

No network and no clients at import time: a cold start pays only for what
its first invocation needs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .config import settings

_lock = threading.RLock()
_objects: dict[str, Any] = {}
# Set from the first WebSocket event when WS_MANAGEMENT_ENDPOINT is not configured.
_event_endpoint: dict[str, str] = {}


def _once(name: str, build: Any) -> Any:
    obj = _objects.get(name)
    if obj is None:
        with _lock:
            obj = _objects.get(name)
            if obj is None:
                obj = _objects[name] = build()
    return obj


def context_of(event: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket event's ``requestContext``; the first one also tells the management endpoint."""
    ctx = event.get("requestContext") or {}
    remember_endpoint(ctx.get("apiId", ""), ctx.get("stage", ""), ctx.get("domainName", ""))
    return ctx


def remember_endpoint(api_id: str, stage: str, domain_name: str) -> None:
    """Derive the management endpoint from a WebSocket event if config gave none."""
    if settings().ws_management_endpoint or _event_endpoint:
        return
    region = settings().region
    if domain_name.endswith(".amazonaws.com"):
        _event_endpoint["url"] = f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"
    else:  # custom domain
        _event_endpoint["url"] = f"https://{domain_name}/{stage}"


def management_endpoint() -> str:
    url = settings().ws_management_endpoint or _event_endpoint.get("url")
    if not url:
        raise RuntimeError("WS_MANAGEMENT_ENDPOINT is not configured")
    return url


def management_client() -> Any:
    """The ``apigatewaymanagementapi`` client every handler posts through."""
    def build() -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "apigatewaymanagementapi", endpoint_url=management_endpoint(),
            region_name=settings().region,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1},
                          max_pool_connections=max(10, settings().delivery_max_in_flight)),
        )
    return _once("management_client", build)


def _on_gone(connection_id: str) -> None:
    """A post answered Gone: forget the connection, and let presence catch up (queued, not inline)."""
    from .services.connections import GONE_GRACE_SECONDS, disconnect

    conn = disconnect(connection_id, min_age_seconds=GONE_GRACE_SECONDS)
    if conn is not None:
        schedule_presence(conn.tenant_user, 0)


def delivery() -> Any:
    from .delivery import Delivery

    s = settings()
    return _once("delivery", lambda: Delivery(
        management_client(), on_gone=_on_gone,
        max_in_flight=s.delivery_max_in_flight, max_attempts=s.delivery_max_attempts,
    ))


# --- events after the write (chalicelib/fanout.py, docs/delivery.md) -------------------------

def _delivery_queue_url() -> str:
    return _once("delivery_queue_url",
                 lambda: _sqs().get_queue_url(QueueName=settings().delivery_queue)["QueueUrl"])


def enqueue_delivery(bodies: list[str], delay_seconds: int = 0) -> None:
    """Send delivery jobs to the delivery queue, 10 per SendMessageBatch; a refused entry raises."""
    from .fanout import batches

    delay = int(min(900, max(0, delay_seconds)))
    for chunk in batches(bodies):
        resp = _sqs().send_message_batch(QueueUrl=_delivery_queue_url(), Entries=[
            {"Id": str(i), "MessageBody": body, "DelaySeconds": delay} for i, body in enumerate(chunk)])
        if resp.get("Failed"):
            raise RuntimeError(f"delivery queue refused {len(resp['Failed'])} jobs: {resp['Failed'][0]}")


def outbox(*, deferred: bool = False, worker: bool = False) -> Any:
    """A new outbox for one invocation (deferred: its jobs run after the ack, see ``flush``)."""
    from .fanout import FanoutLimits, Outbox
    from .services import events

    s = settings()
    limits = FanoutLimits(inline_max=s.delivery_inline_max, shard_size=s.delivery_shard_size,
                          large_members=s.delivery_large_members, roster_page=s.delivery_roster_page,
                          roster_range=s.delivery_roster_range)
    return Outbox(delivery(), enqueue_delivery, limits, events.run, deferred=deferred, worker=worker)


def _queue_url() -> str:
    def build() -> str:
        return _sqs().get_queue_url(QueueName=settings().presence_queue)["QueueUrl"]
    return _once("presence_queue_url", build)


def _sqs() -> Any:
    def build() -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client("sqs", region_name=settings().region,
                                              config=Config(connect_timeout=2, read_timeout=5))
    return _once("sqs", build)


def schedule_presence(key: str, delay_seconds: int) -> None:
    """Queue a presence flush for ``key`` after ``delay_seconds`` (SQS delay, at most 900 s)."""
    import json

    _sqs().send_message(QueueUrl=_queue_url(), MessageBody=json.dumps({"userKey": key}),
                        DelaySeconds=int(delay_seconds))


def scheduler() -> Any:
    """Every kind of delayed work, each on its queue (``services.context.Scheduler``)."""
    from .services.context import Scheduler

    return _once("scheduler", lambda: Scheduler(
        compliance=schedule_compliance, presence_flush=schedule_presence, expert_online=expert_available,
        file_scan=schedule_file_scan, verdict_check=schedule_verdict_check, upload_release=schedule_upload_release))


def env(delivery: Any = None) -> Any:
    """The collaborators services take (``services.context.Env``): built by each entry point, clients
    built on first use.  ``delivery``: the invocation's outbox, if it posts anything."""
    from .services.context import Env

    return Env(clock=clock, settings=settings(), delivery=delivery, s3=s3, management=management_client,
               schedule=scheduler(), scanner=_scanner)


def presence_env() -> Any:
    """The presence functions' Env (one outbox for the container's presence publications)."""
    return _once("presence_env", lambda: env(delivery=outbox()))


def expert_available(key: str, topic_ids: list[str]) -> None:
    """An expert pool's member became available: one compliance-queue job offers the topics' waiting
    questions (services/experts.on_available), so the presence path only sends one SQS message."""
    from .models import split_user_key

    tenant, user_id = split_user_key(key)
    try:
        schedule_compliance({"job": "expert.online", "tenantId": tenant, "userId": user_id,
                             "topicIds": topic_ids[:20]}, 0)
    except Exception:  # noqa: BLE001 - presence must not fail for it; the queue's list still shows them
        logging.getLogger("chat.experts").exception("expert.online not queued")


def clock() -> float:
    return time.time()


# --- files (docs/files.md) ---------------------------------------------------------------

def s3() -> Any:
    """The S3 client: presigning (no request), and the event side's head/get/copy/delete."""
    def build() -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", region_name=settings().region,
            config=Config(signature_version="s3v4", connect_timeout=2, read_timeout=10,
                          retries={"max_attempts": 3}))
    return _once("s3", build)


def _files_queue_url() -> str:
    return _once("files_queue_url",
                 lambda: _sqs().get_queue_url(QueueName=settings().files_queue)["QueueUrl"])


def schedule_file_scan(bucket: str, key: str, version_id: str | None, delay_seconds: int) -> None:
    """Queue a scan retry of one object after ``delay_seconds`` (SQS delay, at most 900 s)."""
    import json

    _sqs().send_message(QueueUrl=_files_queue_url(), DelaySeconds=int(min(900, max(0, delay_seconds))),
                        MessageBody=json.dumps({"bucket": bucket, "key": key, "versionId": version_id}))


def schedule_verdict_check(bucket: str, key: str, version_id: str | None, delay_seconds: int) -> None:
    """SCANNER=guardduty: check after ``delay_seconds`` that GuardDuty's verdict arrived (``files.verdict_overdue``)."""
    import json

    _sqs().send_message(QueueUrl=_files_queue_url(), DelaySeconds=int(min(900, max(0, delay_seconds))),
                        MessageBody=json.dumps({"bucket": bucket, "key": key, "versionId": version_id,
                                                "verdictDue": True}))


def schedule_upload_release(file_id: str, release_at_ms: int, delay_seconds: int) -> None:
    """Queue the check of an upload form's reservation (``files.release_unused``) on the files queue."""
    import json

    _sqs().send_message(QueueUrl=_files_queue_url(), DelaySeconds=int(min(900, max(0, delay_seconds))),
                        MessageBody=json.dumps({"fileId": file_id, "releaseAt": int(release_at_ms)}))


def _scanner() -> Any:
    from . import scanner

    return _once("scanner", lambda: scanner.from_settings(settings()))


def files_env() -> Any:
    """The file events' Env (one outbox for the container's file notices)."""
    return _once("files_env", lambda: env(delivery=outbox()))


# --- compliance: hold sweeps and export steps (docs/compliance.md) ------------------------

def _compliance_queue_url() -> str:
    return _once("compliance_queue_url",
                 lambda: _sqs().get_queue_url(QueueName=settings().compliance_queue)["QueueUrl"])


def schedule_compliance(job: dict[str, Any], delay_seconds: int = 0) -> None:
    """Queue one compliance job step (``{"job": "hold.sweep"|"export", ...}``) after ``delay_seconds``."""
    import json

    _sqs().send_message(QueueUrl=_compliance_queue_url(), MessageBody=json.dumps(job),
                        DelaySeconds=int(min(900, max(0, delay_seconds))))
