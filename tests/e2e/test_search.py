"""People search (``users.search``, ``GET /users``) over real sockets and HTTP (docs/protocol.md "People search").

Prefix of any name or email word, case and accents ignored; active users
only; paged; another company's users only while connected and allowed now;
every directory writer (upsert_user, SCIM create/replace/patch/delete) keeps
the index in step.  Each test builds fresh companies, so nothing leaks between tests.
"""
from __future__ import annotations

import uuid

import jsonschema
import pytest
import requests

from chalicelib.models import User
from chalicelib.protocol import schemas
from chalicelib.services.tenants import upsert_user

from .client import ActionError, token_for
from .test_federation import Company, api, connect_companies, make_company

pytestmark = pytest.mark.e2e


def people(company: Company, *users: tuple[str, str, str]) -> dict[str, str]:
    """Add (local part, display name, status) users to a company; returns local part -> user id."""
    out = {}
    for local, name, status in users:
        uid = f"{company.tenant}-{local.replace('.', '-')}"
        upsert_user(company.tenant, uid, f"{local}@{company.domain}", name, ["member"], status=status)
        out[local] = uid
    return out


async def search(session, q: str, **kw) -> dict:
    result = await session.call("users.search", q=q, **kw)
    jsonschema.validate(result, schemas.RESULTS["users.search"])
    return result


async def names(session, q: str, **kw) -> list[str]:
    return [u["displayName"] for u in (await search(session, q, **kw))["users"]]


@pytest.fixture
def pair(stack):
    return make_company(stack, "srcha"), make_company(stack, "srchb")


async def test_prefix_of_name_and_email_words_case_and_accents(stack, pair, sessions):
    a, b = pair
    ids = people(a, ("bob.smith", "Bob Smith", "active"), ("jim", "Jim Bowen", "active"),
                 ("jn", "José Núñez", "active"), ("zed", "Zed Ölander-Ström", "active"),
                 ("bogart", "Humphrey", "active"))
    people(b, ("bob", "Bob Elsewhere", "active"))  # another, unconnected company: never found
    s = await sessions(a.member)
    # "bo": first names, last names, email local parts; ordered by the matching word, then the name
    found = (await search(s, "bo"))["users"]
    assert [u["displayName"] for u in found] == ["Bob Smith", "Humphrey", "Jim Bowen"]
    bob = found[0]
    assert bob == {"tenantId": a.tenant, "userId": ids["bob.smith"], "displayName": "Bob Smith",
                   "email": f"bob.smith@{a.domain}", "external": False, "active": True}  # users.get's view
    assert await names(s, "BOW") == ["Jim Bowen"]
    assert await names(s, "smi") == ["Bob Smith"]                           # a last name
    assert await names(s, "bob.sm") == ["Bob Smith"]                        # the email's local part
    assert await names(s, f"bob.smith@{a.domain[:5]}") == ["Bob Smith"]     # the full address
    assert await names(s, "bob s") == ["Bob Smith"]                         # every word must match
    assert await names(s, "bob x") == []
    assert await names(s, "jose") == ["José Núñez"]                         # accents ignored both ways
    assert await names(s, "NÚÑ") == ["José Núñez"] == await names(s, "nunez")
    assert await names(s, "strom") == ["Zed Ölander-Ström"] == await names(s, "olander-st")
    assert await names(s, "olanderstrom") == ["Zed Ölander-Ström"]
    assert await names(s, "mem") == ["Member"]  # the seeded-like colleagues too
    assert await names(s, "nobody-by-this-name") == []
    for bad in ("b", " é ", "x y"):  # no word of 2 characters: refused, never a scan of everyone
        with pytest.raises(ActionError) as err:
            await s.call("users.search", q=bad)
        assert err.value.code == "validation_failed", bad
    for fields in ({"q": ""}, {"q": "bo", "limit": 51}, {"q": "bo", "limit": 0}, {"q": "x" * 257}, {},
                   {"q": "bo", "extra": 1}, {"q": "bo", "cursor": "not-a-cursor"}):
        with pytest.raises(ActionError) as err:
            await s.call("users.search", **fields)
        assert err.value.code == "validation_failed", fields


async def test_deactivated_hidden_and_renames_follow(stack, pair, sessions):
    a, _ = pair
    ids = people(a, ("gone", "Bo Gone", "deactivated"), ("bonnie", "Bonnie Parker", "active"))
    s = await sessions(a.member)
    assert await names(s, "bo") == ["Bonnie Parker"]  # the deactivated colleague is never found
    # renamed (and a new email): the old words find nobody, the new ones find her, once
    upsert_user(a.tenant, ids["bonnie"], f"clara@{a.domain}", "Clara Barton", ["member"])
    assert await names(s, "bonnie") == [] and await names(s, "parker") == []
    assert await names(s, "clara") == ["Clara Barton"] == await names(s, "bart")
    # deactivated: gone from search; back: found again
    upsert_user(a.tenant, ids["bonnie"], f"clara@{a.domain}", "Clara Barton", ["member"], status="deactivated")
    assert await names(s, "clara") == []
    upsert_user(a.tenant, ids["bonnie"], f"clara@{a.domain}", "Clara Barton", ["member"])
    assert await names(s, "clara") == ["Clara Barton"]
    upsert_user(a.tenant, ids["gone"], f"gone@{a.domain}", "Bo Gone", ["member"])
    assert await names(s, "bo") == ["Bo Gone"]  # reactivated; "bo" starts no word of Clara's


