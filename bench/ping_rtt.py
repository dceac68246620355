"""Round trip of ping -> pong through the local stack (gateway -> Lambda worker -> @connections).

Starts its own local stack unless CHAT_ORIGIN is set.  Prints p50/p90/p99 and
writes bench/results/ping_rtt.json.  Usage: python bench/ping_rtt.py [pings]
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time

import requests
import websockets

from stack import local_stack, write_result


async def run(origin: str, n: int) -> list[float]:
    token = requests.post(f"{origin}/dev/idp/token", json={"email": "alice@acme.example"}, timeout=10).json()
    ws_url = origin.replace("http", "ws", 1) + "/ws?token=" + token["access_token"]
    samples = []
    async with websockets.connect(ws_url, ping_interval=None) as ws:
        for i in range(n + 20):
            t = time.perf_counter()
            await ws.send(json.dumps({"action": "ping", "requestId": str(i)}))
            await ws.recv()
            if i >= 20:  # first pings warm each worker's clients
                samples.append((time.perf_counter() - t) * 1000)
    return samples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    origin = os.environ.get("CHAT_ORIGIN")
    with contextlib.nullcontext({"origin": origin}) if origin else local_stack("bench") as info:
        s = sorted(asyncio.run(run(info["origin"], n)))
    q = {"p50": statistics.median(s), "p90": s[int(len(s) * 0.9)], "p99": s[int(len(s) * 0.99) - 1]}
    print(f"ping->pong round trip over {n} pings (ms): " + "  ".join(f"{k}={v:.2f}" for k, v in q.items()))
    write_result("ping_rtt.json", {"pings": n, "ms": q})


if __name__ == "__main__":
    main()
