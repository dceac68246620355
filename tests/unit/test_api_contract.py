"""docs/openapi.json is the REST contract: every route of app.py is in it, as the code validates it.

The document itself is generated (``make schemas``, tools/export_schemas.py) and
tests/unit/test_docs_current.py checks the committed file equals the generator's
output; here: the generator misses no route of ``app.app.routes`` (Chalice's
path -> methods table), documents nothing app.py does not serve, and what it
says about each operation is what the handler really does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.export_schemas import UNDOCUMENTED, rest_routes

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _openapi() -> dict:
    return json.loads((ROOT / "docs" / "openapi.json").read_text())


def _app_routes() -> set[str]:
    import app

    return {f"{method} {path}" for path, methods in app.app.routes.items() for method in methods}


def _documented() -> dict[str, dict]:
    return {f"{m.upper()} {path}": op for path, ops in _openapi()["paths"].items()
            for m, op in ops.items() if m in METHODS}


def test_every_route_of_app_py_is_documented():
    missing = sorted(_app_routes() - set(_documented()) - set(UNDOCUMENTED))
    assert not missing, f"routes missing from docs/openapi.json (run `make schemas`): {missing}"


def test_nothing_is_documented_that_app_py_does_not_serve():
    assert not set(_documented()) - _app_routes(), sorted(set(_documented()) - _app_routes())
    assert not set(UNDOCUMENTED) - _app_routes(), "UNDOCUMENTED names routes app.py no longer has"
    assert not any(r.split(" ", 1)[1].startswith("/dev/") for r in _documented()), "/dev/ is the local stack's"


def test_the_exclusion_list_says_why():
    for route, why in UNDOCUMENTED.items():
        assert len(why) > 20, route


def test_every_operation_has_auth_a_reply_schema_and_the_error_body():
    doc = _openapi()
    for name, op in _documented().items():
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert len(ok) == 1 and "schema" in op["responses"][ok[0]]["content"]["application/json"], name
        if name in ("GET /health", "GET /auth/discovery"):  # public: no token (yet)
            assert op["security"] == []
            continue
        assert "security" not in op and doc["security"] == [{"bearer": []}], name
        for status in ("400", "401", "403", "404", "429", "500"):
            assert op["responses"][status] == {"$ref": f"#/components/responses/Error{status}"}, (name, status)


@pytest.mark.parametrize("route", [r for r in rest_routes() if r.action], ids=lambda r: f"{r.method} {r.path}")
def test_what_the_document_says_is_what_the_handler_does(route):
    """Status, path and query parameters and body fields of each operation, against the handler's call."""
    from chalicelib.protocol import frames, schemas

    op = _documented()[f"{route.method} {route.path}"]
    assert str(route.status) in op["responses"]
    assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == {n for n, _ in route.path_fields}
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == set(route.query)
    registry = schemas.ADMIN if route.action.startswith("admin.") else None
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body.get("example"):  # the documented example, path fields filled in, passes the code's own validation
        fields = {field: _sample(route.action, field) for _, field in route.path_fields}
        frames.validate({**body["example"], **fields, "action": route.action, "requestId": "r1"}, registry)
    # Every field the handler's schema accepts is a path or query parameter or a body property.
    src = (schemas.ADMIN if registry else schemas.INBOUND)[route.action]
    accepted = set(src["properties"]) - {"action", "requestId"}
    documented = {n for n, _ in route.path_fields} | set(route.query) | set(body.get("schema", {}).get("properties", {}))
    documented = {dict(route.path_fields).get(n, n) for n in documented}
    if route.method in ("GET", "DELETE"):
        assert documented <= accepted, route
    else:
        assert documented == accepted, route


def _sample(action: str, field: str) -> str:
    from chalicelib.protocol import schemas

    pattern = (schemas.ADMIN | schemas.INBOUND)[action]["properties"][field].get("pattern")
    return {"^[0-9a-f]{32}$": "0" * 32, "^[0-9]{13}-[0-9a-f]{12}$": "1700000000000-0123456789ab",
            "^[0-9]{13}-[0-9a-f]{32}$": "1700000000000-" + "0" * 32}.get(pattern, "x-1")


# --- validation lives in the schemas (so docs/openapi.json states it) ----------------------------

@pytest.mark.parametrize("action, body, ok", [
    ("admin.connections.invite", {}, False),
    ("admin.connections.invite", {"domain": "globex.example"}, True),
    ("admin.holds.place", {"kind": "user"}, False),
    ("admin.holds.place", {"kind": "user", "conversationId": "c1"}, False),
    ("admin.holds.place", {"kind": "conversation", "conversationId": "c1"}, True),
    ("admin.retention.conversation", {"conversationId": "c1"}, False),
    ("admin.retention.conversation", {"conversationId": "c1", "inherit": False}, False),
    ("admin.retention.conversation", {"conversationId": "c1", "inherit": True}, True),
    ("admin.retention.conversation", {"conversationId": "c1", "days": None}, True),
    ("admin.policy.set", {"mode": "all", "windows": [{"start": "08:00", "end": "24:00"}]}, True),
    ("admin.policy.set", {"mode": "all", "windows": [{"start": "08:60", "end": "18:00"}]}, False),
    ("admin.policy.set", {"mode": "all", "windows": [{"start": "08:00", "end": "25:00"}]}, False),
])
def test_rest_bodies_are_refused_by_the_schema(action, body, ok):
    from chalicelib.protocol import frames, schemas

    frame = {**body, "action": action, "requestId": "r1"}
    if ok:
        frames.validate(frame, schemas.ADMIN)
    else:
        with pytest.raises(frames.FrameError) as err:
            frames.validate(frame, schemas.ADMIN)
        assert err.value.error.code == "validation_failed"


def test_query_parameters_are_typed_by_the_actions_schema():
    from chalicelib import rest_api
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ValidationFailed

    got = rest_api._query_params({"limit": "5", "cursor": "7", "actor": "u1", "from": "0"},
                                 ("from", "to", "actor", "actionName", "limit", "cursor"),
                                 schemas.ADMIN["admin.audit.list"])
    assert got == {"limit": 5, "cursor": "7", "actor": "u1", "from": 0}
    with pytest.raises(ValidationFailed):
        rest_api._query_params({"beforeSeq": "x"}, ("beforeSeq", "limit"), schemas.INBOUND["history"])
    with pytest.raises(ValidationFailed):
        rest_api._query_params({"other": "1"}, ("limit",), schemas.INBOUND["history"])
