"""SCIM 2.0 directory sync over real HTTP, deactivation over real sockets (docs/scim.md)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import requests

from chalicelib.models import User

from .client import craft, handshake_status, token_for

pytestmark = pytest.mark.e2e

SCIM_JSON = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _admin(stack, email):
    return {"Authorization": f"Bearer {token_for(stack, email)}"}


def _new_token(stack, admin_email):
    resp = requests.post(f"{stack.origin}/admin/scim/token", headers=_admin(stack, admin_email), timeout=10)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["token"].startswith("scim_") and body["scimToken"]["configured"] is True
    return body["token"]


@pytest.fixture(scope="module")
def tokens(stack):
    """Each demo tenant's current SCIM token (tests that rotate update this)."""
    return {"acme": _new_token(stack, "alice@acme.example"), "globex": _new_token(stack, "gina@globex.example")}


class Scim:
    def __init__(self, stack, token):
        self.base, self.token = f"{stack.origin}/scim/v2", token

    def __call__(self, method, path, body=None, params=None, token=None, status=None):
        headers = {"Content-Type": SCIM_JSON}
        tok = self.token if token is None else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        resp = requests.request(method, self.base + path, json=body, params=params, headers=headers, timeout=30)
        if status is not None:
            assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        if resp.content:
            assert resp.headers["Content-Type"].startswith(SCIM_JSON)
        return resp


@pytest.fixture
def acme(stack, tokens):
    return Scim(stack, tokens["acme"])


@pytest.fixture
def globex(stack, tokens):
    return Scim(stack, tokens["globex"])


def _user_body(email, **extra):
    return {"schemas": [USER], "userName": email, "name": {"givenName": email.split("@")[0].title()},
            "emails": [{"value": email, "type": "work", "primary": True}], "active": True, **extra}


def _create(scim, email, **extra):
    return scim("POST", "/Users", _user_body(email, **extra), status=201).json()


def _patch(*ops):
    return {"schemas": [PATCH], "Operations": list(ops)}


