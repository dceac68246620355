"""Round trip of ping -> pong through the local stack (gateway -> Lambda worker -> @connections).

Starts its own local stack unless CHAT_ORIGIN is set.  Prints p50/p90/p99 and
writes bench/results/ping_rtt.json.  Usage: python bench/ping_rtt.py [pings]
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
import websockets

ROOT = Path(__file__).resolve().parent.parent


def start_stack() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "--port", "0", "--state-dir",
                             str(ROOT / ".devstack" / "bench")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    for line in iter(proc.stdout.readline, b""):
        if line.startswith(b"READY "):
            return proc, line.split()[1].decode()
    raise RuntimeError("stack did not start")


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
    proc = None
    if not origin:
        proc, origin = start_stack()
    try:
        s = sorted(asyncio.run(run(origin, n)))
        q = {"p50": statistics.median(s), "p90": s[int(len(s) * 0.9)], "p99": s[int(len(s) * 0.99) - 1]}
        print(f"ping->pong round trip over {n} pings (ms): " + "  ".join(f"{k}={v:.2f}" for k, v in q.items()))
        (ROOT / "bench" / "results").mkdir(exist_ok=True)
        (ROOT / "bench" / "results" / "ping_rtt.json").write_text(json.dumps({"pings": n, "ms": q}, indent=2))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
