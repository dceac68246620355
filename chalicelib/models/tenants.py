"""Companies: the tenant item, its e-mail domain claims and its links to other companies."""
from __future__ import annotations

import time

from pynamodb.attributes import BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .base import _Meta, _S, condition_failed


class TenantsByIssuer(GlobalSecondaryIndex["Tenant"]):
    """Tenant by its OIDC issuer: the only way a token is mapped to a tenant."""

    class Meta:
        index_name = "by_issuer"
        projection = AllProjection()

    issuer = UnicodeAttribute(hash_key=True)


class Tenant(Model):
    """A company: its identity provider configuration and email domains."""

    class Meta(_Meta):
        table_name = _S.tenants_table

    tenant_id = UnicodeAttribute(hash_key=True)
    display_name = UnicodeAttribute()
    domains = ListAttribute(of=UnicodeAttribute, default=list)
    issuer = UnicodeAttribute()
    audience = UnicodeAttribute()
    # Where JWKS lives; None -> discovered from {issuer}/.well-known/openid-configuration.
    jwks_uri = UnicodeAttribute(null=True)
    # The OAuth client id of the web page at this IdP (GET /auth/discovery); None -> ``audience``.
    web_client_id = UnicodeAttribute(null=True)
    email_claim = UnicodeAttribute(default="email")
    roles_claim = UnicodeAttribute(default="roles")
    subject_claim = UnicodeAttribute(default="sub")  # the claim that carries our user id (docs/scim.md)
    algorithms = ListAttribute(of=UnicodeAttribute, default=lambda: ["RS256", "ES256"])
    # Create a member record on first sign-in of an unknown user of this tenant.
    auto_provision = BooleanAttribute(default=False)
    status = UnicodeAttribute(default="active")
    # External-access policy, set by the tenant's admins (chalicelib/policy.py reads it):
    # {"mode": off|all|partners|users, "partners": [...], "users": [...], "groups": [...],
    #  "timezone": "Europe/Berlin", "windows": [{"days": [0..6], "start": "HH:MM", "end": "HH:MM"}],
    #  "windowMode": "inside"|"outside"}
    external = MapAttribute(null=True)
    # Directory sync (docs/scim.md): the IdP's role values (lower-cased) -> admin | member | guest | reviewer;
    # a role neither in it nor one of ours maps to member.  Set with tools/tenantctl.py scim-roles.
    scim_role_map = MapAttribute(null=True)
    # Usage limits set by ops (tools/tenantctl.py limits; chalicelib/limits.py reads them, cached):
    # {"devicesPerUser", "connectsPerSecond", "sendsPerSecondUser", "sendsPerSecondTenant"}; absent = default.
    limits = MapAttribute(null=True)
    # Mobile push preview policy (docs/push.md), set by the tenant's admins: full | sender | none.
    push_preview = UnicodeAttribute(null=True)
    created_at = NumberAttribute(default=lambda: int(time.time()))

    by_issuer = TenantsByIssuer()

    @classmethod
    def for_issuer(cls, issuer: str) -> "Tenant | None":
        """Query by_issuer: 1 request."""
        for tenant in cls.by_issuer.query(issuer, limit=2):
            return tenant
        return None


class DomainClaim(Model):
    """Email domain -> the one tenant that owns it (federation finds tenants by domain)."""

    class Meta(_Meta):
        table_name = _S.domains_table

    domain = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()

    @classmethod
    def claim(cls, domain: str, tenant_id: str) -> bool:
        """Conditional PutItem: True if the domain is now (or already was) this tenant's."""
        try:
            cls(domain=domain, tenant_id=tenant_id).save(
                condition=cls.domain.does_not_exist() | (cls.tenant_id == tenant_id))
            return True
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise


class TenantLink(Model):
    """One side's view of a connection between two tenants (two items per pair).

    ``state`` is ``invited`` (we asked), ``pending`` (they asked us), ``active``
    (both approved), ``declined`` or ``revoked``.  Each side keeps its own
    toggles; what crosses needs both sides' consent.
    """

    class Meta(_Meta):
        table_name = _S.links_table

    tenant_id = UnicodeAttribute(hash_key=True)
    peer_tenant_id = UnicodeAttribute(range_key=True)
    state = UnicodeAttribute()
    presence = BooleanAttribute(default=True)  # show our users' presence to the peer
    files = BooleanAttribute(default=True)  # allow file sharing with the peer
    who_may_start = UnicodeAttribute(default="everyone")  # everyone | admins
    updated_at = NumberAttribute(default=0)
    revoked_at = NumberAttribute(null=True)

    @classmethod
    def pair(cls, a: str, b: str) -> tuple["TenantLink | None", "TenantLink | None"]:
        """BatchGetItem: both sides of the a-b connection in 1 request."""
        got = {(x.tenant_id, x.peer_tenant_id): x for x in cls.batch_get([(a, b), (b, a)])}
        return got.get((a, b)), got.get((b, a))

    @classmethod
    def of_tenant(cls, tenant_id: str) -> list["TenantLink"]:
        """Query: 1 request per page."""
        return list(cls.query(tenant_id))