def _scim_error(resp, status, scim_type=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    if scim_type:
        assert body["scimType"] == scim_type, body
    # Exactly RFC 7644 §3.12: strict clients (scim2-models) refuse any other member.
    assert set(body) <= {"schemas", "status", "scimType", "detail"} and body["detail"], body
    return body


async def _closed(session, timeout=15.0):
    await asyncio.wait_for(session.ws.wait_closed(), timeout)
    return session.ws.close_code


def _uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- discovery ----------------------------------------------------------------------

def test_discovery_documents(acme):
    spc = acme("GET", "/ServiceProviderConfig", status=200).json()
    assert spc["patch"]["supported"] is True and spc["filter"]["supported"] is True
    assert spc["filter"]["maxResults"] == 200 and spc["bulk"]["supported"] is False
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = acme("GET", "/ResourceTypes", status=200).json()
    assert {r["name"] for r in types["Resources"]} == {"User", "Group"}
    assert acme("GET", "/ResourceTypes/User", status=200).json()["endpoint"] == "/Users"
    schemas = acme("GET", "/Schemas", status=200).json()
    ids = {s["id"] for s in schemas["Resources"]}
    assert {USER, GROUP, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"} <= ids
    assert acme("GET", f"/Schemas/{USER}", status=200).json()["name"] == "User"
    _scim_error(acme("GET", "/Schemas/urn:nope"), 404)
    _scim_error(acme("GET", "/Bulk"), 404)


def test_unsupported_methods_answer_405_with_allow(acme, globex):
    """RFC 7644 §3.2: a method an endpoint does not offer is 405, with the methods it does offer in Allow."""
    for path, allowed in (("/ServiceProviderConfig", "GET"), ("/ResourceTypes", "GET"), ("/ResourceTypes/User", "GET"),
                          ("/Schemas", "GET"), (f"/Schemas/{USER}", "GET"), ("/Users", "GET, POST"),
                          ("/Groups", "GET, POST"), ("/Users/.search", "POST"), ("/Groups/.search", "POST")):
        for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
            if method in allowed:
                continue
            resp = acme(method, path, {"schemas": [USER]})
            _scim_error(resp, 405)
            assert resp.headers["Allow"] == allowed, (method, path)
    resp = globex("POST", "/Users/some-id", {"schemas": [USER]})  # any tenant's token: the same answer
    _scim_error(resp, 405)
    assert resp.headers["Allow"] == "GET, PUT, PATCH, DELETE"
    _scim_error(acme("POST", "/ServiceProviderConfig", {}, token="nonsense"), 401)  # 401 before 405


def test_search_over_post(acme, globex):
    email = f"{_uniq('sam')}@acme.example"
    uid = _create(acme, email)["id"]
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
              "filter": f'userName eq "{email}"', "attributes": ["userName"], "startIndex": 1, "count": 10}
    page = acme("POST", "/Users/.search", search, status=200).json()
    assert page["totalResults"] == 1 and page["Resources"][0]["id"] == uid and "name" not in page["Resources"][0]
    assert globex("POST", "/Users/.search", search, status=200).json()["totalResults"] == 0  # the other tenant
    assert acme("POST", "/Groups/.search", {"schemas": search["schemas"], "count": 1},
                status=200).json()["itemsPerPage"] <= 1
    _scim_error(acme("POST", "/Users/.search", {**search, "sortBy": "userName"}), 400, "invalidValue")
    _scim_error(acme("POST", "/Users/.search", {**search, "filter": "userName eq"}), 400, "invalidFilter")


# --- users: create, filter, patch, deactivate -------------------------------------------

async def test_create_filter_patch_deactivate_closes_socket_and_refuses_connect(stack, acme, sessions):
    email = f"{_uniq('erin')}@acme.example"
    external_id = _uniq("entra")
    created = _create(acme, email, externalId=external_id, title="Engineer")
    uid = created["id"]
    assert uid == external_id  # the IdP's id becomes ours, so its tokens' subject finds the record
    assert created["userName"] == email and created["active"] is True and created["title"] == "Engineer"
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{uid}")
    assert created["meta"]["resourceType"] == "User"
    _scim_error(acme("POST", "/Users", _user_body(email.upper())), 409, "uniqueness")

    # Filters: the key lookup (userName eq, case-insensitive), id eq, and in-memory operators.
    found = acme("GET", "/Users", params={"filter": f'userName eq "{email.upper()}"'}, status=200).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == uid
    assert acme("GET", "/Users", params={"filter": f'id eq "{uid}"'}, status=200).json()["totalResults"] == 1
    for flt in (f'userName co "{email.split("@")[0]}"', f'userName sw "{email[:6]}" and active eq true',
                f'externalId eq "{external_id}"', f'emails[value eq "{email}"]', 'title pr and not (userName eq "x@y.z")'):
        page = acme("GET", "/Users", params={"filter": flt}, status=200).json()
        assert uid in {r["id"] for r in page["Resources"]}, flt
    none = acme("GET", "/Users", params={"filter": f'userName eq "{email}" and active eq false'}, status=200).json()
    assert none["totalResults"] == 0 and none.get("Resources", []) == []
    _scim_error(acme("GET", "/Users", params={"filter": 'userName eq'}), 400, "invalidFilter")
    _scim_error(acme("GET", "/Users", params={"filter": 'nosuchattr eq "x"'}), 400, "invalidFilter")

    # PATCH with a path (RFC) and without one (Entra ID's style), then attributes= projection.
    patched = acme("PATCH", f"/Users/{uid}", _patch({"op": "replace", "path": "displayName", "value": "Erin E."}),
                   status=200).json()
    assert patched["displayName"] == "Erin E." and patched["title"] == "Engineer"
    got = acme("GET", f"/Users/{uid}", params={"attributes": "userName"}, status=200).json()
    assert got["userName"] == email and "title" not in got and got["id"] == uid

    # Erin signs in (the dev IdP issues her a token for her directory id) and opens a socket.
    erin = await sessions(email)
    old_token = await asyncio.to_thread(token_for, stack, email)
    assert await erin.call("conversation.list") is not None

    deactivated = acme("PATCH", f"/Users/{uid}", _patch({"op": "Replace", "value": {"active": False}}),
                       status=200).json()
    assert deactivated["active"] is False
    assert await _closed(erin) == 1000
    assert User.find("acme", uid).status == "deactivated"
    # A token issued before is refused from now on, on both the socket and REST.
    assert await handshake_status(stack, old_token) == 403
    crafted = craft(stack, "acme", sub=uid, email=email)
    assert await handshake_status(stack, crafted) == 403
    rest = requests.get(f"{stack.origin}/conversations", headers={"Authorization": f"Bearer {old_token}"}, timeout=10)
    assert rest.status_code == 403 and rest.json()["error"]["code"] == "forbidden"
    assert requests.post(f"{stack.origin}/dev/idp/token", json={"email": email}, timeout=10).status_code == 403

    # Reactivation is allowed (PUT replaces the whole resource).
    body = _user_body(email, displayName="Erin E.", active=True)
    back = acme("PUT", f"/Users/{uid}", body, status=200).json()
    assert back["active"] is True and "title" not in back
    again = await sessions(email)
    assert await again.call("conversation.list") is not None

    audit = requests.get(f"{stack.origin}/admin/audit", params={"actor": "scim", "limit": 100},
                         headers=_admin(stack, "alice@acme.example"), timeout=10).json()["entries"]
    actions = [(e["action"], e["target"]) for e in audit if e["target"] == uid]
    for action in ("scim.user.create", "scim.user.update", "scim.user.deactivate", "scim.user.reactivate"):
        assert (action, uid) in actions, actions


async def test_delete_deactivates_and_hides_the_user(stack, acme, sessions):
    email = f"{_uniq('fred')}@acme.example"
    uid = _create(acme, email)["id"]
    fred = await sessions(email)
    second = await sessions(email)  # two devices: both are closed
    acme("DELETE", f"/Users/{uid}", status=204)
    assert await _closed(fred) == 1000 and await _closed(second) == 1000
    _scim_error(acme("GET", f"/Users/{uid}"), 404)
    _scim_error(acme("PATCH", f"/Users/{uid}", _patch({"op": "replace", "value": {"active": True}})), 404)
    assert acme("GET", "/Users", params={"filter": f'userName eq "{email}"'}, status=200).json()["totalResults"] == 0
    assert await handshake_status(stack, craft(stack, "acme", sub=uid, email=email)) == 403
    # Provisioning the same userName again brings the record back under its old id.
    assert _create(acme, email)["id"] == uid
    assert await handshake_status(stack, craft(stack, "acme", sub=uid, email=email)) == 101


def test_pagination_with_start_index_and_count(acme):
    prefix = _uniq("page")
    ids = [_create(acme, f"{prefix}-{i}@acme.example")["id"] for i in range(3)]
    flt = {"filter": f'userName sw "{prefix}"'}
    first = acme("GET", "/Users", params={**flt, "startIndex": 1, "count": 2}, status=200).json()
    assert first["totalResults"] == 3 and first["itemsPerPage"] == 2 and first["startIndex"] == 1
    rest = acme("GET", "/Users", params={**flt, "startIndex": 3, "count": 2}, status=200).json()
    assert rest["itemsPerPage"] == 1 and rest["startIndex"] == 3
    seen = [r["id"] for r in first["Resources"] + rest["Resources"]]
    assert sorted(seen) == sorted(ids)
    counted = acme("GET", "/Users", params={**flt, "count": 0}, status=200).json()
    assert counted["totalResults"] == 3 and counted.get("Resources", []) == []
    everyone = acme("GET", "/Users", params={"count": 500}, status=200).json()
    assert everyone["totalResults"] >= 7 and everyone["itemsPerPage"] <= 200
    assert all(r["userName"].endswith("@acme.example") for r in everyone["Resources"])
    _scim_error(acme("GET", "/Users", params={"count": "many"}), 400)


# --- groups: storage and User.groups for the external-access policy ------------------------

def test_groups_keep_user_groups_in_sync(acme):
    bob = User.find_by_email("bob@acme.example").user_id
    carol = User.find_by_email("carol@acme.example").user_id
    name = _uniq("scim-sales")
    group = acme("POST", "/Groups", {"schemas": [GROUP], "displayName": name, "members": [{"value": bob}]},
                 status=201).json()
    gid = group["id"]
    assert [m["value"] for m in group["members"]] == [bob]
    assert name in User.find("acme", bob).groups
    _scim_error(acme("POST", "/Groups", {"schemas": [GROUP], "displayName": name.upper()}), 409, "uniqueness")
    _scim_error(acme("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("g"),
                                         "members": [{"value": "no-such-user"}]}), 400, "invalidValue")
    found = acme("GET", "/Groups", params={"filter": f'displayName eq "{name}"', "excludedAttributes": "members"},
                 status=200).json()
    assert found["totalResults"] == 1 and "members" not in found["Resources"][0]

    # Add carol (RFC path), remove bob the way Entra ID sends it (a value, no filter).
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "add", "path": "members", "value": [{"value": carol}]}),
         status=200)
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "Remove", "path": "members", "value": [{"value": bob}]}),
         status=200)
    assert name not in User.find("acme", bob).groups and name in User.find("acme", carol).groups
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "remove", "path": f'members[value eq "{carol}"]'}), status=200)
    assert name not in User.find("acme", carol).groups

    # A rename follows into members' User.groups; DELETE takes it out.
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "add", "path": "members", "value": [{"value": bob}]}), status=200)
    renamed = f"{name}-emea"
    acme("PUT", f"/Groups/{gid}", {"schemas": [GROUP], "displayName": renamed, "members": [{"value": bob}]},
         status=200)
    groups = User.find("acme", bob).groups
    assert renamed in groups and name not in groups
    acme("DELETE", f"/Groups/{gid}", status=204)
    assert renamed not in User.find("acme", bob).groups
    _scim_error(acme("GET", f"/Groups/{gid}"), 404)


