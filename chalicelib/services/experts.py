"""Ask the experts (issue #20, docs/experts.md): a question to a pool of specialists, claimed by one.

Admins of a company define *topics*: named users and/or directory groups,
in up to ``MAX_TIERS`` tiers, a wave size and a timeout.  A member asks on a
topic (``expert.ask`` / ``POST /experts/questions``) without ever seeing
who is in the pool.  The question is offered to a *wave* of the current
tier's members, chosen by presence now (available, then away, then busy;
do-not-disturb and in-a-meeting only once the tier has nobody else; offline
experts never: nothing would reach them), as ``expert.question.offered``.
A delayed compliance-queue job (``{"job": "expert.escalate"}``) offers the
next wave, then the next tier, if nobody accepted within the timeout; when
everyone was offered the asker hears ``expert.question.unanswered`` and the
question waits, open, in the topic's queue (still acceptable by those it
was offered to).  The first ``expert.accept`` wins by a conditional
UpdateItem; the others hear ``expert.question.taken``, the asker
``expert.question.accepted``, and a group conversation of the two is
created by the conversations service (screening, retention, holds apply).
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable

from pynamodb.exceptions import UpdateError

from ..models import DirectoryGroup, ExpertItem, Presence, User, condition_failed, user_key
from ..protocol.errors import Conflict, Forbidden, NotFound, ValidationFailed
from . import events, presence as presence_service
from .audit import audit, require_admin
from .context import Call

log = logging.getLogger("chat.experts")

MAX_TIERS = 3
MAX_TOPICS = 100           # per company (one Query lists them)
MAX_POOL = 200             # people per tier once groups are expanded
# Offer order by presence now; ranks above LAST_RESORT are offered only when the tier has nobody else.
RANK = {"available": 0, "away": 1, "busy": 2, "do_not_disturb": 3, "in_meeting": 3}
LAST_RESORT = 2

Schedule = Callable[[dict[str, Any], int], None]


# --- topics (admins) -----------------------------------------------------------------------

def _topic_view(t: ExpertItem) -> dict[str, Any]:
    return {"topicId": t.item_id[2:], "name": t.name, "tiers": json.loads(t.tiers or "[]"),
            "waveSize": int(t.wave_size or 1), "timeoutSeconds": int(t.timeout_seconds or 0),
            "createdAt": int(t.created_at or 0), "updatedAt": int(t.updated_at or 0)}


def _tiers(call: Call, body: dict[str, Any]) -> list[dict[str, list[str]]]:
    """The body's tiers (or its top-level users/groups as one tier), every id checked against the
    caller's company: an unknown id is ``not_found`` (another company's id is simply unknown)."""
    tiers = body.get("tiers")
    if tiers is None:
        tiers = [{"users": body.get("users") or [], "groups": body.get("groups") or []}]
    elif body.get("users") or body.get("groups"):
        raise ValidationFailed("Give either tiers or users/groups, not both.")
    tenant = call.principal.tenant_id
    out = []
    for tier in tiers:
        users = list(dict.fromkeys(tier.get("users") or []))
        groups = list(dict.fromkeys(tier.get("groups") or []))
        if not users and not groups:
            raise ValidationFailed("Every tier names at least one user or directory group.")
        found = {u.user_id for u in User.batch_get([(tenant, uid) for uid in users])} if users else set()
        missing = [uid for uid in users if uid not in found]
        if missing:
            raise NotFound("No such user in your company.", userIds=missing[:10])
        for gid in groups:
            if DirectoryGroup.find(tenant, gid) is None:
                raise NotFound("No such directory group in your company.", groupId=gid)
        out.append({"users": users, "groups": groups})
    return out


def create_topic(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """POST /admin/experts/topics (admins; audited)."""
    require_admin(call)
    tenant = call.principal.tenant_id
    if len(ExpertItem.topics(tenant, MAX_TOPICS + 1)) >= MAX_TOPICS:
        raise ValidationFailed(f"A company has at most {MAX_TOPICS} expert topics.", limit=MAX_TOPICS)
    tiers = _tiers(call, body)
    now = call.now_ms()
    topic_id = "et-" + uuid.uuid4().hex[:16]
    item = ExpertItem(tenant_id=tenant, item_id=ExpertItem.topic_key(topic_id), name=body["name"],
                      tiers=json.dumps(tiers), wave_size=int(body.get("waveSize") or 3),
                      timeout_seconds=int(body.get("timeoutSeconds") or 120), created_by=call.principal.user_id,
                      created_at=now, updated_at=now)
    item.save(condition=ExpertItem.item_id.does_not_exist())
    view = _topic_view(item)
    audit(call, "experts.topic.create", topic_id, after=view)
    return {"topic": view}


def list_topics(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """GET /admin/experts/topics (admins): 1 Query."""
    require_admin(call)
    return {"topics": [_topic_view(t) for t in ExpertItem.topics(call.principal.tenant_id, MAX_TOPICS)]}


def _topic(tenant: str, topic_id: str) -> ExpertItem:
    item = ExpertItem.find(tenant, ExpertItem.topic_key(topic_id))
    if item is None:
        raise NotFound("No such expert topic.")
    return item


def update_topic(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """PUT /admin/experts/topics/{topicId} (admins; audited): replaces what the body gives."""
    require_admin(call)
    item = _topic(call.principal.tenant_id, body["topicId"])
    before = _topic_view(item)
    if "name" in body:
        item.name = body["name"]
    if "tiers" in body or "users" in body or "groups" in body:
        item.tiers = json.dumps(_tiers(call, body))
    if "waveSize" in body:
        item.wave_size = int(body["waveSize"])
    if "timeoutSeconds" in body:
        item.timeout_seconds = int(body["timeoutSeconds"])
    item.updated_at = call.now_ms()
    item.save(condition=ExpertItem.item_id.exists())
    view = _topic_view(item)
    audit(call, "experts.topic.update", body["topicId"], before=before, after=view)
    return {"topic": view}


def delete_topic(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """DELETE /admin/experts/topics/{topicId} (admins; audited).  Questions already asked keep
    their state; their escalation stops at the next step (the topic is gone)."""
    require_admin(call)
    item = _topic(call.principal.tenant_id, body["topicId"])
    before = _topic_view(item)
    item.delete(condition=ExpertItem.item_id.exists())
    audit(call, "experts.topic.delete", body["topicId"], before=before)
    return {"topicId": body["topicId"], "deleted": True}


# --- the pool --------------------------------------------------------------------------------

def _members(tenant: str, tier: dict[str, list[str]]) -> list[str]:
    """A tier's people: named users plus the members of its groups now (1 GetItem per group)."""
    ids = list(tier.get("users") or [])
    for gid in tier.get("groups") or []:
        group = DirectoryGroup.find(tenant, gid)
        if group is not None:
            ids.extend(sorted(group.members or ()))
    return list(dict.fromkeys(ids))[:MAX_POOL]


