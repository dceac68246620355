"""Structured JSON logs: one line per record, with the invocation's ids.

Never log tokens or message bodies; log codes, ids and reasons.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: int = logging.INFO) -> None:
    """Route the root logger to stdout as JSON (idempotent; Lambda captures stdout)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    for h in list(root.handlers):  # Lambda's bootstrap handler prints plain text
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def bind(**fields: Any) -> contextvars.Token:
    """Attach ids (requestId, connectionId, tenantId, ...) to every later line of this invocation."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def unbind(token: contextvars.Token) -> None:
    _context.reset(token)


def now_ms() -> int:
    return int(time.time() * 1000)
