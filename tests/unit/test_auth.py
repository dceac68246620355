"""Token verification logic with an in-memory JWKS (no network)."""
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chalicelib.auth import (JwksCache, TenantDirectory, TenantIdentity, TokenVerifier,
                             token_from_authorization, token_from_ws_connect)
from chalicelib.protocol.errors import Forbidden, Unauthorized

ISS = "https://idp.acme.example"
TENANT = TenantIdentity(tenant_id="acme", issuer=ISS, audience="chat", domains=("acme.example",))
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwks():
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key()))
    rsa_jwk.update(kid="r1", alg="RS256")
    ec_jwk.update(kid="e1", alg="ES256")
    return {"keys": [rsa_jwk, ec_jwk]}


class FakeHttp:
    def __init__(self):
        self.calls = []

    def __call__(self, url):
        self.calls.append(url)
        if url.endswith("openid-configuration"):
            return {"issuer": ISS, "jwks_uri": ISS + "/jwks"}
        return _jwks()


def _verifier(http=None, clock=None):
    http = http or FakeHttp()
    jwks = JwksCache(30, http_get=http, clock=clock or time.monotonic)
    return TokenVerifier(lambda iss: TENANT if iss == ISS else None, jwks, 5), http


def _token(key=RSA_KEY, alg="RS256", kid="r1", **claims):
    now = int(time.time())
    body = {"iss": ISS, "aud": "chat", "sub": "u1", "iat": now, "exp": now + 60,
            "email": "Alice@Acme.Example", "roles": ["admin"]}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid})


def test_rs256_and_es256_accepted_and_principal_built():
    v, http = _verifier()
    p, tenant = v.verify(_token())
    assert (p.tenant_id, p.user_id, p.email, p.roles, p.is_admin) == \
        ("acme", "u1", "alice@acme.example", ("admin",), True)
    p2, _ = v.verify(_token(EC_KEY, "ES256", "e1", roles="member guest"))
    assert p2.roles == ("guest", "member")
    assert len(http.calls) == 2  # discovery + jwks once, then cached


@pytest.mark.parametrize("claims", [
    {"exp": -100}, {"nbf": 100}, {"aud": "other"}, {"exp": None}, {"iat": None}, {"sub": None},
])
def test_bad_claims_unauthorized(claims):
    # times are offsets from now, computed when the test runs (not at collection)
    claims = {k: int(time.time()) + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    v, _ = _verifier()
    with pytest.raises(Unauthorized):
        v.verify(_token(**claims))


def test_subject_claim_is_configurable_per_tenant():
    tenant = TENANT._replace(subject_claim="oid")
    v = TokenVerifier(lambda iss: tenant if iss == ISS else None, JwksCache(30, http_get=FakeHttp()), 5)
    p, _ = v.verify(_token(oid="object-7"))
    assert p.user_id == "object-7"
    with pytest.raises(Unauthorized):
        v.verify(_token())  # no oid claim: no user


def test_email_outside_domains_forbidden():
    v, _ = _verifier()
    with pytest.raises(Forbidden):
        v.verify(_token(email="eve@globex.example"))


def test_unknown_issuer_and_missing_token():
    v, _ = _verifier()
    with pytest.raises(Unauthorized):
        v.verify(_token(iss="https://other"))
    with pytest.raises(Unauthorized):
        v.verify(None)


def test_unknown_kid_refetch_is_rate_limited():
    now = [1000.0]
    v, http = _verifier(clock=lambda: now[0])
    v.verify(_token())
    n = len(http.calls)
    with pytest.raises(Unauthorized):
        v.verify(_token(kid="rotated"))
    assert len(http.calls) == n  # within the refetch interval: no new fetch
    now[0] += 31
    with pytest.raises(Unauthorized):
        v.verify(_token(kid="rotated"))
    assert len(http.calls) == n + 2  # one discovery + one JWKS refetch


def test_hmac_and_none_refused():
    v, _ = _verifier()
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode({"iss": ISS}, "s" * 32, algorithm="HS256", headers={"kid": "r1"}))
    unsigned = jwt.encode({"iss": ISS}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        v.verify(unsigned)


def test_token_extraction():
    assert token_from_ws_connect({}, {"token": "abc"}) == "abc"
    assert token_from_ws_connect({"Sec-WebSocket-Protocol": "chat.v1, bearer.x.y.z"}, None) == "x.y.z"
    assert token_from_ws_connect({"sec-websocket-protocol": "chat.v1"}, {}) is None
    assert token_from_authorization({"Authorization": "Bearer t0k"}) == "t0k"
    assert token_from_authorization({"authorization": "Basic Zm9v"}) is None


def test_tenant_directory_caches():
    calls = []
    now = [0.0]
    d = TenantDirectory(lambda iss: calls.append(iss) or TENANT, 30, clock=lambda: now[0])
    d(ISS), d(ISS)
    now[0] = 31
    d(ISS)
    assert calls == [ISS, ISS]