def next_wave(tenant: str, tier: dict[str, list[str]], wave_size: int, skip: set[str], now_ms: int,
              idle_ms: int) -> list[str]:
    """Up to ``wave_size`` active members of the tier not in ``skip``, best presence first; [] when the
    tier is exhausted.  1 GetItem per group, 1 BatchGetItem of the users, 1 of their presence."""
    ids = [uid for uid in _members(tenant, tier) if uid not in skip]
    if not ids:
        return []
    active = {u.user_id for u in User.batch_get([(tenant, uid) for uid in ids]) if u.active}
    ids = [uid for uid in ids if uid in active]
    items = Presence.many([user_key(tenant, uid) for uid in ids])
    return pick_wave([(uid, presence_service.state(items.get(user_key(tenant, uid)), now_ms, idle_ms)["status"])
                      for uid in ids], wave_size)


def pick_wave(candidates: list[tuple[str, str]], wave_size: int) -> list[str]:
    """(user id, presence status) in the tier's order -> the wave (pure): available, away, busy first;
    do-not-disturb / in-a-meeting only when none of those is left; offline never."""
    ranked = sorted((RANK[status], pos, uid) for pos, (uid, status) in enumerate(candidates) if status in RANK)
    first = [r for r in ranked if r[0] <= LAST_RESORT] or ranked
    return [uid for _, _, uid in first[:wave_size]]


