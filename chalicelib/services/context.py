"""What every service call receives: collaborators, clock, settings, the calling device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..identity import Principal

if TYPE_CHECKING:  # the entry point (runtime) builds the settings; a service only reads them
    from ..config import Settings


@dataclass(frozen=True)
class Call:
    principal: Principal
    delivery: Any
    clock: Callable[[], float]
    settings: Settings
    # The socket the request came on (None over REST): it gets the ack, not the event.
    connection_id: str | None = None
    # For the audit log (REST): the caller's address and API Gateway's request id.
    source_ip: str | None = None
    request_id: str | None = None
    # schedule(job, delay_seconds): a delayed compliance-queue step (expert escalation, hold sweeps,
    # retention backfills, export steps; docs/compliance.md)
    schedule: Callable[[dict[str, Any], int], None] | None = None
    # s3(): the storage client (presigned URLs, object calls), built on first use by the entry point
    s3: Callable[[], Any] | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


@dataclass(frozen=True)
class Text:
    """A REST reply that is not JSON (``GET /admin/usage?format=csv``): its body and content type."""

    body: str
    content_type: str


def offset_cursor(value: Any) -> int:
    """A page cursor that is a position in a list (inbox, roster): a client's garbage is
    ``validation_failed``, never an internal error (found by tests/e2e/test_fuzz.py)."""
    from ..protocol.errors import ValidationFailed

    try:
        position = int(value or 0)
    except (TypeError, ValueError):
        raise ValidationFailed("cursor is not one this server returned.") from None
    if position < 0:
        raise ValidationFailed("cursor is not one this server returned.")
    return position
