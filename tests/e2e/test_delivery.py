"""Delivery at scale over real sockets: ack after commit, shards on the delivery workers, rosters.

The test stack runs with small thresholds (tests/conftest.py): at most
``INLINE_MAX`` connections are posted inside the invocation, shards hold
``SHARD_SIZE`` connections, and conversations of more than ``LARGE_MEMBERS``
members are resolved by a worker through their online roster.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import requests

from chalicelib.models import Connection, Conversation, OnlineEntry, Presence, User, user_key

from .client import Session
from .test_emf_metrics import StackLog

pytestmark = pytest.mark.e2e

INLINE_MAX, SHARD_SIZE, LARGE_MEMBERS = 4, 4, 5  # as tests/conftest.py sets them


def _users(n: int) -> list[str]:
    """``n`` new acme users (the app's own upsert); returns their emails."""
    from chalicelib.services.tenants import upsert_user
    from devstack.seed import subject_for

    run = uuid.uuid4().hex[:6]
    emails = [f"dlv-{run}-{i}@acme.example" for i in range(n)]
    for e in emails:
        upsert_user("acme", subject_for(e), e, e.split("@")[0])
    return emails


def _uid(email: str) -> str:
    return User.find_by_email(email).user_id


def _cmid() -> str:
    return uuid.uuid4().hex


async def _channel(owner: Session, emails: list[str]) -> str:
    res = await owner.call("conversation.create", kind="channel", name=f"dlv-{uuid.uuid4().hex[:6]}",
                           members=[_uid(e) for e in emails])
    return res["conversation"]["conversationId"]


async def _roster_ready(conv: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while Conversation.find(conv, consistent=True).roster != "ready":
        assert time.monotonic() < deadline, "roster not ready in time"
        await asyncio.sleep(0.2)


async def _everyone_hears(devices: list[Session], conv: str, seq: int, timeout: float = 20.0) -> None:
    got = await asyncio.gather(*(d.event("message.created", timeout=timeout, message__conversationId=conv,
                                         message__seq=seq) for d in devices), return_exceptions=True)
    missed = [d.email for d, g in zip(devices, got) if isinstance(g, BaseException)]
    if missed:
        roster = sorted(e.user_key for e in OnlineEntry.of_conversation(conv))
        raise AssertionError(f"seq {seq} not heard by {missed}; roster {roster}")


async def test_the_ack_does_not_wait_for_a_large_audience_and_shards_reach_everyone(stack, sessions):
    log = StackLog(stack)
    emails = _users(LARGE_MEMBERS + 2)
    alice = await sessions("alice@acme.example")
    devices = [await sessions(e) for e in emails]
    conv = await _channel(alice, emails)
    await _roster_ready(conv)
    sent = await alice.call("message.send", conversationId=conv, clientMessageId=_cmid(), body="all hands")
    await _everyone_hears(devices, conv, sent["message"]["seq"])
    # resolved on a worker, posted in shards of SHARD_SIZE: the worker posted the first, queued the rest
    doc = await log.wait_for(lambda d: d.get("function") == "deliver" and d.get("DeliveryShardsQueued"))
    assert doc["DeliveryShardsQueued"] >= (len(devices) - SHARD_SIZE) // SHARD_SIZE
    # the roster holds exactly the live connections of the members (alice's too), nothing read per member
    online = {e.user_key for e in OnlineEntry.of_conversation(conv)}
    assert {user_key("acme", _uid(e)) for e in emails} <= online


async def test_a_conversation_growing_past_the_threshold_switches_path_without_losing_an_event(sessions):
    emails = _users(LARGE_MEMBERS + 3)
    alice = await sessions("alice@acme.example")
    devices = {e: await sessions(e) for e in emails}
    conv = await _channel(alice, emails[:2])
    assert Conversation.find(conv, consistent=True).roster is None
    seqs = []
    sender = asyncio.create_task(_send_many(alice, conv, 12, seqs))
    # grow past the threshold while messages flow: the roster is built on the workers meanwhile
    for e in emails[2:]:
        await alice.call("member.add", conversationId=conv, userIds=[_uid(e)])
        await asyncio.sleep(0.05)
    await sender
    await _roster_ready(conv)
    await _send_many(alice, conv, 2, seqs)
    # the first two members hear every message, the others every message sent after they joined
    for device in (devices[emails[0]], devices[emails[1]]):
        for seq in seqs:
            try:
                await device.event("message.created", timeout=20, message__conversationId=conv, message__seq=seq)
            except asyncio.TimeoutError:
                got = [f["message"]["seq"] for f in device.frames if f.get("type") == "message.created"]
                raise AssertionError(f"{device.email} missed seq {seq} of {seqs}; still unread: {got}") from None
    await _everyone_hears([devices[e] for e in emails[2:]], conv, seqs[-1])


async def _send_many(s: Session, conv: str, n: int, seqs: list[int]) -> None:
    for k in range(n):
        while True:
            reply = await s.raw("message.send", conversationId=conv, clientMessageId=f"grow-{conv}-{len(seqs)}",
                                body=f"message {k}")
            if reply["type"] == "ack":
                seqs.append(reply["result"]["message"]["seq"])
                break
            assert reply["error"]["code"] == "rate_limited", reply
            await asyncio.sleep(reply["error"].get("retryAfter", 0.2))


async def test_a_gone_connection_in_a_shard_removes_only_that_connection(sessions):
    emails = _users(LARGE_MEMBERS + 1)
    alice = await sessions("alice@acme.example")
    devices = [await sessions(e) for e in emails]
    conv = await _channel(alice, emails)
    await _roster_ready(conv)
    # a device of the first member that died without its $disconnect reaching us
    dead, victim = "ZGVhZHNoYXJkZGV2aWNl", user_key("acme", _uid(emails[0]))
    now = int(time.time())
    Connection(connection_id=dead, tenant_id="acme", user_id=_uid(emails[0]), tenant_user=victim,
               email=emails[0], roles=["member"], connected_at=now - 120, expires_at=now + 600).save()
    rooms = Presence.add_connection(victim, dead, now * 1000)
    assert conv in rooms
    OnlineEntry.add(rooms, dead, victim, now + 600)
    sent = await alice.call("message.send", conversationId=conv, clientMessageId=_cmid(), body="who is there")
    await _everyone_hears(devices, conv, sent["message"]["seq"])
    deadline = time.monotonic() + 15
    while Connection.find(dead) is not None or OnlineEntry.count(conv, OnlineEntry.connection_id == OnlineEntry.slot_of(dead)):
        assert time.monotonic() < deadline, "the dead connection was not cleaned up"
        await asyncio.sleep(0.2)
    live = Presence.connections_of([victim])[victim]
    assert dead not in live and len(live) == 1  # the member's real device stays
    assert OnlineEntry.count(conv) >= len(devices) + 1  # every other entry stays


async def test_posts_that_keep_failing_in_a_shard_are_retried_and_delivered(stack, sessions):
    emails = _users(LARGE_MEMBERS + 1)
    alice = await sessions("alice@acme.example")
    devices = [await sessions(e) for e in emails]
    conv = await _channel(alice, emails)
    await _roster_ready(conv)
    faults = f"{stack.origin}/dev/stack/faults"
    # every post fails with 500 for a moment: the worker's own retries fail too, so the shard's
    # connections are queued again (2 s later) and delivered once @connections answers again
    requests.post(faults, json={"connectionsError": 1.0}, timeout=10).raise_for_status()
    try:  # (the ack itself is lost to the fault too: the frame is sent without waiting for it)
        await alice.ws.send(json.dumps({"action": "message.send", "requestId": "lost-ack", "conversationId": conv,
                                        "clientMessageId": _cmid(), "body": "retry me"}))
        await asyncio.sleep(1.5)
    finally:
        requests.post(faults, json={"reset": True}, timeout=10).raise_for_status()
    history = await alice.call("history", conversationId=conv, limit=1)
    seq = history["messages"][0]["seq"]
    assert history["messages"][0]["body"] == "retry me"
    await _everyone_hears(devices, conv, seq, timeout=30)


async def test_presence_to_many_watchers_goes_through_the_same_shards(stack, sessions):
    log = StackLog(stack)
    emails = _users(INLINE_MAX + 3)
    watchers = [await sessions(e) for e in emails]
    target = _users(1)[0]
    for w in watchers:
        await w.call("presence.subscribe", watch=[_uid(target)])
    t = await sessions(target)
    await asyncio.gather(*(w.event("presence.changed", timeout=20, user__userId=_uid(target), status="available")
                           for w in watchers))
    await t.call("presence.set", status="busy")
    await asyncio.gather(*(w.event("presence.changed", timeout=20, user__userId=_uid(target), status="busy")
                           for w in watchers))
    doc = await log.wait_for(lambda d: d.get("DeliveryShardsQueued") and d.get("function") in (
        "websocket_message", "websocket_connect", "presence_flush"))
    assert doc["DeliveryShardsQueued"] >= 2


async def test_a_roster_longer_than_a_page_is_read_in_ranges_by_several_workers(stack, sessions):
    """A roster of more than ``DELIVERY_ROSTER_PAGE`` (6 here) entries: the planning worker posts
    the first page and queues the rest as ranges of slots; together they reach every device once."""
    if stack.state_dir is None:
        pytest.skip("virtual connections are a local-stack aid")
    log = StackLog(stack)
    emails = _users(LARGE_MEMBERS + 1)
    alice = await sessions("alice@acme.example")
    conv = await _channel(alice, emails)
    await _roster_ready(conv)
    base = f"{stack.origin}/dev/stack/virtual-connections"
    opened: list[str] = []
    try:
        for e in emails:  # 5 devices each, opened through the app's own $connect
            token = requests.post(f"{stack.origin}/dev/idp/token", json={"email": e}, timeout=10).json()["access_token"]
            res = requests.post(base, json={"count": 5, "token": token, "device": "ranges"}, timeout=60).json()
            assert res["refused"] == 0
            opened += res["connectionIds"]
        assert OnlineEntry.count(conv) >= len(opened)
        sent = await alice.call("message.send", conversationId=conv, clientMessageId=_cmid(), body="to every range")
        seq = sent["message"]["seq"]
        deadline = time.monotonic() + 30
        while True:
            got = requests.get(f"{base}/arrivals", params={"type": "message.created", "conversationId": conv,
                                                          "seq": seq}, timeout=10).json()
            if got["distinct"] >= len(opened) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert got["distinct"] == len(opened)
        doc = await log.wait_for(lambda d: d.get("function") == "deliver" and d.get("DeliveryRosterRanges"))
        assert doc["DeliveryRosterRanges"] >= 2
    finally:
        requests.delete(base, timeout=60)
