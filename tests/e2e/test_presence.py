"""Presence over real sockets: devices, precedence, idle, custom status, rosters, crashes, storms.

The test stack runs with PRESENCE_IDLE_SECONDS=5 and PRESENCE_COALESCE_SECONDS=1
(tests/conftest.py) so timers are observable.
"""
from __future__ import annotations

import asyncio
import time

import jsonschema
import pytest

from chalicelib.models import Presence, Subscription, User, user_key
from chalicelib.protocol import schemas

from .client import ActionError, Session

pytestmark = pytest.mark.e2e


def uid(email: str) -> str:
    return User.find_by_email(email).user_id


def key(email: str) -> str:
    u = User.find_by_email(email)
    return user_key(u.tenant_id, u.user_id)


async def _settle(*sessions: Session) -> None:
    """Reset manual and custom status so tests do not depend on each other's leftovers."""
    for s in sessions:
        await s.call("presence.set", status="available")
        await s.call("presence.custom", text=None, emoji=None)


async def _status_of(watcher: Session, email: str) -> dict:
    res = await watcher.call("presence.subscribe", watch=[uid(email)], limit=100)
    return next(e for e in res["roster"] if e["user"]["userId"] == uid(email))


async def _wait_status(watcher: Session, email: str, status: str, timeout: float = 15.0) -> dict:
    """Wait for a presence.changed of ``email`` with ``status`` (later events supersede earlier)."""
    return await watcher.event("presence.changed", timeout=timeout, user__userId=uid(email), status=status)


async def test_multi_device_aggregate_and_offline_only_when_last_goes(sessions):
    carol = await sessions("carol@acme.example")
    await _settle(carol)
    await carol.call("presence.subscribe", watch=[uid("dave@acme.example")])
    d1 = await sessions("dave@acme.example")
    await _wait_status(carol, "dave@acme.example", "available")
    d2 = await sessions("dave@acme.example")
    assert (await _status_of(carol, "dave@acme.example"))["devices"] == 2
    await d1.close()
    entry = await _status_of(carol, "dave@acme.example")
    assert entry["status"] == "available" and entry["devices"] == 1
    await d2.close()
    ev = await _wait_status(carol, "dave@acme.example", "offline")
    jsonschema.validate(ev, schemas.OUTBOUND["presence.changed"])
    assert ev["lastSeenAt"] > 0


async def test_manual_status_applies_to_user_and_precedence(sessions):
    bob = await sessions("bob@acme.example")
    phone = await sessions("bob@acme.example")
    alice = await sessions("alice@acme.example")
    await _settle(bob)
    await alice.call("presence.subscribe", watch=[uid("bob@acme.example")])
    res = await phone.call("presence.set", status="busy")
    assert res["status"] == "busy"
    await _wait_status(alice, "bob@acme.example", "busy")
    # activity from the other device never overrides a manual busy
    await bob.call("presence.heartbeat", active=True)
    assert (await _status_of(alice, "bob@acme.example"))["status"] == "busy"
    await bob.call("presence.set", status="do_not_disturb")
    await _wait_status(alice, "bob@acme.example", "do_not_disturb")
    await bob.call("presence.heartbeat", active=True)
    await bob.call("presence.set", status="available")
    await _wait_status(alice, "bob@acme.example", "available")


async def test_idle_turns_away_and_activity_turns_back(sessions):
    alice = await sessions("alice@acme.example")
    await _settle(alice)
    await alice.call("presence.subscribe", watch=[uid("carol@acme.example")])
    carol = await sessions("carol@acme.example")
    await _settle(carol)
    await _wait_status(alice, "carol@acme.example", "available")
    # no activity for longer than the idle time (5 s): the server turns her away by itself
    ev = await _wait_status(alice, "carol@acme.example", "away", timeout=20)
    assert ev["devices"] == 1
    res = await carol.call("presence.heartbeat", active=True)
    assert res["status"] == "available" and res["written"] is True
    await _wait_status(alice, "carol@acme.example", "available")
    # the client may report idleness itself
    await carol.call("presence.heartbeat", active=False)
    await _wait_status(alice, "carol@acme.example", "away")


async def test_heartbeat_that_changes_nothing_writes_nothing(sessions):
    hank = await sessions("hank@globex.example")
    await _settle(hank)
    first = await hank.call("presence.heartbeat", active=True)
    again = await hank.call("presence.heartbeat", active=True)
    assert first["status"] == again["status"] == "available"
    assert again["written"] is False


