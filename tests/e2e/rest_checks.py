"""Checks of REST answers shared by the e2e tests: a reply that matches its documented schema, a refusal."""
from __future__ import annotations

import jsonschema

from chalicelib.protocol import schemas


def ok(resp, action: str, status: int = 200) -> dict:
    """The reply of ``action`` with ``status``, valid against its schema (``schemas.RESPONSES``)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    jsonschema.validate(body, schemas.RESPONSES[action])
    return body


def refused(resp, code: str) -> dict:
    """The structured error of a refused request, with ``code``."""
    assert resp.json().get("error", {}).get("code") == code, (resp.status_code, resp.text)
    return resp.json()["error"]
