"""``GET /auth/discovery?domain=``: which OIDC issuer a browser signs in with, found by email domain.

Public (no token: the caller is about to get one), so it answers only what a
login page must know anyway and nothing else:

* a registered, active tenant's domain: ``{"domain", "issuer", "clientId"}``
  (``clientId`` is the tenant's ``web_client_id`` if registered, else its
  token ``audience``);
* anything else (unknown domain, a suspended tenant, a malformed domain): the
  same ``404 not_found``, the same message, so a suspended tenant looks like
  no tenant.  The tenant id and name, its other domains, its JWKS and every
  other setting are never in the answer.

It reveals whether a domain signs in here, which any login page does; there is
no listing (one exact domain per request, GetItem, no Scan or Query).  Costs:
two GetItems (domains, tenants) of an unauthenticated caller; bounded by the
stage's throttling and a WAF rate-based rule (docs/operations.md).
"""
from __future__ import annotations

import re
from typing import Any

from .protocol.errors import NotFound

# A DNS name: labels of letters, digits and hyphens, at most 253 characters.
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
CACHE_SECONDS = 300
NOT_FOUND = "No company signs in with this email domain."


def lookup(domain: str | None) -> dict[str, Any] | None:
    """The discovery answer for ``domain``, or None."""
    from .models import DomainClaim, Tenant

    domain = (domain or "").strip().lower().rstrip(".")
    if "@" in domain:  # a whole email was pasted: its domain
        domain = domain.rsplit("@", 1)[1]
    if not _DOMAIN.match(domain):
        return None
    try:
        claim = DomainClaim.get(domain)
        tenant = Tenant.get(claim.tenant_id)
    except (DomainClaim.DoesNotExist, Tenant.DoesNotExist):
        return None
    if tenant.status != "active" or domain not in tenant.domains or not tenant.issuer:
        return None
    return {"domain": domain, "issuer": tenant.issuer, "clientId": tenant.web_client_id or tenant.audience}


def handle(query: dict[str, str] | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for the route."""
    found = lookup((query or {}).get("domain"))
    headers = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}
    if found is None:
        # Cached briefly too: a repeated miss should not reach the tables either.
        return 404, {"error": NotFound(NOT_FOUND).to_body()}, {**headers, "Cache-Control": f"public, max-age={CACHE_SECONDS // 5}"}
    return 200, found, {**headers, "Cache-Control": f"public, max-age={CACHE_SECONDS}"}
