"""The push jobs a request queues (docs/push.md); the delivery worker runs them (``push.run``, ``push.clear``).

Apart from ``push`` (SNS, devices, preferences, the rules), so that a send or
a read marker loads none of that on its cold start: building a job needs
only the conversation and the message.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .stage_settings import Settings


def preview(text: str, chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= chars else text[:max(1, chars - 1)].rstrip() + "\u2026"


TEXT_CHARS = 4000  # what keyword matching reads of the (redacted) text; the payload shows the preview only


def job_for(conv: Any, view: dict[str, Any], origin: str, now_ms: int, s: Settings) -> dict[str, Any] | None:
    """The push job of a new text message, or None when nobody could get one.

    A DM, a message mentioning users, or any message of a conversation of at
    most ``push_group_members`` members (where "all" and keyword users may
    want it); in larger conversations only the mentioned members are asked.
    """
    if not s.push_enabled or view.get("kind") not in (None, "text"):
        return None
    users = [u for u in view.get("mentions") or [] if u]
    direct = conv.kind == "direct"
    everyone = direct or int(conv.member_count or 0) <= s.push_group_members
    if not everyone and not users:
        return None
    text = view.get("body") or ""
    return {"kind": "push", "conversationId": conv.conversation_id, "direct": direct, "everyone": everyone,
            "tenants": sorted({conv.tenant_id, *(conv.tenants or ())}), "mentions": users, "origin": origin,
            "nowMs": now_ms, "seq": int(view["seq"]), "text": text[:TEXT_CHARS],
            "preview": preview(text, s.push_preview_chars)}


def clear_job(key: str, conversation_id: str, last_read_seq: int, connection_id: str | None) -> dict[str, Any]:
    """The job a moved read marker queues: the user's other phones drop the conversation's notifications."""
    return {"kind": "push.clear", "user": key, "conversationId": conversation_id, "lastReadSeq": last_read_seq,
            "exclude": connection_id}
