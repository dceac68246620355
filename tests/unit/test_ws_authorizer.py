"""The $connect authorizer's decisions: who travels with the connection, and refusals kept structured."""
from __future__ import annotations

import json

import pytest

from chalicelib import authorizer, ws_connect
from chalicelib.auth import Principal
from chalicelib.protocol.errors import Forbidden, Unauthorized

EVENT = {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:api/dev/$connect",
         "queryStringParameters": {"token": "t"}, "headers": {}, "requestContext": {"connectionId": "c1"}}


def test_a_verified_token_is_allowed_with_the_principal_in_its_context(monkeypatch):
    alice = Principal(tenant_id="acme", user_id="u1", email="alice@acme.example", roles=("admin", "member"))
    monkeypatch.setattr(authorizer.authentication, "authenticate", lambda _verifier, token: (alice, None))
    monkeypatch.setattr(authorizer, "verifier", lambda: None)
    answer = authorizer.authorize(EVENT)
    assert answer["principalId"] == "acme#u1"
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": EVENT["methodArn"]}
    assert all(isinstance(v, str) for v in answer["context"].values())  # API Gateway takes scalars only
    assert ws_connect.principal_from(answer["context"]) == alice


@pytest.mark.parametrize("error", [Unauthorized("Token expired."), Forbidden("User is deactivated.")])
def test_a_refused_token_reaches_connect_as_the_same_structured_refusal(monkeypatch, error):
    def refuse(_verifier, _token):
        raise error

    monkeypatch.setattr(authorizer.authentication, "authenticate", refuse)
    monkeypatch.setattr(authorizer, "verifier", lambda: None)
    answer = authorizer.authorize(EVENT)
    assert "tenantId" not in answer["context"] and ws_connect.principal_from(answer["context"]) is None
    reply = ws_connect.on_connect({"requestContext": {"connectionId": "c1", "authorizer": answer["context"]}})
    assert reply["statusCode"] == error.status
    assert json.loads(reply["body"]) == {"error": {"code": error.code, "message": error.message}}


def test_an_unknown_refusal_code_is_internal_not_a_crash():
    err = ws_connect._refusal({"refusedCode": "no_such_code", "refusedStatus": 418})
    assert err.code == "internal" and err.status == 500


def test_no_authorizer_context_means_no_principal():
    assert ws_connect.principal_from(None) is None
    assert ws_connect.principal_from({"principalId": "x"}) is None
