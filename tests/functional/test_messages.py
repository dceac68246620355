"""messages/conversations services against DynamoDB: order, idempotency, limits, edits (no sockets)."""
from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from chalicelib.models import Idempotency, Member, Message
from chalicelib.protocol.errors import ChatError
from chalicelib.services import conversations, messages

pytestmark = pytest.mark.functional


def _group(company) -> str:
    created = conversations.create(company.call("alice"), {"kind": "group", "name": "team",
                                                           "members": [company.users["bob"].user_id]})
    return created["conversation"]["conversationId"]


def _send(company, conv: str, text: str, cmid: str | None = None, who: str = "alice") -> dict:
    return messages.send(company.call(who), {"conversationId": conv, "clientMessageId": cmid or uuid.uuid4().hex,
                                             "body": text})


def test_sends_get_consecutive_seqs_and_one_event_each(company):
    conv = _group(company)
    company.outbox.jobs.clear()
    seqs = [_send(company, conv, f"m{i}")["message"]["seq"] for i in range(3)]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
    created = [j for j in company.outbox.jobs if j["kind"] == "conversation"]
    assert [j["frame"]["message"]["seq"] for j in created] == seqs
    assert {(j["frame"]["type"], j["conversationId"], j["onWorker"]) for j in created} == \
        {("message.created", conv, False)}  # a group of 2: resolved in the request, not on a worker
    stored = [m.body for m in Message.query(conv, Message.seq >= seqs[0])]
    assert stored == ["m0", "m1", "m2"]


def test_a_retried_send_is_the_same_message(company):
    conv = _group(company)
    first = _send(company, conv, "hello", cmid="retry-1")
    again = _send(company, conv, "hello", cmid="retry-1")
    assert again["duplicate"] is True and again["message"]["seq"] == first["message"]["seq"]
    assert again["message"]["messageId"] == first["message"]["messageId"]
    assert len(list(Message.query(conv, Message.seq >= first["message"]["seq"]))) == 1
    assert Idempotency.find(Idempotency.key_for(conv, f"{company.tenant}#{company.users['alice'].user_id}",
                                                "retry-1")).seq == first["message"]["seq"]


def test_concurrent_sends_never_share_or_skip_a_seq(company):
    conv = _group(company)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: _send(company, conv, f"c{i}", who="alice" if i % 2 else "bob"),
                                range(12)))
    seqs = sorted(r["message"]["seq"] for r in results)
    assert seqs == list(range(seqs[0], seqs[0] + 12))


def test_the_per_user_send_rate_is_a_window_of_the_clock(company):
    """sends per second per user (docs/operations.md "Limits"): the 11th in one second is refused
    with retryAfter, nothing stored; a second later it goes through."""
    conv = _group(company)
    limit = 10
    for i in range(limit):
        _send(company, conv, f"r{i}")
    with pytest.raises(ChatError) as err:
        _send(company, conv, "one too many", cmid="over")
    assert err.value.code == "rate_limited"
    assert Idempotency.find(Idempotency.key_for(conv, f"{company.tenant}#{company.users['alice'].user_id}",
                                                "over")) is None
    company.clock.advance(1.0)
    assert _send(company, conv, "one too many", cmid="over")["duplicate"] is False


def test_only_the_author_edits_and_the_revision_is_kept(company):
    conv = _group(company)
    sent = _send(company, conv, "draft")["message"]
    with pytest.raises(ChatError) as err:
        messages.edit(company.call("bob"), {"conversationId": conv, "seq": sent["seq"], "body": "hijack"})
    assert err.value.code == "forbidden"
    company.clock.advance(5)
    edited = messages.edit(company.call("alice"), {"conversationId": conv, "seq": sent["seq"], "body": "final"})
    assert edited["message"]["body"] == "final" and edited["message"]["editedAt"] is not None
    revisions = messages.revisions(company.call("bob"), {"conversationId": conv, "seq": sent["seq"]})
    assert [r["body"] for r in revisions["revisions"]] == ["draft"]


def test_read_moves_the_marker_and_never_back(company):
    conv = _group(company)
    seqs = [_send(company, conv, f"u{i}")["message"]["seq"] for i in range(3)]
    bob = company.call("bob")
    messages.read(bob, {"conversationId": conv, "seq": seqs[2]})
    messages.read(bob, {"conversationId": conv, "seq": seqs[0]})
    member = Member.get(conv, f"{company.tenant}#{company.users['bob'].user_id}")
    assert int(member.last_read_seq) == seqs[2]


def test_a_send_that_loses_every_race_is_rate_limited_and_stores_nothing(company, monkeypatch):
    """A conversation taking sends faster than its seq counter can order them answers back-pressure
    (``rate_limited`` + ``retryAfter``), never ``internal``: the retry with the same id is safe."""
    from chalicelib.models import Conversation
    from chalicelib.protocol.errors import RateLimited
    from chalicelib.services import timeline

    conv = _group(company)
    stale = Conversation.find(conv, consistent=True)
    _send(company, conv, "someone else's send took the next seq")
    read = messages._read_for_send
    monkeypatch.setattr(messages, "_read_for_send", lambda c, me: (stale, *read(c, me)[1:]))
    monkeypatch.setattr(timeline.Conversation, "find", classmethod(lambda cls, *a, **k: stale))
    monkeypatch.setattr(timeline, "MAX_SEND_ATTEMPTS", 3)
    with pytest.raises(RateLimited) as exc:
        _send(company, conv, "never stored", cmid="busy-1")
    assert exc.value.to_body()["code"] == "rate_limited" and exc.value.to_body()["retryAfter"] == 1.0
    me = f"{company.tenant}#{company.users['alice'].user_id}"
    assert Idempotency.find(Idempotency.key_for(conv, me, "busy-1")) is None
    assert [m.body for m in Message.query(conv, Message.seq >= stale.last_seq + 1)] \
        == ["someone else's send took the next seq"]
