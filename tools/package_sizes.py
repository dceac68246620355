"""What each Lambda function ships and what it imports of it, from the package ``make package`` built.

``chalice package`` builds one ``deployment.zip`` and points every function's
``CodeUri`` at it (it has no per-function packaging), so every function
ships the same bytes.  This tool reads that zip and, per function, sums the
parts the function imports on a cold start (its third-party packages, found
by importing its modules as ``bench/cold_start.py`` does, plus ``app.py``,
``chalicelib`` and ``chalice``): what a per-function package would hold.

    make package && .venv/bin/python tools/package_sizes.py [build/package/deployment.zip]
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import function_modules  # noqa: E402

THIRD_PARTY = """
import sys, json
import app
{imports}
import boto3
std = set(sys.stdlib_module_names)
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} - std)))
"""


def parts(zip_path: Path) -> dict[str, tuple[int, int]]:
    """Top-level entry (package, module, or ``*.dist-info`` folded into its package) -> (zipped, unzipped) bytes."""
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            top = info.filename.split("/", 1)[0]
            if top.endswith(".py"):
                top = top[:-3]
            elif top.endswith((".dist-info", ".libs")):
                top = top.split("-", 1)[0].split(".", 1)[0].lower()
            sizes[top][0] += info.compress_size
            sizes[top][1] += info.file_size
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def imported(modules: set[str]) -> list[str]:
    code = THIRD_PARTY.format(imports="\n".join(f"import {m}" for m in sorted(modules)))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "LOG_LEVEL": "WARNING"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    zip_path = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "package" / "deployment.zip"
    sizes = parts(zip_path)
    total = (zip_path.stat().st_size, sum(u for _, u in sizes.values()))
    mb = 1024 * 1024
    print(f"deployment.zip (every function): {total[0] / mb:.1f} MB zipped, {total[1] / mb:.1f} MB unzipped")
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1][1])[:8]
    print("largest parts: " + ", ".join(f"{k} {u / mb:.1f} MB" for k, (_, u) in biggest))
    print(f"\n{'function':22} {'imports, zipped MB':>18} {'unzipped MB':>12}  not needed of the shared zip")
    rows = {}
    for function, modules in sorted(function_modules().items()):
        names = {n.lower() for n in imported(modules)} | {"app", "chalicelib", "chalice"}
        needed = [k for k in sizes if k.lower() in names]
        z = sum(sizes[k][0] for k in needed)
        u = sum(sizes[k][1] for k in needed)
        unused = sorted((k for k in sizes if k not in needed), key=lambda k: -sizes[k][1])[:4]
        rows[function] = {"zipped": z, "unzipped": u, "parts": sorted(needed)}
        print(f"{function:22} {z / mb:18.1f} {u / mb:12.1f}  {', '.join(unused)}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "package_sizes.json").write_text(json.dumps({"zip": {"zipped": total[0], "unzipped": total[1]},
                                                        "parts": sizes, "functions": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
