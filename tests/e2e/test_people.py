"""``users.get`` over real sockets: display names for the user keys a client sees.

Own company: everyone (deactivated users by name, without email).  Another
company: only while connected and allowed now, and only users that company
lets talk externally; everything else is ``notFound`` alike.
"""
from __future__ import annotations

import uuid

import jsonschema
import pytest

from chalicelib.protocol import schemas
from chalicelib.services.tenants import upsert_user

from .client import ActionError
from .test_federation import Company, api, connect_companies, make_company

pytestmark = pytest.mark.e2e


def key(company: Company, email: str) -> str:
    return f"{company.tenant}#{company.user_id(email)}"


async def lookup(session, keys: list[str]) -> tuple[dict[str, dict], list[str]]:
    result = await session.call("users.get", keys=keys)
    jsonschema.validate(result, schemas.RESULTS["users.get"])
    return {f"{u['tenantId']}#{u['userId']}": u for u in result["users"]}, result["notFound"]


@pytest.fixture
def pair(stack):
    return make_company(stack, "ppla"), make_company(stack, "pplb")


async def test_same_company_names_and_unknown_keys(stack, pair, sessions):
    a, b = pair
    gone_id = f"{a.tenant}-gone"
    upsert_user(a.tenant, gone_id, f"gone@{a.domain}", "Gone Person", ["member"], status="deactivated")
    s = await sessions(a.member)
    unknown = f"{a.tenant}#{uuid.uuid4()}"
    keys = [key(a, a.other), key(a, a.admin), unknown, key(b, b.member), f"{a.tenant}#{gone_id}",
            key(a, a.other)]
    found, missing = await lookup(s, keys)
    assert list(found) == [key(a, a.other), key(a, a.admin), f"{a.tenant}#{gone_id}"]  # request order, deduplicated
    other = found[key(a, a.other)]
    assert other == {"tenantId": a.tenant, "userId": a.user_id(a.other), "displayName": "Other",
                     "email": a.other, "external": False, "active": True}
    # a deactivated colleague keeps a name (old messages), not an email
    assert found[f"{a.tenant}#{gone_id}"] == {"tenantId": a.tenant, "userId": gone_id, "displayName": "Gone Person",
                                              "email": None, "external": False, "active": False}
    # unknown and another, unconnected company's user: the same answer
    assert missing == [unknown, key(b, b.member)]


async def test_connected_company_then_policy_off_then_revoked(stack, pair, sessions):
    a, b = pair
    connect_companies(stack, a, b)
    upsert_user(b.tenant, f"{b.tenant}-left", f"left@{b.domain}", "Left", ["member"], status="deactivated")
    s = await sessions(a.member)
    them, left = key(b, b.member), f"{b.tenant}#{b.tenant}-left"
    found, missing = await lookup(s, [them, key(a, a.other), left])
    assert found[them] == {"tenantId": b.tenant, "userId": b.user_id(b.member), "displayName": "Member",
                           "email": b.member, "external": True, "active": True}
    assert found[key(a, a.other)]["external"] is False
    assert missing == [left]  # another company's departed user is not theirs to show

    # that company lists who may talk externally: the others cannot be enumerated by id
    r = api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [b.user_id(b.member)]})
    assert r.status_code == 200, r.text
    found, missing = await lookup(s, [them, key(b, b.other)])
    assert list(found) == [them] and missing == [key(b, b.other)]

    # the caller's own company restricts external access to others: nothing crosses for this caller
    r = api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [a.user_id(a.other)]})
    assert r.status_code == 200, r.text
    found, missing = await lookup(s, [them])
    assert found == {} and missing == [them]
    assert api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all"}).status_code == 200

    # policy off on their side: refused
    assert api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "off"}).status_code == 200
    found, missing = await lookup(s, [them])
    assert found == {} and missing == [them]
    assert api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "all"}).status_code == 200
    found, _ = await lookup(s, [them])
    assert list(found) == [them]

    # revoked: refused from both sides, own colleagues unaffected
    assert api(stack, a.admin, "POST", f"/admin/connections/{b.tenant}/revoke").status_code == 200
    found, missing = await lookup(s, [them, key(a, a.other)])
    assert list(found) == [key(a, a.other)] and missing == [them]
    sb = await sessions(b.member)
    found, missing = await lookup(sb, [key(a, a.member)])
    assert found == {} and missing == [key(a, a.member)]


async def test_bad_requests_are_validation_failed(stack, pair, sessions):
    a, _ = pair
    s = await sessions(a.member)
    good = key(a, a.other)
    for keys in ([good] * 101, [], ["no-hash-here"], [f"{good}#extra"], [f"#{a.user_id(a.other)}"],
                 [f"{a.tenant}#"], [f"{a.tenant}#bad id"], [123], "acme#x"):
        with pytest.raises(ActionError) as err:
            await s.call("users.get", keys=keys)
        assert err.value.code == "validation_failed", keys
    with pytest.raises(ActionError) as err:
        await s.call("users.get")
    assert err.value.code == "validation_failed"
    with pytest.raises(ActionError) as err:
        await s.call("users.get", keys=[good], extra=True)
    assert err.value.code == "validation_failed"
    found, _ = await lookup(s, [good] * 100)  # 100 is the limit, duplicates included
    assert list(found) == [good]
