"""The local stack's check of each function's IAM policy (devstack/iam.py): what a call asks IAM for,
and how a generated policy answers."""
from __future__ import annotations

import pytest

from devstack import iam

T = "arn:aws:dynamodb:us-east-1:000000000000:table/"


def test_a_transaction_is_authorized_item_by_item():
    params = {"TransactItems": [{"Put": {"TableName": "m"}}, {"Update": {"TableName": "c"}},
                                {"ConditionCheck": {"TableName": "u"}}, {"Delete": {"TableName": "i"}}]}
    assert list(iam.requests_of("dynamodb", "TransactWriteItems", params)) == [
        ("dynamodb:PutItem", T + "m"), ("dynamodb:UpdateItem", T + "c"),
        ("dynamodb:ConditionCheckItem", T + "u"), ("dynamodb:DeleteItem", T + "i")]


def test_batches_indexes_queues_objects_and_connections():
    assert list(iam.requests_of("dynamodb", "BatchWriteItem", {"RequestItems": {"a": [], "b": []}})) == [
        ("dynamodb:BatchWriteItem", T + "a"), ("dynamodb:BatchWriteItem", T + "b")]
    assert list(iam.requests_of("dynamodb", "Query", {"TableName": "m", "IndexName": "by_user"})) == [
        ("dynamodb:Query", T + "m/index/by_user")]
    assert list(iam.requests_of("sqs", "SendMessageBatch", {"QueueUrl": "http://h:1/000000000000/chat-dev-x"})) == [
        ("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:000000000000:chat-dev-x")]
    assert list(iam.requests_of("s3", "GetObject", {"Bucket": "b", "Key": "k", "VersionId": "v"})) == [
        ("s3:GetObjectVersion", "arn:aws:s3:::b/k")]
    assert list(iam.requests_of("s3", "HeadObject", {"Bucket": "b", "Key": "k"})) == [("s3:GetObject", "arn:aws:s3:::b/k")]
    assert list(iam.requests_of("s3", "ListObjectVersions", {"Bucket": "b"})) == [("s3:ListBucketVersions", "arn:aws:s3:::b")]
    (action, arn), = iam.requests_of("apigatewaymanagementapi", "DeleteConnection", {"ConnectionId": "abc="})
    assert action == "execute-api:ManageConnections" and arn.endswith("/DELETE/@connections/abc=")


def test_a_policy_allows_what_it_lists_and_nothing_else(tmp_path, monkeypatch):
    policy = {"Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": ["arn:aws:dynamodb:*:*:table/t"]},
        {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": ["arn:aws:dynamodb:*:*:table/t/index/*"]},
        {"Effect": "Allow", "Action": "execute-api:ManageConnections",
         "Resource": ["arn:aws:execute-api:*:*:*/dev/POST/@connections/*"]},
        {"Effect": "Deny", "Action": ["dynamodb:GetItem"], "Resource": ["arn:aws:dynamodb:*:*:table/secret"]}]}
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "policy-dev-fn.json").write_text(__import__("json").dumps(policy))
    monkeypatch.setattr(iam, "ROOT", tmp_path)
    monkeypatch.setenv("CHAT_STAGE", "dev")
    iam._statements.cache_clear()
    try:
        assert iam.allowed("fn", "dynamodb:GetItem", T + "t")
        assert iam.allowed("fn", "dynamodb:Query", T + "t/index/by_x")
        assert not iam.allowed("fn", "dynamodb:UpdateItem", T + "t")
        assert not iam.allowed("fn", "dynamodb:GetItem", T + "t2")
        assert not iam.allowed("fn", "dynamodb:GetItem", T + "secret")
        assert iam.allowed("fn", "execute-api:ManageConnections",
                           "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/@connections/x=")
        assert not iam.allowed("fn", "execute-api:ManageConnections",
                               "arn:aws:execute-api:us-east-1:000000000000:local/dev/DELETE/@connections/x=")
        assert not iam.allowed("other", "dynamodb:GetItem", T + "t")  # no policy file: nothing
    finally:
        iam._statements.cache_clear()


def test_calls_outside_an_invocation_are_not_checked_and_refusals_name_the_call(monkeypatch):
    monkeypatch.setenv("DEVSTACK_IAM", "enforce")
    iam.set_current(None)
    iam.check("dynamodb", "Scan", {"TableName": "anything"})  # start-up, tests: not a function
    monkeypatch.setattr(iam, "allowed", lambda fn, action, resource: False)
    iam.set_current("deliver")
    try:
        with pytest.raises(iam.AccessDenied, match=r"deliver is not authorized to perform: dynamodb:Scan"):
            iam.check("dynamodb", "Scan", {"TableName": "anything"})
    finally:
        iam.set_current(None)


def test_sns_calls_are_authorized_on_the_application_or_endpoint_arn():
    from devstack.iam import requests_of

    app = "arn:aws:sns:us-east-1:123456789012:app/GCM/enterprise-chat-dev-fcm-com.example.chat"
    endpoint = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/enterprise-chat-dev-fcm-com.example.chat/1"
    assert list(requests_of("sns", "CreatePlatformEndpoint", {"PlatformApplicationArn": app, "Token": "t"})) == [
        ("sns:CreatePlatformEndpoint", app)]
    assert list(requests_of("sns", "Publish", {"TargetArn": endpoint, "Message": "{}"})) == [("sns:Publish", endpoint)]
    assert list(requests_of("sns", "DeleteEndpoint", {"EndpointArn": endpoint})) == [("sns:DeleteEndpoint", endpoint)]
