"""The review queue (docs/compliance.md "Review queue"): the reviewer role, the queue, claims, cases, audit.

Each test builds fresh companies and sets their screening rules before the
first message (as tests/e2e/test_screening.py does).  Replies are checked
against the published response schemas (``schemas.RESPONSES``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid

import pytest

from chalicelib.models import DlpFlag, Message
from chalicelib.services.tenants import upsert_user

from ..conftest import RETENTION_DAY_SECONDS
from .client import ActionError
from .rest_checks import ok, refused
from .test_federation import api, connect_companies, make_company
from .test_screening import CARD, MASK

pytestmark = pytest.mark.e2e

RULES = [
    {"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card", "action": "block"},
    {"id": "falcon", "name": "Project Falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"},
]
ITEMS = "/admin/review/items"


def reviewer(company, name: str = "reviewer") -> str:
    email = f"{name}@{company.domain}"
    upsert_user(company.tenant, f"{company.tenant}-{name}", email, name.title(), ["member", "reviewer"])
    return email




def set_rules(stack, company, rules=RULES) -> None:
    r = api(stack, company.admin, "PUT", "/admin/dlp/rules", json={"rules": rules})
    assert r.status_code == 200, r.text


async def screened(stack, sessions, company) -> tuple[str, list[int], dict]:
    """A conversation with 4 plain messages, a flagged one (seq 3) and a blocked attempt after seq 5."""
    set_rules(stack, company)
    s = await sessions(company.member)
    conv = (await s.call("conversation.create", kind="group", name="deal",
                         members=[company.user_id(company.other)]))["conversation"]["conversationId"]
    seqs = []
    for body in ("one", "two", "Falcon moves on Friday", "four", "five"):
        seqs.append((await s.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex,
                                  body=body))["message"]["seq"])
    with pytest.raises(ActionError) as err:
        await s.call("message.send", conversationId=conv, clientMessageId="blocked", body=f"pay {CARD} now")
    assert err.value.code == "message_blocked"
    await s.call("message.send", conversationId=conv, clientMessageId="after", body="six, after the attempt")
    return conv, seqs, {"member": company.user_id(company.member)}


async def test_blocked_attempt_in_the_queue_claimed_resolved_exported_and_audited(stack, sessions):
    co = make_company(stack, "rv")
    conv, seqs, who = await screened(stack, sessions, co)
    rv = reviewer(co)
    rv_id = co.user_id(rv)
    listed = ok(api(stack, rv, "GET", ITEMS, params={"state": "open"}), "admin.review.list")["items"]
    assert [(i["kind"], i["action"], i["source"], i["state"]) for i in listed] == \
        [("block", "block", "message", "open"), ("flag", "flag", "message", "open")]
    blocked, flagged = listed
    # the blocked attempt's text as screening keeps it: every match masked, never the value
    assert blocked["excerpt"] == f"pay {MASK} now" and "1111" not in str(listed)
    assert (blocked["conversationId"], blocked["seq"], blocked["sender"]["userId"], blocked["ruleIds"]) == \
        (conv, None, who["member"], ["cards"])
    assert (flagged["seq"], flagged["excerpt"]) == (seqs[2], f"{MASK} moves on Friday")
    # filters: kind, conversation, sender, time, paging
    by = lambda **p: [i["itemId"] for i in ok(api(stack, rv, "GET", ITEMS, params=p), "admin.review.list")["items"]]
    ids = [blocked["itemId"], flagged["itemId"]]
    assert by(kind="block") == [ids[0]] and by(kind="flag", state="open") == [ids[1]]
    assert by(conversationId=conv) == ids and by(conversationId=conv, kind="flag") == [ids[1]]
    assert by(userId=who["member"]) == ids and by(userId=co.user_id(co.other)) == []
    assert by(state="claimed") == [] and by(**{"from": blocked["at"]}) == [ids[0]]
    assert by(to=blocked["at"] - 1) == [ids[1]]
    page = ok(api(stack, rv, "GET", ITEMS, params={"limit": 1, "state": "open"}), "admin.review.list")
    assert [i["itemId"] for i in page["items"]] == [ids[0]] and page["nextCursor"]
    assert by(limit=1, state="open", cursor=page["nextCursor"]) == [ids[1]]
    # one item, with its (empty) history
    item = ok(api(stack, rv, "GET", f"{ITEMS}/{ids[0]}"), "admin.review.get")["item"]
    assert item["history"] == [] and item["claimedBy"] is None
    # a case: the blocked attempt in its context (2 messages before it, 2 after; nothing stored for it)
    case = ok(api(stack, rv, "GET", f"{ITEMS}/{ids[0]}/case", params={"context": 2}), "admin.review.case")["case"]
    ctx = case["context"]
    assert ctx["anchorSeq"] == seqs[4] and ctx["gone"] == [] and ctx["reason"] is None
    assert [(m["seq"], m["body"], m["flagged"]) for m in ctx["messages"]] == \
        [(seqs[3], "four", False), (seqs[4], "five", False), (seqs[4] + 1, "six, after the attempt", False)]
    # the flag's case: the flagged message in the middle
    case = ok(api(stack, rv, "GET", f"{ITEMS}/{ids[1]}/case", params={"context": 1}), "admin.review.case")["case"]
    assert [(m["seq"], m["flagged"]) for m in case["context"]["messages"]] == \
        [(seqs[1], False), (seqs[2], True), (seqs[3], False)]
    # claim, resolve with a note; the history keeps both
    claimed = ok(api(stack, rv, "POST", f"{ITEMS}/{ids[0]}/claim"), "admin.review.claim")["item"]
    assert (claimed["state"], claimed["claimedBy"]) == ("claimed", rv_id)
    assert by(state="claimed") == [ids[0]] and by(state="open") == [ids[1]]
    refused(api(stack, rv, "POST", f"{ITEMS}/{ids[0]}/claim"), "conflict")
    refused(api(stack, rv, "POST", f"{ITEMS}/{ids[1]}/resolve", json={"resolution": "dismissed", "note": "x"}),
            "conflict")  # not claimed
    done = ok(api(stack, rv, "POST", f"{ITEMS}/{ids[0]}/resolve",
                  json={"resolution": "confirmed", "note": "Card number pasted; user coached."}),
              "admin.review.resolve")["item"]
    assert (done["state"], done["resolution"], done["resolvedBy"]) == ("resolved", "confirmed", rv_id)
    assert [(h["event"], h["by"], h.get("resolution")) for h in done["history"]] == \
        [("claim", rv_id, None), ("resolve", rv_id, "confirmed")]
    assert done["history"][1]["note"] == "Card number pasted; user coached."
    assert by(state="resolved") == [ids[0]] and by(state="resolved", kind="flag") == []
    refused(api(stack, rv, "POST", f"{ITEMS}/{ids[0]}/resolve", json={"resolution": "dismissed", "note": "x"}),
            "conflict")
    # a set of cases by conversation
    cases = ok(api(stack, rv, "GET", "/admin/review/cases", params={"conversationId": conv, "context": 0}),
               "admin.review.cases")
    assert [c["item"]["itemId"] for c in cases["cases"]] == ids and cases["exportedBy"] == rv_id
    assert [m["seq"] for m in cases["cases"][1]["context"]["messages"]] == [seqs[2]]
    refused(api(stack, rv, "GET", "/admin/review/cases"), "validation_failed")
    # every read and every change is in the audit log, as the reviewer, for the company's admins
    entries = ok(api(stack, co.admin, "GET", "/admin/audit", params={"actor": rv_id, "limit": 100}),
                 "admin.audit.list")["entries"]
    actions = [e["action"] for e in entries]
    for action in ("review.list", "review.view", "review.case.export", "review.claim", "review.resolve",
                   "review.cases.export"):
        assert action in actions, (action, actions)
    view = next(e for e in entries if e["action"] == "review.view")
    assert view["target"] == ids[0] and view["actor"] == rv_id and view["at"] > 0
    listing = next(e for e in entries if e["action"] == "review.list")
    assert set(listing["after"]["itemIds"]) <= set(ids) and "filters" in listing["after"]
    export = next(e for e in entries if e["action"] == "review.cases.export")
    assert export["target"] == f"conversation:{conv}" and export["after"]["itemIds"] == ids


async def test_blocked_text_kept_hashed_or_dropped_per_company_policy(stack, sessions):
    """Each company's ``blockedText`` decides what its blocked-attempt entries keep; the change is audited."""
    co = make_company(stack, "bt")
    rv = reviewer(co)
    s = await sessions(co.member)
    conv = (await s.call("conversation.create", kind="group", name="bt",
                         members=[co.user_id(co.other)]))["conversation"]["conversationId"]

    async def attempt(policy: str, text: str) -> dict:
        r = api(stack, co.admin, "PUT", "/admin/dlp/rules", json={"rules": RULES, "blockedText": policy})
        assert r.status_code == 200 and r.json()["blockedText"] == policy, r.text
        # A save reaches the other containers' cached rule sets within DLP_CACHE_SECONDS (30 s): a send
        # that a container with the old set screens is blocked all the same, under the old setting.
        deadline = time.monotonic() + 45
        while True:
            with pytest.raises(ActionError) as err:
                await s.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=text)
            assert err.value.code == "message_blocked"
            entry = ok(api(stack, rv, "GET", ITEMS, params={"kind": "block", "limit": 1}),
                       "admin.review.list")["items"][0]
            if entry["textPolicy"] == policy or time.monotonic() > deadline:
                return entry
            await asyncio.sleep(1)

    kept = await attempt("kept", f"pay {CARD} now")
    assert (kept["textPolicy"], kept["text"], kept["textTruncated"], kept["textHash"]) == \
        ("kept", f"pay {CARD} now", False, None)
    assert kept["excerpt"] == f"pay {MASK} now"
    hashed = await attempt("hashed", f"pay {CARD} now")
    again = await attempt("hashed", f"pay {CARD} now")
    other = await attempt("hashed", f"pay {CARD} later")
    assert hashed["textPolicy"] == "hashed" and hashed["text"] is None and hashed["excerpt"] == ""
    assert hashed["textHash"].startswith("hmac-sha256:") and hashed["textHash"] == again["textHash"]
    assert other["textHash"] != hashed["textHash"] and CARD not in str([hashed, again, other])
    dropped = await attempt("dropped", f"pay {CARD} now")
    assert (dropped["textPolicy"], dropped["excerpt"], dropped["text"], dropped["textHash"]) == \
        ("dropped", "", None, None)
    # the item as stored holds no more than the view shows
    stored = DlpFlag.find(co.tenant, dropped["id"])
    assert (stored.excerpt, stored.text, stored.text_hash) == ("", None, None)
    # unchanged when a later save leaves it out; the company's key is never returned
    r = api(stack, co.admin, "PUT", "/admin/dlp/rules", json={"rules": RULES})
    assert r.json()["blockedText"] == "dropped" and "textKey" not in r.text and "text_key" not in r.text
    got = api(stack, co.admin, "GET", "/admin/dlp/rules").json()
    assert got["blockedText"] == "dropped" and set(got) == {"rules", "version", "blockedText", "detectors", "limits"}
    # a bad value is refused; the setting is audited with its before and after
    refused(api(stack, co.admin, "PUT", "/admin/dlp/rules", json={"rules": RULES, "blockedText": "plain"}),
            "validation_failed")
    audit = api(stack, co.admin, "GET", "/admin/audit", params={"actionName": "dlp.rules.update"}).json()
    changes = [(e["before"]["blockedText"], e["after"]["blockedText"]) for e in audit["entries"]
               if (e.get("before") or {}).get("blockedText")]
    assert ("masked", "kept") in changes and ("kept", "hashed") in changes and ("hashed", "dropped") in changes
    # the setting is the admin's: a reviewer (not admin) and a plain member are refused
    refused(api(stack, co.member, "PUT", "/admin/dlp/rules", json={"rules": RULES, "blockedText": "kept"}),
            "forbidden")


