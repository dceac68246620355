"""The custom status (``presence.custom``): the one presence write that is screened.

Apart from ``services/presence`` so that the functions that only publish presence ($connect,
$disconnect, the presence flush) never load screening and its regex engine (re2), neither on a
cold start nor in their packages (tools/split_package.py follows every import).
"""
from __future__ import annotations

from typing import Any

from .. import policy
from ..models import Presence
from ..protocol.errors import ValidationFailed
from . import presence, screening
from .context import Call


def set_custom(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """presence.custom: the caller's custom status (text, emoji, expiry), screened, then published."""
    env = call
    key = policy.key_of(call.principal)
    now = env.now_ms()
    text, emoji, expires = body.get("text"), body.get("emoji"), body.get("expiresAt")
    if expires is not None and expires <= now:
        raise ValidationFailed("expiresAt must be in the future.")
    # DLP under the user's own company's rules (a status belongs to no conversation): the text may be
    # blocked, redacted or flagged; the emoji, like a reaction, only blocked (or flagged).
    screened: dict[str, Any] = {}
    if text:
        screened["text"] = screening.screen_own(call, text, "status")
        text = screened["text"].text
    if emoji:
        screened["emoji"] = screening.screen_own(call, emoji, "status")
    if text or emoji:
        actions = [Presence.custom_text.set(text) if text else Presence.custom_text.remove(),
                   Presence.custom_emoji.set(emoji) if emoji else Presence.custom_emoji.remove(),
                   Presence.custom_expires_at.set(expires) if expires else Presence.custom_expires_at.remove()]
    else:
        actions = [Presence.custom_text.remove(), Presence.custom_emoji.remove(), Presence.custom_expires_at.remove()]
    Presence(user_key=key).update(actions=actions + [Presence.updated_at.set(now)])
    for f, verdict in screened.items():
        if f == "emoji" and verdict.action:  # stored as typed
            verdict = verdict._replace(action="flag")
        screening.record_flags(call, verdict, None, "status")
    presence.publish(env, key)
    return presence.view(key, Presence.find(key), now, env.settings.presence_idle_seconds * 1000)
