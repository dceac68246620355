"""Ask the experts (docs/experts.md): topics (admins), asking, waves by presence, claiming, escalation.

Each test builds a fresh company (``make_company``) so topics, presence and
queues of other tests and agents never mix in.  Replies are checked against
the published schemas (``schemas.RESPONSES`` / ``schemas.RESULTS``).
"""
from __future__ import annotations

import asyncio
import time
import uuid

import jsonschema
import pytest

from chalicelib.models import Conversation, DirectoryGroup, ExpertItem, Member, user_key
from chalicelib.protocol import schemas
from chalicelib.services.tenants import upsert_user

from .client import ActionError
from .rest_checks import ok, refused
from .test_federation import api, make_company

pytestmark = pytest.mark.e2e

TOPICS = "/admin/experts/topics"




def person(company, name: str, roles=("member",)) -> str:
    email = f"{name}@{company.domain}"
    upsert_user(company.tenant, f"{company.tenant}-{name}", email, name.title(), list(roles))
    return email


def group(company, members: list[str]) -> str:
    gid = "g-" + uuid.uuid4().hex[:8]
    now = int(time.time() * 1000)
    DirectoryGroup(tenant_id=company.tenant, group_id=gid, display_name=f"experts {gid}",
                   members={company.user_id(m) for m in members}, created_at=now, updated_at=now).save()
    return gid


def topic(stack, company, **body) -> dict:
    body.setdefault("name", "Export control")
    return ok(api(stack, company.admin, "POST", TOPICS, json=body), "admin.experts.topics.create", 201)["topic"]


async def ask(s, topic_id: str, text: str = "Can we ship lithium batteries to Norway?") -> dict:
    res = await s.call("expert.ask", topicId=topic_id, text=text)
    jsonschema.validate(res, schemas.RESULTS["expert.ask"])
    return res["question"]


def stored(company, question_id: str) -> ExpertItem:
    return ExpertItem.find(company.tenant, ExpertItem.question_key(question_id))


# --- topics ------------------------------------------------------------------------------------

def test_topics_are_admin_only_audited_and_scoped_to_the_company(stack):
    co, other = make_company(stack, "xt"), make_company(stack, "xo")
    e1 = person(co, "expert1")
    gid = group(co, [co.other])
    t = topic(stack, co, tiers=[{"users": [co.user_id(e1)]}, {"groups": [gid]}], waveSize=2, timeoutSeconds=60)
    assert (t["tiers"], t["waveSize"], t["timeoutSeconds"]) == \
        ([{"users": [co.user_id(e1)], "groups": []}, {"users": [], "groups": [gid]}], 2, 60)
    listed = ok(api(stack, co.admin, "GET", TOPICS), "admin.experts.topics.list")["topics"]
    assert [x["topicId"] for x in listed] == [t["topicId"]]
    changed = ok(api(stack, co.admin, "PUT", f"{TOPICS}/{t['topicId']}", json={"name": "Export rules", "waveSize": 1}),
                 "admin.experts.topics.update")["topic"]
    assert (changed["name"], changed["waveSize"], changed["tiers"]) == ("Export rules", 1, t["tiers"])
    # members and guests may not manage topics
    for who in (co.member, person(co, "guest1", ("guest",))):
        refused(api(stack, who, "GET", TOPICS), "forbidden")
        refused(api(stack, who, "POST", TOPICS, json={"name": "x", "users": [co.user_id(e1)]}), "forbidden")
        refused(api(stack, who, "DELETE", f"{TOPICS}/{t['topicId']}"), "forbidden")
    # another company's admin: sees none of it, cannot name this company's people or groups, nor touch the topic
    assert ok(api(stack, other.admin, "GET", TOPICS), "admin.experts.topics.list")["topics"] == []
    refused(api(stack, other.admin, "POST", TOPICS, json={"name": "x", "users": [co.user_id(e1)]}), "not_found")
    refused(api(stack, other.admin, "POST", TOPICS, json={"name": "x", "groups": [gid]}), "not_found")
    refused(api(stack, other.admin, "PUT", f"{TOPICS}/{t['topicId']}", json={"name": "x"}), "not_found")
    refused(api(stack, other.admin, "DELETE", f"{TOPICS}/{t['topicId']}"), "not_found")
    # a tier names somebody; tiers and the shorthand do not mix
    refused(api(stack, co.admin, "POST", TOPICS, json={"name": "x", "tiers": [{}]}), "validation_failed")
    refused(api(stack, co.admin, "POST", TOPICS, json={"name": "x", "tiers": [{"users": [co.user_id(e1)]}],
                                                          "users": [co.user_id(e1)]}), "validation_failed")
    deleted = ok(api(stack, co.admin, "DELETE", f"{TOPICS}/{t['topicId']}"), "admin.experts.topics.delete")
    assert deleted == {"topicId": t["topicId"], "deleted": True}
    refused(api(stack, co.admin, "DELETE", f"{TOPICS}/{t['topicId']}"), "not_found")
    actions = [e["action"] for e in api(stack, co.admin, "GET", "/admin/audit").json()["entries"]]
    assert {"experts.topic.create", "experts.topic.update", "experts.topic.delete"} <= set(actions)
    assert not any(a.startswith("experts.") for a in
                   (e["action"] for e in api(stack, other.admin, "GET", "/admin/audit").json()["entries"]))