async def test_claim_race_exactly_one_reviewer_wins(stack, sessions):
    co = make_company(stack, "rvrace")
    set_rules(stack, co)
    s = await sessions(co.member)
    conv = (await s.call("conversation.create", kind="group", members=[co.user_id(co.other)]))["conversation"]
    for n in range(4):
        with pytest.raises(ActionError):
            await s.call("message.send", conversationId=conv["conversationId"], clientMessageId=f"b{n}",
                         body=f"card {CARD} #{n}")
    first, second = reviewer(co, "ann"), reviewer(co, "ben")
    ids = [i["itemId"] for i in api(stack, first, "GET", ITEMS).json()["items"]]
    assert len(ids) == 4
    # warm both tokens, then both reviewers claim every item at the same moment
    api(stack, first, "GET", ITEMS, params={"limit": 1})
    api(stack, second, "GET", ITEMS, params={"limit": 1})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {(i, who): pool.submit(api, stack, who, "POST", f"{ITEMS}/{i}/claim")
                   for i in ids for who in (first, second)}
        got = {k: f.result() for k, f in futures.items()}
    for i in ids:
        codes = sorted(got[(i, who)].status_code for who in (first, second))
        assert codes == [200, 409], (i, [got[(i, w)].text for w in (first, second)])
        winner = next(w for w in (first, second) if got[(i, w)].status_code == 200)
        stored = DlpFlag.find(co.tenant, i.replace("-", "#", 1))
        assert (stored.state, stored.claimed_by) == ("claimed", co.user_id(winner))
        events = [(h if isinstance(h, dict) else h.as_dict())["event"] for h in stored.history]
        assert events == ["claim"]  # the loser wrote nothing
        loser = second if winner == first else first
        # the loser may neither resolve nor release the winner's claim
        err = refused(api(stack, loser, "POST", f"{ITEMS}/{i}/resolve",
                          json={"resolution": "dismissed", "note": "not mine"}), "forbidden")
        assert err["claimedBy"] == co.user_id(winner)
        refused(api(stack, loser, "POST", f"{ITEMS}/{i}/release"), "forbidden")
    # after the claimant releases, the other reviewer may claim and resolve
    i = ids[0]
    winner = next(w for w in (first, second) if got[(i, w)].status_code == 200)
    loser = second if winner == first else first
    released = ok(api(stack, winner, "POST", f"{ITEMS}/{i}/release"), "admin.review.release")["item"]
    assert (released["state"], released["claimedBy"]) == ("open", None)
    ok(api(stack, loser, "POST", f"{ITEMS}/{i}/claim"), "admin.review.claim")
    done = ok(api(stack, loser, "POST", f"{ITEMS}/{i}/resolve", json={"resolution": "escalated", "note": "legal"}),
              "admin.review.resolve")["item"]
    assert [(h["event"], h["by"]) for h in done["history"]] == [
        ("claim", co.user_id(winner)), ("release", co.user_id(winner)), ("claim", co.user_id(loser)),
        ("resolve", co.user_id(loser))]


