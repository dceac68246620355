"""Messaging core over real sockets: several users, several devices per user."""
from __future__ import annotations

import asyncio
import time
import uuid

import jsonschema
import pytest

from chalicelib.models import Connection, Presence, User, user_key
from chalicelib.protocol import schemas

from .client import ActionError, Session

pytestmark = pytest.mark.e2e


def uid(email: str) -> str:
    return User.find_by_email(email).user_id


def cmid() -> str:
    return uuid.uuid4().hex


async def _group(owner: Session, *emails: str, kind: str = "group", **extra) -> str:
    res = await owner.call("conversation.create", kind=kind, members=[uid(e) for e in emails], **extra)
    return res["conversation"]["conversationId"]


async def send_retrying(s: Session, conv: str, body: str, client_id: str | None = None, **extra) -> dict:
    """Send, honouring rate_limited by retrying the same clientMessageId after retryAfter."""
    client_id = client_id or cmid()
    while True:
        try:
            return await s.call("message.send", conversationId=conv, clientMessageId=client_id, body=body, **extra)
        except ActionError as err:
            if err.code != "rate_limited":
                raise
            await asyncio.sleep(err.error["retryAfter"])


async def test_direct_conversation_is_one_per_pair_and_idempotent(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    a = await alice.call("conversation.create", kind="direct", members=[uid("bob@acme.example")])
    b = await bob.call("conversation.create", kind="direct", members=[uid("alice@acme.example")])
    again = await alice.call("conversation.create", kind="direct", members=[uid("bob@acme.example")])
    assert a["conversation"]["conversationId"] == b["conversation"]["conversationId"] \
        == again["conversation"]["conversationId"]
    assert again["created"] is False and b["created"] is False
    with pytest.raises(ActionError) as err:
        await alice.call("conversation.create", kind="direct", members=[uid("bob@acme.example"),
                                                                          uid("carol@acme.example")])
    assert err.value.code == "validation_failed"


async def test_send_reaches_every_device_and_ack_has_seq(sessions):
    alice1, alice2 = await sessions("alice@acme.example"), await sessions("alice@acme.example")
    bob1, bob2 = await sessions("bob@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice1, "bob@acme.example", "carol@acme.example")
    res = await alice1.call("message.send", conversationId=conv, clientMessageId=cmid(), body="hello 👋")
    msg = res["message"]
    assert msg["seq"] == 1 and msg["body"] == "hello 👋" and msg["createdAt"] > 0
    for device in (alice2, bob1, bob2):
        ev = await device.event("message.created", message__conversationId=conv)
        jsonschema.validate(ev, schemas.OUTBOUND["message.created"])
        assert ev["message"]["seq"] == 1 and ev["message"]["body"] == "hello 👋"
    await alice1.no_event("message.created", wait=0.5, message__conversationId=conv)


async def test_retried_send_returns_original(sessions):
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "dave@acme.example")
    key = cmid()
    first = await alice.call("message.send", conversationId=conv, clientMessageId=key, body="once")
    again = await alice.call("message.send", conversationId=conv, clientMessageId=key, body="once")
    assert again["duplicate"] is True and again["message"]["seq"] == first["message"]["seq"]
    assert again["message"]["messageId"] == first["message"]["messageId"]
    hist = await alice.call("history", conversationId=conv)
    assert [m["seq"] for m in hist["messages"]] == [1]


async def test_concurrent_sends_from_many_devices_are_gap_free(sessions):
    devices = [await sessions(e) for e in ("alice@acme.example", "alice@acme.example",
                                           "bob@acme.example", "carol@acme.example")]
    conv = await _group(devices[0], "bob@acme.example", "carol@acme.example")
    per_device = 8

    async def burst(i: int, s: Session) -> list[int]:
        acks = await asyncio.gather(*[send_retrying(s, conv, f"d{i} m{j}") for j in range(per_device)])
        return [a["message"]["seq"] for a in acks]

    seqs = [seq for chunk in await asyncio.gather(*[burst(i, s) for i, s in enumerate(devices)]) for seq in chunk]
    total = per_device * len(devices)
    assert sorted(seqs) == list(range(1, total + 1))
    hist = await devices[0].call("history", conversationId=conv, limit=100)
    assert [m["seq"] for m in hist["messages"]] == list(range(total, 0, -1))
    assert len({m["messageId"] for m in hist["messages"]}) == total
    # bob's device saw every message not sent from it, each once, with increasing seqs on one conversation
    seen = []
    for _ in range(total - per_device):
        ev = await devices[2].event("message.created", message__conversationId=conv)
        seen.append(ev["message"]["seq"])
    assert len(set(seen)) == total - per_device


async def test_edit_history_delete_tombstone(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    seq = (await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="v1"))["message"]["seq"]
    await alice.call("message.edit", conversationId=conv, seq=seq, body="v2")
    ev = await bob.event("message.edited", message__seq=seq)
    assert ev["message"]["body"] == "v2" and ev["message"]["editedAt"]
    await alice.call("message.edit", conversationId=conv, seq=seq, body="v3")
    with pytest.raises(ActionError) as err:
        await bob.call("message.edit", conversationId=conv, seq=seq, body="hijack")
    assert err.value.code == "forbidden"
    revs = await bob.call("message.revisions", conversationId=conv, seq=seq)
    assert [r["body"] for r in revs["revisions"]] == ["v1", "v2"] and revs["current"]["body"] == "v3"
    with pytest.raises(ActionError) as err:
        await bob.call("message.delete", conversationId=conv, seq=seq)
    assert err.value.code == "forbidden"
    await alice.call("message.delete", conversationId=conv, seq=seq)
    ev = await bob.event("message.deleted", seq=seq)
    assert ev["conversationId"] == conv
    hist = await bob.call("history", conversationId=conv)
    tomb = hist["messages"][0]
    assert tomb["seq"] == seq and tomb["deleted"] is True and tomb["body"] is None
    revs = await bob.call("message.revisions", conversationId=conv, seq=seq)
    assert revs["revisions"] == []
    with pytest.raises(ActionError) as err:
        await alice.call("message.edit", conversationId=conv, seq=seq, body="undead")
    assert err.value.code == "conflict"


@pytest.mark.parametrize("emoji", ["[x]", ":party[0]:", "]", "%5B", "a.b"])
async def test_a_reaction_may_contain_brackets_dots_and_percent_signs(sessions, emoji):
    """Reaction keys are document paths: "[", "]" and "x[0]" answered `internal` before (found from outside)."""
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    seq = (await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="react"))["message"]["seq"]
    assert (await bob.call("reaction.add", conversationId=conv, seq=seq, emoji=emoji))["reactions"] == {emoji: 1}
    assert (await alice.call("reaction.add", conversationId=conv, seq=seq, emoji="👍"))["reactions"] == {emoji: 1, "👍": 1}
    hist = await alice.call("history", conversationId=conv, limit=1)
    assert hist["messages"][0]["reactions"] == {emoji: 1, "👍": 1}
    assert (await bob.call("reaction.remove", conversationId=conv, seq=seq, emoji=emoji))["reactions"] == {"👍": 1}
    # removing what nobody added is a no-op, not an error
    assert (await bob.call("reaction.remove", conversationId=conv, seq=seq, emoji="[y]"))["reactions"] == {"👍": 1}


