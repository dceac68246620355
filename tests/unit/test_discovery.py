"""GET /auth/discovery (chalicelib/discovery.py): a domain's issuer and client id, one answer for every miss."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from chalicelib import discovery
from chalicelib.models import DomainClaim, Tenant

TENANTS = {
    "acme": SimpleNamespace(status="active", domains=["acme.example"], issuer="https://login.acme.example",
                            audience="enterprise-chat", web_client_id=None),
    "initech": SimpleNamespace(status="active", domains=["initech.example"], issuer="https://idp.initech.example",
                               audience="api://chat", web_client_id="spa-123"),
    "gone": SimpleNamespace(status="suspended", domains=["gone.example"], issuer="https://gone.example",
                            audience="enterprise-chat", web_client_id=None),
}
CLAIMS = {"acme.example": "acme", "initech.example": "initech", "gone.example": "gone", "stale.example": "acme"}


@pytest.fixture(autouse=True)
def tables(monkeypatch):
    def claim(domain):
        if domain not in CLAIMS:
            raise DomainClaim.DoesNotExist()
        return SimpleNamespace(tenant_id=CLAIMS[domain])

    def tenant(tenant_id):
        if tenant_id not in TENANTS:
            raise Tenant.DoesNotExist()
        return TENANTS[tenant_id]

    monkeypatch.setattr(DomainClaim, "get", classmethod(lambda cls, d: claim(d)))
    monkeypatch.setattr(Tenant, "get", classmethod(lambda cls, t: tenant(t)))


def test_a_registered_domain_answers_its_issuer_and_client_id():
    assert discovery.handle({"domain": "Acme.Example."})[:2] == (200, {
        "domain": "acme.example", "issuer": "https://login.acme.example", "clientId": "enterprise-chat"})
    assert discovery.handle({"domain": "peter@initech.example"})[1]["clientId"] == "spa-123"


@pytest.mark.parametrize("query", [{"domain": "nobody.example"}, {"domain": "gone.example"},
                                   {"domain": "stale.example"}, {"domain": "a b"}, {"domain": "x" * 300},
                                   {"domain": ""}, {}, None])
def test_every_miss_gets_the_same_answer(query):
    status, body, headers = discovery.handle(query)
    assert (status, body) == (404, {"error": {"code": "not_found", "message": discovery.NOT_FOUND}})
    assert "max-age" in headers["Cache-Control"]
