"""What every service call receives: collaborators, clock, settings, the calling device."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ..identity import Principal

if TYPE_CHECKING:  # the entry point (runtime) builds the settings; a service only reads them
    from ..stage_settings import Settings


class Scheduler(NamedTuple):
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


def _set(obj: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


_NO_QUEUES = Scheduler()


class Env:
    """What a service needs besides its arguments, built once per entry point (chalicelib/runtime.py)
    and passed in: services import neither the runtime nor the configuration.

    Read-only, with keyword arguments only.  A plain class with slots rather than a frozen
    dataclass: every function builds this class (and :class:`Call`) on its cold start, and a
    dataclass compiles its generated methods there (docs/operations.md "Cold start")."""

    __slots__ = ("clock", "settings", "delivery", "s3", "management", "schedule", "scanner")
    clock: Callable[[], float]
    settings: Settings
    delivery: Any  # the invocation's outbox: posts to sockets and queued delivery jobs
    s3: Callable[[], Any] | None  # the storage client, built on first use
    management: Callable[[], Any] | None  # the @connections client (closing sockets)
    schedule: Scheduler
    scanner: Callable[[], Any] | None  # the file scanner (files' event side)

    def __init__(self, *, clock: Callable[[], float], settings: Settings, delivery: Any = None,
                 s3: Callable[[], Any] | None = None, management: Callable[[], Any] | None = None,
                 schedule: Scheduler = _NO_QUEUES, scanner: Callable[[], Any] | None = None) -> None:
        _set(self, clock=clock, settings=settings, delivery=delivery, s3=s3, management=management,
             schedule=schedule, scanner=scanner)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only; replace() builds a changed copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every field, the base's first."""
        return tuple(n for c in reversed(cls.__mro__) for n in c.__dict__.get("__slots__", ()))

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``."""
        return type(self)(**{**{n: getattr(self, n) for n in self.names()}, **changes})

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def storage(self) -> Any:
        if self.s3 is None:
            raise RuntimeError("this entry point has no storage client")
        return self.s3()

    def acting(self, principal: Principal, **extra: Any) -> "Call":
        """A service call on behalf of ``principal`` with this entry point's collaborators."""
        return Call(**{n: getattr(self, n) for n in Env.__slots__}, principal=principal, **extra)


class Call(Env):
    """An Env acting for a principal: a request from a device or an admin, or a job on someone's behalf."""

    __slots__ = ("principal", "connection_id", "source_ip", "request_id")
    principal: Principal
    # The socket the request came on (None over REST): it gets the ack, not the event.
    connection_id: str | None
    # For the audit log (REST): the caller's address and API Gateway's request id.
    source_ip: str | None
    request_id: str | None

    def __init__(self, *, principal: Principal, connection_id: str | None = None, source_ip: str | None = None,
                 request_id: str | None = None, **env: Any) -> None:
        super().__init__(**env)
        _set(self, principal=principal, connection_id=connection_id, source_ip=source_ip, request_id=request_id)


class Text(NamedTuple):
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
