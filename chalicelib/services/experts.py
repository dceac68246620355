"""Ask the experts (issue #20, docs/experts.md): a question to a pool of specialists, claimed by one.

Admins of a company define *topics*: named users and/or directory groups,
in up to ``MAX_TIERS`` tiers, a wave size and a timeout.  A member asks on a
topic (``expert.ask`` / ``POST /experts/questions``) without ever seeing
who is in the pool.  The question is offered to a *wave* of the current
tier's members, chosen by presence now (available, then away; busy,
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

from ..models import (EXPERT_ALL_TOPICS, DirectoryGroup, ExpertItem, Presence, TenantLink, User, condition_failed,
                      expert_entries, expert_entry_key, expert_share_key, expert_shares, expert_waiting,
                      expert_waiting_key, expert_word_hits, expert_word_key, expert_write, mark_expert_pool,
                      split_user_key, tenant_of, unmark_expert_pool, user_key)
from ..protocol.errors import Conflict, Forbidden, NotFound, ValidationFailed
from .. import policy
from . import events, presence as presence_service
from .audit import audit, require_admin
from .context import Call, Env

log = logging.getLogger("chat.experts")

MAX_TIERS = 3
MAX_TOPICS = 100           # per company (one Query lists them)
MAX_POOL = 1000            # people per tier once groups are expanded (bench/experts_cost.py: 1,000)
# Offer order by presence now; ranks above LAST_RESORT are offered only when the tier has nobody else.
RANK = {"available": 0, "away": 1, "busy": 2, "do_not_disturb": 2, "in_meeting": 2}
LAST_RESORT = 1

Schedule = Callable[[dict[str, Any], int], None]


# --- topics (admins) -----------------------------------------------------------------------

def _topic_view(t: ExpertItem) -> dict[str, Any]:
    return {"topicId": t.item_id[2:], "name": t.name, "tiers": json.loads(t.tiers or "[]"),
            "waveSize": int(t.wave_size or 1), "timeoutSeconds": int(t.timeout_seconds or 0),
            "sharedWith": sorted(t.shared_with or ()),
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
    _mark_pool(tenant, tiers, topic_id)
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
    _mark_pool(item.tenant_id, json.loads(item.tiers or "[]"), body["topicId"])
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

def _mark_pool(tenant: str, tiers: list[dict[str, list[str]]], topic_id: str) -> None:
    """Mark the pool's people (``Presence.expert_topics``) and groups (``DirectoryGroup.expert_topics``,
    so SCIM marks members it adds later): an expert becoming available is then found by the presence
    item publish() reads anyway.  1 UpdateItem per person and per group (at most 3 x MAX_POOL people);
    marks of people no longer in the pool are cleared lazily (``on_available``)."""
    people: list[str] = []
    for tier in tiers:
        people.extend(_members(tenant, tier))
        for gid in tier.get("groups") or []:
            try:
                DirectoryGroup(tenant_id=tenant, group_id=gid).update(
                    actions=[DirectoryGroup.expert_topics.add({topic_id})],
                    condition=DirectoryGroup.group_id.exists())
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
    mark_expert_pool([user_key(tenant, uid) for uid in people], {topic_id})


def _in_pool(tenant: str, topic: ExpertItem, user_id: str) -> bool:
    """Is the user in any tier of the topic now (named, or in one of its groups: 1 GetItem per group)?"""
    tiers = json.loads(topic.tiers or "[]")
    if any(user_id in (tier.get("users") or ()) for tier in tiers):
        return True
    for tier in tiers:
        for gid in tier.get("groups") or []:
            group = DirectoryGroup.find(tenant, gid)
            if group is not None and user_id in (group.members or ()):
                return True
    return False

def _members(tenant: str, tier: dict[str, list[str]]) -> list[str]:
    """A tier's people: named users plus the members of its groups now (1 GetItem per group)."""
    ids = list(tier.get("users") or [])
    for gid in tier.get("groups") or []:
        group = DirectoryGroup.find(tenant, gid)
        if group is not None:
            ids.extend(sorted(group.members or ()))
    return list(dict.fromkeys(ids))[:MAX_POOL]


