"""The user's live set of connections against DynamoDB (models/presence.Presence.add_connection):
the device limit is decided on the set as stored, never on a lost race of two first connections."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.models import Presence, user_key

pytestmark = pytest.mark.functional


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_first_connections_all_get_in(company, round_):
    """Found by the suite: of three first connections at once, one creates the item and the others
    used to read it back and call the set full (``too_many_devices`` with 1 of 1000 devices)."""
    key = user_key(company.tenant, f"new-{uuid.uuid4().hex[:8]}")
    ids = [f"conn-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda cid: Presence.add_connection(key, cid, 1_000, max_devices=1000), ids))
    assert all(rooms is not None for rooms in got), got
    item = Presence.find(key)
    assert item.connections == set(ids)
    assert set(item.activity.as_dict()) == set(ids)  # no first connection overwrote another's activity


def test_a_full_set_refuses_and_a_freed_slot_is_reusable(company):
    key = user_key(company.tenant, f"full-{uuid.uuid4().hex[:8]}")
    assert Presence.add_connection(key, "a", 1_000, max_devices=2) is not None
    assert Presence.add_connection(key, "b", 1_001, max_devices=2) is not None
    assert Presence.add_connection(key, "c", 1_002, max_devices=2) is None
    assert Presence.find(key).connections == {"a", "b"}
    Presence.remove_connection(key, "a", 1_003)
    assert Presence.add_connection(key, "c", 1_004, max_devices=2) is not None
    assert Presence.find(key).connections == {"b", "c"}