async def test_reactions_threads_mentions(sessions):
    alice, bob, carol = (await sessions("alice@acme.example"), await sessions("bob@acme.example"),
                         await sessions("carol@acme.example"))
    conv = await _group(alice, "bob@acme.example", "carol@acme.example")
    root = (await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="root"))["message"]
    await bob.call("reaction.add", conversationId=conv, seq=root["seq"], emoji="👍")
    res = await carol.call("reaction.add", conversationId=conv, seq=root["seq"], emoji="👍")
    assert res["reactions"] == {"👍": 2}
    ev = await alice.event("reaction.changed", seq=root["seq"], count=2)
    assert ev["emoji"] == "👍" and ev["added"] is True
    res = await bob.call("reaction.remove", conversationId=conv, seq=root["seq"], emoji="👍")
    assert res["reactions"] == {"👍": 1}

    reply = (await bob.call("message.send", conversationId=conv, clientMessageId=cmid(), body="in thread",
                            threadRootSeq=root["seq"]))["message"]
    assert reply["threadRootSeq"] == root["seq"]
    thread = await carol.call("thread.history", conversationId=conv, rootSeq=root["seq"])
    assert thread["root"]["replyCount"] == 1 and [m["seq"] for m in thread["replies"]] == [reply["seq"]]
    with pytest.raises(ActionError) as err:  # no threads of threads
        await bob.call("message.send", conversationId=conv, clientMessageId=cmid(), body="x",
                       threadRootSeq=reply["seq"])
    assert err.value.code == "validation_failed"

    bob_id = uid("bob@acme.example")
    sent = await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body=f"hey <@{bob_id}>")
    assert sent["message"]["mentions"] == [bob_id]
    assert (await bob.event("message.created", message__seq=sent["message"]["seq"]))["mention"] is True
    assert (await carol.event("message.created", message__seq=sent["message"]["seq"]))["mention"] is False
    everyone = await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="<!channel> hi")
    assert (await carol.event("message.created", message__seq=everyone["message"]["seq"]))["mention"] is True
    with pytest.raises(ActionError) as err:
        await alice.call("message.send", conversationId=conv, clientMessageId=cmid(),
                         body=f"<@{uid('dave@acme.example')}> not here")
    assert err.value.code == "validation_failed"


