"""Blocked attempts and the tenant-only screen (issue #22), with fakes: no network.

``DlpRules.many`` is replaced by a fake store and ``DlpFlag.save`` by a
recorder, so what ``screening.screen`` decides and writes is checked directly.
"""
import json
import logging
from types import SimpleNamespace

import pytest

from chalicelib.auth import Principal
from chalicelib.models import Conversation, DlpFlag, DlpRules
from chalicelib.protocol.errors import MessageBlocked
from chalicelib.services import screening, screening_admin
from chalicelib.services.context import Call

CARD = "4111 1111 1111 1111"
CARDS_BLOCK = {"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card",
               "action": "block"}


@pytest.fixture
def env(monkeypatch):
    rules, fetched, saved = {}, [], []

    def many(tenant_ids):
        fetched.append(list(tenant_ids))
        return {t: DlpRules(tenant_id=t, rules=json.dumps(rules[t]), version=1) for t in tenant_ids if t in rules}

    def save(self, condition=None, **_):
        if getattr(save, "fail", False):
            raise RuntimeError("table unavailable")
        saved.append(self)

    monkeypatch.setattr(DlpRules, "many", classmethod(lambda cls, ids: many(ids)))
    monkeypatch.setattr(DlpFlag, "save", save)
    screening._cache.clear()
    yield SimpleNamespace(rules=rules, fetched=fetched, saved=saved, save=save)
    screening._cache.clear()


def call(tenant="acme", user="alice"):
    return Call(principal=Principal(tenant, user, f"{user}@{tenant}.test"), delivery=None, clock=lambda: 1000.0,
                settings=SimpleNamespace(dlp_cache_seconds=30))


def conv(*tenants, host="acme"):
    return Conversation(conversation_id="c-1", tenant_id=host, tenants=set(tenants) | {host})


def test_block_records_one_entry_for_the_company_whose_block_rule_matched_masked(env):
    env.rules["acme"] = [{"id": "a-cards", "type": "detector", "detector": "payment_card", "action": "flag"}]
    env.rules["globex"] = [CARDS_BLOCK]
    with pytest.raises(MessageBlocked) as err:
        screening.screen(call(), conv("acme", "globex"), f"please charge {CARD} today", "message")
    assert (err.value.fields["side"], err.value.fields["ruleId"]) == ("globex", "cards")
    assert len(env.saved) == 1  # acme only flagged, and nothing was stored: no entry for acme
    f = env.saved[0]
    assert (f.tenant_id, f.action, f.source, f.conversation_id, f.sender_key, f.rule_ids, f.at) == \
        ("globex", "block", "message", "c-1", "acme#alice", ["cards"], 1_000_000)
    assert f.seq is None and f.message_id is None and f.file_id is None
    assert f.flag_id.startswith("0000001000000#")
    assert f.excerpt == "please charge [redacted] today" and "1111" not in f.excerpt


def test_every_blocking_company_gets_its_own_entry_and_the_senders_rule_is_named(env):
    env.rules["acme"] = [{"id": "falcon", "type": "keyword", "keywords": ["falcon"], "action": "block"}]
    env.rules["globex"] = [CARDS_BLOCK]
    with pytest.raises(MessageBlocked) as err:
        screening.screen(call(), conv("acme", "globex"), f"falcon pays with {CARD}", "edit", seq=7,
                         message_id="m-7")
    assert (err.value.fields["side"], err.value.fields["ruleId"]) == ("acme", "falcon")  # the sender's first
    by_tenant = {f.tenant_id: f for f in env.saved}
    assert set(by_tenant) == {"acme", "globex"}
    assert by_tenant["acme"].rule_ids == ["falcon"] and by_tenant["globex"].rule_ids == ["cards"]
    for f in env.saved:
        assert (f.action, f.source, f.seq, f.message_id) == ("block", "edit", 7, "m-7")
        assert "falcon" not in f.excerpt.lower() and "1111" not in f.excerpt
    # each excerpt starts at its own company's first block match, every match masked
    assert by_tenant["acme"].excerpt == "[redacted] pays with [redacted]"


