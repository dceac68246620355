"""The DynamoDB metering proxy: counts capacity yet hands botocore the answer it expects.

A fake DynamoDB on loopback answers with ``ConsumedCapacity`` whenever asked
(sometimes chunked, as DynamoDB Local does for large answers); a real boto3
client talks to it through the proxy, so botocore's CRC32 check runs.
"""
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from devstack.metering import MeteringProxy, _split_consumed, _units


class FakeDynamoDB(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeDynamoDB.bodies.append(body)
        op = self.headers["X-Amz-Target"].rsplit(".", 1)[1]
        answer = {"Item": {"k": {"S": "é"}}} if op == "GetItem" else {"Items": [], "Count": 0, "ScannedCount": 0}
        if body.get("ReturnConsumedCapacity") == "TOTAL":
            answer["ConsumedCapacity"] = {"TableName": "t", "CapacityUnits": 0.5}
        payload = json.dumps(answer, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
        if op == "Scan":  # chunked, in two pieces
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (payload[:5], payload[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def proxied():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeDynamoDB)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = MeteringProxy("http://127.0.0.1:%d" % server.server_address[1])
    client = boto3.client("dynamodb", endpoint_url=proxy.start(), region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    FakeDynamoDB.bodies = []
    yield client, proxy
    proxy.stop()
    server.shutdown()


def test_capacity_is_asked_for_counted_and_hidden_from_the_client(proxied):
    client, proxy = proxied
    got = client.get_item(TableName="t", Key={"k": {"S": "a"}})  # botocore checks x-amz-crc32
    assert got["Item"] == {"k": {"S": "é"}} and "ConsumedCapacity" not in got
    assert FakeDynamoDB.bodies[-1]["ReturnConsumedCapacity"] == "TOTAL"
    assert "ConsumedCapacity" not in client.scan(TableName="t")  # chunked answer
    ops = proxy.meter.snapshot()["operations"]
    assert ops["GetItem"]["requests"] == 1 and ops["GetItem"]["read_capacity_units"] == 0.5
    assert ops["Scan"]["capacity_units"] == 0.5


def test_a_client_that_asks_gets_its_capacity(proxied):
    client, proxy = proxied
    got = client.get_item(TableName="t", Key={"k": {"S": "a"}}, ReturnConsumedCapacity="TOTAL")
    assert got["ConsumedCapacity"]["CapacityUnits"] == 0.5
    client.list_tables()  # no capacity: counted, forwarded unchanged
    assert "ReturnConsumedCapacity" not in FakeDynamoDB.bodies[-1]
    before = proxy.meter.reset()
    assert before["total"]["requests"] == 2 and before["total"]["capacity_units"] == 0.5
    assert proxy.meter.snapshot()["total"]["requests"] == 0


def test_only_the_top_level_capacity_is_cut_out():
    assert _split_consumed(b'{"Item":{"ConsumedCapacity":{"S":"x"}}}') == (
        None, b'{"Item":{"ConsumedCapacity":{"S":"x"}}}')
    assert _split_consumed(b'{"ConsumedCapacity":[{"CapacityUnits":4.0}]}') == ([{"CapacityUnits": 4.0}], b"{}")
    assert _split_consumed(b'{"ConsumedCapacity":{"CapacityUnits":1},"Item":{}}') == ({"CapacityUnits": 1},
                                                                                      b'{"Item":{}}')


def test_units_split_into_reads_and_writes():
    assert _units("Query", {"CapacityUnits": 2.5}) == (2.5, 2.5, 0.0)
    assert _units("PutItem", {"CapacityUnits": 1.0}) == (1.0, 0.0, 1.0)
    assert _units("TransactWriteItems", [{"CapacityUnits": 4.0, "WriteCapacityUnits": 4.0},
                                         {"CapacityUnits": 2.0, "WriteCapacityUnits": 2.0}]) == (6.0, 0.0, 6.0)