# --- asking and claiming -----------------------------------------------------------------------------

async def test_offered_by_presence_accepted_by_one_with_a_conversation(stack, sessions):
    co = make_company(stack, "xa")
    busy_one, first, second, offline, busy = (person(co, n) for n in ("dnd", "first", "second", "offline", "busy"))
    t = topic(stack, co, users=[co.user_id(e) for e in (busy_one, first, offline, busy)],
              groups=[group(co, [second])], waveSize=3, timeoutSeconds=300)
    dnd = await sessions(busy_one)
    await dnd.call("presence.set", status="do_not_disturb")
    s_busy = await sessions(busy)
    await s_busy.call("presence.set", status="busy")
    s1, s2 = await sessions(first), await sessions(second)
    asker = await sessions(co.member)
    q = await ask(asker, t["topicId"])
    # the asker sees the question, never who is in the pool
    assert (q["state"], q["topicName"], q["waiting"]) == ("open", "Export control", False)
    for email in (busy_one, first, second, offline):
        assert co.user_id(email) not in str(q)
    # available experts first (a group's member too); busy, do-not-disturb and offline ones not while others
    # remain, even with room left in the wave (3)
    for s in (s1, s2):
        offer = await s.event("expert.question.offered", questionId=q["questionId"])
        jsonschema.validate(offer, schemas.OUTBOUND["expert.question.offered"])
        assert (offer["askedBy"], offer["text"], offer["topicName"]) == \
            ("Member", "Can we ship lithium batteries to Norway?", "Export control")
    await dnd.no_event("expert.question.offered", wait=1.0)
    await s_busy.no_event("expert.question.offered", wait=0.5)
    assert stored(co, q["questionId"]).offered == {co.user_id(first), co.user_id(second)}
    # somebody it was not offered to cannot take it (nor see that it exists)
    with pytest.raises(ActionError) as err:
        await dnd.call("expert.accept", questionId=q["questionId"])
    assert err.value.code == "not_found"
    res = await s1.call("expert.accept", questionId=q["questionId"])
    jsonschema.validate(res, schemas.RESULTS["expert.accept"])
    conv_id = res["conversation"]["conversationId"]
    assert res["question"]["state"] == "accepted" and res["question"]["conversationId"] == conv_id
    accepted = await asker.event("expert.question.accepted", questionId=q["questionId"])
    assert accepted["conversationId"] == conv_id and accepted["expert"]["userId"] == co.user_id(first)
    await s2.event("expert.question.taken", questionId=q["questionId"])
    with pytest.raises(ActionError) as err:
        await s2.call("expert.accept", questionId=q["questionId"])
    assert err.value.code == "conflict"
    # an ordinary conversation of the two, tagged with the topic, made by the conversations service
    conv = Conversation.find(conv_id, consistent=True)
    assert (conv.kind, conv.tenant_id, conv.name) == ("group", co.tenant, "Export control")
    assert "Export control" in conv.topic
    assert {m.user_key for m in Member.of_conversation(conv_id)} == \
        {user_key(co.tenant, co.user_id(e)) for e in (first, co.member)}
    await asker.call("message.send", conversationId=conv_id, clientMessageId=uuid.uuid4().hex, body="thanks!")
    await s1.event("message.created")


