"""What presence costs, counted at the local stack's endpoints.

1. One status change (``presence.set``, alternating busy/available, spaced
   wider than the coalescing window) with 10, 100 and 1,000 online watchers
   subscribed to the user: DynamoDB requests by operation and capacity units
   (metering proxy), ``@connections`` posts (gateway), ``presence.changed``
   events the watchers got, and the time until the last watcher had it.
2. A storm: one user connecting and disconnecting N times, a cycle every
   half second, with 100 watchers, with coalescing on
   (``PRESENCE_COALESCE_SECONDS=2``, the default) and off (``=0``, a second
   stack): events per watcher, posts and DynamoDB requests, counted until
   the delayed publications have landed too.

Writes bench/results/presence_cost.json.
Usage: python bench/presence_cost.py [changes per size (3)] [storm cycles (10)]
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import websockets
from crowd import Crowd, create_users
from stack import RESULTS, STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

SIZES = (10, 100, 1000)
STORM_WATCHERS = 100
STORM_PACE_S = 0.5  # one connect/disconnect cycle every half second
TARGET = "presence-target-0000@acme.example"  # made by setup_users


class Watchers(Crowd):
    """A crowd that also keeps the ``presence.changed`` events it got (status, arrival time)."""

    def __init__(self, origin: str, ws_url: str) -> None:
        super().__init__(origin, ws_url)
        self.presence: list[tuple[str, float]] = []
        self._presence_waiter: tuple[int, str, asyncio.Future[None]] | None = None

    def _event(self, frame: dict[str, Any], now: float) -> None:
        if frame.get("type") != "presence.changed":
            super()._event(frame, now)
            return
        self.presence.append((frame["status"], now))
        want = self._presence_waiter
        if want and sum(s == want[1] for s, _ in self.presence) >= want[0] and not want[2].done():
            want[2].set_result(None)

    async def status_seen(self, status: str, count: int, timeout: float = 60.0) -> None:
        if sum(s == status for s, _ in self.presence) >= count:
            return
        fut = asyncio.get_running_loop().create_future()
        self._presence_waiter = (count, status, fut)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._presence_waiter = None


def _per(m: dict[str, Any], n: int) -> dict[str, Any]:
    ddb, posts = m["dynamodb"], m["connections_api"]
    return {
        "dynamodb_requests": ddb["total"]["requests"] / n,
        "dynamodb_by_operation": {op: v["requests"] / n for op, v in ddb["operations"].items()},
        "rcu": ddb["total"]["read_capacity_units"] / n,
        "wcu": ddb["total"]["write_capacity_units"] / n,
        "posts": posts["posts"] / n,
        "post_bytes": posts["bytes"] / n,
        "posts_by_status": posts["by_status"],
    }


async def subscribe(crowd: Watchers, emails: list[str], target_id: str) -> None:
    gate = asyncio.Semaphore(16)

    async def one(email: str) -> None:
        async with gate:
            await crowd.call(email, "presence.subscribe", watch=[target_id])

    await asyncio.gather(*(one(e) for e in emails))


async def status_changes(info: dict[str, Any], watchers: list[tuple[str, str]], target_id: str,
                         changes: int) -> list[dict[str, Any]]:
    origin = info["origin"]
    crowd = Watchers(origin, info["ws"])
    await crowd.open([TARGET] + [e for e, _ in watchers])
    rows = []
    subscribed = 0
    status = "available"
    try:
        for n in SIZES:
            await subscribe(crowd, [e for e, _ in watchers[subscribed:n]], target_id)
            subscribed = n
            await asyncio.to_thread(settle, origin, 2.5)  # quiet for longer than the coalescing window
            counted, latencies = 0, []
            await asyncio.to_thread(metrics, origin, True)
            for _ in range(changes):
                status = "busy" if status == "available" else "available"
                before = sum(s == status for s, _ in crowd.presence)
                t0 = time.perf_counter()
                await crowd.call(TARGET, "presence.set", status=status)
                await crowd.status_seen(status, before + n)
                latencies.append((max(t for s, t in crowd.presence if s == status) - t0) * 1000)
                counted += 1
                await asyncio.sleep(2.2)  # next change outside the window: published at once
            m = await asyncio.to_thread(metrics, origin, True)
            row = {"watchers": n, "changes": counted, **_per(m, counted),
                   "watcher_ms": {"median": statistics.median(latencies), "samples": latencies}}
            rows.append(row)
            print(f"  {n:>5} watchers: {row['dynamodb_requests']:.1f} DynamoDB requests, "
                  f"{row['posts']:.0f} posts per change; last watcher after {row['watcher_ms']['median']:.0f} ms",
                  flush=True)
    finally:
        await crowd.close_all()
    return rows


async def storm(info: dict[str, Any], watchers: list[tuple[str, str]], target_id: str,
                cycles: int) -> dict[str, Any]:
    origin = info["origin"]
    await asyncio.to_thread(settle, origin, 1.0, 300.0)  # e.g. the $disconnects of an earlier crowd
    crowd = Watchers(origin, info["ws"])
    await crowd.open([e for e, _ in watchers])
    try:
        await subscribe(crowd, [e for e, _ in watchers], target_id)
        await asyncio.to_thread(settle, origin, 2.5)
        crowd.presence.clear()
        token = await asyncio.to_thread(_token, origin, TARGET)
        await asyncio.to_thread(metrics, origin, True)
        t0 = time.perf_counter()
        for i in range(cycles):
            ws = await websockets.connect(f"{info['ws']}?token={token}", open_timeout=60, ping_interval=None)
            await ws.close()
            # Paced so that each $disconnect (run after the close, asynchronously) lands before the
            # next connect: the user really flaps online/offline instead of overlapping sockets.
            await asyncio.sleep(max(0.0, t0 + (i + 1) * STORM_PACE_S - time.perf_counter()))
        storm_s = time.perf_counter() - t0
        # Count until the delayed (coalesced) publications have landed and the stack is quiet.
        total = await asyncio.to_thread(until_quiet, origin, 3.0, 60.0)
    finally:
        await crowd.close_all()
    events = Counter(s for s, _ in crowd.presence)
    return {"watchers": len(watchers), "cycles": cycles, "storm_seconds": storm_s,
            "events_per_watcher": len(crowd.presence) / len(watchers), "events_by_status": dict(events),
            "last_status": crowd.presence[-1][0] if crowd.presence else None,
            "posts": total["posts"], "dynamodb_requests": sum(total["ops"].values()),
            "dynamodb_by_operation": dict(total["ops"])}


def until_quiet(origin: str, quiet: float, timeout: float) -> dict[str, Any]:
    """Read-and-zero the counters every ``quiet`` seconds, adding them up, until two periods in a row
    saw nothing (a delayed publication lands up to window + queue delay rounding + poll after the last change)."""
    ops: Counter[str] = Counter()
    posts, idle = 0, 0
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(quiet)
        m = metrics(origin, reset=True)
        seen = m["connections_api"]["posts"] + m["dynamodb"]["total"]["requests"]
        posts += m["connections_api"]["posts"]
        for op, v in m["dynamodb"]["operations"].items():
            ops[op] += v["requests"]
        idle = 0 if seen else idle + 1
        if idle >= 2 or time.monotonic() > deadline:
            return {"posts": posts, "ops": ops}


def _token(origin: str, email: str) -> str:
    import requests

    resp = requests.post(f"{origin}/dev/idp/token", json={"email": email}, timeout=10)
    resp.raise_for_status()
    return resp.json()["access_token"]


def setup_users(count: int) -> tuple[list[tuple[str, str]], str]:
    watchers = create_users(count, prefix="watcher")
    (_, target_id), = create_users(1, prefix="presence-target")
    return watchers, target_id


def storm_off(cycles: int, out: Path) -> None:
    with local_stack("bench-presence-nocoalesce", {**STACK_ENV, "PRESENCE_COALESCE_SECONDS": "0"}) as info:
        use_stack_env(info)
        watchers, target_id = setup_users(STORM_WATCHERS)
        out.write_text(json.dumps({"coalesce_seconds": 0, **asyncio.run(storm(info, watchers, target_id, cycles))}))


def main() -> None:
    if sys.argv[1:2] == ["--storm-off"]:
        storm_off(int(sys.argv[2]), Path(sys.argv[3]))
        return
    changes = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    started = time.perf_counter()
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    result: dict[str, Any] = {"sizes": list(SIZES), "changes_per_size": changes}
    with local_stack("bench-presence", {**STACK_ENV, "PRESENCE_COALESCE_SECONDS": "2"}) as info:
        use_stack_env(info)
        watchers, target_id = setup_users(max(SIZES))
        print("status change, coalescing window 2 s:", flush=True)
        result["status_change"] = asyncio.run(status_changes(info, watchers, target_id, changes))
        result["storm_coalescing_on"] = {"coalesce_seconds": 2, **asyncio.run(
            storm(info, watchers[:STORM_WATCHERS], target_id, cycles))}
    # The app's models keep their DynamoDB endpoint once imported: the second stack gets its own process.
    out = RESULTS / "presence_storm_off.json"
    subprocess.run([sys.executable, __file__, "--storm-off", str(cycles), str(out)], check=True)
    result["storm_coalescing_off"] = json.loads(out.read_text())
    out.unlink()
    print_tables(result)
    write_result("presence_cost.json", result)
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print(f"total {time.perf_counter() - started:.0f}s; wrote bench/results/presence_cost.json")


def print_tables(result: dict[str, Any]) -> None:
    print(f"\nper presence status change (mean of {result['changes_per_size']}; DynamoDB at the metering proxy, "
          "posts at @connections, the caller's ack included)")
    print(f"{'watchers':>8} {'ddb req':>8} {'RCU':>6} {'WCU':>6} {'posts':>6} {'post KB':>8} {'last watcher ms':>16}")
    for r in result["status_change"]:
        print(f"{r['watchers']:>8} {r['dynamodb_requests']:>8.1f} {r['rcu']:>6.1f} {r['wcu']:>6.1f} {r['posts']:>6.0f} "
              f"{r['post_bytes'] / 1024:>8.1f} {r['watcher_ms']['median']:>16.0f}")
    print("\nstorm: one user connecting and disconnecting, watched by "
          f"{result['storm_coalescing_on']['watchers']} online watchers")
    print(f"{'coalescing':>10} {'cycles':>6} {'storm s':>7} {'events/watcher':>14} {'posts':>6} {'ddb req':>8} "
          f"{'last status':>11}")
    for key in ("storm_coalescing_on", "storm_coalescing_off"):
        r = result[key]
        label = f"{r['coalesce_seconds']} s" if r["coalesce_seconds"] else "off"
        print(f"{label:>10} {r['cycles']:>6} {r['storm_seconds']:>7.1f} {r['events_per_watcher']:>14.1f} "
              f"{r['posts']:>6} {r['dynamodb_requests']:>8} {str(r['last_status']):>11}")


if __name__ == "__main__":
    main()
