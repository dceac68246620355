"""Load and fault test: many SDK clients in both tenants, faults injected at the local stack.

~120 WebSocket clients (users of acme and globex, two devices each, built on
``chatsdk.ChatClient``) send into a few group conversations of their tenant
while the stack injects faults (devstack/faults.py, ``POST /dev/stack/faults``):

* DynamoDB throttling (ProvisionedThroughputExceeded / Throttling) on a fraction of requests;
* DynamoDB writes whose reply is lost after they committed (botocore retries a committed write);
* DynamoDB writes that commit and then fail, retries included, so the handler itself fails after
  a committed write (a crash between two writes) and the client retries the action;
* ``@connections`` posts answered Gone (the socket is dropped under them) or 500;
* queue-driven invocations (the delivery workers above all: the test stack's small
  thresholds put every group's events on them) dying before or after their work,
  so batches and shards are delivered again.

Clients also drop their own sockets at random and re-send some messages with
the same ``clientMessageId``.  With faults off again, per conversation:
0 lost (every acked message is in history at its acked seq), 0 duplicated
(``clientMessageId`` unique), seq contiguous from 1, nothing that no client
sent, and every client's view after a sync is exactly history.

Bounded: sizes come from LOAD_USERS_PER_TENANT (30), LOAD_DEVICES (2),
LOAD_SENDS (2 per client), LOAD_GROUPS (6 per tenant: groups of 5 users, 10 devices).
"""
from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from chatsdk import ChatClient, ChatError
from chatsdk.events import MessageCreated

pytestmark = [pytest.mark.e2e, pytest.mark.load]

USERS_PER_TENANT = int(os.environ.get("LOAD_USERS_PER_TENANT", "30"))
DEVICES = int(os.environ.get("LOAD_DEVICES", "2"))
SENDS = int(os.environ.get("LOAD_SENDS", "2"))
GROUPS = int(os.environ.get("LOAD_GROUPS", "6"))
TENANTS = (("acme", "acme.example"), ("globex", "globex.example"))
FAULTS = {"dynamodbThrottle": 0.004, "dynamodbLostReply": 0.005, "dynamodbCommitThenFail": 0.005,
          "connectionsGone": 0.002, "connectionsError": 0.01,
          # the delivery workers (and the other queue consumers) die before or after their work: batches redelivered
          "workerCrash": 0.02}
DROP_SOCKET = 0.3  # chance per client that it drops its own socket once during the run
RESEND = 0.2  # chance per acked send that the client sends it again (same clientMessageId)
SEND_DEADLINE = 240.0  # a send not acked by then (after retries) counts as unacked (a loaded CI host is slow)
CONNECT_GATE = 16


@dataclass
class Device:
    email: str
    user_id: str
    name: str
    client: ChatClient
    convs: list[str]
    seen: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))  # conv -> seq -> cmid


