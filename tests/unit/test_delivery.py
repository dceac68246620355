"""Delivery fan-out with a fake management client (pure logic)."""
import threading
import time

from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.delivery import Delivery


def _client_error(code, status):
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PostToConnection")


class FakeClient:
    def __init__(self, behaviour):
        self.behaviour = behaviour  # cid -> list of outcomes (exception or None), consumed in order
        self.posts = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def post_to_connection(self, ConnectionId, Data):
        with self.lock:
            self.posts.append(ConnectionId)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(0.005)
            outcomes = self.behaviour.get(ConnectionId, [])
            if outcomes:
                exc = outcomes.pop(0)
                if exc:
                    raise exc
        finally:
            with self.lock:
                self.in_flight -= 1


def test_gone_removes_only_that_connection_and_retries_are_bounded():
    client = FakeClient({
        "gone": [_client_error("GoneException", 410)],
        "flaky": [_client_error("LimitExceededException", 429), None],
        "dead": [_client_error("InternalServerError", 500)] * 5,
        "net": [EndpointConnectionError(endpoint_url="x"), None],
    })
    removed = []
    d = Delivery(client, on_gone=removed.append, max_in_flight=4, max_attempts=3, sleep=lambda s: None)
    report = d.fan_out(["ok", "gone", "flaky", "dead", "net", "ok"], b"{}")
    assert sorted(report.delivered) == ["flaky", "net", "ok"]
    assert report.gone == ["gone"] and report.failed == ["dead"]
    assert removed == ["gone"]
    assert client.posts.count("dead") == 3


def test_parallelism_is_bounded():
    client = FakeClient({})
    d = Delivery(client, on_gone=lambda c: None, max_in_flight=8)
    report = d.fan_out([f"c{i}" for i in range(100)], "x")
    assert len(report.delivered) == 100
    assert 1 < client.max_in_flight <= 8


def test_forbidden_is_not_retried_and_cleanup_failure_is_contained():
    client = FakeClient({"f": [_client_error("ForbiddenException", 403)],
                         "g": [_client_error("GoneException", 410)]})

    def boom(cid):
        raise RuntimeError("ddb down")

    d = Delivery(client, on_gone=boom, sleep=lambda s: None)
    assert d.send("f", "x") == "failed"
    assert d.send("g", "x") == "gone"
    assert client.posts == ["f", "g"]
