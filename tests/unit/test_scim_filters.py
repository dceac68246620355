"""SCIM filter -> DynamoDB access plan (chalicelib/scim/filters.py), and the import-cost boundary. Pure logic."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _plan(text, resource="User"):
    from scim2_models import Group, ScimFilter, User

    from chalicelib.scim import filters

    model = User if resource == "User" else Group
    return filters.plan(ScimFilter[model](text).ast, resource)


def L(kind, value):
    from chalicelib.scim.filters import Lookup

    return Lookup(kind, value)


@pytest.mark.parametrize("text, expected", [
    ('userName eq "Bob@Acme.Example"', [("user_name", "bob@acme.example")]),
    ('USERNAME eq "bob@acme.example"', [("user_name", "bob@acme.example")]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a@b.c"', [("user_name", "a@b.c")]),
    ('id eq "u1"', [("id", "u1")]),
    ('userName eq "a@b.c" and active eq true', [("user_name", "a@b.c")]),
    ('active eq true and id eq "u1"', [("id", "u1")]),
    ('id eq "u1" or userName eq "a@b.c"', [("id", "u1"), ("user_name", "a@b.c")]),
    ('id eq "u1" or id eq "u1"', [("id", "u1")]),
])
def test_key_lookups(text, expected):
    assert _plan(text) == tuple(L(k, v) for k, v in expected)


@pytest.mark.parametrize("text", [
    'userName ne "a@b.c"', 'userName co "acme"', 'userName sw "bo"', 'userName ew ".example"',
    'userName pr', 'not (userName eq "a@b.c")', 'externalId eq "x"', 'displayName eq "Bob"',
    'emails[value eq "a@b.c"]', 'emails.value eq "a@b.c"', 'meta.lastModified gt "2020-01-01T00:00:00Z"',
    'id eq "u1" or active eq true', 'active eq false',
])
def test_everything_else_reads_the_tenant_partition(text):
    assert _plan(text) is None


def test_groups_only_pin_ids():
    assert _plan('id eq "g1"', "Group") == (L("id", "g1"),)
    assert _plan('displayName eq "Sales"', "Group") is None


def test_no_filter_reads_the_partition():
    from chalicelib.scim import filters

    assert filters.plan(None, "User") is None


def test_bad_filters_are_refused_by_the_parser():
    from scim2_models import InvalidFilterException, ScimFilter, User

    with pytest.raises(InvalidFilterException):
        ScimFilter[User]('userName eq')


def _user(**attrs):
    from scim2_models import Context

    from chalicelib.scim.resources import UserResource

    return UserResource.model_validate({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], **attrs},
                                       scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def test_user_mapping_keeps_unmapped_attributes_and_checks_domains():
    from scim2_models import InvalidValueException

    from chalicelib.scim.resources import user_fields

    res = _user(userName="Erin@Acme.Example", name={"givenName": "Erin", "familyName": "Ek"}, title="Engineer",
                active=False, roles=[{"value": "admin"}], externalId="ext-1")
    f = user_fields(res, ("acme.example",))
    # No emails: the userName is the address (it is one), kept as sent for userName itself.
    assert f["email"] == "erin@acme.example" and f["user_name"] == "Erin@Acme.Example"
    assert f["display_name"] == "Erin Ek"
    assert f["roles"] == ["admin"] and f["active"] is False and f["external_id"] == "ext-1"
    assert '"title":"Engineer"' in f["scim_attributes"] and "userName" not in f["scim_attributes"]
    assert '"roles":[{"value":"admin"}]' in f["scim_attributes"]  # returned as the IdP sent them
    with pytest.raises(InvalidValueException):
        user_fields(res, ("globex.example",))


def test_user_name_is_free_form_and_the_email_comes_from_emails():
    from scim2_models import InvalidValueException

    from chalicelib.scim.resources import user_fields

    emails = [{"value": "home@gmail.example", "type": "home"}, {"value": "E.Ek@acme.example", "type": "work"},
              {"value": "erin@acme.example", "primary": True}]
    assert user_fields(_user(userName="ERIN01", emails=emails), ("acme.example",))["email"] == "erin@acme.example"
    assert user_fields(_user(userName="ERIN01", emails=emails[:2]), ("acme.example",))["email"] == "e.ek@acme.example"
    assert user_fields(_user(userName="x", emails=emails[1:2]), ("acme.example",))["user_name"] == "x"
    with pytest.raises(InvalidValueException, match="domain"):  # the first entry, outside the domains
        user_fields(_user(userName="ERIN01", emails=emails[:1]), ("acme.example",))
    with pytest.raises(InvalidValueException, match="no email"):  # neither emails nor an address as userName
        user_fields(_user(userName="ERIN01"), ("acme.example",))
    with pytest.raises(InvalidValueException, match="userName"):
        user_fields(_user(userName="   ", emails=emails), ("acme.example",))


def test_roles_go_through_the_tenant_role_map():
    from chalicelib.scim.resources import map_roles, user_fields

    role_map = {"global administrator": "admin", "external": "guest", "bogus": "root"}
    assert map_roles(["Global Administrator"], role_map) == ["admin"]
    assert map_roles(["External", "Engineer"], role_map) == ["guest", "member"]
    assert map_roles(["ADMIN"], {}) == ["admin"]  # ours pass as they are
    assert map_roles(["Bogus"], role_map) == ["member"]  # a map entry naming no role of ours counts as unknown
    assert map_roles([], role_map) == ["member"]
    res = _user(userName="erin@acme.example", roles=[{"value": "Global Administrator"}, {"value": "Sales"}])
    assert user_fields(res, ("acme.example",), role_map)["roles"] == ["admin", "member"]
    assert user_fields(_user(userName="erin@acme.example"), ("acme.example",))["roles"] is None  # unchanged


def test_group_members_display_is_kept():
    from scim2_models import Context, Group, PayloadTooLargeException

    from chalicelib.scim.resources import group_fields

    group = Group.model_validate({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g",
                                  "members": [{"value": "u1", "display": "Erin Ek"}, {"value": "u2"}]},
                                 scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    f = group_fields(group)
    assert f["members"] == {"u1", "u2"} and f["member_display"] == '{"u1":"Erin Ek"}'
    group.members = [{"value": f"u{i}", "display": "x" * 256} for i in range(700)]
    with pytest.raises(PayloadTooLargeException):
        group_fields(group)


def test_importing_the_app_does_not_import_scim2_models_or_pydantic():
    """scim2-models + pydantic cost ~0.6-0.75 s: only the scim function may pay it, lazily."""
    code = ("import sys; import app; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('scim2_models', 'pydantic', 'pydantic_core')); "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
