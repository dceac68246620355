"""Two companies, one run (issue #21): does a flooding company hurt a quiet one?

Company A's clients run in a process of their own (on a real network they are other machines), so
their event loop never delays what is measured for B; B chats WARM_S unmeasured first, so that its
baseline is the stack's steady state, not its cold caches.

Phase 1: company B chats normally alone (SENDERS_B of its users send about once a second each into
a conversation of B_MEMBERS, one device each): B's ack p99 and delivery p99 are the baseline.
Phase 2: the same B traffic while company A floods: A_SENDERS devices each try to send at twice
their per-user limit (firing without waiting for replies) into a conversation of A_SENDERS members, and A_STORM more of A's users
reconnect in a loop (a reconnect storm past A's connects/s limit; its clients wait a 429's Retry-After
as the SDK does, unless FAIRNESS_STORM=hammer).  Both conversations are larger
than DELIVERY_LARGE_MEMBERS, so every event of both companies goes through the shared delivery
workers, where A is held to its posts/s budget (chalicelib/fair.py).

Reported: B's p99s in phase 2 over phase 1 (the goal: within 1.5x), and A's outcomes: sends
ok / rate_limited / errors, connects ok / rate_limited / errors, and lost = A's acked messages that
never reached every A recipient (waited for up to DRAIN_S after the flood: A's events are late by
design, never dropped).  The stack's EMF lines give the delivery jobs deferred and TenantThrottled
per company.  One run on a shared 2-core machine is noisy: the local stack's functions are processes
on the same cores as the clients, so A's flood also takes CPU from B, which a real
account (separate Lambda sandboxes) would not; read the ratio with that in mind.

Writes bench/results/tenant_fairness.json.
Usage: python bench/tenant_fairness.py [seconds per phase (20)]
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import websockets
from websockets.exceptions import InvalidStatus

from crowd import Crowd
from stack import ROOT, STACK_ENV, local_stack, use_stack_env, write_result

NAME = "bench-tenant-fairness"
B_MEMBERS, SENDERS_B = 10, 2
A_SENDERS, A_STORM = 10, 8
# A's limits: B's own traffic (2 messages/s into 10 members).  The defaults are sized for AWS; on one
# 2-core host every function of both companies shares the cores, and A allowed four times B's traffic
# saturates it whatever the product does (docs/proof.md).
A_LIMITS = {"sends-per-second-user": 1, "sends-per-second-tenant": 2, "connects-per-second": 2,
            "delivery-posts-per-second": 20}
A_ATTEMPTS_PER_USER = float(os.environ.get("FAIRNESS_A_RATE", "2.0"))  # attempts a second per A device: 2 = twice its limit
DRAIN_S = 180.0
# The reconnect storm's clients wait the 429's Retry-After before trying again, as the SDK does;
# FAIRNESS_STORM=hammer makes them ignore it and retry every 50 ms (a client that is broken).
# FAIRNESS_STORM=off or FAIRNESS_FLOOD=off leave out one part of A's flood, to see what each costs B.
STORM = os.environ.get("FAIRNESS_STORM", "sdk")
HAMMER = STORM == "hammer"
FLOOD = os.environ.get("FAIRNESS_FLOOD", "on") != "off"
WARM_S = 6.0  # B chats this long before phase 1, so that B's baseline is its steady state
CACHE_S = 8  # the stack's TENANT_CACHE_SECONDS: how long a container keeps a company's limits
ENV = {**STACK_ENV, "DELIVERY_LARGE_MEMBERS": "6", "DELIVERY_INLINE_MAX": "6", "DELIVERY_SHARD_SIZE": "8",
       "TENANT_CACHE_SECONDS": str(CACHE_S)}


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else None


def company(origin: str, label: str, users: int, limits: dict[str, int] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """A fresh company with ``users`` members: (tenant id, [(email, user id)])."""
    from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user
    from tools import tenantctl

    tid = f"{label}-{uuid.uuid4().hex[:6]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"{origin}/dev/idp/{tid}", audience="enterprise-chat"))
    people = [(f"u{i:03d}@{domain}", f"{tid}-u{i:03d}") for i in range(users)]
    for email, uid in people:
        upsert_user(tid, uid, email, email.split("@")[0], ["member"])
    if limits:
        args = [f"--{k}={v}" for k, v in limits.items()]
        assert tenantctl.main(["limits", "--tenant", tid, *args]) == 0
    return tid, people


class Devices(Crowd):
    """A crowd whose calls answer the raw reply (ack or error), for counting refusals."""

    async def raw(self, email: str, action: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        rid = f"f{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        await self.sockets[email].send(json.dumps({"action": action, "requestId": rid, **fields}))
        return await asyncio.wait_for(fut, timeout)


async def chat_b(devs: Devices, conv: str, senders: list[str], recipients: int, seconds: float) -> dict[str, Any]:
    """B's normal chat: each sender about once a second; ack and delivery latencies (ms)."""
    acks: list[float] = []
    deliveries: list[float] = []
    errors: list[str] = []
    missing = 0

    async def one(sender: str, k: int) -> None:
        nonlocal missing
        cmid = f"b-{uuid.uuid4().hex[:10]}"
        t0 = time.perf_counter()
        waiter = asyncio.create_task(devs.delivered(cmid, recipients, timeout=120))
        try:
            reply = await devs.raw(sender, "message.send", conversationId=conv, clientMessageId=cmid, body=f"b {k}")
            if reply.get("type") == "ack":
                acks.append((time.perf_counter() - t0) * 1000)
            else:
                errors.append(json.dumps(reply.get("error"))[:120])
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(type(exc).__name__)
        try:
            deliveries.extend((t - t0) * 1000 for t in await waiter)
        except asyncio.TimeoutError:
            missing += 1

    tasks, k, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for sender in senders:
            tasks.append(asyncio.create_task(one(sender, k)))
            k += 1
            await asyncio.sleep(1.0 / len(senders))
    await asyncio.gather(*tasks)
    return {"sends": len(tasks), "ack_ms": {"p50": pct(acks, 0.5), "p99": pct(acks, 0.99)},
            "delivery_ms": {"p50": pct(deliveries, 0.5), "p99": pct(deliveries, 0.99)},
            "errors": len(errors), "error_samples": errors[:5], "not_reaching_everyone": missing}


