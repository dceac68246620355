"""The Python SDK (sdk/chatsdk) and its `chat` command line against the local stack."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chatsdk import (ChatClient, ChatError, Connected, Disconnected, HandshakeRefused, MessageCreated, Synced,
                     dev_token_grant)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0


def sub(stack, email: str) -> str:
    return dev_token_grant(stack.origin, email).sub


@pytest.fixture
async def clients(stack):
    opened: list[ChatClient] = []

    async def open_(email: str, **kwargs) -> ChatClient:
        client = ChatClient(stack.origin, email=email, ws_url=stack.ws, **kwargs)
        await client.connect()
        opened.append(client)
        return client

    yield open_
    for c in opened:
        await c.close()


async def _group(owner: ChatClient, stack, *emails: str) -> str:
    members = [await asyncio.to_thread(sub, stack, e) for e in emails]
    return (await owner.call("conversation.create", kind="group", members=members))["conversation"]["conversationId"]


async def test_send_and_receive_between_two_users(stack, clients):
    alice, bob = await clients("alice@acme.example"), await clients("bob@acme.example")
    assert (await alice.call("ping"))["serverTime"] > 0
    inbox = bob.events(MessageCreated.type)
    conv = await _group(alice, stack, "bob@acme.example")
    sent = await alice.send(conv, "hello from the SDK")
    assert sent.message.seq == 1 and sent.duplicate is False and sent.attempts == 1
    assert sent.message.sender.user_id == alice.user_id

    ev = await inbox.wait_for(lambda e: e.target_conversation() == conv, WAIT)
    assert isinstance(ev, MessageCreated) and ev.replayed is False
    assert ev.message.body == "hello from the SDK" and ev.message.seq == 1
    assert ev.message.sender.user_id == alice.user_id and ev.message.sender.tenant_id == "acme"
    # both sides now follow the conversation from seq 1 (what a reconnect would sync)
    assert alice.high_seq[conv] == 1 and bob.high_seq[conv] == 1

    mine = alice.events(MessageCreated.type, conversation_id=conv)
    reply = await bob.send(conv, "hi alice")
    got = await mine.wait_for(lambda e: e.message.seq == reply.message.seq, WAIT)
    assert got.message.body == "hi alice"

    with pytest.raises(ChatError) as err:  # typed errors carry the protocol's code
        await alice.call("conversation.get", conversationId="c-does-not-exist")
    assert err.value.code == "not_found"
    with pytest.raises(ChatError) as err:
        await alice.call("message.send", conversationId=conv, body="no key")
    assert err.value.code == "validation_failed"


async def test_handshake_refusal_is_typed(stack):
    client = ChatClient(stack.origin, "not-a-jwt", ws_url=stack.ws, reconnect=False)
    with pytest.raises(HandshakeRefused) as err:
        await client.connect()
    assert err.value.status == 401 and err.value.code == "unauthorized" and err.value.permanent


async def test_reconnect_syncs_missed_messages(stack, clients):
    """Kill alice's socket; bob sends while she is away; the SDK reconnects and replays them via sync."""
    gate = asyncio.Event()
    gate.set()
    grants = {"n": 0}

    async def token() -> str:  # a token source: called on every (re)connect
        await gate.wait()  # the test holds the reconnect here while bob sends
        grants["n"] += 1
        return (await asyncio.to_thread(dev_token_grant, stack.origin, "alice@acme.example")).access_token

    alice = ChatClient(stack.origin, token, ws_url=stack.ws, backoff_initial=0.2, backoff_max=1.0)
    await alice.connect()
    try:
        bob = await clients("bob@acme.example")
        conv = await _group(alice, stack, "bob@acme.example")
        events = alice.events()
        await bob.send(conv, "m1")
        first = await events.wait_for(MessageCreated, WAIT)
        assert first.message.body == "m1" and alice.high_seq[conv] == 1

        gate.clear()
        alice._ws.transport.abort()  # the network drops: no close handshake
        gone = await events.wait_for(Disconnected, WAIT)
        assert gone.will_reconnect and not alice.connected
        missed = [(await bob.send(conv, f"m{i}")).message.seq for i in (2, 3, 4)]
        assert missed == [2, 3, 4]
        gate.set()

        back = await events.wait_for(Connected, WAIT)
        assert back.reconnect is True and alice.connections == 2 and grants["n"] == 2
        replayed = []
        while True:
            ev = await events.next(WAIT)
            if isinstance(ev, Synced):
                break
            if isinstance(ev, MessageCreated):
                replayed.append(ev)
        assert [(e.message.seq, e.message.body, e.replayed) for e in replayed] == \
            [(2, "m2", True), (3, "m3", True), (4, "m4", True)]
        assert ev.replayed == {conv: 3} and ev.truncated == []
        assert alice.high_seq[conv] == 4

        # live again on the new socket; nothing is delivered twice
        await bob.send(conv, "m5")
        live = await events.wait_for(MessageCreated, WAIT)
        assert (live.message.seq, live.replayed) == (5, False)
        assert (await alice.call("ping"))["serverTime"] > 0
        with pytest.raises(asyncio.TimeoutError):
            await events.wait_for(MessageCreated, 0.5)
    finally:
        gate.set()
        await alice.close()


