"""Retention settings and legal holds: what tenant admins set, what the write path reads, and the
sweeps that apply a hold to what was already written.  See docs/compliance.md.

* The write path reads the rule items and tags file objects through
  ``services/holds.py`` (``message_retention``, ``held_now``, ``tag_file``).
* Placing or releasing a hold changes the hold marker item at once (new
  messages follow it) and queues a sweep (SQS, ``compliance_events``) that
  reconciles the messages already written: Query by the sparse
  ``by_retained_sender`` index (user hold) or by the conversation's key
  (conversation hold), paged, one conditional UpdateItem per message.  The
  sweep recomputes the expiry from the markers *now*, so a sweep that runs
  late or twice, or a place and a release racing, end in the same state.
* File objects follow their message: a ``retention`` tag (``<n>d`` or
  ``hold``) that the bucket's lifecycle rules act on (``holds.tag_file``).

Every admin function requires an admin of the caller's own tenant and
writes an audit entry (``audit.require_admin``/``audit.audit``).
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from pynamodb.exceptions import DeleteError, UpdateError

from .. import retention
from ..models import (Conversation, File, HeldOriginal, LegalHold, Message, RetentionRule, User, condition_failed,
                      split_user_key)
from ..protocol.errors import Conflict, NotFound, ValidationFailed
from .audit import audit, key_page, require_admin, require_admin_or_reviewer
from .context import Call, Env
from .holds import REJECTED_TTL_SECONDS, delete_object, legal_hold, object_where, rule_items, tag_file, untag_file

log = logging.getLogger("chat.compliance")

SWEEP_DELAY_SECONDS = 5   # lets sends that read the markers just before the change finish (and GSIs catch up)
SWEEP_PAGE = 100          # items per Query page of a sweep
SWEEP_LEASE_SECONDS = 120  # longer than a step can run (the function's timeout): a dead step's lease lapses
SWEEP_BUSY_DELAY_SECONDS = 2  # a step that finds another step of this hold running comes back after this
SWEEP_PAGES_PER_STEP = 20  # then the step hands on to the next SQS message (Lambda time limit)


# --- the write path ---------------------------------------------------------------------

# --- helpers shared by the admin routes ------------------------------------------------------

def tenant_conversation(call: Call, conversation_id: str) -> Conversation:
    """A conversation the caller's company has (or had) members in; ``not_found`` otherwise (1 GetItem).

    ``Conversation.tenants`` only ever grows, so it also names companies whose members left.
    """
    conv = Conversation.find(conversation_id)
    tenant = call.principal.tenant_id
    if conv is None or (conv.tenant_id != tenant and tenant not in set(conv.tenants or ())):
        raise NotFound("No such conversation.")
    return conv


def _days(body: dict[str, Any]) -> int | None:
    days = body.get("days")
    if days is not None and days not in retention.ALLOWED_DAYS:
        raise ValidationFailed(f"days must be one of {list(retention.ALLOWED_DAYS)} or null (keep forever).",
                               allowedDays=list(retention.ALLOWED_DAYS))
    return days


def _rule(subject: str) -> RetentionRule | None:
    try:
        return RetentionRule.get(subject, consistent_read=True)
    except RetentionRule.DoesNotExist:
        return None


# --- retention settings ------------------------------------------------------------------------

def _retention_view(rule: RetentionRule | None) -> dict[str, Any]:
    return {"days": int(rule.days) if rule is not None and rule.days is not None else None,
            "allowedDays": list(retention.ALLOWED_DAYS),
            "updatedAt": int(rule.updated_at) if rule is not None and rule.updated_at else None,
            "appliesTo": "this company's members' messages and files: new ones at once, those already written"
                         " through the backfill a change starts"}


def get_retention(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    tenant = call.principal.tenant_id
    view = _retention_view(_rule(retention.tenant_subject(tenant)))
    return {"retention": {**view, "backfill": _backfill_view(_rule(backfill_subject(tenant)))}}


def set_retention(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The company's default period (``days`` from the allowed list, or null = keep forever)."""
    require_admin(call)
    days = _days(body)
    subject = retention.tenant_subject(call.principal.tenant_id)
    before = _retention_view(_rule(subject))["days"]
    rule = RetentionRule(subject=subject, days=days, updated_at=call.now_ms(), updated_by=call.principal.user_id)
    rule.save()
    audit(call, "retention.set", call.principal.tenant_id, before={"days": before}, after={"days": days})
    view = _retention_view(rule)
    if days != before:  # what was already written follows the change (a backfill on the compliance queue)
        start_backfill(call, None)
    return {"retention": {**view, "backfill": _backfill_view(_rule(backfill_subject(call.principal.tenant_id)))}}


