"""The local stack's fault switches (devstack/faults.py): off by default, set and reset at run time."""
from __future__ import annotations

import pytest

from chalicelib.protocol.errors import ValidationFailed
from chalicelib.services.context import offset_cursor
from devstack.faults import RATES, Faults


def test_off_by_default_and_nothing_is_injected():
    f = Faults()
    assert not f.active and set(f.snapshot()["rates"]) == set(RATES)
    assert all(f.dynamodb("PutItem", b"{}") is None for _ in range(100))
    assert all(f.post() is None for _ in range(100))


def test_rates_are_clamped_unknown_keys_ignored_and_reset_zeroes_counters():
    f = Faults()
    snap = f.configure({"dynamodbThrottle": 5, "connectionsError": -1, "bogus": 1, "connectionsGone": True})
    assert snap["rates"]["dynamodbThrottle"] == 1.0 and snap["rates"]["connectionsError"] == 0.0
    assert snap["rates"]["connectionsGone"] == 0.0  # a bool is not a rate
    assert f.dynamodb("GetItem", b"{}") == "throttle" and f.snapshot()["injected"]["dynamodbThrottle"] == 1
    after = f.configure({"reset": True})
    assert not f.active and sum(after["injected"].values()) == 0


def test_commit_then_fail_sticks_to_the_retries_of_the_same_request_only():
    f = Faults()
    f.configure({"dynamodbCommitThenFail": 1.0})
    assert f.dynamodb("TransactWriteItems", b'{"a":1}') == "fail_after"
    f.configure({"dynamodbCommitThenFail": 0.0, "connectionsError": 0.0001})  # still active, rate ~0
    assert f.dynamodb("TransactWriteItems", b'{"a":1}') == "fail_after"  # botocore's retry: same bytes
    assert f.dynamodb("TransactWriteItems", b'{"a":2}') is None
    assert f.dynamodb("GetItem", b'{"a":1}') is None  # reads are never "committed"


@pytest.mark.parametrize("raw", ["x", "1.5", "-3", "\x1c"])
def test_a_garbage_page_cursor_is_a_validation_error(raw):
    with pytest.raises(ValidationFailed):
        offset_cursor(raw)


def test_a_page_cursor_is_a_position():
    assert offset_cursor(None) == 0 and offset_cursor("") == 0 and offset_cursor("150") == 150
