"""Screening (DLP) over real sockets and REST: rules, block/redact/flag, file names, external merge, isolation.

Each test builds fresh companies (tests/e2e/test_federation.py helpers) and
sets their rules once, before their first message: no container can hold an
older cached rule set for them, so the tests need no short DLP_CACHE_SECONDS
and run the same against a deployed stage.
"""
from __future__ import annotations

import pytest
import requests

from .client import ActionError
from .test_federation import api, connect_companies, make_company

pytestmark = pytest.mark.e2e

CARD = "4111 1111 1111 1111"
SSN = "536-22-8745"
MASK = "[redacted]"
RULES = [
    {"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card", "action": "block"},
    {"id": "ssn", "type": "detector", "detector": "us_ssn", "action": "redact"},
    {"id": "falcon", "name": "Project Falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"},
]


def set_rules(stack, company, rules, **extra):
    r = api(stack, company.admin, "PUT", "/admin/dlp/rules", json={"rules": rules, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def reviewer_of(company) -> str:
    """The company's reviewer (compliance officer): reading what screening caught is theirs, not the admins'
    (docs/compliance.md "Review queue"); created on first use."""
    from chalicelib.services.tenants import upsert_user

    email = f"reviewer@{company.domain}"
    upsert_user(company.tenant, f"{company.tenant}-reviewer", email, "Reviewer", ["member", "reviewer"])
    return email


def flags(stack, company, **params):
    r = api(stack, reviewer_of(company), "GET", "/admin/dlp/flags", params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def company(stack):
    return make_company(stack, "dlp")


async def group_of(sessions, company):
    sa, sb = await sessions(company.member), await sessions(company.other)
    conv = (await sa.call("conversation.create", kind="group", name="screened",
                          members=[company.user_id(company.other)]))["conversation"]["conversationId"]
    await sb.event("conversation.created")
    return sa, sb, conv


def test_rules_are_validated_versioned_and_audited(stack, company):
    got = api(stack, company.admin, "GET", "/admin/dlp/rules").json()
    assert got["rules"] == [] and got["version"] == 0 and "payment_card" in got["detectors"]
    for pattern, words in ((r"(a)\1", "backreferences"), (r"secret(?=[0-9])", "lookaround"),
                           ("x" * 257, "256")):
        r = api(stack, company.admin, "PUT", "/admin/dlp/rules",
                json={"rules": RULES + [{"id": "bad-rule", "type": "regex", "pattern": pattern, "action": "block"}]})
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "validation_failed", r.text
        assert err["ruleId"] == "bad-rule" and "'bad-rule'" in err["message"] and words in err["message"]
    r = api(stack, company.admin, "PUT", "/admin/dlp/rules", json={"rules": [{"id": "x", "type": "regex"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    saved = set_rules(stack, company, RULES, version=0)
    assert saved["version"] == 1 and saved["rules"][1]["name"] == "ssn" and saved["rules"][2]["caseSensitive"] is False
    assert api(stack, company.admin, "GET", "/admin/dlp/rules").json()["rules"] == saved["rules"]
    stale = api(stack, company.admin, "PUT", "/admin/dlp/rules", json={"rules": [], "version": 0})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"
    entry = api(stack, company.admin, "GET", "/admin/audit", params={"actionName": "dlp.rules.update"}).json()
    assert len(entry["entries"]) == 1
    assert entry["entries"][0]["before"] == {"version": 0, "rules": [], "blockedText": "masked"}
    assert entry["entries"][0]["after"]["rules"] == saved["rules"]


def test_routes_refuse_members_and_never_show_another_company(stack, company):
    other = make_company(stack, "dlp-other")
    set_rules(stack, company, RULES)
    for method, path, body in (("GET", "/admin/dlp/rules", None), ("PUT", "/admin/dlp/rules", {"rules": []}),
                               ("GET", "/admin/dlp/flags", None)):
        r = api(stack, company.member, method, path, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
    # separation of duties: admins manage the rules, only reviewers read the entries (and vice versa)
    r = api(stack, company.admin, "GET", "/admin/dlp/flags")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    for method, path, body in (("GET", "/admin/dlp/rules", None), ("PUT", "/admin/dlp/rules", {"rules": []})):
        r = api(stack, reviewer_of(company), method, path, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
    # the other company's admin (and reviewer) sees (and changes) only its own rule set and flags
    assert api(stack, other.admin, "GET", "/admin/dlp/rules").json()["rules"] == []
    set_rules(stack, other, [{"id": "only-mine", "type": "keyword", "keywords": ["zz"], "action": "flag"}])
    assert [r["id"] for r in api(stack, company.admin, "GET", "/admin/dlp/rules").json()["rules"]] == \
        ["cards", "ssn", "falcon"]
    assert flags(stack, other)["flags"] == []
    # no token at all
    r = requests.get(f"{stack.origin}/admin/dlp/flags", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_block_redact_and_flag_on_send_and_edit(stack, company, sessions):
    set_rules(stack, company, RULES)
    sa, sb, conv = await group_of(sessions, company)
    # block: a structured error naming the rule, never the content; nothing stored or delivered
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv, clientMessageId="m1", body=f"card {CARD} ok?")
    e = err.value.error
    assert (e["code"], e["ruleId"], e["ruleName"], e["side"]) == ("message_blocked", "cards", "Payment cards",
                                                                  company.tenant)
    assert "1111" not in str(e)
    await sb.no_event("message.created", wait=1.0)
    assert (await sa.call("history", conversationId=conv))["messages"] == []
    # the same over REST: 422 with the same body
    r = api(stack, company.member, "POST", f"/conversations/{conv}/messages",
            json={"clientMessageId": "m2", "body": f"again {CARD}"})
    assert r.status_code == 422 and r.json()["error"]["ruleId"] == "cards"
    # redact: stored and delivered with the span replaced
    sent = await sa.call("message.send", conversationId=conv, clientMessageId="m3", body=f"my ssn is {SSN}.")
    assert sent["message"]["body"] == f"my ssn is {MASK}."
    ev = await sb.event("message.created", message__seq=sent["message"]["seq"])
    assert ev["message"]["body"] == f"my ssn is {MASK}."
    # flag: delivered as is, one review entry with the match masked
    sent = await sa.call("message.send", conversationId=conv, clientMessageId="m4", body="Falcon launches Friday")
    ev = await sb.event("message.created", message__seq=sent["message"]["seq"])
    assert ev["message"]["body"] == "Falcon launches Friday"
    listed = flags(stack, company)["flags"]
    # the two refused sends left blocked-attempt entries (masked, no message), older than the flag
    assert [(x["action"], x["source"], x["conversationId"], x["seq"], x["messageId"], x["ruleIds"], x["excerpt"])
            for x in listed[1:]] == [("block", "message", conv, None, None, ["cards"], f"again {MASK}"),
                                     ("block", "message", conv, None, None, ["cards"], f"card {MASK} ok?")]
    assert all(x["sender"]["userId"] == company.user_id(company.member) for x in listed)
    f = listed[0]
    assert (f["source"], f["conversationId"], f["seq"], f["messageId"], f["ruleIds"], f["action"]) == \
        ("message", conv, sent["message"]["seq"], sent["message"]["messageId"], ["falcon"], "flag")
    assert f["sender"] == {"tenantId": company.tenant, "userId": company.user_id(company.member)}
    assert f["excerpt"] == f"{MASK} launches Friday"
    # edit: a block leaves the message as it was; a redact stores the masked text; a flag is recorded
    seq = sent["message"]["seq"]
    with pytest.raises(ActionError) as err:
        await sa.call("message.edit", conversationId=conv, seq=seq, body=f"pay {CARD}")
    assert err.value.code == "message_blocked"
    hist = await sa.call("history", conversationId=conv)
    assert hist["messages"][0]["body"] == "Falcon launches Friday" and hist["messages"][0]["editedAt"] is None
    edited = await sa.call("message.edit", conversationId=conv, seq=seq, body=f"falcon: ssn {SSN}")
    assert edited["message"]["body"] == f"falcon: ssn {MASK}"
    ev = await sb.event("message.edited", message__seq=seq)
    assert ev["message"]["body"] == f"falcon: ssn {MASK}"
    newest, blocked_edit = flags(stack, company)["flags"][:2]
    assert (newest["source"], newest["action"], newest["seq"]) == ("edit", "redact", seq)
    assert SSN not in newest["excerpt"] and newest["excerpt"] == f"{MASK}: ssn {MASK}"
    # the refused edit is recorded with the message it was about
    assert (blocked_edit["source"], blocked_edit["action"], blocked_edit["seq"], blocked_edit["messageId"],
            blocked_edit["excerpt"]) == ("edit", "block", seq, sent["message"]["messageId"], f"pay {MASK}")
    # paging and time filters
    page = flags(stack, company, limit=1)
    assert len(page["flags"]) == 1 and page["nextCursor"]
    rest = flags(stack, company, limit=1, cursor=page["nextCursor"])
    assert rest["flags"][0]["id"] == blocked_edit["id"]
    assert [x["action"] for x in flags(stack, company, to=f["at"] - 1)["flags"]] == ["block", "block"]
    assert [x["id"] for x in flags(stack, company, **{"from": f["at"], "to": f["at"]})["flags"]] == [f["id"]]


async def test_file_names_are_screened(stack, company, sessions):
    set_rules(stack, company, RULES)
    sa, _sb, conv = await group_of(sessions, company)
    upload = dict(conversationId=conv, size=10, contentType="text/plain")
    with pytest.raises(ActionError) as err:
        await sa.call("file.upload.request", name=f"{CARD}.txt", **upload)
    assert err.value.code == "message_blocked" and err.value.error["ruleId"] == "cards"
    grant = await sa.call("file.upload.request", name=f"ssn {SSN}.txt", **upload)
    assert grant["file"]["name"] == f"ssn {MASK}.txt" and SSN.replace("-", "") not in grant["upload"]["fields"]["key"]
    grant = await sa.call("file.upload.request", name="falcon-plan.txt", **upload)
    f, *older = flags(stack, company)["flags"]
    assert (f["source"], f["fileId"], f["ruleIds"], f["seq"]) == ("file", grant["file"]["fileId"], ["falcon"], None)
    assert [(x["source"], x["action"], x["fileId"], x["excerpt"]) for x in older] == \
        [("file", "block", None, f"{MASK}.txt")]


async def test_external_conversation_applies_both_companies_rules_strictest_wins(stack, sessions):
    a, b = make_company(stack, "dlp-north"), make_company(stack, "dlp-south")
    set_rules(stack, a, [{"id": "a-cards", "type": "detector", "detector": "payment_card", "action": "flag"}])
    set_rules(stack, b, [{"id": "b-cards", "type": "detector", "detector": "payment_card", "action": "redact"},
                         {"id": "b-secret", "name": "Secret project", "type": "keyword", "keywords": ["falcon"],
                          "action": "block"}])
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="direct", memberEmails=[b.member]))["conversation"]
    conv_id = conv["conversationId"]
    assert conv["external"] is True
    # A's flag and B's redact both match: redact wins for everyone, A still gets its review entry
    sent = await sa.call("message.send", conversationId=conv_id, clientMessageId="x1", body=f"card {CARD}")
    assert sent["message"]["body"] == f"card {MASK}"
    ev = await sb.event("message.created", message__conversationId=conv_id)
    assert ev["message"]["body"] == f"card {MASK}"
    fa = flags(stack, a)["flags"]
    assert [(x["ruleIds"], x["action"], x["conversationId"]) for x in fa] == [(["a-cards"], "redact", conv_id)]
    assert "1111" not in fa[0]["excerpt"]
    assert flags(stack, b)["flags"] == []  # B's rule redacted, it flags nothing
    # B's block applies to A's sender too, and the error says whose rule it is
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv_id, clientMessageId="x2", body="about Falcon")
    assert (err.value.error["ruleId"], err.value.error["side"]) == ("b-secret", b.tenant)
    with pytest.raises(ActionError) as err:
        await sb.call("message.send", conversationId=conv_id, clientMessageId="y1", body="falcon?")
    assert err.value.error["side"] == b.tenant
    await sa.no_event("message.created", wait=1.0, message__conversationId=conv_id)
    # B's member's card goes through redacted, and A (flag) gets the entry, B (redact) none
    await sb.call("message.send", conversationId=conv_id, clientMessageId="y2", body=f"mine: {CARD}")
    ev = await sa.event("message.created", message__conversationId=conv_id)
    assert ev["message"]["body"] == f"mine: {MASK}"
    newest = flags(stack, a)["flags"][0]
    assert newest["sender"]["tenantId"] == b.tenant and newest["ruleIds"] == ["a-cards"]
    # both refusals are B's blocked attempts (B's rule matched), whoever sent them; A's rules did not block: none for A
    blocked = [x for x in flags(stack, b)["flags"] if x["action"] == "block"]
    assert [(x["sender"]["tenantId"], x["ruleIds"], x["conversationId"], x["excerpt"]) for x in blocked] == \
        [(b.tenant, ["b-secret"], conv_id, MASK + "?"), (a.tenant, ["b-secret"], conv_id, f"about {MASK}")]
    # neither admin can see the other company's rules or flags
    assert [r["id"] for r in api(stack, a.admin, "GET", "/admin/dlp/rules").json()["rules"]] == ["a-cards"]
    assert all(f["ruleIds"] == ["a-cards"] and f["action"] != "block" for f in flags(stack, a)["flags"])


async def test_pathological_pattern_is_linear_and_unsupported_one_refused(stack, company, sessions):
    refused = api(stack, company.admin, "PUT", "/admin/dlp/rules",
                  json={"rules": [{"id": "backref", "type": "regex", "pattern": r"(a)\1", "action": "block"}]})
    assert refused.status_code == 400 and refused.json()["error"]["ruleId"] == "backref"
    set_rules(stack, company, [{"id": "evil", "type": "regex", "pattern": "(a+)+$", "action": "block"}])
    sa, sb, conv = await group_of(sessions, company)
    # 8 KB of a's then b: exponential for a backtracking engine, one linear pass for re2
    body = "a" * 8000 + "b"
    sent = await sa.call("message.send", conversationId=conv, clientMessageId="p1", body=body)
    await sb.event("message.created", message__seq=sent["message"]["seq"])
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv, clientMessageId="p2", body="b" + "a" * 8000)
    assert err.value.error["ruleId"] == "evil"


# Evasion forms (tests/unit/test_dlp_evasion.py has them all): sends and edits are screened on the folded text.
EVASIONS = {  # id -> (the rule that must block it, the form)
    "card-zero-width": ("cards", "\u200b".join(CARD.replace(" ", ""))),
    "card-fullwidth-digits": ("cards", "".join(chr(0xFF10 + int(d)) if d != " " else " " for d in CARD)),
    "card-arabic-indic-digits": ("cards", "".join(chr(0x0660 + int(d)) if d != " " else " " for d in CARD)),
    "card-dots": ("cards", CARD.replace(" ", ".")),
    "card-nbsp-newline-en-dash": ("cards", "4111\u00a01111\n1111\u20131111"),
    "keyword-cyrillic": ("px", "prојеctx"),  # Cyrillic о, е, ј
    "keyword-soft-hyphen": ("px", "pro\u00adjectx"),
    "keyword-combining-accent": ("px", "pr\u0301ojectx"),
}
EVASION_RULES = [
    {"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card", "action": "block"},
    {"id": "px", "name": "Project X", "type": "keyword", "keywords": ["projectx"], "action": "block"},
]


@pytest.mark.parametrize("rule,form", EVASIONS.values(), ids=EVASIONS.keys())
async def test_evasion_forms_are_blocked_on_send_and_edit(stack, sessions, rule, form):
    company = make_company(stack, "dlp-evade")
    set_rules(stack, company, EVASION_RULES)
    sa, sb, conv = await group_of(sessions, company)
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv, clientMessageId="e1", body=f"see {form} ok")
    assert (err.value.code, err.value.error["ruleId"]) == ("message_blocked", rule)
    await sb.no_event("message.created", wait=0.5)
    sent = await sa.call("message.send", conversationId=conv, clientMessageId="e2", body="nothing to see")
    with pytest.raises(ActionError) as err:
        await sa.call("message.edit", conversationId=conv, seq=sent["message"]["seq"], body=f"now {form}")
    assert (err.value.code, err.value.error["ruleId"]) == ("message_blocked", rule)
    hist = await sa.call("history", conversationId=conv)
    assert [(m["body"], m["editedAt"]) for m in hist["messages"]] == [("nothing to see", None)]


async def test_blocked_attempt_is_recorded_for_each_company_whose_block_rule_matched(stack, sessions):
    a, b, c = make_company(stack, "dlp-east"), make_company(stack, "dlp-west"), make_company(stack, "dlp-third")
    set_rules(stack, a, [{"id": "a-cards", "type": "detector", "detector": "payment_card", "action": "flag"},
                         {"id": "a-orion", "name": "Orion", "type": "keyword", "keywords": ["orion"],
                          "action": "block"}])
    set_rules(stack, b, [{"id": "b-cards", "name": "Cards", "type": "detector", "detector": "payment_card",
                          "action": "block"}])
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    conv_id = (await sa.call("conversation.create", kind="direct", memberEmails=[b.member]))["conversation"][
        "conversationId"]
    # only B's rule blocks: B records the attempt, A (whose rule only flags, nothing was stored) records nothing
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv_id, clientMessageId="b1", body=f"pay to {CARD} please")
    assert (err.value.code, err.value.error["side"]) == ("message_blocked", b.tenant)
    [rec] = flags(stack, b)["flags"]
    assert (rec["action"], rec["source"], rec["conversationId"], rec["seq"], rec["ruleIds"]) == \
        ("block", "message", conv_id, None, ["b-cards"])
    assert rec["sender"] == {"tenantId": a.tenant, "userId": a.user_id(a.member)}
    assert rec["excerpt"] == f"pay to {MASK} please" and "1111" not in str(rec)
    assert flags(stack, a)["flags"] == []
    # both companies' block rules match: each gets its own record, A's rule is the one named
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv_id, clientMessageId="b2", body=f"Orion card {CARD}")
    assert (err.value.error["ruleId"], err.value.error["side"]) == ("a-orion", a.tenant)
    [mine] = flags(stack, a)["flags"]
    assert (mine["action"], mine["ruleIds"], mine["excerpt"]) == ("block", ["a-orion"], f"{MASK} card {MASK}")
    theirs = flags(stack, b)["flags"]
    assert [x["ruleIds"] for x in theirs] == [["b-cards"], ["b-cards"]]
    assert theirs[0]["excerpt"] == f"{MASK} card {MASK}"
    await sb.no_event("message.created", wait=0.5)
    # tenant isolation: a third company's reviewer sees none of it, B's reviewer none of A's record
    assert flags(stack, c)["flags"] == []
    assert mine["id"] not in {x["id"] for x in theirs}


NAME_RULES = EVASION_RULES + [
    {"id": "ssn", "type": "detector", "detector": "us_ssn", "action": "redact"},
    {"id": "falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"},
]
LOOKALIKE = EVASIONS["keyword-cyrillic"][1]  # "projectx" with Cyrillic letters


async def test_names_topics_statuses_and_reactions_are_screened(stack, company, sessions):
    set_rules(stack, company, NAME_RULES)
    sa, sb = await sessions(company.member), await sessions(company.other)
    other = company.user_id(company.other)

    async def refused(action, rule, **fields):
        with pytest.raises(ActionError) as err:
            await sa.call(action, **fields)
        assert (err.value.code, err.value.error["ruleId"]) == ("message_blocked", rule), (action, fields)
        assert "1111" not in str(err.value.error)

    # conversation.create: a card or a look-alike keyword in the name or the topic refuses it; nothing is created
    await refused("conversation.create", "cards", kind="group", name=f"deal {CARD}", members=[other])
    await refused("conversation.create", "px", kind="group", name=f"team {LOOKALIKE}", members=[other])
    await refused("conversation.create", "cards", kind="channel", name="plans", topic=f"pay {CARD}")
    await sb.no_event("conversation.created", wait=0.5)
    assert (await sa.call("conversation.list"))["conversations"] == []
    # redact in a topic at create and update; a flag is stored as typed and recorded
    created = (await sa.call("conversation.create", kind="group", name="falcon team", topic=f"ssn {SSN}",
                             members=[other]))["conversation"]
    conv = created["conversationId"]
    assert (created["name"], created["topic"]) == ("falcon team", f"ssn {MASK}")
    await sb.event("conversation.created")
    await refused("conversation.update", "cards", conversationId=conv, topic=f"card {CARD}")
    await refused("conversation.update", "px", conversationId=conv, name=LOOKALIKE)
    updated = (await sa.call("conversation.update", conversationId=conv, topic=f"new ssn {SSN}"))["conversation"]
    assert updated["topic"] == f"new ssn {MASK}"
    got = (await sb.call("conversation.get", conversationId=conv))["conversation"]
    assert (got["name"], got["topic"]) == ("falcon team", f"new ssn {MASK}")
    # custom status: the user's own company's rules
    await refused("presence.custom", "cards", text=f"card {CARD}")
    await refused("presence.custom", "px", text=f"on {LOOKALIKE}")
    status = await sa.call("presence.custom", text=f"ssn {SSN}")
    assert status["custom"]["text"] == f"ssn {MASK}"
    # reactions: a card or a look-alike keyword as the emoji key is refused and not stored
    sent = await sa.call("message.send", conversationId=conv, clientMessageId="r1", body="hello")
    seq = sent["message"]["seq"]
    await refused("reaction.add", "cards", conversationId=conv, seq=seq, emoji=CARD.replace(" ", ""))
    await refused("reaction.add", "px", conversationId=conv, seq=seq, emoji=LOOKALIKE)
    await sb.no_event("reaction.changed", wait=0.5)
    assert (await sa.call("reaction.add", conversationId=conv, seq=seq, emoji="👍"))["reactions"] == {"👍": 1}
    # the review list: every refusal as a blocked attempt by source, masked; the flagged name once
    listed = flags(stack, company)["flags"]
    blocked = [(x["source"], x["ruleIds"][0], x["conversationId"]) for x in listed if x["action"] == "block"]
    assert blocked == [("reaction", "px", conv), ("reaction", "cards", conv), ("status", "px", None),
                       ("status", "cards", None), ("name", "px", conv), ("topic", "cards", conv),
                       ("topic", "cards", None), ("name", "px", None), ("name", "cards", None)]
    assert [x["seq"] for x in listed if x["source"] == "reaction"] == [seq, seq]
    assert [(x["source"], x["action"], x["conversationId"], x["excerpt"]) for x in listed if x["action"] != "block"] \
        == [("name", "flag", conv, f"{MASK} team")]
    for x in listed:
        assert "1111" not in x["excerpt"] and LOOKALIKE not in x["excerpt"] and SSN not in x["excerpt"]
