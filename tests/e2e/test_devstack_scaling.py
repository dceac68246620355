"""The local stack's benchmark aids on the running stack: virtual connections opened with a real
token are registered by the app's own $connect, receive its real fan-out, and count arrivals;
the SQS event sources report their counters (docs/local-stack.md)."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import requests

from chalicelib.models import User

from .client import Session

pytestmark = pytest.mark.e2e


async def test_virtual_devices_opened_with_a_token_receive_the_apps_deliveries(stack):
    if stack.state_dir is None:
        pytest.skip("local stack only")
    base = f"{stack.origin}/dev/stack/virtual-connections"
    token = requests.post(f"{stack.origin}/dev/idp/token", json={"email": "ivy@globex.example"},
                          timeout=10).json()["access_token"]
    refused = requests.post(base, json={"count": 2, "token": "not-a-jwt"}, timeout=30).json()
    assert refused == {"connectionIds": [], "refused": 2}
    opened = requests.post(base, json={"count": 3, "token": token, "device": "bench",
                                       "latencyMs": {"dist": "uniform", "low": 2, "high": 20}}, timeout=60).json()
    if opened["refused"]:  # leave no device of ivy's open for the tests after this one
        requests.delete(base, timeout=60)
    # three first connections of one user at once: none is taken for a full device set
    assert opened["refused"] == 0 and len(opened["connectionIds"]) == 3
    gina = await Session.open(stack, "gina@globex.example")
    try:
        ivy = User.find_by_email("ivy@globex.example").user_id
        conv = (await gina.call("conversation.create", kind="direct", members=[ivy]))["conversation"]["conversationId"]
        sent = await gina.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex,
                               body="to every virtual device")
        seq = sent["message"]["seq"]
        deadline = time.monotonic() + 20
        while True:
            got = requests.get(f"{base}/arrivals", params={"type": "message.created", "conversationId": conv,
                                                          "seq": seq}, timeout=10).json()
            if got["distinct"] >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert got["distinct"] == 3 and got["count"] >= 3 and got["firstAt"] <= got["lastAt"]
        metrics = requests.get(f"{stack.origin}/dev/stack/metrics", timeout=10).json()
        assert metrics["virtual_connections"] >= 3
        sources = {s["function"]: s for s in metrics["event_sources"].values()}
        assert "presence_flush" in sources and sources["presence_flush"]["lanes"] >= 1
    finally:
        await gina.close()
        removed = requests.delete(base, timeout=60).json()
    assert removed["disconnected"] == 3