async def test_concurrent_accepts_have_exactly_one_winner(stack, sessions):
    co = make_company(stack, "xr")
    experts = [person(co, f"racer{i}") for i in range(5)]
    t = topic(stack, co, users=[co.user_id(e) for e in experts], waveSize=5, timeoutSeconds=300)
    devices = [await sessions(e) for e in experts]
    asker = await sessions(co.member)
    q = await ask(asker, t["topicId"])
    for d in devices:
        await d.event("expert.question.offered", questionId=q["questionId"])
    replies = await asyncio.gather(*(d.raw("expert.accept", questionId=q["questionId"]) for d in devices))
    wins = [r for r in replies if r["type"] == "ack"]
    losses = [r for r in replies if r["type"] == "error"]
    assert len(wins) == 1 and len(losses) == 4, replies
    assert {r["error"]["code"] for r in losses} == {"conflict"}
    winner = devices[replies.index(wins[0])]
    item = stored(co, q["questionId"])
    assert item.state == "accepted" and item.accepted_by == co.user_id(winner.email)
    assert (await asker.event("expert.question.accepted"))["conversationId"] == item.conversation_id
    for d in devices:
        if d is not winner:
            await d.event("expert.question.taken", questionId=q["questionId"])
    await asker.no_event("expert.question.accepted", wait=1.0)  # one accepted event, one conversation


async def test_escalation_next_wave_next_tier_then_unanswered_and_waiting(stack, sessions):
    co = make_company(stack, "xe")
    a1, a2, b1 = person(co, "tier1a"), person(co, "tier1b"), person(co, "tier2a")
    t = topic(stack, co, tiers=[{"users": [co.user_id(a1), co.user_id(a2)]}, {"users": [co.user_id(b1)]}],
              waveSize=1, timeoutSeconds=1)
    s_a1, s_a2, s_b1 = await sessions(a1), await sessions(a2), await sessions(b1)
    await s_a2.call("presence.set", status="away")
    asker = await sessions(co.member)
    q = await ask(asker, t["topicId"])
    qid = q["questionId"]
    # wave 1: the available tier-1 expert; then the away one; then tier 2; then nobody is left
    await s_a1.event("expert.question.offered", questionId=qid)
    await s_a2.event("expert.question.offered", timeout=20, questionId=qid)
    await s_b1.event("expert.question.offered", timeout=20, questionId=qid)
    unanswered = await asker.event("expert.question.unanswered", timeout=20, questionId=qid)
    jsonschema.validate(unanswered, schemas.OUTBOUND["expert.question.unanswered"])
    item = stored(co, qid)
    assert (item.state, item.exhausted, int(item.tier)) == ("open", True, 2)  # past the last tier
    assert list(ExpertItem.queue(co.tenant, t["topicId"]))[0].item_id == ExpertItem.question_key(qid)
    # a late step of the same escalation is stale and offers nothing twice
    from chalicelib import runtime
    from chalicelib.services import experts

    late = {"job": "expert.escalate", "tenantId": co.tenant, "questionId": qid, "wave": 1}
    assert experts.escalate(runtime.env(), late) == "stale"
    await s_a1.no_event("expert.question.offered", wait=1.0, questionId=qid)
    # the question waits in the queue: an expert it was offered to can still take it
    res = await s_a1.call("expert.accept", questionId=qid)
    assert res["question"]["state"] == "accepted"
    await asker.event("expert.question.accepted", questionId=qid)
    for s in (s_a2, s_b1):
        await s.event("expert.question.taken", questionId=qid)


