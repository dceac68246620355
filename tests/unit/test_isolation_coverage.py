"""Every REST route and WebSocket action is in the isolation matrix (tests/e2e/isolation_table.py).

Pure logic: reads the routes Chalice registered in ``app.py`` and the
``ACTIONS`` map of ``chalicelib/ws_api.py``.  A new route or action fails
here until it has a row saying what the wrong tenant and the wrong role get.
Also checks the files bucket's CORS rules reach the template and the local
stack the same way.
"""
from __future__ import annotations

from tests.e2e.isolation_table import CASES, COVERED_ELSEWHERE_PREFIXES, COVERED_ELSEWHERE_ROUTES, REST, WS


def _app_routes() -> set[str]:
    import app

    return {f"{method} {path}" for path, methods in app.app.routes.items() for method in methods}


def test_every_rest_route_is_in_the_matrix():
    listed = {e.name for e in REST}
    routes = _app_routes()
    missing = sorted(r for r in routes - listed - set(COVERED_ELSEWHERE_ROUTES)
                     if not r.split(" ", 1)[1].startswith(COVERED_ELSEWHERE_PREFIXES))
    assert not missing, f"add these routes to tests/e2e/isolation_table.py REST: {missing}"
    stale = sorted(listed - routes)
    assert not stale, f"rows for routes app.py no longer has: {stale}"


def test_every_ws_action_is_in_the_matrix():
    from chalicelib import ws_api

    listed = {e.name for e in WS}
    missing = sorted(set(ws_api.ACTIONS) - listed)
    assert not missing, f"add these actions to tests/e2e/isolation_table.py WS: {missing}"
    assert not listed - set(ws_api.ACTIONS), sorted(listed - set(ws_api.ACTIONS))


def test_rows_are_well_formed():
    from chalicelib.protocol.errors import ERROR_CODES

    for entry in WS + REST:
        assert set(entry.expect) == set(CASES), entry.name
        for case, want in entry.expect.items():
            if want is None:
                continue
            for code in want.split("|"):
                assert code == "ok" or code in ERROR_CODES, (entry.name, case, code)
        if any(v is None for v in entry.expect.values()):
            assert entry.why_not, f"{entry.name}: say why some cases do not apply"
        if entry in REST:
            for name in entry.params:
                assert "{" + name + "}" in entry.path, (entry.name, name)


def test_allowlist_is_only_the_routes_other_helpers_own():
    # The lead revisits this list; it must never grow to hide an ordinary route.
    assert COVERED_ELSEWHERE_PREFIXES == ("/admin/dlp", "/admin/retention", "/admin/holds", "/admin/exports",
                                          "/admin/scim", "/scim/v2")
    assert COVERED_ELSEWHERE_ROUTES == ("PUT /admin/conversations/{conversation_id}/retention",)


def test_bucket_cors_rules_are_per_stage_and_shared():
    from chalicelib.config import from_env
    from chalicelib.services.files import cors_rules
    from tools import render_infra

    assert cors_rules(from_env({})) == []  # no origins configured: no CORS rule at all
    for stage in ("dev", "prod"):
        bucket = render_infra.render_resources(stage)["Resources"]["FilesBucket"]
        rules = cors_rules(render_infra._stage_settings(stage))
        assert rules and rules[0]["AllowedMethods"] == ["GET", "HEAD", "POST"]
        assert all(o.count("*") <= 1 for o in rules[0]["AllowedOrigins"])  # S3 allows one wildcard
        assert bucket["Properties"]["CorsConfiguration"] == {"CorsRules": rules}
