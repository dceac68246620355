"""Frame parsing: pure logic, no network."""
import json

import pytest

from chalicelib.protocol import frames, schemas
from chalicelib.protocol.errors import ERROR_CODES, RateLimited

LIMIT = 16 * 1024


def _err(body, is_base64=False):
    with pytest.raises(frames.FrameError) as info:
        frames.parse(body, is_base64=is_base64, max_bytes=LIMIT)
    return info.value


def test_valid_ping():
    f = frames.parse('{"action":"ping","requestId":"r1"}', is_base64=False, max_bytes=LIMIT)
    assert (f.action, f.request_id) == ("ping", "r1")


@pytest.mark.parametrize("body,code,rid", [
    ("nope", "invalid_json", None),
    ("", "invalid_json", None),
    ("[]", "invalid_frame", None),
    ("null", "invalid_frame", None),
    ('{"action":"ping","requestId":"r","x":Infinity}', "invalid_json", None),
    ('{"action":"x.y","requestId":"r2"}', "unknown_action", "r2"),
    ('{"action":"","requestId":"r3"}', "validation_failed", "r3"),
    ('{"requestId":"r4"}', "validation_failed", "r4"),
    ('{"action":"ping"}', "validation_failed", None),
    ('{"action":"ping","requestId":""}', "validation_failed", None),
    ('{"action":"ping","requestId":"' + "x" * 65 + '"}', "validation_failed", None),
    ('{"action":"ping","requestId":"r5","extra":1}', "validation_failed", "r5"),
    ("[" * 3000 + "]" * 3000, "invalid_json", None),
])
def test_rejections(body, code, rid):
    err = _err(body)
    assert err.error.code == code
    assert err.request_id == rid


def test_binary_and_oversize():
    assert _err("e30=", is_base64=True).error.code == "invalid_frame"
    big = _err(json.dumps({"action": "ping", "requestId": "r", "p": "é" * LIMIT}))
    assert big.error.code == "payload_too_large" and big.error.fields["limit"] == LIMIT


def test_error_frame_shape_matches_schema():
    import jsonschema

    frame = frames.error_frame(RateLimited(1.5), "r9")
    jsonschema.validate(frame, schemas.OUTBOUND["error"])
    assert frame["error"] == {"code": "rate_limited", "message": ERROR_CODES["rate_limited"][1],
                              "retryAfter": 1.5}


def test_every_schema_is_valid_draft7():
    import jsonschema

    for schema in list(schemas.INBOUND.values()) + list(schemas.OUTBOUND.values()) + [schemas.ENVELOPE]:
        jsonschema.Draft7Validator.check_schema(schema)
