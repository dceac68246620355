"""CloudWatch Embedded Metric Format lines (chalicelib/metrics.py): shape and once-per-invocation flushing. Pure logic."""
import io
import json

import pytest
from botocore.exceptions import ClientError

from chalicelib import metrics
from chalicelib.delivery import Delivery


@pytest.fixture(autouse=True)
def _clean():
    metrics.flush("test", stage="t", out=io.StringIO())  # drop anything another test counted
    yield


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def _valid_emf(doc: dict) -> None:
    """What CloudWatch requires of an EMF document: every dimension and metric is a top-level member."""
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    assert aws["CloudWatchMetrics"]
    for directive in aws["CloudWatchMetrics"]:
        assert directive["Namespace"] == metrics.NAMESPACE
        for dims in directive["Dimensions"]:
            assert 1 <= len(dims) <= 30
            for d in dims:
                assert isinstance(doc[d], str) and doc[d]
        assert 1 <= len(directive["Metrics"]) <= 100
        for m in directive["Metrics"]:
            assert m["Unit"] == "Count" and isinstance(doc[m["Name"]], int)


def test_counters_become_one_line_with_stage_and_function_dimensions():
    docs = metrics.emf_lines({"MessagesSent": 1, "DeliveriesPosted": 1000, "DeliveriesGone": 0}, {},
                             stage="prod", function="websocket_message", timestamp_ms=1_795_452_016_191)
    assert len(docs) == 1
    doc = docs[0]
    _valid_emf(doc)
    assert doc == {
        "_aws": {"Timestamp": 1_795_452_016_191, "CloudWatchMetrics": [{
            "Namespace": "EnterpriseChat", "Dimensions": [["stage", "function"]],
            "Metrics": [{"Name": "DeliveriesPosted", "Unit": "Count"}, {"Name": "MessagesSent", "Unit": "Count"}]}]},
        "stage": "prod", "function": "websocket_message", "DeliveriesPosted": 1000, "MessagesSent": 1,
    }


def test_refusals_carry_the_code_dimension_one_document_per_code():
    docs = metrics.emf_lines({"DeliveriesPosted": 2}, {"not_found": 1, "external_access_revoked": 3},
                             stage="dev", function="api_handler", timestamp_ms=1_795_452_016_191)
    assert len(docs) == 2
    for doc in docs:
        _valid_emf(doc)
        assert "tenantId" not in doc and "userId" not in doc
    first, second = docs
    assert [d["Dimensions"] for d in first["_aws"]["CloudWatchMetrics"]] == [[["stage", "function"]],
                                                                             [["stage", "function", "code"]]]
    assert (first["code"], first["Refusals"], first["DeliveriesPosted"]) == ("external_access_revoked", 3, 2)
    assert second["code"] == "not_found" and second["Refusals"] == 1 and "DeliveriesPosted" not in second


def test_nothing_counted_writes_nothing():
    assert metrics.emf_lines({}, {}, stage="dev", function="f", timestamp_ms=1) == []
    buf = io.StringIO()
    assert metrics.flush("websocket_message", stage="dev", out=buf) == 0 and buf.getvalue() == ""


def test_unknown_names_are_ignored_and_odd_codes_are_bucketed():
    metrics.count("NoSuchMetric")
    metrics.refusal("x" * 100)
    buf = io.StringIO()
    metrics.flush("f", stage="dev", out=buf)
    (doc,) = _lines(buf)
    assert "NoSuchMetric" not in doc and doc["code"] == "other"


class _Client:
    def __init__(self, gone=()):
        self.gone = set(gone)

    def post_to_connection(self, ConnectionId, Data):
        if ConnectionId in self.gone:
            raise ClientError({"Error": {"Code": "GoneException"}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                              "PostToConnection")


def test_a_fan_out_to_1000_connections_is_one_line_at_the_end_of_the_invocation(capsys):
    ids = [f"c{i}" for i in range(1000)]
    forgotten = []
    delivery = Delivery(_Client(gone=ids[:10]), on_gone=forgotten.append, max_in_flight=16)
    with metrics.invocation("websocket_message"):
        report = delivery.fan_out(ids, "{}")
        metrics.count("MessagesSent")
        assert capsys.readouterr().out == ""  # nothing written before the invocation ends
    out = capsys.readouterr().out.splitlines()
    assert len(report.delivered) == 990 and len(forgotten) == 10
    assert len(out) == 1
    doc = json.loads(out[0])
    _valid_emf(doc)
    assert (doc["DeliveriesPosted"], doc["DeliveriesGone"], doc["GoneCleanups"], doc["MessagesSent"]) == (990, 10, 10, 1)
    assert doc["function"] == "websocket_message" and doc["stage"]


def test_counters_are_flushed_even_when_the_invocation_fails(capsys):
    with pytest.raises(RuntimeError):
        with metrics.invocation("file_uploaded"):
            metrics.count("FilesQuarantined")
            raise RuntimeError("boom")
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["FilesQuarantined"] == 1
    # and reset: the next invocation starts from zero
    with metrics.invocation("file_uploaded"):
        pass
    assert capsys.readouterr().out == ""
