"""Getting and keeping tokens.

The service accepts any OIDC token of a registered tenant's identity provider.
For the local stack (and any deployment that runs the dev identity provider)
``dev_token(origin, email)`` mints one; for a real deployment obtain the token
from the company's IdP and hand it to the client or store it with
``save_token`` (``chat login --token``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .errors import ChatError

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass
class TokenGrant:
    access_token: str
    expires_at: float | None
    tenant: str | None = None
    sub: str | None = None


def dev_token_grant(origin: str, email: str, *, timeout: float = 10.0,
                    session: requests.Session | None = None) -> TokenGrant:
    """``POST {origin}/dev/idp/token {"email"}``: a token for a seeded user of the dev IdP."""
    http = session or requests
    try:
        resp = http.post(f"{origin.rstrip('/')}/dev/idp/token", json={"email": email}, timeout=timeout)
    except requests.RequestException as exc:
        raise ChatError("unreachable", f"dev identity provider at {origin}: {exc}") from exc
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or "access_token" not in body:
        code = "forbidden" if resp.status_code == 403 else "unauthorized" if resp.status_code < 500 else "internal"
        raise ChatError(code, body.get("error_description") or body.get("error")
                        or f"dev identity provider answered HTTP {resp.status_code}")
    ttl = body.get("expires_in")
    return TokenGrant(body["access_token"], time.time() + float(ttl) if ttl else None,
                      body.get("tenant"), body.get("sub"))


def dev_token(origin: str, email: str, **kwargs: Any) -> str:
    return dev_token_grant(origin, email, **kwargs).access_token


class DevTokenProvider:
    """A token source for ``ChatClient(token=...)``: mints from the dev IdP, renews before expiry."""

    def __init__(self, origin: str, email: str, *, margin_s: float = 60.0) -> None:
        self.origin = origin
        self.email = email
        self.margin_s = margin_s
        self._grant: TokenGrant | None = None

    def __call__(self) -> str:
        g = self._grant
        if g is None or (g.expires_at is not None and g.expires_at - self.margin_s < time.time()):
            g = self._grant = dev_token_grant(self.origin, self.email)
        return g.access_token


def token_file() -> Path:
    """``$CHAT_TOKEN_FILE``, else ``~/.config/chat/token`` (``$XDG_CONFIG_HOME`` respected)."""
    explicit = os.environ.get("CHAT_TOKEN_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "chat" / "token"


def save_token(token: str, path: Path | None = None) -> Path:
    """Write the token (the bare JWT, one line) readable by the owner only."""
    path = path or token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token.strip() + "\n")
    os.chmod(path, 0o600)
    return path


def load_token(path: Path | None = None) -> str | None:
    path = path or token_file()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def token_claims(token: str) -> dict[str, Any]:
    """The token's claims, *unverified* (for display: who am I, when does it expire)."""
    import base64

    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