async def test_send_retry_after_lost_ack_is_idempotent(stack, clients):
    """The server stores the message but the ack is lost with the socket: the retry gets the original."""
    alice, bob = await clients("alice@acme.example", backoff_initial=0.2), await clients("bob@acme.example")
    conv = await _group(alice, stack, "bob@acme.example")
    watch = bob.events(MessageCreated.type, conversation_id=conv)

    dispatch = alice._dispatch
    dropped: list[dict] = []

    def drop_first_send_ack(frame: dict) -> None:
        if not dropped and frame.get("type") == "ack" and frame.get("action") == "message.send":
            dropped.append(frame)
            alice._ws.transport.abort()
            return
        dispatch(frame)

    alice._dispatch = drop_first_send_ack
    res = await alice.send(conv, "exactly once")
    assert dropped, "the first ack was not intercepted"
    assert res.attempts == 2 and res.duplicate is True
    assert res.message.seq == dropped[0]["result"]["message"]["seq"]
    assert res.message.client_message_id == dropped[0]["result"]["message"]["clientMessageId"]
    assert alice.connections == 2

    hist = await alice.call("history", conversationId=conv)
    assert [m["body"] for m in hist["messages"]] == ["exactly once"]
    ev = await watch.wait_for(MessageCreated, WAIT)
    assert ev.message.seq == res.message.seq
    with pytest.raises(asyncio.TimeoutError):
        await watch.wait_for(MessageCreated, 0.5)

    # an explicit key: a retry by the application is answered with the original too
    key = uuid.uuid4().hex
    one = await alice.send(conv, "keyed", client_message_id=key)
    two = await alice.send(conv, "keyed", client_message_id=key)
    assert (one.duplicate, two.duplicate) == (False, True)
    assert one.message.seq == two.message.seq and one.message.message_id == two.message.message_id


async def test_send_honours_rate_limit(stack, clients):
    alice = await clients("alice@acme.example")
    conv = await _group(alice, stack, "carol@acme.example")
    results = await asyncio.gather(*[alice.send(conv, f"burst {i}") for i in range(25)])
    assert sorted(r.message.seq for r in results) == list(range(1, 26))
    assert all(r.duplicate is False for r in results)


# --- the command line -----------------------------------------------------------------

