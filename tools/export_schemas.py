"""Write the protocol's JSON Schemas to docs/schemas/ (``make schemas``); a test checks they are current."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "schemas"


def rendered() -> dict[str, str]:
    from chalicelib.protocol import schemas
    from chalicelib.protocol.errors import ERROR_CODES

    files = {"envelope.json": schemas.ENVELOPE}
    files.update({f"in/{name}.json": s for name, s in schemas.INBOUND.items()})
    files.update({f"out/{name}.json": s for name, s in schemas.OUTBOUND.items()})
    files["error-codes.json"] = {code: {"status": st, "meaning": m} for code, (st, m) in ERROR_CODES.items()}
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def main() -> int:
    for name, text in rendered().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(rendered())} schema files under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