def next_wave(tenant: str, tier: dict[str, list[str]], wave_size: int, skip: set[str], now_ms: int,
              idle_ms: int, asker_key: str | None = None) -> list[str]:
    """Up to ``wave_size`` active members of the tier not in ``skip``, best presence first; [] when the
    tier is exhausted.  1 GetItem per group, then pages of 100 people in the tier's order: 1 BatchGetItem
    of their users and 1 of their presence per page, stopping once the pages read hold ``wave_size``
    available people (they are then the wave whatever the rest holds: available ranks first, ties in
    the tier's order), so a large pool with people online costs 2 BatchGetItems per wave, not 2 per
    100 people (bench/experts_cost.py).  An asker of a partner company (shared topic): only experts
    both companies' links and external-access policies allow now (``policy.allowed_recipients``)."""
    ids = [uid for uid in _members(tenant, tier) if uid not in skip]
    candidates: list[tuple[str, str]] = []
    for start in range(0, len(ids), 100):
        page = ids[start:start + 100]
        active = {u.user_id for u in User.batch_get([(tenant, uid) for uid in page]) if u.active}
        page = [uid for uid in page if uid in active]
        if page and asker_key and tenant_of(asker_key) != tenant:
            allowed = set(policy.allowed_recipients(asker_key, [user_key(tenant, uid) for uid in page], now_ms))
            page = [uid for uid in page if user_key(tenant, uid) in allowed]
        if not page:
            continue
        items = Presence.many([user_key(tenant, uid) for uid in page])
        candidates += [(uid, presence_service.state(items.get(user_key(tenant, uid)), now_ms, idle_ms)["status"])
                       for uid in page]
        if sum(1 for _, status in candidates if status == "available") >= wave_size:
            break
    return pick_wave(candidates, wave_size)


def pick_wave(candidates: list[tuple[str, str]], wave_size: int) -> list[str]:
    """(user id, presence status) in the tier's order -> the wave (pure): available, then away;
    busy / do-not-disturb / in-a-meeting only when none of those is left; offline never."""
    ranked = sorted((RANK[status], pos, uid) for pos, (uid, status) in enumerate(candidates) if status in RANK)
    first = [r for r in ranked if r[0] <= LAST_RESORT] or ranked
    return [uid for _, _, uid in first[:wave_size]]


# --- questions --------------------------------------------------------------------------------

def _question_view(q: ExpertItem, topic_name: str | None = None) -> dict[str, Any]:
    return {"questionId": q.item_id[2:], "topicId": q.topic_id, "tenantId": q.tenant_id, "topicName": topic_name,
            "text": q.text,
            "state": q.state, "waiting": bool(q.exhausted), "createdAt": int(q.created_at or 0),
            "conversationId": q.conversation_id}


def _offer_frame(question_id: str, topic_id: str, topic_name: str | None, text: str, asked_by: str | None,
                 asked_at: int) -> dict[str, Any]:
    return {"type": "expert.question.offered", "questionId": question_id, "topicId": topic_id,
            "topicName": topic_name, "text": text, "askedBy": asked_by, "askedAt": asked_at}


def _asker_key(q: ExpertItem) -> str:
    """The asker's user key: of the topic's company, or of a partner company (shared topic)."""
    return user_key(q.asker_tenant or q.tenant_id, q.asker)


