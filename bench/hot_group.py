"""A hot conversation: many devices online, a few people typing fast (issue #17's first measurement).

For 40, 100 and 200 online devices in one channel, 4 of them send about once
a second each for ``SECONDS``; every send's ack latency and every device's
delivery latency (send -> that socket has the ``message.created``) are kept.
Then, at the largest size, the send rate is raised step by step to find the
highest rate into one conversation this machine sustains (the step where
acks stay under 1 s at p99 and every message reaches everyone).

Writes bench/results/hot_group.json.
Usage: python bench/hot_group.py [seconds per step (15)]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

from crowd import Crowd, create_users, make_channel
from stack import STACK_ENV, local_stack, use_stack_env, write_result

SIZES = (40, 100, 200)
SENDERS = 4
RATE_STEPS = (4, 8, 16, 32, 64)  # sends per second into the conversation, all senders together


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


async def run_load(crowd: Crowd, conv: str, senders: list[str], devices: int, rate: float,
                   seconds: float) -> dict[str, Any]:
    acks: list[float] = []
    acked_at: list[float] = []
    deliveries: list[float] = []
    errors: list[str] = []
    missing = 0

    async def one(sender: str, k: int) -> None:
        nonlocal missing
        cmid = f"hot-{uuid.uuid4().hex[:10]}"
        t0 = time.perf_counter()
        waiter = asyncio.create_task(crowd.delivered(cmid, devices - 1, timeout=60))
        try:
            await crowd.call(sender, "message.send", conversationId=conv, clientMessageId=cmid, body=f"hot {k}")
            acks.append((time.perf_counter() - t0) * 1000)
            acked_at.append(time.perf_counter())
        except Exception as exc:  # noqa: BLE001 - a refused or timed-out send is counted, not fatal
            errors.append(type(exc).__name__ + ": " + str(exc)[:120])
        try:
            arrivals = await waiter
            deliveries.extend((t - t0) * 1000 for t in arrivals)
        except asyncio.TimeoutError:
            missing += 1

    interval = len(senders) / rate  # each sender's period
    tasks = []
    started = time.perf_counter()
    k = 0
    while time.perf_counter() - started < seconds:
        for i, sender in enumerate(senders):
            tasks.append(asyncio.create_task(one(sender, k)))
            k += 1
            await asyncio.sleep(interval / len(senders))
    await asyncio.gather(*tasks)
    acked_for = (max(acked_at) - started) if acked_at else float("inf")  # the sends' own span, not the deliveries'
    return {"devices": devices, "rate_target": rate, "sends": len(tasks), "achieved_rate": len(acks) / acked_for,
            "ack_ms": {"p50": statistics.median(acks) if acks else None, "p99": pct(acks, 0.99)},
            "delivery_ms": {"p50": statistics.median(deliveries) if deliveries else None,
                            "p99": pct(deliveries, 0.99)},
            "errors": len(errors), "error_samples": errors[:5], "messages_not_reaching_everyone": missing}


async def run(info: dict[str, Any], seconds: float) -> dict[str, Any]:
    users = await asyncio.to_thread(create_users, max(SIZES), "hot")
    emails = [e for e, _ in users]
    crowd = Crowd(info["origin"], info["ws"])
    await crowd.open(emails)
    rows, sweep = [], []
    try:
        for n in SIZES:
            owner = emails[0]
            conv = await make_channel(crowd, owner, f"hot {n} {uuid.uuid4().hex[:4]}",
                                      [uid for _, uid in users[1:n]], 99)
            # devices outside this conversation stay connected: they get nothing from it
            row = await run_load(crowd, conv, emails[:SENDERS], n, SENDERS * 1.0, seconds)
            print(f"{n:>4} devices, {SENDERS} senders at ~1/s: ack p50 {row['ack_ms']['p50']:.0f} ms "
                  f"p99 {row['ack_ms']['p99']:.0f} ms; delivery p50 {row['delivery_ms']['p50']:.0f} ms "
                  f"p99 {row['delivery_ms']['p99']:.0f} ms; errors {row['errors']}, "
                  f"not reaching everyone {row['messages_not_reaching_everyone']}", flush=True)
            rows.append(row)
        for rate in RATE_STEPS:
            # at most 5 sends/s per sender: each is one device, and the product allows 10/s per device
            senders = emails[:max(SENDERS, -(-rate // 5))]
            row = await run_load(crowd, conv, senders, max(SIZES), float(rate), seconds)
            ok = row["errors"] == 0 and row["messages_not_reaching_everyone"] == 0 and row["ack_ms"]["p99"] < 1000 \
                and row["achieved_rate"] >= 0.9 * rate
            row["sustained"] = ok
            sweep.append(row)
            print(f"rate {rate:>3}/s into one conversation ({max(SIZES)} devices): achieved "
                  f"{row['achieved_rate']:.1f}/s, ack p99 {row['ack_ms']['p99']:.0f} ms, delivery p99 "
                  f"{row['delivery_ms']['p99']:.0f} ms, errors {row['errors']} -> "
                  f"{'sustained' if ok else 'NOT sustained'}", flush=True)
            if not ok:
                break
    finally:
        await crowd.close_all()
    return {"sizes": rows, "rate_sweep": sweep}


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    # rate limit per device stays the product's (10/s): each sender is one device
    with local_stack("bench-hot-group", STACK_ENV) as info:
        use_stack_env(info)
        result = asyncio.run(run(info, seconds))
    write_result("hot_group.json", result)
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print("wrote bench/results/hot_group.json")


if __name__ == "__main__":
    main()
