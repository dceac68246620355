"""eDiscovery export: an admin asks for a date range (and optionally users/conversations); a job writes
JSON Lines to ``exports/<tenant>/<exportId>.jsonl`` in the files bucket.  See docs/compliance.md.

The job runs in **steps**, one SQS message each (``compliance_events``), so
no single Lambda invocation has to finish the whole export:

1. The first step *plans*: the conversation ids in scope (given ones, or
   the memberships of the given users - Query ``members.by_user`` - or of
   every user of the company - Query ``users`` by tenant, then
   ``members.by_user``), and starts an S3 multipart upload.
2. Each step reads up to ``EXPORT_PAGES_PER_STEP`` message pages (Query
   ``messages`` by conversation, newest first, stopping at the range's
   start), appends lines to a buffer, uploads a part whenever the buffer
   reaches S3's 5 MiB minimum, and leaves the rest in a small ``carry``
   object for the next step; the cursor and counts go to the export item
   under a condition on the step number, so a redelivered step is a no-op.
3. The last step writes a summary line, uploads the last part and
   completes the upload.  ``GET /admin/exports/{id}`` then returns a
   presigned GET (audited).

Scope: only conversations the company's members are (or were) in -
shared conversations included - and on the guest side of a revoked
external conversation only up to the revocation (``policy.history_cutoff``).
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from .. import policy
from ..identity import Principal
from ..models import (Conversation, Export, File, HeldOriginal, Member, Message, User, condition_failed, user_key,
                      user_ref)
from ..protocol.errors import NotFound, ValidationFailed
from .audit import audit, require_admin
from .compliance import tenant_conversation
from .context import Call, Env


log = logging.getLogger("chat.exports")

PREFIX = "exports/"
PART_BYTES = 5 * 1024 * 1024   # S3's minimum size of every part but the last
PAGE = 100                     # messages per Query page
STEP_SECONDS = 20              # time budget of one step (the function's timeout is 30 s)
CLOCK_SKEW_MS = 60_000         # seqs are allocated in time order up to concurrent senders' clock skew
SSE = "aws:kms"




# --- REST ------------------------------------------------------------------------------------

def _view(exp: Export) -> dict[str, Any]:
    counts = exp.counts.as_dict() if exp.counts else {}
    return {"exportId": exp.export_id, "state": exp.state, "from": int(exp.from_ms), "to": int(exp.to_ms),
            "userIds": list(exp.user_ids or []) or None, "conversationIds": list(exp.conversation_ids or []) or None,
            "createdAt": int(exp.created_at), "createdBy": exp.created_by,
            "progress": {"conversationsTotal": int(exp.listed or 0), "conversationsDone":
                         int(exp.chunk_base or 0) + int(exp.position or 0),
                         "listingDone": bool(exp.listing_done),
                         **{k: int(counts.get(k, 0)) for k in ("messages", "files", "tombstones", "bytes")}},
            "error": exp.error, "finishedAt": int(exp.finished_at) if exp.finished_at else None,
            "download": None}


def start_export(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Validate the scope (only the caller's company's users and conversations) and queue the job."""
    require_admin(call)
    tenant = call.principal.tenant_id
    start, end = int(body["from"]), int(body["to"])
    if start > end:
        raise ValidationFailed("from must not be after to.")
    user_ids = list(dict.fromkeys(body.get("userIds") or []))
    if user_ids:
        found = {u.user_id for u in User.batch_get([(tenant, uid) for uid in user_ids])}
        missing = [uid for uid in user_ids if uid not in found]
        if missing:
            raise NotFound(f"No such user: {missing[0][:64]}.", userId=missing[0][:64])
    conv_ids = [tenant_conversation(call, cid).conversation_id
                for cid in dict.fromkeys(body.get("conversationIds") or [])]
    now = call.now_ms()
    export_id = f"{now:013d}-{uuid.uuid4().hex[:12]}"
    exp = Export(tenant_id=tenant, export_id=export_id, state="queued", created_at=now,
                 created_by=call.principal.user_id, from_ms=start, to_ms=end, user_ids=user_ids or None,
                 conversation_ids=conv_ids or None, object_key=f"{PREFIX}{tenant}/{export_id}.jsonl",
                 counts={}, parts=[], updated_at=now)
    exp.save(condition=Export.export_id.does_not_exist())
    audit(call, "export.start", export_id,
          after={"from": start, "to": end, "userIds": user_ids, "conversationIds": conv_ids})
    call.schedule.job({"job": "export", "tenantId": tenant, "exportId": export_id, "step": 0}, 0)
    return {"export": _view(exp)}


