"""Retention and legal hold as pure logic, with an injected clock: which period applies, when a
message expires, what a hold keeps, how history renders the gaps, and the S3 lifecycle rules."""
from __future__ import annotations

import pytest

from chalicelib import retention
from chalicelib.retention import Decision, decide

DAY = 86400
T0_MS = 1_700_000_000_000  # the injected "now" of the writes


class Clock:
    """An injectable clock (seconds), advanced by the test."""

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms / 1000

    def __call__(self) -> float:
        return self.now

    def advance(self, days: float) -> None:
        self.now += days * DAY


class Store:
    """Just enough of a DynamoDB table with TTL: items by seq, a reaper deleting what is due."""

    def __init__(self) -> None:
        self.items: dict[int, dict] = {}

    def write(self, seq: int, sender: str, conv: str, rules: dict, clock: Clock) -> dict:
        created = int(clock() * 1000)
        attrs = decide(rules, sender, conv, DAY).attributes(sender, created)
        self.items[seq] = {"seq": seq, "sender": sender, "created_at": created, **attrs}
        return self.items[seq]

    def reap(self, clock: Clock) -> list[int]:
        due = [s for s, it in self.items.items() if it.get("expires_at") is not None and it["expires_at"] <= clock()]
        for s in due:
            del self.items[s]
        return due

    def reconcile(self, rules: dict, conv: str) -> None:
        """What a hold sweep does to each item under retention: expiry as the holds say now."""
        for it in self.items.values():
            if it.get("retain_s") is None:
                continue
            if decide(rules, it["sender"], conv, DAY).held:
                it.pop("expires_at", None)
            else:
                it["expires_at"] = retention.expiry(it["created_at"], it["retain_s"])


def test_sender_company_default_and_its_own_override():
    rules = {"tenant#acme": {"days": 30}, "tenant#globex": {"days": 7},
             "conv#acme#c1": {"days": 365}}
    acme = decide(rules, "acme#alice", "c1", DAY)
    assert acme == Decision(retain_s=365 * DAY, held=False)
    assert acme.expires_at(T0_MS) == T0_MS // 1000 + 365 * DAY
    # the other company in the same (shared) conversation keeps its own default: acme's override is acme's
    assert decide(rules, "globex#gina", "c1", DAY).retain_s == 7 * DAY
    # elsewhere acme's default applies
    assert decide(rules, "acme#alice", "c2", DAY).retain_s == 30 * DAY


def test_override_to_keep_forever_and_no_retention_at_all():
    rules = {"tenant#acme": {"days": 30}, "conv#acme#c1": {"days": None}}
    forever = decide(rules, "acme#bob", "c1", DAY)
    assert forever.retain_s is None and forever.expires_at(T0_MS) is None
    assert forever.attributes("acme#bob", T0_MS) == {}  # not in the sparse index either
    assert decide({}, "acme#bob", "c1", DAY).attributes("acme#bob", T0_MS) == {}


def test_holds_keep_only_what_they_cover():
    rules = {"tenant#acme": {"days": 1}, "tenant#globex": {"days": 1},
             "hold#user#acme#bob": {"holds": {"h1"}}, "hold#conv#globex#c1": {"holds": {"h2"}}}
    held = decide(rules, "acme#bob", "c9", DAY)
    assert held.held and held.expires_at(T0_MS) is None
    # retain_s and the index key stay, so a release can put the expiry back
    assert held.attributes("acme#bob", T0_MS) == {"retain_s": DAY, "retained_sender": "acme#bob"}
    assert not decide(rules, "acme#alice", "c9", DAY).held
    # globex's conversation hold covers globex's members' messages in c1, not acme's
    assert decide(rules, "globex#gina", "c1", DAY).held
    assert not decide(rules, "acme#alice", "c1", DAY).held
    # a released hold leaves an item without ids: not held
    assert not decide({"tenant#acme": {"days": 1}, "hold#user#acme#bob": {"holds": None}}, "acme#bob", "c", DAY).held