async def test_receipts_are_monotonic_and_unread_counts_follow(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    for i in range(4):
        await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body=f"m{i}")
    inbox = await bob.call("conversation.list")
    entry = next(c for c in inbox["conversations"] if c["conversationId"] == conv)
    assert entry["unread"] == 4 and entry["lastMessage"]["text"] == "m3"
    assert inbox["conversations"][0]["conversationId"] == conv  # most recent activity first
    assert (await bob.call("read", conversationId=conv, seq=3))["unread"] == 1
    ev = await alice.event("receipt", conversationId=conv)
    assert ev["seq"] == 3 and ev["user"]["userId"] == uid("bob@acme.example")
    back = await bob.call("read", conversationId=conv, seq=2)
    assert back["lastReadSeq"] == 3
    await alice.no_event("receipt", wait=0.5, conversationId=conv, seq=2)
    with pytest.raises(ActionError) as err:
        await bob.call("read", conversationId=conv, seq=99)
    assert err.value.code == "validation_failed"
    # the sender's own messages count as read for the sender
    entry = next(c for c in (await alice.call("conversation.list"))["conversations"] if c["conversationId"] == conv)
    assert entry["unread"] == 0


async def test_typing_is_relayed_with_expiry_and_never_stored(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    before = int(time.time() * 1000)
    await alice.call("typing.start", conversationId=conv)
    ev = await bob.event("typing", conversationId=conv, typing=True)
    assert ev["expiresAt"] >= before + 5000
    await alice.call("typing.stop", conversationId=conv)
    assert (await bob.event("typing", conversationId=conv, typing=False))["user"]["userId"] == uid("alice@acme.example")
    assert (await bob.call("history", conversationId=conv))["messages"] == []


async def test_sync_after_reconnect_and_flag_when_more_than_a_page(stack, sessions):
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "carol@acme.example")
    carol = await sessions("carol@acme.example")
    await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="seen")
    await carol.event("message.created", message__conversationId=conv)
    await carol.close()
    for i in range(3):
        await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body=f"missed {i}")
    carol = await sessions("carol@acme.example")
    res = await carol.call("sync", conversations=[{"conversationId": conv, "afterSeq": 1}])
    entry = res["conversations"][0]
    assert [m["body"] for m in entry["messages"]] == ["missed 0", "missed 1", "missed 2"]
    assert entry["hasMore"] is False and entry["lastSeq"] == 4
    # more than one page (50) missing: one page and hasMore, the client then uses history
    senders = [await sessions("alice@acme.example") for _ in range(6)]
    await asyncio.gather(*[send_retrying(s, conv, f"bulk {i}") for i, s in enumerate(senders * 9)])
    res = await carol.call("sync", conversations=[{"conversationId": conv, "afterSeq": 4}])
    entry = res["conversations"][0]
    assert len(entry["messages"]) == 50 and entry["hasMore"] is True and entry["lastSeq"] == 58
    assert [m["seq"] for m in entry["messages"]] == list(range(5, 55))
    page = await carol.call("history", conversationId=conv, limit=10)
    assert page["nextBeforeSeq"] == 49
    older = await carol.call("history", conversationId=conv, beforeSeq=49, limit=10)
    assert [m["seq"] for m in older["messages"]] == list(range(48, 38, -1))


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_gone_connection_is_cleaned_up_and_only_that_one(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    bob_key = user_key("acme", uid("bob@acme.example"))
    # A device that died without its $disconnect reaching us: record and live-set entry remain.
    # (It connected a while ago: a record younger than GONE_GRACE_SECONDS may be mid-handshake.)
    dead = "ZGVhZGRldmljZQ=="
    now = int(time.time())
    Connection(connection_id=dead, tenant_id="acme", user_id=uid("bob@acme.example"), tenant_user=bob_key,
               email="bob@acme.example", roles=["member"], connected_at=now - 120, expires_at=now + 60).save()
    Presence.add_connection(bob_key, dead, now)
    await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="anyone?")
    await bob.event("message.created", message__conversationId=conv)
    # Delivery runs after the ack, its posts in parallel: the Gone cleanup may finish just after bob hears.
    await _until(lambda: Connection.find(dead) is None)
    live = Presence.connections_of([bob_key])[bob_key]
    assert dead not in live and len(live) >= 1
    alice_key = user_key("acme", uid("alice@acme.example"))
    assert Presence.connections_of([alice_key])[alice_key]  # the sender's connections untouched


