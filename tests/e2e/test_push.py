"""Mobile push through SNS over the real stack (docs/push.md): moto's SNS in the stack, read back at
``GET /dev/stack/pushes``.

Each test builds a fresh company and fresh device tokens, so nothing leaks between tests.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import requests

from chalicelib.models import PushDevice, user_key
from chalicelib.protocol import schemas

from .client import ActionError, token_for
from .test_federation import api, connect_companies, make_company

pytestmark = pytest.mark.e2e

APP = "com.example.chat"


def pushes(stack, endpoint_arn: str) -> list[dict]:
    r = requests.get(f"{stack.origin}/dev/stack/pushes", timeout=10)
    assert r.status_code == 200, r.text
    return [p for p in r.json()["pushes"] if p["endpointArn"] == endpoint_arn]


async def wait_pushes(stack, endpoint_arn: str, count: int, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(pushes, stack, endpoint_arn)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


def endpoint_of(tenant: str, uid: str, device_id: str) -> str | None:
    device = PushDevice.find(user_key(tenant, uid), device_id)
    return device.endpoint_arn if device else None


async def register(session, device_id: str, platform: str = "apns") -> dict:
    result = await session.call("push.register", deviceId=device_id, platform=platform, appId=APP,
                                token=uuid.uuid4().hex * 2, locale="en-US")
    jsonschema.validate(result, schemas.RESULTS["push.register"])
    return result


async def dm(sender, other_uid: str) -> str:
    conv = await sender.call("conversation.create", kind="direct", members=[other_uid])
    return conv["conversation"]["conversationId"]


async def test_dm_to_an_offline_phone_is_pushed_once_with_collapse_key_and_preview(stack, sessions):
    c = make_company(stack, "push")
    alice, bob_uid = await sessions(c.member), c.user_id(c.other)
    bob = await sessions(c.other)
    await register(bob, "bob-phone", "apns")
    arn = endpoint_of(c.tenant, bob_uid, "bob-phone")
    assert arn
    conv = await dm(alice, bob_uid)
    await bob.close()  # the phone's socket closes in the background
    await asyncio.sleep(0.5)
    text = "lunch at noon? " + "x" * 120 + " TAILMARKER"
    sent = await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=text)
    got = await wait_pushes(stack, arn, 1)
    await asyncio.sleep(1.5)  # and no second push for the same event
    got = await asyncio.to_thread(pushes, stack, arn)
    assert len(got) == 1, got
    message = got[0]["message"]
    aps = json.loads(message["APNS"])
    assert aps["aps"]["thread-id"] == conv  # the collapse key: one per conversation
    assert aps["aps"]["alert"]["title"] == "Member"  # the sender's display name
    body = aps["aps"]["alert"]["body"]
    assert body.startswith("lunch at noon?") and len(body) <= 80
    assert "TAILMARKER" not in json.dumps(message)  # nothing beyond the preview
    assert aps["conversationId"] == conv and aps["seq"] == sent["message"]["seq"]
    # the sender's own devices never get a push of their own message
    alice_arn_devices = PushDevice.of_user(user_key(c.tenant, c.user_id(c.member)))
    assert alice_arn_devices == []


async def test_online_recipient_gets_no_push(stack, sessions):
    c = make_company(stack, "pushon")
    alice, bob = await sessions(c.member), await sessions(c.other)
    bob_uid = c.user_id(c.other)
    await register(bob, "bob-phone", "fcm")
    arn = endpoint_of(c.tenant, bob_uid, "bob-phone")
    conv = await dm(alice, bob_uid)
    await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body="hi bob")
    await bob.event("message.created", message__conversationId=conv)
    await asyncio.sleep(2.5)  # the push job runs on a delivery worker: give it time
    assert await asyncio.to_thread(pushes, stack, arn) == []


async def test_mention_in_a_group_pushes_the_mentioned_member_only(stack, sessions):
    c = make_company(stack, "pushmn")
    alice, bob, other_admin = await sessions(c.member), await sessions(c.other), await sessions(c.admin)
    bob_uid, admin_uid = c.user_id(c.other), c.user_id(c.admin)
    await register(bob, "bob-phone", "fcm")
    await register(other_admin, "admin-phone", "fcm")
    bob_arn, admin_arn = endpoint_of(c.tenant, bob_uid, "bob-phone"), endpoint_of(c.tenant, admin_uid, "admin-phone")
    conv = (await alice.call("conversation.create", kind="group", members=[bob_uid, admin_uid]))[
        "conversation"]["conversationId"]
    await bob.close()
    await other_admin.close()
    await asyncio.sleep(0.5)
    await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body="plain, no push")
    await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex,
                     body=f"<@{bob_uid}> can you look?")
    got = await wait_pushes(stack, bob_arn, 1)
    await asyncio.sleep(1.5)
    assert len(await asyncio.to_thread(pushes, stack, bob_arn)) == 1
    fcm = json.loads(got[0]["message"]["GCM"])
    assert fcm["collapse_key"] == conv and fcm["data"]["mention"] == "True"
    assert await asyncio.to_thread(pushes, stack, admin_arn) == []  # a group message without a mention


async def test_disabled_endpoint_is_removed_after_a_failed_publish(stack, sessions):
    c = make_company(stack, "pushdis")
    alice, bob = await sessions(c.member), await sessions(c.other)
    bob_uid = c.user_id(c.other)
    await register(bob, "old-phone", "apns")
    await register(bob, "new-phone", "fcm")
    old_arn, new_arn = endpoint_of(c.tenant, bob_uid, "old-phone"), endpoint_of(c.tenant, bob_uid, "new-phone")
    conv = await dm(alice, bob_uid)
    await bob.close()
    await asyncio.sleep(0.5)
    # APNs said the token is no longer valid: SNS disabled the endpoint
    r = requests.post(f"{stack.origin}/dev/stack/pushes", json={"endpointArn": old_arn, "enabled": False}, timeout=10)
    assert r.status_code == 200 and r.json()["enabled"] is False
    await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body="still there?")
    assert len(await wait_pushes(stack, new_arn, 1)) == 1
    deadline = time.monotonic() + 10
    while endpoint_of(c.tenant, bob_uid, "old-phone") and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert endpoint_of(c.tenant, bob_uid, "old-phone") is None
    assert endpoint_of(c.tenant, bob_uid, "new-phone") == new_arn
    endpoints = requests.get(f"{stack.origin}/dev/stack/pushes", timeout=10).json()["endpoints"]
    assert old_arn not in {e["endpointArn"] for e in endpoints}  # the endpoint itself is deleted too


async def test_token_rotation_replaces_and_sign_out_removes_over_rest(stack, sessions):
    c = make_company(stack, "pushrest")
    bob_uid = c.user_id(c.other)
    body = {"deviceId": "bob-tablet", "platform": "fcm", "appId": APP, "token": uuid.uuid4().hex}
    r = await asyncio.to_thread(api, stack, c.other, "POST", "/push/devices", json=body)
    assert r.status_code == 200, r.text
    first = endpoint_of(c.tenant, bob_uid, "bob-tablet")
    r = await asyncio.to_thread(api, stack, c.other, "POST", "/push/devices", json={**body, "token": uuid.uuid4().hex})
    assert r.status_code == 200, r.text
    second = endpoint_of(c.tenant, bob_uid, "bob-tablet")
    assert second and second != first
    endpoints = {e["endpointArn"] for e in requests.get(f"{stack.origin}/dev/stack/pushes", timeout=10).json()["endpoints"]}
    assert first not in endpoints and second in endpoints  # the rotated-out token's endpoint is gone
    r = await asyncio.to_thread(api, stack, c.other, "DELETE", "/push/devices/bob-tablet")
    assert r.status_code == 200 and r.json() == {"deviceId": "bob-tablet", "removed": True}
    assert endpoint_of(c.tenant, bob_uid, "bob-tablet") is None


async def test_a_token_moving_to_another_user_leaves_the_previous_holder(stack, sessions):
    c = make_company(stack, "pushmove")
    token = uuid.uuid4().hex
    bob, member = await sessions(c.other), await sessions(c.member)
    await bob.call("push.register", deviceId="shared", platform="fcm", appId=APP, token=token)
    await member.call("push.register", deviceId="shared", platform="fcm", appId=APP, token=token)
    assert endpoint_of(c.tenant, c.user_id(c.other), "shared") is None
    assert endpoint_of(c.tenant, c.user_id(c.member), "shared")


async def test_other_company_or_user_cannot_touch_a_device_and_unknown_app_is_refused(stack, sessions):
    victim, intruder = make_company(stack, "pushv"), make_company(stack, "pushx")
    v = await sessions(victim.other)
    await register(v, "victim-phone", "fcm")
    victim_uid = victim.user_id(victim.other)
    for email in (intruder.admin, victim.member, victim.admin):  # another company; same company, any role
        s = await sessions(email)
        assert await s.call("push.unregister", deviceId="victim-phone") == {"deviceId": "victim-phone",
                                                                             "removed": False}
        r = await asyncio.to_thread(api, stack, email, "DELETE", "/push/devices/victim-phone")
        assert r.status_code == 200 and r.json()["removed"] is False
    assert endpoint_of(victim.tenant, victim_uid, "victim-phone")
    with pytest.raises(ActionError) as err:
        await v.call("push.register", deviceId="p", platform="fcm", appId="com.unknown.app", token="a" * 20)
    assert err.value.code == "validation_failed"
    with pytest.raises(ActionError) as err:
        await v.call("push.register", deviceId="p", platform="webpush", appId=APP, token="a" * 20)
    assert err.value.code in ("invalid_frame", "validation_failed")


# --- preferences, quiet hours, content policy, badge (issue #19 slice 2) --------------------------

def apns(push: dict) -> dict:
    return json.loads(push["message"]["APNS"])


async def offline_phone(session, tenant: str, uid: str, device_id: str, platform: str = "apns") -> str:
    """Register a phone on ``session``'s socket, then close it (the app went to the background)."""
    await register(session, device_id, platform)
    arn = endpoint_of(tenant, uid, device_id)
    assert arn
    await session.close()
    return arn


