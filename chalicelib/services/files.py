"""Files: presigned uploads straight to S3, a scan before anyone can fetch, a notice in the conversation.

1. ``request_upload``: policy, size, type allowlist and quota (a conditional
   ``ADD`` on the tenant's usage item) are checked, a *pending* record is
   written and a presigned POST returned whose policy pins the key, the
   exact size, the content type and server-side encryption.
2. S3's ObjectCreated event reaches ``on_object_created``: the object is
   checked against the record (size, type, checksum if declared) and run
   through the scanner in one pass.  Clean: the record is marked clean
   (pinned to the scanned object version) and a file notice is posted
   through the ordered message path.  Otherwise the object moves under
   ``quarantine/``, the reservation is given back and only the uploader's
   devices get ``file.rejected``.  Scanner unavailable: the file stays
   pending and a delayed retry is queued - never clean by default.
3. ``request_download``: a short presigned GET of the scanned version, for
   members, clean files only.
4. A form never used: ``request_upload`` queues a delayed message for the
   form's expiry + grace; ``release_unused`` then gives the reservation back
   (once, conditionally) if no upload arrived.

Across companies both the upload and every download need the connection's
``files`` toggle on both sides and both policies (``policy.crossing``).

Every permission decision is ``policy.may_share_files`` / ``policy.may_download``.
See docs/files.md.
"""
from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from .. import dlp, file_text, guardduty, metrics, policy, usage
from .. import scanner as scanning
from ..identity import Principal
from ..models import File, TenantUsage, condition_failed, user_ref
from ..protocol.errors import ChatError, Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from . import screening, timeline
from . import events
from .context import Call, Env
from .holds import REJECTED_TTL_SECONDS, delete_object

if TYPE_CHECKING:  # the entry point builds the settings; a service only reads them
    from ..stage_settings import Settings

log = logging.getLogger("chat.files")

QUARANTINE_PREFIX = "quarantine/"
# GuardDuty writes this object at the bucket's root when a Malware Protection plan is created or updated.
GUARDDUTY_VALIDATION_KEY = "malware-protection-resource-validation-object"
SSE = "aws:kms"  # the bucket's default too (infra/); the POST policy requires it explicitly
PENDING_TTL_SECONDS = 7 * 24 * 3600   # a pending record outlives every retry, then expires
READ_CHUNK = 256 * 1024
MAX_NAME_CHARS = 255
SAFE_NAME_CHARS = 100
SQS_MAX_DELAY_SECONDS = 900


def notice(rec: File) -> dict[str, Any]:
    """The ``file`` attribute of a file message and of ``file.ready``."""
    return {"fileId": rec.file_id, "name": rec.name, "size": int(rec.size), "contentType": rec.content_type,
            "uploader": user_ref(rec.uploader_key)}


def file_view(rec: File) -> dict[str, Any]:
    return {**notice(rec), "conversationId": rec.conversation_id, "status": rec.status,
            "seq": int(rec.seq) if rec.seq else None, "createdAt": int(rec.created_at)}


def _clean_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).strip()
    if not name or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name) \
            or "/" in name or "\\" in name or name in (".", ".."):
        raise ValidationFailed("name must be a file name without path separators or control characters.")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationFailed(f"name is longer than {MAX_NAME_CHARS} characters.")
    return name


def safe_name(name: str) -> str:
    """The object key's last segment: ASCII letters, digits, ``.``, ``_``, ``-`` only; the extension kept."""
    def clean(part: str) -> str:
        ascii_part = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
        return re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_part).strip("._-")

    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):
        stem, ext = name, ""
    stem, ext = clean(stem) or "file", clean(ext)[:16]
    if not ext:
        return stem[:SAFE_NAME_CHARS]
    return (stem[:SAFE_NAME_CHARS - len(ext) - 1].rstrip("._-") or "file") + "." + ext


def _disposition(name: str) -> str:
    fallback = re.sub(r'[^A-Za-z0-9._ -]+', "_", unicodedata.normalize("NFKD", name).encode("ascii", "ignore")
                      .decode()).strip() or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


