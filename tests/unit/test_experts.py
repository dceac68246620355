"""Ask the experts: who is in a wave (pure; the flow itself is tests/e2e/test_experts.py)."""
from chalicelib.services.experts import pick_wave


def test_available_then_away_in_the_tiers_order_and_busy_skipped():
    people = [("a", "away"), ("b", "available"), ("c", "busy"), ("d", "available"), ("e", "away")]
    assert pick_wave(people, 3) == ["b", "d", "a"]
    assert pick_wave(people, 10) == ["b", "d", "a", "e"]


def test_busy_do_not_disturb_and_meetings_only_when_nobody_else_is_left():
    people = [("a", "do_not_disturb"), ("b", "in_meeting"), ("c", "away"), ("d", "busy")]
    assert pick_wave(people, 5) == ["c"]
    assert pick_wave(people[:2] + people[3:], 5) == ["a", "b", "d"]
    assert pick_wave(people[:2], 1) == ["a"]


def test_offline_experts_are_never_offered():
    assert pick_wave([("a", "offline"), ("b", "offline")], 5) == []
    assert pick_wave([("a", "offline"), ("b", "in_meeting")], 5) == ["b"]
    assert pick_wave([], 3) == []


def test_a_wave_reads_the_pool_in_pages_until_enough_people_are_available(monkeypatch):
    """A large pool: the first page holding ``wave_size`` available people ends the reading (same wave)."""
    from chalicelib.services import experts

    people = [f"u{i:04d}" for i in range(450)]
    status = {uid: ("available" if i in (5, 120, 130, 260) else "away") for i, uid in enumerate(people)}
    pages: list[int] = []

    class Users:
        @staticmethod
        def batch_get(keys):
            pages.append(len(keys))
            return [type("U", (), {"user_id": uid, "active": True})() for _, uid in keys]

    monkeypatch.setattr(experts, "_members", lambda tenant, tier: people)
    monkeypatch.setattr(experts, "User", Users)
    monkeypatch.setattr(experts.Presence, "many", staticmethod(lambda keys: {k: k for k in keys}))
    monkeypatch.setattr(experts.presence_service, "state",
                        lambda item, now, idle: {"status": status[item.split("#", 1)[1]]})
    assert experts.next_wave("t", {}, 3, set(), 0, 0) == ["u0005", "u0120", "u0130"]
    assert pages == [100, 100]  # 2 of the 5 pages read
    pages.clear()
    assert experts.next_wave("t", {}, 5, set(), 0, 0) == ["u0005", "u0120", "u0130", "u0260", "u0000"]
    assert pages == [100, 100, 100, 100, 50]  # not enough available: every page, then away ones
