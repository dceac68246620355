"""push.register / push.unregister (and POST/DELETE /push/devices): the caller's own phones (docs/push.md).

A device belongs to the signed-in user only: it is stored under the caller's
user key, so no one can register, replace or remove another user's device,
whatever device id they send.  Sending is ``chalicelib/push.py``.
"""
from __future__ import annotations

from typing import Any

from .. import policy, push
from ..protocol.errors import ValidationFailed
from .context import Call


def device_view(device: Any) -> dict[str, Any]:
    return {"deviceId": device.device_id, "platform": device.platform, "appId": device.app_id,
            "locale": device.locale, "registeredAt": int(device.updated_at)}


def register(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Store (or replace) one device of the caller and its SNS endpoint."""
    device = push.register(policy.key_of(call.principal), body["deviceId"], body["platform"], body["appId"],
                           body["token"], body.get("locale"), call.now_ms(), call.settings)
    if device is None:
        raise ValidationFailed("No push application is configured for this platform and appId.")
    return {"device": device_view(device)}


def unregister(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Remove one device of the caller (sign-out); removing an unknown device is not an error."""
    removed = push.unregister(policy.key_of(call.principal), body["deviceId"])
    return {"deviceId": body["deviceId"], "removed": removed}