# --- userName, emails, roles: what Entra ID and Okta send ------------------------------------

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_user_name_is_free_form_and_the_email_comes_from_emails(stack, acme, globex):
    user_name = _uniq("EMP")  # an employee number, not an address
    email = f"{_uniq('gus')}@acme.example"
    body = {"schemas": [USER], "userName": user_name, "emails": [
        {"value": f"{_uniq('gus')}@home.example", "type": "home"}, {"value": email, "type": "work"}]}
    created = acme("POST", "/Users", body, status=201).json()
    uid = created["id"]
    assert created["userName"] == user_name and created["emails"] == body["emails"]  # as sent, none invented
    assert User.find("acme", uid).email == email  # the work entry (no primary entry)
    # userName eq is case-insensitive (RFC 7643 caseExact false) and one index Query; unique in the tenant.
    found = acme("GET", "/Users", params={"filter": f'userName eq "{user_name.lower()}"'}, status=200).json()
    assert [r["id"] for r in found["Resources"]] == [uid]
    _scim_error(acme("POST", "/Users", {**body, "userName": user_name.lower(),
                                        "emails": [{"value": f"{_uniq('o')}@acme.example"}]}), 409, "uniqueness")
    # The email is unique too, whatever the userName.
    _scim_error(acme("POST", "/Users", {**body, "userName": _uniq("EMP")}), 409, "uniqueness")
    # Another tenant may use the same userName (its own address in its own domains).
    theirs = globex("POST", "/Users", {"schemas": [USER], "userName": user_name,
                                       "emails": [{"value": f"{_uniq('g')}@globex.example", "primary": True}]},
                    status=201).json()
    assert theirs["userName"] == user_name and theirs["id"] != uid
    assert acme("GET", "/Users", params={"filter": f'userName eq "{user_name}"'}, status=200).json()[
        "totalResults"] == 1
    # The primary entry wins; it must be in the tenant's domains.
    _scim_error(acme("POST", "/Users", {"schemas": [USER], "userName": _uniq("EMP"),
                                        "emails": [{"value": f"{_uniq('x')}@globex.example", "primary": True}]}),
                400, "invalidValue")
    # A userName that is an address of the tenant's domains stands in for missing emails; nothing is invented.
    plain = f"{_uniq('hal')}@acme.example"
    only = acme("POST", "/Users", {"schemas": [USER], "userName": plain}, status=201).json()
    assert only["userName"] == plain and "emails" not in only and User.find("acme", only["id"]).email == plain
    # She signs in with that email: the dev IdP finds her by it.
    assert token_for(stack, email)
    # Changing the emails over PATCH moves the address we hold, still checked.
    new_email = f"{_uniq('gustav')}@acme.example"
    acme("PATCH", f"/Users/{uid}", _patch({"op": "replace", "path": "emails",
                                           "value": [{"value": new_email, "primary": True}]}), status=200)
    assert User.find("acme", uid).email == new_email
    _scim_error(acme("PATCH", f"/Users/{uid}", _patch({"op": "replace", "path": "emails",
                                                       "value": [{"value": plain, "primary": True}]})),
                409, "uniqueness")


def test_entra_id_request_shapes(acme):
    """The requests Entra ID's provisioning service documents: string booleans, Replace, no path, value arrays."""
    email = f"{_uniq('Test_User')}@acme.example"
    external = str(uuid.uuid4())
    created = acme("POST", "/Users", {
        "schemas": [USER, ENTERPRISE], "externalId": external, "userName": email, "active": True,
        "displayName": "Test User", "emails": [{"primary": True, "type": "work", "value": email}],
        "meta": {"resourceType": "User"}, "name": {"formatted": "givenName familyName", "familyName": "familyName",
                                                   "givenName": "givenName"}, "roles": [],
        ENTERPRISE: {"department": "Sales"}}, status=201).json()
    uid = created["id"]
    assert uid == external and created[ENTERPRISE]["department"] == "Sales"
    found = acme("GET", "/Users", params={"filter": f'userName eq "{email}"'}, status=200).json()
    assert found["Resources"][0]["id"] == uid
    ops = [{"op": "Replace", "path": "displayName", "value": "Tess User"},
           {"op": "Add", "path": 'emails[type eq "work"].value', "value": email.lower()},
           {"op": "Replace", "path": "externalId", "value": "new-external"},
           {"op": "Replace", "path": "active", "value": "False"}]
    patched = acme("PATCH", f"/Users/{uid}", _patch(*ops), status=200).json()
    assert patched["displayName"] == "Tess User" and patched["active"] is False
    assert patched["externalId"] == "new-external" and patched["id"] == uid  # externalId never moves the id
    assert User.find("acme", uid).status == "deactivated"
    back = acme("PATCH", f"/Users/{uid}", _patch({"op": "Replace", "value": {"active": "True"}}), status=200).json()
    assert back["active"] is True
    assert acme("GET", "/Users", params={"filter": 'externalId eq "new-external"'}, status=200).json()[
        "Resources"][0]["id"] == uid
    # Groups: Entra adds and removes members with value arrays, op in any case.
    gid = acme("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("entra-g"), "externalId": str(uuid.uuid4()),
                                   "members": []}, status=201).json()["id"]
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "Add", "path": "members", "value": [{"value": uid}]}), status=200)
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "Remove", "path": "members", "value": [{"value": uid}]}),
         status=200)
    assert acme("GET", f"/Groups/{gid}", status=200).json().get("members", []) == []
    acme("DELETE", f"/Groups/{gid}", status=204)


