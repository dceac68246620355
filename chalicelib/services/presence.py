"""Presence: availability aggregated over devices, manual and custom status, rosters.

State is evaluated lazily from one item per user (no polling loop): a
device whose last activity is older than the idle time counts as away on
every read.  Watchers are told through ``presence.changed``, at most once per
coalescing window per user; a change inside the window is published by a
delayed queue message at the window's end (and the same message wakes us at
the moment an active user would turn idle, so watchers see auto-away too).
See docs/presence.md.
"""
from __future__ import annotations

import json
import math
from typing import Any

from .. import policy
from ..identity import Principal
from ..models import Conversation, Member, Presence, Subscription, condition_failed, user_key, user_ref
from ..protocol.errors import ValidationFailed
from ..protocol.frames import dumps
from .context import Call, Env, offset_cursor


# Highest first: what the user shows when devices or settings disagree.
PRECEDENCE = ("do_not_disturb", "in_meeting", "busy", "available", "away", "offline")
MANUAL = frozenset({"do_not_disturb", "in_meeting", "busy", "away"})
SQS_MAX_DELAY_SECONDS = 900
ROSTER_CONVERSATIONS = 100  # most recent direct/group conversations whose members form the roster




def state(item: Presence | None, now: int, idle_ms: int) -> dict[str, Any]:
    """Effective presence of one user at ``now`` (pure)."""
    conns = set(item.connections or ()) if item else set()
    if not conns:
        status = "offline"
    elif item.manual in MANUAL and (not item.manual_until or item.manual_until > now):
        status = item.manual  # never overridden by activity
    else:
        activity = item.activity.as_dict() if item.activity else {}
        active = any(int(activity.get(c) or 0) > now - idle_ms for c in conns)
        status = "available" if active else "away"
    custom = None
    if item and (item.custom_text or item.custom_emoji) and \
            (not item.custom_expires_at or item.custom_expires_at > now):
        custom = {"text": item.custom_text, "emoji": item.custom_emoji,
                  "expiresAt": int(item.custom_expires_at) if item.custom_expires_at else None}
    return {"status": status, "custom": custom, "devices": len(conns),
            "lastSeenAt": int(item.last_seen_at or 0) if item else 0}


def view(key: str, item: Presence | None, now: int, idle_ms: int) -> dict[str, Any]:
    return {"user": user_ref(key), **state(item, now, idle_ms)}


def _signature(st: dict[str, Any]) -> str:
    """What watchers are told about; last-seen and device count alone do not make an event."""
    return json.dumps([st["status"], st["custom"]], sort_keys=True)


def _next_wake(item: Presence, st: dict[str, Any], now: int, idle_ms: int) -> int | None:
    """When an available user would turn away (or a timed status/custom status ends)."""
    wakes = []
    if st["status"] == "available":
        activity = item.activity.as_dict() if item.activity else {}
        latest = max((int(activity.get(c) or 0) for c in item.connections or ()), default=0)
        wakes.append(latest + idle_ms)
    for t in (item.manual_until, item.custom_expires_at):
        if t and t > now:
            wakes.append(int(t))
    return min(wakes) if wakes else None


def _schedule(env: Env, item: Presence, due: int, now: int) -> None:
    """Queue one delayed flush unless one is already due earlier (conditional UpdateItem)."""
    try:
        item.update(actions=[Presence.flush_due_at.set(due)],
                    condition=Presence.flush_due_at.does_not_exist() | (Presence.flush_due_at < now)
                    | (Presence.flush_due_at > due))
    except Exception as exc:  # noqa: BLE001 - only a failed condition is expected here
        if condition_failed(exc):
            return
        raise
    assert env.schedule.presence_flush is not None, "presence needs its queue to publish a change later"
    env.schedule.presence_flush(item.user_key, min(SQS_MAX_DELAY_SECONDS, max(0, math.ceil((due - now) / 1000))))


def publish(env: Env, key: str, item: Presence | None = None) -> int:
    """Tell watchers if the user's presence changed; returns the number of posts made."""
    now = env.now_ms()
    idle_ms = env.settings.presence_idle_seconds * 1000
    window = env.settings.presence_coalesce_seconds * 1000
    item = item or Presence.find(key)
    if item is None:
        return 0
    st = state(item, now, idle_ms)
    wake = _next_wake(item, st, now, idle_ms)
    sig = _signature(st)
    if sig == item.published:
        if wake is not None:
            _schedule(env, item, wake, now)
        return 0
    last = int(item.published_at or 0)
    was = item.published
    if now - last < window:
        _schedule(env, item, last + window, now)  # coalesce: publish the state at the window's end
        return 0
    try:
        first = Presence.published_at.does_not_exist() if not last else Presence.published_at == last
        item.update(actions=[Presence.published.set(sig), Presence.published_at.set(now)],
                    condition=first | (Presence.published_at == last))
    except Exception as exc:  # noqa: BLE001
        if condition_failed(exc):  # another container published just now; make sure the latest wins
            _schedule(env, item, now + window, now)
            return 0
        raise
    if wake is not None:
        _schedule(env, item, wake, now)
    if item.expert_topics and st["status"] == "available" and env.schedule.expert_online is not None \
            and (not was or json.loads(was)[0] != "available"):
        env.schedule.expert_online(key, sorted(item.expert_topics))
    subs = Subscription.watchers(key)
    # watchers in other companies only while the connection and both policies share presence
    allowed = set(policy.allowed_recipients(key, [s.watcher_key for s in subs], now, "presence"))
    watchers = [s.watcher_connection for s in subs if s.watcher_key in allowed]
    if not watchers:
        return 0
    # Post the state that was signed and recorded above, not one re-read from ``item``: the
    # update refreshed it, and a device that connected meanwhile would make the event differ
    # from ``published`` (its own publication would then see no change, and watchers would
    # keep the wrong state).  updatedAt orders publications (posts of two invocations may
    # arrive out of order): clients keep, per user, the event with the greatest updatedAt.
    env.delivery.fan_out(watchers, dumps({"type": "presence.changed", "user": user_ref(key), **st,
                                          "updatedAt": now}))
    return len(watchers)