async def test_asking_over_rest_guests_and_other_companies(stack, sessions):
    co, other = make_company(stack, "xq"), make_company(stack, "xp")
    e1 = person(co, "expert1")
    t = topic(stack, co, users=[co.user_id(e1)], timeoutSeconds=300)
    s1 = await sessions(e1)
    body = ok(api(stack, co.member, "POST", "/experts/questions",
                  json={"topicId": t["topicId"], "text": "Who signs NDAs?"}), "expert.ask", 201)
    qid = body["question"]["questionId"]
    offer = await s1.event("expert.question.offered", questionId=qid)
    assert offer["askedBy"] == "Member"
    # guests do not ask; another company's members find no such topic, nor take the question
    refused(api(stack, person(co, "guest1", ("guest",)), "POST", "/experts/questions",
                json={"topicId": t["topicId"], "text": "x"}), "forbidden")
    refused(api(stack, other.member, "POST", "/experts/questions", json={"topicId": t["topicId"], "text": "x"}),
            "not_found")
    outsider = await sessions(other.member)
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.accept", questionId=qid)
    assert err.value.code == "not_found"
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.ask", topicId=t["topicId"], text="x")
    assert err.value.code == "not_found"
    # the asker of the company itself is never offered its own question (it is not in the pool here either)
    assert stored(co, qid).offered == {co.user_id(e1)}


async def test_question_text_is_screened_under_the_company_rules(stack, sessions):
    co = make_company(stack, "xd")
    e1 = person(co, "expert1")
    t = topic(stack, co, users=[co.user_id(e1)], timeoutSeconds=300)
    rules = [{"id": "falcon", "name": "Project Falcon", "type": "keyword", "keywords": ["falcon"], "action": "block"}]
    r = api(stack, co.admin, "PUT", "/admin/dlp/rules", json={"rules": rules})
    assert r.status_code == 200, r.text
    s1 = await sessions(e1)
    asker = await sessions(co.member)
    with pytest.raises(ActionError) as err:
        await asker.call("expert.ask", topicId=t["topicId"], text="When does Falcon launch?")
    assert err.value.code == "message_blocked"
    await s1.no_event("expert.question.offered", wait=1.0)
    assert ExpertItem.queue(co.tenant, t["topicId"]) == []


# --- questions waiting, declining, cancelling (docs/experts.md "Questions waiting") ------------------

async def test_nobody_available_then_an_expert_coming_online_sees_the_question(stack, sessions):
    co = make_company(stack, "xw")
    named, grouped, late = person(co, "named"), person(co, "grouped"), person(co, "late")
    t = topic(stack, co, users=[co.user_id(named)], groups=[group(co, [grouped])], waveSize=3, timeoutSeconds=300)
    asker = await sessions(co.member)
    # nobody of the pool is online: the asker is told at once and the question waits in the topic's queue
    q = await ask(asker, t["topicId"])
    qid = q["questionId"]
    await asker.event("expert.question.unanswered", questionId=qid)
    assert ExpertItem.find(co.tenant, f"w#{qid}") is not None
    # a named expert and a group's member come online: each is offered the waiting question
    s_named, s_grouped = await sessions(named), await sessions(grouped)
    for s in (s_named, s_grouped):
        offer = await s.event("expert.question.offered", timeout=20, questionId=qid)
        jsonschema.validate(offer, schemas.OUTBOUND["expert.question.offered"])
        assert (offer["text"], offer["askedBy"]) == (q["text"], "Member")
    # a reconnect (available again) offers nothing twice
    await s_named.close()
    s_named = await sessions(named)
    await s_named.no_event("expert.question.offered", wait=2.0, questionId=qid)
    # the topic's queue is listed to the people of its pool only
    listed = await s_grouped.call("expert.queue", topicId=t["topicId"])
    jsonschema.validate(listed, schemas.RESULTS["expert.queue"])
    assert [(x["questionId"], x["waiting"], x["askedBy"]) for x in listed["questions"]] == [(qid, True, "Member")]
    rest = ok(api(stack, grouped, "GET", f"/experts/topics/{t['topicId']}/queue"), "expert.queue")
    assert [x["questionId"] for x in rest["questions"]] == [qid]
    with pytest.raises(ActionError) as err:
        await asker.call("expert.queue", topicId=t["topicId"])
    assert err.value.code == "not_found"  # not in the pool: the topic's queue is not the asker's to see
    refused(api(stack, co.member, "GET", f"/experts/topics/{t['topicId']}/queue"), "not_found")
    # someone added to the pool while already online was not offered it, but sees it in the queue and takes it
    s_late = await sessions(late)
    ok(api(stack, co.admin, "PUT", f"{TOPICS}/{t['topicId']}",
           json={"users": [co.user_id(named), co.user_id(late)], "groups": t["tiers"][0]["groups"]}),
       "admin.experts.topics.update")
    assert [x["questionId"] for x in (await s_late.call("expert.queue", topicId=t["topicId"]))["questions"]] == [qid]
    res = await s_late.call("expert.accept", questionId=qid)
    assert res["question"]["state"] == "accepted"
    await asker.event("expert.question.accepted", questionId=qid)
    for s in (s_named, s_grouped):
        await s.event("expert.question.taken", questionId=qid)
    # taken: it leaves the queue
    assert (await s_grouped.call("expert.queue", topicId=t["topicId"]))["questions"] == []
    assert ExpertItem.find(co.tenant, f"w#{qid}") is None


