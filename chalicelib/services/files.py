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
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from .. import metrics, policy
from .. import scanner as scanning
from ..identity import Principal
from ..config import Settings
from ..models import File, TenantUsage, condition_failed, user_ref
from ..protocol.errors import ChatError, Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from . import messages, screening
from .context import Call
from . import events

log = logging.getLogger("chat.files")

QUARANTINE_PREFIX = "quarantine/"
SSE = "aws:kms"  # the bucket's default too (infra/); the POST policy requires it explicitly
PENDING_TTL_SECONDS = 7 * 24 * 3600   # a pending record outlives every retry, then expires
REJECTED_TTL_SECONDS = 30 * 24 * 3600  # quarantined/deleted records are kept a while for support
READ_CHUNK = 256 * 1024
MAX_NAME_CHARS = 255
SAFE_NAME_CHARS = 100
SQS_MAX_DELAY_SECONDS = 900


@dataclass(frozen=True)
class FilesEnv:
    """What the event side needs (the request side gets the same from ``runtime``)."""

    s3: Any
    delivery: Any
    clock: Callable[[], float]
    settings: Settings
    scanner: Callable[[], scanning.Scanner]
    # retry(bucket, key, version_id, delay_seconds): scan this object again later
    retry: Callable[[str, str, str | None, int], None]
    # schedule_release(file_id, release_at_ms, delay_seconds): check an unused reservation later
    schedule_release: Callable[[str, int, int], None] | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def _s3() -> Any:
    from .. import runtime  # the client is built on first use, not at import

    return runtime.s3()




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
    messages._rate_limit(call)  # an upload request counts as a send
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
        post = _s3().generate_presigned_post(
            Bucket=s.files_bucket, Key=rec.object_key,
            Fields={"Content-Type": ctype, "x-amz-server-side-encryption": SSE},
            Conditions=[{"Content-Type": ctype}, {"x-amz-server-side-encryption": SSE},
                        ["content-length-range", size, size]],
            ExpiresIn=s.upload_url_seconds)
        # The reservation is given back if no upload arrives before the form expires (+ grace).
        release_at = now + (s.upload_url_seconds + s.upload_release_grace_seconds) * 1000
        _schedule_release(file_id, release_at, s.upload_url_seconds + s.upload_release_grace_seconds)
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
    url = _s3().generate_presigned_url("get_object", Params=params, ExpiresIn=call.settings.download_url_seconds)
    return {"file": file_view(rec),
            "download": {"url": url, "expiresAt": call.now_ms() + call.settings.download_url_seconds * 1000}}


