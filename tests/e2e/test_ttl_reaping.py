"""Why the local stack reaps expired items itself, and that it deletes exactly the expired ones.

Runs its own DynamoDB Local (no reaper) with the messages table exactly as
infra/ deploys it (two sparse indexes).  DynamoDB Local 1.25.1 stops
expiring a table for good once its TTL pass meets an expired item that is
missing from one of the table's indexes (a top-level message is not in
``by_thread``), while other tables go on; ``devstack.ttl_reaper`` therefore
plays AWS's TTL for tables with indexes.  If a newer emulator expires such a
table itself, the first test fails: then the reaper can go.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from devstack.dynamodb_local import DynamoDBLocal
from devstack.ttl_reaper import FIVE_YEARS_S, TtlReaper

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INFRA = Path(__file__).resolve().parents[2] / "infra" / "resources-dev.json"


@pytest.fixture(scope="module")
def ddb():
    local = DynamoDBLocal()
    try:
        local.start()
    except RuntimeError as exc:
        pytest.skip(f"DynamoDB Local unavailable: {exc}")
    yield boto3.client("dynamodb", endpoint_url=local.endpoint, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    local.stop()


def _messages_table(client, name: str) -> str:
    """The messages table exactly as infra/ deploys it (keys, both sparse indexes, TTL), named ``name``."""
    props = json.loads(INFRA.read_text())["Resources"]["MessageTable"]["Properties"]
    client.create_table(TableName=name, **{k: props[k] for k in ("BillingMode", "AttributeDefinitions",
                                                                 "KeySchema", "GlobalSecondaryIndexes")})
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return name


def _plain_table(client, name: str) -> str:
    """A table without indexes, whose expired items DynamoDB Local deletes: proof that a TTL pass ran."""
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"AttributeName": "expires_at",
                                                                         "Enabled": True})
    return name


def _message(conv: str, seq: int, expires_at: int, reply_to: int | None = None) -> dict:
    """An item as timeline.append writes it for a sender under retention."""
    item = {"conversation_id": {"S": conv}, "seq": {"N": str(seq)}, "created_at": {"N": "1"},
            "sender_key": {"S": "acme#u1"}, "retained_sender": {"S": "acme#u1"}, "retain_s": {"N": "1"},
            "expires_at": {"N": str(expires_at)}, "body": {"S": f"message {seq}"}}
    if reply_to is not None:
        item["thread_key"] = {"S": f"{conv}#{reply_to}"}
        item["thread_root_seq"] = {"N": str(reply_to)}
    return item


def _exists(client, table: str, conv: str, seq: int) -> bool:
    key = {"conversation_id": {"S": conv}, "seq": {"N": str(seq)}}
    return "Item" in client.get_item(TableName=table, Key=key, ConsistentRead=True)


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def test_dynamodb_local_stops_expiring_the_messages_table(ddb):
    table, plain = _messages_table(ddb, "messages-a"), _plain_table(ddb, "plain-a")
    soon = int(time.time()) + 1
    ddb.put_item(TableName=table, Item=_message("c1", 1, soon))               # not in by_thread
    ddb.put_item(TableName=table, Item=_message("c1", 2, soon, reply_to=1))   # in both indexes
    ddb.put_item(TableName=plain, Item={"k": {"S": "control"}, "expires_at": {"N": str(soon)}})
    control = {"TableName": plain, "Key": {"k": {"S": "control"}}, "ConsistentRead": True}
    assert _wait(lambda: "Item" not in ddb.get_item(**control), 60), "DynamoDB Local ran no TTL pass"
    time.sleep(2)
    # Expired, and a pass has run: the emulator deleted neither (if it now does, drop the reaper) ...
    assert _exists(ddb, table, "c1", 1) and _exists(ddb, table, "c1", 2)
    # ... and does not recover when the item it choked on is gone: a new reply stays too.
    ddb.delete_item(TableName=table, Key={"conversation_id": {"S": "c1"}, "seq": {"N": "1"}})
    again = int(time.time()) + 1
    ddb.put_item(TableName=table, Item=_message("c1", 3, again, reply_to=2))
    ddb.put_item(TableName=plain, Item={"k": {"S": "control"}, "expires_at": {"N": str(again)}})
    assert _wait(lambda: "Item" not in ddb.get_item(**control), 60), "DynamoDB Local ran no TTL pass"
    time.sleep(2)
    assert _exists(ddb, table, "c1", 2) and _exists(ddb, table, "c1", 3)
    assert TtlReaper(ddb).reap_once() == 2
    assert not _exists(ddb, table, "c1", 2) and not _exists(ddb, table, "c1", 3)


def test_the_reaper_deletes_expired_items_and_nothing_else(ddb):
    table = _messages_table(ddb, "messages-b")
    now = int(time.time())
    ddb.put_item(TableName=table, Item=_message("c2", 1, now - 10))                  # expired, top level
    ddb.put_item(TableName=table, Item=_message("c2", 2, now + 3600))                # not yet due
    ddb.put_item(TableName=table, Item=_message("c2", 3, now - FIVE_YEARS_S - 10))   # AWS ignores these
    ddb.put_item(TableName=table, Item={**_message("c2", 4, now - 10), "expires_at": {"S": "soon"}})
    ddb.put_item(TableName=table, Item=_message("c2", 5, now + 3600, reply_to=2))    # a reply, not yet due
    ddb.put_item(TableName=table, Item=_message("c2", 6, now - 10, reply_to=2))      # a reply, expired
    plain = _plain_table(ddb, "plain-b")  # no index: the emulator's own TTL works there
    reaper = TtlReaper(ddb)
    assert table in reaper.tables() and plain not in reaper.tables()
    assert reaper.tables()[table] == ("expires_at", ["conversation_id", "seq"])
    assert reaper.reap_once() == 2
    assert [_exists(ddb, table, "c2", s) for s in range(1, 7)] == [False, True, True, True, True, False]
    assert reaper.reap_once() == 0