async def test_custom_status_with_expiry(sessions):
    gina = await sessions("gina@globex.example")
    hank = await sessions("hank@globex.example")
    await _settle(gina)
    await hank.call("presence.subscribe", watch=[uid("gina@globex.example")])
    expires = int(time.time() * 1000) + 2500
    res = await gina.call("presence.custom", text="Commuting", emoji="🚆", expiresAt=expires)
    assert res["custom"] == {"text": "Commuting", "emoji": "🚆", "expiresAt": expires}
    ev = await hank.event("presence.changed", user__userId=uid("gina@globex.example"), custom__text="Commuting")
    assert ev["custom"]["emoji"] == "🚆"
    # after expiry it is gone on read (lazy), and watchers are told
    await hank.event("presence.changed", timeout=20, user__userId=uid("gina@globex.example"), custom=None)
    assert (await _status_of(hank, "gina@globex.example"))["custom"] is None
    with pytest.raises(ActionError) as err:
        await gina.call("presence.custom", text="past", expiresAt=1)
    assert err.value.code == "validation_failed"


async def test_roster_is_conversation_members_plus_watch_list_and_never_other_tenants(sessions):
    alice = await sessions("alice@acme.example")
    res = await alice.call("conversation.create", kind="group", members=[uid("bob@acme.example")])
    assert res["conversation"]["conversationId"]
    roster = await alice.call("presence.subscribe", watch=[uid("dave@acme.example")])
    users = {e["user"]["userId"] for e in roster["roster"]}
    assert {uid("alice@acme.example"), uid("bob@acme.example"), uid("dave@acme.example")} <= users
    assert all(e["user"]["tenantId"] == "acme" for e in roster["roster"])
    with pytest.raises(ActionError) as err:
        await alice.call("presence.subscribe", watch=[uid("hank@globex.example")])
    assert err.value.code == "not_found"
    # a globex user's change never reaches alice
    ivy = await sessions("ivy@globex.example")
    await ivy.call("presence.set", status="busy")
    await alice.no_event("presence.changed", wait=2.5, user__tenantId="globex")
    await ivy.call("presence.set", status="available")


async def test_roster_pages(sessions):
    alice = await sessions("alice@acme.example")
    watch = [uid(e) for e in ("bob@acme.example", "carol@acme.example", "dave@acme.example")]
    first = await alice.call("presence.subscribe", watch=watch, limit=2)
    assert len(first["roster"]) == 2 and first["nextCursor"] == "2" and first["total"] >= 4
    second = await alice.call("presence.subscribe", watch=watch, limit=2, cursor=first["nextCursor"])
    seen = {e["user"]["userId"] for e in first["roster"] + second["roster"]}
    assert len(seen) == 4 or second["nextCursor"] is not None


async def test_unsubscribe_stops_events(sessions):
    alice = await sessions("alice@acme.example")
    bob = await sessions("bob@acme.example")
    await _settle(bob)
    await alice.call("presence.subscribe", watch=[uid("bob@acme.example")])
    res = await alice.call("presence.unsubscribe")
    assert res["unsubscribed"] >= 1
    await bob.call("presence.set", status="in_meeting")
    await alice.no_event("presence.changed", wait=2.5, user__userId=uid("bob@acme.example"))
    await bob.call("presence.set", status="available")


async def test_abrupt_disconnect_converges_to_offline(sessions):
    gina = await sessions("gina@globex.example")
    await gina.call("presence.subscribe", watch=[uid("ivy@globex.example")])
    ivy = await sessions("ivy@globex.example")
    await _settle(ivy)
    await _wait_status(gina, "ivy@globex.example", "available")
    ivy.ws.transport.abort()  # crash: no close frame
    await _wait_status(gina, "ivy@globex.example", "offline")
    assert not (Presence.find(key("ivy@globex.example")).connections or set())