async def send(session, conv: str, body: str) -> dict:
    return (await session.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=body))[
        "message"]


async def settle() -> None:
    """A push that should NOT come: give the delivery worker the time it takes to send one that does."""
    await asyncio.sleep(1.5)


def set_preview(stack, admin_email: str, preview: str) -> None:
    r = api(stack, admin_email, "PUT", "/admin/push", json={"preview": preview})
    assert r.status_code == 200 and r.json() == {"preview": preview}, r.text


async def test_a_dm_is_pushed_with_the_tenants_content_level_and_the_unread_total_as_badge(stack, sessions):
    c = make_company(stack, "pushlvl")
    await asyncio.to_thread(set_preview, stack, c.admin, "sender")
    alice, bob_uid = await sessions(c.member), c.user_id(c.other)
    bob = await sessions(c.other)
    conv = await dm(alice, bob_uid)
    arn = await offline_phone(bob, c.tenant, bob_uid, "bob-phone")
    await send(alice, conv, "the secret merger is on")
    got = await wait_pushes(stack, arn, 1)
    assert len(got) == 1
    first = apns(got[0])
    assert first["aps"]["alert"] == {"title": "Member", "body": "New message"}  # sender only: no text
    assert "merger" not in json.dumps(got[0]["message"])
    assert first["aps"]["badge"] == 1
    await send(alice, conv, "and one more")
    got = await wait_pushes(stack, arn, 2)
    await settle()
    got = await asyncio.to_thread(pushes, stack, arn)
    assert len(got) == 2, got  # one push per message
    assert apns(got[1])["aps"]["badge"] == 2  # bob's unread total
    # nothing: not even the sender's name
    await asyncio.to_thread(set_preview, stack, c.admin, "none")
    await send(alice, conv, "third")
    got = await wait_pushes(stack, arn, 3)
    third = apns(got[2])
    assert third["aps"]["alert"] == {"title": "New message"} and "Member" not in json.dumps(got[2]["message"])


