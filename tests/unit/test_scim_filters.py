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
    ('userName eq "Bob@Acme.Example"', [("email", "bob@acme.example")]),
    ('USERNAME eq "bob@acme.example"', [("email", "bob@acme.example")]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a@b.c"', [("email", "a@b.c")]),
    ('id eq "u1"', [("id", "u1")]),
    ('userName eq "a@b.c" and active eq true', [("email", "a@b.c")]),
    ('active eq true and id eq "u1"', [("id", "u1")]),
    ('id eq "u1" or userName eq "a@b.c"', [("id", "u1"), ("email", "a@b.c")]),
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


def test_user_mapping_keeps_unmapped_attributes_and_checks_domains():
    from scim2_models import Context, InvalidValueException

    from chalicelib.scim.resources import UserResource, user_fields

    res = UserResource.model_validate({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Erin@Acme.Example",
        "name": {"givenName": "Erin", "familyName": "Ek"}, "title": "Engineer", "active": False,
        "roles": [{"value": "admin"}], "externalId": "ext-1"}, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    f = user_fields(res, ("acme.example",))
    assert f["email"] == "erin@acme.example" and f["display_name"] == "Erin Ek"
    assert f["roles"] == ["admin"] and f["active"] is False and f["external_id"] == "ext-1"
    assert '"title":"Engineer"' in f["scim_attributes"] and "userName" not in f["scim_attributes"]
    with pytest.raises(InvalidValueException):
        user_fields(res, ("globex.example",))
    res.roles = [{"value": "owner"}]
    with pytest.raises(InvalidValueException):
        user_fields(res, ("acme.example",))


def test_importing_the_app_does_not_import_scim2_models_or_pydantic():
    """scim2-models + pydantic cost ~0.6-0.75 s: only the scim function may pay it, lazily."""
    code = ("import sys; import app; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('scim2_models', 'pydantic', 'pydantic_core')); "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