async def test_gone_during_a_handshake_keeps_the_new_connection(sessions):
    """API Gateway answers Gone to posts for a connection whose $connect has not returned:
    a fan-out racing a handshake must not delete the record (the socket would open unregistered)."""
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    bob_key = user_key("acme", uid("bob@acme.example"))
    joining = "am9pbmluZ2RldmljZQ=="  # recorded by its $connect, not yet open at the gateway
    now = int(time.time())
    Connection(connection_id=joining, tenant_id="acme", user_id=uid("bob@acme.example"), tenant_user=bob_key,
               email="bob@acme.example", roles=["member"], connected_at=now, expires_at=now + 60).save()
    Presence.add_connection(bob_key, joining, now)
    try:
        await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="racing")
        await bob.event("message.created", message__conversationId=conv)
        assert Connection.find(joining) is not None
    finally:
        Connection.remove(joining)
        Presence.remove_connection(bob_key, joining, now)


async def test_groups_channels_roles(sessions):
    alice, bob, carol = (await sessions("alice@acme.example"), await sessions("bob@acme.example"),
                         await sessions("carol@acme.example"))
    conv = await _group(alice, "bob@acme.example")
    with pytest.raises(ActionError) as err:
        await bob.call("member.add", conversationId=conv, userIds=[uid("carol@acme.example")])
    assert err.value.code == "forbidden"
    await alice.call("member.add", conversationId=conv, userIds=[uid("carol@acme.example")])
    assert (await carol.event("members.changed", conversationId=conv))["change"] == "added"
    await alice.call("member.role", conversationId=conv, userId=uid("bob@acme.example"), role="admin")
    await bob.call("member.remove", conversationId=conv, userId=uid("carol@acme.example"))
    with pytest.raises(ActionError) as err:
        await carol.call("history", conversationId=conv)
    assert err.value.code == "not_found"
    await bob.call("conversation.leave", conversationId=conv)
    members = await alice.call("member.list", conversationId=conv)
    assert [m["userId"] for m in members["members"]] == [uid("alice@acme.example")]

    name = f"general-{uuid.uuid4().hex[:6]}"
    chan = (await alice.call("conversation.create", kind="channel", name=name, topic="all hands",
                             visibility="public"))["conversation"]
    listed = await bob.call("channel.list", limit=100)
    assert chan["conversationId"] in [c["conversationId"] for c in listed["channels"]]
    joined = await bob.call("conversation.join", conversationId=chan["conversationId"])
    assert joined["conversation"]["role"] == "member"
    await alice.call("conversation.update", conversationId=chan["conversationId"], topic="new topic")
    assert (await bob.event("conversation.updated"))["conversation"]["topic"] == "new topic"
    await alice.call("conversation.update", conversationId=chan["conversationId"], archived=True)
    with pytest.raises(ActionError) as err:
        await bob.call("message.send", conversationId=chan["conversationId"], clientMessageId=cmid(), body="x")
    assert err.value.code == "conflict"
    private = await _group(alice, kind="channel", name="secret-" + uuid.uuid4().hex[:6], visibility="private")
    with pytest.raises(ActionError) as err:
        await carol.call("conversation.join", conversationId=private)
    assert err.value.code == "not_found"