async def test_decline_moves_on_without_waiting_for_the_timeout(stack, sessions):
    co = make_company(stack, "xn")
    a, b = person(co, "decl1"), person(co, "decl2")
    t = topic(stack, co, users=[co.user_id(a), co.user_id(b)], waveSize=1, timeoutSeconds=900)
    s_a, s_b = await sessions(a), await sessions(b)
    asker = await sessions(co.member)
    qid = (await ask(asker, t["topicId"]))["questionId"]
    await s_a.event("expert.question.offered", questionId=qid)
    # somebody it was not offered to cannot decline it
    with pytest.raises(ActionError) as err:
        await s_b.call("expert.decline", questionId=qid)
    assert err.value.code == "not_found"
    res = await s_a.call("expert.decline", questionId=qid)
    jsonschema.validate(res, schemas.RESULTS["expert.decline"])
    assert res == {"questionId": qid, "declined": True, "movedOn": True}
    await s_b.event("expert.question.offered", questionId=qid)  # the next wave now, not in 900 s
    assert (await s_b.call("expert.decline", questionId=qid))["movedOn"] is True
    await asker.event("expert.question.unanswered", questionId=qid)
    await s_a.no_event("expert.question.offered", wait=1.0, questionId=qid)  # never offered again
    item = stored(co, qid)
    assert (item.state, item.exhausted, item.declined) == ("open", True, {co.user_id(a), co.user_id(b)})


async def test_the_asker_cancels_and_the_experts_offers_are_withdrawn(stack, sessions):
    co, other = make_company(stack, "xc"), make_company(stack, "xk")
    e1 = person(co, "expert1")
    t = topic(stack, co, users=[co.user_id(e1)], timeoutSeconds=300)
    s1 = await sessions(e1)
    asker = await sessions(co.member)
    qid = (await ask(asker, t["topicId"]))["questionId"]
    await s1.event("expert.question.offered", questionId=qid)
    # only the asker cancels: the expert, another member, another company's member find no such question
    bystander = await sessions(person(co, "bystander"))
    for s in (s1, bystander, await sessions(other.member)):
        with pytest.raises(ActionError) as err:
            await s.call("expert.cancel", questionId=qid)
        assert err.value.code == "not_found"
    res = await asker.call("expert.cancel", questionId=qid)
    jsonschema.validate(res, schemas.RESULTS["expert.cancel"])
    assert res["question"]["state"] == "cancelled"
    cancelled = await s1.event("expert.question.cancelled", questionId=qid)
    jsonschema.validate(cancelled, schemas.OUTBOUND["expert.question.cancelled"])
    with pytest.raises(ActionError) as err:
        await s1.call("expert.accept", questionId=qid)
    assert err.value.code == "conflict"
    with pytest.raises(ActionError) as err:
        await asker.call("expert.cancel", questionId=qid)
    assert err.value.code == "conflict"
    # over REST; and an accepted question cannot be cancelled
    qid2 = ok(api(stack, co.member, "POST", "/experts/questions", json={"topicId": t["topicId"], "text": "Again?"}),
              "expert.ask", 201)["question"]["questionId"]
    refused(api(stack, other.member, "DELETE", f"/experts/questions/{qid2}"), "not_found")
    assert ok(api(stack, co.member, "DELETE", f"/experts/questions/{qid2}"), "expert.cancel")["question"]["state"] \
        == "cancelled"
    qid3 = (await ask(asker, t["topicId"]))["questionId"]
    await s1.event("expert.question.offered", questionId=qid3)
    await s1.call("expert.accept", questionId=qid3)
    refused(api(stack, co.member, "DELETE", f"/experts/questions/{qid3}"), "conflict")


