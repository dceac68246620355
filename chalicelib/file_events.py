"""Event entry points of the files feature: S3 ObjectCreated notifications, GuardDuty's scan
results (``file_scan_result``, from an EventBridge rule) and scan retries.

``app.py`` hands the raw events here.  S3 invokes the function
asynchronously and at least once (Lambda retries a failed invocation
twice), so everything downstream is idempotent; a record that fails is
logged and re-raised after the others were handled, to get that retry.

The notification itself is declared where the bucket is: ``infra/``
(``tools/render_infra.py`` adds it to the bucket it creates, for the
function named :data:`FUNCTION_NAME`) and the local stack's S3 front
(``devstack/s3_gateway.py``) - not ``@app.on_s3_event``, which
``chalice package`` refuses (CloudFormation cannot change an existing
bucket's notifications).
"""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote_plus

from . import guardduty, logs, metrics, runtime
from .services import files

log = logging.getLogger("chat.file_events")

# The Lambda function S3 notifies, and for which events (see the module docstring).
FUNCTION_NAME = "file_uploaded"
EVENTS = ("s3:ObjectCreated:*",)
# The Lambda function the EventBridge rule on GuardDuty's scan results targets (infra/).
SCAN_RESULT_FUNCTION = "file_scan_result"


def _count_posts() -> None:
    """The notices' posts, counted for the uploader's company (chalicelib/usage.py): 1 UpdateItem."""
    runtime.files_env().delivery.tally.flush()


def _handle(bucket: str, key: str, version_id: str | None, source: str) -> None:
    ctx = logs.bind(route=source, key=key[:300])
    try:
        outcome = files.on_object_created(runtime.files_env(), bucket, key, version_id)
        log.info("object handled", extra={"outcome": outcome})
    finally:
        _count_posts()
        logs.unbind(ctx)


@metrics.flushed(FUNCTION_NAME)
def on_s3_event(event: dict[str, Any]) -> None:
    """An S3 event notification (``{"Records": [{"eventSource": "aws:s3", ...}]}``)."""
    failed = 0
    for record in event.get("Records") or []:
        if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        obj = record["s3"]["object"]
        try:
            # Keys arrive URL-encoded the way HTML forms encode them ("+" for a space).
            _handle(record["s3"]["bucket"]["name"], unquote_plus(obj["key"]), obj.get("versionId"), "s3:ObjectCreated")
        except Exception:  # noqa: BLE001 - handle the other records, then fail for a retry
            log.exception("object event failed")
            failed += 1
    if failed:
        raise RuntimeError(f"{failed} object event(s) failed")


@metrics.flushed("file_scan_result")  # SCAN_RESULT_FUNCTION
def on_scan_result(event: dict[str, Any]) -> str:
    """One "GuardDuty Malware Protection Object Scan Result" event (EventBridge, at least once).

    A malformed or unknown event is logged (what is wrong, never content) and
    dropped without an exception: EventBridge would retry it, and it would
    never get better.  A result for another bucket is ignored.  A failure
    while deciding is raised, so that EventBridge's retry (and then the
    rule's dead-letter queue) gets it.
    """
    try:
        result = guardduty.parse(event)
    except guardduty.Malformed as exc:
        log.warning("malformed scan result dropped", extra={"reason": str(exc)[:200]})
        return "malformed"
    if result.bucket != runtime.settings().files_bucket:
        log.info("scan result for another bucket ignored", extra={"bucket": result.bucket[:64]})
        return "ignored"
    ctx = logs.bind(route="guardduty:scan-result", key=result.key[:300])
    try:
        outcome = files.on_scan_result(runtime.files_env(), result)
        log.info("scan result handled", extra={"outcome": outcome, "status": result.status})
        return outcome
    finally:
        _count_posts()
        logs.unbind(ctx)


@metrics.flushed("file_scan_retry")
def _release(file_id: str, release_at: int) -> None:
    ctx = logs.bind(route="upload-release", fileId=file_id[:64])
    try:
        outcome = files.release_unused(runtime.files_env(), file_id, release_at)
        log.info("upload form checked", extra={"outcome": outcome})
    finally:
        logs.unbind(ctx)


@metrics.flushed("file_scan_retry")
def _overdue(bucket: str, key: str, version_id: str | None) -> None:
    ctx = logs.bind(route="verdict-due", key=key[:300])
    try:
        outcome = files.verdict_overdue(runtime.files_env(), bucket, key, version_id)
        log.info("malware verdict deadline checked", extra={"outcome": outcome})
    finally:
        logs.unbind(ctx)


def on_scan_retry(records: list[dict[str, Any]]) -> None:
    """The files queue: delayed scan retries queued while the scanner was unavailable (bodies
    ``{bucket, key, versionId}``), the deadline of a GuardDuty verdict (the same with
    ``"verdictDue": true``) and checks of unused upload forms (``{fileId, releaseAt}``)."""
    failed = 0
    for record in records:
        try:
            body = json.loads(record.get("body") or "{}")
            release = (str(body["fileId"]), int(body["releaseAt"])) if "fileId" in body else None
            bucket, key = (None, None) if release else (body["bucket"], body["key"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("bad scan retry message dropped")
            continue
        try:
            if release:
                _release(*release)
                continue
            if body.get("verdictDue"):
                _overdue(bucket, key, body.get("versionId"))
                continue
            _handle(bucket, key, body.get("versionId"), "scan-retry")
        except Exception:  # noqa: BLE001
            log.exception("scan retry failed")
            failed += 1
    if failed:
        raise RuntimeError(f"{failed} scan retries failed")  # SQS redelivers; the dead-letter queue alarms
