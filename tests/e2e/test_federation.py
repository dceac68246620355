"""Cross-company messaging over real sockets and REST: connections, policies, revoke, audit.

Each test builds its own pair of fresh companies (registered with the dev
IdP like any tenant), so states never leak between tests.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
import requests

from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user

from .client import ActionError, token_for

pytestmark = pytest.mark.e2e


@dataclass
class Company:
    tenant: str
    domain: str
    admin: str
    member: str
    other: str

    def user_id(self, email: str) -> str:
        from chalicelib.models import User

        return User.find_by_email(email).user_id


def make_company(stack, label: str) -> Company:
    tid = f"{label}-{uuid.uuid4().hex[:6]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"{stack.origin}/dev/idp/{tid}", audience="enterprise-chat"))
    c = Company(tid, domain, f"admin@{domain}", f"member@{domain}", f"other@{domain}")
    upsert_user(tid, f"{tid}-admin", c.admin, "Admin", ["admin"])
    upsert_user(tid, f"{tid}-member", c.member, "Member", ["member"])
    upsert_user(tid, f"{tid}-other", c.other, "Other", ["member"])
    return c


def api(stack, email: str, method: str, path: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token_for(stack, email)}"}
    return requests.request(method, f"{stack.origin}{path}", headers=headers, timeout=15, **kw)


def connect_companies(stack, a: Company, b: Company) -> None:
    r = api(stack, a.admin, "POST", "/admin/connections", json={"domain": b.domain})
    assert r.status_code == 201 and r.json()["connection"]["state"] == "invited", r.text
    r = api(stack, b.admin, "POST", f"/admin/connections/{a.tenant}/accept")
    assert r.status_code == 200 and r.json()["connection"]["state"] == "active", r.text


@pytest.fixture
def pair(stack):
    return make_company(stack, "north"), make_company(stack, "south")


def test_invitation_needs_both_admins(stack, pair):
    a, b = pair
    r = api(stack, a.admin, "POST", "/admin/connections", json={"tenantId": b.tenant})
    assert r.json()["connection"]["state"] == "invited"
    # the inviter cannot accept on the other's behalf
    r = api(stack, a.admin, "POST", f"/admin/connections/{b.tenant}/accept")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    # a non-admin of the invited company cannot accept either
    r = api(stack, b.member, "POST", f"/admin/connections/{a.tenant}/accept")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    listed = api(stack, b.admin, "GET", "/admin/connections").json()["connections"]
    assert [(c["peerTenantId"], c["state"]) for c in listed] == [(a.tenant, "pending")]
    r = api(stack, b.admin, "POST", f"/admin/connections/{a.tenant}/decline")
    assert r.json()["connection"]["state"] == "declined"
    # invited again, this time accepted: active on both sides
    connect_companies(stack, a, b)
    assert api(stack, a.admin, "GET", "/admin/connections").json()["connections"][0]["state"] == "active"


async def test_unconnected_companies_cannot_find_each_other(stack, pair, sessions):
    a, b = pair
    s = await sessions(a.member)
    with pytest.raises(ActionError) as err:
        await s.call("conversation.create", kind="direct", memberEmails=[b.member])
    assert err.value.code == "not_found"  # no hint that the address exists


async def test_external_dm_flows_both_ways_and_is_marked(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    res = await sa.call("conversation.create", kind="direct", memberEmails=[b.member])
    conv = res["conversation"]
    assert conv["external"] is True and conv["tenants"] == sorted([a.tenant, b.tenant])
    created = await sb.event("conversation.created")
    assert created["conversation"]["external"] is True
    await sa.call("message.send", conversationId=conv["conversationId"], clientMessageId="x1", body="hello partner")
    ev = await sb.event("message.created", message__conversationId=conv["conversationId"])
    assert ev["message"]["sender"]["tenantId"] == a.tenant
    await sb.call("message.send", conversationId=conv["conversationId"], clientMessageId="y1", body="hi back")
    ev = await sa.event("message.created", message__conversationId=conv["conversationId"])
    assert ev["message"]["sender"]["tenantId"] == b.tenant
    members = await sb.call("member.list", conversationId=conv["conversationId"])
    assert sorted(m["tenantId"] for m in members["members"]) == sorted([a.tenant, b.tenant])
    # a third company sees nothing of it
    c = make_company(stack, "west")
    sc = await sessions(c.member)
    with pytest.raises(ActionError) as err:
        await sc.call("history", conversationId=conv["conversationId"])
    assert err.value.code == "not_found"


async def test_policy_refusal_names_the_side(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="direct", memberEmails=[b.member]))["conversation"]
    r = api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "off"})
    assert r.status_code == 200
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=conv["conversationId"], clientMessageId="p1", body="blocked?")
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == b.tenant
    with pytest.raises(ActionError) as err:
        await sb.call("message.send", conversationId=conv["conversationId"], clientMessageId="p2", body="me too")
    assert err.value.error["side"] == b.tenant
    # only listed users may talk externally: the listed one can, the other cannot start
    api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [b.user_id(b.member)]})
    await sa.call("message.send", conversationId=conv["conversationId"], clientMessageId="p3", body="allowed again")
    await sb.event("message.created", message__conversationId=conv["conversationId"])
    so = await sessions(b.other)
    with pytest.raises(ActionError) as err:
        await so.call("conversation.create", kind="direct", memberEmails=[a.member])
    assert err.value.code == "external_access_revoked" and "not allowed" in err.value.error["reason"]
    # partners mode without the peer listed
    api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "partners", "partners": ["someone-else"]})
    with pytest.raises(ActionError) as err:
        await sb.call("message.send", conversationId=conv["conversationId"], clientMessageId="p4", body="x")
    assert err.value.error["side"] == a.tenant


async def test_time_window_outside_now_refuses(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    sa = await sessions(a.member)
    now = time.gmtime()
    # a one-minute window three hours from now, in UTC: now is outside it
    start_h = (now.tm_hour + 3) % 24
    window = {"start": f"{start_h:02d}:00", "end": f"{start_h:02d}:01"}
    r = api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all", "timezone": "UTC", "windows": [window]})
    assert r.status_code == 200, r.text
    with pytest.raises(ActionError) as err:
        await sa.call("conversation.create", kind="direct", memberEmails=[b.member])
    assert err.value.code == "external_access_revoked" and "time window" in err.value.error["reason"]
    # the same window as "outside" allows now
    api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all", "timezone": "UTC", "windows": [window],
                                                       "windowMode": "outside"})
    await sa.call("conversation.create", kind="direct", memberEmails=[b.member])
    bad = api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all", "timezone": "Mars/Olympus"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_failed"


async def test_revoke_stops_everything_at_once_and_keeps_history(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    sa, sa2, sb = await sessions(a.admin), await sessions(a.member), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.member)],
                          memberEmails=[b.member]))["conversation"]["conversationId"]
    await sa.call("message.send", conversationId=conv, clientMessageId="before", body="before revoke")
    await sb.event("message.created", message__conversationId=conv)
    r = api(stack, b.admin, "POST", f"/admin/connections/{a.tenant}/revoke")
    assert r.json()["connection"]["state"] == "revoked"
    # host side keeps talking among itself; nothing crosses
    await sa.call("message.send", conversationId=conv, clientMessageId="after", body="after revoke")
    await sa2.event("message.created", message__body="after revoke")
    await sa.call("typing.start", conversationId=conv)
    await sb.no_event("message.created", wait=1.0, message__body="after revoke")
    await sb.no_event("typing", wait=0.2)
    # the other side is read-only and sees its own history up to the revocation
    with pytest.raises(ActionError) as err:
        await sb.call("message.send", conversationId=conv, clientMessageId="b1", body="hello?")
    assert err.value.code == "external_access_revoked"
    with pytest.raises(ActionError):
        await sb.call("read", conversationId=conv, seq=1)
    hist = await sb.call("history", conversationId=conv)
    assert [m["body"] for m in hist["messages"]] == ["before revoke"]
    assert [m["body"] for m in (await sa.call("history", conversationId=conv))["messages"]] == \
        ["after revoke", "before revoke"]


async def test_presence_crosses_only_when_shared(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    await sa.call("conversation.create", kind="direct", memberEmails=[b.member])
    roster = await sb.call("presence.subscribe")
    assert a.user_id(a.member) in {e["user"]["userId"] for e in roster["roster"]}
    await sa.call("presence.set", status="busy")
    await sb.event("presence.changed", user__userId=a.user_id(a.member), status="busy")
    api(stack, a.admin, "PUT", f"/admin/connections/{b.tenant}", json={"presence": False})
    await sa.call("presence.set", status="do_not_disturb")
    await sb.no_event("presence.changed", wait=2.5, user__userId=a.user_id(a.member))
    roster = await sb.call("presence.subscribe")
    assert a.user_id(a.member) not in {e["user"]["userId"] for e in roster["roster"]}


def test_audit_log_records_every_admin_action_and_is_read_only(stack, pair):
    a, b = pair
    connect_companies(stack, a, b)
    api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "partners", "partners": [b.tenant]})
    api(stack, a.admin, "PUT", f"/admin/users/{a.user_id(a.member)}/roles", json={"roles": ["admin", "member"]})
    api(stack, a.admin, "PUT", f"/admin/connections/{b.tenant}", json={"files": False})
    entries = api(stack, a.admin, "GET", "/admin/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["connection.settings", "user.roles", "policy.update",
                                              "connection.invite"]
    policy = next(e for e in entries if e["action"] == "policy.update")
    assert policy["before"] == {"mode": "all"} and policy["after"]["partners"] == [b.tenant]
    assert policy["actor"] == a.user_id(a.admin) and policy["sourceIp"] == "127.0.0.1" and policy["requestId"]
    only = api(stack, a.admin, "GET", "/admin/audit", params={"actionName": "user.roles"}).json()["entries"]
    assert [e["action"] for e in only] == ["user.roles"]
    page = api(stack, a.admin, "GET", "/admin/audit", params={"limit": 2}).json()
    rest = api(stack, a.admin, "GET", "/admin/audit", params={"limit": 10, "cursor": page["nextCursor"]}).json()
    assert [e["id"] for e in page["entries"] + rest["entries"]] == [e["id"] for e in entries]
    # the directory pages by user id: one page at a time, every user once
    everyone = api(stack, a.admin, "GET", "/admin/users").json()["users"]
    first = api(stack, a.admin, "GET", "/admin/users", params={"limit": 1}).json()
    second = api(stack, a.admin, "GET", "/admin/users", params={"limit": 10, "cursor": first["nextCursor"]}).json()
    assert len(everyone) >= 2 and [u["userId"] for u in first["users"] + second["users"]] == \
        [u["userId"] for u in everyone]
    # an empty window is the caller's mistake, not a server error (DynamoDB refuses reversed bounds)
    # (screening entries and the review queue are read by the company's reviewers, not its admins)
    from chalicelib.services.tenants import upsert_user

    reviewer = f"reviewer@{a.domain}"
    upsert_user(a.tenant, f"{a.tenant}-reviewer", reviewer, "Reviewer", ["member", "reviewer"])
    for params in ({"from": 2, "to": 1}, {"from": 5, "cursor": "0000000000001#"}):
        for path, who in (("/admin/audit", a.admin), ("/admin/dlp/flags", reviewer),
                          ("/admin/review/items", reviewer)):
            bad = api(stack, who, "GET", path, params=params)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_failed", (path, params)
    # b's log has only b's own action, and nobody can edit or delete entries
    assert [e["action"] for e in api(stack, b.admin, "GET", "/admin/audit").json()["entries"]] == \
        ["connection.accept"]
    for method in ("PUT", "DELETE", "POST"):
        assert api(stack, a.admin, method, "/admin/audit").status_code in (403, 405)


# --- isolation matrix: every admin route x (admin, non-admin, other tenant, no token) ----------

ADMIN_ROUTES = [
    ("GET", "/admin/connections", None),
    ("POST", "/admin/connections", {"tenantId": "{peer}"}),
    ("PUT", "/admin/connections/{peer}", {"presence": True}),
    ("POST", "/admin/connections/{peer}/accept", None),
    ("POST", "/admin/connections/{peer}/decline", None),
    ("POST", "/admin/connections/{peer}/revoke", None),
    ("GET", "/admin/policy", None),
    ("PUT", "/admin/policy", {"mode": "all"}),
    ("GET", "/admin/users", None),
    ("PUT", "/admin/users/{member_id}/roles", {"roles": ["member"]}),
    ("GET", "/admin/audit", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
def test_admin_route_isolation(stack, pair, method, path, body):
    a, b = pair
    fill = {"peer": b.tenant, "member_id": a.user_id(a.member)}
    url = path.format(**fill)
    payload = {k: (v.format(**fill) if isinstance(v, str) else v) for k, v in (body or {}).items()} or None
    # a non-admin of the same tenant: forbidden, nothing changes
    before = api(stack, a.admin, "GET", "/admin/audit").json()["entries"]
    r = api(stack, a.member, method, url, json=payload)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    # no token: unauthorized
    r = requests.request(method, f"{stack.origin}{url}", json=payload, timeout=15)
    assert r.status_code == 401
    assert api(stack, a.admin, "GET", "/admin/audit").json()["entries"] == before
    # another company's admin acting on the same path only ever touches its own tenant
    r = api(stack, b.admin, method, url, json=payload)
    if "member_id" in path:
        assert r.status_code == 404  # a's user is not in b's directory
    elif method == "GET" and path == "/admin/users":
        assert a.member not in {u["email"] for u in r.json()["users"]}
    assert not any(e["actor"] == b.user_id(b.admin) for e in api(stack, a.admin, "GET", "/admin/audit").json()["entries"])
    # the own admin is allowed (or gets a state conflict that is not an access error)
    r = api(stack, a.admin, method, url, json=payload)
    assert r.status_code in (200, 201, 404, 409), r.text
    if r.status_code >= 400:
        assert r.json()["error"]["code"] in ("not_found", "conflict")


# --- isolation matrix: every conversation action from the other company, when policy forbids / after revoke

WRITE_ACTIONS = {
    "message.send": {"clientMessageId": "m", "body": "x"}, "message.edit": {"seq": 1, "body": "x"},
    "message.delete": {"seq": 1}, "reaction.add": {"seq": 1, "emoji": "👍"},
    "reaction.remove": {"seq": 1, "emoji": "👍"}, "read": {"seq": 1}, "typing.start": {}, "typing.stop": {},
}
READ_ACTIONS = {"conversation.get": {}, "history": {}, "member.list": {}, "message.revisions": {"seq": 1},
                "thread.history": {"rootSeq": 1}}
MANAGER_ACTIONS = {"conversation.update": {"topic": "t"}, "member.add": {"userIds": ["x"]},
                   "member.remove": {"userId": "x"}, "member.role": {"userId": "x", "role": "admin"}}


@pytest.mark.parametrize("case", ["policy_forbids", "revoked"])
async def test_external_member_matrix(stack, pair, sessions, case):
    a, b = pair
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", memberEmails=[b.member]))["conversation"]
    cid = conv["conversationId"]
    await sb.call("message.send", conversationId=cid, clientMessageId="own", body="mine")  # seq 1, b's message
    if case == "policy_forbids":
        api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "off"})
    else:
        api(stack, a.admin, "POST", f"/admin/connections/{b.tenant}/revoke")
    outcomes = {}
    for action, fields in {**WRITE_ACTIONS, **READ_ACTIONS, **MANAGER_ACTIONS}.items():
        reply = await sb.raw(action, conversationId=cid, **fields)
        outcomes[action] = reply["error"]["code"] if reply["type"] == "error" else "ok"
    expected = {**{k: "external_access_revoked" for k in WRITE_ACTIONS},
                **{k: "ok" for k in READ_ACTIONS}, **{k: "forbidden" for k in MANAGER_ACTIONS}}
    if case == "policy_forbids":  # nothing new may be pulled while a policy refuses (policy.read_cutoff)
        expected.update({k: "external_access_revoked" for k in ("history", "message.revisions", "thread.history")})
    assert outcomes == expected
    # and nothing b tried reached a
    await sa.no_event("message.created", wait=0.5, message__body="x")


async def test_users_mode_by_directory_group_over_both_companies(stack, pair, sessions):
    """`"mode": "users"` with `groups` only (federation.md): a user in an allowed directory group (the
    names SCIM Groups write into `User.groups`) may talk externally, in both directions; a user outside
    it may not, and leaving the group ends it.  The other company's own policy is `all` throughout."""
    from chalicelib.services.directory import retag_user

    a, b = pair
    connect_companies(stack, a, b)
    retag_user(b.tenant, b.user_id(b.member), add=["sales"])
    retag_user(b.tenant, b.user_id(b.other), add=["engineering"])
    r = api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "users", "groups": ["sales"]})
    assert r.status_code == 200, r.text
    sa, sb, so = await sessions(a.member), await sessions(b.member), await sessions(b.other)

    # In the group: starts a conversation with the other company, and is reached from it.
    conv = (await sb.call("conversation.create", kind="direct", memberEmails=[a.member]))["conversation"]
    cid = conv["conversationId"]
    await sa.event("conversation.created", conversation__conversationId=cid)
    await sa.call("message.send", conversationId=cid, clientMessageId="g1", body="hello sales")
    assert (await sb.event("message.created", message__conversationId=cid))["message"]["body"] == "hello sales"
    await sb.call("message.send", conversationId=cid, clientMessageId="g2", body="hello back")
    await sa.event("message.created", message__conversationId=cid)

    # Not in the group: refused both ways, the refusal naming b's policy.
    with pytest.raises(ActionError) as err:
        await so.call("conversation.create", kind="direct", memberEmails=[a.member])
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == b.tenant
    assert "not allowed" in err.value.error["reason"]
    with pytest.raises(ActionError) as err:
        await sa.call("conversation.create", kind="direct", memberEmails=[b.other])
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == b.tenant

    # Leaving the group ends it: their direct conversation refuses new writes from either person
    # (policy.write_access checks both people of a direct conversation).
    retag_user(b.tenant, b.user_id(b.member), remove=["sales"])
    with pytest.raises(ActionError) as err:
        await sb.call("message.send", conversationId=cid, clientMessageId="g3", body="still here?")
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == b.tenant
    with pytest.raises(ActionError) as err:
        await sa.call("message.send", conversationId=cid, clientMessageId="g4", body="hello?")
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == b.tenant