CONV_ACTIONS = {
    "conversation.get": {}, "conversation.update": {"topic": "x"}, "conversation.join": {},
    "conversation.leave": {}, "member.list": {}, "member.add": {"userIds": ["x"]},
    "member.remove": {"userId": "x"}, "member.role": {"userId": "x", "role": "admin"},
    "message.send": {"clientMessageId": "c1", "body": "intrude"}, "message.edit": {"seq": 1, "body": "x"},
    "message.delete": {"seq": 1}, "message.revisions": {"seq": 1}, "reaction.add": {"seq": 1, "emoji": "x"},
    "reaction.remove": {"seq": 1, "emoji": "x"}, "history": {}, "thread.history": {"rootSeq": 1},
    "read": {"seq": 1}, "typing.start": {}, "typing.stop": {},
}


@pytest.mark.parametrize("action", sorted(CONV_ACTIONS))
async def test_other_tenant_and_non_member_get_not_found(sessions, action):
    alice = await sessions("alice@acme.example")
    conv = (await alice.call("conversation.create", kind="channel", name="iso-" + uuid.uuid4().hex[:8],
                             visibility="public"))["conversation"]["conversationId"]
    await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="private words")
    for email in ("hank@globex.example", "dave@acme.example"):
        intruder = await sessions(email)
        if action == "conversation.join" and email == "dave@acme.example":
            continue  # a public channel of one's own tenant is joinable by design
        with pytest.raises(ActionError) as err:
            await intruder.call(action, conversationId=conv, **CONV_ACTIONS[action])
        assert err.value.code == "not_found", (email, err.value.error)
    hist = await alice.call("history", conversationId=conv)
    assert [m["body"] for m in hist["messages"]] == ["private words"]  # nothing changed
    res = await (await sessions("hank@globex.example")).call("sync", conversations=[
        {"conversationId": conv, "afterSeq": 0}])
    assert res["conversations"][0]["error"]["code"] == "not_found"


