"""The local stack's counters (GET /dev/stack/metrics, POST /dev/stack/metrics/reset) see real traffic."""
from __future__ import annotations

import boto3
import pytest
import requests

from .client import Session

pytestmark = pytest.mark.e2e


async def test_metrics_count_dynamodb_requests_capacity_and_posts(stack):
    if stack.state_dir is None:
        pytest.skip("local stack only")
    alice = await Session.open(stack, "alice@acme.example")
    mgmt = boto3.client("apigatewaymanagementapi", endpoint_url=stack.management, region_name="us-east-1")
    try:
        conv = (await alice.call("conversation.create", kind="group", name="metered", members=[]))["conversation"]
        requests.post(f"{stack.origin}/dev/stack/metrics/reset", timeout=10).raise_for_status()
        # reads her membership and the conversation (GetItem each), posts the ack
        await alice.call("conversation.get", conversationId=conv["conversationId"])
        with pytest.raises(mgmt.exceptions.GoneException):
            mgmt.post_to_connection(ConnectionId="bm8tc3VjaC1jb25u", Data=b"{}")
        m = requests.get(f"{stack.origin}/dev/stack/metrics", timeout=10).json()
    finally:
        await alice.close()
    # Other sessions' background work (presence flushes) may add to these: lower bounds only.
    get = m["dynamodb"]["operations"]["GetItem"]
    assert get["requests"] >= 2 and get["read_capacity_units"] > 0 and get["response_bytes"] > 0
    posts = m["connections_api"]
    assert posts["by_status"]["200"] >= 1 and posts["by_status"]["410"] >= 1
    assert posts["posts"] >= 2 and posts["bytes"] > 0
    assert m["websockets_open"] >= 1
