"""The one Env services take (services/context.py): what an entry point wires, and how a service
acting for someone gets the same collaborators."""
from __future__ import annotations

import pytest

from chalicelib.config import settings
from chalicelib.identity import Principal
from chalicelib.services.context import Call, Env, Scheduler


def test_acting_keeps_every_collaborator_and_adds_the_principal():
    jobs: list[tuple[dict, int]] = []
    env = Env(clock=lambda: 12.5, settings=settings(), delivery="outbox", s3=lambda: "s3-client",
              management=lambda: "mgmt", schedule=Scheduler(compliance=lambda j, d: jobs.append((j, d))),
              scanner=lambda: "engine")
    who = Principal("acme", "u1", "u1@acme.example")
    call = env.acting(who, connection_id="c1", request_id="r1")
    assert isinstance(call, Call) and call.principal == who
    assert (call.connection_id, call.request_id, call.source_ip) == ("c1", "r1", None)
    for name in Env.names():  # nothing of the entry point's wiring is lost on the way
        assert getattr(call, name) is getattr(env, name), name
    assert call.now_ms() == 12500 and call.storage() == "s3-client"
    call.schedule.job({"job": "export"}, 3)
    assert jobs == [({"job": "export"}, 3)]


def test_an_env_is_read_only_and_replace_builds_a_changed_copy():
    env = Env(clock=lambda: 1.0, settings=settings(), delivery="outbox")
    with pytest.raises(AttributeError, match="read-only"):
        env.delivery = "another"
    with pytest.raises(AttributeError):
        env.unknown = 1  # slots: no field can be added either
    call = env.acting(Principal("acme", "u1", "u1@acme.example"), connection_id="c1")
    other = call.replace(delivery="another")
    assert isinstance(other, Call) and other.delivery == "another" and call.delivery == "outbox"
    assert (other.principal, other.connection_id, other.clock) == (call.principal, "c1", call.clock)
    assert Call.names() == (*Env.names(), "principal", "connection_id", "source_ip", "request_id")
    with pytest.raises(TypeError):
        Env(lambda: 1.0, settings())  # keyword arguments only


def test_a_missing_queue_or_client_is_said_plainly():
    env = Env(clock=lambda: 0.0, settings=settings())
    with pytest.raises(RuntimeError, match="hold.sweep needs the compliance queue"):
        env.schedule.job({"job": "hold.sweep"})
    with pytest.raises(RuntimeError, match="no storage client"):
        env.storage()
    assert env.schedule.presence_flush is None  # optional kinds are None: the service skips or says so


def test_services_take_the_env_and_never_build_one():
    """Only entry points (runtime, the functions' modules, tools) build an Env or a Call; a service
    that builds one would hide where its collaborators come from."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "chalicelib" / "services"
    builders = []
    for path in root.glob("*.py"):
        if path.name == "context.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Env", "Call"):
                builders.append(f"{path.name}:{node.lineno}")
    assert not builders, builders