async def test_connect_storm_is_coalesced(stack, sessions):
    watcher = await sessions("alice@acme.example")
    await watcher.call("presence.subscribe", watch=[uid("dave@acme.example")])
    await asyncio.sleep(1.5)
    watcher.frames.clear()
    started = time.monotonic()
    storm = 100

    async def flap() -> None:
        s = await Session.open(stack, "dave@acme.example")
        await s.close()

    for batch in range(0, storm, 10):
        await asyncio.gather(*[flap() for _ in range(10)])
    # it converges to the truth: the last event (trailing, delayed publication) says offline
    def dave_events() -> list[dict]:
        return [f for f in watcher.frames if f.get("type") == "presence.changed"
                and f["user"]["userId"] == uid("dave@acme.example")]

    deadline = time.monotonic() + 20
    def latest() -> dict | None:  # posts may arrive out of order; updatedAt orders publications
        return max(dave_events(), key=lambda f: f["updatedAt"], default=None)

    while not (latest() and latest()["status"] == "offline") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.5)  # anything still pending would arrive within a window and a queue delay
    elapsed = time.monotonic() - started
    events = dave_events()
    assert events and latest()["status"] == "offline"
    # at most one publication per coalescing window (1 s), plus the trailing one
    bound = int(elapsed / 1.0) + 2
    assert 1 <= len(events) <= bound, (len(events), bound)
    assert len(events) < storm * 2 / 5


async def test_storm_with_a_manual_status_ends_offline(stack, sessions):
    """A user with a manual status who flaps ends offline for watchers (bench/presence_cost.py's storm)."""
    watcher = await sessions("alice@acme.example")
    target = await Session.open(stack, "carol@acme.example")
    await target.call("presence.set", status="busy")
    await watcher.call("presence.subscribe", watch=[uid("carol@acme.example")])
    await target.close()
    await _wait_status(watcher, "carol@acme.example", "offline")
    await asyncio.sleep(1.5)  # past the coalescing window, as the bench waits
    watcher.frames.clear()
    for _ in range(10):
        s = await Session.open(stack, "carol@acme.example")
        await s.close()

    def latest() -> dict | None:  # posts may arrive out of order; updatedAt orders publications
        events = [f for f in watcher.frames if f.get("type") == "presence.changed"
                  and f["user"]["userId"] == uid("carol@acme.example")]
        return max(events, key=lambda f: f["updatedAt"], default=None)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (latest() is None or latest()["status"] != "offline"):
        await asyncio.sleep(0.2)
    assert latest() is not None and latest()["status"] == "offline", latest()
    assert (await _status_of(watcher, "carol@acme.example"))["status"] == "offline"
    # the next test starts from a clean slate
    s = await Session.open(stack, "carol@acme.example")
    await _settle(s)
    await s.close()


def test_watchers_are_told_exactly_what_is_recorded_as_published(stack):
    """A connect racing a publication must not make the event differ from the recorded state.

    The bench storm (bench/presence_cost.py) found watchers told ``busy`` while ``offline`` was
    recorded as published, so the final ``offline`` looked like no change and was never sent.
    """
    import uuid

    from chalicelib import runtime
    from chalicelib.services import presence
    from chalicelib.services.context import Env, Scheduler

    from .test_files import _Recorder  # records what a fan-out would post

    target = user_key("acme", f"race-{uuid.uuid4().hex[:8]}")
    watcher = user_key("acme", f"race-watcher-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    Presence(user_key=target, manual="busy", published=presence._signature(
        {"status": "busy", "custom": None}), published_at=now - 60_000, connections=None).save()
    Subscription.replace_for("race-watcher-conn", watcher, [target], int(time.time()) + 600)
    scheduled: list[tuple[str, int]] = []
    recorder = _Recorder()
    env = Env(delivery=recorder, clock=time.time, settings=runtime.settings(),
              schedule=Scheduler(presence_flush=lambda k, d: scheduled.append((k, d))))
    try:
        item = Presence.find(target)  # the disconnect's publication read the user offline ...
        Presence.add_connection(target, "race-conn", now)  # ... and a new device connects meanwhile
        assert presence.publish(env, target, item) == 1
        (event,) = recorder.delivery.frames
        jsonschema.validate(event, schemas.OUTBOUND["presence.changed"])
        recorded = Presence.find(target).published
        assert presence._signature(event) == recorded, (event, recorded)
        assert event["status"] == "offline"
        # the connect's own publication then sees a change and, inside the window, schedules it
        assert presence.publish(env, target) == 0
        assert scheduled and scheduled[-1][0] == target
    finally:
        Subscription.drop_connection("race-watcher-conn")
        Presence(user_key=target).delete()
