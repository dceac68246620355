"""The local stack's SQS (moto) must hand out messages at a cost that does not grow with the
queue: moto 5.2.5 recomputes every queue attribute (each an O(queue) count) per received
message, so a presence queue holding a thousand delayed idle wake-ups delivered a few
messages a second and due publications waited behind it (bench/presence_cost.py's storm).
``devstack.sqs_receive`` reads the one attribute it needs instead."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.sqs import models

from devstack import sqs_receive


@pytest.fixture
def sqs():
    sqs_receive.apply()
    with mock_aws():  # narrow test of moto itself (the local stack's SQS), not of the app
        yield boto3.client("sqs", region_name="us-east-1")


def test_a_receive_does_not_recount_the_queue_per_message(sqs, monkeypatch):
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for _ in range(50):
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    for _ in range(10):
        sqs.send_message(QueueUrl=url, MessageBody="now")
    reads = []
    real = models.Queue.attributes
    monkeypatch.setattr(models.Queue, "attributes", property(lambda q: reads.append(1) or real.fget(q)))
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["now"] * 10
    assert reads == []


def test_retention_is_still_honoured(sqs, monkeypatch):
    url = sqs.create_queue(QueueName="r", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    monkeypatch.setattr(sqs_receive, "unix_time", lambda: models.unix_time() + 61)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    monkeypatch.setattr(sqs_receive, "unix_time", models.unix_time)
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["fresh"]