def test_okta_request_shapes_and_member_display(acme):
    """Okta: PATCH without a path, PUT of the whole user, group members with display."""
    email = f"{_uniq('okta')}@acme.example"
    body = {"schemas": [USER], "userName": email, "name": {"givenName": "Oka", "familyName": "Ta"},
            "emails": [{"primary": True, "value": email, "type": "work"}], "displayName": "Oka Ta",
            "locale": "en-US", "externalId": f"00u{uuid.uuid4().hex[:17]}", "groups": [], "active": True}
    user = acme("POST", "/Users", body, status=201).json()
    uid = user["id"]
    off = acme("PATCH", f"/Users/{uid}", _patch({"op": "replace", "value": {"active": False}}), status=200).json()
    assert off["active"] is False
    on = acme("PUT", f"/Users/{uid}", {**body, "id": uid, "active": True}, status=200).json()
    assert on["active"] is True and on["userName"] == email
    name = _uniq("okta-g")
    group = acme("POST", "/Groups", {"schemas": [GROUP], "displayName": name,
                                     "members": [{"value": uid, "display": email}]}, status=201).json()
    assert group["members"][0]["display"] == email
    gid = group["id"]
    bob = User.find_by_email("bob@acme.example").user_id
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "add", "path": "members",
                                            "value": [{"value": bob, "display": "bob@acme.example"}]}), status=200)
    got = acme("GET", f"/Groups/{gid}", status=200).json()
    assert {m["value"]: m.get("display") for m in got["members"]} == {uid: email, bob: "bob@acme.example"}
    renamed = acme("PATCH", f"/Groups/{gid}", _patch({"op": "replace", "value": {"id": gid, "displayName": name + "-x"}}),
                   status=200).json()
    assert {m.get("display") for m in renamed["members"]} == {email, "bob@acme.example"}  # kept through a patch
    acme("DELETE", f"/Groups/{gid}", status=204)


def test_roles_go_through_the_tenants_role_map(acme, globex):
    from tools import tenantctl

    assert tenantctl.main(["scim-roles", "--tenant", "acme", "--map", "Global Administrator=admin",
                           "--map", "External=guest"]) == 0
    assert tenantctl.main(["scim-roles", "--tenant", "acme", "--map", "x=root"]) == 2  # refused, map unchanged
    try:
        email = f"{_uniq('rita')}@acme.example"
        sent = [{"value": "Global Administrator", "primary": True}, {"value": "Sales"}]
        created = _create(acme, email, roles=sent)
        assert created["roles"] == sent  # returned as the IdP sent them
        assert User.find("acme", created["id"]).roles == ["admin", "member"]
        acme("PATCH", f"/Users/{created['id']}", _patch({"op": "replace", "path": "roles",
                                                         "value": [{"value": "EXTERNAL"}]}), status=200)
        assert User.find("acme", created["id"]).roles == ["guest"]
        # Unknown roles are members, not refusals; our own names pass as they are.
        other = _create(acme, f"{_uniq('rolf')}@acme.example", roles=[{"value": "root"}, {"value": "Guest"}])
        assert User.find("acme", other["id"]).roles == ["guest", "member"]
        # Another tenant's map is its own: globex has none, so "Global Administrator" is a member there.
        theirs = globex("POST", "/Users", {"schemas": [USER], "userName": f"{_uniq('gil')}@globex.example",
                                           "roles": [{"value": "Global Administrator"}]}, status=201).json()
        assert User.find("globex", theirs["id"]).roles == ["member"]
    finally:
        assert tenantctl.main(["scim-roles", "--tenant", "acme"]) == 0  # cleared


def test_role_map_admin_route(stack, acme):
    """GET/PUT /admin/scim/roles: what tenantctl scim-roles sets, for the company's admins; audited."""
    alice, gina = _admin(stack, "alice@acme.example"), _admin(stack, "gina@globex.example")
    url = f"{stack.origin}/admin/scim/roles"
    assert requests.get(url, headers=alice, timeout=10).json() == {
        "roleMap": {}, "roles": ["admin", "member", "guest", "reviewer"]}
    try:
        put = requests.put(url, headers=alice, timeout=10,
                           json={"roleMap": {"Global Administrator": "admin", " External ": "guest"}})
        assert put.status_code == 200, put.text
        assert put.json()["roleMap"] == {"external": "guest", "global administrator": "admin"}
        assert requests.get(url, headers=alice, timeout=10).json()["roleMap"] == put.json()["roleMap"]
        # the SCIM function applies it from the next write
        created = _create(acme, f"{_uniq('rmap')}@acme.example", roles=[{"value": "EXTERNAL"}])
        assert User.find("acme", created["id"]).roles == ["guest"]
        audit = requests.get(f"{stack.origin}/admin/audit", params={"actionName": "scim.roles.update"},
                             headers=alice, timeout=10).json()["entries"]
        assert audit[0]["after"] == {"roleMap": {"external": "guest", "global administrator": "admin"}}
        assert audit[0]["before"] == {"roleMap": {}} and audit[0]["target"] == "acme"
        # bad maps: structured refusals, the map unchanged
        for body in ({"roleMap": {"x": "root"}}, {"roleMap": {" ": "admin"}}, {"roleMap": "admin"}, {},
                     {"roleMap": {f"r{i}": "member" for i in range(101)}}):
            bad = requests.put(url, headers=alice, json=body, timeout=10)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_failed", (body, bad.text)
        # the wrong role: acme's members may neither read nor change it
        bob = _admin(stack, "bob@acme.example")
        for method, body in (("GET", None), ("PUT", {"roleMap": {}})):
            resp = requests.request(method, url, headers=bob, json=body, timeout=10)
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", (method, resp.text)
        # the wrong tenant: globex's admin sees and sets globex's map only
        assert requests.get(url, headers=gina, timeout=10).json()["roleMap"] == {}
        assert requests.put(url, headers=gina, json={"roleMap": {"external": "admin"}}, timeout=10).status_code == 200
        assert requests.get(url, headers=alice, timeout=10).json()["roleMap"]["external"] == "guest"
        assert requests.put(url, headers=gina, json={"roleMap": {}}, timeout=10).json()["roleMap"] == {}
        # no token, or a SCIM token instead of an OIDC one
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": f"Bearer {acme.token}"}, timeout=10).status_code == 401
    finally:
        cleared = requests.put(url, headers=alice, json={"roleMap": {}}, timeout=10)
        assert cleared.status_code == 200 and cleared.json()["roleMap"] == {}