def test_release_of_a_stale_claim_by_another_reviewer(stack):
    co = make_company(stack, "rvstale")
    first, second = reviewer(co, "ann"), reviewer(co, "ben")
    now = int(time.time() * 1000)
    flag = DlpFlag(tenant_id=co.tenant, flag_id=f"{now:013d}#{uuid.uuid4().hex}", at=now, source="status",
                   sender_key=f"{co.tenant}#{co.user_id(co.member)}", rule_ids=["x"], action="flag",
                   excerpt="…", state="claimed", claimed_by=co.user_id(first), claimed_at=now - 25 * 3600 * 1000,
                   history=[])
    flag.index_keys()
    flag.save()
    iid = flag.flag_id.replace("#", "-", 1)
    refused(api(stack, second, "POST", f"{ITEMS}/{iid}/resolve", json={"resolution": "dismissed", "note": "x"}),
            "forbidden")
    item = ok(api(stack, second, "POST", f"{ITEMS}/{iid}/release"), "admin.review.release")["item"]
    assert item["state"] == "open" and item["history"][-1]["claimedBy"] == co.user_id(first)
    # an entry written before the queue existed (no state, no index keys) reads as open and can be claimed
    legacy = DlpFlag(tenant_id=co.tenant, flag_id=f"{now - 1:013d}#{uuid.uuid4().hex}", at=now - 1,
                     source="message", conversation_id="c-legacy", sender_key=f"{co.tenant}#{co.user_id(co.member)}",
                     rule_ids=["x"], action="block", excerpt="…")
    legacy.save()
    lid = legacy.flag_id.replace("#", "-", 1)
    assert ok(api(stack, second, "GET", f"{ITEMS}/{lid}"), "admin.review.get")["item"]["state"] == "open"
    ok(api(stack, second, "POST", f"{ITEMS}/{lid}/claim"), "admin.review.claim")
    listed = api(stack, second, "GET", ITEMS, params={"state": "claimed", "kind": "block"}).json()["items"]
    assert [i["itemId"] for i in listed] == [lid]
    listed = api(stack, second, "GET", ITEMS, params={"conversationId": "c-legacy"}).json()["items"]
    assert [i["itemId"] for i in listed] == [lid]
    case = ok(api(stack, second, "GET", f"{ITEMS}/{lid}/case"), "admin.review.case")["case"]
    assert case["context"]["reason"] == "conversation_gone"


