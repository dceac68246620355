"""Virtual connections (devstack/virtual_connections.py, local only): ids the gateway's @connections
API serves without a socket, for benchmarks of more recipients than one machine holds sockets for.
The gateway runs in-process on loopback with a fake Lambda pool; posts go through a real botocore
``apigatewaymanagementapi`` client (SigV4, dummy credentials), as the app's posts do."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import boto3
import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.faults import FAULTS
from devstack.gateway import Gateway, WsLimits
from devstack.virtual_connections import Arrivals, Latency, arrival_key


class FakePool:
    """``$connect`` accepts the token "good" (2xx) and refuses any other (401); every event is kept."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    async def invoke_ws(self, route_key, event):
        self.events.append((route_key, event))
        if route_key == "$connect":
            token = (event.get("queryStringParameters") or {}).get("token")
            return {"statusCode": 200} if token == "good" else {"statusCode": 401, "body": '{"error": {}}'}
        return {"statusCode": 200}

    def routes(self, route_key):
        return [e for r, e in self.events if r == route_key]


@pytest.fixture
async def gw():
    pool = FakePool()
    gateway = Gateway(pool, stage="dev", api_id="local0api", domain_name="127.0.0.1", limits=WsLimits())
    client = TestClient(TestServer(gateway.web_app()))
    await client.start_server()
    mgmt = boto3.client("apigatewaymanagementapi", endpoint_url=str(client.make_url("/dev")),
                        region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(max_pool_connections=32, retries={"total_max_attempts": 1}))
    try:
        yield SimpleNamespace(gateway=gateway, pool=pool, http=client, mgmt=mgmt)
    finally:
        await client.close()


async def create(gw, **spec) -> dict:
    resp = await gw.http.post("/dev/stack/virtual-connections", json=spec)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def get_json(gw, path: str, **params) -> dict:
    resp = await gw.http.get(path, params=params)
    assert resp.status == 200
    return await resp.json()


async def post(gw, conn_id: str, data) -> float:
    """Seconds the post took (botocore runs in a thread: the server shares this loop)."""
    started = time.monotonic()
    await asyncio.to_thread(gw.mgmt.post_to_connection, ConnectionId=conn_id, Data=data)
    return time.monotonic() - started


async def test_sinks_are_created_with_api_gateway_shaped_ids_and_answer_like_real_connections(gw):
    made = await create(gw, count=3)
    assert made["refused"] == 0 and len(set(made["connectionIds"])) == 3
    for conn_id in made["connectionIds"]:
        assert len(base64.b64decode(conn_id, validate=True)) == 10  # as real ids: base64 of 10 random bytes
    assert not gw.pool.events  # no token: pure sinks, no $connect
    await post(gw, made["connectionIds"][0], b'{"type": "ping"}')
    info = await asyncio.to_thread(gw.mgmt.get_connection, ConnectionId=made["connectionIds"][0])
    assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["ConnectedAt"] == info["LastActiveAt"]
    totals = await get_json(gw, "/dev/stack/virtual-connections")
    assert totals["connections"] == 3 and totals["posts"] == 1 and totals["bytes"] == 16
    metrics = await get_json(gw, "/dev/stack/metrics")
    assert metrics["virtual_connections"] == 3 and metrics["websockets_open"] == 0
    assert metrics["connections_api"]["posts"] == 1 and metrics["connections_api"]["by_status"]["200"] == 1


async def test_the_sampled_latency_is_applied(gw):
    (conn_id,) = (await create(gw, count=1, latencyMs={"dist": "fixed", "value": 50}))["connectionIds"]
    assert await post(gw, conn_id, b"{}") >= 0.05


async def test_concurrent_posts_overlap(gw):
    ids = (await create(gw, count=20, latencyMs={"dist": "fixed", "value": 100}))["connectionIds"]
    with ThreadPoolExecutor(20) as threads:
        await asyncio.gather(*(asyncio.get_running_loop().run_in_executor(
            threads, lambda c=c: gw.mgmt.post_to_connection(ConnectionId=c, Data=b"{}")) for c in ids))
    # (no wall-clock bound: on a loaded machine it measures the load; the gateway's own count of posts
    # in flight at once is what shows they overlapped)
    totals = await get_json(gw, "/dev/stack/virtual-connections")
    assert totals["posts"] == 20 and totals["inFlightMax"] > 2 and totals["inFlight"] == 0


