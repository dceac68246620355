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
