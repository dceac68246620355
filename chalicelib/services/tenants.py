"""Tenant provisioning and directory entries (used by ops tooling, later by SCIM/admin REST)."""
from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlparse

from .. import identity
from ..auth import ALLOWED_ALGORITHMS
from .. import email_claims, search_index
from ..models import DomainClaim, Tenant, User
from ..protocol.errors import Conflict, ValidationFailed
from .context import Env

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}$")
ROLES = frozenset(identity.ROLES)


class TenantSpec(NamedTuple):
    tenant_id: str
    display_name: str
    domains: list[str]
    issuer: str
    audience: str
    email_claim: str = "email"
    roles_claim: str = "roles"
    subject_claim: str = "sub"
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    auto_provision: bool = False
    web_client_id: str | None = None  # the web page's client_id at the IdP (GET /auth/discovery); None: audience


def _check_url(name: str, url: str) -> None:
    parsed = urlparse(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if not parsed.netloc or not (parsed.scheme == "https" or (parsed.scheme == "http" and loopback)):
        raise ValidationFailed(f"{name} must be an https URL (http only on loopback): {url!r}")


def register_tenant(spec: TenantSpec) -> Tenant:
    """Create or update a tenant (idempotent by tenant id); an issuer belongs to one tenant only."""
    if not TENANT_ID.match(spec.tenant_id):
        raise ValidationFailed("tenant id must be 2-63 chars of a-z, 0-9 and '-'")
    domains = sorted({d.strip().lower() for d in spec.domains if d.strip()})
    if not domains or not all(DOMAIN.match(d) for d in domains):
        raise ValidationFailed("at least one valid email domain is required")
    _check_url("issuer", spec.issuer)
    if spec.jwks_uri:
        _check_url("jwks_uri", spec.jwks_uri)
    if not spec.audience:
        raise ValidationFailed("audience is required")
    bad = set(spec.algorithms) - ALLOWED_ALGORITHMS
    if bad or not spec.algorithms:
        raise ValidationFailed(f"algorithms must be a subset of {sorted(ALLOWED_ALGORITHMS)}")
    owner = Tenant.for_issuer(spec.issuer)
    if owner is not None and owner.tenant_id != spec.tenant_id:
        raise Conflict(f"issuer already belongs to tenant {owner.tenant_id}")
    for domain in domains:
        _check_domain_free(domain, spec.tenant_id)
    tenant = Tenant(
        tenant_id=spec.tenant_id, display_name=spec.display_name or spec.tenant_id, domains=domains,
        issuer=spec.issuer, audience=spec.audience, email_claim=spec.email_claim,
        roles_claim=spec.roles_claim, subject_claim=spec.subject_claim, jwks_uri=spec.jwks_uri or None,
        web_client_id=spec.web_client_id or None,
        algorithms=sorted(set(spec.algorithms)), auto_provision=spec.auto_provision,
        limits=owner.limits if owner is not None else None,  # re-registering keeps the limits ops set
        status=owner.status if owner is not None else "active",  # ... and a suspension (resume is explicit)
    )
    tenant.save()
    return tenant


def _check_domain_free(domain: str, tenant_id: str) -> None:
    """An email domain belongs to one tenant: claim it (conditional put) or refuse."""
    if not DomainClaim.claim(domain, tenant_id):
        raise Conflict(f"domain {domain} already belongs to another tenant")


def upsert_user(tenant_id: str, user_id: str, email: str, display_name: str,
                roles: list[str] | None = None, status: str = "active") -> User:
    """Create or replace a directory entry; the email must be in one of the tenant's domains.

    The record and its email claim are 1 TransactWriteItems (``email_claims.write``: an address
    another user holds is refused, a changed one released).  Its people-search words follow
    (``search_index.sync``: the entry as it was, 1 GetItem, then 1 BatchWriteItem of what changed).
    """
    try:
        tenant = Tenant.get(tenant_id)
    except Tenant.DoesNotExist:
        raise ValidationFailed(f"unknown tenant {tenant_id!r}") from None
    email = email.strip().lower()
    if not EMAIL.match(email) or email.rsplit("@", 1)[1] not in tenant.domains:
        raise ValidationFailed(f"email {email!r} is not in the tenant's domains {tenant.domains}")
    roles = sorted(set(roles or ["member"]))
    if not set(roles) <= ROLES:
        raise ValidationFailed(f"roles must be among {sorted(ROLES)}")
    if status not in ("active", "deactivated"):
        raise ValidationFailed("status must be active or deactivated")
    existing = User.find_by_email(email)
    if existing is not None and (existing.tenant_id, existing.user_id) != (tenant_id, user_id):
        raise Conflict(f"email {email} already belongs to another user")
    try:
        stored: User | None = User.get(tenant_id, user_id, consistent_read=True)
    except User.DoesNotExist:
        stored = None
    before = search_index.entries_of(stored)
    user = User(tenant_id=tenant_id, user_id=user_id, email=email, display_name=display_name,
                roles=roles, status=status)
    try:  # the record and its email claim (the old address released): 1 TransactWriteItems
        email_claims.write(user, old_email=stored.email if stored is not None else None)
    except email_claims.EmailTaken:
        raise Conflict(f"email {email} already belongs to another user") from None
    search_index.sync(before, user)
    return user


def set_scim_role_map(tenant_id: str, mapping: dict[str, str]) -> Tenant:
    """Replace the tenant's SCIM role map: the IdP's role values -> one of our roles (docs/scim.md).

    Keys are matched case-insensitively; a role the IdP sends that is neither in the map nor one of
    ours maps to member. An empty mapping removes the map.
    """
    clean = clean_scim_role_map(mapping)
    try:
        tenant = Tenant.get(tenant_id)
    except Tenant.DoesNotExist:
        raise ValidationFailed(f"unknown tenant {tenant_id!r}") from None
    tenant.update(actions=[Tenant.scim_role_map.set(clean) if clean else Tenant.scim_role_map.remove()])
    return tenant


def clean_scim_role_map(mapping: dict[str, str]) -> dict[str, str]:
    """A role map as stored: keys trimmed and lower-cased (the IdP's values, 1-256 characters),
    values one of our roles; at most 100 entries.  ``validation_failed`` otherwise."""
    clean: dict[str, str] = {}
    for key, value in mapping.items():
        k, v = str(key).strip().lower(), str(value).strip().lower()
        if not k or len(k) > 256:
            raise ValidationFailed("role map keys are the IdP's role values (1-256 characters)")
        if v not in ROLES:
            raise ValidationFailed(f"role map values must be among {sorted(ROLES)}, not {v[:32]!r}")
        clean[k] = v
    if len(clean) > 100:
        raise ValidationFailed("a role map has at most 100 entries")
    return clean


MAX_LIMIT = 1_000_000


def set_limits(tenant_id: str, values: dict[str, int | None]) -> dict[str, int]:
    """Set (or, with 0, reset to the default) the tenant's usage limits (chalicelib/limits.py ``FIELDS``:
    ``devicesPerUser``, ``connectsPerSecond``, ``sendsPerSecondUser``, ``sendsPerSecondTenant``);
    None leaves one as it is.  Returns the overrides now stored.  1 GetItem + 1 UpdateItem; running
    containers see the change within their cache time (TENANT_CACHE_SECONDS, 30 s)."""
    from .. import limits

    try:
        tenant = Tenant.get(tenant_id, consistent_read=True)
    except Tenant.DoesNotExist:
        raise ValidationFailed(f"unknown tenant {tenant_id!r}") from None
    stored = {k: int(v) for k, v in (tenant.limits.as_dict() if tenant.limits is not None else {}).items()
              if k in limits.FIELDS}
    for key, value in values.items():
        if key not in limits.FIELDS:
            raise ValidationFailed(f"unknown limit {key!r}; one of {sorted(limits.FIELDS)}")
        if value is None:
            continue
        if not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
            raise ValidationFailed(f"{key} must be a whole number from 1 to {MAX_LIMIT} (0: the default)")
        if value == 0:
            stored.pop(key, None)
        else:
            stored[key] = value
    tenant.update(actions=[Tenant.limits.set(stored) if stored else Tenant.limits.remove()])
    return stored


def limits_view(tenant_id: str) -> dict[str, object]:
    """What tenantctl limits shows: the overrides stored and the limits in effect (defaults filled in)."""
    from .. import limits

    try:
        tenant = Tenant.get(tenant_id, consistent_read=True)
    except Tenant.DoesNotExist:
        raise ValidationFailed(f"unknown tenant {tenant_id!r}") from None
    stored = {k: int(v) for k, v in (tenant.limits.as_dict() if tenant.limits is not None else {}).items()}
    effective = limits.TenantLimits.of(stored)
    return {"tenant": tenant_id, "stored": stored,
            "effective": {field: getattr(effective, attr) for field, attr in limits.FIELDS.items()},
            "sendShards": limits.shards(effective.sends_per_second_tenant),
            "connectShards": limits.shards(effective.connects_per_second)}


STATUSES = ("active", "suspended")


def set_status(env: Env, tenant_id: str, status: str) -> int:
    """Suspend or resume a tenant (``Tenant.status``); suspending closes every open socket of it.

    Returns how many sockets were closed.  A suspended tenant's tokens are refused (``forbidden``,
    403) on every handshake and REST call (chalicelib/auth.py), its users drop out of every
    cross-company check (chalicelib/policy.py), and discovery answers 404 for its domains.  Running
    containers keep a tenant for ``TENANT_CACHE_SECONDS`` (30 s), so within that time a warm one may
    still let a client reconnect: :func:`close_all_sockets` again after it (``tenantctl suspend``
    does) closes those too.  1 GetItem + 1 UpdateItem, then the sweep.
    """
    if status not in STATUSES:
        raise ValidationFailed(f"status must be one of {list(STATUSES)}")
    try:
        tenant = Tenant.get(tenant_id, consistent_read=True)
    except Tenant.DoesNotExist:
        raise ValidationFailed(f"unknown tenant {tenant_id!r}") from None
    if tenant.status != status:
        tenant.update(actions=[Tenant.status.set(status)])
    return close_all_sockets(env, tenant_id) if status == "suspended" else 0


def close_all_sockets(env: Env, tenant_id: str) -> int:
    """Close every open socket of a tenant's users, as SCIM deactivation closes one user's
    (services/directory.close_sockets): Query the tenant's users (1 per 1 MB page, keys only), then per
    user 1 Query ``by_user`` and 1 DELETE @connections per socket; each socket then gets its
    ``$disconnect``, which removes its records.  An ops action, not a request path."""
    from .directory import close_sockets

    closed = 0
    for user in User.query(tenant_id, attributes_to_get=["tenant_id", "user_id"]):
        closed += close_sockets(env, tenant_id, user.user_id)
    return closed