async def flood_a(devs: Devices, conv: str, senders: list[str], seconds: float) -> dict[str, Any]:
    """A's devices sending at twice their limit; what each attempt got, and the acked ids."""
    outcomes: Counter[str] = Counter()
    acked: list[str] = []

    async def attempt(sender: str, k: int) -> None:
        cmid = f"a-{uuid.uuid4().hex[:10]}"
        try:
            reply = await devs.raw(sender, "message.send", timeout=120, conversationId=conv,
                                   clientMessageId=cmid, body=f"a {k}")
            if reply.get("type") == "ack":
                outcomes["ok"] += 1
                acked.append(cmid)
            else:
                code = (reply.get("error") or {}).get("code")
                outcomes["rate_limited" if code == "rate_limited" else f"error:{code}"] += 1
        except Exception as exc:  # noqa: BLE001 - counted
            outcomes[f"error:{type(exc).__name__}"] += 1

    async def device(sender: str) -> list[asyncio.Task[None]]:
        """Fire at the attempt rate without waiting for replies (a runaway client does not wait)."""
        end, k, tasks = time.perf_counter() + seconds, 0, []
        while time.perf_counter() < end:
            tasks.append(asyncio.create_task(attempt(sender, k)))
            k += 1
            await asyncio.sleep(1.0 / A_ATTEMPTS_PER_USER)
        return tasks

    fired = await asyncio.gather(*(device(s) for s in senders))
    await asyncio.gather(*(t for tasks in fired for t in tasks))
    return {"outcomes": dict(outcomes), "acked": acked}


