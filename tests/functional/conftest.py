"""Functional tier: services called in this process against the stack's DynamoDB, no sockets.

Between the unit tier (decisions with fakes, no AWS) and e2e (real sockets):
a service function runs as a Lambda handler would run it, against DynamoDB
Local (or the tables named by ``CHAT_STACK_FILE``'s environment on AWS), with
fakes for what it hands on: the outbox (events), the clock and the scheduler.
So a test sees exactly what a service stored and which events it asked for.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.config import settings
from chalicelib.fanout import FanoutLimits
from chalicelib.identity import Principal
from chalicelib.services.context import Call, Scheduler
from chalicelib.services.tenants import TenantSpec, register_tenant, upsert_user


class FakeOutbox:
    """Records what a service hands to delivery instead of posting it."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.limits = FanoutLimits(inline_max=50, shard_size=100, large_members=500)  # decides inline vs worker

    def add(self, job: dict[str, Any], *, on_worker: bool = False) -> None:
        self.jobs.append({**job, "onWorker": on_worker})

    def fan_out(self, connection_ids: Any, payload: Any) -> None:
        self.jobs.append({"kind": "connections", "connections": list(connection_ids), "payload": payload})

    def kinds(self) -> list[str]:
        return [j.get("kind", "") for j in self.jobs]


@dataclass
class FakeClock:
    """Seconds since the epoch, moved by the test (a rate window or an idle timer is then exact)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Company:
    tenant: str
    users: dict[str, Principal]
    clock: FakeClock = field(default_factory=FakeClock)
    outbox: FakeOutbox = field(default_factory=FakeOutbox)
    scheduled: list[tuple[dict[str, Any], int]] = field(default_factory=list)

    def call(self, who: str | Principal, connection_id: str | None = None) -> Call:
        """A call by one of the company's users (by name), or by any ``Principal``."""
        return Call(principal=self.users[who] if isinstance(who, str) else who, delivery=self.outbox, clock=self.clock, settings=settings(),
                    connection_id=connection_id,
                    schedule=Scheduler(compliance=lambda job, delay=0: self.scheduled.append((job, delay))))


@pytest.fixture(scope="session")
def dynamodb(stack):
    """The stack's tables; the session's ``stack`` fixture pointed this process's AWS settings at them."""
    return stack


@pytest.fixture
def company(dynamodb) -> Company:
    """A fresh company (its own tenant id: tests never share data) with an admin, alice and bob."""
    tid = f"fn-{uuid.uuid4().hex[:8]}"
    domain = f"{tid}.example"
    register_tenant(TenantSpec(tenant_id=tid, display_name=tid, domains=[domain],
                               issuer=f"https://idp.invalid/{tid}", audience="enterprise-chat"))
    users = {}
    for name, roles in (("admin", ["admin"]), ("alice", ["member"]), ("bob", ["member"])):
        upsert_user(tid, f"{tid}-{name}", f"{name}@{domain}", name.title(), roles)
        users[name] = Principal(tid, f"{tid}-{name}", f"{name}@{domain}", tuple(roles))
    return Company(tid, users)
