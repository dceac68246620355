"""The local S3 front's CORS matching (devstack/s3_gateway.py), against the rules the bucket deploys. Pure logic."""
from __future__ import annotations

from chalicelib.config import from_env
from chalicelib.services.files import cors_rules
from devstack.s3_gateway import S3Front


def _front() -> S3Front:
    rules = cors_rules(from_env({"FILES_CORS_ORIGINS": "http://127.0.0.1:*, https://*.example.com"}))
    return S3Front("http://upstream", credentials={"k": "s"}, region="us-east-1", cors_rules=rules)


def test_origin_method_and_headers_must_all_match():
    front = _front()
    assert front._cors_rule("http://127.0.0.1:8080", "POST", ["Content-Type"]) is not None
    assert front._cors_rule("https://chat.example.com", "GET", ["range"]) is not None
    assert front._cors_rule("https://example.com.evil.net", "GET", []) is None
    assert front._cors_rule("http://localhost:8080", "GET", []) is None
    assert front._cors_rule("http://127.0.0.1:8080", "PUT", []) is None
    assert front._cors_rule("http://127.0.0.1:8080", "DELETE", []) is None
    assert front._cors_rule("http://127.0.0.1:8080", "POST", ["x-amz-meta-owner"]) is None


def test_allow_headers_echo_the_origin_not_a_wildcard():
    front = _front()
    rule = front._cors_rule("http://127.0.0.1:9", "GET", [])
    headers = front._allow(rule, "http://127.0.0.1:9")
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"
    assert "ETag" in headers["Access-Control-Expose-Headers"] and headers["Access-Control-Max-Age"] == "3000"
    assert "Origin" in headers["Vary"]


def test_no_origins_configured_means_no_cors():
    assert cors_rules(from_env({})) == []
    assert S3Front("http://upstream", credentials={}, region="us-east-1").cors_rules == []
