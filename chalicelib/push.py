"""Mobile push through Amazon SNS: device endpoints, the push job, the payloads (docs/push.md).

* Registration (``push.register``, ``POST /push/devices``): one SNS platform
  endpoint per device token (``CreatePlatformEndpoint`` on the platform
  application of ``<platform>:<appId>``, from ``PUSH_APPLICATIONS``), stored as
  a ``PushDevice`` of the user.  A new token for the same device id replaces
  the item (and the old endpoint is deleted); a token another user held before
  moves to the caller (the claim item, see ``models.PushDevice``).
* The push job (kind ``push``, always on the delivery worker, so no ack waits
  for it): the recipients of a DM or an explicit mention, minus the sender,
  minus those the external-access policy refuses now, minus those with an
  active device (a live connection active within ``push_active_seconds``);
  then one ``Publish`` per device of each remaining recipient.
* A publish SNS refuses because the endpoint is disabled (the platform said the
  token is invalid) or gone removes the device (and the endpoint).

The SNS endpoint is the standard ``AWS_ENDPOINT_URL_SNS`` (the local stack's
moto SNS); nothing else here knows where SNS is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from . import metrics, policy
from .config import Settings, settings
from .models import Member, Presence, PushDevice, User, split_user_key

log = logging.getLogger("chat.push")

PLATFORMS = ("apns", "apns_sandbox", "fcm")
# SNS's key in a MessageStructure=json message, per platform.
SNS_KEY = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}
_EXISTING = re.compile(r"Endpoint (arn:[^\s]+) already exists")
GONE_CODES = {"EndpointDisabled", "NotFound", "NotFoundException"}


@lru_cache(maxsize=1)
def client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("sns", region_name=settings().region,
                        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3}))


def application_arn(s: Settings, platform: str, app_id: str) -> str | None:
    return dict(s.push_applications).get(f"{platform}:{app_id}")


# --- registration ---------------------------------------------------------------------------

def _endpoint(app_arn: str, token: str) -> str:
    """The platform endpoint of ``token`` (created, or the existing one re-enabled): 1-2 SNS calls."""
    sns = client()
    try:
        return str(sns.create_platform_endpoint(PlatformApplicationArn=app_arn, Token=token)["EndpointArn"])
    except ClientError as exc:
        # The token has an endpoint with other attributes (disabled, other user data): take it over.
        match = _EXISTING.search(str(exc.response.get("Error", {}).get("Message", "")))
        if exc.response.get("Error", {}).get("Code") != "InvalidParameter" or not match:
            raise
    arn = match.group(1)
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Token": token, "Enabled": "true"})
    return arn


def _delete_endpoint(arn: str) -> None:
    try:
        client().delete_endpoint(EndpointArn=arn)
    except ClientError:  # idempotent on SNS; a failure leaves an endpoint nobody publishes to
        log.warning("push endpoint not deleted", exc_info=True)


def register(key: str, device_id: str, platform: str, app_id: str, token: str, locale: str | None,
             now_ms: int, s: Settings) -> PushDevice | None:
    """Store the device of ``key``; ``None`` when no platform application serves ``platform:app_id``.

    1 GetItem (the device) + 1 GetItem (the endpoint's claim) + 2 PutItem, and
    CreatePlatformEndpoint; the previous holder's device item is deleted when
    the token moved from another user or device.
    """
    app_arn = application_arn(s, platform, app_id)
    if app_arn is None:
        return None
    previous = PushDevice.find(key, device_id)
    arn = _endpoint(app_arn, token)
    holder = f"{key}\x1f{device_id}"
    claim = PushDevice.find(PushDevice.claim_key(arn), PushDevice.CLAIM)
    if claim is not None and claim.holder and claim.holder != holder:
        old_key, _, old_device = claim.holder.partition("\x1f")
        _forget(old_key, old_device, arn)
    if previous is not None and previous.endpoint_arn and previous.endpoint_arn != arn:
        # Token rotation: the old token's endpoint is ours alone; remove it and its claim.
        _forget(key, device_id, previous.endpoint_arn, delete_endpoint=True)
    device = PushDevice(owner=key, device_id=device_id, platform=platform, app_id=app_id, token=token,
                        locale=locale, endpoint_arn=arn, updated_at=now_ms)
    device.save()
    PushDevice(owner=PushDevice.claim_key(arn), device_id=PushDevice.CLAIM, holder=holder, updated_at=now_ms).save()
    metrics.count("PushDevicesRegistered")
    return device


def _forget(key: str, device_id: str, arn: str, *, delete_endpoint: bool = False) -> None:
    """Remove one device item (only while it still points at ``arn``) and, optionally, the endpoint."""
    try:
        PushDevice(owner=key, device_id=device_id).delete(condition=PushDevice.endpoint_arn == arn)
    except Exception as exc:  # noqa: BLE001 - it points elsewhere now (re-registered): keep it
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
    if delete_endpoint:
        PushDevice(owner=PushDevice.claim_key(arn), device_id=PushDevice.CLAIM).delete()
        _delete_endpoint(arn)


def unregister(key: str, device_id: str) -> bool:
    """Sign-out: remove the device, its claim and its endpoint.  1 GetItem + 2 DeleteItem + DeleteEndpoint."""
    device = PushDevice.find(key, device_id)
    if device is None:
        return False
    if device.endpoint_arn:
        claim = PushDevice.find(PushDevice.claim_key(device.endpoint_arn), PushDevice.CLAIM)
        if claim is None or claim.holder == f"{key}\x1f{device_id}":
            _forget(key, device_id, device.endpoint_arn, delete_endpoint=True)
            return True
    device.delete()
    return True


def unregister_all(key: str) -> int:
    """A deactivated user's devices: 1 Query + the removals of each device."""
    removed = 0
    for device in PushDevice.of_user(key):
        removed += unregister(key, device.device_id)
    return removed


# --- the push job (delivery worker) ------------------------------------------------------

def preview(text: str, chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= chars else text[:max(1, chars - 1)].rstrip() + "\u2026"


def collapse_key(conversation_id: str) -> str:
    """One per conversation; APNs collapse ids and FCM collapse keys are short (<= 64 bytes)."""
    return conversation_id if len(conversation_id) <= 64 else hashlib.sha256(conversation_id.encode()).hexdigest()[:64]


def job_for(conv: Any, view: dict[str, Any], origin: str, now_ms: int, s: Settings) -> dict[str, Any] | None:
    """The push job of a new message, or None when nobody could get one (not a DM, no user mention)."""
    users = [u for u in view.get("mentions") or [] if u]
    if conv.kind != "direct" and not users:
        return None
    if view.get("kind") not in (None, "text"):
        return None
    return {"kind": "push", "conversationId": conv.conversation_id, "direct": conv.kind == "direct",
            "tenants": sorted({conv.tenant_id, *(conv.tenants or ())}), "mentions": users, "origin": origin,
            "nowMs": now_ms, "seq": int(view["seq"]),
            "preview": preview(view.get("body") or "", s.push_preview_chars)}


def _recipients(job: dict[str, Any]) -> list[str]:
    """Members who may get this push: the other side of a DM, or the mentioned members."""
    conv_id, origin = job["conversationId"], job["origin"]
    if job.get("direct"):
        keys = [m.user_key for m in Member.of_conversation(conv_id)]
    else:
        wanted = []
        for uid in job.get("mentions") or []:
            candidates = [uid.replace(":", "#", 1)] if ":" in uid else [f"{t}#{uid}" for t in job["tenants"]]
            wanted += [(conv_id, k) for k in candidates]
        keys = [m.user_key for m in Member.batch_get(list(dict.fromkeys(wanted)))] if wanted else []
    keys = [k for k in dict.fromkeys(keys) if k != origin]
    if not keys:
        return []
    return list(policy.allowed_recipients(origin, keys, int(job["nowMs"]), "message"))


def is_active(presence: Presence | None, now_ms: int, window_seconds: int) -> bool:
    """A live connection whose device was active within the window (0 = the device said idle)."""
    if presence is None or not presence.connections:
        return False
    activity = presence.activity.as_dict() if hasattr(presence.activity, "as_dict") else dict(presence.activity or {})
    for conn in presence.connections:
        at = activity.get(conn)
        if at is None or (int(at) and now_ms - int(at) <= window_seconds * 1000):
            return True
    return False


def payload(platform: str, title: str, body: str, collapse: str, data: dict[str, Any]) -> dict[str, str]:
    """The ``Message`` of a MessageStructure=json publish: ``default`` and the platform's own."""
    if platform == "fcm":
        native: dict[str, Any] = {"notification": {"title": title, "body": body, "tag": collapse},
                                  "collapse_key": collapse, "data": {k: str(v) for k, v in data.items()}}
    else:
        native = {"aps": {"alert": {"title": title, "body": body}, "sound": "default", "thread-id": collapse},
                  **data}
    return {"default": f"{title}: {body}", SNS_KEY[platform]: json.dumps(native, separators=(",", ":"))}


def publish(device: PushDevice, message: dict[str, str], collapse: str) -> str:
    """One Publish; ``sent``, ``removed`` (SNS says the endpoint is disabled or gone) or ``failed``."""
    attrs = {}
    if device.platform in ("apns", "apns_sandbox"):
        attrs = {"AWS.SNS.MOBILE.APNS.COLLAPSE_ID": {"DataType": "String", "StringValue": collapse},
                 "AWS.SNS.MOBILE.APNS.PUSH_TYPE": {"DataType": "String", "StringValue": "alert"}}
    try:
        client().publish(TargetArn=device.endpoint_arn, Message=json.dumps(message), MessageStructure="json",
                         MessageAttributes=attrs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in GONE_CODES:
            _forget(device.owner, device.device_id, str(device.endpoint_arn), delete_endpoint=True)
            metrics.count("PushEndpointsRemoved")
            log.info("push endpoint disabled: device removed", extra={"code": code})
            return "removed"
        metrics.count("PushFailures")
        log.warning("push not sent", extra={"code": code})
        return "failed"
    metrics.count("PushesSent")
    return "sent"


def run(job: dict[str, Any], s: Settings | None = None) -> dict[str, int]:
    """Resolve and send one push job.  Reads: the recipients (1 Query or 1 BatchGetItem), their
    presence (1 BatchGetItem), the devices of each one without an active device (1 Query each),
    the sender's name (1 GetItem, only when something is sent)."""
    s = s or settings()
    outcome = {"sent": 0, "removed": 0, "failed": 0}
    keys = _recipients(job)
    if not keys:
        return outcome
    now = int(job["nowMs"])
    presence = Presence.many(keys)
    offline = [k for k in keys if not is_active(presence.get(k), now, s.push_active_seconds)]
    targets = [(k, d) for k in offline for d in PushDevice.of_user(k) if d.endpoint_arn]
    if not targets:
        return outcome
    tenant, uid = split_user_key(job["origin"])
    sender = User.find(tenant, uid)
    title = (sender.display_name if sender is not None and getattr(sender, "display_name", None) else None) or uid
    collapse = collapse_key(job["conversationId"])
    data = {"conversationId": job["conversationId"], "seq": job["seq"]}
    for key, device in targets:
        message = payload(device.platform or "fcm", title, job["preview"], collapse,
                          {**data, "mention": not job.get("direct")})
        outcome[publish(device, message, collapse)] += 1
    return outcome