def _faults(stack: Any, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(f"{stack.origin}/dev/stack/faults", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()


def _create_users() -> dict[str, list[tuple[str, str]]]:
    """(email, user id) of new members per tenant, written with the app's own upsert_user."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.services.tenants import upsert_user
    from devstack.seed import subject_for

    run = os.urandom(3).hex()
    out: dict[str, list[tuple[str, str]]] = {}
    jobs = []
    for tenant, domain in TENANTS:
        users = [(f"load-{run}-{i:03d}@{domain}", "") for i in range(USERS_PER_TENANT)]
        out[tenant] = [(e, subject_for(e)) for e, _ in users]
        jobs += [(tenant, e, uid) for e, uid in out[tenant]]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: upsert_user(j[0], j[2], j[1], j[1].split("@")[0]), jobs))
    return out


async def _connect(stack: Any, email: str, gate: asyncio.Semaphore) -> ChatClient:
    client = ChatClient(stack.origin, email=email, ws_url=stack.ws, backoff_initial=0.2, backoff_max=2.0,
                        request_timeout=20.0, open_timeout=20.0, ping_interval=None)
    async with gate:
        for attempt in range(5):
            try:
                return await client.connect()
            except ChatError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _record(dev: Device) -> None:
    def on_message(event: MessageCreated) -> None:
        m = event.message
        prior = dev.seen[m.conversation_id].setdefault(m.seq, m.client_message_id or "")
        assert prior == (m.client_message_id or ""), f"{dev.name}: seq {m.seq} seen as {prior} and {m}"
    dev.client.on("message.created", on_message)


async def _history(client: ChatClient, conv: str) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    before = None
    while True:
        fields: dict[str, Any] = {"conversationId": conv, "limit": 100}
        if before is not None:
            fields["beforeSeq"] = before
        page = await client.call("history", **fields)
        msgs += page["messages"]
        before = page.get("nextBeforeSeq")
        if not before:
            return sorted(msgs, key=lambda m: m["seq"])


@pytest.mark.timeout(420)
async def test_no_loss_no_duplicates_under_faults(stack):
    if stack.state_dir is None:
        pytest.skip("fault injection is a local-stack control")
    started = time.monotonic()
    rng = random.Random(os.environ.get("LOAD_SEED") or None)
    users = await asyncio.to_thread(_create_users)

    # Groups per tenant: users dealt round-robin; the first user of each group creates it.
    gate = asyncio.Semaphore(CONNECT_GATE)
    conv_of_user: dict[str, list[str]] = defaultdict(list)
    all_convs: dict[str, list[str]] = {}
    for tenant, _ in TENANTS:
        members = users[tenant]
        groups = [members[g::GROUPS] for g in range(GROUPS)]
        all_convs[tenant] = []
        for g, group in enumerate(groups):
            owner = await _connect(stack, group[0][0], gate)
            res = await owner.call("conversation.create", kind="group", name=f"load {tenant} {g}",
                                   members=[uid for _, uid in group[1:]])
            await owner.close()
            conv = res["conversation"]["conversationId"]
            all_convs[tenant].append(conv)
            for email, _ in group:
                conv_of_user[email].append(conv)

    emails = [(e, uid) for tenant, _ in TENANTS for e, uid in users[tenant]]
    clients = await asyncio.gather(*(_connect(stack, e, gate) for e, _ in emails for _ in range(DEVICES)))
    devices: list[Device] = []
    for i, client in enumerate(clients):
        email, uid = emails[i // DEVICES]
        dev = Device(email, uid, f"{email.split('@')[0]}/{i % DEVICES}", client, conv_of_user[email])
        for conv in dev.convs:
            client.track(conv, 0)
        _record(dev)
        devices.append(dev)
    setup_s = time.monotonic() - started
    print(f"\nsetup: {len(emails)} users, {len(devices)} clients, "
          f"{sum(len(v) for v in all_convs.values())} groups in {setup_s:.0f}s")

    attempted: dict[str, set[str]] = defaultdict(set)
    acked: dict[str, dict[str, int]] = defaultdict(dict)  # conv -> cmid -> seq
    unacked: list[tuple[str, str, str]] = []
    stats: Counter[str] = Counter()

    async def drop(dev: Device) -> None:
        ws = dev.client._ws  # noqa: SLF001 - the test drops the socket as a lost network would
        if ws is not None and ws.transport is not None:
            ws.transport.abort()
            stats["client drops"] += 1

    async def send(dev: Device, conv: str, cmid: str) -> None:
        deadline = time.monotonic() + SEND_DEADLINE
        while True:
            try:
                res = await dev.client.send(conv, f"load message {cmid}", cmid, max_attempts=10)
            except ChatError as err:
                stats[f"send gave up: {err.code}"] += 1
                if time.monotonic() > deadline:
                    unacked.append((conv, cmid, err.code))
                    return
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                continue
            stats["retried sends"] += res.attempts > 1
            stats["acked as duplicate"] += res.duplicate
            assert acked[conv].setdefault(cmid, res.message.seq) == res.message.seq, (cmid, res)
            dev.seen[conv][res.message.seq] = cmid
            return

    async def run(dev: Device) -> None:
        drop_at = rng.randrange(SENDS) if rng.random() < DROP_SOCKET else -1
        await asyncio.sleep(rng.uniform(0, 2))
        for k in range(SENDS):
            conv = rng.choice(dev.convs)
            cmid = f"{dev.name}-{k}"
            attempted[conv].add(cmid)
            await send(dev, conv, cmid)
            if cmid in acked[conv] and rng.random() < RESEND:
                seq = acked[conv][cmid]
                await send(dev, conv, cmid)  # asserts the same seq comes back
                stats["explicit resends"] += 1
                assert acked[conv][cmid] == seq
            if k == drop_at:
                await drop(dev)
            await asyncio.sleep(rng.uniform(0, 0.5))

    before = _faults(stack, {"reset": True, **FAULTS})
    assert before["rates"]["dynamodbThrottle"] == FAULTS["dynamodbThrottle"]
    t_run = time.monotonic()
    try:
        await asyncio.gather(*(run(dev) for dev in devices))
    finally:
        injected = requests.get(f"{stack.origin}/dev/stack/faults", timeout=10).json()["injected"]
        _faults(stack, {"reset": True})
    run_s = time.monotonic() - t_run
    # How chatty recovery was while shards, retries and faults reorder and drop events:
    # sync requests per 1,000 distinct messages the clients received (live or replayed), before the check's syncs.
    syncs = sum(d.client.sync_requests for d in devices)
    received = sum(len(seqs) for d in devices for seqs in d.seen.values())

    # Faults off: every client reconnects if needed and syncs; then compare with history.
    async def settle(dev: Device) -> None:
        await dev.client.wait_connected(60)
        for attempt in range(3):
            try:
                await dev.client.sync(dev.convs)
                return
            except ChatError:
                await asyncio.sleep(1 + attempt)
        await dev.client.sync(dev.convs)

    await asyncio.gather(*(settle(d) for d in devices))
    histories = {conv: await _history(next(d.client for d in devices if conv in d.convs), conv)
                 for convs in all_convs.values() for conv in convs}

    problems: list[str] = []
    rows = []
    for conv, msgs in histories.items():
        seqs = [m["seq"] for m in msgs]
        cmids = [m["clientMessageId"] for m in msgs]
        lost = [c for c, s in acked[conv].items() if c not in cmids or cmids[s - 1] != c]
        dups = [c for c, n in Counter(cmids).items() if n > 1]
        contiguous = seqs == list(range(1, len(seqs) + 1))
        phantom = [c for c in cmids if c not in attempted[conv]]
        members = [d for d in devices if conv in d.convs]
        diverged = [d.name for d in members if dict(d.seen[conv]) != dict(zip(seqs, cmids))]
        rows.append((conv, len(msgs), len(acked[conv]), len(lost), len(dups), contiguous, len(members),
                     len(diverged)))
        if lost:
            problems.append(f"{conv}: lost {lost[:5]}")
        if dups:
            problems.append(f"{conv}: duplicated {dups[:5]}")
        if not contiguous:
            problems.append(f"{conv}: seqs not contiguous: {seqs[:10]}...")
        if phantom:
            problems.append(f"{conv}: messages nobody sent {phantom[:5]}")
        if diverged:
            d = next(x for x in members if x.name == diverged[0])
            missing = sorted(set(seqs) - set(d.seen[conv]))[:10]
            extra = sorted(set(d.seen[conv]) - set(seqs))[:10]
            problems.append(f"{conv}: {len(diverged)} clients differ from history, e.g. {d.name}: "
                            f"missing seqs {missing}, extra {extra}")

    print(f"run: {sum(len(v) for v in attempted.values())} distinct messages from {len(devices)} clients "
          f"in {run_s:.0f}s; total {time.monotonic() - started:.0f}s")
    print(f"client side: {dict(stats)}; unacked: {len(unacked)}")
    print(f"faults injected: {injected}")
    print(f"recovery: {syncs} sync requests for {received} distinct messages received "
          f"({1000 * syncs / max(1, received):.1f} per 1,000)")
    print(f"{'conversation':<36} {'history':>7} {'acked':>5} {'lost':>4} {'dup':>3} {'contig':>6} "
          f"{'clients':>7} {'differ':>6}")
    for r in rows:
        print(f"{r[0]:<36} {r[1]:>7} {r[2]:>5} {r[3]:>4} {r[4]:>3} {str(r[5]):>6} {r[6]:>7} {r[7]:>6}")
    print(f"totals: lost {sum(r[3] for r in rows)}, duplicated {sum(r[4] for r in rows)}, "
          f"non-contiguous conversations {sum(not r[5] for r in rows)}, "
          f"clients differing from history {sum(r[7] for r in rows)}")

    await asyncio.gather(*(d.client.close() for d in devices))
    assert not unacked, f"sends never acked: {unacked[:5]}"
    assert not problems, "\n".join(problems)
    # The faults really happened.
    assert sum(injected.values()) > 0, injected