async def test_wrong_role_and_wrong_tenant(stack, sessions):
    co, other = make_company(stack, "rvrole"), make_company(stack, "rvother")
    conv, _seqs, _ = await screened(stack, sessions, co)
    rv = reviewer(co)
    iid = api(stack, rv, "GET", ITEMS).json()["items"][0]["itemId"]
    routes = [("GET", ITEMS, None, None), ("GET", f"{ITEMS}/{iid}", None, None),
              ("POST", f"{ITEMS}/{iid}/claim", None, None), ("POST", f"{ITEMS}/{iid}/release", None, None),
              ("POST", f"{ITEMS}/{iid}/resolve", {"resolution": "dismissed", "note": "x"}, None),
              ("GET", f"{ITEMS}/{iid}/case", None, None),
              ("GET", "/admin/review/cases", None, {"conversationId": conv}),
              ("GET", "/admin/dlp/flags", None, None)]
    # a member, and an admin without the reviewer role: forbidden on every review route
    for email in (co.member, co.admin):
        for method, path, body, params in routes:
            r = api(stack, email, method, path, json=body, params=params)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (email, path, r.text)
    # an admin cannot make itself a reviewer; another admin can
    refused(api(stack, co.admin, "PUT", f"/admin/users/{co.user_id(co.admin)}/roles",
                json={"roles": ["admin", "reviewer"]}), "forbidden")
    upsert_user(co.tenant, f"{co.tenant}-admin2", f"admin2@{co.domain}", "Admin 2", ["admin"])
    ok(api(stack, f"admin2@{co.domain}", "PUT", f"/admin/users/{co.user_id(co.admin)}/roles",
           json={"roles": ["admin", "reviewer"]}), "admin.users.roles")
    ok(api(stack, co.admin, "GET", ITEMS), "admin.review.list")
    # taking the role away applies at once (the directory is read on every call)
    ok(api(stack, f"admin2@{co.domain}", "PUT", f"/admin/users/{co.user_id(rv)}/roles", json={"roles": ["member"]}),
       "admin.users.roles")
    refused(api(stack, rv, "GET", ITEMS), "forbidden")
    # another company's reviewer sees nothing of it: an empty queue, not_found for the item
    orv = reviewer(other)
    assert ok(api(stack, orv, "GET", ITEMS), "admin.review.list")["items"] == []
    assert api(stack, orv, "GET", ITEMS, params={"conversationId": conv}).json()["items"] == []
    assert api(stack, orv, "GET", ITEMS, params={"userId": co.user_id(co.member),
                                                 "userTenantId": co.tenant}).json()["items"] == []
    for method, path, body, params in routes[1:6]:
        refused(api(stack, orv, method, path, json=body, params=params), "not_found")
    assert api(stack, orv, "GET", "/admin/review/cases", params={"conversationId": conv}).json()["cases"] == []
    assert DlpFlag.find(co.tenant, iid.replace("-", "#", 1)).review_state == "open"  # nothing changed