async def test_arrivals_per_event_count_duplicates_and_first_and_last(gw):
    ids = (await create(gw, count=5, latencyMs={"dist": "uniform", "low": 1, "high": 5}))["connectionIds"]
    frame = json.dumps({"type": "message.created", "mention": False,
                        "message": {"conversationId": "c-1", "seq": 12, "text": "hi"}}).encode()
    for conn_id in ids + ids[:1]:  # the first recipient gets it twice
        await post(gw, conn_id, frame)
    stats = await get_json(gw, "/dev/stack/virtual-connections/arrivals",
                           type="message.created", conversationId="c-1", seq="12")
    assert stats["count"] == 6 and stats["distinct"] == 5
    assert time.time() * 1000 - 10_000 < stats["firstAt"] <= stats["lastAt"] <= time.time() * 1000
    presence = {"type": "presence.changed", "user": {"tenantId": "acme", "userId": "u1"}, "status": "online",
                "updatedAt": 1712345678901}
    await post(gw, ids[1], json.dumps(presence).encode())
    await post(gw, ids[1], b"not json")  # counted as a post, names no event
    got = await get_json(gw, "/dev/stack/virtual-connections/arrivals",
                         type="presence.changed", key="acme#u1", updatedAt="1712345678901")
    assert got["count"] == 1 and got["distinct"] == 1
    unknown = await get_json(gw, "/dev/stack/virtual-connections/arrivals", type="message.created",
                             conversationId="c-1", seq="13")
    assert unknown == {"count": 0, "distinct": 0, "firstAt": None, "lastAt": None}
    listed = (await get_json(gw, "/dev/stack/virtual-connections/arrivals"))["keys"]
    assert [(k["type"], k["key"], k["seq"], k["count"]) for k in listed] == [
        ("presence.changed", "acme#u1", "1712345678901", 1), ("message.created", "c-1", "12", 6)]
    totals = await get_json(gw, "/dev/stack/virtual-connections")
    assert totals["posts"] == 8 and totals["arrivalKeys"] == 2
    cleared = await (await gw.http.delete("/dev/stack/virtual-connections/arrivals")).json()
    assert cleared["posts"] == 0 and cleared["arrivalKeys"] == 0 and cleared["connections"] == 5


async def test_gone_after_delete_and_for_unknown_ids(gw):
    a, b = (await create(gw, count=2))["connectionIds"]
    await asyncio.to_thread(gw.mgmt.delete_connection, ConnectionId=a)
    with pytest.raises(gw.mgmt.exceptions.GoneException):
        await post(gw, a, b"{}")
    with pytest.raises(gw.mgmt.exceptions.GoneException):
        await post(gw, "bm8tc3VjaC1jb25u", b"{}")
    await post(gw, b, b"{}")
    removed = await (await gw.http.delete("/dev/stack/virtual-connections")).json()
    assert removed == {"removed": 1, "disconnected": 0}
    with pytest.raises(gw.mgmt.exceptions.GoneException):
        await post(gw, b, b"{}")
    assert (await get_json(gw, "/dev/stack/virtual-connections"))["connections"] == 0
    assert not gw.pool.events  # sinks never ran $connect, so they run no $disconnect