def test_root_search_lists_users_and_groups(acme, globex):
    """RFC 7644 §3.4.3: POST /.search at the root searches every resource type (Users, then Groups)."""
    tag = _uniq("rootsearch")
    user = _create(acme, f"{tag}@acme.example", displayName=f"{tag} Person")
    group = acme("POST", "/Groups", {"schemas": [GROUP], "displayName": f"{tag} Team",
                                     "members": [{"value": user["id"]}]}, status=201).json()
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
    both = acme("POST", "/.search", {**search, "filter": f'displayName sw "{tag}"'}, status=200).json()
    assert both["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert [(r["id"], r["schemas"][0]) for r in both["Resources"]] == [(user["id"], USER), (group["id"], GROUP)]
    assert both["totalResults"] == 2 and both["startIndex"] == 1 and both["itemsPerPage"] == 2
    # paged across the types; attributes apply to each
    second = acme("POST", "/.search", {**search, "filter": f'displayName sw "{tag}"', "startIndex": 2, "count": 1,
                                       "attributes": ["displayName"]}, status=200).json()
    assert second["totalResults"] == 2 and [r["id"] for r in second["Resources"]] == [group["id"]]
    assert "members" not in second["Resources"][0]
    # an attribute only one type has: only that type answers
    by_name = acme("POST", "/.search", {**search, "filter": f'userName eq "{tag}@acme.example"'}, status=200).json()
    assert [r["id"] for r in by_name["Resources"]] == [user["id"]]
    by_member = acme("POST", "/.search", {**search, "filter": f'members.value eq "{user["id"]}"'}, status=200).json()
    assert [r["id"] for r in by_member["Resources"]] == [group["id"]]
    # another tenant's root search never sees acme's
    assert globex("POST", "/.search", {**search, "filter": f'displayName sw "{tag}"'}, status=200).json()[
        "totalResults"] == 0
    # refusals: a filter no type defines, bad syntax, sorting, another method, no body
    _scim_error(acme("POST", "/.search", {**search, "filter": 'nothing eq "x"'}), 400, "invalidFilter")
    _scim_error(acme("POST", "/.search", {**search, "filter": "displayName sw ((("}), 400, "invalidFilter")
    _scim_error(acme("POST", "/.search", {**search, "sortBy": "displayName"}), 400, "invalidValue")
    resp = acme("GET", "/.search")
    _scim_error(resp, 405)
    assert resp.headers["Allow"] == "POST"
    _scim_error(acme("POST", "/.search"), 400, "invalidSyntax")
    acme("DELETE", f"/Groups/{group['id']}", status=204)


# --- tenant isolation, tokens, roles --------------------------------------------------------

def test_a_tenants_token_never_reaches_another_tenant(acme, globex):
    hank = User.find_by_email("hank@globex.example").user_id
    for method, body in (("GET", None), ("PUT", _user_body("hank@globex.example")),
                         ("PATCH", _patch({"op": "replace", "value": {"active": False}})), ("DELETE", None)):
        _scim_error(acme(method, f"/Users/{hank}", body), 404)
    assert User.find("globex", hank).status == "active"
    flt = acme("GET", "/Users", params={"filter": 'userName eq "hank@globex.example"'}, status=200).json()
    assert flt["totalResults"] == 0
    listing = acme("GET", "/Users", params={"filter": 'userName co "globex"'}, status=200).json()
    assert listing["totalResults"] == 0
    _scim_error(acme("POST", "/Users", _user_body(f"{_uniq('spy')}@globex.example")), 400, "invalidValue")
    # Groups: globex's group is invisible to acme, and acme cannot put globex users in its groups.
    g = globex("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("globex-only"),
                                   "members": [{"value": hank}]}, status=201).json()
    _scim_error(acme("GET", f"/Groups/{g['id']}"), 404)
    _scim_error(acme("DELETE", f"/Groups/{g['id']}"), 404)
    assert g["id"] not in {x["id"] for x in acme("GET", "/Groups", status=200).json().get("Resources", [])}
    _scim_error(acme("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("steal"),
                                         "members": [{"value": hank}]}), 400, "invalidValue")
    globex("DELETE", f"/Groups/{g['id']}", status=204)
    # And the other way round.
    alice = User.find_by_email("alice@acme.example").user_id
    _scim_error(globex("GET", f"/Users/{alice}"), 404)


