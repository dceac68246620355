"""Delivery at company scale, in one run on one stack (issue #17).

1. Real sockets: ``message.send`` into channels with 2, 100 and 1,000 online
   recipients: the sender's ack latency (p50/p99), the time until the last
   recipient's socket has the ``message.created``, and DynamoDB requests and
   capacity per send (request path and delivery workers together, counted at
   the stack's metering proxy).
2. Virtual connections (the local gateway's sinks with a sampled post
   latency, devstack/virtual_connections.py): a channel whose online roster
   holds 10,000 and 100,000 connections; time from the send to the last
   post, posts per worker invocation and the worker concurrency reached.

The virtual channels are set up by writing what the app itself would have
written for that many online members (the roster entries and the
conversation's ``roster``/``member_count``), straight into DynamoDB: 100,000
``$connect``s would take this machine many minutes and measure the handshake,
not delivery.  Delivery reads only the roster, so nothing else is needed.

Writes bench/results/delivery_scale.json (read by bench/delivery_model.py).
Usage: python bench/delivery_scale.py [sends per size (20)] [virtual sizes (10000,100000)]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from crowd import Crowd, create_users, make_channel
from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

REAL_SIZES = (2, 100, 1000)
SENDER = "alice@acme.example"
MEMBER_BATCH = 99
BODY = "delivery at company scale: " + "x" * 80
# An @connections post from a Lambda in the API's region: a few ms to a few tens of ms.
VIRTUAL_LATENCY = {"dist": "lognormal", "median": 15, "sigma": 0.5}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ddb_per_send(m: dict[str, Any], sends: int) -> dict[str, Any]:
    ddb = m["dynamodb"]
    return {"requests": ddb["total"]["requests"] / sends,
            "rcu": ddb["total"]["read_capacity_units"] / sends,
            "wcu": ddb["total"]["write_capacity_units"] / sends,
            "by_operation": {op: round(v["requests"] / sends, 2) for op, v in ddb["operations"].items()},
            "capacity_by_operation": {op: round(v["capacity_units"] / sends, 2)
                                      for op, v in ddb["operations"].items()}}


def workers(m: dict[str, Any]) -> dict[str, Any]:
    sources = m.get("event_sources") or {}
    src = next((s for s in (sources.values() if isinstance(sources, dict) else sources)
                if s.get("function") == "deliver"), {})
    return {k: src.get(k) for k in ("batches", "in_flight_max", "max_concurrency", "crashes", "failed_items")}


async def wait_roster(conv: str, timeout: float = 120.0) -> None:
    from chalicelib.models import Conversation

    deadline = time.monotonic() + timeout
    while Conversation.find(conv, consistent=True).roster != "ready":
        if time.monotonic() > deadline:
            raise RuntimeError(f"roster of {conv} not ready")
        await asyncio.sleep(0.2)


async def real(crowd: Crowd, origin: str, user_ids: list[str], n: int, sends: int) -> dict[str, Any]:
    conv = await make_channel(crowd, SENDER, f"dlv {n} {uuid.uuid4().hex[:4]}", user_ids[:n], MEMBER_BATCH)
    from chalicelib.models import Conversation

    if Conversation.find(conv, consistent=True).roster is not None:
        await wait_roster(conv)
    await send(crowd, conv, n, f"warm-{conv}")
    await asyncio.to_thread(settle, origin)
    acks, lasts = [], []
    for k in range(sends):
        ack, last = await send(crowd, conv, n, f"s-{conv}-{k}")
        acks.append(ack)
        lasts.append(last)
    m = await asyncio.to_thread(metrics, origin)
    return {"recipients": n, "path": "roster (worker)" if Conversation.find(conv).roster else "inline",
            "sends": sends, "ack_ms": {"p50": statistics.median(acks), "p99": pct(acks, 0.99), "samples": acks},
            "last_recipient_ms": {"p50": statistics.median(lasts), "p99": pct(lasts, 0.99)},
            "dynamodb_per_send": ddb_per_send(m, sends),
            "posts_per_send": m["connections_api"]["posts"] / sends, "workers": workers(m)}


async def send(crowd: Crowd, conv: str, n: int, cmid: str) -> tuple[float, float]:
    async def acked() -> float:
        await crowd.call(SENDER, "message.send", conversationId=conv, clientMessageId=cmid, body=BODY)
        return time.perf_counter()

    t0 = time.perf_counter()
    arrivals, ack_at = await asyncio.gather(crowd.delivered(cmid, n, timeout=120), acked())
    return (ack_at - t0) * 1000, (max(arrivals) - t0) * 1000


def seed_roster(info: dict[str, Any], conv: str, ids: list[str], user_keys: list[str]) -> None:
    """What $connect would have written for each of ``ids`` (roster entries), plus the
    conversation's state; written past the metering proxy so counters see only the sends."""
    import boto3

    from chalicelib.config import settings
    from chalicelib.models import OnlineEntry

    ddb = boto3.client("dynamodb", endpoint_url=info.get("dynamodb_upstream") or info["dynamodb"])
    table = settings().online_table
    expires = str(int(time.time()) + 3600)
    chunks = [ids[i:i + 25] for i in range(0, len(ids), 25)]

    def write(chunk_no: int) -> None:
        items = [{"PutRequest": {"Item": {"conversation_id": {"S": conv}, "connection_id": {"S": OnlineEntry.slot_of(cid)},
                                          "user_key": {"S": user_keys[(chunk_no * 25 + j) % len(user_keys)]},
                                          "expires_at": {"N": expires}}}}
                 for j, cid in enumerate(chunks[chunk_no])]
        pending = {table: items}
        while pending:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(len(chunks))))
    ddb.update_item(TableName=settings().conversations_table, Key={"conversation_id": {"S": conv}},
                    UpdateExpression="SET #r = :ready, member_count = :n",
                    ExpressionAttributeNames={"#r": "roster"},
                    ExpressionAttributeValues={":ready": {"S": "ready"}, ":n": {"N": str(len(ids) + 2)}})