def message_deleted(file_id: str, now: int, held: bool = False) -> None:
    """The file's message became a tombstone: the object goes, the record says so, the quota is freed.

    ``held``: a legal hold covers the message.  The scanned version is kept
    instead, under an S3 Object Lock legal hold (S3 then refuses to delete it),
    and the record keeps ``held_at`` and no expiry: the company's admins can
    still download it (``compliance.download_file``) until the last hold ends.
    """
    rec = File.find(file_id, consistent=True)
    if rec is None or rec.status != "clean":
        return
    actions = [File.status.set("deleted"), File.reason.set("message_deleted"), File.updated_at.set(now)]
    actions += [File.held_at.set(now), File.expires_at.remove()] if held \
        else [File.expires_at.set(now // 1000 + REJECTED_TTL_SECONDS)]
    try:
        rec.update(actions=actions, condition=File.status == "clean")
    except UpdateError as exc:
        if condition_failed(exc):
            return  # a concurrent delete did it
        raise
    # The user deleted it: the company's quota gets the bytes back even when a hold keeps them.
    TenantUsage.release(rec.tenant_id, int(rec.size))
    if held:
        from .compliance import legal_hold

        legal_hold(rec, True)
    else:
        _delete_object(_s3(), _bucket(), rec.object_key, rec.version_id)


def _schedule_release(file_id: str, release_at: int, delay_seconds: int) -> None:
    from .. import runtime

    runtime.schedule_upload_release(file_id, release_at, delay_seconds)


def release_unused(env: FilesEnv, file_id: str, release_at: int) -> str:
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
        if env.schedule_release is not None:
            env.schedule_release(file_id, release_at, -(-(release_at - now) // 1000))
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


def _bucket() -> str:
    from ..config import settings

    return settings().files_bucket


# --- S3 events -----------------------------------------------------------------------

def on_object_created(env: FilesEnv, bucket: str, key: str, version_id: str | None = None) -> str:
    """Handle one ObjectCreated notification (at least once, in any order); returns the outcome."""
    # exports/: eDiscovery exports the app writes itself (docs/compliance.md), not uploads.
    if bucket != env.settings.files_bucket or key.startswith((QUARANTINE_PREFIX, "exports/")):
        return "ignored"
    parts = key.split("/")
    rec = File.find(parts[2], consistent=True) if len(parts) == 4 else None
    if rec is None or rec.object_key != key:
        log.warning("object without a file record removed", extra={"key": key[:300]})
        _delete_object(env.s3, bucket, key, version_id)
        return "orphan"
    if rec.status == "pending" and rec.uploaded_at is None:
        # The upload arrived: from now on the scan decides, never the unused-form release.
        try:
            rec.update(actions=[File.uploaded_at.set(env.now_ms())], condition=File.status == "pending")
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            rec.refresh(consistent_read=True)
    if rec.status == "expired":
        # Landed after its reservation was given back (a form used past expiry + grace): never served.
        _delete_object(env.s3, bucket, key, version_id)
        return "expired"
    if rec.status != "pending":
        if version_id and version_id != rec.version_id:
            # Another upload through a still-valid URL after the decision: never served, removed.
            _delete_object(env.s3, bucket, key, version_id)
            return "superseded"
        if rec.status == "clean" and rec.seq is None:
            _announce(env, rec)  # a previous invocation stopped between the two steps
        return rec.status
    return _scan(env, rec, version_id)


def _scan(env: FilesEnv, rec: File, version_id: str | None) -> str:
    s3, bucket = env.s3, env.settings.files_bucket
    where = {"Bucket": bucket, "Key": rec.object_key, **({"VersionId": version_id} if version_id else {})}
    try:
        head = s3.head_object(**where)
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
    try:
        verdict = _run_scanner(env, rec, where)
    except scanning.ScannerUnavailable as exc:
        return _defer(env, rec, version_id, str(exc))
    except scanning.ScanFailed as exc:
        verdict = scanning.Verdict(False, "scan_failed", str(exc)[:200])
    if not verdict.clean:
        return _reject(env, rec, version_id, verdict)
    return _accept(env, rec, version_id)


def _run_scanner(env: FilesEnv, rec: File, where: dict[str, Any]) -> scanning.Verdict:
    """One pass over the object: the scanner's session and the checksum together."""
    session = env.scanner().open(rec.content_type, int(rec.size))
    try:
        digest = hashlib.sha256()
        seen = 0
        body = env.s3.get_object(**where)["Body"]
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                seen += len(chunk)
                digest.update(chunk)
                session.feed(chunk)
        finally:
            body.close()
        verdict = session.finish()
    finally:
        session.close()
    if verdict.clean and seen != int(rec.size):
        return scanning.Verdict(False, "size_mismatch", "size differs from declared")
    if verdict.clean and rec.sha256 and digest.hexdigest() != rec.sha256:
        return scanning.Verdict(False, "checksum_mismatch", "sha256 differs from declared")
    return verdict


def _defer(env: FilesEnv, rec: File, version_id: str | None, why: str) -> str:
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
    env.retry(env.settings.files_bucket, rec.object_key, version_id, delay)
    return "pending"


def _decide(env: FilesEnv, rec: File, actions: list[Any]) -> bool:
    """pending -> a final state, once (conditional UpdateItem); False if another invocation decided."""
    try:
        rec.update(actions=actions + [File.updated_at.set(env.now_ms())], condition=File.status == "pending")
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def _accept(env: FilesEnv, rec: File, version_id: str | None) -> str:
    uploader = user_ref(rec.uploader_key)
    try:
        conv, _member = policy.may_share_files(
            Principal(tenant_id=uploader["tenantId"], user_id=uploader["userId"], email=""), rec.conversation_id,
            env.now_ms())
        if conv.archived:
            raise Conflict("The conversation is archived.")
    except ChatError as err:
        return _reject(env, rec, version_id, scanning.Verdict(False, "not_allowed", err.message), quarantine=False)
    actions = [File.status.set("clean"), File.expires_at.remove()]
    if version_id:
        actions.append(File.version_id.set(version_id))
    if not _decide(env, rec, actions):
        rec.refresh(consistent_read=True)
        if version_id and version_id != rec.version_id:
            _delete_object(env.s3, env.settings.files_bucket, rec.object_key, version_id)
        return rec.status
    metrics.count("FilesClean")
    return _announce(env, rec)


def _announce(env: FilesEnv, rec: File) -> str:
    """Post the notice (idempotent on the file id) and remember its seq."""
    from ..models import Conversation, Member  # noqa: PLC0415 - keep this module's imports small

    conv = Conversation.find(rec.conversation_id, consistent=True)
    member = Member.find(rec.conversation_id, rec.uploader_key)
    try:
        if conv is None or member is None:
            raise NotFound("The uploader is no longer a member.")
        view, _dup = messages.post_file_notice(env.delivery, conv, member, notice(rec), env.now_ms())
    except (NotFound, Conflict) as err:
        # Lost the conversation between scan and post: the file goes, like a deleted message.
        log.info("file notice not posted", extra={"fileId": rec.file_id, "reason": err.message})
        rec.update(actions=[File.status.set("deleted"), File.reason.set("not_allowed"),
                            File.expires_at.set(env.now_ms() // 1000 + REJECTED_TTL_SECONDS)])
        TenantUsage.release(rec.tenant_id, int(rec.size))
        _delete_object(env.s3, env.settings.files_bucket, rec.object_key, rec.version_id)
        _tell_uploader(env, rec, "not_allowed", err.message)
        return "deleted"
    rec.update(actions=[File.seq.set(view["seq"])])
    log.info("file ready", extra={"fileId": rec.file_id, "seq": view["seq"], "size": int(rec.size)})
    return "clean"


def _reject(env: FilesEnv, rec: File, version_id: str | None, verdict: scanning.Verdict,
            quarantine: bool = True) -> str:
    status = "quarantined" if quarantine else "deleted"
    if not _decide(env, rec, [File.status.set(status), File.reason.set(verdict.reason or "rejected"),
                              File.expires_at.set(env.now_ms() // 1000 + REJECTED_TTL_SECONDS)]
                   + ([File.version_id.set(version_id)] if version_id else [])):
        rec.refresh(consistent_read=True)
        if version_id and version_id != rec.version_id:
            _delete_object(env.s3, env.settings.files_bucket, rec.object_key, version_id)
        return rec.status
    metrics.count("FilesQuarantined" if quarantine else "FilesRefused")
    bucket = env.settings.files_bucket
    if quarantine:
        source = {"Bucket": bucket, "Key": rec.object_key, **({"VersionId": version_id} if version_id else {})}
        env.s3.copy_object(Bucket=bucket, Key=QUARANTINE_PREFIX + rec.object_key, CopySource=source,
                           ServerSideEncryption=SSE, MetadataDirective="COPY")
    _delete_object(env.s3, bucket, rec.object_key, version_id)
    TenantUsage.release(rec.tenant_id, int(rec.size))
    log.warning("file rejected", extra={"fileId": rec.file_id, "reason": verdict.reason,
                                        "detail": (verdict.detail or "")[:200]})
    reason = verdict.reason if verdict.reason in _REASONS or verdict.reason == "not_allowed" else "scan_failed"
    _tell_uploader(env, rec, reason, verdict.detail if reason == "not_allowed" and verdict.detail
                   else _REASONS.get(reason, "The file was refused."))
    return status


_REASONS = {
    "malware": "The file contains malware and was quarantined.",
    "type_mismatch": "The file's content does not match its declared type.",
    "size_mismatch": "The uploaded object's size differs from the declared size.",
    "checksum_mismatch": "The uploaded object's SHA-256 differs from the declared one.",
    "scan_failed": "The file could not be scanned.",
}


def _tell_uploader(env: FilesEnv, rec: File, reason: str, message: str) -> None:
    """``file.rejected`` on the uploader's devices only: nobody else ever saw the file."""
    frame = {"type": "file.rejected", "conversationId": rec.conversation_id, "fileId": rec.file_id,
             "name": rec.name, "reason": reason, "message": message}
    events.to_users(env.delivery, [rec.uploader_key], frame, origin=rec.uploader_key, now_ms=env.now_ms())


def _delete_object(s3: Any, bucket: str, key: str, version_id: str | None) -> None:
    """DeleteObject (of exactly that version when known: no delete marker, nothing left behind)."""
    try:
        s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    except ClientError as exc:
        log.warning("object delete failed", extra={"key": key[:300], "error": str(exc)[:200]})