def test_missing_wrong_rotated_and_revoked_tokens_get_401(stack, acme, tokens):
    for tok in ("", "nonsense", "scim_" + "x" * 43, tokens["globex"] + "x"):
        _scim_error(acme("GET", "/Users", token=tok), 401)
    assert acme("GET", "/ServiceProviderConfig", token="").status_code == 401
    old = tokens["acme"]
    tokens["acme"] = new = _new_token(stack, "alice@acme.example")  # rotate
    _scim_error(acme("GET", "/Users", token=old), 401)
    acme("GET", "/Users", token=new, params={"count": 1}, status=200)
    # Globex rotating its own token leaves acme's alone.
    tokens["globex"] = _new_token(stack, "gina@globex.example")
    acme("GET", "/Users", token=new, params={"count": 1}, status=200)
    admin = _admin(stack, "alice@acme.example")
    status = requests.get(f"{stack.origin}/admin/scim/token", headers=admin, timeout=10).json()["scimToken"]
    assert status["configured"] is True and "token" not in status
    assert requests.delete(f"{stack.origin}/admin/scim/token", headers=admin, timeout=10).status_code == 200
    _scim_error(acme("GET", "/Users", token=new), 401)
    gone = requests.delete(f"{stack.origin}/admin/scim/token", headers=admin, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    tokens["acme"] = _new_token(stack, "alice@acme.example")
    audit = requests.get(f"{stack.origin}/admin/audit", params={"actionName": "scim.token.revoke"}, headers=admin,
                         timeout=10).json()["entries"]
    assert audit and audit[0]["actor"] == User.find_by_email("alice@acme.example").user_id


def test_only_admins_manage_the_scim_token(stack, tokens):
    member = _admin(stack, "bob@acme.example")
    for method in ("GET", "POST", "DELETE"):
        resp = requests.request(method, f"{stack.origin}/admin/scim/token", headers=member, timeout=10)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", (method, resp.text)
    # A token of the wrong tenant's IdP is no admin here either (and a SCIM token is not an OIDC token).
    resp = requests.post(f"{stack.origin}/admin/scim/token",
                         headers={"Authorization": f"Bearer {tokens['acme']}"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    # acme's SCIM token still works: nothing above rotated it.
    Scim(stack, tokens["acme"])("GET", "/Users", params={"count": 1}, status=200)


def test_bad_requests_get_structured_errors(acme):
    resp = requests.post(acme.base + "/Users", data="{not json", timeout=10,
                         headers={"Authorization": f"Bearer {acme.token}", "Content-Type": SCIM_JSON})
    _scim_error(resp, 400, "invalidSyntax")
    _scim_error(acme("POST", "/Users", {"schemas": [USER]}), 400)
    _scim_error(acme("POST", "/Users", _user_body("not-an-email")), 400, "invalidValue")
    _scim_error(acme("POST", "/Users", {"schemas": [USER], "userName": _uniq("no-mail")}), 400, "invalidValue")
    _scim_error(acme("POST", "/Users", {"schemas": [USER], "userName": "x" * 300,
                                        "emails": [{"value": f"{_uniq('long')}@acme.example"}]}), 400, "invalidValue")
    _scim_error(acme("PATCH", "/Users/nope", {"Operations": "x"}), 404)
    _scim_error(acme("GET", "/Nope"), 404)
    _scim_error(acme("GET", "/Users/a/b"), 404)
    _scim_error(acme("GET", "/Users/" + "x" * 300), 404)
    assert acme("GET", "/Users", params={"filter": 'id eq ""'}, status=200).json()["totalResults"] == 0
    assert acme("GET", "/Groups", params={"filter": f'id eq "{"g" * 300}"'}, status=200).json()["totalResults"] == 0
    _scim_error(acme("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("g"),
                                         "members": [{"value": "u" * 300}]}), 400, "invalidValue")


# --- JIT (auto-provision on sign-in) never duplicates a person ---------------------------------

async def test_auto_provision_refuses_a_second_subject_with_a_held_email(stack):
    """A new ``sub`` whose email the directory already holds is refused (409 conflict), never a second user."""
    from chalicelib.models import Tenant

    tenant = Tenant.get("acme")
    tenant.update(actions=[Tenant.auto_provision.set(True)])
    try:
        fresh = f"{_uniq('jit')}@acme.example"
        fresh_sub = _uniq("jit-sub")
        # The tenant cache (TENANT_CACHE_SECONDS, 8 s on the test stack) picks the setting up: then the
        # unknown user is created.
        deadline = asyncio.get_running_loop().time() + 45
        while (status := await handshake_status(stack, craft(stack, "acme", sub=fresh_sub, email=fresh))) != 101:
            assert status == 403 and asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(1)
        assert User.find("acme", fresh_sub).email == fresh
        # colleagues find the newcomer at once (the authorizer wrote its people-search words)
        found = await asyncio.to_thread(requests.get, f"{stack.origin}/users", params={"q": fresh.split("@")[0]},
                                        headers=_admin(stack, "alice@acme.example"), timeout=10)
        assert [u["userId"] for u in found.json()["users"]] == [fresh_sub], found.text
        # Bob's address under another subject: refused on the socket and on REST, with a structured error.
        for email in ("bob@acme.example", fresh.upper()):
            other = craft(stack, "acme", sub=_uniq("dup-sub"), email=email)
            # (each Lambda worker caches the tenant for 30 s: one that has not seen auto-provisioning yet
            # still answers 403 for an unknown user)
            while (status := await handshake_status(stack, other)) == 403:
                assert asyncio.get_running_loop().time() < deadline + 45, status
                await asyncio.sleep(1)
            assert status == 409
            while True:
                rest = await asyncio.to_thread(requests.get, f"{stack.origin}/conversations", timeout=10,
                                               headers={"Authorization": f"Bearer {other}"})
                if rest.status_code != 403 or asyncio.get_running_loop().time() > deadline + 45:
                    break
                await asyncio.sleep(1)
            assert rest.status_code == 409 and rest.json()["error"]["code"] == "conflict", rest.text
            assert [u.user_id for u in User.by_email.query(email.lower())] != []
            assert len(list(User.by_email.query(email.lower()))) == 1  # still one person with that email
        # The holder itself still signs in.
        assert await handshake_status(stack, craft(stack, "acme", sub=fresh_sub, email=fresh)) == 101
        # A first sign-in over REST provisions too (the api_handler function), and is found at once.
        rest_email, rest_sub = f"{_uniq('jitrest')}@acme.example", _uniq("jit-rest-sub")
        first = await asyncio.to_thread(requests.get, f"{stack.origin}/conversations", timeout=10, headers={
            "Authorization": f"Bearer {craft(stack, 'acme', sub=rest_sub, email=rest_email)}"})
        assert first.status_code == 200, first.text
        found = await asyncio.to_thread(requests.get, f"{stack.origin}/users", params={"q": rest_email},
                                        headers=_admin(stack, "alice@acme.example"), timeout=10)
        assert [u["userId"] for u in found.json()["users"]] == [rest_sub], found.text
    finally:
        tenant.update(actions=[Tenant.auto_provision.set(False)])


# --- email claims: uniqueness in one conditional write (docs/data-model.md "Email claims") -------

def _jit_tenant():
    from chalicelib.identity import TenantIdentity

    return TenantIdentity(tenant_id="acme", issuer="-", audience="-", domains=("acme.example",), auto_provision=True)


def _provision_all(subs, email):
    """First sign-ins of ``subs``, all with ``email``, started together (a barrier): each one's outcome."""
    import threading

    from chalicelib.identity import Principal
    from chalicelib.protocol.errors import ChatError
    from chalicelib.services import authentication

    barrier = threading.Barrier(len(subs))
    outcomes = {}

    def sign_in(sub):
        barrier.wait()
        try:
            outcomes[sub] = authentication._provision(Principal("acme", sub, email, ("member",)), _jit_tenant()).user_id
        except ChatError as err:
            outcomes[sub] = err.code

    threads = [threading.Thread(target=sign_in, args=(sub,)) for sub in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _holders(email, subs):
    """The subjects that have a user record (consistent reads), and the claim's holder."""
    from chalicelib.models import EmailClaim

    there = []
    for sub in subs:
        try:
            User.get("acme", sub, consistent_read=True)
            there.append(sub)
        except User.DoesNotExist:
            pass
    return there, EmailClaim.holder_of("acme", email)


def test_concurrent_first_sign_ins_with_one_email_create_exactly_one_user(stack):
    """Several first sign-ins (different subjects, one address) at once: one user, the rest conflict."""
    for _round in range(3):
        email, subs = f"{_uniq('race')}@acme.example", [_uniq("race-sub") for _ in range(8)]
        outcomes = _provision_all(subs, email)
        winners = [sub for sub, got in outcomes.items() if got == sub]
        assert len(winners) == 1 and sorted(outcomes.values()).count("conflict") == len(subs) - 1, outcomes
        assert _holders(email, subs) == (winners, winners[0])
    # The same subject signing in on several devices at once: one record, every sign-in gets it.
    email, sub = f"{_uniq('same')}@acme.example", _uniq("same-sub")
    import concurrent.futures

    from chalicelib.identity import Principal
    from chalicelib.services import authentication

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _i: authentication._provision(Principal("acme", sub, email, ()), _jit_tenant()).user_id,
                            range(6)))
    assert got == [sub] * 6 and _holders(email, [sub]) == ([sub], sub)


def test_concurrent_first_sign_ins_over_rest_create_exactly_one_user(stack):
    """The same race through the stack (REST first requests, the api_handler function provisioning)."""
    import concurrent.futures
    import time

    from chalicelib.models import Tenant

    tenant = Tenant.get("acme")
    tenant.update(actions=[Tenant.auto_provision.set(True)])
    try:
        email, subs = f"{_uniq('rrace')}@acme.example", [_uniq("rrace-sub") for _ in range(6)]
        stop = time.monotonic() + 60

        def first_request(sub):
            token = craft(stack, "acme", sub=sub, email=email)
            while True:  # a worker that has not seen auto-provisioning yet (tenant cache) answers 403
                resp = requests.get(f"{stack.origin}/conversations", headers={"Authorization": f"Bearer {token}"},
                                    timeout=30)
                if resp.status_code != 403 or time.monotonic() > stop:
                    return resp.status_code, resp.json().get("error", {}).get("code")
                time.sleep(0.5)

        with concurrent.futures.ThreadPoolExecutor(len(subs)) as pool:
            answers = list(pool.map(first_request, subs))
        assert sorted(answers) == [(200, None)] + [(409, "conflict")] * (len(subs) - 1), answers
        there, holder = _holders(email, subs)
        assert len(there) == 1 and holder == there[0]
    finally:
        tenant.update(actions=[Tenant.auto_provision.set(False)])


def test_scim_create_with_an_address_a_sign_in_holds_is_409(acme):
    """RFC 7644 §3.3: a create that would duplicate a unique attribute is 409 with scimType uniqueness."""
    from chalicelib.identity import Principal
    from chalicelib.services import authentication

    email, sub = f"{_uniq('held')}@acme.example", _uniq("held-sub")
    assert authentication._provision(Principal("acme", sub, email, ()), _jit_tenant()).user_id == sub
    _scim_error(acme("POST", "/Users", _user_body(email)), 409, "uniqueness")
    _scim_error(acme("POST", "/Users", {**_user_body(email.upper()), "userName": _uniq("other")}), 409, "uniqueness")
    # and the other way round: an address SCIM holds refuses a sign-in of another subject
    scim_email = f"{_uniq('scimheld')}@acme.example"
    created = _create(acme, scim_email)
    outcomes = _provision_all([_uniq("late-sub")], scim_email)
    assert list(outcomes.values()) == ["conflict"]
    assert _holders(scim_email, [])[1] == created["id"]


def test_scim_create_racing_a_first_sign_in_makes_one_user(acme):
    """SCIM POST and a first sign-in with one fresh address, released together: exactly one holds it."""
    import threading

    from chalicelib.identity import Principal
    from chalicelib.protocol.errors import ChatError
    from chalicelib.services import authentication

    for _round in range(4):
        email, sub = f"{_uniq('scimrace')}@acme.example", _uniq("scimrace-sub")
        barrier, got = threading.Barrier(2), {}

        def scim_create():
            barrier.wait()
            got["scim"] = acme("POST", "/Users", _user_body(email))

        def sign_in():
            barrier.wait()
            try:
                got["jit"] = authentication._provision(Principal("acme", sub, email, ()), _jit_tenant()).user_id
            except ChatError as err:
                got["jit"] = err.code

        threads = [threading.Thread(target=scim_create), threading.Thread(target=sign_in)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        scim_won, jit_won = got["scim"].status_code == 201, got["jit"] == sub
        assert scim_won != jit_won, (got["scim"].status_code, got["scim"].text, got["jit"])
        if scim_won:
            assert got["jit"] == "conflict" and _holders(email, [sub]) == ([], got["scim"].json()["id"])
        else:
            _scim_error(got["scim"], 409, "uniqueness")
            assert _holders(email, [sub]) == ([sub], sub)


def test_an_email_change_frees_the_old_address(acme):
    """PUT and PATCH move the claim: the old address is free for someone else, the new one is held."""
    from chalicelib.models import EmailClaim
    from chalicelib.services import tenants

    old, new, newer = (f"{_uniq(p)}@acme.example" for p in ("old", "new", "newer"))
    user = _create(acme, old)
    assert EmailClaim.holder_of("acme", old) == user["id"]
    acme("PUT", f"/Users/{user['id']}", _user_body(new), status=200)
    assert (EmailClaim.holder_of("acme", old), EmailClaim.holder_of("acme", new)) == (None, user["id"])
    acme("PATCH", f"/Users/{user['id']}", _patch({"op": "replace", "path": "emails",
                                                  "value": [{"value": newer, "primary": True}]}), status=200)
    assert (EmailClaim.holder_of("acme", new), EmailClaim.holder_of("acme", newer)) == (None, user["id"])
    # the freed addresses are anyone's now; the held one is not
    assert _create(acme, old)["id"] != user["id"]
    _scim_error(acme("POST", "/Users", {**_user_body(newer), "userName": _uniq("x")}), 409, "uniqueness")
    # a PATCH onto an address another user holds is refused, and changes nothing
    _scim_error(acme("PATCH", f"/Users/{user['id']}", _patch({"op": "replace", "path": "emails",
                                                              "value": [{"value": old, "primary": True}]})),
                409, "uniqueness")
    assert EmailClaim.holder_of("acme", newer) == user["id"]
    # tenantctl's upsert moves the claim too
    sub, first, second = _uniq("ctl"), f"{_uniq('ctl1')}@acme.example", f"{_uniq('ctl2')}@acme.example"
    tenants.upsert_user("acme", sub, first, "Ctl")
    tenants.upsert_user("acme", sub, second, "Ctl")
    assert (EmailClaim.holder_of("acme", first), EmailClaim.holder_of("acme", second)) == (None, sub)
    from chalicelib.protocol.errors import Conflict

    with pytest.raises(Conflict):
        tenants.upsert_user("acme", _uniq("ctl-other"), second, "Other")


def test_email_claims_backfill_is_resumable_and_idempotent(stack, capsys):
    """Users written before claims existed get theirs (Query per tenant, pages), twice changes nothing."""
    import json

    from chalicelib.models import EmailClaim
    from tools import tenantctl

    tenant = _uniq("bf")
    users = [User(tenant_id=tenant, user_id=f"u{i:02d}", email=f"p{i}@bf.example", display_name=f"P{i}")
             for i in range(5)]
    users.append(User(tenant_id=tenant, user_id="u99", email="P1@bf.example", display_name="Dup"))  # a legacy duplicate
    for u in users:
        u.save()
    # pages of 2: after each, the user id to resume after (as an interrupted run would need) ...
    assert tenantctl.main(["email-claims-backfill", "--tenant", tenant, "--page-size", "2"]) == 3
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["after"] for x in lines[:-1]] == ["u01", "u03", "u99"]
    assert lines[-1]["claimed"] == 5 and lines[-1]["conflicts"] == [
        {"email": "p1@bf.example", "holder": "u01", "userId": "u99"}]
    assert [EmailClaim.holder_of(tenant, f"p{i}@bf.example") for i in range(5)] == [f"u{i:02d}" for i in range(5)]
    # ... resumed after a page: the rest only; and run again whole: the same claims, nothing else
    assert tenantctl.main(["email-claims-backfill", "--tenant", tenant, "--after", "u03"]) == 3
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["users"] == 2
    assert tenantctl.main(["email-claims-backfill", "--tenant", tenant]) == 3
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["claimed"] == 5
    assert [EmailClaim.holder_of(tenant, f"p{i}@bf.example") for i in range(5)] == [f"u{i:02d}" for i in range(5)]
    # the claims are outside the tenant's partition: a Query of its users never meets them
    assert sorted(u.user_id for u in User.query(tenant)) == sorted(u.user_id for u in users)


async def test_members_scim_adds_to_an_expert_pool_group_are_offered_waiting_questions(stack, acme, sessions):
    """docs/experts.md "Questions waiting": a topic marks its groups; a member SCIM adds later is marked
    too, so coming online offers them the topic's waiting questions."""
    from chalicelib.models import ExpertItem, Presence, user_key

    from .test_federation import api

    bob = User.find_by_email("bob@acme.example").user_id
    carol = User.find_by_email("carol@acme.example").user_id
    gid = acme("POST", "/Groups", {"schemas": [GROUP], "displayName": _uniq("scim-experts"),
                                   "members": [{"value": bob}]}, status=201).json()["id"]
    r = api(stack, "alice@acme.example", "POST", "/admin/experts/topics",
            json={"name": _uniq("SCIM topic"), "groups": [gid], "timeoutSeconds": 300})
    assert r.status_code == 201, r.text
    topic_id = r.json()["topic"]["topicId"]
    assert topic_id in (Presence.find(user_key("acme", bob)).expert_topics or ())
    acme("PATCH", f"/Groups/{gid}", _patch({"op": "add", "path": "members", "value": [{"value": carol}]}),
         status=200)
    assert topic_id in (Presence.find(user_key("acme", carol)).expert_topics or ())
    asker = await sessions("dave@acme.example")
    q = (await asker.call("expert.ask", topicId=topic_id, text="Who approves SCIM changes?"))["question"]
    await asker.event("expert.question.unanswered", questionId=q["questionId"])  # bob and carol are offline
    s_carol = await sessions("carol@acme.example")
    await s_carol.event("expert.question.offered", timeout=20, questionId=q["questionId"])
    assert carol in ExpertItem.find("acme", ExpertItem.question_key(q["questionId"])).offered
