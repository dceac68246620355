"""Development identity provider: one OIDC issuer per seeded tenant.

Each tenant gets its own issuer ``{origin}/dev/idp/{tenant}`` and RSA key,
because the app maps a token to a tenant by its issuer alone (as with any
multi-tenant IdP, e.g. per-directory issuers).  The app validates these
tokens exactly as it validates a production IdP's: discovery, JWKS, RS256.

Private keys are written under the state directory so tests can sign
deliberately bad tokens with a tenant's real key.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "enterprise-chat"
TOKEN_TTL_SECONDS = 3600


class DevIdp:
    def __init__(self, origin: str, state_dir: Path) -> None:
        self.base = f"{origin}/dev/idp"
        self.state_dir = state_dir
        self._keys: dict[str, tuple[str, rsa.RSAPrivateKey]] = {}

    def issuer(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}"

    def key(self, tenant_id: str) -> tuple[str, rsa.RSAPrivateKey]:
        if tenant_id not in self._keys:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            kid = f"{tenant_id}-{os.urandom(4).hex()}"
            self._keys[tenant_id] = (kid, key)
            folder = self.state_dir / "keys"
            folder.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            path = folder / f"{tenant_id}.json"
            path.write_text(json.dumps({"kid": kid, "issuer": self.issuer(tenant_id),
                                        "audience": AUDIENCE, "private_key_pem": pem}))
            path.chmod(0o600)
        return self._keys[tenant_id]

    def jwks(self, tenant_id: str) -> dict[str, Any]:
        kid, key = self.key(tenant_id)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def mint(self, tenant_id: str, sub: str, email: str, roles: list[str], name: str = "",
             ttl: int = TOKEN_TTL_SECONDS) -> str:
        kid, key = self.key(tenant_id)
        now = int(time.time())
        claims = {"iss": self.issuer(tenant_id), "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now,
                  "exp": now + ttl, "email": email, "roles": roles, "name": name}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})

    async def handle(self, request: web.Request, path: str) -> web.Response:
        rest = path[len("/dev/idp"):].strip("/").split("/")
        if request.method == "POST" and rest == ["token"]:
            return await self._token(request)
        if request.method == "GET" and len(rest) == 3 and rest[1:] == [".well-known", "openid-configuration"]:
            tenant_id = rest[0]
            issuer = self.issuer(tenant_id)
            return web.json_response({
                "issuer": issuer, "jwks_uri": f"{issuer}/jwks.json", "token_endpoint": f"{self.base}/token",
                "id_token_signing_alg_values_supported": ["RS256"], "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
            })
        if request.method == "GET" and len(rest) == 2 and rest[1] == "jwks.json":
            return web.json_response(self.jwks(rest[0]))
        return web.json_response({"error": "not_found"}, status=404)

    async def _token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            email = str(body["email"]).strip().lower()
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "invalid_request", "error_description":
                                      'POST a JSON object {"email": "..."}'}, status=400)
        from chalicelib.models import Tenant, User

        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, User.find_by_email, email)
        tenant = await loop.run_in_executor(None, Tenant.get, user.tenant_id) if user else None
        if user is None or tenant is None or tenant.issuer != self.issuer(user.tenant_id):
            return web.json_response({"error": "access_denied",
                                      "error_description": "not a user of a dev-IdP tenant"}, status=403)
        if user.status != "active":
            return web.json_response({"error": "access_denied", "error_description": "user is deactivated"},
                                     status=403)
        token = self.mint(user.tenant_id, user.user_id, user.email, list(user.roles), user.display_name)
        return web.json_response({"access_token": token, "token_type": "Bearer",
                                  "expires_in": TOKEN_TTL_SECONDS, "tenant": user.tenant_id,
                                  "sub": user.user_id})