async def storm_a(ws_url: str, tokens: list[str], seconds: float) -> dict[str, int]:
    """A's reconnect storm: each user opens and closes a socket in a loop (honouring 429s unless HAMMER)."""
    outcomes: Counter[str] = Counter()

    async def user(token: str) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                ws = await websockets.connect(f"{ws_url}?token={token}", open_timeout=30, ping_interval=None)
                outcomes["ok"] += 1
                await ws.close()
            except InvalidStatus as exc:
                code = exc.response.status_code
                outcomes["rate_limited" if code == 429 else f"refused:{code}"] += 1
                if code == 429 and not HAMMER:  # as the SDK does: wait what the refusal says, then retry
                    await asyncio.sleep(float(exc.response.headers.get("Retry-After") or 1) + random.random() * 0.2)
            except Exception as exc:  # noqa: BLE001 - counted
                outcomes[f"error:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(*(user(t) for t in tokens))
    return dict(outcomes)


async def tokens_for(origin: str, emails: list[str]) -> list[str]:
    async with aiohttp.ClientSession() as http:
        async def one(email: str) -> str:
            async with http.post(f"{origin}/dev/idp/token", json={"email": email}) as resp:
                resp.raise_for_status()
                return (await resp.json())["access_token"]
        return await asyncio.gather(*(one(e) for e in emails))


def emf_since(log: Path, offset: int) -> dict[str, Any]:
    """Deferrals and TenantThrottled per company from the stack's EMF lines after ``offset``."""
    deferred, throttled = 0, Counter()
    with log.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if b'"_aws"' not in raw:
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            deferred += int(doc.get("DeliveryJobsDeferred") or 0)
            if doc.get("TenantThrottled"):
                throttled[doc.get("tenant")] += int(doc["TenantThrottled"])
    return {"delivery_jobs_deferred": deferred, "tenant_throttled": dict(throttled)}


def company_a(info: dict[str, Any], chat: list[tuple[str, str]], storm: list[str], seconds: float,
              to_parent: Any, from_parent: Any) -> None:
    """Company A's clients, in a process of their own (on a real network they are other machines,
    so their event loop must not delay B's measurements): open A's devices and its conversation,
    wait for the go, flood and storm, then wait for A's acked messages to reach every A device."""
    async def go() -> dict[str, Any]:
        devs = Devices(info["origin"], info["ws"])
        await devs.open([e for e, _ in chat], concurrency=4)
        storm_tokens = await tokens_for(info["origin"], storm)
        conv = (await devs.call(chat[0][0], "conversation.create", kind="group",
                                members=[u for _, u in chat[1:]]))["conversation"]["conversationId"]
        to_parent.put("ready")
        await asyncio.to_thread(from_parent.get)
        try:
            sends, connects = await asyncio.gather(
                flood_a(devs, conv, [e for e, _ in chat], seconds if FLOOD else 0),
                storm_a(info["ws"], storm_tokens, seconds if STORM != "off" else 0))
            to_parent.put("flood over")
            drain_start, lost = time.perf_counter(), 0
            for cmid in sends["acked"]:
                try:
                    await devs.delivered(cmid, len(chat) - 1, timeout=max(1.0, DRAIN_S - (time.perf_counter() - drain_start)))
                except asyncio.TimeoutError:
                    lost += 1
            return {"sends": sends["outcomes"], "acked": len(sends["acked"]), "connects": connects, "lost": lost,
                    "drained_s": round(time.perf_counter() - drain_start, 1)}
        finally:
            await devs.close_all()

    to_parent.put(asyncio.run(go()))


async def run(info: dict[str, Any], seconds: float) -> dict[str, Any]:
    origin, ws_url = info["origin"], info["ws"]
    b_tid, b_people = await asyncio.to_thread(company, origin, "quiet-b", B_MEMBERS)
    a_tid, a_people = await asyncio.to_thread(company, origin, "flood-a", A_SENDERS + A_STORM,
                                              {k: v for k, v in A_LIMITS.items() if k != "connects-per-second"})
    a_chat, a_storm = a_people[:A_SENDERS], a_people[A_SENDERS:]
    ctx = multiprocessing.get_context("spawn")
    to_parent, from_parent = ctx.Queue(), ctx.Queue()
    a_process = ctx.Process(target=company_a, args=(info, a_chat, [e for e, _ in a_storm], seconds,
                                                    to_parent, from_parent), daemon=True)
    a_process.start()
    devs = Devices(origin, ws_url)
    await devs.open([e for e, _ in b_people], concurrency=4)
    assert await asyncio.to_thread(to_parent.get, True, 300) == "ready"
    from tools import tenantctl  # the connect limit after A's devices are in: the storm meets it

    assert tenantctl.main(["limits", "--tenant", a_tid, f"--connects-per-second={A_LIMITS['connects-per-second']}"]) == 0
    limited_at = time.monotonic()
    b_conv = (await devs.call(b_people[0][0], "conversation.create", kind="group",
                              members=[u for _, u in b_people[1:]]))["conversation"]["conversationId"]
    await asyncio.sleep(3)  # conversation announcements and presence settle
    b_senders = [e for e, _ in b_people[:SENDERS_B]]
    log = ROOT / ".devstack" / NAME / "stack.log"
    try:
        await chat_b(devs, b_conv, b_senders, B_MEMBERS - 1, WARM_S)  # containers' caches warm: not measured
        print(f"phase 1: B alone, {SENDERS_B} senders ~1/s each into {B_MEMBERS} members, {seconds:.0f} s", flush=True)
        alone = await chat_b(devs, b_conv, b_senders, B_MEMBERS - 1, seconds)
        print("  ", json.dumps(alone), flush=True)
        # A's limits read when its devices connected are cached per container: let them expire
        await asyncio.sleep(max(1.0, CACHE_S + 2 - (time.monotonic() - limited_at)))
        offset = log.stat().st_size if log.exists() else 0
        print(f"phase 2: the same B traffic while A floods ({A_SENDERS} devices at "
              f"{A_ATTEMPTS_PER_USER:.0f}/s each, {A_STORM} users reconnecting; A's clients in their own process)",
              flush=True)
        from_parent.put("go")
        flooded = await chat_b(devs, b_conv, b_senders, B_MEMBERS - 1, seconds)
        print("  ", json.dumps(flooded), flush=True)
        assert await asyncio.to_thread(to_parent.get, True, 600) == "flood over"
        a = await asyncio.to_thread(to_parent.get, True, DRAIN_S + 120)
        emf = emf_since(log, offset) if log.exists() else {}
    finally:
        await devs.close_all()
        a_process.join(timeout=30)

    def ratio(key: str) -> float | None:
        base, now = alone[key]["p99"], flooded[key]["p99"]
        return round(now / base, 2) if base and now is not None else None

    a_errors = sum(v for k, v in a["sends"].items() if k.startswith("error"))
    return {
        "phase_seconds": seconds, "b_alone": alone, "b_with_flood": flooded,
        "b_ack_p99_ratio": ratio("ack_ms"), "b_delivery_p99_ratio": ratio("delivery_ms"),
        "a_sends": a["sends"], "a_send_errors": a_errors, "a_connects": a["connects"],
        "a_acked": a["acked"], "a_lost": a["lost"], "a_drain_seconds": a["drained_s"],
        "a_limits": A_LIMITS, "emf": {**emf, "tenant_throttled": {("A" if t == a_tid else "B" if t == b_tid else t): n
                                                                  for t, n in (emf.get("tenant_throttled") or {}).items()}},
        "stack_env": ENV, "storm": STORM, "flood": FLOOD,
    }


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    with local_stack(NAME, ENV) as info:
        use_stack_env(info)
        result = asyncio.run(run(info, seconds))
    result["load_average_after"] = os.getloadavg()
    write_result("tenant_fairness.json", result)
    print(f"B ack p99 {result['b_alone']['ack_ms']['p99']:.0f} -> {result['b_with_flood']['ack_ms']['p99']:.0f} ms "
          f"(x{result['b_ack_p99_ratio']}), delivery p99 {result['b_alone']['delivery_ms']['p99']:.0f} -> "
          f"{result['b_with_flood']['delivery_ms']['p99']:.0f} ms (x{result['b_delivery_p99_ratio']}); goal <= 1.5x")
    print(f"A sends {result['a_sends']}, connects {result['a_connects']}, acked {result['a_acked']}, "
          f"lost {result['a_lost']} (drained in {result['a_drain_seconds']} s); EMF {result['emf']}")
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print("wrote bench/results/tenant_fairness.json")


if __name__ == "__main__":
    main()
