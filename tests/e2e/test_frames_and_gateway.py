"""Protocol core and the local gateway's AWS behaviour, over real sockets."""
from __future__ import annotations

import asyncio
import json
import time

import boto3
import jsonschema
import pytest
import requests
import websockets

from chalicelib.models import Connection, User
from chalicelib.protocol import schemas

from .client import connect, recv_json, request

pytestmark = pytest.mark.e2e


def _assert_schema(frame: dict) -> None:
    jsonschema.validate(frame, schemas.OUTBOUND[frame["type"]])


def _mgmt():
    return boto3.client("apigatewaymanagementapi", endpoint_url=_mgmt.url, region_name="us-east-1")


@pytest.fixture
def mgmt(stack):
    _mgmt.url = stack.management
    return _mgmt()


async def _wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.1)
    return False


def _connection_ids(email: str) -> set[str]:
    user = User.find_by_email(email)
    return {c.connection_id for c in Connection.of_user(user.tenant_id, user.user_id)}


async def _connect_with_id(stack, email: str):
    """Open a socket and find its connection id by the record $connect wrote (Query by user)."""
    before = _connection_ids(email)
    ws = await connect(stack, email=email)
    new = _connection_ids(email) - before
    assert len(new) == 1, "expected exactly one new connection record after $connect"
    return ws, new.pop()


