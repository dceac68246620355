"""Mobile push through Amazon SNS: device endpoints, the push job, the payloads (docs/push.md).

* Registration (``push.register``, ``POST /push/devices``): one SNS platform
  endpoint per device token (``CreatePlatformEndpoint`` on the platform
  application of ``<platform>:<appId>``, from ``PUSH_APPLICATIONS``), stored as
  a ``PushDevice`` of the user.  A new token for the same device id replaces
  the item (and the old endpoint is deleted); a token another user held before
  moves to the caller (the claim item, see ``models.PushDevice``).
* The push job (kind ``push``, built by the request in ``push_jobs``, always
  run on the delivery worker, so no ack waits for it): the members of a DM or
  small conversation, or the mentioned ones, minus the sender, minus those
  the external-access policy refuses now; each
  remaining one is asked ``push_rules.decide`` (active device, mute, level,
  keywords, quiet hours, presence status); one ``Publish`` per device of each
  one it pushes, with the content the companies' preview policies allow and
  the unread total as badge.
* The clear job (kind ``push.clear``, a moved read marker, also built in
  ``push_jobs``): a silent update to the reader's other devices (drop the
  notifications, set the badge).
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

from . import metrics, policy, push_rules
from .config import Settings, settings
from .models import (Conversation, Member, Presence, PushDevice, PushPreferences, Tenant, User, split_user_key,
                     tenant_of)

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
             now_ms: int, s: Settings, connection_id: str | None = None) -> PushDevice | None:
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
                        locale=locale, endpoint_arn=arn, updated_at=now_ms, connection_id=connection_id or None)
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
    """A deactivated or deleted user's devices: 1 Query + the removals of each device (the
    preferences item in the same partition stays: a reactivated user keeps them)."""
    removed = 0
    for device in PushDevice.of_user(key):
        if device.device_id != PushPreferences.ITEM:
            removed += unregister(key, device.device_id)
    return removed


# --- the push job (delivery worker) ------------------------------------------------------

def collapse_key(conversation_id: str) -> str:
    """One per conversation; APNs collapse ids and FCM collapse keys are short (<= 64 bytes)."""
    return conversation_id if len(conversation_id) <= 64 else hashlib.sha256(conversation_id.encode()).hexdigest()[:64]


def _mentioned_keys(job: dict[str, Any]) -> list[str]:
    """The member keys a mention may name: ``tenant:uid`` names one, a bare uid any company of the conversation."""
    keys: list[str] = []
    for uid in job.get("mentions") or []:
        keys += [uid.replace(":", "#", 1)] if ":" in uid else [f"{t}#{uid}" for t in job["tenants"]]
    return list(dict.fromkeys(keys))


def _recipients(job: dict[str, Any]) -> tuple[dict[str, Member], set[str]]:
    """Members who may get this push (key -> member item, which holds the conversation's push level),
    and which of them are mentioned: every member (1 Query) or the mentioned ones (1 BatchGetItem)."""
    conv_id, origin = job["conversationId"], job["origin"]
    candidates = _mentioned_keys(job)
    if job.get("everyone", job.get("direct")):
        members = {m.user_key: m for m in Member.of_conversation(conv_id)}
    else:
        members = {m.user_key: m for m in Member.batch_get([(conv_id, k) for k in candidates])} if candidates else {}
    members.pop(origin, None)
    if not members:
        return {}, set()
    allowed = policy.allowed_recipients(origin, list(members), int(job["nowMs"]), "message")
    return {k: members[k] for k in allowed}, set(candidates) & set(members)


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


def status_of(presence: Presence | None, now_ms: int) -> str | None:
    """The manual presence status still in force (``manual_until`` not passed)."""
    if presence is None or not presence.manual:
        return None
    until = presence.manual_until
    return presence.manual if until is None or int(until) > now_ms else None


def prefs_of(item: PushPreferences | None) -> push_rules.Prefs:
    if item is None:
        return push_rules.Prefs()
    return push_rules.Prefs(level=item.level or push_rules.DEFAULT_LEVEL, keywords=tuple(item.keywords or ()),
                            timezone=item.timezone or "UTC", quiet_start=item.quiet_start, quiet_end=item.quiet_end,
                            quiet_days=tuple(int(d) for d in item.quiet_days or ()),
                            notify_anyway=item.notify_anyway or "none",
                            status_holds=True if item.status_holds is None else bool(item.status_holds))


def devices_of(key: str) -> list[PushDevice]:
    """The user's devices with an endpoint: 1 Query (the partition also holds the preferences item)."""
    return [d for d in PushDevice.of_user(key) if d.device_id != PushPreferences.ITEM and d.endpoint_arn]


def unread_total(key: str, cap: int = 1000) -> int:
    """The badge: the user's unread messages over their conversations (``conversation.list``'s
    ``unread``, summed).  1 Query of ``members.by_user`` + 1 BatchGetItem per 100 conversations."""
    read: dict[str, int] = {}
    for m in Member.of_user(key):
        read[m.conversation_id] = int(m.last_read_seq or 0)
        if len(read) >= cap:
            break
    if not read:
        return 0
    convs = Conversation.batch_get(list(read), consistent_read=True, attributes_to_get=["conversation_id", "last_seq"])
    return sum(max(0, int(c.last_seq or 0) - read[c.conversation_id]) for c in convs)


def preview_policies(tenant_ids: set[str]) -> dict[str, str]:
    """Each company's preview policy (``full`` when unset): 1 BatchGetItem."""
    tenants = Tenant.batch_get(sorted(tenant_ids), attributes_to_get=["tenant_id", "push_preview"])
    return {t.tenant_id: t.push_preview or "full" for t in tenants}


def payload(platform: str, title: str, body: str, collapse: str, data: dict[str, Any],
            badge: int | None = None) -> dict[str, str]:
    """The ``Message`` of a MessageStructure=json publish: ``default`` and the platform's own."""
    if platform == "fcm":
        note = {"title": title, "tag": collapse, **({"body": body} if body else {})}
        fields = {**data, **({"badge": badge} if badge is not None else {})}
        native: dict[str, Any] = {"notification": note, "collapse_key": collapse,
                                  "data": {k: str(v) for k, v in fields.items()}}
    else:
        aps: dict[str, Any] = {"alert": {"title": title, **({"body": body} if body else {})}, "sound": "default",
                               "thread-id": collapse}
        if badge is not None:
            aps["badge"] = badge
        native = {"aps": aps, **data}
    return {"default": f"{title}: {body}" if body else title, SNS_KEY[platform]: json.dumps(native, separators=(",", ":"))}


def silent_payload(platform: str, data: dict[str, Any], badge: int) -> dict[str, str]:
    """A background update (no alert, no sound): the app drops the conversation's notifications and
    sets the badge.  APNs ``content-available``; FCM a data-only message."""
    if platform == "fcm":
        native: dict[str, Any] = {"data": {k: str(v) for k, v in {**data, "badge": badge}.items()},
                                  "priority": "normal"}
    else:
        native = {"aps": {"content-available": 1, "badge": badge}, **data}
    return {"default": "", SNS_KEY[platform]: json.dumps(native, separators=(",", ":"))}


def publish(device: PushDevice, message: dict[str, str], collapse: str, background: bool = False) -> str:
    """One Publish; ``sent``, ``removed`` (SNS says the endpoint is disabled or gone) or ``failed``."""
    attrs = {}
    if device.platform in ("apns", "apns_sandbox"):
        attrs = {"AWS.SNS.MOBILE.APNS.PUSH_TYPE": {"DataType": "String",
                                                   "StringValue": "background" if background else "alert"}}
        if background:  # Apple requires priority 5 for background pushes
            attrs["AWS.SNS.MOBILE.APNS.PRIORITY"] = {"DataType": "String", "StringValue": "5"}
        else:
            attrs["AWS.SNS.MOBILE.APNS.COLLAPSE_ID"] = {"DataType": "String", "StringValue": collapse}
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
    """Resolve and send one push job (docs/push.md, "Costs").  Reads: the recipients (1 Query or 1
    BatchGetItem), their presence (1 BatchGetItem), the preferences of those without an active
    device (1 BatchGetItem per 100); then, for those the decision pushes only: their devices (1 Query
    each), the companies' preview policies (1 BatchGetItem), the sender's name (1 GetItem) and each
    one's badge (``unread_total``)."""
    s = s or settings()
    outcome = {"sent": 0, "removed": 0, "failed": 0, "held": 0}
    members, mentioned = _recipients(job)
    if not members:
        return outcome
    now = int(job["nowMs"])
    presence = Presence.many(list(members))
    offline = [k for k in members if not is_active(presence.get(k), now, s.push_active_seconds)]
    if not offline:
        return outcome
    prefs = PushPreferences.many(offline)
    pushable: list[tuple[str, push_rules.Event]] = []
    for key in offline:
        p, member = prefs_of(prefs.get(key)), members[key]
        event = push_rules.Event(direct=bool(job.get("direct")), mentioned=key in mentioned,
                                 keyword=push_rules.keyword_hit(p.keywords, job.get("text") or ""))
        who = push_rules.Recipient(prefs=p, conversation_level=member.push_level,
                                   muted_until=int(member.push_muted_until) if member.push_muted_until else None,
                                   status=status_of(presence.get(key), now))
        why = push_rules.decide(event, who, now)
        if why == push_rules.PUSH:
            pushable.append((key, event))
        else:
            outcome["held"] += 1
            metrics.count("PushesHeld")
            log.info("push held", extra={"reason": why})
    targets = [(key, event, d) for key, event in pushable for d in devices_of(key)]
    if not targets:
        return outcome
    origin_tenant, uid = split_user_key(job["origin"])
    policies = preview_policies({origin_tenant, *(tenant_of(k) for k, _, _ in targets)})
    sender = User.find(origin_tenant, uid)
    name = (sender.display_name if sender is not None and getattr(sender, "display_name", None) else None) or uid
    collapse = collapse_key(job["conversationId"])
    data = {"type": "message", "conversationId": job["conversationId"], "seq": job["seq"]}
    badges: dict[str, int] = {}
    for key, event, device in targets:
        if key not in badges:
            badges[key] = unread_total(key)
        level = push_rules.stricter(policies.get(origin_tenant), policies.get(tenant_of(key)))
        title, body = push_rules.content(level, name, job["preview"])
        message = payload(device.platform or "fcm", title, body, collapse,
                          {**data, "mention": event.mentioned}, badge=badges[key])
        outcome[publish(device, message, collapse)] += 1
    return outcome


# --- read elsewhere clears (delivery worker) -------------------------------------------------

def clear(job: dict[str, Any]) -> dict[str, int]:
    """A silent update to each device of the user but the one that read: 1 Query (devices); when there
    is one, the badge (``unread_total``) and 1 background ``Publish`` per device."""
    outcome = {"sent": 0, "removed": 0, "failed": 0}
    exclude = job.get("exclude")
    devices = [d for d in devices_of(job["user"]) if not (exclude and d.connection_id == exclude)]
    if not devices:
        return outcome
    badge = unread_total(job["user"])
    data = {"type": "read", "conversationId": job["conversationId"], "lastReadSeq": int(job["lastReadSeq"])}
    collapse = collapse_key(job["conversationId"])
    for device in devices:
        outcome[publish(device, silent_payload(device.platform or "fcm", data, badge), collapse,
                        background=True)] += 1
    return outcome
