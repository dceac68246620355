"""Errors raised by the SDK. Switch on ``code``, never on ``message``."""
from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """An ``error`` reply from the server, or a client-side failure with its own code.

    Server codes are those of docs/protocol.md (``validation_failed``,
    ``not_found``, ``rate_limited`` …). The SDK adds ``connection_lost``,
    ``timeout``, ``closed`` and ``handshake_refused`` (subclasses below).
    """

    def __init__(self, code: str, message: str = "", retry_after: float | None = None,
                 *, error: dict[str, Any] | None = None, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.error = error or {"code": code, "message": message}
        self.request_id = request_id

    @property
    def limit(self) -> int | None:
        """Size limit in bytes that accompanies ``payload_too_large``."""
        return self.error.get("limit")

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> "ChatError":
        err = frame.get("error") or {}
        return cls(str(err.get("code", "internal")), str(err.get("message", "")), err.get("retryAfter"),
                   error=err, request_id=frame.get("requestId"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, retry_after={self.retry_after!r})"


class ConnectionLost(ChatError):
    """The socket closed while a request was in flight: its outcome is unknown."""

    def __init__(self, message: str = "the connection closed before the reply arrived") -> None:
        super().__init__("connection_lost", message)


class RequestTimeout(ChatError):
    """No reply within the timeout: the outcome is unknown (retry idempotent requests only)."""

    def __init__(self, message: str = "no reply in time") -> None:
        super().__init__("timeout", message)


class ClientClosed(ChatError):
    """The client was closed, or gave up reconnecting (see ``reason``)."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__("closed", message)


class HandshakeRefused(ChatError):
    """The WebSocket handshake was refused with an HTTP status (401, 403, 5xx …)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """401/403 will not heal by retrying with the same token."""
        return self.status in (401, 403)
