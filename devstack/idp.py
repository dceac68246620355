"""Development identity provider: one OIDC issuer per seeded tenant.

Each tenant gets its own issuer ``{origin}/dev/idp/{tenant}`` and RSA key,
because the app maps a token to a tenant by its issuer alone (as with any
multi-tenant IdP, e.g. per-directory issuers).  The app validates these
tokens exactly as it validates a production IdP's: discovery, JWKS, RS256.

Private keys are written under the state directory so tests can sign
deliberately bad tokens with a tenant's real key.

Two ways to a token:

* the OIDC authorization code flow with PKCE (S256), as the web page signs in
  through a tenant's own IdP (docs/protocol.md "Signing in from a browser"):
  ``GET {issuer}/authorize`` shows a one-button "sign in as <login_hint>"
  page (no password: it is a dev IdP, and it says so), its form posts back to
  the same URL, which redirects to ``redirect_uri`` with ``code`` and
  ``state``; ``POST {issuer}/token`` (form-encoded,
  ``grant_type=authorization_code``) trades a code, single use and valid for
  60 s (``DEVSTACK_IDP_CODE_SECONDS``, or ``PUT /dev/idp/settings
  {"codeSeconds"}`` at run time), for tokens, given the exact ``redirect_uri`` and the
  ``code_verifier`` whose SHA-256 is the ``code_challenge``;
* the shortcut for scripts and tests: ``POST /dev/idp/token {"email"}``.

Both mint the same access token.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "enterprise-chat"
TOKEN_TTL_SECONDS = 3600
CODE_TTL_SECONDS = 60  # default lifetime of an authorization code; DEVSTACK_IDP_CODE_SECONDS sets another
MAX_CODE_SECONDS = 3600
# RFC 7636: a verifier is 43-128 of these; an S256 challenge is 43 base64url characters.
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                            "frame-ancestors 'none'"}


class DevIdp:
    def __init__(self, origin: str, state_dir: Path) -> None:
        self.origin = origin.rstrip("/")
        self.base = f"{self.origin}/dev/idp"
        self.state_dir = state_dir
        self._keys: dict[str, tuple[str, rsa.RSAPrivateKey]] = {}
        # Issued authorization codes: code -> what it was issued for (in memory, single use, code_seconds).
        self._codes: dict[str, dict[str, Any]] = {}
        self.code_seconds = _code_seconds(os.environ.get("DEVSTACK_IDP_CODE_SECONDS", CODE_TTL_SECONDS))

    def redirect_uri_allowed(self, uri: str) -> bool:
        """The one registered client is the stack's web page: ``{origin}/`` (127.0.0.1 or localhost)."""
        origin = urlparse(self.origin)
        allowed = {f"{self.origin}/"}
        if origin.hostname in ("127.0.0.1", "localhost"):
            other = "localhost" if origin.hostname == "127.0.0.1" else "127.0.0.1"
            allowed.add(f"{origin.scheme}://{other}:{origin.port}/")
        return uri in allowed

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
             ttl: int = TOKEN_TTL_SECONDS, **extra: Any) -> str:
        kid, key = self.key(tenant_id)
        now = int(time.time())
        claims = {"iss": self.issuer(tenant_id), "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now,
                  "exp": now + ttl, "email": email, "roles": roles, "name": name, **extra}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})

    async def handle(self, request: web.Request, path: str) -> web.Response:
        rest = path[len("/dev/idp"):].strip("/").split("/")
        if request.method == "POST" and rest == ["token"]:
            return await self._token(request)
        if rest == ["settings"] and request.method in ("GET", "PUT"):
            return await self._settings(request)
        if request.method == "GET" and len(rest) == 3 and rest[1:] == [".well-known", "openid-configuration"]:
            tenant_id = rest[0]
            issuer = self.issuer(tenant_id)
            return web.json_response({
                "issuer": issuer, "jwks_uri": f"{issuer}/jwks.json",
                "authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
                "id_token_signing_alg_values_supported": ["RS256"], "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"], "scopes_supported": ["openid", "email", "profile"],
                "subject_types_supported": ["public"],
            })
        if len(rest) == 2 and rest[1] == "authorize" and request.method in ("GET", "POST"):
            return await self._authorize(request, rest[0])
        if request.method == "POST" and len(rest) == 2 and rest[1] == "token":
            return await self._code_grant(request, rest[0])
        if request.method == "GET" and len(rest) == 2 and rest[1] == "jwks.json":
            return web.json_response(self.jwks(rest[0]))
        return web.json_response({"error": "not_found"}, status=404)

    async def _settings(self, request: web.Request) -> web.Response:
        """``GET``/``PUT /dev/idp/settings {"codeSeconds": 0..3600}``: the lifetime of codes issued from now on
        (0: a code is expired when it is made, for tests of expiry without waiting)."""
        if request.method == "PUT":
            try:
                self.code_seconds = _code_seconds((await request.json())["codeSeconds"])
            except (ValueError, KeyError, TypeError):
                return web.json_response({"error": "invalid_request", "error_description":
                                          f'PUT {{"codeSeconds": 0..{MAX_CODE_SECONDS}}}'}, status=400)
        return web.json_response({"codeSeconds": self.code_seconds})

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

    # --- authorization code + PKCE -----------------------------------------------------------

    async def _user_of(self, tenant_id: str, email: str) -> tuple[Any, str | None]:
        """The active user with this email of this dev-IdP tenant, or (None, why not)."""
        from chalicelib.models import Tenant, User

        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, User.find_by_email, email)
        if user is None or user.tenant_id != tenant_id:
            return None, f"{email} is not a user of this identity provider"
        tenant = await loop.run_in_executor(None, Tenant.get, tenant_id)
        if tenant.issuer != self.issuer(tenant_id):
            return None, "this tenant does not sign in here"
        if user.status != "active":
            return None, "user is deactivated"
        return user, None

    async def _authorize(self, request: web.Request, tenant_id: str) -> web.Response:
        q = dict(request.query) if request.method == "GET" else {k: str(v) for k, v in (await request.post()).items()}
        redirect_uri = q.get("redirect_uri", "")
        # Until client and redirect URI are known good, errors are shown here, never redirected (RFC 6749 4.1.2.1).
        if q.get("client_id") != AUDIENCE:
            return self._page("Unknown client", f"client_id must be {AUDIENCE!r}.", status=400)
        if not self.redirect_uri_allowed(redirect_uri):
            return self._page("Unregistered redirect_uri", f"{redirect_uri!r} is not registered for this client.",
                              status=400)

        def back(**fields: str) -> web.Response:
            if q.get("state"):
                fields["state"] = q["state"]
            return web.Response(status=302, headers={"Location": f"{redirect_uri}?{urlencode(fields)}",
                                                     "Cache-Control": "no-store"})

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type", error_description="only response_type=code")
        if "openid" not in q.get("scope", "").split():
            return back(error="invalid_scope", error_description="scope must include openid")
        if q.get("code_challenge_method") != "S256" or not _CHALLENGE.match(q.get("code_challenge", "")):
            return back(error="invalid_request", error_description="PKCE is required: code_challenge with S256")
        email = q.get("login_hint", "").strip().lower()
        if request.method == "GET":
            # The sign-in page: the params travel on in hidden fields; no password, it is a dev IdP.
            hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                             for k, v in q.items() if k != "login_hint")
            who = (f'<input type="hidden" name="login_hint" value="{html.escape(email)}">'
                   f'<p>Sign in as <b id="who">{html.escape(email)}</b>?</p>' if email else
                   '<p><input id="login" name="login_hint" type="email" placeholder="you@company.example" required></p>')
            body = (f'<form method="post">{hidden}{who}<button id="approve" type="submit">Sign in</button></form>'
                    '<p class="note">Development identity provider of the local stack: no password is asked; '
                    'any active user of this tenant may sign in.</p>')
            return self._page(f"Sign in to {html.escape(tenant_id)}", body, raw=True)
        if q.get("action") == "deny":
            return back(error="access_denied", error_description="the user declined")
        user, why = await self._user_of(tenant_id, email)
        if user is None:
            return back(error="access_denied", error_description=why or "not allowed")
        self._expire_codes()
        code = secrets.token_urlsafe(32)
        self._codes[code] = {"tenant": tenant_id, "user": user, "redirect_uri": redirect_uri,
                             "client_id": q["client_id"], "challenge": q["code_challenge"],
                             "nonce": q.get("nonce"), "expires": time.monotonic() + self.code_seconds}
        return back(code=code)

    def _expire_codes(self) -> None:
        now = time.monotonic()
        for code in [c for c, v in self._codes.items() if v["expires"] <= now]:
            del self._codes[code]

    async def _code_grant(self, request: web.Request, tenant_id: str) -> web.Response:
        def error(code: str, description: str, status: int = 400) -> web.Response:
            return web.json_response({"error": code, "error_description": description}, status=status,
                                     headers={"Cache-Control": "no-store"})

        if not request.content_type == "application/x-www-form-urlencoded":
            return error("invalid_request", "POST application/x-www-form-urlencoded (RFC 6749 4.1.3)")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("grant_type") != "authorization_code":
            return error("unsupported_grant_type", "only grant_type=authorization_code")
        for name in ("code", "redirect_uri", "client_id", "code_verifier"):
            if not form.get(name):
                return error("invalid_request", f"{name} is required")
        self._expire_codes()
        issued = self._codes.pop(form["code"], None)  # single use: gone whatever happens next
        if issued is None or issued["tenant"] != tenant_id:
            return error("invalid_grant", "unknown, expired or already used code")
        if form["client_id"] != issued["client_id"]:
            return error("invalid_grant", "the code was issued to another client")
        if form["redirect_uri"] != issued["redirect_uri"]:
            return error("invalid_grant", "redirect_uri does not match the authorization request")
        verifier = form["code_verifier"]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not _VERIFIER.match(verifier) or not secrets.compare_digest(challenge, issued["challenge"]):
            return error("invalid_grant", "code_verifier does not match the code_challenge")
        user = issued["user"]
        access = self.mint(tenant_id, user.user_id, user.email, list(user.roles), user.display_name)
        extra = {"nonce": issued["nonce"]} if issued["nonce"] else {}
        id_token = self.mint(tenant_id, user.user_id, user.email, list(user.roles), user.display_name, **extra)
        return web.json_response({"access_token": access, "id_token": id_token, "token_type": "Bearer",
                                  "expires_in": TOKEN_TTL_SECONDS, "scope": "openid email profile"},
                                 headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @staticmethod
    def _page(title: str, body: str, status: int = 200, raw: bool = False) -> web.Response:
        content = body if raw else f"<p>{html.escape(body)}</p>"
        doc = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Dev IdP</title><style>"
               "body{font:15px system-ui,sans-serif;max-width:420px;margin:12vh auto}"
               ".note{color:#666;font-size:12px}</style></head>"
               f"<body><h1>{html.escape(title) if not raw else title}</h1>{content}</body></html>")
        return web.Response(text=doc, status=status, content_type="text/html", headers=_PAGE_HEADERS)


def _code_seconds(value: Any) -> float:
    """A code lifetime in seconds, 0..MAX_CODE_SECONDS (ValueError/TypeError otherwise)."""
    if isinstance(value, bool):
        raise TypeError("codeSeconds is a number")
    seconds = float(value)
    if not 0 <= seconds <= MAX_CODE_SECONDS:
        raise ValueError(f"codeSeconds must be 0..{MAX_CODE_SECONDS}")
    return seconds
