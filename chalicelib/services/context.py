"""What every service call receives: collaborators, clock, settings, the calling device."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..identity import Principal

if TYPE_CHECKING:  # the entry point (runtime) builds the settings; a service only reads them
    from ..config import Settings


@dataclass(frozen=True)
class Scheduler:
    """Delayed work, each kind on its queue (SQS ``DelaySeconds``, at most 900 s), as the entry point
    wires it.  A kind the entry point has no queue for is None: the service says so or skips it."""

    # compliance(job, delay_seconds): a compliance-queue step (hold sweeps, retention backfills,
    # export steps, expert escalations; docs/compliance.md, docs/experts.md)
    compliance: Callable[[dict[str, Any], int], None] | None = None
    # presence_flush(user_key, delay_seconds): publish that user's coalesced presence later
    presence_flush: Callable[[str, int], None] | None = None
    # expert_online(user_key, topic ids): offer the topics' waiting questions to a pool member who
    # became available (queued, off the presence path; docs/experts.md "Questions waiting")
    expert_online: Callable[[str, list[str]], None] | None = None
    # file_scan(bucket, key, version_id, delay_seconds): scan this object again later
    file_scan: Callable[[str, str, str | None, int], None] | None = None
    # verdict_check(bucket, key, version_id, delay_seconds): SCANNER=guardduty - refuse the file if
    # GuardDuty's verdict has not arrived by then (``verdict_overdue``)
    verdict_check: Callable[[str, str, str | None, int], None] | None = None
    # upload_release(file_id, release_at_ms, delay_seconds): give back an unused upload reservation
    upload_release: Callable[[str, int, int], None] | None = None

    def job(self, job: dict[str, Any], delay_seconds: int = 0) -> None:
        """Queue one compliance-queue step; an entry point without that queue is a bug, said plainly."""
        if self.compliance is None:
            raise RuntimeError(f"{job.get('job')} needs the compliance queue, which this entry point lacks")
        self.compliance(job, delay_seconds)


@dataclass(frozen=True, kw_only=True)
class Env:
    """What a service needs besides its arguments, built once per entry point (chalicelib/runtime.py)
    and passed in: services import neither the runtime nor the configuration."""

    clock: Callable[[], float]
    settings: Settings
    delivery: Any = None  # the invocation's outbox: posts to sockets and queued delivery jobs
    s3: Callable[[], Any] | None = None  # the storage client, built on first use
    management: Callable[[], Any] | None = None  # the @connections client (closing sockets)
    schedule: Scheduler = field(default_factory=Scheduler)
    scanner: Callable[[], Any] | None = None  # the file scanner (files' event side)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def storage(self) -> Any:
        if self.s3 is None:
            raise RuntimeError("this entry point has no storage client")
        return self.s3()

    def acting(self, principal: Principal, **extra: Any) -> "Call":
        """A service call on behalf of ``principal`` with this entry point's collaborators."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Env)}
        return Call(**fields, principal=principal, **extra)


@dataclass(frozen=True, kw_only=True)
class Call(Env):
    """An Env acting for a principal: a request from a device or an admin, or a job on someone's behalf."""

    principal: Principal
    # The socket the request came on (None over REST): it gets the ack, not the event.
    connection_id: str | None = None
    # For the audit log (REST): the caller's address and API Gateway's request id.
    source_ip: str | None = None
    request_id: str | None = None


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