# --- knowledge kept (docs/experts.md "Knowledge kept") -------------------------------------------------

async def _send(s, conv: str, body: str) -> int:
    res = await s.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=body)
    return res["message"]["seq"]


async def test_answered_questions_become_qa_entries_only_their_company_sees(stack, sessions):
    from chalicelib.models import Message

    co, other = make_company(stack, "xk"), make_company(stack, "xl")
    e1 = person(co, "expert1")
    t = topic(stack, co, name="Lithium shipping", users=[co.user_id(e1)], timeoutSeconds=300)
    s1 = await sessions(e1)
    asker = await sessions(co.member)
    q = await ask(asker, t["topicId"], "Can we ship lithium batteries to Norway by air?")
    await s1.event("expert.question.offered", questionId=q["questionId"])
    conv = (await s1.call("expert.accept", questionId=q["questionId"]))["conversation"]["conversationId"]
    s_answer = await _send(s1, conv, "Yes, under UN3480 with a dangerous-goods declaration.")
    s_more = await _send(s1, conv, "Packing instruction 965 applies; state of charge at most 30%.")
    s_mine = await _send(asker, conv, "thanks")
    # the answer's messages expire at some point (the company's retention): the entry goes with the first
    expiry = int(time.time()) + 3600
    Message(conversation_id=conv, seq=s_more).update(actions=[Message.expires_at.set(expiry)])
    # only the asker marks answered, with the expert's own messages
    with pytest.raises(ActionError) as err:
        await s1.call("expert.answered", questionId=q["questionId"], messageSeqs=[s_answer])
    assert err.value.code == "not_found"
    with pytest.raises(ActionError) as err:
        await asker.call("expert.answered", questionId=q["questionId"], messageSeqs=[s_answer, s_mine])
    assert err.value.code == "validation_failed"
    res = await asker.call("expert.answered", questionId=q["questionId"], messageSeqs=[s_more, s_answer])
    jsonschema.validate(res, schemas.RESULTS["expert.answered"])
    entry = res["entry"]
    assert entry["answer"].startswith("Yes, under UN3480") and "instruction 965" in entry["answer"]
    assert (entry["answeredBy"], entry["topicName"], entry["conversationId"]) == ("Expert1", "Lithium shipping", conv)
    await s1.event("expert.question.answered", questionId=q["questionId"])
    with pytest.raises(ActionError) as err:
        await asker.call("expert.answered", questionId=q["questionId"], messageSeqs=[s_answer])
    assert err.value.code == "conflict"
    kept = ExpertItem.find(co.tenant, f"a#{q['questionId']}")
    assert kept.expires_at == expiry  # no longer than its messages' retention
    words = ExpertItem.query(co.tenant, ExpertItem.item_id.startswith(f"k#{t['topicId']}\x1f"))
    assert {w.expires_at for w in words} == {expiry}
    # any member of the company finds it by words (before asking: the draft question), by topic, REST too
    bystander = await sessions(person(co, "bystander"))
    hits = await bystander.call("expert.search", q="lithium NORWAY")
    jsonschema.validate(hits, schemas.RESULTS["expert.search"])
    assert [h["questionId"] for h in hits["entries"]] == [q["questionId"]]
    draft = await bystander.call("expert.search", topicId=t["topicId"], q="Shipping batteries to Norway - allowed?")
    assert [h["questionId"] for h in draft["entries"]] == [q["questionId"]]
    assert [h["questionId"] for h in (await bystander.call("expert.search", topicId=t["topicId"]))["entries"]] \
        == [q["questionId"]]
    assert (await bystander.call("expert.search", q="submarine"))["entries"] == []
    rest = ok(api(stack, co.member, "GET", "/experts/answers", params={"q": "UN3480"}), "expert.search")
    assert [h["questionId"] for h in rest["entries"]] == [q["questionId"]]
    # another company sees none of it; a guest does not search; an unknown topic is not_found
    outsider = await sessions(other.member)
    assert (await outsider.call("expert.search", q="lithium"))["entries"] == []
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.search", topicId=t["topicId"], q="lithium")
    assert err.value.code == "not_found"
    refused(api(stack, person(co, "guest1", ("guest",)), "GET", "/experts/answers", params={"q": "lithium"}),
            "forbidden")
    # the entry is shown only while its messages are: one deleted, or past its retention, hides it at once
    Message(conversation_id=conv, seq=s_more).update(actions=[Message.expires_at.set(int(time.time()) - 1)])
    assert (await bystander.call("expert.search", q="lithium"))["entries"] == []
    Message(conversation_id=conv, seq=s_more).update(actions=[Message.expires_at.set(expiry)])
    assert len((await bystander.call("expert.search", q="lithium"))["entries"]) == 1
    await s1.call("message.delete", conversationId=conv, seq=s_answer)
    assert (await bystander.call("expert.search", q="lithium"))["entries"] == []
    assert (await bystander.call("expert.search", topicId=t["topicId"]))["entries"] == []