def get_export(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """State and progress; when done, a presigned GET of the JSONL object (each URL issued is audited)."""
    require_admin(call)
    try:
        exp = Export.get(call.principal.tenant_id, body["exportId"], consistent_read=True)
    except Export.DoesNotExist:
        raise NotFound("No such export.") from None
    view = _view(exp)
    if exp.state == "done":
        seconds = call.settings.export_url_seconds
        url = call.storage().generate_presigned_url("get_object", ExpiresIn=seconds, Params={
            "Bucket": call.settings.files_bucket, "Key": exp.object_key,
            "ResponseContentType": "application/x-ndjson",
            "ResponseContentDisposition": f'attachment; filename="export-{exp.export_id}.jsonl"'})
        view["download"] = {"url": url, "expiresAt": call.now_ms() + seconds * 1000}
        audit(call, "export.download", exp.export_id)
    return {"export": view}


# --- the job ---------------------------------------------------------------------------------

LISTING_QUERIES = 50  # Query requests one listing call may make (then the step goes on with what it has)


def _first_in_scope(exp: Export, conversation_id: str, uid: str, earlier: list[str]) -> bool:
    """Is ``uid`` the member the conversation is listed through (so each conversation is listed once,
    with no state across chunks)?  Whole company: its first current member by user id (1 Query, 1 item);
    given users: none of the given users before ``uid`` is a member (1 BatchGetItem per 100)."""
    tenant = exp.tenant_id
    if not exp.user_ids:
        from .compliance import _owner

        return _owner(conversation_id, tenant) == user_key(tenant, uid)
    keys = [(conversation_id, user_key(tenant, u)) for u in earlier]
    return not any(True for _ in Member.batch_get(keys)) if keys else True


def _next_chunk(exp: Export, state: dict[str, Any], limit: int) -> tuple[list[str], bool]:
    """The next conversations in scope (at most ``limit``; Queries on keys and indexes only, never a
    Scan), advancing ``state`` (kept in the export item between steps).  Returns (ids, listing done).

    Order: the given conversations (sorted), then the conversations of the given users (sorted), or of
    every user of the company (``users`` by tenant), each user's memberships by conversation id
    (``members.by_user``), a conversation listed through its first in-scope member only.
    """
    tenant = exp.tenant_id
    given = sorted(set(exp.conversation_ids or []))
    out: list[str] = []
    queries = 0
    while len(out) < limit and queries < LISTING_QUERIES:
        i = int(state.get("ci", 0))
        if i < len(given):
            take = given[i:i + limit - len(out)]
            out += take
            state["ci"] = i + len(take)
            continue
        if exp.conversation_ids and not exp.user_ids:
            return out, True
        uid = state.get("user")
        if uid is not None and state.get("mc") != "":
            page = Member.by_user.query(user_key(tenant, uid), limit=min(PAGE, limit - len(out)),
                                        last_evaluated_key=state.get("mc") or None)
            earlier = [u for u in sorted(set(exp.user_ids or [])) if u < uid]
            for m in page:
                queries += 1
                if m.conversation_id not in given and _first_in_scope(exp, m.conversation_id, uid, earlier):
                    out.append(m.conversation_id)
            state["mc"] = page.last_evaluated_key or ""
            queries += 1
            continue
        pending = list(state.get("pending") or [])
        if pending:
            state.update(user=pending[0], pending=pending[1:], mc=None)
            continue
        if exp.user_ids:
            if state.get("users_listed"):
                return out, True
            state.update(pending=sorted(set(exp.user_ids)), users_listed=True)
            continue
        if state.get("ucur") == "":
            return out, True
        users = User.query(tenant, attributes_to_get=["tenant_id", "user_id"], limit=PAGE,
                           last_evaluated_key=state.get("ucur") or None)
        state["pending"] = [u.user_id for u in users]
        state["ucur"] = users.last_evaluated_key or ""
        queries += 1
    return out, False


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")


def _conversation_line(conv: Conversation) -> dict[str, Any]:
    tenants = sorted(set(conv.tenants or ()) | {conv.tenant_id})
    return {"type": "conversation", "conversationId": conv.conversation_id, "kind": conv.kind,
            "name": conv.name, "topic": conv.topic, "hostTenantId": conv.tenant_id, "tenants": tenants,
            "shared": len(tenants) > 1, "createdAt": int(conv.created_at), "lastSeq": int(conv.last_seq or 0)}


def _originals(m: Message, kept: list[HeldOriginal], files: dict[str, File]) -> list[dict[str, Any]]:
    """Every version a legal hold kept of ``m`` (HeldOriginal items), oldest first.

    ``replacedBy`` says what ended it (``edit`` or ``delete``), ``replacedAt`` when.
    A delete's item also snapshots the message's last revisions (some may predate
    the hold): those not already kept are listed too, ended by the next version.
    """
    out: dict[int, dict[str, Any]] = {}
    for o in kept:
        out[int(o.at)] = {"body": o.body, "at": int(o.at), "replacedAt": int(o.replaced_at),
                          "replacedBy": "delete" if o.kind == "deleted" else "edit", "file": None}
        if o.file_id:
            rec = files.get(o.file_id)
            out[int(o.at)]["file"] = {"fileId": o.file_id, "versionId": rec.version_id if rec else None,
                                      "kept": bool(rec and rec.held_at is not None)}
        for r in (x.as_dict() if hasattr(x, "as_dict") else x for x in (o.revisions or [])):
            out.setdefault(int(r["at"]), {"body": r["body"], "at": int(r["at"]), "replacedAt": None,
                                          "replacedBy": "edit", "file": None})
    versions = sorted(out.values(), key=lambda v: v["at"])
    for version, after in zip(versions, versions[1:]):
        if version["replacedAt"] is None:
            version["replacedAt"] = after["at"]
    return versions


def _message_line(m: Message, files: dict[str, File], kept: list[HeldOriginal] | None = None) -> dict[str, Any]:
    revisions = [{"body": r["body"], "at": int(r["at"])}
                 for r in (x.as_dict() if hasattr(x, "as_dict") else x for x in (m.revisions or []))]
    reactions = {emoji: [user_ref(k) for k in sorted(keys)]
                 for emoji, keys in sorted(m.reaction_sets().items()) if keys}
    line: dict[str, Any] = {
        "type": "message", "conversationId": m.conversation_id, "seq": int(m.seq), "messageId": m.message_id,
        "sender": user_ref(m.sender_key), "kind": m.kind, "createdAt": int(m.created_at),
        "body": None if m.deleted else m.body, "edited": bool(m.edited_at) and not m.deleted,
        "editedAt": int(m.edited_at) if m.edited_at and not m.deleted else None,
        "deleted": bool(m.deleted), "deletedAt": int(m.edited_at) if m.deleted and m.edited_at else None,
        "revisions": revisions, "reactions": reactions,
        "threadRootSeq": int(m.thread_root_seq) if m.thread_root_seq else None,
        "mentions": list(m.mentions or []), "mentionAll": bool(m.mention_all),
        "expiresAt": int(m.expires_at) if m.expires_at else None, "file": None,
        "originals": _originals(m, kept or [], files),
    }
    if m.kind == "file" and m.file:
        meta = m.file.as_dict()
        rec = files.get(meta.get("fileId", ""))
        line["file"] = {**meta, "status": rec.status if rec else "unknown",
                        "sha256": rec.sha256 if rec else None,
                        "uploadedAt": int(rec.created_at) if rec else None}
    return line


class _Writer:
    """Lines into a buffer; 5 MiB parts to the multipart upload as the buffer fills."""

    def __init__(self, env: Env, exp: Export, buf: bytes, parts: list[dict[str, Any]]) -> None:
        self.env, self.exp, self.buf, self.parts = env, exp, bytearray(buf), parts
        self.written = 0

    def add(self, obj: dict[str, Any]) -> None:
        data = _line(obj)
        self.buf += data
        self.written += len(data)
        if len(self.buf) >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        number = len(self.parts) + 1
        resp = self.env.storage().upload_part(Bucket=self.env.settings.files_bucket, Key=self.exp.object_key,
                                       UploadId=self.exp.upload_id, PartNumber=number, Body=bytes(self.buf))
        self.parts.append({"n": number, "etag": resp["ETag"]})
        self.buf = bytearray()


def _carry_key(exp: Export, step: int) -> str:
    return f"{PREFIX}{exp.tenant_id}/{exp.export_id}.carry/{step:06d}"


def _fail(exp: Export, env: Env, why: str) -> str:
    log.warning("export failed", extra={"exportId": exp.export_id, "reason": why[:300]})
    exp.update(actions=[Export.state.set("failed"), Export.error.set(why[:500]),
                        Export.finished_at.set(env.now_ms()), Export.updated_at.set(env.now_ms())])
    if exp.upload_id:
        try:
            env.storage().abort_multipart_upload(Bucket=env.settings.files_bucket, Key=exp.object_key,
                                          UploadId=exp.upload_id)
        except ClientError:
            pass
    return "failed"


def export_step(env: Env, job: dict[str, Any]) -> str:
    """Run one step of an export (at least once, possibly redelivered): returns its outcome."""
    try:
        exp = Export.get(job["tenantId"], job["exportId"], consistent_read=True)
    except Export.DoesNotExist:
        return "gone"
    step = int(job.get("step", 0))
    if exp.state in ("done", "failed") or step != int(exp.step or 0):
        return "stale"  # finished, or a redelivery of a step whose successor is already queued
    bucket = env.settings.files_bucket
    started = env.clock()
    plan = list(exp.plan or [])
    listing = json.loads(exp.listing) if exp.listing else {}
    listed, base, listing_done = int(exp.listed or 0), int(exp.chunk_base or 0), bool(exp.listing_done)
    if exp.state != "queued" and exp.listing is None:  # planned whole before listings were chunked
        listed, listing_done = len(plan), True
    chunk = env.settings.export_chunk_conversations
    if exp.state == "queued":
        plan, listing_done = _next_chunk(exp, listing, chunk)
        listed = len(plan)
        exp.upload_id = env.storage().create_multipart_upload(
            Bucket=bucket, Key=exp.object_key, ContentType="application/x-ndjson",
            ServerSideEncryption=SSE)["UploadId"]
        carry = b""
    else:
        carry = env.storage().get_object(Bucket=bucket, Key=_carry_key(exp, step - 1))["Body"].read() if step else b""
    out = _Writer(env, exp, carry, [p.as_dict() if hasattr(p, "as_dict") else dict(p) for p in exp.parts or []])
    counts = {k: int(v) for k, v in (exp.counts.as_dict() if exp.counts else {}).items()}
    if exp.state == "queued":
        out.add({"type": "export", "exportId": exp.export_id, "tenantId": exp.tenant_id, "from": int(exp.from_ms),
                 "to": int(exp.to_ms), "userIds": list(exp.user_ids or []),
                 "conversationIds": list(exp.conversation_ids or []), "createdAt": int(exp.created_at),
                 "createdBy": exp.created_by, "conversations": len(plan) if listing_done else None})
    position, before, newer_at = int(exp.position or 0), exp.before_seq, exp.newer_at
    pages = 0
    principal = Principal(tenant_id=exp.tenant_id, user_id="", email="")
    while (position < len(plan) or not listing_done) and pages < env.settings.export_pages_per_step \
            and env.clock() - started < STEP_SECONDS:
        if position >= len(plan):  # the next chunk of the listing
            base += len(plan)
            plan, listing_done = _next_chunk(exp, listing, chunk)
            position, listed = 0, listed + len(plan)
            pages += 1
            continue
        conv = Conversation.find(plan[position])
        if conv is None:
            position, before, newer_at = position + 1, None, None
            continue
        if before is None:
            out.add(_conversation_line(conv))
            before = int(conv.last_seq or 0) + 1
            counts["conversations"] = counts.get("conversations", 0) + 1
        cutoff = policy.history_cutoff(principal, conv)
        page = Message.page(conv.conversation_id, before=before, limit=PAGE) if before > 1 else []
        pages += 1
        # What legal holds kept of edits and deletes: 1 Query over the seqs of the page that have some.
        held_seqs = [int(m.seq) for m in page if m.held_versions]
        kept: dict[int, list[HeldOriginal]] = {}
        if held_seqs:
            for o in HeldOriginal.of_messages(conv.conversation_id, min(held_seqs), max(held_seqs)):
                kept.setdefault(int(o.seq), []).append(o)
        file_ids = [m.file.as_dict()["fileId"] for m in page if m.kind == "file" and m.file]
        file_ids += [o.file_id for os_ in kept.values() for o in os_ if o.file_id]
        files = {f.file_id: f for f in File.batch_get(list(dict.fromkeys(file_ids)))}
        finished = len(page) < PAGE
        expected = before - 1  # the next seq down that should exist
        for m in page:
            seq = int(m.seq)
            if int(m.created_at) < int(exp.from_ms) - CLOCK_SKEW_MS:
                finished = True
                break
            in_range = int(exp.from_ms) <= int(m.created_at) <= int(exp.to_ms) \
                and (cutoff is None or int(m.created_at) <= cutoff)
            # Seqs between this message and the next newer one were removed by retention; they were
            # inside the range if both neighbours are.
            if seq < expected and in_range and newer_at is not None and newer_at <= int(exp.to_ms):
                for gone in range(expected, seq, -1):
                    out.add({"type": "tombstone", "conversationId": conv.conversation_id, "seq": gone,
                             "reason": "retention"})
                    counts["tombstones"] = counts.get("tombstones", 0) + 1
            if in_range:
                out.add(_message_line(m, files, kept.get(seq)))
                counts["messages"] = counts.get("messages", 0) + 1
                if m.kind == "file":
                    counts["files"] = counts.get("files", 0) + 1
            expected, newer_at = seq - 1, int(m.created_at)
        if finished or not page:
            position, before, newer_at = position + 1, None, None
        else:
            before = int(page[-1].seq)
    counts["bytes"] = counts.get("bytes", 0) + out.written
    now = env.now_ms()
    done = position >= len(plan) and listing_done
    if done:
        summary = {"type": "summary", **{k: counts.get(k, 0) for k in
                                         ("conversations", "messages", "files", "tombstones")}}
        out.add(summary)
        counts["bytes"] += len(_line(summary))
        out.flush()
        env.storage().complete_multipart_upload(
            Bucket=bucket, Key=exp.object_key, UploadId=exp.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": int(p["n"]), "ETag": p["etag"]} for p in out.parts]})
    else:  # always (also empty): the next step reads it
        env.storage().put_object(Bucket=bucket, Key=_carry_key(exp, step), Body=bytes(out.buf),
                                 ServerSideEncryption=SSE)
    actions = [Export.step.set(step + 1), Export.position.set(position), Export.parts.set(out.parts),
               Export.counts.set(counts), Export.updated_at.set(now), Export.upload_id.set(exp.upload_id),
               Export.plan.set(plan), Export.state.set("done" if done else "running"),
               Export.listing.set(json.dumps(listing, separators=(",", ":"))), Export.listed.set(listed),
               Export.chunk_base.set(base), Export.listing_done.set(listing_done)]
    actions.append(Export.before_seq.set(before) if before is not None else Export.before_seq.remove())
    actions.append(Export.newer_at.set(newer_at) if newer_at is not None else Export.newer_at.remove())
    if done:
        actions.append(Export.finished_at.set(now))
    try:
        exp.update(actions=actions, condition=Export.step == step)
    except UpdateError as exc:
        if condition_failed(exc):
            return "stale"  # a concurrent delivery of this step won
        raise
    if step:
        try:
            env.storage().delete_object(Bucket=bucket, Key=_carry_key(exp, step - 1))
        except ClientError:
            pass  # the exports/ lifecycle rule removes leftovers
    if done:
        log.info("export done", extra={"exportId": exp.export_id, **counts})
        return "done"
    env.schedule.job({"job": "export", "tenantId": exp.tenant_id, "exportId": exp.export_id, "step": step + 1})
    return "continued"