BAD_FRAMES = {
    "not json": ("hello", "invalid_json", None),
    "json but not object": ("[1,2,3]", "invalid_frame", None),
    "json string": ('"ping"', "invalid_frame", None),
    "NaN constant": ('{"action":"ping","requestId":"n","x":NaN}', "invalid_json", None),
    "unknown action": ({"action": "launch.missiles", "requestId": "u1"}, "unknown_action", "u1"),
    "missing action": ({"requestId": "m1"}, "validation_failed", "m1"),
    "missing requestId": ({"action": "ping"}, "validation_failed", None),
    "action wrong type": ({"action": 42, "requestId": "t1"}, "validation_failed", "t1"),
    "requestId wrong type": ({"action": "ping", "requestId": 7}, "validation_failed", None),
    "extra field": ({"action": "ping", "requestId": "e1", "surprise": True}, "validation_failed", "e1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_bad_frame_gets_structured_error(stack, case):
    raw, code, rid = BAD_FRAMES[case]
    ws = await connect(stack, email="carol@acme.example")
    try:
        await ws.send(raw if isinstance(raw, str) else json.dumps(raw))
        reply = await recv_json(ws)
        _assert_schema(reply)
        assert reply["type"] == "error"
        assert reply["error"]["code"] == code, reply
        assert reply["requestId"] == rid
        assert "Traceback" not in json.dumps(reply)
        # The connection survives a bad frame.
        assert (await request(ws, {"action": "ping", "requestId": "after"}))["type"] == "pong"
    finally:
        await ws.close()


async def test_deeply_nested_small_frame_is_invalid_json(stack):
    ws = await connect(stack, email="carol@acme.example")
    try:
        await ws.send("[" * 5000 + "]" * 5000)
        reply = await recv_json(ws)
        assert reply["error"]["code"] == "invalid_json"
    finally:
        await ws.close()


async def test_binary_frame_is_refused_with_error(stack):
    ws = await connect(stack, email="carol@acme.example")
    try:
        await ws.send(b"\x00\x01binary")
        reply = await recv_json(ws)
        assert reply["error"]["code"] == "invalid_frame"
    finally:
        await ws.close()


async def test_frame_over_app_limit_gets_payload_too_large(stack):
    ws = await connect(stack, email="carol@acme.example")
    try:
        big = json.dumps({"action": "ping", "requestId": "big", "pad": "x" * 100_000})
        await ws.send(big)
        reply = await recv_json(ws)
        assert reply["error"]["code"] == "payload_too_large"
        assert reply["error"]["limit"] == 64 * 1024
    finally:
        await ws.close()


async def test_frame_over_gateway_limit_closes_with_1009(stack):
    ws = await connect(stack, email="carol@acme.example")
    await ws.send("x" * (128 * 1024 + 1))
    with pytest.raises(websockets.ConnectionClosed) as info:
        await recv_json(ws)
    assert info.value.rcvd.code == 1009


async def test_pong_matches_schema(stack):
    ws = await connect(stack, email="dave@acme.example")
    try:
        reply = await request(ws, {"action": "ping", "requestId": "s1"})
        _assert_schema(reply)
    finally:
        await ws.close()


async def test_management_api_post_get_delete_and_gone(stack, mgmt):
    ws, cid = await _connect_with_id(stack, "dave@acme.example")
    try:
        record = Connection.get(cid)
        assert (record.tenant_id, record.email) == ("acme", "dave@acme.example")
        assert record.expires_at > record.connected_at
        await asyncio.to_thread(mgmt.post_to_connection, ConnectionId=cid, Data=b'{"type":"hello"}')
        assert await recv_json(ws) == {"type": "hello"}
        info = await asyncio.to_thread(mgmt.get_connection, ConnectionId=cid)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        await asyncio.to_thread(mgmt.delete_connection, ConnectionId=cid)
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(ws)
        # $disconnect ran: the record is gone, and the id now answers 410 Gone.
        assert await _wait_until(lambda: Connection.find(cid) is None)
        with pytest.raises(mgmt.exceptions.GoneException):
            await asyncio.to_thread(mgmt.post_to_connection, ConnectionId=cid, Data=b"late")
    finally:
        await ws.close()


def test_management_api_unknown_id_is_410_gone_header(stack):
    resp = requests.post(f"{stack.management}/@connections/bm9wZQ%3D%3D", data=b"x", timeout=10,
                         headers={"Authorization": "AWS4-HMAC-SHA256 Credential=local"})
    assert resp.status_code == 410
    assert resp.headers["x-amzn-ErrorType"] == "GoneException"


def test_management_api_requires_signature(stack):
    resp = requests.post(f"{stack.management}/@connections/abc", data=b"x", timeout=10)
    assert resp.status_code == 403


async def test_record_removed_on_clean_close(stack):
    ws, cid = await _connect_with_id(stack, "bob@acme.example")
    await ws.close()
    assert await _wait_until(lambda: Connection.find(cid) is None)


async def test_record_removed_on_abrupt_client_death(stack):
    ws, cid = await _connect_with_id(stack, "ivy@globex.example")
    ws.transport.abort()  # TCP reset, no close frame
    assert await _wait_until(lambda: Connection.find(cid) is None)


async def test_idle_timeout_closes_with_1001_and_cleans_up(stack):
    limits = requests.get(f"{stack.origin}/dev/stack/limits", timeout=10).json()
    requests.put(f"{stack.origin}/dev/stack/limits", json={"idle_timeout_s": 1.0}, timeout=10)
    try:
        ws, cid = await _connect_with_id(stack, "hank@globex.example")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv_json(ws, timeout=15)
        assert info.value.rcvd.code == 1001
        assert await _wait_until(lambda: Connection.find(cid) is None)
    finally:
        requests.put(f"{stack.origin}/dev/stack/limits", json=limits, timeout=10)


async def test_many_clients_are_served_concurrently(stack):
    sockets = await asyncio.gather(*[connect(stack, email="alice@acme.example") for _ in range(10)])
    try:
        replies = await asyncio.gather(*[
            request(ws, {"action": "ping", "requestId": f"c{i}"}) for i, ws in enumerate(sockets)])
        assert [r["requestId"] for r in replies] == [f"c{i}" for i in range(10)]
    finally:
        await asyncio.gather(*[ws.close() for ws in sockets])


def test_rest_health_and_unknown_route(stack):
    assert requests.get(f"{stack.origin}/health", timeout=10).json() == {"status": "ok"}
    resp = requests.get(f"{stack.origin}/no/such/route", timeout=10)
    assert resp.status_code == 403  # API Gateway's "Missing Authentication Token"