# --- across companies (docs/experts.md "Across companies") ---------------------------------------------

async def test_a_shared_topic_works_across_companies_and_stops_when_the_connection_is_revoked(stack, sessions):
    from .test_federation import connect_companies

    host, partner = make_company(stack, "xh"), make_company(stack, "xs")
    connect_companies(stack, host, partner)
    e1 = person(host, "expert1")
    t = topic(stack, host, name="Customs", users=[host.user_id(e1)], timeoutSeconds=300)
    s1 = await sessions(e1)
    outsider = await sessions(partner.member)
    # not shared yet: the partner's people find no such topic
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.ask", tenantId=host.tenant, topicId=t["topicId"], text="HS code for drones?")
    assert err.value.code == "not_found"
    # the host offers it; until the partner's admin accepts, still nothing; members/guests may not share
    refused(api(stack, host.member, "PUT", f"{TOPICS}/{t['topicId']}/sharing",
                json={"peerTenantId": partner.tenant, "shared": True}), "forbidden")
    shared = ok(api(stack, host.admin, "PUT", f"{TOPICS}/{t['topicId']}/sharing",
                    json={"peerTenantId": partner.tenant, "shared": True}), "admin.experts.topics.share")["topic"]
    assert shared["sharedWith"] == [partner.tenant]
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.ask", tenantId=host.tenant, topicId=t["topicId"], text="HS code for drones?")
    assert err.value.code == "not_found"
    refused(api(stack, partner.member, "PUT", f"/admin/experts/shared/{host.tenant}/{t['topicId']}",
                json={"accepted": True}), "forbidden")
    ok(api(stack, partner.admin, "PUT", f"/admin/experts/shared/{host.tenant}/{t['topicId']}",
           json={"accepted": True}), "admin.experts.shared.accept")
    listed = await outsider.call("expert.topics")
    jsonschema.validate(listed, schemas.RESULTS["expert.topics"])
    assert {"topicId": t["topicId"], "name": "Customs", "tenantId": host.tenant, "shared": True} in listed["topics"]
    # the partner's member asks; the host's expert is offered it, accepts; an external conversation of the two
    q = await ask_shared(outsider, host, t["topicId"])
    assert q["tenantId"] == host.tenant
    offer = await s1.event("expert.question.offered", questionId=q["questionId"])
    assert offer["askedBy"] == "Member"
    res = await s1.call("expert.accept", questionId=q["questionId"])
    conv_id = res["conversation"]["conversationId"]
    accepted = await outsider.event("expert.question.accepted", questionId=q["questionId"])
    assert accepted["conversationId"] == conv_id
    assert {m.user_key for m in Member.of_conversation(conv_id)} == \
        {user_key(host.tenant, host.user_id(e1)), user_key(partner.tenant, partner.user_id(partner.member))}
    await outsider.call("message.send", conversationId=conv_id, clientMessageId=uuid.uuid4().hex, body="thanks!")
    await s1.event("message.created")
    # a question asked before the revocation: once revoked, the expert cannot take it, nobody can ask again
    q2 = await ask_shared(outsider, host, t["topicId"], "And for spare parts?")
    await s1.event("expert.question.offered", questionId=q2["questionId"])
    r = api(stack, host.admin, "POST", f"/admin/connections/{partner.tenant}/revoke")
    assert r.status_code == 200, r.text
    with pytest.raises(ActionError) as err:
        await s1.call("expert.accept", questionId=q2["questionId"])
    assert err.value.code == "external_access_revoked"
    assert stored(host, q2["questionId"]).state == "open"
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.ask", tenantId=host.tenant, topicId=t["topicId"], text="Still there?")
    assert err.value.code == "external_access_revoked"
    assert all(x["tenantId"] == partner.tenant for x in (await outsider.call("expert.topics"))["topics"])


