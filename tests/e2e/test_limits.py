"""Per-tenant limits (issue #21): devices per user, connects per second per company, sends per
second per user and per company — each company here is fresh, its limits set with tenantctl before
any of its users connects (so no container has them cached)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from chatsdk import ChatClient

from .client import Session, connect

pytestmark = pytest.mark.e2e


def company(stack, **limits: int):
    from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user
    from tools import tenantctl

    tid = f"lim-{uuid.uuid4().hex[:8]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"{stack.origin}/dev/idp/{tid}", audience="enterprise-chat"))
    for name in ("ann", "ben"):
        upsert_user(tid, f"{tid}-{name}", f"{name}@{domain}", name.title(), ["member"])
    args = [f"--{k.replace('_', '-')}={v}" for k, v in limits.items()]
    assert tenantctl.main(["limits", "--tenant", tid, *args]) == 0
    return tid, f"ann@{domain}", f"ben@{domain}"


async def refusal(stack, email: str) -> tuple[int, dict]:
    """The handshake's refusal (status, error body); fails if it was accepted."""
    try:
        ws = await connect(stack, email=email)
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body or b"{}").get("error") or {}
    await ws.close()
    raise AssertionError("the handshake was accepted")


async def open_until_accepted(stack, email: str, deadline: float = 15.0) -> Session:
    end = time.monotonic() + deadline
    while True:
        try:
            return await Session.open(stack, email)
        except InvalidStatus:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.3)


async def test_devices_per_user_refuses_the_extra_device_and_a_freed_slot_is_reusable(stack):
    _tid, ann, ben = company(stack, devices_per_user=2)
    one, two = await Session.open(stack, ann), await Session.open(stack, ann)
    try:
        status, error = await refusal(stack, ann)
        assert status == 403 and error["code"] == "too_many_devices" and error["limit"] == 2, error
        other = await Session.open(stack, ben)  # another user of the company is not affected
        await other.close()
        await one.close()  # its $disconnect frees the slot
        three = await open_until_accepted(stack, ann)
        assert (await three.raw("ping"))["type"] == "pong"
        await three.close()
    finally:
        await two.close()


async def test_a_stale_connection_id_does_not_lock_the_user_out(stack):
    """An id left in the live set by a lost $disconnect is found gone at the gateway and removed."""
    from chalicelib.models import Presence, user_key

    tid, ann, _ben = company(stack, devices_per_user=1)
    Presence.add_connection(user_key(tid, f"{tid}-ann"), "stale0000000=", int(time.time() * 1000))
    s = await Session.open(stack, ann)  # accepted: the stale id was reaped
    try:
        live = Presence.find(user_key(tid, f"{tid}-ann")).connections
        assert "stale0000000=" not in live and len(live) == 1
        status, error = await refusal(stack, ann)  # the limit still holds for a live device
        assert status == 403 and error["code"] == "too_many_devices"
    finally:
        await s.close()


async def test_user_send_limit_counts_all_devices_and_the_sdk_retries_without_loss(stack):
    _tid, ann, ben = company(stack, sends_per_second_user=3)
    a1, a2 = await Session.open(stack, ann), await Session.open(stack, ann)
    try:
        from chalicelib.models import User

        conv = (await a1.call("conversation.create", kind="group",
                              members=[User.find_by_email(ben).user_id]))["conversation"]["conversationId"]
        replies = await asyncio.gather(*[s.raw("message.send", _timeout=60, conversationId=conv,
                                               clientMessageId=uuid.uuid4().hex, body=f"b{i}")
                                         for i in range(8) for s in (a1, a2)])
        limited = [r for r in replies if r["type"] == "error"]
        assert limited and all(r["error"]["code"] == "rate_limited" and 0 < r["error"]["retryAfter"] <= 1
                               for r in limited), replies
        acked = sorted(r["result"]["message"]["seq"] for r in replies if r["type"] == "ack")
        assert acked == list(range(1, len(acked) + 1))  # refused sends took no seq
        # over 2 seconds at most 3 per second per user, whichever device sent
        assert len(acked) <= 3 * 3
    finally:
        await a1.close()
        await a2.close()

    client = ChatClient(stack.origin, email=ann, ws_url=stack.ws)
    await client.connect()
    try:
        results = await asyncio.gather(*[client.send(conv, f"sdk {i}") for i in range(12)])
        assert len({r.message.seq for r in results}) == 12 and not any(r.duplicate for r in results)
        history = await client.call("history", conversationId=conv, limit=100)
        bodies = [m["body"] for m in history["messages"] if m["body"].startswith("sdk ")]
        assert sorted(bodies) == sorted(f"sdk {i}" for i in range(12))  # every one stored, once
        seqs = sorted(m["seq"] for m in history["messages"])
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await client.close()


async def test_tenant_send_limit_is_shared_by_its_users(stack):
    _tid, ann, ben = company(stack, sends_per_second_tenant=2)
    a, b = await Session.open(stack, ann), await Session.open(stack, ben)
    try:
        from chalicelib.models import User

        conv = (await a.call("conversation.create", kind="group",
                             members=[User.find_by_email(ben).user_id]))["conversation"]["conversationId"]
        replies = await asyncio.gather(*[s.raw("message.send", _timeout=60, conversationId=conv,
                                               clientMessageId=uuid.uuid4().hex, body=f"t{i}")
                                         for i in range(4) for s in (a, b)])
        limited = [r for r in replies if r["type"] == "error"]
        assert limited and {r["error"]["code"] for r in limited} == {"rate_limited"}
        assert "for the company" in limited[0]["error"]["message"]
    finally:
        await a.close()
        await b.close()


async def test_tenant_over_its_connect_rate_is_refused_while_another_connects(stack):
    _tid, ann, ben = company(stack, connects_per_second=1)
    _other, gus, _ = company(stack)
    attempts = await asyncio.gather(*[connect(stack, email=e) for e in (ann, ben) * 3],
                                    return_exceptions=True)
    opened = [w for w in attempts if not isinstance(w, BaseException)]
    refused = [e for e in attempts if isinstance(e, InvalidStatus)]
    try:
        assert refused, attempts
        for exc in refused:
            error = json.loads(exc.response.body)["error"]
            assert exc.response.status_code == 429 and error["code"] == "rate_limited" \
                and 0 < error["retryAfter"] <= 1, error
        fine = await Session.open(stack, gus)  # another company is not held back
        assert (await fine.raw("ping"))["type"] == "pong"
        await fine.close()
    finally:
        for w in opened:
            await w.close()