async def test_quiet_hours_hold_a_push_and_a_mention_with_notify_anyway_goes_through(stack, sessions):
    c = make_company(stack, "pushquiet")
    alice, bob = await sessions(c.member), await sessions(c.other)
    bob_uid, admin_uid = c.user_id(c.other), c.user_id(c.admin)
    zone = "Asia/Kolkata"  # UTC+05:30: the window is the user's local time, not UTC
    local = datetime.now(timezone.utc).astimezone(ZoneInfo(zone))
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=1)).strftime("%H:%M")}
    prefs = await bob.call("push.preferences.set", timezone=zone, quietHours=window, notifyAnyway="mentions")
    jsonschema.validate(prefs, schemas.RESULTS["push.preferences.set"])
    assert prefs["preferences"]["quietHours"] == {**window, "days": []}
    conv = await dm(alice, bob_uid)
    group = (await alice.call("conversation.create", kind="group", members=[bob_uid, admin_uid]))[
        "conversation"]["conversationId"]
    arn = await offline_phone(bob, c.tenant, bob_uid, "bob-phone")
    await send(alice, conv, "a DM in quiet hours")  # held
    await send(alice, group, f"<@{bob_uid}> the build is red")  # a mention: notify anyway
    got = await wait_pushes(stack, arn, 1)
    await settle()
    got = await asyncio.to_thread(pushes, stack, arn)
    assert len(got) == 1, got
    assert apns(got[0])["conversationId"] == group and apns(got[0])["mention"] is True