async def test_a_token_opens_each_through_connect_and_refusals_are_counted(gw):
    refused = await create(gw, count=3, token="bad")
    assert refused == {"connectionIds": [], "refused": 3}
    opened = await create(gw, count=4, token="good", device="bench", latencyMs={"dist": "fixed", "value": 1})
    assert opened["refused"] == 0 and len(opened["connectionIds"]) == 4
    connects = gw.pool.routes("$connect")
    assert len(connects) == 7
    event = connects[-1]
    assert event["queryStringParameters"] == {"token": "good", "device": "bench"}
    assert event["multiValueQueryStringParameters"] == {"token": ["good"], "device": ["bench"]}
    assert event["requestContext"]["eventType"] == "CONNECT" and event["requestContext"]["stage"] == "dev"
    assert {e["requestContext"]["connectionId"] for e in connects[3:]} == set(opened["connectionIds"])
    totals = await get_json(gw, "/dev/stack/virtual-connections")
    assert totals["connections"] == 4 and totals["opened"] == 4
    first, *rest = opened["connectionIds"]
    await asyncio.to_thread(gw.mgmt.delete_connection, ConnectionId=first)
    for _ in range(100):  # $disconnect runs after the 204, as for a socket
        if gw.pool.routes("$disconnect"):
            break
        await asyncio.sleep(0.01)
    (gone,) = gw.pool.routes("$disconnect")
    assert gone["requestContext"]["connectionId"] == first
    assert gone["requestContext"]["disconnectStatusCode"] == 1000
    removed = await (await gw.http.delete("/dev/stack/virtual-connections")).json()
    assert removed == {"removed": 3, "disconnected": 3}
    assert {e["requestContext"]["connectionId"] for e in gw.pool.routes("$disconnect")} == set(opened["connectionIds"])


async def test_limits_faults_and_bad_requests(gw):
    for spec in ({"count": 100_001}, {"count": 0}, {"count": "3"}, {"count": 1, "latencyMs": {"dist": "pareto"}},
                 {"count": 1, "latencyMs": {"dist": "uniform", "low": 5, "high": 1}},
                 {"count": 1, "latencyMs": {"dist": "lognormal", "median": 0, "sigma": 1}}, {"count": 1, "token": 5}):
        resp = await gw.http.post("/dev/stack/virtual-connections", json=spec)
        assert resp.status == 400 and "message" in await resp.json(), spec
    a, b = (await create(gw, count=2))["connectionIds"]
    with pytest.raises(gw.mgmt.exceptions.PayloadTooLargeException):
        await post(gw, a, b"x" * (128 * 1024 + 1))
    FAULTS.configure({"connectionsError": 1.0})
    try:
        with pytest.raises(ClientError) as failed:
            await post(gw, a, b"{}")
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        FAULTS.configure({"connectionsError": 0.0, "connectionsGone": 1.0})
        with pytest.raises(gw.mgmt.exceptions.GoneException):
            await post(gw, b, b"{}")
    finally:
        FAULTS.configure({"reset": True})
    with pytest.raises(gw.mgmt.exceptions.GoneException):  # the injected drop took it away
        await post(gw, b, b"{}")
    totals = await get_json(gw, "/dev/stack/virtual-connections")
    assert totals["connections"] == 1 and totals["rejected"] == 3 and totals["posts"] == 0


def test_arrival_keys_and_bounds():
    assert arrival_key({"type": "message.created", "message": {"conversationId": "c", "seq": 3}}) == (
        "message.created", "c", "3")
    assert arrival_key({"type": "file.ready", "conversationId": "c", "seq": 4}) == ("file.ready", "c", "4")
    assert arrival_key({"type": "presence.changed", "user": {"tenantId": "t", "userId": "u"},
                        "updatedAt": 5}) == ("presence.changed", "t#u", "5")
    assert arrival_key({"no": "type"}) is None and arrival_key([1]) is None
    arrivals = Arrivals(max_keys=3)
    for seq in range(5):
        arrivals.record(("message.created", "c", str(seq)), 99_999)
    assert len(arrivals) == 3 and arrivals.get(("message.created", "c", "0"))["count"] == 0
    assert arrivals.get(("message.created", "c", "4"))["distinct"] == 1
    import random

    rng = random.Random(7)
    samples = [Latency.parse({"dist": "lognormal", "median": 8, "sigma": 0.5}).sample_seconds(rng) for _ in range(2001)]
    assert 0.006 < sorted(samples)[1000] < 0.010  # the median is about 8 ms
    assert Latency.parse(None).sample_seconds(rng) == 0.0
