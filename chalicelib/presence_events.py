"""Delayed presence publications: the ``presence_flush`` function (SQS, docs/presence.md)."""
from __future__ import annotations

import logging
from typing import Any

from . import metrics, runtime
from .protocol import frames
from .protocol.errors import ChatError
from .services import presence

log = logging.getLogger("chat.presence")


@metrics.flushed("presence_flush")
def on_records(records: list[dict[str, Any]]) -> None:
    """Delayed presence publications (queue messages ``{"userKey": ...}``)."""
    env = runtime.presence_env()
    for record in records:
        try:
            key = frames.loads(record.get("body") or "{}").get("userKey")
        except ChatError:
            key = None
        if isinstance(key, str) and "#" in key:
            presence.flush(env, key)
        else:
            log.warning("bad presence queue message dropped")