def test_a_failed_record_write_does_not_change_the_refusal(env, caplog):
    env.rules["acme"] = [CARDS_BLOCK]
    env.save.fail = True
    try:
        with caplog.at_level(logging.ERROR, logger="chat.screening"):
            with pytest.raises(MessageBlocked) as err:
                screening.screen(call(), conv("acme"), CARD, "topic")
    finally:
        env.save.fail = False
    assert err.value.to_body() == {"code": "message_blocked", "message": str(err.value), "ruleId": "cards",
                                   "ruleName": "Payment cards", "side": "acme"}
    assert any("screening block not written" in r.getMessage() for r in caplog.records)
    assert CARD not in caplog.text


def test_redact_and_flag_write_nothing_at_screen_time(env):
    env.rules["acme"] = [{"id": "ssn", "type": "detector", "detector": "us_ssn", "action": "redact"},
                         {"id": "falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"}]
    verdict = screening.screen(call(), conv("acme"), "falcon 536-22-8745", "name")
    assert verdict.action == "redact" and verdict.text == "falcon [redacted]" and env.saved == []
    screening.record_flags(call(), verdict, "c-1", "name")
    assert [(f.action, f.source, f.rule_ids) for f in env.saved] == [("redact", "name", ["falcon"])]


def test_unsaved_conversation_is_recorded_without_an_id(env):
    env.rules["acme"] = [CARDS_BLOCK]
    with pytest.raises(MessageBlocked):
        screening.screen(call(), conv("acme"), f"deal {CARD}", "name", exists=False)
    assert env.saved[0].conversation_id is None and env.saved[0].source == "name"


def test_screen_own_applies_the_callers_company_only(env):
    env.rules["acme"] = [{"id": "falcon", "type": "keyword", "keywords": ["falcon"], "action": "block"}]
    env.rules["globex"] = [CARDS_BLOCK]
    assert screening.screen_own(call(), f"card {CARD}", "status").action is None  # globex's rule: not applied
    assert env.fetched == [["acme"]]
    with pytest.raises(MessageBlocked):
        screening.screen_own(call(), "Working on f\u0430lcon", "status")  # Cyrillic а folds to a
    f = env.saved[0]
    assert (f.tenant_id, f.source, f.conversation_id, f.action, f.rule_ids) == \
        ("acme", "status", None, "block", ["falcon"])


def test_flag_view_shows_a_blocked_status_entry(env):
    env.rules["acme"] = [CARDS_BLOCK]
    with pytest.raises(MessageBlocked):
        screening.screen_own(call(), CARD, "status")
    view = screening_admin.flag_view(env.saved[0])
    assert (view["action"], view["source"], view["conversationId"], view["seq"]) == ("block", "status", None, None)
    assert view["sender"] == {"tenantId": "acme", "userId": "alice"} and view["excerpt"] == "[redacted]"


def test_entries_open_in_the_review_queue_with_their_index_keys_and_where_a_block_happened(env):
    env.rules["globex"] = [CARDS_BLOCK]
    c = conv("acme", "globex")
    c.last_seq = 41
    with pytest.raises(MessageBlocked):
        screening.screen(call(), c, f"pay {CARD}", "message")
    [f] = env.saved
    assert (f.state, f.history, f.after_seq, f.kind) == ("open", [], 41, "block")
    assert (f.queue_key, f.conversation_key, f.review_sender) == ("globex#open#block", "globex#c-1",
                                                                  "globex#acme#alice")
    # a refused conversation.create names no conversation: no conversation key, no place
    env.saved.clear()
    with pytest.raises(MessageBlocked):
        screening.screen(call(), c, f"pay {CARD}", "name", exists=False)
    [f] = env.saved
    assert (f.conversation_id, f.conversation_key, f.after_seq) == (None, None, None)


def test_review_item_ids_and_views():
    from chalicelib.services import review

    f = DlpFlag(tenant_id="acme", flag_id="0001700000000#" + "ab" * 16, at=1, source="message",
                sender_key="acme#bob", action="redact")
    assert review.item_id(f.flag_id) == "0001700000000-" + "ab" * 16
    assert review._flag_id(review.item_id(f.flag_id)) == f.flag_id
    view = review._view(f, history=True)
    assert (view["kind"], view["state"], view["history"]) == ("flag", "open", [])  # written before the queue
    assert view["itemId"] == review.item_id(f.flag_id) and view["claimedBy"] is None
