"""What the message write path asks of retention and legal holds, and what it does to the file
objects that follow their messages (docs/compliance.md).

* ``message_retention``: 1 BatchGetItem of the sender's company rule items (default period,
  override for this conversation, holds on the sender and on the conversation) decides a new
  message's expiry (``retention.decide``).
* ``held_now``: the 2 hold markers, read strongly consistent, before an edit or delete decides
  whether to keep the original.
* A file message's object carries a ``retention`` tag the bucket's lifecycle rules act on, an S3
  Object Lock legal hold while a hold covers it, and its record the message's expiry.

Used by messages, files and compliance alike; it imports none of them, so the send path does not
load the admin routes and no import cycle runs through here.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from .. import models, retention
from ..models import Message, RetentionRule, condition_failed, split_user_key
from .context import Env

if TYPE_CHECKING:  # the files' models load when a held message carries a file, not on every send's cold start
    from ..models import File

log = logging.getLogger("chat.holds")

REJECTED_TTL_SECONDS = 30 * 24 * 3600  # quarantined/deleted records are kept a while for support


# --- the write path ---------------------------------------------------------------------

def rule_items(subjects: list[str]) -> dict[str, RetentionRule]:
    """BatchGetItem: the rule items that exist among ``subjects`` (1 request for up to 100)."""
    return {r.subject: r for r in RetentionRule.batch_get(list(dict.fromkeys(subjects)))}


def decision_for(sender_key: str, conversation_id: str, day_seconds: int) -> retention.Decision:
    return retention.decide(rule_items(retention.subjects_for(sender_key, conversation_id)), sender_key,
                            conversation_id, day_seconds)


def message_retention(sender_key: str, conversation_id: str, now_ms: int, day_seconds: int,
                      rules: dict[str, RetentionRule] | None = None) -> dict[str, Any]:
    """Attributes a new message gets: ``expires_at`` (unless held), ``retain_s``, ``retained_sender``.

    ``rules`` are the rule items of ``retention.subjects_for`` when the caller
    already read them (the send path reads them with the conversation); ``day_seconds`` is a
    retention day (86,400, or a few seconds on the test stack).
    """
    if rules is None:
        return decision_for(sender_key, conversation_id, day_seconds).attributes(sender_key, now_ms)
    return retention.decide(rules, sender_key, conversation_id, day_seconds).attributes(sender_key, now_ms)


def held_now(sender_key: str, conversation_id: str) -> bool:
    """Does an active hold of the sender's company cover a message of ``sender_key`` here?

    1 BatchGetItem, strongly consistent, of the 2 hold markers (user, conversation): what
    ``message.edit``/``message.delete`` read before deciding whether to keep the original.
    """
    tenant, user = split_user_key(sender_key)
    subjects = [retention.user_hold_subject(tenant, user), retention.conversation_hold_subject(tenant, conversation_id)]
    return any(r.holds for r in RetentionRule.batch_get(subjects, consistent_read=True))



# --- the file objects that follow their messages ----------------------------------------------

def object_where(env: Env, rec: File) -> dict[str, Any]:
    where: dict[str, Any] = {"Bucket": env.settings.files_bucket, "Key": rec.object_key}
    if rec.version_id:
        where["VersionId"] = rec.version_id
    return where


def legal_hold(env: Env, rec: File, on: bool) -> None:
    """S3 Object Lock legal hold ON/OFF on the file's scanned version (1 PutObjectLegalHold).

    While ON, S3 refuses to delete that version (``AccessDenied``), whoever asks,
    and lifecycle rules skip it.  The bucket has Object Lock enabled (infra/).
    """
    env.storage().put_object_legal_hold(**object_where(env, rec), LegalHold={"Status": "ON" if on else "OFF"})


def tag_file(env: Env, msg: Message, sweep: bool = False) -> None:
    """Give a file message's object the ``retention`` tag its message's state implies (no-op without one).

    The file record gets the message's expiry too, so it goes with the message.
    A held object also gets an S3 legal hold; a sweep (``sweep``) turns it off
    again once no hold covers the message (a new notice that is not held needs
    no request for that).
    """
    if msg.kind != "file" or not msg.file or msg.retain_s is None:
        return
    rec = models.File.find(msg.file.as_dict().get("fileId", ""), consistent=True)
    if rec is None or rec.status != "clean":
        return
    held = msg.expires_at is None
    tag = retention.file_tag(int(msg.retain_s), held, env.settings.retention_day_seconds)
    env.storage().put_object_tagging(**object_where(env, rec),
                                     Tagging={"TagSet": [{"Key": retention.TAG_KEY, "Value": tag}]})
    if held or sweep:
        legal_hold(env, rec, held)
    file_expiry(rec, None if held else int(msg.expires_at))


def file_expiry(rec: File, expires_at: int | None, forever: bool = False) -> bool:
    """Set (or remove) a clean file record's expiry, and keep its quota accounting exactly once.

    Setting an expiry commits the bytes to go (S3 lifecycle removes the object, TTL the record, and
    neither tells us): the first time, a conditional UpdateItem sets ``quota_returned`` and the bytes
    go back to the company's quota (1 more UpdateItem); a retried or repeated step finds the flag and
    returns nothing.  Removing the expiry because the company now keeps forever (``forever``) charges
    the bytes again under the same flag; a hold removes the expiry but leaves the quota as it is
    (held bytes do not count, as for a message deleted under a hold).  True if the quota changed.
    """
    now = int(time.time())
    if expires_at is not None:
        try:
            rec.update(actions=[models.File.expires_at.set(int(expires_at)), models.File.quota_returned.set(now)],
                       condition=models.File.quota_returned.does_not_exist() & models.File.file_id.exists())
            # (a record TTL removed fails the condition too; the fallback below then changes nothing)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            _update_existing(rec, [models.File.expires_at.set(int(expires_at))])
            return False
        models.TenantUsage.release(rec.tenant_id, int(rec.size))
        return True
    if forever:
        try:
            rec.update(actions=[models.File.expires_at.remove(), models.File.quota_returned.remove()],
                       condition=models.File.quota_returned.exists())
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        else:
            models.TenantUsage.charge(rec.tenant_id, int(rec.size))
            return True
    _update_existing(rec, [models.File.expires_at.remove()])
    return False


def _update_existing(rec: File, actions: list[Any]) -> None:
    """UpdateItem that never recreates a record its TTL removed meanwhile."""
    try:
        rec.update(actions=actions, condition=models.File.file_id.exists())
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def untag_file(env: Env, msg: Message) -> None:
    """A file message whose company now keeps forever: the object loses its ``retention`` tag (no lifecycle
    rule matches it) and its legal hold, the record its expiry, the quota counts its bytes again."""
    if msg.kind != "file" or not msg.file:
        return
    rec = models.File.find(msg.file.as_dict().get("fileId", ""), consistent=True)
    if rec is None or rec.status != "clean":
        return
    env.storage().delete_object_tagging(**object_where(env, rec))
    legal_hold(env, rec, False)
    file_expiry(rec, None, forever=True)


def file_message_deleted(env: Env, file_id: str, now: int, held: bool = False) -> None:
    """The file's message became a tombstone: the object goes, the record says so, the quota is freed.

    ``held``: a legal hold covers the message.  The scanned version is kept
    instead, under an S3 Object Lock legal hold (S3 then refuses to delete it),
    and the record keeps ``held_at`` and no expiry: the company's admins can
    still download it (``compliance.download_file``) until the last hold ends.
    """
    File = models.File  # noqa: N806 - the model, read through the lazy registry
    rec = File.find(file_id, consistent=True)
    if rec is None or rec.status != "clean":
        return
    actions = [File.status.set("deleted"), File.reason.set("message_deleted"), File.updated_at.set(now)]
    actions += [File.held_at.set(now), File.expires_at.remove()] if held \
        else [File.expires_at.set(now // 1000 + REJECTED_TTL_SECONDS)]
    # The user deleted it: the company's quota gets the bytes back even when a hold keeps them - unless
    # setting its retention expiry gave them back already (``quota_returned``, docs/files.md "Quota").
    returns = None
    for _ in range(2):  # the flag can only appear between the two tries, never go
        try:
            if rec.quota_returned is None:
                rec.update(actions=actions + [File.quota_returned.set(now // 1000)],
                           condition=(File.status == "clean") & File.quota_returned.does_not_exist())
                returns = True
            else:
                rec.update(actions=actions, condition=(File.status == "clean") & File.quota_returned.exists())
                returns = False
            break
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            rec = File.find(file_id, consistent=True)
            if rec is None or rec.status != "clean":
                return  # a concurrent delete did it
    if returns is None:
        return
    if returns:
        models.TenantUsage.release(rec.tenant_id, int(rec.size))
    if held:
        legal_hold(env, rec, True)
    else:
        delete_object(env.storage(), env.settings.files_bucket, rec.object_key, rec.version_id)


def delete_object(s3: Any, bucket: str, key: str, version_id: str | None) -> None:
    """DeleteObject (of exactly that version when known: no delete marker, nothing left behind)."""
    try:
        s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    except ClientError as exc:
        log.warning("object delete failed", extra={"key": key[:300], "error": str(exc)[:200]})