async def test_case_context_in_a_shared_conversation_and_after_retention(stack, sessions):
    """B's rule blocks A's user in A's conversation: B's reviewer sees the context B's members could see;
    messages retention removed are listed as gone, not shown."""
    if stack.state_dir is None:
        pytest.skip("needs the local stack's short retention days")
    a, b = make_company(stack, "rva"), make_company(stack, "rvb")
    set_rules(stack, a, [])
    set_rules(stack, b, [RULES[0]])
    connect_companies(stack, a, b)
    sa = await sessions(a.member)
    conv = (await sa.call("conversation.create", kind="direct", memberEmails=[b.member]))["conversation"][
        "conversationId"]
    r = api(stack, a.admin, "PUT", "/admin/retention", json={"days": 1})
    assert r.status_code == 200, r.text
    first = (await sa.call("message.send", conversationId=conv, clientMessageId="m1", body="soon gone"))["message"]
    with pytest.raises(ActionError):
        await sa.call("message.send", conversationId=conv, clientMessageId="m2", body=f"{CARD}")
    rv = reviewer(b)
    [item] = api(stack, rv, "GET", ITEMS).json()["items"]
    assert item["sender"]["tenantId"] == a.tenant and item["kind"] == "block"
    ctx = ok(api(stack, rv, "GET", f"{ITEMS}/{item['itemId']}/case"), "admin.review.case")["case"]["context"]
    assert [(m["seq"], m["body"]) for m in ctx["messages"]] == [(first["seq"], "soon gone")]
    # A's retention (a "day" is seconds here) ends the message: the case no longer shows it
    expires_at = int(Message.find(conv, first["seq"]).expires_at)
    assert expires_at <= time.time() + 2 * RETENTION_DAY_SECONDS
    time.sleep(max(0.0, expires_at - time.time()) + 1)
    ctx = ok(api(stack, rv, "GET", f"{ITEMS}/{item['itemId']}/case"), "admin.review.case")["case"]["context"]
    assert ctx["messages"] == [] and ctx["gone"] == [first["seq"]]
    # A's reviewer has no entry: A's rules did not match
    assert api(stack, reviewer(a), "GET", ITEMS).json()["items"] == []