def _is_asker(p: Any, q: ExpertItem) -> bool:
    return _asker_key(q) == user_key(p.tenant_id, p.user_id)


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
    host = body.get("tenantId") or p.tenant_id
    me = User.find(p.tenant_id, p.user_id)
    if me is None or not me.active:
        raise NotFound("No such user.")
    topic = _topic(p.tenant_id, body["topicId"]) if host == p.tenant_id else \
        _shared_topic(p.tenant_id, host, body["topicId"], me, call.now_ms())
    from . import screening  # under the company's DLP rules, as a custom status is

    verdict = screening.screen_own(call, body["text"], "expert.question")
    text = verdict.text
    now = call.now_ms()
    topic_id = topic.item_id[2:]
    question_id = f"{topic_id}.{now:013d}.{uuid.uuid4().hex[:12]}"
    q = ExpertItem(tenant_id=host, item_id=ExpertItem.question_key(question_id), topic_id=topic_id,
                   asker=p.user_id, asker_tenant=p.tenant_id if host != p.tenant_id else None, text=text,
                   state="open", exhausted=False, tier=0, wave=0,
                   created_at=now, updated_at=now)
    q.save(condition=ExpertItem.item_id.does_not_exist())
    screening.record_flags(call, verdict, None, "expert.question")  # a flag rule's hit, for the reviewers
    _offer(call.delivery, q, topic, now, call.settings.presence_idle_seconds * 1000, call.schedule.job)
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
    asker_key = _asker_key(q)
    own_asker = {q.asker} if tenant_of(asker_key) == tenant else set()
    while tier_no < len(tiers):
        chosen = next_wave(tenant, tiers[tier_no], int(topic.wave_size or 1), offered | own_asker, now, idle_ms,
                           asker_key)
        if chosen:
            break
        tier_no += 1
    same_step = (ExpertItem.wave == wave) & (ExpertItem.state == "open")
    if not chosen:
        try:
            q.update(actions=[ExpertItem.exhausted.set(True), ExpertItem.wave.set(wave + 1),
                              ExpertItem.tier.set(tier_no), ExpertItem.updated_at.set(now)], condition=same_step)
        except UpdateError as exc:
            if condition_failed(exc):
                return "stale"
            raise
        asker = User.find(*split_user_key(asker_key))
        # the topic's queue of waiting questions (1 PutItem): listed to its experts, offered to those
        # who become available (on_available); gone when the question is accepted or cancelled
        ExpertItem(tenant_id=tenant, item_id=expert_waiting_key(q.item_id[2:]), topic_id=q.topic_id,
                   asker=q.asker, asker_tenant=q.asker_tenant, text=q.text,
                   asked_by=asker.display_name if asker else None, state="open", exhausted=True,
                   created_at=int(q.created_at or 0), updated_at=now).save()
        events.to_users(out, [asker_key], {"type": "expert.question.unanswered", "questionId": q.item_id[2:],
                                           "topicId": q.topic_id}, origin=asker_key, now_ms=now, on_worker=True)
        return "exhausted"
    try:
        q.update(actions=[ExpertItem.offered.add(set(chosen)), ExpertItem.wave_members.set(set(chosen)),
                          ExpertItem.wave.set(wave + 1),
                          ExpertItem.tier.set(tier_no), ExpertItem.updated_at.set(now)], condition=same_step)
    except UpdateError as exc:
        if condition_failed(exc):
            return "stale"
        raise
    asker = User.find(*split_user_key(asker_key))
    frame = _offer_frame(q.item_id[2:], q.topic_id, topic.name, q.text, asker.display_name if asker else None,
                         int(q.created_at or 0))
    events.to_users(out, [user_key(tenant, uid) for uid in chosen], frame, origin=asker_key, now_ms=now,
                    on_worker=True)
    # the asker sees the waves, never who is in them
    events.to_users(out, [asker_key], {"type": "expert.question.wave", "questionId": q.item_id[2:],
                                       "topicId": q.topic_id, "wave": wave + 1, "tier": tier_no + 1,
                                       "experts": len(chosen)}, origin=asker_key, now_ms=now, on_worker=True)
    schedule({"job": "expert.escalate", "tenantId": tenant, "questionId": q.item_id[2:], "wave": wave + 1},
             int(topic.timeout_seconds or 120))
    return "offered"


def escalate(env: Env, job: dict[str, Any]) -> str:
    """The compliance queue's ``expert.escalate`` step: nobody accepted wave ``job["wave"]`` in time."""
    q = ExpertItem.find(job["tenantId"], ExpertItem.question_key(job["questionId"]))
    if q is None or q.state != "open" or int(q.wave or 0) != int(job.get("wave") or 0):
        return "stale"
    topic = ExpertItem.find(q.tenant_id, ExpertItem.topic_key(q.topic_id))
    return _offer(env.delivery, q, topic, env.now_ms(), env.settings.presence_idle_seconds * 1000, env.schedule.job)