# Browsers: the form POST (XMLHttpRequest with upload progress sends a preflight) and fetch() of a
# download.  Headers a browser may send; response headers a page may read.
CORS_METHODS = ("GET", "HEAD", "POST")
CORS_HEADERS = ("content-type", "range", "x-requested-with")
CORS_EXPOSE = ("ETag", "Content-Length", "Content-Disposition", "x-amz-version-id", "x-amz-request-id")
CORS_MAX_AGE_SECONDS = 3000


def cors_rules(settings: Settings) -> list[dict[str, Any]]:
    """The files bucket's CORS rules (CloudFormation ``CorsRules`` shape; empty = no CORS).

    One source for ``tools/render_infra.py`` and the local stack's S3 front.
    Allowed origins are the stage's ``FILES_CORS_ORIGINS`` (S3 allows one ``*``
    per origin, e.g. ``https://*.example.com``).  CORS only lets a page *read*
    S3's answers; who may upload or download is still the presigned signature.
    """
    if not settings.files_cors_origins:
        return []
    return [{"Id": "web-clients", "AllowedOrigins": list(settings.files_cors_origins),
             "AllowedMethods": list(CORS_METHODS), "AllowedHeaders": list(CORS_HEADERS),
             "ExposedHeaders": list(CORS_EXPOSE), "MaxAge": CORS_MAX_AGE_SECONDS}]


def max_upload_bytes(settings: Settings) -> int:
    return min(settings.max_file_bytes, settings.scan_max_bytes)


# --- requests from members -----------------------------------------------------------