async def test_presence_do_not_disturb_holds_unless_the_preference_says_otherwise(stack, sessions):
    c = make_company(stack, "pushdnd")
    alice, bob = await sessions(c.member), await sessions(c.other)
    bob_uid = c.user_id(c.other)
    conv = await dm(alice, bob_uid)
    await bob.call("presence.set", status="do_not_disturb")
    bob2 = await sessions(c.other)
    arn = await offline_phone(bob, c.tenant, bob_uid, "bob-phone")
    await bob2.call("push.preferences.set", statusHolds=True)
    await bob2.close()
    await send(alice, conv, "held by do not disturb")
    await settle()
    await settle()
    assert await asyncio.to_thread(pushes, stack, arn) == []
    r = await asyncio.to_thread(api, stack, c.other, "PUT", "/push/preferences", json={"statusHolds": False})
    assert r.status_code == 200 and r.json()["preferences"]["statusHolds"] is False, r.text
    await send(alice, conv, "now it pushes")
    assert len(await wait_pushes(stack, arn, 1)) == 1


async def test_muted_conversation_does_not_push_and_keywords_and_all_push_ordinary_messages(stack, sessions):
    c = make_company(stack, "pushmute")
    alice, bob, boss = await sessions(c.member), await sessions(c.other), await sessions(c.admin)
    bob_uid, boss_uid = c.user_id(c.other), c.user_id(c.admin)
    conv = await dm(alice, bob_uid)
    group = (await alice.call("conversation.create", kind="group", members=[bob_uid, boss_uid]))[
        "conversation"]["conversationId"]
    muted = await bob.call("push.conversation.set", conversationId=conv, mutedUntil=int(time.time() * 1000) + 3600_000)
    jsonschema.validate(muted, schemas.RESULTS["push.conversation.set"])
    assert (await bob.call("conversation.get", conversationId=conv))["conversation"]["push"]["mutedUntil"]
    await bob.call("push.preferences.set", keywords=["Outage"])
    r = await asyncio.to_thread(api, stack, c.admin, "PUT", f"/conversations/{group}/push", json={"level": "all"})
    assert r.status_code == 200 and r.json()["push"] == {"level": "all", "mutedUntil": None}, r.text
    bob_arn = await offline_phone(bob, c.tenant, bob_uid, "bob-phone", "fcm")
    boss_arn = await offline_phone(boss, c.tenant, boss_uid, "boss-phone", "fcm")
    await send(alice, conv, "muted DM")
    await send(alice, group, "lunch anyone?")  # boss set this conversation to all; bob has no keyword in it
    await send(alice, group, "there is an outage in eu-west")  # bob's keyword; boss: all
    got = await wait_pushes(stack, bob_arn, 1)
    await wait_pushes(stack, boss_arn, 2)
    await settle()
    got = await asyncio.to_thread(pushes, stack, bob_arn)
    assert [json.loads(p["message"]["GCM"])["notification"]["body"] for p in got] == ["there is an outage in eu-west"]
    fcm = json.loads(got[0]["message"]["GCM"])
    assert fcm["data"]["conversationId"] == group and fcm["data"]["mention"] == "False"
    assert len(await asyncio.to_thread(pushes, stack, boss_arn)) == 2
    # unmuted (and level back to the default, over REST: bob's phone stays offline): the DM pushes again
    r = await asyncio.to_thread(api, stack, c.other, "PUT", f"/conversations/{conv}/push",
                                json={"mutedUntil": None, "level": None})
    assert r.status_code == 200 and r.json()["push"] == {"level": None, "mutedUntil": None}
    await send(alice, conv, "unmuted DM")
    assert len(await wait_pushes(stack, bob_arn, 2)) == 2