def set_conversation_retention(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """This company's override for one conversation (its own members' messages only); ``inherit`` removes it."""
    require_admin(call)
    conv = tenant_conversation(call, body["conversationId"])
    subject = retention.override_subject(call.principal.tenant_id, conv.conversation_id)
    old = _rule(subject)
    before = {"override": old is not None, "days": int(old.days) if old is not None and old.days is not None else None}
    if body.get("inherit"):
        if old is not None:
            old.delete()
        after: dict[str, Any] = {"override": False, "days": None}
    else:  # the schema requires days unless inherit is true
        days = _days(body)
        RetentionRule(subject=subject, days=days, updated_at=call.now_ms(),
                      updated_by=call.principal.user_id).save()
        after = {"override": True, "days": days}
    audit(call, "retention.conversation", conv.conversation_id, before=before, after=after)
    if before != after:
        start_backfill(call, conv.conversation_id)
    return {"conversationId": conv.conversation_id, **after, "allowedDays": list(retention.ALLOWED_DAYS)}


# --- legal holds ---------------------------------------------------------------------------

def _hold_view(h: LegalHold) -> dict[str, Any]:
    view: dict[str, Any] = {"holdId": h.hold_id, "kind": h.kind, "name": h.name, "state": h.state,
                            "createdAt": int(h.created_at), "createdBy": h.created_by,
                            "releasedAt": int(h.released_at) if h.released_at else None,
                            "releasedBy": h.released_by, "sweep": h.sweep, "swept": int(h.swept or 0)}
    view["userId" if h.kind == "user" else "conversationId"] = h.target
    return view


def _marker(h: LegalHold) -> str:
    if h.kind == "user":
        return retention.user_hold_subject(h.tenant_id, h.target)
    return retention.conversation_hold_subject(h.tenant_id, h.target)


def _schedule_sweep(call: Call, h: LegalHold, gen: str, delay: int = SWEEP_DELAY_SECONDS) -> None:
    call.schedule.job({"job": "hold.sweep", "tenantId": h.tenant_id, "holdId": h.hold_id, "gen": gen}, delay)


def place_hold(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Hold a user (the messages they send) or a conversation (this company's members' messages in it)."""
    require_admin(call)
    tenant = call.principal.tenant_id
    kind = body["kind"]
    if kind == "user":  # the schema requires userId or conversationId by kind
        user = User.find(tenant, body["userId"])
        if user is None:
            raise NotFound("No such user.")
        target = user.user_id
    else:
        target = tenant_conversation(call, body["conversationId"]).conversation_id
    now = call.now_ms()
    hold = LegalHold(tenant_id=tenant, hold_id=f"{now:013d}-{uuid.uuid4().hex[:12]}", kind=kind, target=target,
                     name=body.get("name"), state="active", created_at=now, created_by=call.principal.user_id,
                     sweep="pending", swept=0, sweep_gen=uuid.uuid4().hex[:12])
    hold.save(condition=LegalHold.hold_id.does_not_exist())
    # From here on, new messages it covers are written without expiry.
    RetentionRule(subject=_marker(hold)).update(actions=[RetentionRule.holds.add({hold.hold_id}),
                                                         RetentionRule.updated_at.set(now)])
    audit(call, "hold.place", hold.hold_id, after={"kind": kind, "target": target, "name": hold.name})
    _schedule_sweep(call, hold, hold.sweep_gen)
    return {"hold": _hold_view(hold)}


def list_holds(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Query the company's holds, oldest first: 1 request per page."""
    require_admin(call)
    holds, nxt = key_page(LegalHold, call.principal.tenant_id, LegalHold.hold_id, body, 50)
    return {"holds": [_hold_view(h) for h in holds], "nextCursor": nxt}


def release_hold(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """End a hold: what it alone kept gets its expiry back (a sweep), and may then expire at once."""
    require_admin(call)
    try:
        hold = LegalHold.get(call.principal.tenant_id, body["holdId"], consistent_read=True)
    except LegalHold.DoesNotExist:
        raise NotFound("No such hold.") from None
    if hold.state != "active":
        raise Conflict("The hold was already released.")
    now = call.now_ms()
    gen = uuid.uuid4().hex[:12]
    try:
        hold.update(actions=[LegalHold.state.set("released"), LegalHold.released_at.set(now),
                             LegalHold.released_by.set(call.principal.user_id), LegalHold.sweep.set("pending"),
                             LegalHold.swept.set(0), LegalHold.sweep_gen.set(gen)],
                    condition=LegalHold.state == "active")
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The hold was already released.") from None
        raise
    RetentionRule(subject=_marker(hold)).update(actions=[RetentionRule.holds.delete({hold.hold_id}),
                                                         RetentionRule.updated_at.set(now)])
    audit(call, "hold.release", hold.hold_id, before={"state": "active"}, after={"state": "released"})
    _schedule_sweep(call, hold, gen)
    return {"hold": _hold_view(hold)}


# --- what a hold keeps: the compliance download of a file ------------------------------------

def download_file(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """A presigned GET of a file one of the company's members uploaded: a clean file, or one whose
    message was deleted while a legal hold covered it (kept for the hold), for the company's admins
    and reviewers.  1 GetItem; audited."""
    require_admin_or_reviewer(call)
    rec = File.find(body["fileId"], consistent=True)
    if rec is None or rec.tenant_id != call.principal.tenant_id \
            or not (rec.status == "clean" or (rec.status == "deleted" and rec.held_at is not None)):
        raise NotFound("No such file.")
    from .files import _disposition, file_view

    seconds = call.settings.download_url_seconds
    url = call.storage().generate_presigned_url("get_object", ExpiresIn=seconds, Params={
        **object_where(call, rec), "ResponseContentDisposition": _disposition(rec.name),
        "ResponseContentType": rec.content_type})
    held = rec.held_at is not None
    audit(call, "file.download", rec.file_id, after={"conversationId": rec.conversation_id, "status": rec.status,
                                                     "held": held})
    return {"file": {**file_view(rec), "versionId": rec.version_id, "held": held,
                     "heldAt": int(rec.held_at) if held else None},
            "download": {"url": url, "expiresAt": call.now_ms() + seconds * 1000}}


# --- the sweep (SQS; compliance_events) -----------------------------------------------------------

class _Markers:
    """Which (sender, conversation) pairs a hold covers now: rule items read in batches, cached per step."""

    def __init__(self) -> None:
        self._held: dict[str, bool] = {}

    def load(self, subjects: list[str]) -> None:
        missing = [s for s in dict.fromkeys(subjects) if s not in self._held]
        found = rule_items(missing) if missing else {}
        for s in missing:
            self._held[s] = bool(found.get(s) is not None and found[s].holds)

    def held(self, sender_key: str, conversation_id: str) -> bool:
        tenant, user = split_user_key(sender_key)
        subjects = [retention.user_hold_subject(tenant, user),
                    retention.conversation_hold_subject(tenant, conversation_id)]
        self.load(subjects)
        return any(self._held[s] for s in subjects)


def _reconcile(env: Env, msg: Message, markers: _Markers) -> bool:
    """Set or remove one message's expiry as the holds now say (conditional: never recreates an
    expired item).  True if the message still existed."""
    if msg.retain_s is None or not msg.retained_sender:
        return False
    if markers.held(msg.retained_sender, msg.conversation_id):
        action = Message.expires_at.remove()
    else:
        action = Message.expires_at.set(retention.expiry(int(msg.created_at), int(msg.retain_s)))
    try:
        msg.update(actions=[action], condition=Message.seq.exists())  # ALL_NEW: the whole item comes back
    except UpdateError as exc:
        if condition_failed(exc):
            return False  # retention removed it meanwhile
        raise
    tag_file(env, msg, sweep=True)
    return True


def _reconcile_original(env: Env, orig: HeldOriginal, markers: _Markers, now_ms: int) -> bool:
    """Keep or release one kept original as the holds now say.  Held: no expiry (and its deleted file's
    version under S3 legal hold).  Not held: the message's expiry (``created_at + retain_s``), or - for a
    company without retention, where nothing would have been kept - removed now, with its file version.
    True if it still existed."""
    held = markers.held(orig.sender_key, orig.conversation_id)
    key = HeldOriginal(conversation_id=orig.conversation_id, version=orig.version)
    if held:
        actions = [HeldOriginal.expires_at.remove()]
    elif orig.retain_s is not None:
        actions = [HeldOriginal.expires_at.set(retention.expiry(int(orig.created_at), int(orig.retain_s)))]
    else:
        actions = []
    if orig.file_id:
        _reconcile_held_file(env, orig, held, now_ms)
    try:
        if actions:
            key.update(actions=actions, condition=HeldOriginal.version.exists())
        else:
            key.delete(condition=HeldOriginal.version.exists())
    except (UpdateError, DeleteError) as exc:
        if condition_failed(exc):
            return False  # its TTL removed it meanwhile
        raise
    return True


def _reconcile_held_file(env: Env, orig: HeldOriginal, held: bool, now_ms: int) -> None:
    """The object version of a file message deleted while held: legal hold ON while a hold covers it;
    after the last one, OFF and then the normal course: the retention tag (lifecycle expires it with
    its message) or, without retention, deleted as the delete would have done."""
    rec = File.find(orig.file_id or "", consistent=True)
    if rec is None or rec.status != "deleted" or rec.held_at is None:
        return
    if held:
        legal_hold(env, rec, True)
        rec.update(actions=[File.expires_at.remove()])
        return
    legal_hold(env, rec, False)
    if orig.retain_s is not None:
        tag = retention.file_tag(int(orig.retain_s), False, env.settings.retention_day_seconds)
        env.storage().put_object_tagging(**object_where(env, rec),
                                         Tagging={"TagSet": [{"Key": retention.TAG_KEY, "Value": tag}]})
        rec.update(actions=[File.expires_at.set(retention.expiry(int(orig.created_at), int(orig.retain_s)))])
    else:
        delete_object(env.storage(), env.settings.files_bucket, rec.object_key, rec.version_id)
        rec.update(actions=[File.held_at.remove(), File.expires_at.set(now_ms // 1000 + REJECTED_TTL_SECONDS)])


def _take_lease(item: Any, token: str, now_s: int, extra: Any = None) -> bool:
    """``item``'s step lease (1 conditional UpdateItem on its ``lease``/``lease_until``): at most one step
    of its sweep runs at a time; ``extra`` adds to the condition (e.g. that ``token`` is still current)."""
    cls = type(item)
    free = cls.lease_until.does_not_exist() | (cls.lease_until < now_s) | (cls.lease == token)
    try:
        item.update(actions=[cls.lease.set(token), cls.lease_until.set(now_s + SWEEP_LEASE_SECONDS)],
                    condition=free if extra is None else extra & free)
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _drop_lease(item: Any, token: str) -> None:
    cls = type(item)
    try:
        item.update(actions=[cls.lease.remove(), cls.lease_until.remove()], condition=cls.lease == token)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def sweep_step(env: Env, job: dict[str, Any]) -> str:
    """One step of a hold's sweep: up to SWEEP_PAGES_PER_STEP pages, then hand on (the next job).

    Placing and releasing a hold each start a sweep (``gen``).  The sweeps of one
    hold must not interleave (a late step of the placing sweep would turn a
    released file's legal hold back ON): a step of an older sweep stops, and a
    step runs only under the hold's lease, else it comes back a little later.
    """
    try:
        hold = LegalHold.get(job["tenantId"], job["holdId"], consistent_read=True)
    except LegalHold.DoesNotExist:
        return "gone"
    gen = job.get("gen") or hold.sweep_gen or "legacy"
    if hold.sweep_gen and gen != hold.sweep_gen:
        return "superseded"
    if not _take_lease(hold, gen, int(time.time())):
        env.schedule.job(job, SWEEP_BUSY_DELAY_SECONDS)
        return "busy"
    try:
        if hold.sweep_gen and gen != hold.sweep_gen:  # a new sweep began while we took the lease
            return "superseded"
        return _sweep_pages(env, hold, job, gen)
    finally:
        _drop_lease(hold, gen)


def _sweep_pages(env: Env, hold: LegalHold, job: dict[str, Any], gen: str) -> str:
    tenant = hold.tenant_id
    cursor = job.get("cursor")
    # Two phases: the messages (their expiry), then the originals a hold kept of edits and deletes.
    phase = job.get("phase") or "messages"
    markers = _Markers()
    touched = 0
    now_ms = int(time.time() * 1000)
    for _ in range(SWEEP_PAGES_PER_STEP):
        if phase == "messages" and hold.kind == "user":
            # The index holds keys, created_at and retain_s: enough to recompute the expiry.
            page = Message.by_retained_sender.query(f"{tenant}#{hold.target}", limit=SWEEP_PAGE,
                                                    last_evaluated_key=cursor)
        elif phase == "messages":
            page = Message.query(hold.target, filter_condition=Message.retained_sender.startswith(f"{tenant}#"),
                                 limit=SWEEP_PAGE, last_evaluated_key=cursor)
        elif hold.kind == "user":
            # by_sender projects what _reconcile_original needs (keys, seq, created_at, retain_s, kind, file_id)
            page = HeldOriginal.by_sender.query(f"{tenant}#{hold.target}", limit=SWEEP_PAGE,
                                                last_evaluated_key=cursor)
        else:
            page = HeldOriginal.query(hold.target, filter_condition=HeldOriginal.tenant_id == tenant,
                                      limit=SWEEP_PAGE, last_evaluated_key=cursor)
        items = list(page)
        cursor = page.last_evaluated_key
        for item in items:
            touched += int(_reconcile(env, item, markers) if phase == "messages"
                           else _reconcile_original(env, item, markers, now_ms))
        if not cursor:
            if phase == "messages":
                phase = "originals"
                continue
            break
    finished = phase == "originals" and not cursor
    # Only the current sweep may say "done": a step of an older one that was already running when the
    # hold was released must not mark the release's sweep done before it ran.
    current = (LegalHold.sweep_gen == gen) if hold.sweep_gen else None
    try:
        hold.update(actions=[LegalHold.swept.add(touched)] + ([LegalHold.sweep.set("done")] if finished else []),
                    condition=current)
    except UpdateError as exc:
        if condition_failed(exc):
            return "superseded"
        raise
    if not finished:
        env.schedule.job({**job, "phase": phase, "cursor": cursor})
        return "continued"
    log.info("hold sweep done", extra={"holdId": hold.hold_id, "state": hold.state, "swept": int(hold.swept or 0)})
    return "done"


# --- the retention backfill (SQS; compliance_events) -------------------------------------------
#
# A change of the company's default period or of a conversation override recomputes the expiry of the
# messages already written by the company's members (and their files).  One backfill per company, its
# state on the ``backfill#<tenant>`` item; a newer change starts a new generation (``bf_gen``) that
# supersedes the running one (its scope widened to cover both), steps run under the item's lease.

BACKFILL_PAGE = 100       # items per Query page
BACKFILL_PAGES_PER_STEP = 20


def backfill_subject(tenant: str) -> str:
    return f"backfill#{tenant}"


def _backfill_view(item: RetentionRule | None) -> dict[str, Any] | None:
    if item is None or not item.bf_state:
        return None
    return {"state": item.bf_state, "processed": int(item.bf_processed or 0),
            "startedAt": int(item.bf_started_at or 0),
            "finishedAt": int(item.bf_finished_at) if item.bf_finished_at else None,
            "conversationIds": sorted(item.bf_scope) if item.bf_scope else None}


def start_backfill(call: Call, conversation_id: str | None, delay: int = SWEEP_DELAY_SECONDS) -> str:
    """Start (or widen and restart) the company's backfill; returns its generation.

    Scope: ``conversation_id`` (an override changed) or every conversation (the default changed).
    A backfill still running keeps its scope in the new one, so superseding it loses nothing.
    """
    tenant, now_ms = call.principal.tenant_id, call.now_ms()
    current = _rule(backfill_subject(tenant))
    running = current is not None and current.bf_state == "running"
    if conversation_id is None or (running and not current.bf_scope):
        scope: set[str] | None = None
    else:
        scope = {conversation_id} | (set(current.bf_scope or ()) if running else set())
    gen = uuid.uuid4().hex[:12]
    actions = [RetentionRule.bf_gen.set(gen), RetentionRule.bf_state.set("running"),
               RetentionRule.bf_processed.set(0), RetentionRule.bf_started_at.set(now_ms),
               RetentionRule.bf_finished_at.remove()]
    actions.append(RetentionRule.bf_scope.set(scope) if scope else RetentionRule.bf_scope.remove())
    RetentionRule(subject=backfill_subject(tenant)).update(actions=actions)
    call.schedule.job({"job": "retention.backfill", "tenantId": tenant, "gen": gen}, delay)
    return gen


class _Rules:
    """The rule items messages depend on (default, override, holds), read in batches, cached per step."""

    def __init__(self, day_seconds: int) -> None:
        self._day_seconds = day_seconds
        self._found: dict[str, RetentionRule | None] = {}

    def decision(self, sender_key: str, conversation_id: str) -> retention.Decision:
        subjects = retention.subjects_for(sender_key, conversation_id)
        missing = [s for s in subjects if s not in self._found]
        if missing:
            got = rule_items(missing)
            for s in missing:
                self._found[s] = got.get(s)
        return retention.decide({s: r for s in subjects if (r := self._found[s]) is not None}, sender_key,
                                conversation_id, self._day_seconds)


def _recompute(env: Env, msg: Message, rules: _Rules) -> bool:
    """One message's retention as the rules say now (holds win).  True if it changed."""
    decision = rules.decision(msg.sender_key, msg.conversation_id)
    expires = decision.expires_at(int(msg.created_at))
    old = (int(msg.retain_s) if msg.retain_s is not None else None,
           int(msg.expires_at) if msg.expires_at is not None else None)
    if old == (decision.retain_s, expires):
        if msg.kind == "file":  # a retried step whose message update went through: its file still follows
            if decision.retain_s is None:
                untag_file(env, msg)
            else:
                tag_file(env, msg, sweep=True)
        return False
    if decision.retain_s is None:
        actions = [Message.retain_s.remove(), Message.retained_sender.remove(), Message.expires_at.remove()]
    else:
        actions = [Message.retain_s.set(decision.retain_s), Message.retained_sender.set(msg.sender_key),
                   Message.expires_at.set(expires) if expires is not None else Message.expires_at.remove()]
    try:
        msg.update(actions=actions, condition=Message.seq.exists())  # ALL_NEW: the whole item comes back
    except UpdateError as exc:
        if condition_failed(exc):
            return False  # retention removed it meanwhile
        raise
    if decision.retain_s is None:
        untag_file(env, msg)
    else:
        tag_file(env, msg, sweep=True)
    return True


def _owner(conversation_id: str, tenant: str) -> str | None:
    """The first (by user id) of the company's current members of the conversation: 1 Query, 1 item.
    A company-wide backfill visits each conversation from that member only (no state to dedupe)."""
    from ..models import Member

    for m in Member.query(conversation_id, Member.user_key.startswith(f"{tenant}#"), limit=1):
        return m.user_key
    return None


def backfill_step(env: Env, job: dict[str, Any]) -> str:
    """One step: up to BACKFILL_PAGES_PER_STEP Query pages, then hand on with the cursor in the job."""
    tenant, gen = job["tenantId"], job.get("gen")
    item = _rule(backfill_subject(tenant))
    if item is None or item.bf_gen != gen or item.bf_state != "running":
        return "superseded"
    if not _take_lease(item, gen, int(time.time()), RetentionRule.bf_gen == gen):
        now_item = _rule(backfill_subject(tenant))
        if now_item is not None and now_item.bf_gen == gen:  # another step of this backfill holds the lease
            env.schedule.job(job, SWEEP_BUSY_DELAY_SECONDS)
            return "busy"
        return "superseded"
    try:
        return _backfill_pages(env, item, job)
    finally:
        _drop_lease(item, gen)


def _backfill_pages(env: Env, item: RetentionRule, job: dict[str, Any]) -> str:
    from ..models import Member, user_key

    tenant = job["tenantId"]
    # Cursor: conversations still to do from the current source ("convs", the head being read from
    # "mc"), and for a company-wide backfill the user being listed ("user", memberships from "uc")
    # and the users' Query position ("users", from "ucur").
    state = {k: job.get(k) for k in ("convs", "mc", "users", "ucur", "user", "uc", "started")}
    scoped = bool(item.bf_scope)
    if not state["started"]:
        state["started"] = True
        state["convs"] = sorted(item.bf_scope) if scoped else []
        state["users"] = []
    rules = _Rules(env.settings.retention_day_seconds)
    changed = pages = 0
    done = False
    while pages < BACKFILL_PAGES_PER_STEP:
        convs = state["convs"] or []
        if convs:
            conv = convs[0]
            if not scoped and not state["mc"] and _owner(conv, tenant) != user_key(tenant, state["user"]):
                state["convs"] = convs[1:]
                pages += 1
                continue
            page = Message.query(conv, filter_condition=Message.sender_key.startswith(f"{tenant}#"),
                                 limit=BACKFILL_PAGE, last_evaluated_key=state["mc"])
            for msg in page:
                changed += int(_recompute(env, msg, rules))
            pages += 1
            state["mc"] = page.last_evaluated_key
            if not state["mc"]:
                state["convs"] = convs[1:]
            continue
        if scoped:
            done = True
            break
        if state["user"] and (state["uc"] or state["uc"] is None):
            got = Member.by_user.query(user_key(tenant, state["user"]), limit=BACKFILL_PAGE,
                                       last_evaluated_key=state["uc"] or None)
            state["convs"] = [m.conversation_id for m in got]
            pages += 1
            state["uc"] = got.last_evaluated_key or ""
            continue
        users = state["users"] or []
        if users:
            state["user"], state["users"], state["uc"] = users[0], users[1:], None
            continue
        if state["ucur"] == "":
            done = True
            break
        got_users = User.query(tenant, attributes_to_get=["tenant_id", "user_id"], limit=BACKFILL_PAGE,
                               last_evaluated_key=state["ucur"] or None)
        state["users"] = [u.user_id for u in got_users]
        state["ucur"] = got_users.last_evaluated_key or ""
        state["user"] = None
        pages += 1
    actions = [RetentionRule.bf_processed.add(changed)]
    if done:
        actions += [RetentionRule.bf_state.set("done"), RetentionRule.bf_finished_at.set(int(time.time() * 1000))]
    try:
        item.update(actions=actions, condition=RetentionRule.bf_gen == job.get("gen"))
    except UpdateError as exc:
        if condition_failed(exc):
            return "superseded"
        raise
    if done:
        log.info("retention backfill done", extra={"tenantId": tenant, "processed": int(item.bf_processed or 0)})
        return "done"
    env.schedule.job({**job, **state})
    return "continued"
