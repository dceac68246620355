"""End-to-end probe of a deployment: two users, one message, one file, each step timed.

    health → connect A → connect B → conversation → send → receive → upload → file.ready → download

The same probe runs as ``tools/smoke.py`` (configured by environment
variables, for CI and after a deploy) and as ``chat smoke`` (flags).
Everything goes through the public protocol: the WebSocket API, the
presigned POST straight to storage, and a presigned GET back, so a pass
means a real client works against that deployment end to end.

The probe's messages land in the direct conversation of the two users
(one per pair, reused on every run); use dedicated probe accounts.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

from .auth import dev_token_grant, token_claims
from .client import ChatClient
from .errors import ChatError
from .events import Event, FileReady, FileRejected, MessageCreated
from .rest import RestClient

STEPS = ("health", "token.a", "token.b", "connect.a", "connect.b", "conversation", "send", "receive",
         "upload", "file.ready", "download")


@dataclass
class ProbeConfig:
    url: str                      # HTTP origin of the REST API (on AWS: the EndpointURL output)
    ws_url: str | None = None     # WebSocket URL when not <url>/ws (on AWS: wss://…/<stage>)
    token_a: str | None = None
    token_b: str | None = None
    idp_url: str | None = None    # a dev identity provider to mint tokens from (local stack: = url)
    email_a: str | None = None
    email_b: str | None = None
    conversation_id: str | None = None  # probe in this conversation instead of A and B's direct one
    timeout: float = 30.0         # seconds per step


@dataclass
class Step:
    name: str
    ok: bool
    ms: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "ms": round(self.ms, 1), "detail": self.detail, **self.data}


class ProbeFailed(Exception):
    pass


class _Run:
    def __init__(self, cfg: ProbeConfig, on_step: Callable[[Step], None]) -> None:
        self.cfg = cfg
        self.on_step = on_step
        self.steps: list[Step] = []

    async def step(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            result = await asyncio.wait_for(fn(), self.cfg.timeout)
        except asyncio.TimeoutError:
            self._record(Step(name, False, (time.perf_counter() - t0) * 1000, f"timed out after {self.cfg.timeout:g} s"))
            raise ProbeFailed(name) from None
        except ChatError as exc:
            self._record(Step(name, False, (time.perf_counter() - t0) * 1000, f"{exc.code}: {exc.message}"[:300]))
            raise ProbeFailed(name) from None
        except Exception as exc:  # noqa: BLE001 - a probe reports every failure as a failed step
            self._record(Step(name, False, (time.perf_counter() - t0) * 1000, f"{type(exc).__name__}: {exc}"[:300]))
            raise ProbeFailed(name) from None
        detail, data = (result if isinstance(result, tuple) else (str(result or ""), {}))
        self._record(Step(name, True, (time.perf_counter() - t0) * 1000, detail, data))
        return data

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        self.on_step(step)


def _token(cfg: ProbeConfig, which: str) -> tuple[str | None, str | None]:
    return (cfg.token_a, cfg.email_a) if which == "a" else (cfg.token_b, cfg.email_b)


async def run_probe(cfg: ProbeConfig, on_step: Callable[[Step], None] = lambda s: None) -> list[Step]:
    """Run every step in order, stop at the first failure; returns the steps run (``ok`` each)."""
    run = _Run(cfg, on_step)
    clients: list[ChatClient] = []
    tmp = Path(tempfile.mkdtemp(prefix="chat-probe-"))
    try:
        await _probe(run, cfg, clients, tmp)
    except ProbeFailed:
        pass
    finally:
        for c in clients:
            await c.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return run.steps


async def _probe(run: _Run, cfg: ProbeConfig, clients: list[ChatClient], tmp: Path) -> None:
    url = cfg.url.rstrip("/")

    async def health() -> Any:
        body = await asyncio.to_thread(RestClient(url, timeout=cfg.timeout).health)
        return f"status {body.get('status')}", {}

    await run.step("health", health)

    tokens: dict[str, str] = {}
    for which in ("a", "b"):
        token, email = _token(cfg, which)
        if token:
            tokens[which] = token
            continue
        if not (cfg.idp_url and email):
            run._record(Step(f"token.{which}", False, 0.0, f"no token for user {which.upper()}: set CHAT_TOKEN_"
                                                           f"{which.upper()}, or a dev IdP URL and CHAT_EMAIL_{which.upper()}"))
            raise ProbeFailed(f"token.{which}")

        async def mint(email: str = email, which: str = which) -> Any:
            grant = await asyncio.to_thread(dev_token_grant, cfg.idp_url or url, email, timeout=cfg.timeout)
            tokens[which] = grant.access_token
            return f"{email} ({grant.tenant})", {}

        await run.step(f"token.{which}", mint)

    subs = {w: token_claims(tokens[w]).get("sub") for w in ("a", "b")}
    if subs["a"] == subs["b"]:
        run._record(Step("connect.b", False, 0.0, "A and B must be two different users"))
        raise ProbeFailed("connect.b")

    by: dict[str, ChatClient] = {}
    for which in ("a", "b"):
        client = ChatClient(url, tokens[which], ws_url=cfg.ws_url, device="smoke-probe", reconnect=False,
                            request_timeout=cfg.timeout, open_timeout=cfg.timeout)
        clients.append(client)

        async def connect(client: ChatClient = client) -> Any:
            await client.connect()
            return f"user {client.user_id}", {}

        await run.step(f"connect.{which}", connect)
        by[which] = client
    a, b = by["a"], by["b"]
    b_events = b.events("message.created", "file.ready")
    a_events = a.events("file.rejected")

    async def conversation() -> Any:
        if cfg.conversation_id:
            conv = (await a.call("conversation.get", conversationId=cfg.conversation_id))["conversation"]
        else:
            email_b = cfg.email_b or token_claims(tokens["b"]).get("email")
            fields: dict[str, Any] = {"memberEmails": [email_b]} if email_b else {"members": [subs["b"]]}
            res = await a.call("conversation.create", kind="direct", **fields)
            conv = res["conversation"]
        cid = conv["conversationId"]
        a.track(cid, int(conv.get("lastSeq") or 0))
        b.track(cid, int(conv.get("lastSeq") or 0))
        return f"{cid}{' (external)' if conv.get('external') else ''}", {"conversationId": cid}

    cid = (await run.step("conversation", conversation))["conversationId"]

    marker = f"smoke {uuid.uuid4().hex}"
    sent_at: dict[str, float] = {}

    async def send() -> Any:
        sent_at["t"] = time.perf_counter()
        res = await a.send(cid, marker)
        return f"seq {res.message.seq}", {"seq": res.message.seq}

    await run.step("send", send)

    async def receive() -> Any:
        def match(e: Event) -> bool:
            return isinstance(e, MessageCreated) and e.message.conversation_id == cid and e.message.body == marker

        ev = await b_events.wait_for(match, cfg.timeout)
        lag = (time.perf_counter() - sent_at["t"]) * 1000
        return f"seq {ev.message.seq}, {lag:.1f} ms after the send started", {"seq": ev.message.seq}

    await run.step("receive", receive)

    payload = f"probe {marker} {time.time()}\n".encode() * 64
    path = tmp / f"smoke-{uuid.uuid4().hex[:8]}.txt"
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    async def upload() -> Any:
        record = await a.upload_file(cid, path, content_type="text/plain")
        return f"{record.get('fileId')} ({len(payload)} bytes, presigned POST)", {"fileId": record.get("fileId")}

    file_id = (await run.step("upload", upload))["fileId"]

    async def ready() -> Any:
        def match(e: Event) -> bool:
            return isinstance(e, FileReady) and e.file.get("fileId") == file_id

        waiter = asyncio.ensure_future(b_events.wait_for(match, cfg.timeout))
        refused = asyncio.ensure_future(a_events.wait_for(
            lambda e: isinstance(e, FileRejected) and e.file_id == file_id, cfg.timeout))
        done, pending = await asyncio.wait({waiter, refused}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        ev = done.pop().result()
        if isinstance(ev, FileRejected):
            raise ChatError("file_rejected", f"{ev.reason}: {ev.message}")
        return f"seq {ev.seq} (scanned and announced)", {"seq": ev.seq}

    await run.step("file.ready", ready)

    async def download() -> Any:
        res = await b.call("file.download.request", fileId=file_id)
        resp = await asyncio.to_thread(requests.get, res["download"]["url"], timeout=cfg.timeout)
        if resp.status_code != 200:
            raise ChatError("download_failed", f"storage answered HTTP {resp.status_code}: {resp.text[:200]}")
        if hashlib.sha256(resp.content).hexdigest() != digest:
            raise ChatError("download_failed", "downloaded bytes differ from the uploaded ones")
        return f"{len(resp.content)} bytes, sha256 matches", {}

    await run.step("download", download)


def config_from_env(env: dict[str, str] | None = None) -> ProbeConfig:
    """``tools/smoke.py``'s configuration (docs/operations.md, "Smoke test")."""
    env = dict(os.environ if env is None else env)
    url = env.get("CHAT_API_URL") or env.get("CHAT_URL")
    if not url:
        raise ValueError("set CHAT_API_URL (the REST API's URL; the local stack's origin)")
    return ProbeConfig(
        url=url, ws_url=env.get("CHAT_WS_URL") or None,
        token_a=env.get("CHAT_TOKEN_A") or None, token_b=env.get("CHAT_TOKEN_B") or None,
        idp_url=env.get("CHAT_IDP_URL") or None,
        email_a=env.get("CHAT_EMAIL_A") or None, email_b=env.get("CHAT_EMAIL_B") or None,
        conversation_id=env.get("CHAT_CONVERSATION_ID") or None,
        timeout=float(env.get("CHAT_SMOKE_TIMEOUT") or 30),
    )


def format_step(step: Step) -> str:
    return f"{'ok  ' if step.ok else 'FAIL'}  {step.name:<13} {step.ms:9.1f} ms  {step.detail}"