async def test_a_cross_company_dm_follows_the_stricter_content_policy(stack, sessions):
    north, south = make_company(stack, "pushn"), make_company(stack, "pushs")
    await asyncio.to_thread(connect_companies, stack, north, south)
    await asyncio.to_thread(set_preview, stack, south.admin, "none")  # north stays full
    alice, bob = await sessions(north.member), await sessions(south.member)
    alice_uid, bob_uid = north.user_id(north.member), south.user_id(south.member)
    conv = (await alice.call("conversation.create", kind="direct", memberEmails=[south.member]))[
        "conversation"]["conversationId"]
    alice2 = await sessions(north.member)
    bob_arn = await offline_phone(bob, south.tenant, bob_uid, "bob-phone")
    await send(alice, conv, "north to south: quarterly numbers")
    got = await wait_pushes(stack, bob_arn, 1)
    assert apns(got[0])["aps"]["alert"] == {"title": "New message"}  # south's policy for its own user
    assert "quarterly" not in json.dumps(got[0]["message"]) and "Member" not in json.dumps(got[0]["message"])
    # the other way: north's user would see full previews, but south's stricter policy wins for her too
    alice_arn = await offline_phone(alice, north.tenant, alice_uid, "alice-phone")
    await alice2.close()
    bob = await sessions(south.member)
    await send(bob, conv, "south to north: the numbers")
    got = await wait_pushes(stack, alice_arn, 1)
    assert apns(got[0])["aps"]["alert"] == {"title": "New message"}
    assert "numbers" not in json.dumps(got[0]["message"])


async def test_deactivation_and_deletion_remove_the_users_endpoints(stack, sessions):
    c = make_company(stack, "pushscim")
    r = requests.post(f"{stack.origin}/admin/scim/token", timeout=10,
                      headers={"Authorization": f"Bearer {token_for(stack, c.admin)}"})
    assert r.status_code == 201, r.text
    scim = {"Authorization": f"Bearer {r.json()['token']}", "Content-Type": "application/scim+json"}
    bob_uid, member_uid = c.user_id(c.other), c.user_id(c.member)
    bob, member = await sessions(c.other), await sessions(c.member)
    await register(bob, "bob-phone", "apns")
    await register(bob, "bob-tablet", "fcm")
    await bob.call("push.preferences.set", level="all")
    await register(member, "member-phone", "fcm")
    arns = [endpoint_of(c.tenant, bob_uid, d) for d in ("bob-phone", "bob-tablet")]
    member_arn = endpoint_of(c.tenant, member_uid, "member-phone")
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "value": {"active": False}}]}
    r = requests.patch(f"{stack.origin}/scim/v2/Users/{bob_uid}", json=patch, headers=scim, timeout=30)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    assert [d.device_id for d in PushDevice.of_user(user_key(c.tenant, bob_uid))] == ["~prefs"]  # preferences stay
    endpoints = {e["endpointArn"] for e in requests.get(f"{stack.origin}/dev/stack/pushes", timeout=10).json()["endpoints"]}
    assert not set(arns) & endpoints and member_arn in endpoints
    r = requests.delete(f"{stack.origin}/scim/v2/Users/{member_uid}", headers=scim, timeout=30)
    assert r.status_code == 204, r.text
    assert endpoint_of(c.tenant, member_uid, "member-phone") is None
    endpoints = {e["endpointArn"] for e in requests.get(f"{stack.origin}/dev/stack/pushes", timeout=10).json()["endpoints"]}
    assert member_arn not in endpoints


