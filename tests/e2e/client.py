"""Helpers the end-to-end tests share: tokens, sockets, frames (one place for wire calls)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import requests
import websockets
from websockets.exceptions import InvalidStatus

StackLike = Any  # tests.conftest.Stack

RECV_TIMEOUT = 10.0


def token_for(stack: StackLike, email: str) -> str:
    resp = requests.post(f"{stack.origin}/dev/idp/token", json={"email": email}, timeout=10)
    resp.raise_for_status()
    return resp.json()["access_token"]


def craft(stack: StackLike, signer: str, *, headers: dict[str, Any] | None = None,
          key_pem: str | None = None, **claims: Any) -> str:
    """Sign a token with tenant ``signer``'s real dev-IdP key, with any claims/headers changed."""
    k = stack.key(signer)
    now = int(time.time())
    body = {"iss": k["issuer"], "aud": k["audience"], "sub": "crafted-user", "iat": now, "nbf": now,
            "exp": now + 600, "email": f"crafted@{signer}.example", "roles": ["member"]}
    body.update(claims)
    body = {k2: v for k2, v in body.items() if v is not None}
    hdr = {"kid": k["kid"], "typ": "JWT"}
    hdr.update(headers or {})
    return jwt.encode(body, key_pem or k["private_key_pem"], algorithm="RS256", headers=hdr)


async def connect(stack: StackLike, token: str | None = None, *, email: str | None = None,
                  **kwargs: Any) -> websockets.ClientConnection:
    if email is not None:
        token = await asyncio.to_thread(token_for, stack, email)
    url = stack.ws if token is None else f"{stack.ws}?token={token}"
    return await websockets.connect(url, open_timeout=15, ping_interval=None, max_size=None, **kwargs)


async def handshake_status(stack: StackLike, token: str | None, **kwargs: Any) -> int:
    """HTTP status of a handshake: 101 if accepted, else the refusal status."""
    try:
        ws = await connect(stack, token, **kwargs)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def recv_json(ws: websockets.ClientConnection, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws: websockets.ClientConnection, frame: dict[str, Any] | str,
                  timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    """Send a frame and return the reply carrying its requestId (skipping unrelated events)."""
    raw = frame if isinstance(frame, str) else json.dumps(frame)
    rid = frame.get("requestId") if isinstance(frame, dict) else None
    await ws.send(raw)
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if rid is None or msg.get("requestId") == rid:
            return msg
