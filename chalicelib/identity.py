"""Who is calling: the principal, a tenant's identity settings, where a request carries its token.

Plain data and parsing, no pyjwt: every function needs a ``Principal``, only
the ones that verify tokens (``auth.py``) load the JWT and crypto libraries.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple


# The company roles a directory user can hold (docs/compliance.md "Review queue" for ``reviewer``):
# ``admin`` manages the company (connections, policy, roles, rules); ``reviewer`` (a compliance
# officer) reads and works the screening review queue, which admins without it may not read;
# ``guest`` alone restricts; ``member`` is everyone else.  One list for REST, SCIM and tenantctl.
ROLES = ("admin", "member", "guest", "reviewer")


class TenantIdentity(NamedTuple):
    """What auth needs to know about a tenant's identity provider."""

    tenant_id: str
    issuer: str
    audience: str
    domains: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    email_claim: str = "email"
    roles_claim: str = "roles"
    # The claim that names the user (``sub`` unless the IdP's SCIM ids follow another one, e.g. Entra's ``oid``).
    subject_claim: str = "sub"
    jwks_uri: str | None = None
    auto_provision: bool = False
    active: bool = True


class Principal(NamedTuple):
    tenant_id: str
    user_id: str
    email: str
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def token_from_ws_connect(headers: Mapping[str, str] | None,
                          query: Mapping[str, str] | None) -> str | None:
    """The token of a WebSocket handshake: ``?token=`` or a ``bearer.<jwt>`` subprotocol.

    Browsers cannot set ``Authorization`` on a WebSocket, so the token may
    travel as one of the offered subprotocols (see docs/protocol.md).
    """
    if query and query.get("token"):
        return query["token"]
    for name, value in (headers or {}).items():
        if name.lower() == "sec-websocket-protocol":
            for proto in value.split(","):
                proto = proto.strip()
                if proto.startswith("bearer."):
                    return proto[len("bearer."):]
    return None


def token_from_authorization(headers: Mapping[str, str] | None) -> str | None:
    for name, value in (headers or {}).items():
        if name.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def authorizer_context(principal: Principal) -> dict[str, Any]:
    """Who a connection is, as the $connect authorizer's ``context`` (strings, numbers or booleans only)."""
    return {"tenantId": principal.tenant_id, "userId": principal.user_id, "email": principal.email,
            "roles": ",".join(principal.roles)}


def principal_from(authorizer: dict[str, Any] | None) -> Principal | None:
    """The principal from an event's ``requestContext.authorizer``; None when it names nobody."""
    if not authorizer or not authorizer.get("tenantId") or not authorizer.get("userId"):
        return None
    roles = tuple(r for r in str(authorizer.get("roles") or "").split(",") if r)
    return Principal(tenant_id=str(authorizer["tenantId"]), user_id=str(authorizer["userId"]),
                     email=str(authorizer.get("email") or ""), roles=roles)
