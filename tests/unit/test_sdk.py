"""The SDK's pure parts: event parsing, backoff, URLs, token file, error mapping."""
from __future__ import annotations

import itertools
import random
import stat

import pytest

from chatsdk import (ChatError, MessageCreated, PresenceChanged, Receipt, UnknownEvent, backoff_delays,
                     load_token, parse_event, save_token, token_file, ws_url_for)
from chatsdk.events import EVENT_TYPES


def test_typed_events_match_the_server_schemas():
    """Each typed event is a real server event, and its required fields are the schema's."""
    from chalicelib.protocol import schemas

    for name in EVENT_TYPES:
        assert name in schemas.OUTBOUND, name
    for name in ("message.created", "message.edited", "message.deleted", "reaction.changed", "receipt", "typing",
                 "presence.changed", "members.changed", "conversation.created", "conversation.updated"):
        assert name in EVENT_TYPES, name


def test_events_are_typed_and_unknown_ones_fall_back():
    ev = parse_event({"type": "message.created", "mention": True, "message": {
        "conversationId": "c-1", "seq": 7, "sender": {"tenantId": "acme", "userId": "u1"}, "body": "hi",
        "createdAt": 5, "futureField": 1}})
    assert isinstance(ev, MessageCreated) and ev.mention and ev.message.seq == 7
    assert ev.message.sender.tenant_id == "acme" and ev.target_conversation() == "c-1"
    rc = parse_event({"type": "receipt", "conversationId": "c-2", "user": {"tenantId": "a", "userId": "u"}, "seq": 3})
    assert isinstance(rc, Receipt) and rc.seq == 3 and rc.target_conversation() == "c-2"
    pc = parse_event({"type": "presence.changed", "user": {"tenantId": "a", "userId": "u"}, "status": "away",
                      "custom": None, "devices": 1, "lastSeenAt": 9})
    assert isinstance(pc, PresenceChanged) and pc.status == "away" and pc.target_conversation() is None
    new = parse_event({"type": "file.shared", "conversationId": "c-3"})
    assert isinstance(new, UnknownEvent) and new.type == "file.shared" and new.to_json()["conversationId"] == "c-3"


def test_backoff_is_exponential_jittered_and_capped():
    delays = list(itertools.islice(backoff_delays(0.5, 8.0, rng=random.Random(1)), 10))
    caps = [min(8.0, 0.5 * 2 ** k) for k in range(10)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps))
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


def test_ws_url_for():
    assert ws_url_for("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/ws"
    assert ws_url_for("https://chat.example/") == "wss://chat.example/ws"
    assert ws_url_for("wss://abc.execute-api.eu-west-1.amazonaws.com/prod") == \
        "wss://abc.execute-api.eu-west-1.amazonaws.com/prod"
    with pytest.raises(ValueError):
        ws_url_for("ftp://x")


def test_token_file_location_and_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAT_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert token_file() == tmp_path / ".config" / "chat" / "token"
    monkeypatch.setenv("CHAT_TOKEN_FILE", str(tmp_path / "t"))
    path = save_token("abc.def.ghi\n")
    assert path == tmp_path / "t" and load_token() == "abc.def.ghi"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_chat_error_from_frame():
    err = ChatError.from_frame({"type": "error", "requestId": "r1",
                                "error": {"code": "rate_limited", "message": "slow down", "retryAfter": 0.4}})
    assert (err.code, err.message, err.retry_after, err.request_id) == ("rate_limited", "slow down", 0.4, "r1")


def test_gap_wait_grows_with_slow_replies_and_is_capped():
    """A slow service delays events as much as replies: the client waits longer before syncing a gap
    (4 smoothed reply times), so recovery does not add load when there is none to spare."""
    from chatsdk import ChatClient

    c = ChatClient("http://127.0.0.1:1", "token")
    assert c.gap_wait() == c.gap_sync_delay == 3.0  # nothing measured yet
    c._observe_reply_time(0.05)  # noqa: SLF001 - a reply's time as request() measures it
    assert c.gap_wait() == 3.0  # a fast service: the plain delay
    for _ in range(40):
        c._observe_reply_time(5.0)  # noqa: SLF001
    assert 19.0 < c.gap_wait() <= 20.0  # replies of 5 s: a gap is given 4 x 5 s
    for _ in range(40):
        c._observe_reply_time(15.0)  # noqa: SLF001 - timeouts count as what they waited
    assert c.gap_wait() == c.gap_sync_max_delay == 30.0
    for _ in range(60):
        c._observe_reply_time(0.05)  # noqa: SLF001
    assert c.gap_wait() == 3.0  # and back once it is fast again