async def test_paging_is_complete_without_duplicates(stack, pair, sessions):
    a, _ = pair
    # Every user matches "pag" by name and by email: each must still be listed once.
    people(a, *[(f"pager{i}", f"Pager {chr(ord('A') + i)}", "active") for i in range(7)])
    s = await sessions(a.member)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        result = await search(s, "pag", limit=3, cursor=cursor)
        seen += [u["displayName"] for u in result["users"]]
        cursor, pages = result["nextCursor"], pages + 1
        assert len(result["users"]) <= 3
        if cursor is None:
            break
        assert pages < 10
    assert seen == [f"Pager {chr(ord('A') + i)}" for i in range(7)]
    first = await search(s, "pag", limit=3)
    with pytest.raises(ActionError) as err:  # a cursor belongs to its query
        await s.call("users.search", q="pager", cursor=first["nextCursor"])
    assert err.value.code == "validation_failed"
    assert len((await search(s, "pag", limit=50))["users"]) == 7


async def test_other_companies_only_while_connected_and_allowed(stack, pair, sessions):
    a, b = pair
    third = make_company(stack, "srchc")
    people(a, ("bob", "Bob Here", "active"))
    b_ids = people(b, ("bobby", "Bobby There", "active"), ("bo.left", "Bo Left", "deactivated"))
    people(third, ("bob", "Bob Unconnected", "active"))
    s = await sessions(a.member)
    assert await names(s, "bob") == ["Bob Here"]  # not connected: only the own company

    connect_companies(stack, a, b)
    found = (await search(s, "bo"))["users"]
    assert [(u["displayName"], u["external"]) for u in found] == [("Bob Here", False), ("Bobby There", True)]
    assert found[1]["tenantId"] == b.tenant and found[1]["userId"] == b_ids["bobby"]
    # the other side finds us too; the unconnected third company is never found by anyone
    sb = await sessions(b.member)
    assert await names(sb, "bob") == ["Bob Here", "Bobby There"]
    assert "Bob Unconnected" not in await names(s, "bob", limit=50)

    # their policy lists who may talk externally: the others are not found
    r = api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [b.user_id(b.member)]})
    assert r.status_code == 200, r.text
    assert await names(s, "bo") == ["Bob Here"]
    assert [u["external"] for u in (await search(s, "member"))["users"]] == [False, True]
    # our own policy leaves this caller out: nothing of theirs
    assert api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "users", "users": []}).status_code == 200
    assert [u["external"] for u in (await search(s, "member"))["users"]] == [False]
    assert api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all"}).status_code == 200
    # their policy off: nothing of theirs; back on: found again
    assert api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "off"}).status_code == 200
    assert await names(s, "bo") == ["Bob Here"]
    assert api(stack, b.admin, "PUT", "/admin/policy", json={"mode": "partners", "partners": [a.tenant]}).status_code == 200
    assert await names(s, "bo") == ["Bob Here", "Bobby There"]
    # revoked: neither side finds the other
    assert api(stack, a.admin, "POST", f"/admin/connections/{b.tenant}/revoke").status_code == 200
    assert await names(s, "bo") == ["Bob Here"]
    assert await names(sb, "bob") == ["Bobby There"]


async def test_find_then_start_a_direct_conversation_over_rest(stack, pair, sessions):
    a, b = pair
    people(a, ("bob", "Bob Rest", "active"))
    token = token_for(stack, a.member)
    r = requests.get(f"{stack.origin}/users", params={"q": "bo", "limit": 5},
                     headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert r.status_code == 200, r.text
    body = r.json()
    jsonschema.validate(body, schemas.RESPONSES["users.search"])
    assert [u["displayName"] for u in body["users"]] == ["Bob Rest"] and body["nextCursor"] is None
    # the hit's user id is what conversation.create needs
    s = await sessions(a.member)
    conv = (await s.call("conversation.create", kind="direct", members=[body["users"][0]["userId"]]))["conversation"]
    assert conv["kind"] == "direct"
    # errors are structured; another company's token sees only its own company
    r = requests.get(f"{stack.origin}/users", params={"q": "b"}, headers={"Authorization": f"Bearer {token}"},
                     timeout=15)
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    r = requests.get(f"{stack.origin}/users", params={"q": "bo", "limit": "many"},
                     headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    r = api(stack, b.member, "GET", f"/users?q=bob@{a.domain}")
    assert r.status_code == 200 and r.json()["users"] == []
    assert requests.get(f"{stack.origin}/users", params={"q": "bo"}, timeout=15).status_code == 401


# --- SCIM provisioning keeps the index in step ---------------------------------------------------

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def test_scim_create_rename_deactivate_delete(stack, pair, sessions):
    a, _ = pair
    r = api(stack, a.admin, "POST", "/admin/scim/token")
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}", "Content-Type": SCIM_JSON}

    def scim(method, path, body=None):
        resp = requests.request(method, f"{stack.origin}/scim/v2{path}", json=body, headers=headers, timeout=30)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else None

    email = f"dora.{uuid.uuid4().hex[:4]}@{a.domain}"
    user = scim("POST", "/Users", {"schemas": [USER_SCHEMA], "userName": email, "displayName": "Dora Ämundsen",
                                   "emails": [{"value": email, "primary": True}], "active": True})
    s = await sessions(a.member)
    assert await names(s, "amund") == ["Dora Ämundsen"]
    scim("PUT", f"/Users/{user['id']}", {"schemas": [USER_SCHEMA], "userName": email, "displayName": "Dora Explorer",
                                         "emails": [{"value": email, "primary": True}], "active": True})
    assert await names(s, "amund") == [] and await names(s, "explo") == ["Dora Explorer"]
    scim("PATCH", f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": False}]})
    assert await names(s, "dora") == []
    scim("PATCH", f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": True}]})
    assert await names(s, "dora") == ["Dora Explorer"]
    scim("DELETE", f"/Users/{user['id']}")
    assert await names(s, "dora") == []
    assert User.find(a.tenant, user["id"]).status == "deactivated"
