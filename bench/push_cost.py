"""What mobile push adds to one message, counted at the local stack's endpoints (docs/push.md "Costs").

Three cases, each a recipient set with one registered phone per recipient:

* ``0 offline``: a DM to a user whose socket is open and active (the job stops at presence);
* ``1 offline``: a DM to a user whose app is in the background (socket closed): one push;
* ``100 offline``: a channel of the sender and 100 users whose default level is ``all``, all offline:
  100 pushes.

Each case runs twice, on two stacks: with push (``PUSH_ENABLED=1``) and without
(``PUSH_ENABLED=0``: no push job is queued), so the difference is push's own
share. Counted per message: DynamoDB requests by operation and RCU/WCU (the
stack's metering proxy, as bench/send_cost.py counts), SNS publishes (what
moto's SNS recorded, ``GET /dev/stack/pushes``), SQS messages and batches the
delivery worker consumed (``event_sources`` of ``GET /dev/stack/metrics``).

Writes bench/results/push_cost.json (bench/cost_model.py prices it).
Usage: python bench/push_cost.py [messages per case (5)]
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import requests
from crowd import Crowd, create_users, make_channel
from stack import RESULTS, STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

SENDER = "alice@acme.example"
APP = "com.example.chat"
GROUP = 100
# A channel of the sender and 100 members: ordinary messages are offered to "all" users up to 101 members.
ENV = {**STACK_ENV, "PUSH_GROUP_MEMBERS": str(GROUP + 1)}


def published(origin: str) -> int:
    r = requests.get(f"{origin}/dev/stack/pushes", timeout=30)
    r.raise_for_status()
    return len(r.json()["pushes"])


def deliver_source(origin: str) -> dict[str, int]:
    sources = metrics(origin)["event_sources"].values()
    got = next(s for s in sources if s["function"] == "deliver")
    return {"messages": got["deleted"] + got["failed_items"], "batches": got["batches"]}


async def wait_published(origin: str, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(published, origin) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {count} pushes")
        await asyncio.sleep(0.3)


async def setup(crowd: Crowd, users: list[tuple[str, str]], enabled: bool) -> dict[str, Any]:
    """The three recipient sets, their phones registered; returns (case -> conversation, offline emails)."""
    online_email, online_uid = users[0]
    offline_email, offline_uid = users[1]
    group_users = users[2:2 + GROUP]
    if enabled:
        for email, _ in users[:2 + GROUP]:
            await crowd.call(email, "push.register", deviceId="phone", platform="fcm", appId=APP,
                             token=uuid.uuid4().hex * 2)
        for email, _ in group_users:
            await crowd.call(email, "push.preferences.set", level="all")
    dm_online = (await crowd.call(SENDER, "conversation.create", kind="direct", members=[online_uid]))
    dm_offline = (await crowd.call(SENDER, "conversation.create", kind="direct", members=[offline_uid]))
    # a private channel (groups stop at 50 members), members added 99 per frame
    group = await make_channel(crowd, SENDER, "push bench", [uid for _, uid in group_users], 99)
    for email, _ in [(offline_email, offline_uid), *group_users]:  # the apps go to the background
        await crowd.close(email)
    return {0: dm_online["conversation"]["conversationId"], 1: dm_offline["conversation"]["conversationId"],
            GROUP: group}


def quiet_snapshot(origin: str, quiet: float = 1.0, timeout: float = 60.0) -> dict[str, Any]:
    """The DynamoDB counters once nothing has moved them for ``quiet`` seconds (without zeroing them)."""
    deadline = time.monotonic() + timeout
    last, last_source = metrics(origin)["dynamodb"], deliver_source(origin)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now, source = metrics(origin)["dynamodb"], deliver_source(origin)
        if now["total"]["requests"] == last["total"]["requests"] and source == last_source:
            return now
        last, last_source = now, source
    return last


async def measure(crowd: Crowd, origin: str, conv: str, offline: int, sends: int, enabled: bool) -> dict[str, Any]:
    async def one(tag: str) -> None:
        before = await asyncio.to_thread(published, origin)
        await crowd.call(SENDER, "message.send", conversationId=conv, clientMessageId=f"{tag}-{uuid.uuid4().hex}",
                         body="quarterly numbers are in")
        if enabled and offline:
            await wait_published(origin, before + offline)

    await one("warm")  # not counted
    await asyncio.to_thread(settle, origin, 1.5, 120.0)  # zeroes the DynamoDB counters once the stack is quiet
    pushes0, source0 = await asyncio.to_thread(published, origin), await asyncio.to_thread(deliver_source, origin)
    for k in range(sends):
        await one(f"send-{k}")
    ddb = await asyncio.to_thread(quiet_snapshot, origin)
    pushes1, source1 = await asyncio.to_thread(published, origin), await asyncio.to_thread(deliver_source, origin)
    return {"offline": offline, "sends": sends,
            "dynamodb": {"requests": ddb["total"]["requests"] / sends,
                         "rcu": ddb["total"]["read_capacity_units"] / sends,
                         "wcu": ddb["total"]["write_capacity_units"] / sends,
                         "by_operation": {op: v["requests"] / sends for op, v in ddb["operations"].items()}},
            "sns_publishes": (pushes1 - pushes0) / sends,
            "sqs_messages": (source1["messages"] - source0["messages"]) / sends,
            "worker_batches": (source1["batches"] - source0["batches"]) / sends}


async def run_stack(info: dict[str, Any], users_count: int, sends: int, enabled: bool) -> list[dict[str, Any]]:
    origin = info["origin"]
    users = await asyncio.to_thread(create_users, users_count, "pushbench")
    crowd = Crowd(origin, info["ws"])
    await crowd.open([SENDER] + [email for email, _ in users])
    try:
        convs = await setup(crowd, users, enabled)
        # 101 sockets just closed: their disconnects (presence, rosters) must be over before counting
        await asyncio.to_thread(settle, origin, 3.0, 180.0)
        return [await measure(crowd, origin, conv, offline, sends, enabled) for offline, conv in convs.items()]
    finally:
        await crowd.close_all()


def print_rows(rows: dict[str, list[dict[str, Any]]]) -> None:
    print("\nper message (mean of the measured sends; DynamoDB at the metering proxy, SNS as moto recorded it)")
    print(f"{'offline':>8} {'push':>5} {'ddb req':>8} {'RCU':>7} {'WCU':>6} {'SNS publish':>11} {'SQS msgs':>9}")
    for label in ("push", "baseline"):
        for r in rows[label]:
            d = r["dynamodb"]
            print(f"{r['offline']:>8} {label[:5]:>5} {d['requests']:>8.1f} {d['rcu']:>7.1f} {d['wcu']:>6.1f} "
                  f"{r['sns_publishes']:>11.1f} {r['sqs_messages']:>9.1f}")
    print("\npush's share (push − baseline), by DynamoDB operation")
    for p, b in zip(rows["push"], rows["baseline"]):
        ops = sorted(set(p["dynamodb"]["by_operation"]) | set(b["dynamodb"]["by_operation"]))
        diff = {op: p["dynamodb"]["by_operation"].get(op, 0) - b["dynamodb"]["by_operation"].get(op, 0) for op in ops}
        print(f"{p['offline']:>4} offline: " + ", ".join(f"{op} {v:+.1f}" for op, v in diff.items() if abs(v) >= 0.05)
              + f"; total {p['dynamodb']['requests'] - b['dynamodb']['requests']:+.1f} requests, "
                f"{p['dynamodb']['rcu'] - b['dynamodb']['rcu']:+.1f} RCU, {p['dynamodb']['wcu'] - b['dynamodb']['wcu']:+.1f} WCU,"
                f" {p['sns_publishes']:.0f} SNS, {p['sqs_messages'] - b['sqs_messages']:+.1f} SQS")


def run_case(label: str, sends: int) -> None:
    """One stack (a child process: the app's settings are read once per process)."""
    enabled = label == "push"
    with local_stack(f"bench-push-cost-{label}", {**ENV, "PUSH_ENABLED": "1" if enabled else "0"}) as info:
        use_stack_env(info)
        rows = asyncio.run(run_stack(info, 2 + GROUP, sends, enabled))
    write_result(f"push_cost_{label}.json", {"rows": rows})


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        run_case(sys.argv[2], int(sys.argv[3]))
        return
    sends = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    started = time.perf_counter()
    print("load average before: %.1f %.1f %.1f" % os.getloadavg(), f"on {os.cpu_count()} cores")
    rows: dict[str, list[dict[str, Any]]] = {}
    for label in ("push", "baseline"):
        subprocess.run([sys.executable, __file__, "--case", label, str(sends)], check=True)
        part = RESULTS / f"push_cost_{label}.json"
        rows[label] = json.loads(part.read_text())["rows"]
        part.unlink()
    print_rows(rows)
    write_result("push_cost.json", {"cases": [0, 1, GROUP], "sends_per_case": sends, "rows": rows})
    print("load average after: %.1f %.1f %.1f" % os.getloadavg())
    print(f"total {time.perf_counter() - started:.0f}s; wrote bench/results/push_cost.json")


if __name__ == "__main__":
    main()