def accept(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.accept: the first expert it was offered to wins (conditional UpdateItem).  A waiting
    question (every reachable expert was offered it) may also be taken by anyone of its pool now, who
    saw it in the topic's queue (``expert.queue``)."""
    p = call.principal
    q = _find_question(p.tenant_id, body["questionId"])
    topic = None
    if p.user_id not in (q.offered or ()):
        topic = ExpertItem.find(p.tenant_id, ExpertItem.topic_key(q.topic_id)) if q.exhausted else None
        if topic is None or _is_asker(p, q) or not _in_pool(p.tenant_id, topic, p.user_id):
            raise NotFound("No such question.")  # not offered to the caller: not the caller's to see
    if q.state != "open":
        raise Conflict("The question was cancelled." if q.state == "cancelled"
                       else "Another expert already took the question.", state=q.state)
    now = call.now_ms()
    asker_key = _asker_key(q)
    asker = None
    if tenant_of(asker_key) != p.tenant_id:
        # a partner's asker (shared topic): the connection and both policies must allow it now
        asker = User.find(*split_user_key(asker_key))
        me = User.find(p.tenant_id, p.user_id)
        policy.crossing(p.tenant_id, tenant_of(asker_key), now, a_user=me, b_user=asker, starting=True)
    try:
        q.update(actions=[ExpertItem.state.set("accepted"), ExpertItem.accepted_by.set(p.user_id),
                          ExpertItem.accepted_at.set(now), ExpertItem.updated_at.set(now)],
                 condition=(ExpertItem.state == "open") & ExpertItem.accepted_by.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("Another expert already took the question.", state="accepted") from None
        raise
    topic = topic or ExpertItem.find(p.tenant_id, ExpertItem.topic_key(q.topic_id))
    topic_name = topic.name if topic is not None else "Experts"
    from . import conversations

    try:
        who = {"memberEmails": [asker.email]} if asker is not None else {"members": [q.asker]}
        created = conversations.create(call, {"kind": "group", **who, "name": topic_name[:80],
                                              "topic": f"Ask the experts: {topic_name}"[:250]})
    except Exception:
        # give the question back (only this accept's own write is undone)
        q.update(actions=[ExpertItem.state.set("open"), ExpertItem.accepted_by.remove(),
                          ExpertItem.accepted_at.remove()],
                 condition=(ExpertItem.state == "accepted") & (ExpertItem.accepted_by == p.user_id))
        raise
    conv_id = created["conversation"]["conversationId"]
    q.update(actions=[ExpertItem.conversation_id.set(conv_id)])
    if q.exhausted:
        ExpertItem(tenant_id=p.tenant_id, item_id=expert_waiting_key(q.item_id[2:])).delete()
    me = User.find(p.tenant_id, p.user_id)
    my_key = user_key(p.tenant_id, p.user_id)
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


# --- waiting questions, declining, cancelling (docs/experts.md "Questions waiting") -----------

MAX_ONLINE_TOPICS = 20     # topics looked at when one expert becomes available
MAX_ONLINE_OFFERS = 20     # waiting questions offered per topic then (the oldest)


def _waiting_view(m: ExpertItem, topic_name: str | None) -> dict[str, Any]:
    return {"questionId": m.item_id[2:], "topicId": m.topic_id, "tenantId": m.tenant_id, "topicName": topic_name,
            "text": m.text, "state": "open", "waiting": True, "createdAt": int(m.created_at or 0),
            "conversationId": None,
            "askedBy": m.asked_by}


def queue(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.queue / GET /experts/topics/{topicId}/queue: the topic's waiting questions, oldest first,
    for the people of its pool (anyone else: ``not_found``, as the pool is not disclosed).  GetItem
    topic, 1 GetItem per group of its tiers (membership), 1 Query of the waiting markers."""
    p = call.principal
    topic = _topic(p.tenant_id, body["topicId"])
    if not _in_pool(p.tenant_id, topic, p.user_id):
        raise NotFound("No such expert topic.")
    limit = min(int(body.get("limit") or 50), 50)
    return {"topicId": body["topicId"], "topicName": topic.name,
            "questions": [_waiting_view(m, topic.name) for m in expert_waiting(p.tenant_id, body["topicId"], limit)]}


def decline(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.decline: an expert it was offered to passes.  The question is not offered to them again;
    when everyone of the latest wave declined, the next wave is offered now instead of at the timeout
    (the same conditional step as an escalation, so the delayed job then finds it stale)."""
    p = call.principal
    q = _find_question(p.tenant_id, body["questionId"])
    if p.user_id not in (q.offered or ()):
        raise NotFound("No such question.")
    if q.state != "open":
        raise Conflict("The question is no longer open.", state=q.state)
    try:
        q.update(actions=[ExpertItem.declined.add({p.user_id})], condition=ExpertItem.state == "open")
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The question is no longer open.") from None
        raise
    moved = False
    wave = set(q.wave_members or ())
    if wave and wave <= set(q.declined or ()) and not q.exhausted:
        topic = ExpertItem.find(p.tenant_id, ExpertItem.topic_key(q.topic_id))
        moved = _offer(call.delivery, q, topic, call.now_ms(), call.settings.presence_idle_seconds * 1000,
                       call.schedule.job) != "stale"
    return {"questionId": q.item_id[2:], "declined": True, "movedOn": moved}


def cancel(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.cancel / DELETE /experts/questions/{questionId}: the asker withdraws an open question
    (conditional UpdateItem); the experts it was offered to hear ``expert.question.cancelled``, its
    escalation stops at the next step, and it leaves the topic's queue."""
    p = call.principal
    q = _find_question(body.get("tenantId") or p.tenant_id, body["questionId"])
    if not _is_asker(p, q):
        raise NotFound("No such question.")
    now = call.now_ms()
    try:
        q.update(actions=[ExpertItem.state.set("cancelled"), ExpertItem.cancelled_at.set(now),
                          ExpertItem.updated_at.set(now)],
                 condition=(ExpertItem.state == "open") & ExpertItem.accepted_by.does_not_exist())
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The question is no longer open.", state=q.state) from None
        raise
    ExpertItem(tenant_id=q.tenant_id, item_id=expert_waiting_key(q.item_id[2:])).delete()
    offered = [user_key(q.tenant_id, uid) for uid in sorted(q.offered or ())]
    if offered:
        events.to_users(call.delivery, offered, {"type": "expert.question.cancelled", "questionId": q.item_id[2:],
                                                 "topicId": q.topic_id}, origin=user_key(p.tenant_id, p.user_id),
                        now_ms=now, on_worker=True)  # REST posts to no socket
    return {"question": _question_view(q)}


def on_available(env: Env, job: dict[str, Any]) -> str:
    """The compliance queue's ``expert.online`` step: a pool member became available (presence publish,
    ``Presence.expert_topics``).  Per topic: GetItem topic (+1 GetItem per group, membership), 1 Query of
    its waiting questions, 1 conditional UpdateItem per question offered (``offered`` gains the expert
    unless they had it, or it is no longer open).  A topic the user is no longer in (or that is gone)
    loses its mark (1 UpdateItem), so a stale mark costs one look."""
    out, now_ms = env.delivery, env.now_ms()
    tenant, user_id = job["tenantId"], job["userId"]
    me = User.find(tenant, user_id)
    if me is None or not me.active:
        return "inactive"
    key = user_key(tenant, user_id)
    stale: set[str] = set()
    offered = 0
    for topic_id in list(job.get("topicIds") or [])[:MAX_ONLINE_TOPICS]:
        topic = ExpertItem.find(tenant, ExpertItem.topic_key(topic_id))
        if topic is None or not _in_pool(tenant, topic, user_id):
            stale.add(topic_id)
            continue
        for m in expert_waiting(tenant, topic_id, MAX_ONLINE_OFFERS):
            asker_key = user_key(m.asker_tenant or tenant, m.asker)
            if asker_key == key:
                continue
            if tenant_of(asker_key) != tenant and key not in policy.allowed_recipients(asker_key, [key], now_ms):
                continue  # a partner's asker: the connection or a policy does not allow it now
            qid = m.item_id[2:]
            try:
                ExpertItem(tenant_id=tenant, item_id=ExpertItem.question_key(qid)).update(
                    actions=[ExpertItem.offered.add({user_id})],
                    condition=(ExpertItem.state == "open") & ~ExpertItem.offered.contains(user_id))
            except UpdateError as exc:
                if condition_failed(exc):
                    continue  # offered before (or taken/cancelled meanwhile)
                raise
            events.to_users(out, [key], _offer_frame(qid, topic_id, topic.name, m.text, m.asked_by,
                                                     int(m.created_at or 0)),
                            origin=asker_key, now_ms=now_ms, on_worker=True)
            offered += 1
    if stale:
        unmark_expert_pool(key, stale)
    return f"offered {offered}"


# --- knowledge kept: Q&A entries (docs/experts.md "Knowledge kept") -----------------------------

MAX_ANSWER_MESSAGES = 10
MAX_ENTRY_WORDS = 40       # indexed words per entry (x2: the topic's and the company's index)
MAX_QUERY_WORDS = 5        # the longest words of a search are looked up (1 Query each)
MIN_QUERY_CHARS = 3
WORD_HITS = 50             # keys read per looked-up word


def words_of(text: str) -> list[str]:
    """Normalized words (letters/digits runs, >= 3 characters, cut to 64), deduplicated, in order (pure)."""
    from .. import search_index

    out: list[str] = []
    for word in search_index._RUNS.findall(search_index.normalize(text or "")):
        word = word[:search_index.MAX_TOKEN_CHARS]
        if len(word) >= MIN_QUERY_CHARS and word not in out:
            out.append(word)
    return out


def _entry_view(e: ExpertItem, topic_name: str | None) -> dict[str, Any]:
    return {"questionId": e.item_id[2:], "topicId": e.topic_id, "topicName": topic_name, "question": e.text,
            "answer": e.answer, "answeredBy": e.expert_name, "conversationId": e.conversation_id,
            "askedAt": int(e.created_at or 0), "answeredAt": int(e.answered_at or 0)}


def answered(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.answered / POST /experts/questions/{questionId}/answered: the asker keeps the expert's chosen
    messages (by seq, in the question's conversation) as the topic's Q&A entry.  The entry and its words
    expire with the first of those messages (TTL), and are shown only while all of them still are."""
    from ..models import Message

    p = call.principal
    q = _find_question(body.get("tenantId") or p.tenant_id, body["questionId"])
    if not _is_asker(p, q):
        raise NotFound("No such question.")
    if q.state != "accepted" or not q.conversation_id:
        raise Conflict("Only an accepted question is marked answered, once.", state=q.state)
    seqs = sorted(set(int(s) for s in body["messageSeqs"]))[:MAX_ANSWER_MESSAGES]
    now = call.now_ms()
    expert_key = user_key(q.tenant_id, q.accepted_by)
    found = {m.seq: m for m in Message.batch_get([(q.conversation_id, s) for s in seqs])}
    msgs = [found.get(s) for s in seqs]
    if any(m is None or m.deleted or m.sender_key != expert_key or not m.body or not _alive(m, now)
           for m in msgs):
        raise ValidationFailed("Name messages the expert wrote in the question's conversation.")
    expiries = [int(m.expires_at) for m in msgs if m.expires_at]
    expires_at = min(expiries) if expiries else None
    try:
        q.update(actions=[ExpertItem.state.set("answered"), ExpertItem.answered_at.set(now),
                          ExpertItem.updated_at.set(now)],
                 condition=(ExpertItem.state == "accepted") & (ExpertItem.asker == p.user_id))
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict("The question was marked answered already.") from None
        raise
    tenant = q.tenant_id  # the topic's company keeps the entry (a partner's asker included)
    topic = ExpertItem.find(tenant, ExpertItem.topic_key(q.topic_id))
    expert = User.find(tenant, q.accepted_by)
    qid = q.item_id[2:]
    answer = "\n\n".join(m.body for m in msgs)
    entry = ExpertItem(tenant_id=tenant, item_id=expert_entry_key(qid), topic_id=q.topic_id, text=q.text,
                       answer=answer, answer_seqs=json.dumps(seqs), asker=q.asker, accepted_by=q.accepted_by,
                       expert_name=expert.display_name if expert else None, conversation_id=q.conversation_id,
                       created_at=int(q.created_at or 0), answered_at=now, updated_at=now, expires_at=expires_at)
    words = words_of(f"{q.text}\n{answer}")[:MAX_ENTRY_WORDS]
    expert_write([entry] + [ExpertItem(tenant_id=tenant, item_id=expert_word_key(scope, w, qid),
                                       topic_id=q.topic_id, expires_at=expires_at)
                            for w in words for scope in (q.topic_id, EXPERT_ALL_TOPICS)])
    events.to_users(call.delivery, [expert_key], {"type": "expert.question.answered", "questionId": qid,
                                                  "topicId": q.topic_id}, origin=user_key(p.tenant_id, p.user_id),
                    now_ms=now, on_worker=True)
    return {"entry": _entry_view(entry, topic.name if topic else None)}


def _alive(m: Any, now_ms: int) -> bool:
    """A message still shown: not deleted, not past its retention (TTL deletes lazily)."""
    return not m.deleted and (not m.expires_at or int(m.expires_at) * 1000 > now_ms)


def _visible(entries: list[ExpertItem], now_ms: int) -> list[ExpertItem]:
    """The entries whose answer messages are all still shown (1 BatchGetItem per 100 messages): a
    message deleted, or past a retention shortened since, hides its entry at once."""
    from ..models import Message

    entries = [e for e in entries if not e.expires_at or int(e.expires_at) * 1000 > now_ms]
    keys = [(e.conversation_id, s) for e in entries for s in json.loads(e.answer_seqs or "[]")]
    alive = {(m.conversation_id, m.seq) for m in Message.batch_get(keys) if _alive(m, now_ms)} if keys else set()
    return [e for e in entries if all((e.conversation_id, s) in alive for s in json.loads(e.answer_seqs or "[]"))]


def search(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.search / GET /experts/answers: a company's Q&A entries (members, not guests).  With ``q``:
    entries having words that start with the query's longest words (<= 5 Queries), the most words
    matched first, then the newest; without: the topic's newest entries (1 Query).  Before asking, a
    client shows ``expert.search`` with the topic and the draft question."""
    p = call.principal
    if p.roles == ("guest",):
        raise Forbidden("Guests do not see the company's expert answers.")
    tenant = p.tenant_id
    limit = min(int(body.get("limit") or 10), 50)
    topic_id = body.get("topicId")
    names: dict[str, str | None] = {}
    if topic_id:
        names[topic_id] = _topic(tenant, topic_id).name
    now = call.now_ms()
    words = sorted(words_of(body.get("q") or ""), key=len, reverse=True)[:MAX_QUERY_WORDS]
    if body.get("q") is not None and not words:
        raise ValidationFailed(f"Search for at least one word of {MIN_QUERY_CHARS} characters.")
    if not words:
        if not topic_id:
            raise ValidationFailed("Give q, topicId or both.")
        found = _visible(expert_entries(tenant, topic_id, limit), now)
    else:
        score: dict[str, int] = {}
        for w in words:
            for qid in set(expert_word_hits(tenant, topic_id or EXPERT_ALL_TOPICS, w, WORD_HITS)):
                score[qid] = score.get(qid, 0) + 1
        # question ids are <topicId>.<ms>.<hex>: the most words matched, then the newest
        best = sorted(score, key=lambda qid: (-score[qid], -int(qid.split(".")[1])))[:limit * 2]
        got = {e.item_id[2:]: e for e in ExpertItem.batch_get([(tenant, expert_entry_key(qid)) for qid in best])} \
            if best else {}
        found = _visible([got[qid] for qid in best if qid in got], now)[:limit]
    missing = {e.topic_id for e in found} - set(names)
    if missing:
        for t in ExpertItem.batch_get([(tenant, ExpertItem.topic_key(tid)) for tid in missing]):
            names[t.item_id[2:]] = t.name
    return {"entries": [_entry_view(e, names.get(e.topic_id)) for e in found[:limit]]}


# --- topics shared with a connected company (docs/experts.md "Across companies") -------------

def _active_link(tenant: str, peer: str) -> None:
    """Both sides of the connection must be active (1 BatchGetItem): else ``not_found`` / ``conflict``."""
    mine, theirs = TenantLink.pair(tenant, peer)
    if mine is None:
        raise NotFound("No such connection.")
    if mine.state != "active" or theirs is None or theirs.state != "active":
        raise Conflict("The connection is not active.", state=mine.state)


def share_topic(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """PUT /admin/experts/topics/{topicId}/sharing (admins; audited): offer (or stop offering) the topic to
    a connected company.  Its people may ask once that company's admin accepted it too."""
    require_admin(call)
    tenant, peer = call.principal.tenant_id, body["peerTenantId"]
    item = _topic(tenant, body["topicId"])
    before = _topic_view(item)
    if body["shared"]:
        _active_link(tenant, peer)
        item.update(actions=[ExpertItem.shared_with.add({peer}), ExpertItem.updated_at.set(call.now_ms())],
                    condition=ExpertItem.item_id.exists())
    else:
        item.update(actions=[ExpertItem.shared_with.delete({peer}), ExpertItem.updated_at.set(call.now_ms())],
                    condition=ExpertItem.item_id.exists())
    view = _topic_view(item)
    audit(call, "experts.topic.share", body["topicId"], before=before, after=view)
    return {"topic": view}


def accept_shared(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """PUT /admin/experts/shared/{peerTenantId}/{topicId} (admins; audited): our consent to a connected
    company's topic it shares with us (``accepted: false`` withdraws it)."""
    require_admin(call)
    tenant, host, topic_id = call.principal.tenant_id, body["peerTenantId"], body["topicId"]
    key = expert_share_key(host, topic_id)
    if not body["accepted"]:
        ExpertItem(tenant_id=tenant, item_id=key).delete()
        audit(call, "experts.shared.withdraw", f"{host}/{topic_id}")
        return {"tenantId": host, "topicId": topic_id, "accepted": False}
    _active_link(tenant, host)
    topic = ExpertItem.find(host, ExpertItem.topic_key(topic_id))
    if topic is None or tenant not in (topic.shared_with or ()):
        raise NotFound("No such expert topic shared with your company.")
    now = call.now_ms()
    ExpertItem(tenant_id=tenant, item_id=key, host_tenant=host, topic_id=topic_id, name=topic.name,
               created_by=call.principal.user_id, created_at=now, updated_at=now).save()
    audit(call, "experts.shared.accept", f"{host}/{topic_id}", after={"name": topic.name})
    return {"tenantId": host, "topicId": topic_id, "accepted": True}


def _shared_topic(tenant: str, host: str, topic_id: str, me: User, now_ms: int) -> ExpertItem:
    """A host's topic our company may ask: our consent (GetItem), the host's (GetItem topic), and the
    connection and both external-access policies now, for the asker (``policy.crossing``: 2 BatchGetItems).
    Anything missing is ``not_found``; a refused crossing ``external_access_revoked``."""
    if ExpertItem.find(tenant, expert_share_key(host, topic_id)) is None:
        raise NotFound("No such expert topic.")
    topic = ExpertItem.find(host, ExpertItem.topic_key(topic_id))
    if topic is None or tenant not in (topic.shared_with or ()):
        raise NotFound("No such expert topic.")
    policy.crossing(tenant, host, now_ms, a_user=me, starting=True)
    return topic


def list_member_topics(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """expert.topics / GET /experts/topics: the topics a member may ask (not who answers them): the
    company's own (1 Query) and the connected companies' shared ones both admins accepted and the
    connection and policies allow now (1 Query of our consents, 1 BatchGetItem of the hosts' topics,
    2 BatchGetItems per host company for the crossing)."""
    p = call.principal
    if p.roles == ("guest",):
        raise Forbidden("Guests cannot ask the company's experts.")
    out = [{"topicId": t.item_id[2:], "name": t.name, "tenantId": p.tenant_id, "shared": False}
           for t in ExpertItem.topics(p.tenant_id, MAX_TOPICS)]
    shares = expert_shares(p.tenant_id)
    if shares:
        me = User.find(p.tenant_id, p.user_id)
        hosts = {(t.tenant_id, t.item_id[2:]): t for t in
                 ExpertItem.batch_get([(s.host_tenant, ExpertItem.topic_key(s.topic_id)) for s in shares])}
        allowed: dict[str, bool] = {}
        for s in shares:
            t = hosts.get((s.host_tenant, s.topic_id))
            if t is None or p.tenant_id not in (t.shared_with or ()):
                continue
            if s.host_tenant not in allowed:
                try:
                    policy.crossing(p.tenant_id, s.host_tenant, call.now_ms(), a_user=me, starting=True)
                    allowed[s.host_tenant] = True
                except policy.ExternalAccessDenied:
                    allowed[s.host_tenant] = False
            if allowed[s.host_tenant]:
                out.append({"topicId": s.topic_id, "name": t.name, "tenantId": s.host_tenant, "shared": True})
    return {"topics": out}