async def test_preferences_round_trip_and_bad_input_is_refused(stack, sessions):
    c = make_company(stack, "pushpref")
    bob = await sessions(c.other)
    got = await bob.call("push.preferences.get")
    jsonschema.validate(got, schemas.RESULTS["push.preferences.get"])
    assert got["preferences"] == {"level": "mentions", "keywords": [], "timezone": "UTC", "quietHours": None,
                                  "notifyAnyway": "none", "statusHolds": True, "updatedAt": None}
    body = {"level": "all", "keywords": ["deploy", " deploy ", "Release train"], "timezone": "Europe/Berlin",
            "quietHours": {"start": "22:00", "end": "07:00", "days": [4, 0, 4]}, "notifyAnyway": "mentions_and_direct"}
    r = await asyncio.to_thread(api, stack, c.other, "PUT", "/push/preferences", json=body)
    assert r.status_code == 200, r.text
    r = await asyncio.to_thread(api, stack, c.other, "GET", "/push/preferences")
    prefs = r.json()["preferences"]
    assert prefs["keywords"] == ["deploy", "Release train"] and prefs["quietHours"]["days"] == [0, 4]
    assert prefs["level"] == "all" and prefs["timezone"] == "Europe/Berlin" and prefs["updatedAt"]
    for bad in ({"timezone": "Mars/Olympus"}, {"quietHours": {"start": "09:00", "end": "09:00"}},
                {"quietHours": {"start": "9:00", "end": "10:00"}}, {"level": "loud"}, {"keywords": [""]}):
        with pytest.raises(ActionError) as err:
            await bob.call("push.preferences.set", **bad)
        assert err.value.code == "validation_failed", bad
        r = await asyncio.to_thread(api, stack, c.other, "PUT", "/push/preferences", json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed", (bad, r.text)
    with pytest.raises(ActionError) as err:
        await bob.call("push.conversation.set", conversationId="nope")
    assert err.value.code in ("validation_failed", "not_found")


async def test_push_settings_of_another_tenant_or_role_are_out_of_reach(stack, sessions):
    victim, intruder = make_company(stack, "pushiv"), make_company(stack, "pushix")
    v = await sessions(victim.member)
    conv = await dm(v, victim.user_id(victim.other))
    x = await sessions(intruder.admin)
    with pytest.raises(ActionError) as err:  # another company's conversation: as if it did not exist
        await x.call("push.conversation.set", conversationId=conv, level="nothing")
    assert err.value.code == "not_found"
    r = await asyncio.to_thread(api, stack, intruder.admin, "PUT", f"/conversations/{conv}/push", json={"level": "all"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # the preview policy: admins only, and only their own company's
    for email in (victim.member, victim.other):
        r = await asyncio.to_thread(api, stack, email, "PUT", "/admin/push", json={"preview": "full"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = await asyncio.to_thread(api, stack, email, "GET", "/admin/push")
        assert r.status_code == 403
    await asyncio.to_thread(set_preview, stack, victim.admin, "none")
    await asyncio.to_thread(set_preview, stack, intruder.admin, "full")
    r = await asyncio.to_thread(api, stack, victim.admin, "GET", "/admin/push")
    assert r.json() == {"preview": "none"}  # the intruder's change touched its own company only
    r = await asyncio.to_thread(api, stack, victim.admin, "PUT", "/admin/push", json={"preview": "everything"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    audit = (await asyncio.to_thread(api, stack, victim.admin, "GET", "/admin/audit")).json()["entries"]
    assert any(e["action"] == "push.preview.update" and e["after"] == {"preview": "none"} for e in audit), audit
    # and the other user's preferences: a user reads and writes only their own
    await v.call("push.preferences.set", keywords=["VICTIM-SECRET"])
    assert "VICTIM-SECRET" not in json.dumps(await x.call("push.preferences.get"))


async def test_reading_on_one_device_sends_a_silent_update_to_the_others(stack, sessions):
    c = make_company(stack, "pushread")
    alice, bob_uid = await sessions(c.member), c.user_id(c.other)
    phone = await sessions(c.other)
    conv = await dm(alice, bob_uid)
    phone_arn = await offline_phone(phone, c.tenant, bob_uid, "bob-phone")
    sent = await send(alice, conv, "are you there?")
    assert len(await wait_pushes(stack, phone_arn, 1)) == 1  # the alert, badge 1
    desktop = await sessions(c.other)
    await register(desktop, "bob-desktop-app", "fcm")  # the reading device itself is registered too
    desktop_arn = endpoint_of(c.tenant, bob_uid, "bob-desktop-app")
    read = await desktop.call("read", conversationId=conv, seq=sent["seq"])
    assert read["unread"] == 0
    got = await wait_pushes(stack, phone_arn, 2)
    assert len(got) == 2, got
    silent = apns(got[1])
    assert silent["aps"] == {"content-available": 1, "badge": 0}  # no alert, no sound: the badge drops
    assert silent["type"] == "read" and silent["conversationId"] == conv and silent["lastReadSeq"] == sent["seq"]
    await settle()
    assert await asyncio.to_thread(pushes, stack, desktop_arn) == []  # not to the device that read
    # reading again (the marker does not move) sends nothing
    await desktop.call("read", conversationId=conv, seq=sent["seq"])
    await settle()
    assert len(await asyncio.to_thread(pushes, stack, phone_arn)) == 2


async def test_a_preview_shows_the_dlp_redacted_text_never_the_original(stack, sessions):
    c = make_company(stack, "pushdlp")
    r = await asyncio.to_thread(api, stack, c.admin, "PUT", "/admin/dlp/rules", json={"rules": [
        {"id": "ssn", "type": "detector", "detector": "us_ssn", "action": "redact"}]})
    assert r.status_code == 200, r.text
    alice, bob_uid = await sessions(c.member), c.user_id(c.other)
    bob = await sessions(c.other)
    conv = await dm(alice, bob_uid)
    arn = await offline_phone(bob, c.tenant, bob_uid, "bob-phone")
    await send(alice, conv, "my ssn is 536-22-8745 ok")
    got = await wait_pushes(stack, arn, 1)
    body = apns(got[0])["aps"]["alert"]["body"]
    assert "[redacted]" in body and "536-22-8745" not in json.dumps(got[0]["message"])


async def test_active_on_the_desktop_no_push_on_the_phone_idle_desktop_pushes(stack, sessions):
    c = make_company(stack, "pushdesk")
    alice, bob_uid = await sessions(c.member), c.user_id(c.other)
    phone = await sessions(c.other)
    conv = await dm(alice, bob_uid)
    arn = await offline_phone(phone, c.tenant, bob_uid, "bob-phone")
    desktop = await sessions(c.other)  # reading on the desktop
    await send(alice, conv, "seen on the desktop")
    await desktop.event("message.created", message__conversationId=conv)
    await settle()
    assert await asyncio.to_thread(pushes, stack, arn) == []
    await desktop.call("presence.heartbeat", active=False)  # the desktop went idle
    await send(alice, conv, "now on the phone")
    got = await wait_pushes(stack, arn, 1)
    assert len(got) == 1 and apns(got[0])["aps"]["alert"]["body"] == "now on the phone"
