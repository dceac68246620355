"""What one message send costs, by channel size, counted at the local stack's endpoints.

For channels with 2, 10, 100 and 1,000 online recipients: DynamoDB requests
by operation, consumed RCU/WCU and bytes (counted by the stack's metering
proxy), @connections posts (counted by the gateway), and the time from
sending to the last recipient's socket having the ``message.created``.
Then, on the same stack and the same 1,000 sockets, the product's fan-out
against the naive baseline (see bench/fanout_vs_naive.py).

Writes bench/results/send_cost.json and bench/results/fanout.json.
Usage: python bench/send_cost.py [sends per size (5)] [fan-out runs per variant (3)]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

import fanout_vs_naive
from crowd import Crowd, create_users, make_channel
from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

SIZES = (2, 10, 100, 1000)
SENDER = "alice@acme.example"  # seeded admin of acme; the recipients are bench users of acme
# member.add writes the new members and the conversation's count in one
# TransactWriteItems, which takes at most 100 items: 99 users per frame.
MEMBER_BATCH = 99
BODY = fanout_vs_naive.BODY


async def send_once(crowd: Crowd, conv: str, recipients: int, cmid: str) -> tuple[float, float]:
    """(fan-out ms, ack ms): send to the last recipient's socket, and to the sender's ack."""
    async def acked() -> float:
        await crowd.call(SENDER, "message.send", conversationId=conv, clientMessageId=cmid, body=BODY)
        return time.perf_counter()

    t0 = time.perf_counter()
    arrivals, ack_at = await asyncio.gather(crowd.delivered(cmid, recipients), acked())
    return (max(arrivals) - t0) * 1000, (ack_at - t0) * 1000


async def measure(crowd: Crowd, origin: str, user_ids: list[str], n: int, sends: int) -> dict[str, Any]:
    conv = await make_channel(crowd, SENDER, f"bench {n}", user_ids[:n], MEMBER_BATCH)
    await send_once(crowd, conv, n, f"warm-{n}")  # not counted
    await asyncio.to_thread(settle, origin)  # also zeroes the counters
    times = [await send_once(crowd, conv, n, f"send-{n}-{k}") for k in range(sends)]
    m = await asyncio.to_thread(metrics, origin)
    ddb, posts = m["dynamodb"], m["connections_api"]
    return {
        "recipients": n, "conversationId": conv, "sends": sends,
        "dynamodb_per_send": {
            "requests": ddb["total"]["requests"] / sends,
            "by_operation": {op: v["requests"] / sends for op, v in ddb["operations"].items()},
            "capacity_by_operation": {op: v["capacity_units"] / sends for op, v in ddb["operations"].items()},
            "rcu": ddb["total"]["read_capacity_units"] / sends,
            "wcu": ddb["total"]["write_capacity_units"] / sends,
            "request_bytes": ddb["total"]["request_bytes"] / sends,
            "response_bytes": ddb["total"]["response_bytes"] / sends,
            "errors": ddb["total"]["errors"] / sends,
        },
        "connections_api_per_send": {"posts": posts["posts"] / sends, "bytes": posts["bytes"] / sends,
                                     "by_status": posts["by_status"]},
        "fanout_ms": {"median": statistics.median(t[0] for t in times), "samples": [t[0] for t in times]},
        "ack_ms": {"median": statistics.median(t[1] for t in times), "samples": [t[1] for t in times]},
        "raw": m,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\nper message send (mean of {rows[0]['sends']} sends after 1 warm-up; DynamoDB counted at the "
          "metering proxy, posts at @connections)")
    print(f"{'recipients':>10} {'ddb req':>8} {'RCU':>7} {'WCU':>7} {'ddb KB out':>10} {'ddb KB in':>9} "
          f"{'posts':>6} {'post KB':>8} {'fan-out p50 ms':>14} {'ack p50 ms':>10}")
    for r in rows:
        d, p = r["dynamodb_per_send"], r["connections_api_per_send"]
        print(f"{r['recipients']:>10} {d['requests']:>8.1f} {d['rcu']:>7.1f} {d['wcu']:>7.1f} "
              f"{d['request_bytes'] / 1024:>10.1f} {d['response_bytes'] / 1024:>9.1f} {p['posts']:>6.0f} "
              f"{p['bytes'] / 1024:>8.1f} {r['fanout_ms']['median']:>14.1f} {r['ack_ms']['median']:>10.1f}")
    ops = sorted({op for r in rows for op in r["dynamodb_per_send"]["by_operation"]})
    print("\nDynamoDB per send, by operation: requests / capacity units (RCU or WCU)")
    print(f"{'operation':<20}" + "".join(f"{r['recipients']:>14}" for r in rows))
    for op in ops:
        cells = [(r["dynamodb_per_send"]["by_operation"].get(op, 0),
                  r["dynamodb_per_send"]["capacity_by_operation"].get(op, 0)) for r in rows]
        print(f"{op:<20}" + "".join(f"{f'{n:.1f} / {cu:.1f}':>14}" for n, cu in cells))


async def run(info: dict[str, Any], sends: int, fan_runs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    origin = info["origin"]
    t0 = time.perf_counter()
    users = await asyncio.to_thread(create_users, max(SIZES))
    t1 = time.perf_counter()
    crowd = Crowd(origin, info["ws"])
    await crowd.open([SENDER] + [email for email, _ in users])
    print(f"setup: {len(users)} users created in {t1 - t0:.1f}s, {len(crowd.sockets)} tokens minted and "
          f"sockets opened in {time.perf_counter() - t1:.1f}s", flush=True)
    try:
        rows = [await measure(crowd, origin, [uid for _, uid in users], n, sends) for n in SIZES]
        print_table(rows)
        # The comparison delivers to exactly the 1,000 recipients: the sender goes offline.
        await crowd.close(SENDER)
        fan = await fanout_vs_naive.compare(crowd, origin, rows[-1]["conversationId"], max(SIZES), fan_runs)
    finally:
        await crowd.close_all()
    return rows, fan


def main() -> None:
    sends = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    fan_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    started = time.perf_counter()
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    with local_stack("bench-send-cost", STACK_ENV) as info:
        use_stack_env(info)
        rows, fan = asyncio.run(run(info, sends, fan_runs))
    write_result("send_cost.json", {"sizes": list(SIZES), "sends_per_size": sends, "rows": rows})
    write_result("fanout.json", fan)
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print(f"total {time.perf_counter() - started:.0f}s; wrote bench/results/send_cost.json, fanout.json")


if __name__ == "__main__":
    main()
