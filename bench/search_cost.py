"""What people search costs, counted at the local stack's DynamoDB metering proxy (docs/data-model.md "People search").

Builds a directory of N acme users with realistic names (first x last
names, so "bo" matches many), then measures per ``users.search`` (mean of R
calls, limit 20 and 50): DynamoDB requests by operation, RCU; first with no
connected company, then with k connected companies of M users each.  Also
per directory write through ``upsert_user``: a new user, a rename, and a
rewrite that changes nothing searchable (requests and WCU, of which the
index's BatchWriteItem).

Writes bench/results/search_cost.json.
Usage: python bench/search_cost.py [users (1000)] [connected companies (3)] [repetitions (5)]
"""
from __future__ import annotations

import asyncio
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from crowd import Crowd
from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

USER = "alice@acme.example"
FIRST = ["Bob", "Bobby", "Bonnie", "Boris", "Alice", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan",
         "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "José",
         "Zoë", "Björn"]
LAST = ["Smith", "Bowen", "Boyle", "Nguyen", "Garcia", "Müller", "Rossi", "Kowalski", "Johansson", "Dubois",
        "Novak", "Silva", "Tanaka", "Kim", "Okafor", "Ivanova", "Haddad", "Cohen", "Murphy", "Schmidt"]


def _name(i: int) -> tuple[str, str]:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    return f"{first} {last}", f"{first.lower()}.{last.lower()}.{i}"


def _directory(tenant: str, domain: str, count: int, prefix: str) -> None:
    from chalicelib.services.tenants import upsert_user

    def one(i: int) -> None:
        name, local = _name(i)
        local = "".join(c for c in local if c.isascii())
        upsert_user(tenant, f"{prefix}-{i:05d}", f"{local}@{domain}", name)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def _per(m: dict[str, Any], n: int) -> dict[str, Any]:
    ddb = m["dynamodb"]
    return {"dynamodb_requests": ddb["total"]["requests"] / n,
            "by_operation": {op: round(v["requests"] / n, 2) for op, v in ddb["operations"].items()},
            "rcu": round(ddb["total"]["read_capacity_units"] / n, 2),
            "wcu": round(ddb["total"]["write_capacity_units"] / n, 2)}


def _company(origin: str, label: str, users: int) -> str:
    """A company registered with the dev IdP, its admin and ``users`` members; connected to acme."""
    from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user

    tid = f"{label}-{uuid.uuid4().hex[:6]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"{origin}/dev/idp/{tid}", audience="enterprise-chat"))
    upsert_user(tid, f"{tid}-admin", f"admin@{domain}", "Admin", ["admin"])
    _directory(tid, domain, users, tid)

    def token(email: str) -> str:
        r = requests.post(f"{origin}/dev/idp/token", json={"email": email}, timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]

    r = requests.post(f"{origin}/admin/connections", json={"tenantId": tid}, timeout=15,
                      headers={"Authorization": f"Bearer {token(USER)}"})
    assert r.status_code == 201, r.text
    r = requests.post(f"{origin}/admin/connections/acme/accept", timeout=15,
                      headers={"Authorization": f"Bearer {token(f'admin@{domain}')}"})
    assert r.status_code == 200, r.text
    return tid


async def _searches(crowd: Crowd, origin: str, reps: int, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for q, limit in (("bo", 20), ("bo", 50), ("bob", 20), ("bowen", 20), ("jose smi", 20), ("zz", 20)):
        found = 0
        await asyncio.to_thread(settle, origin)
        started = time.perf_counter()
        for _ in range(reps):
            found = len((await crowd.call(USER, "users.search", q=q, limit=limit))["users"])
        ms = (time.perf_counter() - started) * 1000 / reps
        key = f"{q!r} limit {limit}"
        out[key] = {"found": found, "ms": round(ms, 1), **_per(await asyncio.to_thread(metrics, origin, True), reps)}
        r = out[key]
        print(f"  {label:<14} {key:<22} found {found:3d}  {r['dynamodb_requests']:4.1f} requests "
              f"{r['by_operation']}  {r['rcu']:5.1f} RCU  {ms:6.1f} ms", flush=True)
    return out


def _writes(origin: str, reps: int) -> dict[str, Any]:
    from chalicelib.services.tenants import upsert_user

    out: dict[str, Any] = {}
    ids = [f"w-{uuid.uuid4().hex[:8]}" for _ in range(reps)]
    steps = (("new user", lambda uid: upsert_user("acme", uid, f"{uid}@acme.example", "Wanda Writer")),
             ("rename", lambda uid: upsert_user("acme", uid, f"{uid}@acme.example", "Wanda Renamed-Later")),
             ("rewrite, nothing searchable changed",
              lambda uid: upsert_user("acme", uid, f"{uid}@acme.example", "Wanda Renamed-Later", ["admin"])),
             ("deactivate", lambda uid: upsert_user("acme", uid, f"{uid}@acme.example", "Wanda Renamed-Later",
                                                    status="deactivated")))
    for name, step in steps:
        settle(origin)
        for uid in ids:
            step(uid)
        out[name] = _per(metrics(origin, True), reps)
        print(f"  write: {name:<36} {out[name]['dynamodb_requests']:4.1f} requests {out[name]['by_operation']} "
              f"{out[name]['wcu']:5.1f} WCU", flush=True)
    return out


async def main(users: int, peers: int, reps: int) -> None:
    with local_stack("search_cost", STACK_ENV) as info:
        use_stack_env(info)
        origin = info["origin"]
        started = time.perf_counter()
        await asyncio.to_thread(_directory, "acme", "acme.example", users, "dir")
        print(f"directory of {users} users written in {time.perf_counter() - started:.0f} s", flush=True)
        crowd = Crowd(origin, info["ws"])
        await crowd.open([USER])
        result: dict[str, Any] = {"users": users, "repetitions": reps}
        try:
            result["search, own company only"] = await _searches(crowd, origin, reps, "own only")
            tenants = [await asyncio.to_thread(_company, origin, f"peer{j}", users // 5) for j in range(peers)]
            result["connected companies"] = {"k": len(tenants), "users_each": users // 5}
            result[f"search, {len(tenants)} connected companies"] = await _searches(
                crowd, origin, reps, f"{len(tenants)} connected")
            result["writes (upsert_user)"] = await asyncio.to_thread(_writes, origin, reps)
        finally:
            await crowd.close_all()
    print(f"wrote {write_result('search_cost.json', result)}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [1000, 3, 5][len(args):])))