def test_expiry_with_injected_clock_hold_and_release():
    clock = Clock(T0_MS)
    store = Store()
    rules = {"tenant#acme": {"days": 30}, "hold#user#acme#carol": {"holds": {"h1"}}}
    store.write(1, "acme#alice", "c1", rules, clock)
    store.write(2, "acme#carol", "c1", rules, clock)  # held at write time: no expiry
    clock.advance(10)
    rules["tenant#acme"] = {"days": 1}  # a change applies to new messages only
    store.write(3, "acme#bob", "c1", rules, clock)
    clock.advance(1)
    assert store.reap(clock) == [3]  # 1 day after its write
    clock.advance(18.999)
    assert store.reap(clock) == []  # seq 1 is due at exactly 30 days
    clock.advance(0.001)
    assert store.reap(clock) == [1]
    assert sorted(store.items) == [2]  # held, long past its period
    # release: the sweep puts the expiry back from the write time, so it is due at once
    rules["hold#user#acme#carol"] = {"holds": None}
    store.reconcile(rules, "c1")
    assert store.items[2]["expires_at"] == T0_MS // 1000 + 30 * DAY <= clock()
    assert store.reap(clock) == [2]


def test_hold_placed_after_the_write_takes_the_expiry_off():
    clock = Clock(T0_MS)
    store = Store()
    rules = {"tenant#acme": {"days": 7}}
    store.write(1, "acme#alice", "c1", rules, clock)
    store.write(2, "acme#bob", "c1", rules, clock)
    rules["hold#conv#acme#c1"] = {"holds": {"h1"}}
    store.reconcile(rules, "c1")
    clock.advance(100)
    assert store.reap(clock) == [] and sorted(store.items) == [1, 2]


def test_missing_seqs_are_the_tombstones():
    assert retention.missing_seqs([5, 3, 1], 1, 6) == [2, 4, 6]
    assert retention.missing_seqs([], 3, 2) == []


def test_history_window_renders_gaps_as_retention_tombstones():
    from chalicelib.models import Message
    from chalicelib.services.messages import _with_tombstones

    page = [Message(conversation_id="c", seq=s, message_id=f"m{s}", client_message_id="x", sender_key="acme#a",
                    body=f"b{s}", created_at=T0_MS + s, reactions={}) for s in (7, 5)]
    views = sorted(_with_tombstones("c", page, 3, 8, cut=False), key=lambda v: v["seq"])
    assert [(v["seq"], v.get("reason")) for v in views] == [(3, "retention"), (4, "retention"), (5, None),
                                                            (6, "retention"), (7, None), (8, "retention")]
    assert views[0] == {"conversationId": "c", "seq": 3, "deleted": True, "reason": "retention"}
    # behind a read cutoff, nothing above the newest visible message is claimed to be gone
    cut = sorted(v["seq"] for v in _with_tombstones("c", page, 3, 8, cut=True))
    assert cut == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("retain_days,held,tag", [(30, False, "30d"), (30, True, "hold"), (None, False, None),
                                                  (13, False, "hold")])
def test_file_tags(retain_days, held, tag):
    retain_s = retain_days * DAY if retain_days else None
    assert retention.file_tag(retain_s, held, DAY) == tag


def test_lifecycle_rules_one_per_period_and_none_for_hold():
    rules = retention.lifecycle_rules()
    assert [r["ExpirationInDays"] for r in rules] == list(retention.ALLOWED_DAYS)
    values = {f["Value"] for r in rules for f in r["TagFilters"]}
    assert retention.HOLD_TAG not in values
    for r in rules:
        assert r["TagFilters"] == [{"Key": "retention", "Value": f"{r['ExpirationInDays']}d"}]
        assert r["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}  # versioned bucket: the data goes too


def test_rendered_bucket_carries_the_retention_and_export_rules():
    from tools import render_infra

    res = render_infra.render_resources("dev")["Resources"]
    rules = {r["Id"]: r for r in res["FilesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    for days in retention.ALLOWED_DAYS:
        assert rules[f"retention-{days}d"]["TagFilters"] == [{"Key": "retention", "Value": f"{days}d"}]
    assert rules["exports-expiry"]["Prefix"] == "exports/"
    msgs = res["MessageTable"]["Properties"]
    assert msgs["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    index = {ix["IndexName"]: ix for ix in msgs["GlobalSecondaryIndexes"]}["by_retained_sender"]
    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["retain_s"]}
    actions = {a for fn in render_infra.stage("dev").function_names
               for st in render_infra.render_function_policy("dev", fn)["Statement"] for a in st["Action"]}
    assert {"s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:AbortMultipartUpload"} <= actions
    assert "dynamodb:Scan" not in actions
