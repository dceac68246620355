"""How a huge online roster is cut into ranges that several delivery workers read at once."""
from __future__ import annotations

import random

import pytest

from chalicelib.models import OnlineEntry
from chalicelib.services import rosters


def _entries(n: int, seed: int = 7) -> list[OnlineEntry]:
    rng = random.Random(seed)
    ids = [f"{rng.getrandbits(64):016x}=" for _ in range(n)]
    return sorted((OnlineEntry(conversation_id="c", connection_id=OnlineEntry.slot_of(cid), user_key=f"t#u{i % 50}",
                               expires_at=0) for i, cid in enumerate(ids)), key=lambda e: e.connection_id)


def _fake_roster(monkeypatch: pytest.MonkeyPatch, entries: list[OnlineEntry]) -> None:
    def first_page(conversation_id: str, page: int):
        head = entries[:page]
        return head, (head[-1].connection_id if len(entries) > page else None)
    monkeypatch.setattr(OnlineEntry, "first_page", staticmethod(first_page))


def _in(entries: list[OnlineEntry], after: str, below: str) -> list[OnlineEntry]:
    return [e for e in entries if after < e.connection_id <= below]


def test_slots_spread_connection_ids_and_give_them_back():
    key = OnlineEntry.slot_of("L0SM9cOFvHcCIhw=")
    assert key[4] == "#" and int(key[:4], 16) < OnlineEntry.SLOTS
    entry = OnlineEntry(conversation_id="c", connection_id=key, user_key="t#u", expires_at=0)
    assert entry.connection == "L0SM9cOFvHcCIhw="
    positions = [OnlineEntry.slot_position(e.connection_id) for e in _entries(4000)]
    quarters = [sum(1 for p in positions if q * 0x4000 <= p < (q + 1) * 0x4000) for q in range(4)]
    assert min(quarters) > 800  # even enough that the first page predicts the rest


def test_a_roster_that_fits_in_one_page_costs_one_query_and_no_ranges(monkeypatch):
    entries = _entries(40)
    _fake_roster(monkeypatch, entries)
    head, ranges = rosters.plan("c", page=100, per_range=10)
    assert head == entries and ranges == []


@pytest.mark.parametrize("total,page,per_range", [(1000, 100, 200), (5000, 250, 1000), (300, 299, 1), (200, 10, 10)])
def test_the_rest_is_cut_into_ranges_that_cover_every_entry_exactly_once(monkeypatch, total, page, per_range):
    entries = _entries(total)
    _fake_roster(monkeypatch, entries)
    head, ranges = rosters.plan("c", page=page, per_range=per_range)
    assert head == entries[:page]
    assert ranges[0][0] == entries[page - 1].connection_id
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous
    assert ranges[-1][1] == OnlineEntry.SLOT_END
    seen = head + [e for after, below in ranges for e in _in(entries, after, below)]
    assert sorted(e.connection_id for e in seen) == [e.connection_id for e in entries]
    expected = (total - page) / per_range
    assert len(ranges) <= rosters.MAX_RANGES and len(ranges) <= max(1, 2 * expected + 2)


def test_slot_bounds_sit_between_slots():
    assert OnlineEntry.slot_bound(0x0a3f) == "0a3f" < "0a3f#x" < OnlineEntry.slot_bound(0x0a40)
    assert "ffff#z" < OnlineEntry.slot_bound(OnlineEntry.SLOTS) == OnlineEntry.SLOT_END
