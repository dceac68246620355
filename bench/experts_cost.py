"""What asking the experts costs in DynamoDB requests, counted at the local stack's metering proxy
(docs/experts.md "Cost per question", docs/data-model.md "Ask the experts").

For pools of 10, 100 and 1,000 experts (one tier: a directory group, expanded when each wave is formed;
every expert "available": a presence item with a live-looking device), runs the experts service
in this process against the stack's DynamoDB (every request goes through the metering proxy) and counts:

* per question asked (``experts.ask``: topic, asker, question, the first wave);
* per escalation wave (``experts.escalate``: the delayed step, a next wave), mean of W steps;
* per accept (``experts.accept``: the claim and ``conversation.create``);
* per expert coming online with one waiting question (``experts.on_available``).

Events go to a recording outbox (what a delivery worker then does per wave -- 1 BatchGetItem of the
wave's presence items and the posts -- is the delivery's cost, docs/delivery.md, not counted here);
escalation steps are captured, not queued.  Writes bench/results/experts_cost.json.
Usage: python bench/experts_cost.py [waves per pool (3)] [wave size (3)]
"""
from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

POOLS = (10, 100, 1000)


class Outbox:
    """Records the events a service produces (the delivery's own work is not part of this count)."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.limits = type("Limits", (), {"large_members": 10_000})()

    def add(self, job: dict[str, Any], on_worker: bool = False) -> None:
        self.jobs.append(job)


def _per(m: dict[str, Any], n: int) -> dict[str, Any]:
    ddb = m["dynamodb"]
    return {"dynamodb_requests": round(ddb["total"]["requests"] / n, 2),
            "by_operation": {op: round(v["requests"] / n, 2) for op, v in sorted(ddb["operations"].items())},
            "rcu": round(ddb["total"]["read_capacity_units"] / n, 2),
            "wcu": round(ddb["total"]["write_capacity_units"] / n, 2)}


def _company(pool: int) -> tuple[str, list[str], str]:
    """A company with ``pool`` experts in one directory group, each with a live-looking device."""
    from chalicelib.models import DirectoryGroup, Presence, user_key
    from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user

    tid = f"xb{pool}-{uuid.uuid4().hex[:6]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"http://127.0.0.1/dev/idp/{tid}", audience="enterprise-chat"))
    upsert_user(tid, f"{tid}-admin", f"admin@{domain}", "Admin", ["admin"])
    upsert_user(tid, f"{tid}-asker", f"asker@{domain}", "Asker", ["member"])
    experts = [f"{tid}-e{i:04d}" for i in range(pool)]
    now = int(time.time() * 1000)

    def one(uid: str) -> None:
        upsert_user(tid, uid, f"{uid}@{domain}", f"Expert {uid[-4:]}", ["member"])
        Presence(user_key=user_key(tid, uid), connections={f"c-{uid}"}, activity={f"c-{uid}": now + 3_600_000},
                 last_seen_at=now, updated_at=now).save()

    with ThreadPoolExecutor(8) as pool_:
        list(pool_.map(one, experts))
    gid = f"g-{uuid.uuid4().hex[:8]}"
    DirectoryGroup(tenant_id=tid, group_id=gid, display_name="experts", members=set(experts),
                   created_at=now, updated_at=now).save()
    return tid, experts, gid


def _call(tenant: str, user_id: str, roles: tuple[str, ...], out: Outbox, scheduled: list) -> Any:
    from chalicelib.config import settings
    from chalicelib.identity import Principal
    from chalicelib.services.context import Call, Scheduler

    return Call(principal=Principal(tenant, user_id, f"{user_id}@x.example", roles), delivery=out,
                clock=time.time, settings=settings(),
                schedule=Scheduler(compliance=lambda job, delay: scheduled.append(job)))


def measure(origin: str, pool: int, waves: int, wave_size: int) -> dict[str, Any]:
    from chalicelib.services import experts

    tid, pool_ids, gid = _company(pool)
    out, scheduled = Outbox(), []
    admin = _call(tid, f"{tid}-admin", ("admin",), out, scheduled)
    topic = experts.create_topic(admin, {"name": "Bench", "groups": [gid], "waveSize": wave_size,
                                         "timeoutSeconds": 60})["topic"]
    asker = _call(tid, f"{tid}-asker", ("member",), out, scheduled)
    experts.ask(asker, {"topicId": topic["topicId"], "text": "warm-up: DLP rules cached"})
    result: dict[str, Any] = {"pool": pool, "wave_size": wave_size}

    settle(origin)
    q = experts.ask(asker, {"topicId": topic["topicId"], "text": "How do I expense a train ticket?"})["question"]
    result["ask (with wave 1)"] = _per(metrics(origin, True), 1)

    idle_ms = asker.settings.presence_idle_seconds * 1000
    settle(origin)
    for _ in range(waves):
        job = scheduled[-1]
        assert experts.escalate(out, job, int(time.time() * 1000), idle_ms,
                                lambda nxt, delay: scheduled.append(nxt)) == "offered"
    result["each further wave (escalation step)"] = _per(metrics(origin, True), waves)

    from chalicelib.models import ExpertItem

    offered = sorted(ExpertItem.find(tid, ExpertItem.question_key(q["questionId"])).offered)
    expert = _call(tid, offered[0], ("member",), out, scheduled)
    settle(origin)
    experts.accept(expert, {"questionId": q["questionId"]})
    result["accept (claim + conversation.create)"] = _per(metrics(origin, True), 1)

    # a waiting question (nobody reachable: a topic of one offline expert) seen by an expert coming online
    from chalicelib.services.tenants import upsert_user

    late = f"{tid}-late"
    upsert_user(tid, late, f"late@{tid}.example", "Late", ["member"])
    lone = experts.create_topic(admin, {"name": "Lone", "users": [late], "timeoutSeconds": 60})["topic"]
    experts.ask(asker, {"topicId": lone["topicId"], "text": "Anyone?"})
    settle(origin)
    experts.on_available(out, {"tenantId": tid, "userId": late, "topicIds": [lone["topicId"]]},
                         int(time.time() * 1000))
    result["expert coming online, 1 waiting question"] = _per(metrics(origin, True), 1)
    return result


def main(waves: int, wave_size: int) -> None:
    with local_stack("experts_cost", STACK_ENV) as info:
        use_stack_env(info)
        origin = info["origin"]
        results = []
        for pool in POOLS:
            r = measure(origin, pool, waves, wave_size)
            results.append(r)
            for step in ("ask (with wave 1)", "each further wave (escalation step)",
                         "accept (claim + conversation.create)", "expert coming online, 1 waiting question"):
                print(f"pool {pool:5d}  {step:<42} {r[step]['dynamodb_requests']:6.2f} requests "
                      f"{r[step]['by_operation']}  {r[step]['rcu']:6.1f} RCU {r[step]['wcu']:5.1f} WCU", flush=True)
    print(f"wrote {write_result('experts_cost.json', {'waves': waves, 'wave_size': wave_size, 'pools': results})}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [3, 3][len(args):]))
