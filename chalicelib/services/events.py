"""Events after the write: choose recipients, render frames, hand them to delivery.

Called only by services, only after their write committed.  Recipients are
members of the conversation (the caller picks them; too many would be a
security bug).  Cost: 1 Query for members (unless given) + ceil(members/100)
BatchGetItem for live connections + one post per connection.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Callable, Iterable

from .. import policy
from ..models import Member, Presence
from ..protocol.frames import dumps

log = logging.getLogger("chat.events")


def member_keys(conversation_id: str) -> list[str]:
    return [m.user_key for m in Member.of_conversation(conversation_id)]


def send_to_users(delivery: Any, keys: Iterable[str], frame: dict[str, Any] | Callable[[str], dict[str, Any]],
                  *, origin: str, now_ms: int, exclude_connection: str | None = None, purpose: str = "message") -> int:
    """Post ``frame`` (or ``frame(user_key)``, for per-recipient variants) to every live device.

    ``origin`` is the user the event comes from: recipients in other tenants
    are re-checked against the connection and both policies *now*, so an
    in-flight fan-out stops crossing the moment access is revoked.
    Returns the number of connections posted to.
    """
    live = Presence.connections_of(policy.allowed_recipients(origin, list(keys), now_ms, purpose))
    by_payload: dict[str, list[str]] = defaultdict(list)
    for key, conns in live.items():
        payload = dumps(frame(key) if callable(frame) else frame)
        by_payload[payload].extend(c for c in conns if c != exclude_connection)
    posted = 0
    for payload, conns in by_payload.items():
        if conns:
            report = delivery.fan_out(conns, payload)
            posted += len(conns)
            if report.failed:
                log.warning("event not delivered to every device",
                            extra={"failed": len(report.failed), "gone": len(report.gone)})
    return posted