def flush(env: Env, key: str) -> int:
    """The delayed call: clear the pending mark, then publish whatever is true now."""
    item = Presence.find(key)
    if item is None:
        return 0
    item.update(actions=[Presence.flush_due_at.set(0)])
    return publish(env, key, item)


# --- actions -------------------------------------------------------------------

def set_status(env: Call, body: dict[str, Any]) -> dict[str, Any]:
    key = policy.key_of(env.principal)
    status = body["status"]
    until = body.get("until")
    now = env.now_ms()
    if until is not None and until <= now:
        raise ValidationFailed("until must be in the future.")
    actions = [Presence.updated_at.set(now),
               Presence.manual_until.set(until) if until else Presence.manual_until.remove(),
               Presence.manual.remove() if status == "available" else Presence.manual.set(status)]
    Presence(user_key=key).update(actions=actions)
    publish(env, key)
    return view(key, Presence.find(key), now, env.settings.presence_idle_seconds * 1000)


def heartbeat(env: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Device activity: at most one small write, and a fan-out only if the state changed."""
    key, connection_id = policy.key_of(env.principal), env.connection_id
    now = env.now_ms()
    idle_ms = env.settings.presence_idle_seconds * 1000
    item = Presence.find(key)
    if item is None or connection_id not in (item.connections or ()):
        return {"status": state(item, now, idle_ms)["status"], "written": False}
    active = body.get("active", True)
    prev = int((item.activity.as_dict() if item.activity else {}).get(connection_id) or 0)
    stale = now - prev > idle_ms // 4
    if (active and (prev == 0 or stale)) or (not active and prev != 0):
        before = _signature(state(item, now, idle_ms))
        item.update(actions=[Presence.activity[connection_id].set(now if active else 0)])
        if _signature(state(item, now, idle_ms)) != before:
            publish(env, key, item)
        return {"status": state(item, now, idle_ms)["status"], "written": True}
    return {"status": state(item, now, idle_ms)["status"], "written": False}


def visible_keys(principal: Principal, watch: list[str], cap: int, now_ms: int) -> list[str]:
    """Whom the caller may watch: itself, members of its recent direct/group conversations,
    and its watch list (users of its own tenant).  Capped; federation extends the policy."""
    me = policy.key_of(principal)
    keys: dict[str, None] = {me: None}
    if watch:
        for u in policy.reachable_users(principal, watch):
            keys[user_key(u.tenant_id, u.user_id)] = None
    conv_ids = [m.conversation_id for m in Member.of_user(me)]
    convs = [c for c in Conversation.batch_get(conv_ids) if c.kind in ("direct", "group")]
    convs.sort(key=lambda c: -(c.last_activity_at or 0))
    for conv in convs[:ROSTER_CONVERSATIONS]:
        for m in Member.of_conversation(conv.conversation_id):
            keys[m.user_key] = None
        if len(keys) >= cap:
            break
    # external users only where both companies share presence now
    return policy.allowed_recipients(me, list(keys), now_ms, "presence")[:cap]


def subscribe(env: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Roster snapshot (paged) and, on the first page, the subscription to its changes."""
    principal, connection_id = env.principal, env.connection_id
    assert connection_id is not None, "a roster subscription belongs to a socket"
    cap = env.settings.presence_roster_cap
    keys = sorted(visible_keys(principal, body.get("watch") or [], cap, env.now_ms()))
    start = offset_cursor(body.get("cursor"))
    limit = int(body.get("limit") or 100)
    if start == 0:
        Subscription.replace_for(connection_id, policy.key_of(principal), keys,
                                 int(env.clock()) + env.settings.connection_ttl_seconds)
    page = keys[start:start + limit]
    items = Presence.many(page)
    now = env.now_ms()
    idle_ms = env.settings.presence_idle_seconds * 1000
    nxt = start + limit if start + limit < len(keys) else None
    return {"roster": [view(k, items.get(k), now, idle_ms) for k in page], "total": len(keys),
            "nextCursor": str(nxt) if nxt is not None else None}


def unsubscribe(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    assert call.connection_id is not None, "a roster subscription belongs to a socket"
    return {"unsubscribed": Subscription.drop_connection(call.connection_id)}
