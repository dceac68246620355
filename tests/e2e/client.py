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


class Session:
    """One device: a socket whose frames are read in the background, so a test
    can await replies by requestId and events by type, in any order."""

    _n = 0

    def __init__(self, ws: websockets.ClientConnection, email: str) -> None:
        self.ws = ws
        self.email = email
        self.frames: list[dict[str, Any]] = []
        self._cond = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, stack: StackLike, email: str, **kwargs: Any) -> "Session":
        return cls(await connect(stack, email=email, **kwargs), email)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                async with self._cond:
                    self.frames.append(json.loads(raw))
                    self._cond.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, pred, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            async with self._cond:
                while True:
                    for f in self.frames:
                        if pred(f):
                            self.frames.remove(f)
                            return f
                    await self._cond.wait()
        return await asyncio.wait_for(find(), timeout)

    async def event(self, type_: str, timeout: float = RECV_TIMEOUT, **match: Any) -> dict[str, Any]:
        return await self.wait_for(lambda f: f.get("type") == type_ and all(
            _dig(f, k) == v for k, v in match.items()), timeout)

    async def no_event(self, type_: str, wait: float = 1.0, **match: Any) -> None:
        try:
            got = await self.event(type_, timeout=wait, **match)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected {type_} event: {got}")

    async def call(self, action: str, **fields: Any) -> dict[str, Any]:
        """Send an action; return the ack's result or raise ``ActionError``."""
        reply = await self.raw(action, **fields)
        if reply["type"] == "error":
            raise ActionError(reply["error"])
        assert reply["type"] == "ack" and reply["action"] == action, reply
        return reply["result"]

    async def raw(self, action: str, _timeout: float = RECV_TIMEOUT, **fields: Any) -> dict[str, Any]:
        Session._n += 1
        rid = f"r{Session._n}"
        await self.ws.send(json.dumps({"action": action, "requestId": rid, **fields}))
        return await self.wait_for(lambda f: f.get("requestId") == rid, _timeout)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class ActionError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code = error["code"]
        self.error = error


def _dig(frame: dict[str, Any], dotted: str) -> Any:
    cur: Any = frame
    for part in dotted.split("__"):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur
