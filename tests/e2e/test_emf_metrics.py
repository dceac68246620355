"""Business metrics reach the functions' stdout as CloudWatch EMF lines, one per invocation.

The local stack's workers print what a Lambda prints; tests/conftest.py
drains it into ``<state dir>/stack.log`` (copied to test-artifacts/ at the
end). On AWS the same lines land in CloudWatch Logs, which extracts them.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests

from chatsdk import dev_token_grant

from .client import ActionError, token_for

pytestmark = pytest.mark.e2e

WAIT_S = 20


class StackLog:
    """The EMF documents the stack's functions printed after this point."""

    def __init__(self, stack) -> None:
        if stack.state_dir is None:
            pytest.skip("reads the local stack's log")
        self.path = stack.state_dir / "stack.log"
        self.offset = self.path.stat().st_size

    def docs(self) -> list[dict]:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        out = []
        for raw in data.splitlines():
            if b'"_aws"' not in raw:
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue  # a line still being written
            if isinstance(doc, dict) and "_aws" in doc:
                out.append(doc)
        return out

    async def wait_for(self, pred) -> dict:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for doc in self.docs():
                if pred(doc):
                    return doc
            await asyncio.sleep(0.2)
        raise AssertionError(f"no matching EMF line; seen: {self.docs()[-10:]}")


async def test_a_send_is_one_emf_line_counting_the_message_and_its_deliveries(stack, sessions):
    log = StackLog(stack)
    alice = await sessions("alice@acme.example")
    bob1, bob2 = await sessions("bob@acme.example"), await sessions("bob@acme.example")
    bob = dev_token_grant(stack.origin, "bob@acme.example").sub
    conv = (await alice.call("conversation.create", kind="group", members=[bob], name="metrics"))["conversation"]
    await alice.call("message.send", conversationId=conv["conversationId"], clientMessageId="m1", body="counted")
    await bob1.event("message.created", message__conversationId=conv["conversationId"])
    await bob2.event("message.created", message__conversationId=conv["conversationId"])

    doc = await log.wait_for(lambda d: d.get("MessagesSent") == 1)
    assert doc["function"] == "websocket_message" and doc["stage"] == "dev"
    # the ack to alice and the event to bob's two devices: summed in the same line, not a line per post
    assert doc["DeliveriesPosted"] >= 3
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "EnterpriseChat" and directive["Dimensions"] == [["stage", "function"]]
    assert {"Name": "MessagesSent", "Unit": "Count"} in directive["Metrics"]
    assert not any(k in doc for k in ("tenantId", "userId", "conversationId", "connectionId"))
    # a retry with the same clientMessageId stores nothing and counts nothing
    before = len([d for d in log.docs() if "MessagesSent" in d])
    res = await alice.call("message.send", conversationId=conv["conversationId"], clientMessageId="m1", body="counted")
    assert res["duplicate"] is True
    await alice.raw("ping")
    await asyncio.sleep(0.5)
    assert len([d for d in log.docs() if "MessagesSent" in d]) == before


async def test_refusals_are_counted_by_code_on_both_apis(stack, sessions):
    log = StackLog(stack)
    carol = await sessions("carol@acme.example")
    with pytest.raises(ActionError) as err:
        await carol.call("history", conversationId="c-does-not-exist")
    assert err.value.code == "not_found"
    doc = await log.wait_for(lambda d: d.get("code") == "not_found" and d["function"] == "websocket_message")
    assert doc["Refusals"] == 1
    assert ["stage", "function", "code"] in doc["_aws"]["CloudWatchMetrics"][-1]["Dimensions"]

    r = requests.get(f"{stack.origin}/conversations?limit=0",
                     headers={"Authorization": f"Bearer {token_for(stack, 'carol@acme.example')}"}, timeout=10)
    assert r.status_code == 400
    doc = await log.wait_for(lambda d: d.get("code") == "validation_failed" and d["function"] == "api_handler")
    assert doc["Refusals"] == 1


async def test_a_clean_upload_is_counted_by_the_scanning_function(stack, tmp_path):
    from chatsdk import ChatClient

    log = StackLog(stack)
    path = tmp_path / "counted.txt"
    path.write_bytes(b"nothing to see here\n" * 10)
    async with ChatClient(stack.origin, email="dave@acme.example", ws_url=stack.ws) as dave:
        carol = dev_token_grant(stack.origin, "carol@acme.example").sub
        conv = (await dave.call("conversation.create", kind="direct", members=[carol]))["conversation"]
        record = await dave.upload_file(conv["conversationId"], path, content_type="text/plain", wait=True)
    assert record["status"] == "clean"
    doc = await log.wait_for(lambda d: d.get("FilesClean") == 1)
    assert doc["function"] == "file_uploaded" and doc["DeliveriesPosted"] >= 1
