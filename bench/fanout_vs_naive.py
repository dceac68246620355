"""Fan-out to 1,000 open connections: this product's delivery against the naive baseline.

product: the app's own access pattern, as ``send_to_users`` does it: Query
    the channel's members, BatchGetItem their live connection ids from
    Presence (100 users per request), then ``Delivery.fan_out`` with bounded
    parallelism (DELIVERY_MAX_IN_FLIGHT posts in flight).
naive: as in AWS's well-known sample chat app: Scan the connections table
    (only a bench may do this; the app never scans) and post to each
    connection, here one after another.  (The sample itself fires every post
    at once with Promise.all.)

Both post the same bytes through boto3's ``apigatewaymanagementapi`` client to
the local gateway, from a separate process, so posting does not compete for
this process's GIL with the 1,000 sockets being read.  Wall time runs from the
start of a delivery until the last socket has the frame; DynamoDB requests and
RCU come from the stack's counters, reset before each run.

Run alone (own stack, 1,000 users): python bench/fanout_vs_naive.py [runs (3)]
bench/send_cost.py runs it too, on its stack.  Writes bench/results/fanout.json.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from stack import metrics, settle

BODY = "Quarterly numbers are in: see the dashboard before Thursday's review. " * 2


def payload(conv_id: str, marker: str) -> str:
    """A message.created frame of a typical size; ``marker`` (fixed width) tells the runs apart."""
    return json.dumps({"type": "message.created", "mention": False, "message": {
        "conversationId": conv_id, "seq": 1, "messageId": "2b7e1516-28ae-4d2a-a6ab-f7158809cf4f",
        "clientMessageId": marker, "sender": {"tenantId": "acme", "userId": "bench-sender"},
        "kind": "text", "body": BODY, "createdAt": int(time.time() * 1000), "editedAt": None,
        "deleted": False, "threadRootSeq": None, "replyCount": 0, "mentions": [], "mentionAll": False,
        "reactions": {}}}, separators=(",", ":"))


# --- the two deliveries (run in the poster process) -----------------------------

_naive_client: Any = None


def _warm() -> None:
    """Build both variants' clients once, as a warm Lambda container has them."""
    global _naive_client
    import boto3

    from chalicelib import runtime

    runtime.delivery()
    _naive_client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["WS_MANAGEMENT_ENDPOINT"])


def product(conv_id: str, data: str) -> int:
    from chalicelib import runtime
    from chalicelib.models import Presence
    from chalicelib.services.events import member_keys

    live = Presence.connections_of(member_keys(conv_id))
    ids = [cid for conns in live.values() for cid in conns]
    report = runtime.delivery().fan_out(ids, data)
    return len(report.delivered)


def naive(_conv_id: str, data: str) -> int:
    from chalicelib.models import Connection

    delivered = 0
    for item in Connection.scan(attributes_to_get=["connection_id"]):
        try:
            _naive_client.post_to_connection(ConnectionId=item.connection_id, Data=data.encode())
            delivered += 1
        except _naive_client.exceptions.GoneException:
            Connection.remove(item.connection_id)
    return delivered


VARIANTS = {"product": product, "naive": naive}


# --- measurement (runs in the process holding the sockets) ----------------------

async def compare(crowd: Any, origin: str, conv_id: str, expected: int, runs: int = 3) -> dict[str, Any]:
    """Alternate the variants ``runs`` times after one warm-up round; print and return the figures."""
    deadline = time.monotonic() + 30
    while (await asyncio.to_thread(metrics, origin))["websockets_open"] != expected \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_warm) as poster:
        await loop.run_in_executor(poster, time.sleep, 0)  # start it and build the clients now
        for r in range(runs + 1):  # round 0 opens the HTTP connection pools: not counted
            for name, fn in VARIANTS.items():
                await asyncio.to_thread(settle, origin)  # also zeroes the counters
                marker = f"fan-{r:02d}-{name[0]}"
                t0 = time.perf_counter()
                posted = loop.run_in_executor(poster, fn, conv_id, payload(conv_id, marker))
                arrivals = await crowd.delivered(marker, expected, timeout=120)
                delivered = await posted
                wall_ms = (max(arrivals) - t0) * 1000
                m = await asyncio.to_thread(metrics, origin)
                if r:
                    samples[name].append({"wall_ms": wall_ms, "delivered": delivered,
                                          "dynamodb": m["dynamodb"], "connections_api": m["connections_api"]})
    result = {"connections": expected, "runs": runs, "payload_bytes": len(payload(conv_id, "fan-00-x")),
              "variants": {name: summary(s) for name, s in samples.items()}}
    p, n = result["variants"]["product"], result["variants"]["naive"]
    result["naive_over_product"] = {k: (n[k] / p[k] if p[k] else None)
                                    for k in ("wall_ms", "dynamodb_requests", "rcu")}
    print_table(result)
    return result


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    last = samples[-1]["dynamodb"]
    return {
        "wall_ms": statistics.median(s["wall_ms"] for s in samples),
        "wall_ms_samples": [s["wall_ms"] for s in samples],
        "delivered": samples[-1]["delivered"],
        "posts": samples[-1]["connections_api"]["posts"],
        "dynamodb_requests": last["total"]["requests"],
        "by_operation": {op: v["requests"] for op, v in last["operations"].items()},
        "rcu_by_operation": {op: v["read_capacity_units"] for op, v in last["operations"].items()},
        "rcu": last["total"]["read_capacity_units"],
        "dynamodb_response_bytes": last["total"]["response_bytes"],
        "samples": samples,
    }


def print_table(result: dict[str, Any]) -> None:
    v, ratio = result["variants"], result["naive_over_product"]
    print(f"\nfan-out of one {result['payload_bytes']}-byte frame to {result['connections']} open connections "
          f"(median of {result['runs']} runs after 1 warm-up)")
    print(f"{'variant':<34} {'wall ms':>8} {'posts':>6} {'ddb req':>8} {'RCU':>7} {'ddb KB in':>9}  operations")
    labels = {"product": "product: Query+BatchGet, parallel", "naive": "naive: Scan, sequential posts"}
    for name, s in v.items():
        ops = ", ".join(f"{op} {n} ({s['rcu_by_operation'][op]:.1f} RCU)" for op, n in s["by_operation"].items())
        print(f"{labels[name]:<34} {s['wall_ms']:>8.0f} {s['posts']:>6} {s['dynamodb_requests']:>8} "
              f"{s['rcu']:>7.1f} {s['dynamodb_response_bytes'] / 1024:>9.1f}  {ops}")
    print("naive / product: " + "  ".join(f"{k} x{r:.1f}" if r is not None else f"{k} n/a"
                                          for k, r in ratio.items()))
    print("(loopback: a post costs CPU but no network round trip, so posts in flight overlap little)")


async def _standalone(info: dict[str, Any], runs: int) -> dict[str, Any]:
    from crowd import Crowd, create_users, make_channel

    owner, count = "alice@acme.example", 1000
    users = await asyncio.to_thread(create_users, count)
    crowd = Crowd(info["origin"], info["ws"])
    try:
        await crowd.open([owner] + [email for email, _ in users])
        conv = await make_channel(crowd, owner, "fan-out", [uid for _, uid in users], batch=99)
        await crowd.close(owner)
        return await compare(crowd, info["origin"], conv, count, runs)
    finally:
        await crowd.close_all()


def main() -> None:
    from stack import STACK_ENV, local_stack, use_stack_env, write_result

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with local_stack("bench-fanout", STACK_ENV) as info:
        use_stack_env(info)
        write_result("fanout.json", asyncio.run(_standalone(info, runs)))


if __name__ == "__main__":
    main()
