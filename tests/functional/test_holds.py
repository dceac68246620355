"""Legal hold against DynamoDB (docs/compliance.md "Legal hold"), service by service, no sockets.

A custodian hold placed by an admin: later edits and the delete by the held
user keep every original (``HeldOriginal``) while the screen shows the
edit/delete; the hold's sweep is handed to the compliance queue (recorded
here by the fake scheduler, not sent); a member cannot place a hold.
"""
from __future__ import annotations

import uuid

import pytest

from chalicelib.models import HeldOriginal, Message
from chalicelib.protocol.errors import ChatError
from chalicelib.services import compliance, conversations, messages

pytestmark = pytest.mark.functional


def test_a_held_users_edits_and_delete_keep_every_original(company):
    alice_id = company.users["alice"].user_id
    conv = conversations.create(company.call("alice"), {"kind": "group", "name": "deal", "members": [
        company.users["bob"].user_id]})["conversation"]["conversationId"]
    with pytest.raises(ChatError) as err:
        compliance.place_hold(company.call("alice"), {"kind": "user", "userId": alice_id})
    assert err.value.code == "forbidden"
    hold = compliance.place_hold(company.call("admin"), {"kind": "user", "userId": alice_id, "name": "case 7"})
    assert [(job["job"], job["holdId"]) for job, _ in company.scheduled] == [("hold.sweep", hold["hold"]["holdId"])]

    seq = messages.send(company.call("alice"), {"conversationId": conv, "clientMessageId": uuid.uuid4().hex,
                                                "body": "v1"})["message"]["seq"]
    for text in ("v2", "v3"):
        company.clock.advance(1)
        messages.edit(company.call("alice"), {"conversationId": conv, "seq": seq, "body": text})
    company.clock.advance(1)
    shown = messages.delete(company.call("alice"), {"conversationId": conv, "seq": seq})["message"]
    assert shown["deleted"] is True and shown["body"] is None  # as the users expect on their screens

    kept = list(HeldOriginal.of_messages(conv, seq, seq))
    assert [(o.kind, o.body) for o in kept] == [("edited", "v1"), ("edited", "v2"), ("deleted", "v3")]
    assert all(o.expires_at is None and o.tenant_id == company.tenant for o in kept)
    assert Message.find(conv, seq).body is None


def test_an_unheld_users_delete_keeps_nothing(company):
    conv = conversations.create(company.call("bob"), {"kind": "group", "name": "x", "members": [
        company.users["alice"].user_id]})["conversation"]["conversationId"]
    seq = messages.send(company.call("bob"), {"conversationId": conv, "clientMessageId": uuid.uuid4().hex,
                                              "body": "gone"})["message"]["seq"]
    messages.delete(company.call("bob"), {"conversationId": conv, "seq": seq})
    assert list(HeldOriginal.of_messages(conv, seq, seq)) == []