async def ask_shared(s, host, topic_id: str, text: str = "Which HS code do drones have?") -> dict:
    res = await s.call("expert.ask", tenantId=host.tenant, topicId=topic_id, text=text)
    jsonschema.validate(res, schemas.RESULTS["expert.ask"])
    return res["question"]


async def test_a_shared_topic_offers_only_experts_both_policies_allow(stack, sessions):
    from .test_federation import connect_companies

    host, partner = make_company(stack, "xu"), make_company(stack, "xv")
    connect_companies(stack, host, partner)
    inside, outside = person(host, "inside"), person(host, "outside")
    t = topic(stack, host, users=[host.user_id(inside), host.user_id(outside)], waveSize=1, timeoutSeconds=1)
    ok(api(stack, host.admin, "PUT", f"{TOPICS}/{t['topicId']}/sharing",
           json={"peerTenantId": partner.tenant, "shared": True}), "admin.experts.topics.share")
    ok(api(stack, partner.admin, "PUT", f"/admin/experts/shared/{host.tenant}/{t['topicId']}",
           json={"accepted": True}), "admin.experts.shared.accept")
    # the host lets only one of its experts talk to other companies
    r = api(stack, host.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [host.user_id(inside)]})
    assert r.status_code == 200, r.text
    s_in, s_out = await sessions(inside), await sessions(outside)
    outsider = await sessions(partner.member)
    q = await ask_shared(outsider, host, t["topicId"])
    await s_in.event("expert.question.offered", questionId=q["questionId"])
    # the escalation step (compliance queue) skips the expert the host's policy keeps inside
    await outsider.event("expert.question.unanswered", timeout=20, questionId=q["questionId"])
    await s_out.no_event("expert.question.offered", wait=1.0, questionId=q["questionId"])
    assert stored(host, q["questionId"]).offered == {host.user_id(inside)}
    # the partner turns external access off: its people can no longer ask, nor see the shared topic
    r = api(stack, partner.admin, "PUT", "/admin/policy", json={"mode": "off"})
    assert r.status_code == 200, r.text
    with pytest.raises(ActionError) as err:
        await outsider.call("expert.ask", tenantId=host.tenant, topicId=t["topicId"], text="again?")
    assert err.value.code == "external_access_revoked"
    with pytest.raises(ActionError) as err:
        await s_in.call("expert.accept", questionId=q["questionId"])
    assert err.value.code == "external_access_revoked"
