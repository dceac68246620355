"""The container's one token verifier, built on first use.

Only the functions that check a token import this module: the $connect authorizer and $connect
(``ws_connect``) and the REST API (``rest_api``).  It brings pyjwt and cryptography, so keeping it
out of ``runtime`` keeps them out of every other function's package (tools/split_package.py
follows imports, those inside functions too).
"""
from __future__ import annotations

from typing import Any

from .auth import JwksCache, TenantDirectory, TokenVerifier
from .config import settings
from .identity import TenantIdentity
from .runtime import _once


def _lookup_tenant(issuer: str) -> TenantIdentity | None:
    """The company whose identity provider is ``issuer`` (1 Query of the issuer index)."""
    from .models import Tenant

    tenant = Tenant.for_issuer(issuer)
    if tenant is None:
        return None
    return TenantIdentity(
        tenant_id=tenant.tenant_id, issuer=tenant.issuer, audience=tenant.audience,
        domains=tuple(d.lower() for d in tenant.domains), algorithms=tuple(tenant.algorithms),
        email_claim=tenant.email_claim, roles_claim=tenant.roles_claim, jwks_uri=tenant.jwks_uri,
        subject_claim=tenant.subject_claim or "sub",
        auto_provision=bool(tenant.auto_provision), active=tenant.status == "active",
    )


def verifier() -> Any:
    """The token verifier (``auth.TokenVerifier``), reused while the container is warm."""
    s = settings()
    return _once("verifier", lambda: TokenVerifier(TenantDirectory(_lookup_tenant, s.tenant_cache_seconds),
                                                   JwksCache(s.jwks_refetch_seconds), s.jwt_leeway_seconds))
