"""The company roles are one list (chalicelib/identity.py ROLES): REST, SCIM and tenantctl accept the same."""
import pytest

from chalicelib.identity import ROLES
from chalicelib.protocol import schemas
from chalicelib.protocol.errors import ValidationFailed


def test_reviewer_is_a_role_everywhere():
    from chalicelib.scim.resources import map_roles
    from chalicelib.services import admin, tenants

    assert "reviewer" in ROLES and set(admin.ROLES) == set(ROLES) == set(tenants.ROLES)
    assert schemas.ADMIN["admin.users.roles"]["properties"]["roles"]["items"]["enum"] == list(ROLES)
    assert schemas.ADMIN["admin.users.roles"]["properties"]["roles"]["maxItems"] == len(ROLES)
    assert schemas.RESPONSES["admin.users.roles"]["properties"]["roles"]["items"]["enum"] == list(ROLES)
    # SCIM: our own role name as it is, or through the tenant's map; never more than member otherwise
    assert map_roles(["Reviewer"], {}) == ["reviewer"]
    assert map_roles(["Compliance Officer", "Engineer"], {"compliance officer": "reviewer"}) == \
        ["member", "reviewer"]


def test_tenantctl_role_map_accepts_reviewer_and_refuses_unknown(monkeypatch):
    from chalicelib.services import tenants

    class FakeTenant:
        scim_role_map = None

        def update(self, actions):
            self.actions = actions

    fake = FakeTenant()
    monkeypatch.setattr(tenants.Tenant, "get", classmethod(lambda cls, tid: fake))
    tenants.set_scim_role_map("acme", {"Compliance Officer": "reviewer"})
    with pytest.raises(ValidationFailed):
        tenants.set_scim_role_map("acme", {"Boss": "superuser"})