async def virtual(crowd: Crowd, info: dict[str, Any], user_keys: list[str], n: int) -> dict[str, Any]:
    origin = info["origin"]
    base = f"{origin}/dev/stack/virtual-connections"
    res = await asyncio.to_thread(lambda: requests.post(base, json={"count": n, "latencyMs": VIRTUAL_LATENCY},
                                                        timeout=300).json())
    ids = res["connectionIds"]
    conv = (await crowd.call(SENDER, "conversation.create", kind="channel",
                             name=f"virtual {n} {uuid.uuid4().hex[:4]}"))["conversation"]["conversationId"]
    t0 = time.perf_counter()
    await asyncio.to_thread(seed_roster, info, conv, ids, user_keys)
    print(f"  {n} virtual connections registered in the roster in {time.perf_counter() - t0:.0f}s", flush=True)
    await asyncio.to_thread(settle, origin)
    requests.delete(f"{base}/arrivals", timeout=30)
    sent_at_ms = time.time() * 1000
    t_ack = time.perf_counter()
    result = await crowd.call(SENDER, "message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=BODY)
    ack_ms = (time.perf_counter() - t_ack) * 1000
    seq = result["message"]["seq"]
    deadline = time.monotonic() + 600
    arrivals: dict[str, Any] = {}
    while time.monotonic() < deadline:
        arrivals = requests.get(f"{base}/arrivals", params={"type": "message.created", "conversationId": conv,
                                                            "seq": seq}, timeout=30).json()
        if arrivals["distinct"] >= n:
            break
        await asyncio.sleep(0.25)
    m = await asyncio.to_thread(metrics, origin)
    totals = requests.get(base, timeout=30).json()
    requests.delete(base, timeout=300)
    w = workers(m)
    return {"connections": n, "ack_ms": ack_ms, "reached": arrivals.get("distinct"), "duplicates":
            (arrivals.get("count") or 0) - (arrivals.get("distinct") or 0),
            "first_ms": (arrivals["firstAt"] - sent_at_ms) if arrivals.get("firstAt") else None,
            "last_ms": (arrivals["lastAt"] - sent_at_ms) if arrivals.get("lastAt") else None,
            "dynamodb_per_send": ddb_per_send(m, 1), "workers": w,
            "posts_per_worker_invocation": n / w["batches"] if w.get("batches") else None,
            "virtual_in_flight_max": totals.get("inFlightMax"), "latency": VIRTUAL_LATENCY}


def print_rows(rows: list[dict[str, Any]], vrows: list[dict[str, Any]]) -> None:
    print("\nreal sockets: per message.send (ack and last recipient from the sender's send)")
    print(f"{'online':>7} {'path':>15} {'ack p50':>8} {'ack p99':>8} {'last p50':>9} {'ddb req':>8} "
          f"{'RCU':>6} {'WCU':>6} {'target req':>10}")
    for r in rows:
        d = r["dynamodb_per_send"]
        target = 4 + -(-r["recipients"] // 100)
        print(f"{r['recipients']:>7} {r['path']:>15} {r['ack_ms']['p50']:>8.1f} {r['ack_ms']['p99']:>8.1f} "
              f"{r['last_recipient_ms']['p50']:>9.1f} {d['requests']:>8.1f} {d['rcu']:>6.1f} {d['wcu']:>6.1f} "
              f"{target:>10}")
    if rows:
        print(f"ack p50 at {rows[-1]['recipients']} / at {rows[0]['recipients']}: "
              f"{rows[-1]['ack_ms']['p50'] / rows[0]['ack_ms']['p50']:.2f}x")
    print("\nvirtual connections (lognormal post latency, median 15 ms): one send each")
    print(f"{'online':>8} {'ack ms':>7} {'reached':>8} {'dups':>5} {'last ms':>9} {'ddb req':>8} {'RCU':>7} "
          f"{'invocations':>11} {'posts/inv':>9} {'conc max':>8}")
    for v in vrows:
        d, w = v["dynamodb_per_send"], v["workers"]
        print(f"{v['connections']:>8} {v['ack_ms']:>7.1f} {v['reached']:>8} {v['duplicates']:>5} "
              f"{(v['last_ms'] or 0):>9.0f} {d['requests']:>8.1f} {d['rcu']:>7.1f} {w.get('batches') or 0:>11} "
              f"{(v['posts_per_worker_invocation'] or 0):>9.0f} {w.get('in_flight_max') or 0:>8}")


async def run(info: dict[str, Any], sends: int, vsizes: list[int]) -> tuple[list, list]:
    origin = info["origin"]
    users = await asyncio.to_thread(create_users, max(REAL_SIZES))
    crowd = Crowd(origin, info["ws"])
    await crowd.open([SENDER] + [e for e, _ in users])
    try:
        rows = [await real(crowd, origin, [uid for _, uid in users], n, sends) for n in REAL_SIZES]
        await asyncio.gather(*(crowd.close(e) for e, _ in users))
        keys = [f"acme#{uid}" for _, uid in users]
        vrows = [await virtual(crowd, info, keys, n) for n in vsizes]
    finally:
        await crowd.close_all()
    return rows, vrows


def main() -> None:
    sends = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    vsizes = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [10_000, 100_000]
    started = time.perf_counter()
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    with local_stack("bench-delivery-scale", STACK_ENV) as info:
        use_stack_env(info)
        rows, vrows = asyncio.run(run(info, sends, vsizes))
    print_rows(rows, vrows)
    from chalicelib.config import settings

    s = settings()
    write_result("delivery_scale.json", {
        "real": rows, "virtual": vrows,
        "config": {"inline_max": s.delivery_inline_max, "shard_size": s.delivery_shard_size,
                   "large_members": s.delivery_large_members, "max_in_flight": s.delivery_max_in_flight,
                   "roster_page": s.delivery_roster_page, "roster_range": s.delivery_roster_range,
                   "event_workers": int(os.environ.get("DEVSTACK_EVENT_WORKERS", "4")),
                   "sqs_max_concurrency": int(os.environ.get("DEVSTACK_SQS_MAX_CONCURRENCY", "4"))}})
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print(f"total {time.perf_counter() - started:.0f}s; wrote bench/results/delivery_scale.json")


if __name__ == "__main__":
    main()
