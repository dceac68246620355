"""Token verification: per-tenant OIDC issuer, JWKS, algorithm allowlist.

The tenant of a principal comes only from the *verified* issuer of its
token; nothing a client sends can choose it.  Every failure raises
:class:`Unauthorized` (the token is not acceptable) or :class:`Forbidden`
(the token is fine but the holder may not connect); messages name the
reason without echoing token contents.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any, Callable
from urllib.parse import urlparse

import jwt
from jwt import PyJWKSet
from jwt.exceptions import PyJWKSetError

from .identity import (Principal, TenantIdentity, token_from_authorization,  # noqa: F401 - re-exported
                       token_from_ws_connect)
from .protocol.errors import Forbidden, Unauthorized

# Asymmetric only: never "none", never an HMAC algorithm a public key could be
# abused with.
ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
JWKS_MAX_AGE_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 3


def _http_get_json(url: str) -> Any:
    parsed = urlparse(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise Unauthorized("Identity provider URL must use https.")
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as resp:  # noqa: S310
        return json.loads(resp.read(1024 * 1024))


class JwksCache:
    """Signing keys per issuer, refetched at most every ``refetch_seconds`` on an unknown kid."""

    def __init__(self, refetch_seconds: int, http_get: Callable[[str], Any] = _http_get_json,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refetch_seconds = refetch_seconds
        self._http_get = http_get
        self._clock = clock
        self._lock = threading.Lock()
        # issuer -> (fetched_at, {kid: PyJWK})
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}

    def _fetch(self, tenant: TenantIdentity) -> dict[str, Any]:
        uri = tenant.jwks_uri
        if not uri:
            discovery = self._http_get(tenant.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if discovery.get("issuer") != tenant.issuer or not discovery.get("jwks_uri"):
                raise Unauthorized("Identity provider discovery document does not match the issuer.")
            uri = discovery["jwks_uri"]
        try:
            keyset = PyJWKSet.from_dict(self._http_get(uri))
        except PyJWKSetError:
            return {}
        return {k.key_id: k for k in keyset.keys if k.key_id}

    def key(self, tenant: TenantIdentity, kid: str) -> Any:
        now = self._clock()
        with self._lock:
            cached = self._keys.get(tenant.issuer)
            fresh = cached is not None and now - cached[0] < JWKS_MAX_AGE_SECONDS
            if fresh and kid in cached[1]:
                return cached[1][kid]
            may_fetch = cached is None or not fresh or now - cached[0] >= self._refetch_seconds
            if not may_fetch:
                raise Unauthorized("Token signed with an unknown key.")
            try:
                keys = self._fetch(tenant)
            except (OSError, ValueError):
                raise Unauthorized("Identity provider keys are unavailable.") from None
            self._keys[tenant.issuer] = (now, keys)
            if kid not in keys:
                raise Unauthorized("Token signed with an unknown key.")
            return keys[kid]


class TokenVerifier:
    """Verify a bearer token and return the :class:`Principal` it proves."""

    def __init__(self, tenant_for_issuer: Callable[[str], TenantIdentity | None],
                 jwks: JwksCache, leeway_seconds: int) -> None:
        self._tenant_for_issuer = tenant_for_issuer
        self._jwks = jwks
        self._leeway = leeway_seconds

    def verify(self, token: str | None) -> tuple[Principal, TenantIdentity]:
        if not token:
            raise Unauthorized("No token: pass ?token=<jwt> or a 'bearer.<jwt>' subprotocol.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("Token is malformed.") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"Token algorithm {str(alg)[:16]!r} is not allowed.")
        typ = header.get("typ")
        if typ is not None and str(typ).lower() not in ACCEPTED_TYP:
            raise Unauthorized("Token type is not JWT or at+jwt.")
        kid = header.get("kid")
        issuer = unverified.get("iss")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("Token has no key id (kid).")
        if not isinstance(issuer, str) or not issuer:
            raise Unauthorized("Token has no issuer.")
        tenant = self._tenant_for_issuer(issuer)
        if tenant is None:
            raise Unauthorized("Token issuer is not a registered tenant.")
        if not tenant.active:
            raise Forbidden("Tenant is suspended.")
        if alg not in tenant.algorithms:
            raise Unauthorized(f"Token algorithm {alg} is not allowed for this tenant.")
        key = self._jwks.key(tenant, kid)
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=tenant.audience, issuer=tenant.issuer,
                leeway=self._leeway, options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("Token is not yet valid.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("Token audience does not match.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("Token issuer does not match.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"Token lacks the {exc.claim!r} claim.") from None
        except jwt.PyJWTError:
            raise Unauthorized("Token signature is invalid.") from None
        return self._principal(tenant, claims), tenant

    @staticmethod
    def _principal(tenant: TenantIdentity, claims: dict[str, Any]) -> Principal:
        sub = claims.get(tenant.subject_claim)
        email = claims.get(tenant.email_claim)
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise Unauthorized("Token subject is invalid.")
        if not isinstance(email, str) or "@" not in email:
            raise Forbidden("Token carries no email.")
        email = email.lower()
        if email.rsplit("@", 1)[1] not in tenant.domains:
            raise Forbidden("Token email is outside the tenant's domains.")
        raw_roles = claims.get(tenant.roles_claim) or []
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        roles = tuple(sorted({r for r in raw_roles if isinstance(r, str)})) or ("member",)
        return Principal(tenant_id=tenant.tenant_id, user_id=sub, email=email, roles=roles)


class TenantDirectory:
    """Issuer -> :class:`TenantIdentity`, cached per container for a short time."""

    def __init__(self, lookup: Callable[[str], TenantIdentity | None], ttl_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, TenantIdentity | None]] = {}

    def __call__(self, issuer: str) -> TenantIdentity | None:
        now = self._clock()
        hit = self._cache.get(issuer)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        tenant = self._lookup(issuer)
        self._cache[issuer] = (now, tenant)
        return tenant
