"""Fuzzing over real sockets: WebSocket frames from the wire schemas, REST from docs/openapi.json.

Frames: hypothesis-jsonschema generates valid frames of every inbound action
(chalicelib/protocol/schemas.py INBOUND), and malformed variants of them
(a required field dropped, a field of the wrong type, an unknown field or
action, JSON that is not an object, text that is not JSON, binary frames).
Each is sent on one socket; every reply must be a valid ``ack``/``pong`` or a
structured ``error`` per the OUTBOUND schemas (never ``internal``), every
event in between must match its schema, and the socket must stay usable.

REST: schemathesis sends generated requests (valid and invalid) for every
operation of docs/openapi.json (every route of app.py, tenant-admin routes
included: tests/unit/test_api_contract.py) with a valid bearer token, the
admin's (so admin operations really run) and the member's (forbidden on
them): no 5xx, and every response matches the documented status codes,
content types and schemas.

Both run as the admin and a member of a tenant registered for the fuzzer
alone, so what they create or configure touches no other test's data.
Bounded by ``max_examples``; about a minute or two in all.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)
from websockets.sync.client import connect as ws_connect

from chalicelib.protocol.schemas import INBOUND, OUTBOUND

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

ROOT = Path(__file__).resolve().parents[2]
FRAME_EXAMPLES = int(os.environ.get("FUZZ_FRAME_EXAMPLES", "150"))
REST_EXAMPLES = int(os.environ.get("FUZZ_REST_EXAMPLES", "8"))  # FUZZ_REST_EXAMPLES=50 for a deeper run
REPLY_TIMEOUT = 15.0
REPLIES = ("ack", "pong", "error")


@pytest.fixture(scope="module")
def fuzz_tenant(stack) -> dict[str, Any]:
    """A tenant of the dev IdP for the fuzzer only: an admin (and reviewer) and a member, with tokens."""
    if stack.state_dir is None:
        pytest.skip("registers a dev-IdP tenant (local stack only)")
    from chalicelib.services import tenants
    from devstack.idp import AUDIENCE
    from devstack.seed import subject_for

    tenant = f"fuzz-{os.urandom(3).hex()}"
    domain = f"{tenant}.example"
    tenants.register_tenant(tenants.TenantSpec(
        tenant_id=tenant, display_name="Fuzz", domains=[domain],
        issuer=f"{stack.origin}/dev/idp/{tenant}", audience=AUDIENCE))
    out: dict[str, Any] = {"tenant": tenant}
    # the admin is also a reviewer, so the review queue's routes really run too
    for name, roles in (("admin", ["admin", "reviewer"]), ("member", ["member"])):
        email = f"{name}@{domain}"
        tenants.upsert_user(tenant, subject_for(email), email, name, roles)
        resp = requests.post(f"{stack.origin}/dev/idp/token", json={"email": email}, timeout=10)
        resp.raise_for_status()
        out[name] = resp.json()["access_token"]
    return out


# --- frames --------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
_VALID = st.one_of(*(from_schema(schema) for schema in INBOUND.values()))


@st.composite
def _malformed(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["drop", "retype", "extra", "action", "not_object", "not_json", "binary",
                                 "truncated"]))
    if kind == "not_object":
        return json.dumps(draw(st.lists(_JSON, max_size=3) | st.integers() | st.text(max_size=20) | st.none()))
    if kind == "not_json":
        return draw(st.text(min_size=1, max_size=200))
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=200))
    frame = dict(draw(_VALID))
    if kind == "truncated":
        raw = json.dumps(frame)
        return raw[:draw(st.integers(min_value=1, max_value=max(1, len(raw) - 1)))]
    keys = sorted(frame)
    if kind == "drop":
        frame.pop(draw(st.sampled_from(keys)))
    elif kind == "retype":
        frame[draw(st.sampled_from(keys))] = draw(_JSON)
    elif kind == "extra":
        frame[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in frame))] = draw(_JSON)
    else:
        frame["action"] = draw(st.text(max_size=40).filter(lambda a: a not in INBOUND))
    return json.dumps(frame)


def _valid_frame(frame: dict[str, Any], rid: str) -> str:
    return json.dumps({**frame, "requestId": rid})


def _next_reply(ws: Any, events: list[str]) -> dict[str, Any]:
    """The next ack/pong/error; events on the way are checked against their schemas."""
    while True:
        msg = json.loads(ws.recv(timeout=REPLY_TIMEOUT))
        kind = msg.get("type")
        assert kind in OUTBOUND, f"unknown outbound type: {msg}"
        jsonschema.validate(msg, OUTBOUND[kind])
        if kind in REPLIES:
            return msg
        events.append(kind)


def test_frames_get_valid_replies_and_the_socket_stays_usable(stack, fuzz_tenant):
    seen: dict[str, int] = {}
    events: list[str] = []
    ids = itertools.count()
    for role in ("member", "admin"):
        with ws_connect(f"{stack.ws}?token={fuzz_tenant[role]}", open_timeout=20, max_size=None) as ws:

            @settings(max_examples=FRAME_EXAMPLES // 2, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(st.sampled_from(["valid", "malformed"]).flatmap(
                lambda kind: (_VALID if kind == "valid" else _malformed()).map(lambda p, k=kind: (k, p))))
            def send_one(example: tuple[str, Any]) -> None:
                kind, payload = example
                rid = f"fz-{next(ids)}"
                raw = _valid_frame(payload, rid) if kind == "valid" else payload
                ws.send(raw)
                reply = _next_reply(ws, events)
                if kind == "valid":
                    assert reply.get("requestId") == rid, (raw[:300], reply)
                if reply["type"] == "error":
                    assert reply["error"]["code"] != "internal", (raw[:300], reply)
                    seen[f"{kind}:{reply['error']['code']}"] = seen.get(f"{kind}:{reply['error']['code']}", 0) + 1
                else:
                    seen[f"{kind}:{reply['type']}"] = seen.get(f"{kind}:{reply['type']}", 0) + 1

            send_one()
            ws.send(json.dumps({"action": "ping", "requestId": "still-there"}))
            assert _next_reply(ws, events) ["requestId"] == "still-there"
    print(f"\nframe fuzz replies by kind: {dict(sorted(seen.items()))}; events seen: {len(events)}")
    assert any(k.startswith("valid:ack") for k in seen) and any(k.startswith("malformed:") for k in seen)


# --- REST -----------------------------------------------------------------------------------

_SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@_SCHEMA.parametrize()
@settings(max_examples=REST_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_rest_operations_never_fail_and_match_the_openapi(case, stack, fuzz_tenant):
    for role in ("admin", "member"):
        case.call_and_validate(base_url=stack.origin, checks=_CHECKS, timeout=30,
                               headers={"Authorization": f"Bearer {fuzz_tenant[role]}"})
