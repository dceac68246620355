"""Mobile push through SNS over the real stack (docs/push.md): moto's SNS in the stack, read back at
``GET /dev/stack/pushes``.

Each test builds a fresh company and fresh device tokens, so nothing leaks between tests.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import jsonschema
import pytest
import requests

from chalicelib.models import PushDevice, user_key
from chalicelib.protocol import schemas

from .client import ActionError
from .test_federation import api, make_company

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
