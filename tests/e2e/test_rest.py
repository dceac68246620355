"""REST for offline/mobile clients: same token, same services, same errors, described by OpenAPI."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio
import requests

from chalicelib.models import User

from .client import Session, token_for

pytestmark = pytest.mark.e2e

OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())


def _schema(name: str) -> dict:
    return {**OPENAPI["components"]["schemas"][name], "$defs": {}}


def _check(resp: requests.Response, status: int, schema: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    jsonschema.validate(body, _schema(schema))
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def conv(stack):
    """A group of alice and bob, created over the socket."""
    s = await Session.open(stack, "alice@acme.example")
    try:
        res = await s.call("conversation.create", kind="group",
                           members=[User.find_by_email("bob@acme.example").user_id])
        return res["conversation"]["conversationId"]
    finally:
        await s.close()


def _auth(stack, email: str) -> dict:
    return {"Authorization": f"Bearer {token_for(stack, email)}"}


def test_send_history_inbox_read_over_rest(stack, conv):
    alice, bob = _auth(stack, "alice@acme.example"), _auth(stack, "bob@acme.example")
    url = f"{stack.origin}/conversations/{conv}/messages"
    key = uuid.uuid4().hex
    sent = _check(requests.post(url, json={"clientMessageId": key, "body": "from REST"}, headers=alice,
                                timeout=10), 201, "Sent")
    again = _check(requests.post(url, json={"clientMessageId": key, "body": "from REST"}, headers=alice,
                                 timeout=10), 201, "Sent")
    assert again["duplicate"] and again["message"]["seq"] == sent["message"]["seq"]
    hist = _check(requests.get(url, params={"limit": 5}, headers=bob, timeout=10), 200, "History")
    assert hist["messages"][0]["body"] == "from REST"
    inbox = _check(requests.get(f"{stack.origin}/conversations", headers=bob, timeout=10), 200, "Inbox")
    entry = next(c for c in inbox["conversations"] if c["conversationId"] == conv)
    assert entry["unread"] >= 1
    marker = _check(requests.post(f"{stack.origin}/conversations/{conv}/read",
                                  json={"seq": sent["message"]["seq"]}, headers=bob, timeout=10), 200, "ReadMarker")
    assert marker["unread"] == 0
    one = _check(requests.get(f"{stack.origin}/conversations/{conv}", headers=bob, timeout=10),
                 200, "ConversationResult")
    assert one["conversation"]["conversationId"] == conv


@pytest.mark.parametrize("headers,status,code", [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer garbage"}, 401, "unauthorized"),
    ({"Authorization": "Basic Zm9vOmJhcg=="}, 401, "unauthorized"),
])
def test_rest_requires_a_valid_bearer_token(stack, conv, headers, status, code):
    resp = requests.get(f"{stack.origin}/conversations/{conv}/messages", headers=headers, timeout=10)
    body = _check(resp, status, "Error")
    assert body["error"]["code"] == code
    assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("email", ["hank@globex.example", "dave@acme.example"])
def test_rest_other_tenant_and_non_member_get_not_found(stack, conv, email):
    headers = _auth(stack, email)
    for method, path, body in [("GET", "/messages", None), ("POST", "/messages", {"clientMessageId": "x", "body": "y"}),
                               ("GET", "", None), ("POST", "/read", {"seq": 1})]:
        resp = requests.request(method, f"{stack.origin}/conversations/{conv}{path}", json=body, headers=headers,
                                timeout=10)
        assert _check(resp, 404, "Error")["error"]["code"] == "not_found", (method, path)
    inbox = requests.get(f"{stack.origin}/conversations", headers=headers, timeout=10).json()
    assert conv not in [c["conversationId"] for c in inbox["conversations"]]


@pytest.mark.parametrize("raw,code", [
    ("not json", "invalid_json"),
    ("[1]", "validation_failed"),
    ('{"clientMessageId": "k"}', "validation_failed"),
    ('{"clientMessageId": "k", "body": "x", "surprise": 1}', "validation_failed"),
])
def test_rest_malformed_bodies(stack, conv, raw, code):
    headers = {**_auth(stack, "alice@acme.example"), "Content-Type": "application/json"}
    before = requests.get(f"{stack.origin}/conversations/{conv}/messages", headers=headers, timeout=10).json()
    resp = requests.post(f"{stack.origin}/conversations/{conv}/messages", data=raw, headers=headers, timeout=10)
    assert _check(resp, 400, "Error")["error"]["code"] == code
    after = requests.get(f"{stack.origin}/conversations/{conv}/messages", headers=headers, timeout=10).json()
    assert after == before


@pytest.mark.parametrize("length", [9000, 70_000])
def test_rest_body_over_its_byte_limit_is_413(stack, conv, length):
    """Same code as over WebSocket (protocol.md's error table): payload_too_large, 413, `limit` in bytes --
    also past the 64 KB a WebSocket frame may carry, where a schema maxLength would have said 400."""
    headers = _auth(stack, "alice@acme.example")
    url = f"{stack.origin}/conversations/{conv}/messages"
    before = requests.get(url, headers=headers, timeout=10).json()
    resp = requests.post(url, json={"clientMessageId": f"big-{length}", "body": "x" * length}, headers=headers,
                         timeout=10)
    err = _check(resp, 413, "Error")["error"]
    assert err["code"] == "payload_too_large" and err["limit"] == 8 * 1024
    assert requests.get(url, headers=headers, timeout=10).json() == before


def test_rest_bad_query_parameters(stack, conv):
    headers = _auth(stack, "alice@acme.example")
    for params in ({"limit": "lots"}, {"limit": 0}, {"limit": 1000}, {"sneaky": 1}):
        resp = requests.get(f"{stack.origin}/conversations/{conv}/messages", params=params, headers=headers,
                            timeout=10)
        assert _check(resp, 400, "Error")["error"]["code"] == "validation_failed", params


@pytest.mark.parametrize("path", ["/conversations/%0A/messages", "/admin/holds/%0A/release", "/files/a%0Ab/download"])
def test_encoded_control_characters_in_a_path_get_a_json_error(stack, path):
    """API Gateway routes any byte of a path parameter to the app; the answer is our JSON error."""
    method = "POST" if path.endswith("release") else "GET"
    resp = requests.request(method, f"{stack.origin}{path}", headers=_auth(stack, "alice@acme.example"), timeout=15)
    assert 400 <= resp.status_code < 500 and resp.headers["Content-Type"].startswith("application/json"), resp.text
    assert resp.json()["error"]["code"] in ("validation_failed", "not_found")
