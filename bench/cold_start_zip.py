"""Cold start as Lambda runs it: each function's own zip, extracted, imported where nothing can be written.

``bench/cold_start.py`` imports from the work tree, whose modules the venv has long compiled.  Lambda
imports from ``/var/task``, which is read-only: a module without bytecode in the zip is compiled on
every cold start and the result thrown away.  This imports each function's zip (``make package``)
as ``tools/check_function_zips.py`` does (``python -I -S -B``: only the zip, the standard library
and the runtime's boto3), twice: as shipped (with the unchecked hash-based ``.pyc`` files
``tools/split_package.py`` adds) and with every ``.pyc`` removed (what Chalice's zip gives).
Each figure is the fastest of N runs in CPU time of the importing process; the two alternate.

Usage: make package && python bench/cold_start_zip.py [runs (5)] [package dir (build/package)]
Writes bench/results/cold_start_zip.json.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.check_function_zips import function_env, runtime_dir  # noqa: E402
from tools.function_imports import function_modules  # noqa: E402
from tools.split_package import FUNCTION, plan  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from cold_start import rows_of  # noqa: E402  - as bench/cold_start.py: app.py, the handler's modules, its first event's

TIMER = """
import importlib, json, sys, time
cfg = json.loads(sys.argv[1])
sys.path[:0] = [cfg["code"], cfg["runtime"]]
t = time.process_time()
for name in ["app"] + cfg["modules"]:
    importlib.import_module(name)
print((time.process_time() - t) * 1000)
"""


def timed(code: Path, runtime: Path, modules: list[str], env: dict[str, str]) -> float:
    cfg = json.dumps({"code": str(code), "runtime": str(runtime), "modules": modules})
    out = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", TIMER, cfg], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    package = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "build" / "package"
    template = json.loads((package / "sam.json").read_text())
    functions = {k: r for k, r in template["Resources"].items() if r["Type"] == FUNCTION}
    with zipfile.ZipFile(package / "deployment.zip") as shared:
        shipped = {n.split("/")[0].removesuffix(".py") for n in shared.namelist()}
        plans = plan(shared, template)
    roots = function_modules(dispatched=False)
    results = {}
    with tempfile.TemporaryDirectory(prefix="cold-zip-") as t:
        tmp = Path(t)
        runtime = runtime_dir(tmp, shipped)
        for p in sorted(plans, key=lambda p: p.function):
            props = functions[p.logical_id]["Properties"]
            env = function_env(props)
            with_pyc, without = tmp / p.logical_id / "shipped", tmp / p.logical_id / "source-only"
            with zipfile.ZipFile(package / props["CodeUri"]) as zf:
                zf.extractall(with_pyc)
            shutil.copytree(with_pyc, without, ignore=shutil.ignore_patterns("__pycache__"))
            modules = sorted(rows_of(p.function, roots.get(p.function, set()))[0][1])
            a, b = [], []
            for _ in range(runs):
                a.append(timed(with_pyc, runtime, modules, env))
                b.append(timed(without, runtime, modules, env))
            results[p.function] = {"with_bytecode_ms": round(min(a), 1), "source_only_ms": round(min(b), 1),
                                   "saved_ms": round(min(b) - min(a), 1)}
            r = results[p.function]
            print(f"{p.function:22} shipped {r['with_bytecode_ms']:7.1f} ms   source only {r['source_only_ms']:7.1f} ms"
                  f"   saved {r['saved_ms']:6.1f} ms", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cold_start_zip.json").write_text(json.dumps({"runs": runs, "functions": results}, indent=2) + "\n")
    print("wrote bench/results/cold_start_zip.json")


if __name__ == "__main__":
    main()
