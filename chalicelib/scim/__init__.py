"""SCIM 2.0 directory sync (RFC 7643/7644): the ``scim`` Lambda function's code (docs/scim.md).

Only ``app.scim`` imports this package, and only when invoked: scim2-models
and pydantic cost ~0.6-0.75 s to import, which the WebSocket and REST
functions must never pay (tests/unit/test_scim_filters.py checks that
``import app`` loads neither).
"""
