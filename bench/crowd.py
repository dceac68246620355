"""Many users online at once: directory entries, dev-IdP tokens, one WebSocket each.

Users are written with the app's own ``upsert_user`` (the seeded tenants
have only a few); each socket's frames are read in the background and the
arrival time of every ``message.created`` is kept by ``clientMessageId``,
so a benchmark can wait until every recipient has a message and see when
the last one got it.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import websockets

TENANT = "acme"
DOMAIN = "acme.example"


def create_users(count: int, prefix: str = "bench") -> list[tuple[str, str]]:
    """(email, user id) of ``count`` new members of the acme tenant (1 GetItem + 1 Query + 1 PutItem each)."""
    from chalicelib.services.tenants import upsert_user
    from devstack.seed import subject_for

    emails = [f"{prefix}-{i:04d}@{DOMAIN}" for i in range(count)]
    users = [(e, subject_for(e)) for e in emails]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: upsert_user(TENANT, u[1], u[0], u[0].split("@")[0]), users))
    return users


class Crowd:
    """Open sockets and what arrived on them."""

    def __init__(self, origin: str, ws_url: str) -> None:
        self.origin = origin
        self.ws_url = ws_url
        self.sockets: dict[str, websockets.ClientConnection] = {}  # email -> socket
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # clientMessageId -> perf_counter()s
        self._waiting: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._ids = itertools.count()

    async def open(self, emails: list[str], concurrency: int = 16) -> None:
        """Mint a token per user at the dev IdP and open one socket each."""
        gate = asyncio.Semaphore(concurrency)

        async def one(http: aiohttp.ClientSession, email: str) -> None:
            async with gate:
                async with http.post(f"{self.origin}/dev/idp/token", json={"email": email}) as resp:
                    resp.raise_for_status()
                    token = (await resp.json())["access_token"]
                ws = await websockets.connect(f"{self.ws_url}?token={token}", open_timeout=60,
                                              ping_interval=None, max_size=None, compression=None)
            self.sockets[email] = ws
            self._readers.append(asyncio.create_task(self._read(ws)))

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http, e) for e in emails))

    async def close(self, email: str) -> None:
        await self.sockets.pop(email).close()

    async def close_all(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets.values()), return_exceptions=True)
        self.sockets.clear()
        for task in self._readers:
            task.cancel()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                waiter = self._replies.pop(frame.get("requestId") or "", None)
                if waiter is not None:
                    waiter.set_result(frame)
                else:
                    self._event(frame, now)
        except websockets.ConnectionClosed:
            pass

    def _event(self, frame: dict[str, Any], now: float) -> None:
        """A frame that answers no request, arrived at ``now`` (perf_counter); subclasses add kinds."""
        if frame.get("type") == "message.created":
            self._arrived(frame["message"].get("clientMessageId"), now)

    def _arrived(self, key: str, now: float) -> None:
        got = self.arrivals[key]
        got.append(now)
        want = self._waiting.get(key)
        if want and len(got) >= want[0] and not want[1].done():
            want[1].set_result(None)

    async def delivered(self, key: str, count: int, timeout: float = 60.0) -> list[float]:
        """Wait until ``count`` sockets got the ``message.created`` with this clientMessageId."""
        if len(self.arrivals[key]) < count:
            fut = asyncio.get_running_loop().create_future()
            self._waiting[key] = (count, fut)
            try:
                await asyncio.wait_for(fut, timeout)
            finally:
                self._waiting.pop(key, None)
        return self.arrivals.pop(key)

    async def call(self, email: str, action: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Send an action from this user's socket; the ack's result, or raise on an error frame."""
        rid = f"b{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        await self.sockets[email].send(json.dumps({"action": action, "requestId": rid, **fields}))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.get("type") != "ack":
            raise RuntimeError(f"{action} failed: {reply}")
        return reply["result"]


async def make_channel(crowd: Crowd, owner: str, name: str, user_ids: list[str], batch: int) -> str:
    """Create a private channel as ``owner`` and add ``user_ids`` with ``member.add``, ``batch`` per frame."""
    result = await crowd.call(owner, "conversation.create", kind="channel", name=name)
    conv = result["conversation"]["conversationId"]
    for i in range(0, len(user_ids), batch):
        await crowd.call(owner, "member.add", conversationId=conv, userIds=user_ids[i:i + batch])
    return conv
