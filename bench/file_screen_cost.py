"""What screening the text of an upload adds per file, by size: extraction + DLP, docx and txt.

Pure CPU, no stack: what ``files._check`` adds to the decision pass once
the object's bytes are read (they are read anyway, for the built-in checks
and the checksum) and the rule sets are cached: ``file_text.Collector``
(fed 256 KB chunks, as from S3) and ``files.screen_content`` with the five
built-in detectors and 10 custom rules (random business prose: now and then three numbers in a row
pass as a card, a few matches per MB, as in real text).
Also the built-in checks' own pass over the same bytes, for scale.

Sizes are of the **file**: a txt of 10 KB / 1 MB / 10 MB, and a docx whose
``word/document.xml`` holds about that much text (the docx itself is ~3-4x
smaller, compressed).  10 MB of text is above the default bound
(``FILE_SCREEN_MAX_CHARS``, 8 MiB): only the first 8 MiB are screened.

Writes bench/results/file_screen_cost.json.  Usage: python bench/file_screen_cost.py [repeats (5)]
"""
from __future__ import annotations

import io
import random
import statistics
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib import dlp, file_text  # noqa: E402
from chalicelib import scanner as scanning  # noqa: E402
from chalicelib.config import settings  # noqa: E402
from chalicelib.identity import Principal  # noqa: E402
from chalicelib.services import files  # noqa: E402
from chalicelib.services.context import Call  # noqa: E402
from stack import write_result  # noqa: E402

WORDS = ("the quarterly numbers look fine and the launch moves to monday please review the draft before "
         "noon thanks for the update order 4471 shipped to warehouse 12 invoice 2024-118 ref 55501 ok").split()
RULES = [{"id": f"b-{d}", "type": "detector", "detector": d, "action": "block"} for d in dlp.DETECTORS] + [
    {"id": f"k{i}", "type": "keyword", "action": "flag", "keywords": [f"codename{i}", f"secret plan {i}"]}
    for i in range(5)] + [
    {"id": f"r{i}", "type": "regex", "action": "block", "pattern": f"PRJ-{i}[0-9]{{6}}"} for i in range(5)]
SIZES = {"10KB": 10 * 1024, "1MB": 1024 * 1024, "10MB": 10 * 1024 * 1024}
CHUNK = 256 * 1024
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def prose(n: int, rng: random.Random) -> str:
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(14)) + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:n]


def docx_of(text: str) -> bytes:
    paras = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{line}</w:t></w:r></w:p>"
                    for line in text.split("\n") if line)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", f"<w:document {W}><w:body>{paras}</w:body></w:document>")
    return buf.getvalue()


def run(data: bytes, ctype: str, call: Call, sets: list[dlp.Ruleset], max_chars: int) -> dict[str, float]:
    t0 = time.perf_counter()
    c = file_text.Collector(ctype, max_chars)
    for i in range(0, len(data), CHUNK):
        c.feed(data[i:i + CHUNK])
    extracted = c.finish()
    t1 = time.perf_counter()
    verdict = files.screen_content(call, sets, extracted)
    t2 = time.perf_counter()
    session = scanning.builtin_checks().open(ctype, len(data))
    for i in range(0, len(data), CHUNK):
        session.feed(data[i:i + CHUNK])
    assert session.finish().clean
    t3 = time.perf_counter()
    return {"extract_ms": (t1 - t0) * 1000, "screen_ms": (t2 - t1) * 1000, "checks_ms": (t3 - t2) * 1000,
            "chars": len(extracted.text), "complete": extracted.complete, "matches": verdict.matches}


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rng = random.Random(7)
    s = settings()
    call = Call(principal=Principal("acme", "u", ""), delivery=None, clock=time.time, settings=s)
    sets = [dlp.Ruleset("acme", dlp.parse_rules(RULES))]
    rows = []
    for label, size in SIZES.items():
        text = prose(size, rng)
        for ctype, data in (("text/plain", text.encode()), (file_text.DOCX, docx_of(text))):
            runs = [run(data, ctype, call, sets, s.file_screen_max_chars) for _ in range(repeats)]
            row = {"size": label, "type": "docx" if ctype == file_text.DOCX else "txt", "file_bytes": len(data),
                   "text_chars": runs[0]["chars"], "complete": runs[0]["complete"],
                   "matches": runs[0]["matches"]}
            for k in ("extract_ms", "screen_ms", "checks_ms"):
                row[k] = round(statistics.median(r[k] for r in runs), 2)
            row["added_ms"] = round(row["extract_ms"] + row["screen_ms"], 2)
            rows.append(row)
            print(f"{label:>5} {row['type']:>4}  file {len(data):>9} B  text {row['text_chars']:>9}  "
                  f"extract {row['extract_ms']:8.2f} ms  screen {row['screen_ms']:8.2f} ms  "
                  f"added {row['added_ms']:8.2f} ms  (built-in checks {row['checks_ms']:7.2f} ms)"
                  f"{'' if row['complete'] else '  [beyond the bound]'}")
    path = write_result("file_screen_cost.json", {"repeats": repeats, "rules": len(RULES),
                                                  "max_chars": s.file_screen_max_chars, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