def request_upload(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """A pending record and a presigned POST for exactly this file (1 rate-limit update, 2 GetItems for
    policy, 1 GetItem + 1 conditional UpdateItem for the quota, 1 PutItem; no S3 request)."""
    s = call.settings
    p = call.principal
    name = _clean_name(body["name"])
    size = int(body["size"])
    ctype = body["contentType"].lower()
    if size > max_upload_bytes(s):
        raise PayloadTooLarge(f"The file is {size} bytes; the limit is {max_upload_bytes(s)}.",
                              limit=max_upload_bytes(s))
    if ctype not in s.file_types:
        raise ValidationFailed(f"contentType {ctype[:100]} is not allowed.")
    timeline.rate_limit(call)  # an upload request counts as a send
    conv, _member = policy.may_share_files(p, body["conversationId"], call.now_ms())
    if conv.archived:
        raise Conflict("The conversation is archived.")
    verdict = screening.screen(call, conv, name, "file")  # DLP on the name: raises message_blocked; may redact
    name = verdict.text[:MAX_NAME_CHARS]
    usage = TenantUsage.find(p.tenant_id)
    quota = int(usage.quota_bytes) if usage is not None and usage.quota_bytes is not None else s.tenant_quota_bytes
    if not TenantUsage.reserve(p.tenant_id, size, quota):
        raise Forbidden("Your company's file storage quota is used up.", reason="quota_exceeded", limit=quota)
    now = call.now_ms()
    file_id = uuid.uuid4().hex
    rec = File(file_id=file_id, tenant_id=p.tenant_id, conversation_id=conv.conversation_id,
               uploader_key=policy.key_of(p), name=name, size=size, content_type=ctype,
               object_key=f"{p.tenant_id}/{conv.conversation_id}/{file_id}/{safe_name(name)}",
               sha256=(body.get("sha256") or "").lower() or None, status="pending",
               created_at=now, updated_at=now, expires_at=now // 1000 + PENDING_TTL_SECONDS)
    try:
        rec.save(condition=File.file_id.does_not_exist())
        post = call.storage().generate_presigned_post(
            Bucket=s.files_bucket, Key=rec.object_key,
            Fields={"Content-Type": ctype, "x-amz-server-side-encryption": SSE},
            Conditions=[{"Content-Type": ctype}, {"x-amz-server-side-encryption": SSE},
                        ["content-length-range", size, size]],
            ExpiresIn=s.upload_url_seconds)
        # The reservation is given back if no upload arrives before the form expires (+ grace).
        release_at = now + (s.upload_url_seconds + s.upload_release_grace_seconds) * 1000
        if call.schedule.upload_release is None:
            raise RuntimeError("an upload form needs the files queue to release an unused reservation")
        call.schedule.upload_release(file_id, release_at, s.upload_url_seconds + s.upload_release_grace_seconds)
    except Exception:
        TenantUsage.release(p.tenant_id, size)
        raise
    screening.record_flags(call, verdict, conv.conversation_id, "file", file_id=file_id)
    return {"file": file_view(rec),
            "upload": {"method": "POST", "url": post["url"], "fields": post["fields"],
                       "expiresAt": now + s.upload_url_seconds * 1000}}


def request_download(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """A presigned GET of the scanned version of a clean file (1-3 GetItems; no S3 request)."""
    rec = File.find(body["fileId"])
    if rec is None:
        raise NotFound("No such file.")
    policy.may_download(call.principal, rec, call.now_ms())
    if rec.status == "pending":
        raise Conflict("The file is still being scanned; wait for file.ready.")
    if rec.status != "clean":
        raise NotFound("No such file.")
    params = {"Bucket": call.settings.files_bucket, "Key": rec.object_key,
              "ResponseContentDisposition": _disposition(rec.name), "ResponseContentType": rec.content_type}
    if rec.version_id:
        params["VersionId"] = rec.version_id
    url = call.storage().generate_presigned_url("get_object", Params=params,
                                                ExpiresIn=call.settings.download_url_seconds)
    return {"file": file_view(rec),
            "download": {"url": url, "expiresAt": call.now_ms() + call.settings.download_url_seconds * 1000}}


def release_unused(env: Env, file_id: str, release_at: int) -> str:
    """The delayed check queued by ``request_upload``: give back the reservation of a form never used.

    Exactly once: the record moves ``pending`` -> ``expired`` under a condition
    that it is still pending and no upload arrived (``uploaded_at``), and only
    the invocation that made that move releases the bytes (``"released"``).
    A redelivered message, an upload that landed first, or a file already
    decided change nothing (the record's status, ``"uploaded"`` or ``"raced"``).
    No scan: 1 GetItem (+ 1 conditional UpdateItem + 1 UpdateItem).
    """
    rec = File.find(file_id, consistent=True)
    if rec is None:
        return "gone"
    if rec.status != "pending":
        return rec.status
    if rec.uploaded_at is not None:
        return "uploaded"  # the scan (or its retries) decides; not ours
    now = env.now_ms()
    if now < release_at:  # SQS delays at most 900 s: wait again for the rest
        if env.schedule.upload_release is not None:
            env.schedule.upload_release(file_id, release_at, -(-(release_at - now) // 1000))
        return "waiting"
    try:
        rec.update(actions=[File.status.set("expired"), File.reason.set("upload_expired"),
                            File.updated_at.set(now), File.expires_at.set(now // 1000 + REJECTED_TTL_SECONDS)],
                   condition=(File.status == "pending") & File.uploaded_at.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            return "raced"  # the object arrived (or another delivery released) meanwhile
        raise
    TenantUsage.release(rec.tenant_id, int(rec.size))
    log.info("unused upload reservation released", extra={"fileId": rec.file_id, "size": int(rec.size)})
    return "released"


# --- S3 events -----------------------------------------------------------------------

def _not_an_upload(env: Env, bucket: str, key: str) -> bool:
    # exports/: eDiscovery exports the app writes itself (docs/compliance.md); quarantined copies;
    # GuardDuty's validation object.
    return bucket != env.settings.files_bucket or key.startswith((QUARANTINE_PREFIX, "exports/")) \
        or key == GUARDDUTY_VALIDATION_KEY


def _record_of(key: str) -> File | None:
    parts = key.split("/")
    rec = File.find(parts[2], consistent=True) if len(parts) == 4 else None
    return rec if rec is not None and rec.object_key == key else None


def _arrived(env: Env, rec: File) -> None:
    """The upload arrived: from now on the scan decides, never the unused-form release."""
    if rec.status == "pending" and rec.uploaded_at is None:
        try:
            rec.update(actions=[File.uploaded_at.set(env.now_ms())], condition=File.status == "pending")
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            rec.refresh(consistent_read=True)


def on_object_created(env: Env, bucket: str, key: str, version_id: str | None = None) -> str:
    """Handle one ObjectCreated notification (at least once, in any order); returns the outcome.

    ``SCANNER=guardduty``: only records the arrival and waits for GuardDuty's
    verdict (``on_scan_result``); otherwise the function's own engine scans
    now (``_scan``) and hands its verdict, shaped as GuardDuty's event, to the
    same decision.
    """
    if _not_an_upload(env, bucket, key):
        return "ignored"
    rec = _record_of(key)
    if rec is None:
        log.warning("object without a file record removed", extra={"key": key[:300]})
        delete_object(env.storage(), bucket, key, version_id)
        return "orphan"
    _arrived(env, rec)
    if rec.status == "expired":
        # Landed after its reservation was given back (a form used past expiry + grace): never served.
        delete_object(env.storage(), bucket, key, version_id)
        return "expired"
    if rec.status != "pending":
        if version_id and version_id != rec.version_id:
            # Another upload through a still-valid URL after the decision: never served, removed.
            delete_object(env.storage(), bucket, key, version_id)
            return "superseded"
        if rec.status == "clean" and rec.seq is None:
            _announce(env, rec)  # a previous invocation stopped between the two steps
        return rec.status
    if env.settings.scanner == "guardduty":
        return _await_verdict(env, rec, version_id)
    return _scan(env, rec, version_id)


def _await_verdict(env: Env, rec: File, version_id: str | None) -> str:
    """SCANNER=guardduty: nothing is announced before GuardDuty's verdict; queue the deadline check."""
    if env.schedule.verdict_check is not None:
        env.schedule.verdict_check(env.settings.files_bucket, rec.object_key, version_id,
                                   min(SQS_MAX_DELAY_SECONDS, env.settings.guardduty_verdict_seconds))
    log.info("upload recorded; waiting for the malware verdict", extra={"fileId": rec.file_id})
    return "awaiting_verdict"


def _head(env: Env, rec: File, version_id: str | None) -> tuple[str | None, dict[str, Any]] | str:
    """HeadObject, checked against the record: (version, where) to read it; or the outcome when there is
    nothing to read: ``missing`` (moved by a concurrent invocation), or the rejection of a size or type
    that differs from what was declared."""
    where = {"Bucket": env.settings.files_bucket, "Key": rec.object_key,
             **({"VersionId": version_id} if version_id else {})}
    try:
        head = env.storage().head_object(**where)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion", "NotFound"):
            return "missing"  # already moved by a concurrent invocation
        raise
    version_id = version_id or head.get("VersionId")
    if version_id == "null":
        version_id = None
    if int(head["ContentLength"]) != int(rec.size):
        return _reject(env, rec, version_id, scanning.Verdict(False, "size_mismatch", "size differs from declared"))
    if (head.get("ContentType") or "").lower() != rec.content_type:
        return _reject(env, rec, version_id, scanning.Verdict(False, "type_mismatch", "stored content type differs"))
    return version_id, where


def _scan(env: Env, rec: File, version_id: str | None) -> str:
    """The function's own malware engine (builtin, clamd): its verdict becomes GuardDuty's event shape
    and goes to the decision GuardDuty's event reaches on AWS (``handle_scan_result``)."""
    checked = _head(env, rec, version_id)
    if isinstance(checked, str):
        return checked
    version_id, where = checked
    assert env.scanner is not None, "the files entry point wires the scanner"
    try:
        verdict, _text = _run_scanner(env, rec, where, env.scanner())
        status, threats = (guardduty.NO_THREATS_FOUND, ()) if verdict.clean else \
            (guardduty.THREATS_FOUND, (verdict.detail or "malware",)) if verdict.reason == "malware" else (None, ())
    except scanning.ScannerUnavailable as exc:
        return _defer(env, rec, version_id, str(exc))
    except scanning.ScanFailed as exc:
        log.warning("scanner cannot scan this object", extra={"fileId": rec.file_id, "reason": str(exc)[:200]})
        status, threats = guardduty.UNSUPPORTED, ()
    if status is None:  # a definite refusal by the built-in checks (type, size, checksum): no engine verdict
        return _reject(env, rec, version_id, verdict)
    return handle_scan_result(env, guardduty.event(env.settings.files_bucket, rec.object_key, version_id,
                                                   status, threats, now=env.clock()))


# --- the malware verdict: GuardDuty's event on AWS, the function's own engine locally -------

def handle_scan_result(env: Env, event: dict[str, Any]) -> str:
    """A "GuardDuty Malware Protection Object Scan Result" event; :class:`guardduty.Malformed` if it is not one."""
    return on_scan_result(env, guardduty.parse(event))


def on_scan_result(env: Env, result: guardduty.ScanResult) -> str:
    """The file decision on a malware verdict (at least once, in any order with ObjectCreated).

    ``NO_THREATS_FOUND``: the built-in checks, the checksum and the content
    screening in one pass (``_check``), then the notice.  ``THREATS_FOUND``:
    quarantined, ``file.rejected`` (``malware``).  ``UNSUPPORTED``,
    ``ACCESS_DENIED``, ``FAILED``: never clean unscanned - refused as
    ``scan_failed`` (object deleted, quota back); the last two are logged as
    errors (a configuration or service problem: docs/operations.md).
    """
    if _not_an_upload(env, result.bucket, result.key):
        return "ignored"
    rec = _record_of(result.key)
    if rec is None:
        log.warning("scan result for an object without a file record ignored", extra={"key": result.key[:300]})
        return "ignored"
    _arrived(env, rec)
    version_id = result.version_id
    if rec.status != "pending":
        if version_id and rec.version_id and version_id != rec.version_id:
            # A second upload through the same form, decided on the first: never served.
            delete_object(env.storage(), env.settings.files_bucket, rec.object_key, version_id)
            return "superseded"
        return rec.status
    if result.status == guardduty.THREATS_FOUND:
        return _reject(env, rec, version_id, scanning.Verdict(False, "malware",
                                                              ", ".join(result.threats)[:200] or "malware"))
    if result.status == guardduty.NO_THREATS_FOUND:
        return _check(env, rec, version_id)
    metrics.count("ScansFailed")
    (log.warning if result.status == guardduty.UNSUPPORTED else log.error)(
        "malware scan did not complete; file refused", extra={"fileId": rec.file_id, "status": result.status})
    return _reject(env, rec, version_id, scanning.Verdict(False, "scan_failed", f"malware scan: {result.status}"),
                   quarantine=False)


def verdict_overdue(env: Env, bucket: str, key: str, version_id: str | None) -> str:
    """SCANNER=guardduty, ``GUARDDUTY_VERDICT_SECONDS`` after the upload: still no verdict -> refused
    (``scan_failed``), once; an error is logged (is the plan active, the EventBridge rule there?)."""
    if _not_an_upload(env, bucket, key):
        return "ignored"
    rec = _record_of(key)
    if rec is None or rec.status != "pending":
        return rec.status if rec is not None else "gone"
    metrics.count("ScansFailed")
    log.error("no malware verdict in time; file refused", extra={
        "fileId": rec.file_id, "waited": env.settings.guardduty_verdict_seconds})
    return _reject(env, rec, version_id, scanning.Verdict(False, "scan_failed", "no malware verdict in time"),
                   quarantine=False)


def _rulesets(env: Env, rec: File) -> tuple[Any, list[dlp.Ruleset]] | None:
    """The screening call and the rule sets of every company in the file's conversation (the uploader's
    first), or None when the conversation is gone or no company has rules (nothing to extract then)."""
    from ..models import Conversation  # noqa: PLC0415

    conv = Conversation.find(rec.conversation_id)
    if conv is None:
        return None
    uploader = user_ref(rec.uploader_key)
    call = env.acting(Principal(tenant_id=uploader["tenantId"], user_id=uploader["userId"], email=""))
    sets = screening.rulesets(screening.tenants_of(call, conv), env.clock(), env.settings.dlp_cache_seconds)
    return (call, sets) if any(sets) else None


def _check(env: Env, rec: File, version_id: str | None) -> str:
    """No threats found: the built-in checks (type, EICAR), the checksum and the text's extraction in one
    pass, then the decision (screening included, in ``_accept``)."""
    checked = _head(env, rec, version_id)
    if isinstance(checked, str):
        return checked
    version_id, where = checked
    screen = _rulesets(env, rec) if file_text.screened(rec.content_type) else None
    collector = file_text.Collector(rec.content_type, env.settings.file_screen_max_chars) if screen else None
    try:
        verdict, extracted = _run_scanner(env, rec, where, scanning.builtin_checks(), collector)
    except file_text.Unreadable as exc:
        verdict, extracted = scanning.Verdict(False, "type_mismatch", str(exc)[:200]), None
    if not verdict.clean:
        return _reject(env, rec, version_id, verdict)
    return _accept(env, rec, version_id, (screen, extracted) if screen and extracted is not None else None)


def _run_scanner(env: Env, rec: File, where: dict[str, Any], engine: scanning.Scanner,
                 collector: file_text.Collector | None = None
                 ) -> tuple[scanning.Verdict, file_text.Extracted | None]:
    """One pass over the object: the scanner's session, the checksum and the text collector together."""
    session = engine.open(rec.content_type, int(rec.size))
    try:
        digest = hashlib.sha256()
        seen = 0
        body = env.storage().get_object(**where)["Body"]
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                seen += len(chunk)
                digest.update(chunk)
                session.feed(chunk)
                if collector is not None:
                    collector.feed(chunk)
        finally:
            body.close()
        verdict = session.finish()
    finally:
        session.close()
    if verdict.clean and seen != int(rec.size):
        return scanning.Verdict(False, "size_mismatch", "size differs from declared"), None
    if verdict.clean and rec.sha256 and digest.hexdigest() != rec.sha256:
        return scanning.Verdict(False, "checksum_mismatch", "sha256 differs from declared"), None
    return verdict, (collector.finish() if verdict.clean and collector is not None else None)


def _defer(env: Env, rec: File, version_id: str | None, why: str) -> str:
    """Scanner unavailable: stay pending, count the attempt, queue a delayed retry (backoff).

    After the last attempt the file is refused as ``scan_failed`` (never clean unscanned): the
    uploader is told, the object goes and the reserved bytes come back, exactly once (``_reject``
    moves the record out of ``pending`` under a condition).
    """
    rec.update(actions=[File.scan_attempts.add(1), File.updated_at.set(env.now_ms())])
    metrics.count("ScansDeferred")
    attempts = int(rec.scan_attempts or 0)
    if attempts >= env.settings.scan_max_attempts:
        log.error("scanner unavailable; scan abandoned, file refused",
                  extra={"fileId": rec.file_id, "attempts": attempts, "reason": why[:200]})
        return _reject(env, rec, version_id, scanning.Verdict(
            False, "scan_failed", f"scanner unavailable for {attempts} attempts"), quarantine=False)
    delay = min(SQS_MAX_DELAY_SECONDS, env.settings.scan_retry_seconds * 2 ** (attempts - 1))
    log.warning("scanner unavailable; retry queued",
                extra={"fileId": rec.file_id, "attempts": attempts, "delay": delay, "reason": why[:200]})
    assert env.schedule.file_scan is not None, "a deferred scan needs the files queue"
    env.schedule.file_scan(env.settings.files_bucket, rec.object_key, version_id, delay)
    return "pending"


def _decide(env: Env, rec: File, actions: list[Any]) -> bool:
    """pending -> a final state, once (conditional UpdateItem); False if another invocation decided."""
    try:
        rec.update(actions=actions + [File.updated_at.set(env.now_ms())], condition=File.status == "pending")
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def screen_content(call: Call, sets: list[dlp.Ruleset], extracted: file_text.Extracted) -> dlp.Verdict:
    """The DLP verdict on a file's text, under the rule sets of every company in its conversation.

    The same detectors, rules, folding and strictest-side merge as a message
    (``dlp.screen``), with two differences: a file cannot be redacted, so a
    matching ``redact`` rule refuses it like a ``block`` rule; and text not
    screened to its end (``extracted.complete`` False) adds a hit for each
    company's ``file_unscreened`` rules, whose action then applies.
    """
    verdict = dlp.screen(extracted.text, sets)
    hits = list(verdict.hits)
    if not extracted.complete:
        hits += [h for rs in sets if rs for h in rs.unscreened()]
    hits = [dlp.Hit(h.tenant_id, h.rule._replace(action="block"), h.spans)
            if h.rule.action == "redact" else h for h in hits]
    if not hits:
        return dlp.Verdict(None, extracted.text, extracted.text)
    action = max((h.rule.action for h in hits), key=dlp.RANK.__getitem__)
    return dlp.Verdict(action, extracted.text, extracted.text, hits)


def _accept(env: Env, rec: File, version_id: str | None,
            screen: tuple[tuple[Call, list[dlp.Ruleset]], file_text.Extracted] | None = None) -> str:
    uploader = user_ref(rec.uploader_key)
    try:
        conv, _member = policy.may_share_files(
            Principal(tenant_id=uploader["tenantId"], user_id=uploader["userId"], email=""), rec.conversation_id,
            env.now_ms())
        if conv.archived:
            raise Conflict("The conversation is archived.")
    except ChatError as err:
        return _reject(env, rec, version_id, scanning.Verdict(False, "not_allowed", err.message), quarantine=False)
    found: dlp.Verdict | None = None
    if screen is not None:
        (call, sets), extracted = screen
        found = screen_content(call, sets, extracted)
        if not extracted.complete:
            metrics.count("FilesPartlyScreened")
            log.info("file text not screened to its end", extra={"fileId": rec.file_id, "why": extracted.why,
                                                                 "dlp_action": found.action})
        if found.action is not None:
            log.info("screening hit", extra={"conversation": rec.conversation_id, "source": "file_content",
                                             "fileId": rec.file_id, "dlp_action": found.action,
                                             "matches": found.matches,
                                             "rules": [f"{h.tenant_id}/{h.rule.id}" for h in found.hits]})
        hit = found.blocking
        if hit is not None:
            screening.record_blocked(call, found, rec.conversation_id, "file_content", file_id=rec.file_id)
            return _reject(env, rec, version_id, scanning.Verdict(False, "blocked_content",
                                                                  f"{hit.tenant_id}/{hit.rule.id}"),
                           quarantine=False, extra={"ruleId": hit.rule.id, "ruleName": hit.rule.name,
                                                    "side": hit.tenant_id})
    actions = [File.status.set("clean"), File.expires_at.remove()]
    if version_id:
        actions.append(File.version_id.set(version_id))
    if not _decide(env, rec, actions):
        rec.refresh(consistent_read=True)
        if version_id and version_id != rec.version_id:
            delete_object(env.storage(), env.settings.files_bucket, rec.object_key, version_id)
        return rec.status
    metrics.count("FilesClean")
    outcome = _announce(env, rec)
    if outcome == "clean":  # the company's usage of the day (chalicelib/usage.py): 1 UpdateItem
        usage.add(rec.tenant_id, env.now_ms() / 1000, uploads=1, uploadBytes=int(rec.size))
    if found is not None and found.action == "flag" and outcome == "clean" and screen is not None:
        screening.record_flags(screen[0][0], found, rec.conversation_id, "file_content", file_id=rec.file_id)
    return outcome


def _announce(env: Env, rec: File) -> str:
    """Post the notice (idempotent on the file id) and remember its seq."""
    from ..models import Conversation, Member  # noqa: PLC0415 - keep this module's imports small

    conv = Conversation.find(rec.conversation_id, consistent=True)
    member = Member.find(rec.conversation_id, rec.uploader_key)
    try:
        if conv is None or member is None:
            raise NotFound("The uploader is no longer a member.")
        view, _dup = timeline.post_file_notice(env, conv, member, notice(rec), env.now_ms())
    except (NotFound, Conflict) as err:
        # Lost the conversation between scan and post: the file goes, like a deleted message.
        log.info("file notice not posted", extra={"fileId": rec.file_id, "reason": err.message})
        rec.update(actions=[File.status.set("deleted"), File.reason.set("not_allowed"),
                            File.expires_at.set(env.now_ms() // 1000 + REJECTED_TTL_SECONDS)])
        TenantUsage.release(rec.tenant_id, int(rec.size))
        delete_object(env.storage(), env.settings.files_bucket, rec.object_key, rec.version_id)
        _tell_uploader(env, rec, "not_allowed", err.message)
        return "deleted"
    rec.update(actions=[File.seq.set(view["seq"])])
    log.info("file ready", extra={"fileId": rec.file_id, "seq": view["seq"], "size": int(rec.size)})
    return "clean"


def _reject(env: Env, rec: File, version_id: str | None, verdict: scanning.Verdict,
            quarantine: bool = True, extra: dict[str, str] | None = None) -> str:
    status = "quarantined" if quarantine else "deleted"
    if not _decide(env, rec, [File.status.set(status), File.reason.set(verdict.reason or "rejected"),
                              File.expires_at.set(env.now_ms() // 1000 + REJECTED_TTL_SECONDS)]
                   + ([File.version_id.set(version_id)] if version_id else [])):
        rec.refresh(consistent_read=True)
        if version_id and version_id != rec.version_id:
            delete_object(env.storage(), env.settings.files_bucket, rec.object_key, version_id)
        return rec.status
    metrics.count("FilesQuarantined" if quarantine else "FilesRefused")
    bucket = env.settings.files_bucket
    if quarantine:
        source = {"Bucket": bucket, "Key": rec.object_key, **({"VersionId": version_id} if version_id else {})}
        env.storage().copy_object(Bucket=bucket, Key=QUARANTINE_PREFIX + rec.object_key, CopySource=source,
                           ServerSideEncryption=SSE, MetadataDirective="COPY")
    delete_object(env.storage(), bucket, rec.object_key, version_id)
    TenantUsage.release(rec.tenant_id, int(rec.size))
    log.warning("file rejected", extra={"fileId": rec.file_id, "reason": verdict.reason,
                                        "detail": (verdict.detail or "")[:200]})
    reason = verdict.reason if verdict.reason in _REASONS or verdict.reason == "not_allowed" else "scan_failed"
    _tell_uploader(env, rec, reason, verdict.detail if reason == "not_allowed" and verdict.detail
                   else _REASONS.get(reason, "The file was refused."), extra)
    return status


_REASONS = {
    "malware": "The file contains malware and was quarantined.",
    "type_mismatch": "The file's content does not match its declared type.",
    "size_mismatch": "The uploaded object's size differs from the declared size.",
    "checksum_mismatch": "The uploaded object's SHA-256 differs from the declared one.",
    "scan_failed": "The file could not be scanned.",
    "blocked_content": "The file's content is not allowed here by a screening rule.",
}


def _tell_uploader(env: Env, rec: File, reason: str, message: str,
                   extra: dict[str, str] | None = None) -> None:
    """``file.rejected`` on the uploader's devices only: nobody else ever saw the file."""
    frame = {"type": "file.rejected", "conversationId": rec.conversation_id, "fileId": rec.file_id,
             "name": rec.name, "reason": reason, "message": message, **(extra or {})}
    events.to_users(env.delivery, [rec.uploader_key], frame, origin=rec.uploader_key, now_ms=env.now_ms())
