"""The published schemas and error codes in docs/ match the code (one source of truth)."""
from pathlib import Path

from tools.export_schemas import OUT, rendered
from chalicelib.protocol.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]


def test_schema_files_are_current():
    for name, text in rendered().items():
        path = OUT / name
        assert path.exists() and path.read_text() == text, f"{name} is stale: run `make schemas`"
    published = {str(p.relative_to(OUT)) for p in OUT.rglob("*.json")}
    assert published == {n for n in rendered() if not n.startswith("../")}, \
        "stale schema files in docs/schemas: run `make schemas`"


def test_openapi_document_is_valid():
    import json

    from openapi_spec_validator import validate

    validate(json.loads((ROOT / "docs" / "openapi.json").read_text()))


def test_every_error_code_is_documented():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, f"error code {code} missing from docs/protocol.md"


def test_asyncapi_document_is_valid():
    """Against the official AsyncAPI 3.0.0 JSON Schema (tests/unit/data/, from npm @asyncapi/specs 6.11.1,
    Apache-2.0, the ``-without-$id`` variant, minified)."""
    import json

    import jsonschema

    spec = json.loads((ROOT / "tests" / "unit" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    doc = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(spec).iter_errors(doc)]
    assert not errors, errors


def test_asyncapi_covers_every_action_the_socket_dispatches_and_every_frame_it_sends():
    import json

    from chalicelib import ws_api
    from chalicelib.protocol.schemas import OUTBOUND

    doc = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    received = {op["title"] for op in doc["operations"].values() if op["action"] == "receive"}
    assert set(ws_api.ACTIONS) <= received, sorted(set(ws_api.ACTIONS) - received)
    sent = {op["title"] for op in doc["operations"].values() if op["action"] == "send"}
    replies = {m["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values()
               for m in op.get("reply", {}).get("messages", [])}
    assert set(OUTBOUND) - {"ack", "pong", "error"} <= sent
    assert {"pong", "error"} <= replies and any(r.startswith("ack") for r in replies)
    messages = doc["channels"]["socket"]["messages"]
    for op in doc["operations"].values():
        for ref in op["messages"] + op.get("reply", {}).get("messages", []):
            assert ref["$ref"].rsplit("/", 1)[1] in messages, ref