def _chat(stack, tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, CHAT_TOKEN_FILE=str(tmp_path / "token"), CHAT_WS_URL=stack.ws,
               PYTHONPATH=os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")]))
    env.pop("CHAT_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "chatsdk.cli", "--url", stack.origin, *args],
                          env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


async def test_cli_smoke(stack, tmp_path, clients):
    chat = lambda *a, **kw: asyncio.to_thread(_chat, stack, tmp_path, *a, **kw)  # noqa: E731

    # before login: the probe still shows the service answers (health, and a 401 handshake)
    probe = json.loads((await chat("ping")).stdout)
    assert probe["ok"] is True and probe["health"] == "ok" and probe["handshake"] == 401

    login = json.loads((await chat("login", "--email", "dave@acme.example")).stdout)
    token_path = tmp_path / "token"
    assert login["tokenFile"] == str(token_path) and login["email"] == "dave@acme.example"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600

    probe = json.loads((await chat("ping", "--count", "2")).stdout)
    assert probe["ok"] is True and probe["handshake"] == 101 and len(probe["rttMs"]) == 2

    alice = await clients("alice@acme.example")
    conv = await _group(alice, stack, "dave@acme.example")
    sent = json.loads((await chat("send", conv, "from the command line")).stdout)
    assert sent["message"]["seq"] == 1 and sent["message"]["body"] == "from the command line"

    lines = [json.loads(x) for x in (await chat("inbox", "--json")).stdout.splitlines()]
    entry = next(c for c in lines if c["conversationId"] == conv)
    assert entry["lastMessage"]["text"] == "from the command line" and entry["unread"] == 0
    table = (await chat("inbox")).stdout
    assert conv in table and "UNREAD" in table

    # tail prints events as JSON lines
    env = dict(os.environ, CHAT_TOKEN_FILE=str(token_path), CHAT_WS_URL=stack.ws)
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatsdk.cli", "--url", stack.origin, "tail", conv, "--count", "1", "--for", "40",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        # wait until it is connected and listening (it says so on stderr)
        ready = await asyncio.wait_for(tail.stderr.readline(), 30)
        assert b"tailing" in ready, ready
        await alice.send(conv, "to the tail")
        out = await asyncio.wait_for(tail.stdout.readline(), 30)
        event = json.loads(out)
        assert event["type"] == "message.created" and event["message"]["body"] == "to the tail"
        assert await asyncio.wait_for(tail.wait(), 30) == 0
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()

    (tmp_path / "report.txt").write_text("all green\n")
    shared = json.loads((await chat("upload", conv, str(tmp_path / "report.txt"), "--wait")).stdout)
    assert shared["status"] == "clean" and shared["name"] == "report.txt" and shared["seq"] == 3

    err = await chat("send", "c-nope", "x", check=False)
    assert err.returncode == 1 and "not_found" in err.stderr


async def test_upload_file_posts_to_the_presigned_url_and_waits_for_the_notice(stack, clients, tmp_path):
    """``upload_file``: file.upload.request, the presigned POST straight to storage, then the file's notice."""
    alice, bob = await clients("alice@acme.example"), await clients("bob@acme.example")
    conv = await _group(alice, stack, "bob@acme.example")
    watch = bob.events(MessageCreated.type, conversation_id=conv)
    path = tmp_path / "notes.txt"
    path.write_text("minutes of the meeting\n")
    pending = await alice.upload_file(conv, path)
    assert pending["name"] == "notes.txt" and pending["size"] == path.stat().st_size
    assert pending["contentType"] == "text/plain" and pending["conversationId"] == conv
    assert pending["status"] == "pending" and len(pending["fileId"]) == 32

    (tmp_path / "agenda.txt").write_text("1. numbers\n2. lunch\n")
    ready = await alice.upload_file(conv, tmp_path / "agenda.txt", wait=True, timeout=40)
    assert ready["status"] == "clean" and ready["seq"] >= 1
    notices = {}
    while len(notices) < 2:
        ev = await watch.wait_for(lambda e: e.message.kind == "file", 40)
        notices[ev.message.raw["file"]["fileId"]] = ev.message.seq
    assert notices[ready["fileId"]] == ready["seq"] and pending["fileId"] in notices


async def test_get_users_resolves_names_in_batches(stack, clients):
    from chatsdk import Person, UserRef

    alice = await clients("alice@acme.example")
    bob_id = await asyncio.to_thread(sub, stack, "bob@acme.example")
    gina_id = await asyncio.to_thread(sub, stack, "gina@globex.example")
    unknown = [f"acme#{uuid.uuid4()}" for _ in range(140)]  # with the others: two users.get requests
    got = await alice.get_users([UserRef("acme", bob_id), {"tenantId": "acme", "userId": alice.user_id},
                                 f"globex#{gina_id}", *unknown, f"acme#{bob_id}"])
    assert len(got) == 143 and list(got)[:3] == [f"acme#{bob_id}", f"acme#{alice.user_id}", f"globex#{gina_id}"]
    bob = got[f"acme#{bob_id}"]
    assert isinstance(bob, Person) and bob.display_name == "Bob Builder" and bob.email == "bob@acme.example"
    assert bob.external is False and bob.active is True and bob.key == f"acme#{bob_id}"
    assert got[f"acme#{alice.user_id}"].display_name == "Alice Admin"
    assert got[f"globex#{gina_id}"] is None  # acme and globex are not connected in the seed
    assert all(got[k] is None for k in unknown)
    assert (await alice.users_get([f"acme#{bob_id}"]))[f"acme#{bob_id}"] == bob
    with pytest.raises(ChatError) as err:
        await alice.get_users(["not a key"])
    assert err.value.code == "validation_failed"


async def test_search_users_then_open_a_direct_conversation(stack, clients):
    """A new colleague who knows only "bo" finds Bob and starts (then reopens) a direct chat with him."""
    from chatsdk import ConversationCreated, PeoplePage, Person, RestClient

    from chalicelib.services.tenants import upsert_user
    from devstack.seed import subject_for

    from .client import token_for

    tag = f"sdk{uuid.uuid4().hex[:6]}"
    newbie_email = f"{tag}.new@acme.example"
    await asyncio.to_thread(upsert_user, "acme", subject_for(newbie_email), newbie_email, f"Newbie {tag}")
    newbie = await clients(newbie_email)
    bob = await clients("bob@acme.example")
    page = await newbie.search_users("bo")
    assert isinstance(page, PeoplePage) and page.query == "bo"
    hit = next(p for p in page if p.email == "bob@acme.example")
    assert isinstance(hit, Person) and hit.display_name == "Bob Builder" and hit.external is False
    assert hit.user_id == bob.user_id
    assert [p.email for p in await newbie.search_users("BOB BUI")] == ["bob@acme.example"]
    assert all(not p.external for p in await newbie.search_all_users("gi"))  # globex is not connected in the seed
    with bob.events("conversation.created") as created:
        conv = await newbie.open_direct(hit)
        event = await created.next(timeout=WAIT)
    assert isinstance(event, ConversationCreated) and event.conversation.conversation_id == conv["conversationId"]
    assert conv["kind"] == "direct"
    assert (await newbie.open_direct(hit))["conversationId"] == conv["conversationId"]  # the same one again
    # bob finds the newcomer as well (written by upsert_user a moment ago)
    assert [p.email for p in await bob.search_users(f"newbie {tag}")] == [newbie_email]

    # paging through the SDK
    for n in ("one", "two"):
        await asyncio.to_thread(upsert_user, "acme", f"{tag}-{n}", f"{tag}.{n}@acme.example", f"{tag} {n}")
    first = await newbie.search_users(tag, limit=2)
    assert len(first) == 2 and first.next_cursor
    second = await newbie.search_users(tag, limit=2, cursor=first.next_cursor)
    everyone = [p.display_name for p in (*first, *second)]
    assert sorted(everyone) == sorted([f"Newbie {tag}", f"{tag} one", f"{tag} two"]) and len(set(everyone)) == 3
    # the REST twin
    rest = RestClient(stack.origin, await asyncio.to_thread(token_for, stack, newbie_email))
    body = await asyncio.to_thread(rest.search_users, "bo", 5)
    assert "bob@acme.example" in [u["email"] for u in body["users"]]
    with pytest.raises(ChatError) as err:
        await newbie.search_users("b")
    assert err.value.code == "validation_failed"


async def test_sdk_ask_the_experts_waves_accept_and_answers(stack, clients):
    """docs/experts.md through the SDK: ask, see the waves and who accepted, accept as an expert, keep the
    answer, browse and search the topic's answers."""
    from chatsdk import ExpertQuestionAccepted, ExpertQuestionOffered, ExpertQuestionWave

    from .test_experts import person, topic
    from .test_federation import make_company

    co = make_company(stack, "xsdk")
    expert_email = person(co, "sdkexpert")
    t = topic(stack, co, name="Travel policy", users=[co.user_id(expert_email)], timeoutSeconds=300)
    expert, asker = await clients(expert_email), await clients(co.member)
    assert [x["topicId"] for x in await asker.expert_topics()] == [t["topicId"]]
    offers = expert.events(ExpertQuestionOffered.type)
    news = asker.events(ExpertQuestionWave.type, ExpertQuestionAccepted.type)
    assert await asker.search_answers("business class", topic_id=t["topicId"]) == []  # shown before asking
    q = await asker.ask_experts(t["topicId"], "May I fly business class to Tokyo?")
    wave = await news.wait_for(ExpertQuestionWave, WAIT)
    assert (wave.question_id, wave.wave, wave.tier, wave.experts) == (q["questionId"], 1, 1, 1)
    offer = await offers.wait_for(lambda e: e.question_id == q["questionId"], WAIT)
    assert isinstance(offer, ExpertQuestionOffered) and offer.asked_by == "Member" and "Tokyo" in offer.text
    taken = await expert.accept_question(offer.question_id)
    conv = taken["conversation"]["conversationId"]
    accepted = await news.wait_for(ExpertQuestionAccepted, WAIT)
    assert accepted.conversation_id == conv and accepted.expert["displayName"] == "Sdkexpert"
    with pytest.raises(ChatError) as err:
        await asker.accept_question(q["questionId"])
    assert err.value.code == "not_found"
    answer = await expert.send(conv, "Yes: flights over 8 hours may be booked in business class.")
    entry = await asker.mark_answered(q["questionId"], [answer.message.seq])
    assert entry["answer"].startswith("Yes: flights over 8 hours")
    assert [e["questionId"] for e in await asker.search_answers("business class", topic_id=t["topicId"])] \
        == [q["questionId"]]
    assert [e["questionId"] for e in await expert.search_answers(topic_id=t["topicId"])] == [q["questionId"]]
    # cancel: a second question, withdrawn
    q2 = await asker.ask_experts(t["topicId"], "And to Osaka?")
    assert (await asker.cancel_question(q2["questionId"]))["state"] == "cancelled"
