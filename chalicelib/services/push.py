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
                           body["token"], body.get("locale"), call.now_ms(), call.settings,
                           connection_id=call.connection_id)
    if device is None:
        raise ValidationFailed("No push application is configured for this platform and appId.")
    return {"device": device_view(device)}


def unregister(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Remove one device of the caller (sign-out); removing an unknown device is not an error."""
    removed = push.unregister(policy.key_of(call.principal), body["deviceId"])
    return {"deviceId": body["deviceId"], "removed": removed}


# --- preferences (docs/push.md "Preferences") ----------------------------------------------

def preferences_view(item: Any) -> dict[str, Any]:
    """The caller's preferences; a user who set none gets the defaults."""
    p = push.prefs_of(item)
    quiet = {"start": p.quiet_start, "end": p.quiet_end, "days": list(p.quiet_days)} \
        if p.quiet_start and p.quiet_end else None
    return {"level": p.level, "keywords": list(p.keywords), "timezone": p.timezone, "quietHours": quiet,
            "notifyAnyway": p.notify_anyway, "statusHolds": p.status_holds,
            "updatedAt": int(item.updated_at) if item is not None else None}


def get_preferences(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """1 GetItem."""
    from ..models import PushPreferences

    return {"preferences": preferences_view(PushPreferences.find(policy.key_of(call.principal)))}


def set_preferences(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the caller's preferences (a field left out takes its default): 1 PutItem."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from ..models import PushPreferences

    zone = body.get("timezone") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"Unknown time zone {zone[:64]!r}.") from None
    quiet = body.get("quietHours")
    if quiet and quiet["start"] == quiet["end"]:
        raise ValidationFailed("quietHours needs start != end (HH:MM local; start > end spans midnight).")
    keywords = list(dict.fromkeys(k.strip() for k in body.get("keywords") or [] if k.strip()))
    days = sorted(set(quiet.get("days") or [])) if quiet else []
    item = PushPreferences(owner=policy.key_of(call.principal), device_id=PushPreferences.ITEM,
                           level=body.get("level") or "mentions", keywords=keywords or None, timezone=zone,
                           quiet_start=quiet["start"] if quiet else None, quiet_end=quiet["end"] if quiet else None,
                           quiet_days=days or None,
                           notify_anyway=body.get("notifyAnyway") or "none",
                           status_holds=bool(body.get("statusHolds", True)), updated_at=call.now_ms())
    item.save()
    return {"preferences": preferences_view(item)}


def set_conversation(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The caller's own level and mute in one conversation: 1 UpdateItem of the member item (after the
    usual access check).  ``level: null`` follows the user's default; ``mutedUntil: null`` unmutes."""
    from ..models import Member

    _conv, member = policy.access(call.principal, body["conversationId"])
    actions = []
    if "level" in body:
        actions.append(Member.push_level.set(body["level"]) if body["level"] else Member.push_level.remove())
    if "mutedUntil" in body:
        until = body["mutedUntil"]
        actions.append(Member.push_muted_until.set(int(until)) if until else Member.push_muted_until.remove())
    if not actions:
        raise ValidationFailed("Nothing to change: give level and/or mutedUntil.")
    member.update(actions=actions)
    return {"conversationId": body["conversationId"],
            "push": {"level": member.push_level,
                     "mutedUntil": int(member.push_muted_until) if member.push_muted_until else None}}