async def test_cannot_add_other_tenant_users(sessions):
    alice = await sessions("alice@acme.example")
    with pytest.raises(ActionError) as err:
        await alice.call("conversation.create", kind="direct", members=[uid("hank@globex.example")])
    assert err.value.code == "not_found"
    conv = await _group(alice, "bob@acme.example")
    with pytest.raises(ActionError) as err:
        await alice.call("member.add", conversationId=conv, userIds=[uid("gina@globex.example")])
    assert err.value.code == "not_found"


@pytest.mark.parametrize("fields,code", [
    ({"body": "   "}, "validation_failed"),
    ({"body": ""}, "validation_failed"),
    ({"body": 5}, "validation_failed"),
    ({"body": "ok", "clientMessageId": ""}, "validation_failed"),
    ({"body": "ok", "threadRootSeq": 0}, "validation_failed"),
    ({"body": "ok", "threadRootSeq": 999}, "validation_failed"),
    ({"body": "ok", "conversationId": "has spaces"}, "validation_failed"),
])
async def test_malformed_send_fields(sessions, fields, code):
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    frame = {"conversationId": conv, "clientMessageId": cmid(), **fields}
    reply = await alice.raw("message.send", **frame)
    assert reply["type"] == "error" and reply["error"]["code"] == code, reply
    assert (await alice.call("history", conversationId=conv))["messages"] == []


async def test_body_over_its_byte_limit_is_payload_too_large(sessions):
    """protocol.md's error table: a body over MAX_BODY_BYTES (8 KB) is payload_too_large with `limit` in
    bytes, on send and on edit; the limit counts UTF-8 bytes, not characters (3,000 x "€" = 9,000 bytes)."""
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    for body in ("x" * 9000, "\u20ac" * 3000):
        reply = await alice.raw("message.send", conversationId=conv, clientMessageId=cmid(), body=body)
        assert reply["type"] == "error" and reply["error"]["code"] == "payload_too_large", reply
        assert reply["error"]["limit"] == 8 * 1024
    assert (await alice.call("history", conversationId=conv))["messages"] == []
    sent = await alice.call("message.send", conversationId=conv, clientMessageId=cmid(), body="x" * 8192)
    reply = await alice.raw("message.edit", conversationId=conv, seq=sent["message"]["seq"], body="x" * 8193)
    assert reply["type"] == "error" and reply["error"]["code"] == "payload_too_large", reply
    assert reply["error"]["limit"] == 8 * 1024


async def test_rate_limit_per_connection_has_retry_after(stack, sessions):
    """A company of its own with 2 sends per second per user: 40 sends at once on one connection are
    refused beyond 2 per second however slowly the machine handles them (it would need 20 seconds
    for none to be refused), each refusal with the time left in its one-second window."""
    from .test_limits import company

    _tid, ann, ben = company(stack, sends_per_second_user=2)
    alice = await sessions(ann)
    conv = await _group(alice, ben)
    # accepted ones contend for the same seq, so allow time
    replies = await asyncio.gather(*[alice.raw("message.send", _timeout=60, conversationId=conv,
                                               clientMessageId=cmid(), body=f"spam {i}") for i in range(40)])
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and all(r["error"]["code"] == "rate_limited" and 0 < r["error"]["retryAfter"] <= 1
                           for r in limited)
    acked = [r["result"]["message"]["seq"] for r in replies if r["type"] == "ack"]
    assert sorted(acked) == list(range(1, len(acked) + 1))


async def test_member_add_of_100_users_in_one_request(sessions):
    from chalicelib.services.tenants import upsert_user

    ids = [upsert_user("acme", f"bulk-{i:03d}", f"bulk{i:03d}@acme.example", f"Bulk {i}").user_id for i in range(100)]
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, kind="channel", name="bulk-" + uuid.uuid4().hex[:6])
    res = await alice.call("member.add", conversationId=conv, userIds=ids)
    assert sorted(res["added"]) == sorted(ids)
    info = await alice.call("conversation.get", conversationId=conv)
    assert info["conversation"]["memberCount"] == 101
