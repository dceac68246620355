"""Ask the experts: who is in a wave (pure; the flow itself is tests/e2e/test_experts.py)."""
from chalicelib.services.experts import pick_wave


def test_available_then_away_then_busy_in_the_tiers_order():
    people = [("a", "away"), ("b", "available"), ("c", "busy"), ("d", "available"), ("e", "away")]
    assert pick_wave(people, 3) == ["b", "d", "a"]
    assert pick_wave(people, 10) == ["b", "d", "a", "e", "c"]


def test_do_not_disturb_and_meetings_only_when_nobody_else_is_left():
    people = [("a", "do_not_disturb"), ("b", "in_meeting"), ("c", "away")]
    assert pick_wave(people, 5) == ["c"]
    assert pick_wave(people[:2], 5) == ["a", "b"]
    assert pick_wave(people[:2], 1) == ["a"]


def test_offline_experts_are_never_offered():
    assert pick_wave([("a", "offline"), ("b", "offline")], 5) == []
    assert pick_wave([("a", "offline"), ("b", "in_meeting")], 5) == ["b"]
    assert pick_wave([], 3) == []
