"""What the everyday actions other than sending cost, counted at the local stack's endpoints.

Per action, mean of N: DynamoDB requests and capacity units (metering
proxy) and ``@connections`` posts (gateway), for: a connect + disconnect of
a device (nobody watching), ``presence.heartbeat`` (no state change),
``history`` (one page of 50), ``sync`` of one conversation with nothing new
and with 10 new messages, ``read`` and ``ping``.  bench/cost_model.py turns
these into dollars.

Writes bench/results/action_cost.json.
Usage: python bench/action_cost.py [repetitions (10)]
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import websockets
from crowd import Crowd, create_users
from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

USER = "alice@acme.example"


def _per(m: dict[str, Any], n: int) -> dict[str, Any]:
    ddb = m["dynamodb"]
    return {"dynamodb_requests": ddb["total"]["requests"] / n,
            "dynamodb_by_operation": {op: v["requests"] / n for op, v in ddb["operations"].items()},
            "rcu": ddb["total"]["read_capacity_units"] / n, "wcu": ddb["total"]["write_capacity_units"] / n,
            "posts": m["connections_api"]["posts"] / n, "post_bytes": m["connections_api"]["bytes"] / n}


async def measure(info: dict[str, Any], reps: int) -> dict[str, Any]:
    origin = info["origin"]
    (peer_email, peer_id), = await asyncio.to_thread(create_users, 1, "action-peer")
    crowd = Crowd(origin, info["ws"])
    await crowd.open([USER, peer_email])
    out: dict[str, Any] = {}
    try:
        conv = (await crowd.call(USER, "conversation.create", kind="group", members=[peer_id],
                                 name="action cost"))["conversation"]["conversationId"]
        for k in range(60):
            await crowd.call(USER, "message.send", conversationId=conv, clientMessageId=f"seed-{k}", body=f"m{k}")
            await asyncio.sleep(0.11)  # under the 10/s send limit
        await crowd.close(peer_email)  # nobody else online: the sends below cost no fan-out

        async def timed(name: str, action: Any) -> None:
            await asyncio.to_thread(settle, origin)
            for i in range(reps):
                await action(i)
            out[name] = {"repetitions": reps, **_per(await asyncio.to_thread(metrics, origin, True), reps)}
            print(f"  {name:<28} {out[name]['dynamodb_requests']:5.1f} DynamoDB requests, "
                  f"{out[name]['rcu']:5.1f} RCU, {out[name]['wcu']:5.1f} WCU, {out[name]['posts']:4.1f} posts", flush=True)

        token = await asyncio.to_thread(_token, origin, peer_email)

        async def connect_disconnect(_: int) -> None:
            ws = await websockets.connect(f"{info['ws']}?token={token}", open_timeout=60, ping_interval=None)
            await ws.close()
            await asyncio.sleep(0.3)  # the $disconnect runs after the close

        await timed("connect+disconnect", connect_disconnect)
        async def ping(_: int) -> None:
            try:
                await crowd.call(USER, "ping")
            except RuntimeError as exc:  # Crowd.call wants an ack; ping answers pong
                if "'pong'" not in str(exc):
                    raise

        await timed("ping", ping)
        await timed("presence.heartbeat", lambda _: crowd.call(USER, "presence.heartbeat", active=True))
        await timed("history (50)", lambda _: crowd.call(USER, "history", conversationId=conv, limit=50))
        await timed("sync (nothing new)", lambda _: crowd.call(
            USER, "sync", conversations=[{"conversationId": conv, "afterSeq": 60}]))
        await timed("sync (10 new)", lambda _: crowd.call(
            USER, "sync", conversations=[{"conversationId": conv, "afterSeq": 50}]))
        await timed("read", lambda i: crowd.call(USER, "read", conversationId=conv, seq=1 + i))
        await timed("message.send (0 online)", lambda i: asyncio.gather(
            crowd.call(USER, "message.send", conversationId=conv, clientMessageId=f"m-{i}", body="cost"),
            asyncio.sleep(0.11)))
    finally:
        await crowd.close_all()
    return out


def _token(origin: str, email: str) -> str:
    import requests

    resp = requests.post(f"{origin}/dev/idp/token", json={"email": email}, timeout=10)
    resp.raise_for_status()
    return resp.json()["access_token"]


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    started = time.perf_counter()
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    with local_stack("bench-action-cost", STACK_ENV) as info:
        use_stack_env(info)
        print(f"per action (mean of {reps}):")
        rows = asyncio.run(measure(info, reps))
    write_result("action_cost.json", {"repetitions": reps, "actions": rows})
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print(f"total {time.perf_counter() - started:.0f}s; wrote bench/results/action_cost.json")


if __name__ == "__main__":
    main()
