"""What atomic email uniqueness costs and buys, counted at the local stack's DynamoDB metering proxy.

(docs/data-model.md "Email claims".)  Side by side in one run, mean of R writes each:

* a user creation as it was before claims (Query ``by_email`` + conditional PutItem of the user, what
  sign-in provisioning did) and as it is now (``authentication._provision``: the same Query + one
  TransactWriteItems of the user and its email claim + the people-search write);
* ``tenantctl add-user`` (``tenants.upsert_user``): a new user, an email change (claims the new address,
  releases the old), a rewrite that keeps the email;
* N concurrent first sign-ins (different subjects, one address) started together, T times: the users
  they created, with the old check-then-write and with the claim.

Writes bench/results/email_claims.json.
Usage: python bench/email_claims.py [repetitions (20)] [concurrent sign-ins (8)] [races (5)]
"""
from __future__ import annotations

import sys
import threading
import uuid
from typing import Any, Callable

from stack import STACK_ENV, local_stack, metrics, settle, use_stack_env, write_result

TENANT, DOMAIN = "acme", "acme.example"


def _per(m: dict[str, Any], n: int) -> dict[str, Any]:
    ddb = m["dynamodb"]
    return {"dynamodb_requests": ddb["total"]["requests"] / n,
            "by_operation": {op: round(v["requests"] / n, 2) for op, v in ddb["operations"].items()},
            "wcu_by_operation": {op: round(v.get("write_capacity_units", 0) / n, 2)
                                 for op, v in ddb["operations"].items() if v.get("write_capacity_units")},
            "rcu": round(ddb["total"]["read_capacity_units"] / n, 2),
            "wcu": round(ddb["total"]["write_capacity_units"] / n, 2)}


def _old_provision(sub: str, email: str) -> str:
    """Sign-in provisioning before claims: the index check, the user's conditional PutItem, its search words."""
    from pynamodb.exceptions import PutError

    from chalicelib import search_index
    from chalicelib.models import User

    if User.find_by_email(email) is not None:
        return "conflict"
    user = User(tenant_id=TENANT, user_id=sub, email=email, display_name=email.split("@")[0], roles=["member"])
    try:
        user.save(condition=User.user_id.does_not_exist())
    except PutError:
        return "exists"
    search_index.sync(set(), user)
    return sub


def _new_provision(sub: str, email: str) -> str:
    from chalicelib.identity import Principal, TenantIdentity
    from chalicelib.protocol.errors import ChatError
    from chalicelib.services import authentication

    tenant = TenantIdentity(tenant_id=TENANT, issuer="-", audience="-", domains=(DOMAIN,), auto_provision=True)
    try:
        return authentication._provision(Principal(TENANT, sub, email, ("member",)), tenant).user_id
    except ChatError as err:
        return err.code


def _measure(origin: str, name: str, reps: int, step: Callable[[int], Any]) -> dict[str, Any]:
    settle(origin)
    for i in range(reps):
        step(i)
    out = _per(metrics(origin, True), reps)
    print(f"  {name:<48} {out['dynamodb_requests']:4.1f} requests {out['by_operation']}  {out['wcu']:5.1f} WCU "
          f"{out['wcu_by_operation']}  {out['rcu']:5.1f} RCU", flush=True)
    return out


def _race(provision: Callable[[str, str], str], n: int) -> int:
    """n first sign-ins with one fresh address, released together: how many users they created."""
    email = f"race-{uuid.uuid4().hex[:8]}@{DOMAIN}"
    subs = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(n)]
    barrier, got = threading.Barrier(n), {}

    def run(sub: str) -> None:
        barrier.wait()
        got[sub] = provision(sub, email)

    threads = [threading.Thread(target=run, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(1 for sub, outcome in got.items() if outcome == sub)


def main(reps: int, n: int, races: int) -> None:
    with local_stack("email_claims", STACK_ENV) as info:
        use_stack_env(info)
        origin = info["origin"]
        from chalicelib.services.tenants import upsert_user

        run = uuid.uuid4().hex[:6]
        uid = lambda kind, i: f"{kind}-{run}-{i:03d}"  # noqa: E731
        result: dict[str, Any] = {"repetitions": reps}
        print(f"per write, mean of {reps}:", flush=True)
        result["sign-in provisioning, before claims (Query + PutItem)"] = _measure(
            origin, "sign-in provisioning, before claims", reps,
            lambda i: _old_provision(uid("old", i), f"{uid('old', i)}@{DOMAIN}"))
        result["sign-in provisioning, with the claim"] = _measure(
            origin, "sign-in provisioning, with the claim", reps,
            lambda i: _new_provision(uid("new", i), f"{uid('new', i)}@{DOMAIN}"))
        result["tenantctl add-user: new user"] = _measure(
            origin, "tenantctl add-user: new user", reps,
            lambda i: upsert_user(TENANT, uid("ctl", i), f"{uid('ctl', i)}@{DOMAIN}", "Wanda Writer"))
        result["tenantctl add-user: email change"] = _measure(
            origin, "tenantctl add-user: email change", reps,
            lambda i: upsert_user(TENANT, uid("ctl", i), f"{uid('ctl', i)}.moved@{DOMAIN}", "Wanda Writer"))
        result["tenantctl add-user: same email (a role change)"] = _measure(
            origin, "tenantctl add-user: same email (a role change)", reps,
            lambda i: upsert_user(TENANT, uid("ctl", i), f"{uid('ctl', i)}.moved@{DOMAIN}", "Wanda Writer",
                                  ["admin"]))
        print(f"{n} concurrent first sign-ins with one address, {races} times: users created", flush=True)
        before = [_race(_old_provision, n) for _ in range(races)]
        now = [_race(_new_provision, n) for _ in range(races)]
        result["concurrent first sign-ins"] = {"signins": n, "races": races, "users created, before claims": before,
                                               "users created, with the claim": now}
        print(f"  before claims: {before}   with the claim: {now}", flush=True)
    print(f"wrote {write_result('email_claims.json', result)}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [20, 8, 5][len(args):]))