# --- questions --------------------------------------------------------------------------------

def _question_view(q: ExpertItem, topic_name: str | None = None) -> dict[str, Any]:
    return {"questionId": q.item_id[2:], "topicId": q.topic_id, "topicName": topic_name, "text": q.text,
            "state": q.state, "waiting": bool(q.exhausted), "createdAt": int(q.created_at or 0),
            "conversationId": q.conversation_id}


def _find_question(tenant: str, question_id: str) -> ExpertItem:
    q = ExpertItem.find(tenant, ExpertItem.question_key(question_id))
    if q is None:
        raise NotFound("No such question.")
    return q


def ask(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.ask / POST /experts/questions: any member of the company (not a guest) asks on a topic."""
    p = call.principal
    if p.roles == ("guest",):
        raise Forbidden("Guests cannot ask the company's experts.")
    topic = _topic(p.tenant_id, body["topicId"])
    me = User.find(p.tenant_id, p.user_id)
    if me is None or not me.active:
        raise NotFound("No such user.")
    from . import screening  # under the company's DLP rules, as a custom status is

    verdict = screening.screen_own(call, body["text"], "expert.question")
    text = verdict.text
    now = call.now_ms()
    topic_id = topic.item_id[2:]
    question_id = f"{topic_id}.{now:013d}.{uuid.uuid4().hex[:12]}"
    q = ExpertItem(tenant_id=p.tenant_id, item_id=ExpertItem.question_key(question_id), topic_id=topic_id,
                   asker=p.user_id, text=text, state="open", exhausted=False, tier=0, wave=0,
                   created_at=now, updated_at=now)
    q.save(condition=ExpertItem.item_id.does_not_exist())
    screening.record_flags(call, verdict, None, "expert.question")  # a flag rule's hit, for the reviewers
    assert call.schedule is not None, "expert.ask needs the compliance queue's scheduler"
    _offer(call.delivery, q, topic, now, call.settings.presence_idle_seconds * 1000, call.schedule)
    return {"question": _question_view(q, topic.name)}


def _offer(out: Any, q: ExpertItem, topic: ExpertItem | None, now: int, idle_ms: int, schedule: Schedule) -> str:
    """Offer the question's next wave (moving on through the tiers), then schedule the escalation; or,
    when nobody is left, mark it waiting and tell the asker (events on a delivery worker: the ack, or
    the queue step, never waits for posts; neither REST nor the compliance job posts to sockets).
    One conditional UpdateItem on the
    question (``wave`` must still be what we read: a duplicate job step does nothing)."""
    tenant = q.tenant_id
    wave = int(q.wave or 0)
    tiers = json.loads(topic.tiers or "[]") if topic is not None else []
    tier_no = int(q.tier or 0)
    offered = set(q.offered or ())
    chosen: list[str] = []
    while tier_no < len(tiers):
        chosen = next_wave(tenant, tiers[tier_no], int(topic.wave_size or 1), offered | {q.asker}, now, idle_ms)
        if chosen:
            break
        tier_no += 1
    asker_key = user_key(tenant, q.asker)
    same_step = (ExpertItem.wave == wave) & (ExpertItem.state == "open")
    if not chosen:
        try:
            q.update(actions=[ExpertItem.exhausted.set(True), ExpertItem.wave.set(wave + 1),
                              ExpertItem.tier.set(tier_no), ExpertItem.updated_at.set(now)], condition=same_step)
        except UpdateError as exc:
            if condition_failed(exc):
                return "stale"
            raise
        events.to_users(out, [asker_key], {"type": "expert.question.unanswered", "questionId": q.item_id[2:],
                                           "topicId": q.topic_id}, origin=asker_key, now_ms=now, on_worker=True)
        return "exhausted"
    try:
        q.update(actions=[ExpertItem.offered.add(set(chosen)), ExpertItem.wave.set(wave + 1),
                          ExpertItem.tier.set(tier_no), ExpertItem.updated_at.set(now)], condition=same_step)
    except UpdateError as exc:
        if condition_failed(exc):
            return "stale"
        raise
    asker = User.find(tenant, q.asker)
    frame = {"type": "expert.question.offered", "questionId": q.item_id[2:], "topicId": q.topic_id,
             "topicName": topic.name, "text": q.text, "askedBy": asker.display_name if asker else None,
             "askedAt": int(q.created_at or 0)}
    events.to_users(out, [user_key(tenant, uid) for uid in chosen], frame, origin=asker_key, now_ms=now,
                    on_worker=True)
    schedule({"job": "expert.escalate", "tenantId": tenant, "questionId": q.item_id[2:], "wave": wave + 1},
             int(topic.timeout_seconds or 120))
    return "offered"


def escalate(out: Any, job: dict[str, Any], now_ms: int, idle_ms: int, schedule: Schedule) -> str:
    """The compliance queue's ``expert.escalate`` step: nobody accepted wave ``job["wave"]`` in time."""
    q = ExpertItem.find(job["tenantId"], ExpertItem.question_key(job["questionId"]))
    if q is None or q.state != "open" or int(q.wave or 0) != int(job.get("wave") or 0):
        return "stale"
    topic = ExpertItem.find(q.tenant_id, ExpertItem.topic_key(q.topic_id))
    return _offer(out, q, topic, now_ms, idle_ms, schedule)


def accept(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.accept: the first expert it was offered to wins (conditional UpdateItem)."""
    p = call.principal
    q = _find_question(p.tenant_id, body["questionId"])
    if p.user_id not in (q.offered or ()):
        raise NotFound("No such question.")  # not offered to the caller: not the caller's to see
    if q.state != "open":
        raise Conflict("Another expert already took the question.", state=q.state)
    now = call.now_ms()
    try:
        q.update(actions=[ExpertItem.state.set("accepted"), ExpertItem.accepted_by.set(p.user_id),
                          ExpertItem.accepted_at.set(now), ExpertItem.updated_at.set(now)],
                 condition=(ExpertItem.state == "open") & ExpertItem.accepted_by.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("Another expert already took the question.", state="accepted") from None
        raise
    topic = ExpertItem.find(p.tenant_id, ExpertItem.topic_key(q.topic_id))
    topic_name = topic.name if topic is not None else "Experts"
    from . import conversations

    try:
        created = conversations.create(call, {"kind": "group", "members": [q.asker], "name": topic_name[:80],
                                              "topic": f"Ask the experts: {topic_name}"[:250]})
    except Exception:
        # give the question back (only this accept's own write is undone)
        q.update(actions=[ExpertItem.state.set("open"), ExpertItem.accepted_by.remove(),
                          ExpertItem.accepted_at.remove()],
                 condition=(ExpertItem.state == "accepted") & (ExpertItem.accepted_by == p.user_id))
        raise
    conv_id = created["conversation"]["conversationId"]
    q.update(actions=[ExpertItem.conversation_id.set(conv_id)])
    me = User.find(p.tenant_id, p.user_id)
    asker_key, my_key = user_key(p.tenant_id, q.asker), user_key(p.tenant_id, p.user_id)
    qid = q.item_id[2:]
    events.to_users(call.delivery, [asker_key], {
        "type": "expert.question.accepted", "questionId": qid, "topicId": q.topic_id, "conversationId": conv_id,
        "expert": {"tenantId": p.tenant_id, "userId": p.user_id,
                   "displayName": me.display_name if me else None}}, origin=my_key, now_ms=now)
    others = [user_key(p.tenant_id, uid) for uid in sorted(q.offered or ()) if uid != p.user_id]
    if others:
        events.to_users(call.delivery, others, {"type": "expert.question.taken", "questionId": qid,
                                                "topicId": q.topic_id}, origin=my_key, now_ms=now)
    return {"question": _question_view(q, topic_name), "conversation": created["conversation"]}
