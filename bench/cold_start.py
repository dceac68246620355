"""Cold-start import cost per Lambda function, against that function's own dependency floor.

A Lambda container of function F imports ``app`` (every function's handler
module), then, on its first event, the chalicelib modules F's handler
imports (read from app.py: ``tools/function_imports.py``), and builds its
first boto3 client.  Its *floor* is what no code of ours can avoid: the
third-party packages F ends up with (boto3 always, pynamodb, pyjwt, ...,
found by importing F's modules once and listing them).  Over the floor is
what our code and Chalice cost; the goal is at most 30 ms per function.  Chalice's share is
measured apart (the floor plus ``chalice.app``), so "ours" is what chalicelib and app.py add.  ``websocket_message``
loads an action's service on its first use and is measured with ``message.send`` (FIRST_ACTION).

Each figure is the fastest of N fresh interpreters, in CPU time of the
importing process (an import is CPU-bound; wall time on a shared machine
follows its load, and a run can only be slowed, never sped up); floor and
function runs alternate.

Usage: python bench/cold_start.py [runs (7)] [--before=<git rev>]
Writes bench/results/cold_start.json.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import function_modules  # noqa: E402

# CPU time of the importing process, not wall time: an import is CPU-bound, and on a shared machine the
# wall clock mostly measures waiting for a core (the figures would follow the machine's load).
# websocket_message loads an action's service on its first use: measured with the typical first one.
FIRST_ACTION = {"websocket_message": ("message.send", "chalicelib.services.messages")}
TIMER = "import time,sys; t=time.process_time(); {stmt}; print((time.process_time()-t)*1000)"
THIRD_PARTY_OF = """
import sys, json
{stmt}
std = set(sys.stdlib_module_names)
tops = sorted({{m.split('.')[0] for m in sys.modules}} - std - {{'app', 'chalicelib', 'chalice', '__main__', 'tools'}})
print(json.dumps([t for t in tops if not t.startswith('_')]))
"""
ENV = dict(os.environ, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", PYTHONDONTWRITEBYTECODE="1",
           LOG_LEVEL="WARNING")


def _run(code: str, cwd: Path = ROOT) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def statement(modules: set[str]) -> str:
    return "; ".join(["import app", *(f"import {m}" for m in sorted(modules)), "import boto3"])


def floor_packages(stmt: str) -> list[str]:
    return json.loads(_run(THIRD_PARTY_OF.format(stmt=stmt)))


def measure(pairs: dict[str, tuple[str, str]], runs: int, cwd: Path = ROOT) -> dict[str, dict[str, float]]:
    """Per function: the floor, the floor with Chalice, and the function's cold import (fastest run, ms CPU)."""
    kinds = ("floor", "framework", "cold")
    samples: dict[str, dict[str, list[float]]] = {f: {k: [] for k in kinds} for f in pairs}
    for _ in range(runs):
        for function, (floor_stmt, cold_stmt) in pairs.items():
            stmts = {"floor": floor_stmt, "framework": floor_stmt + ", chalice.app", "cold": cold_stmt}
            for kind in kinds:
                samples[function][kind].append(float(_run(TIMER.format(stmt=stmts[kind]), cwd)))
    out = {}
    for f, s in samples.items():
        # the fastest of the runs: an import is CPU-bound, so a run can only be slowed (by a neighbour,
        # a cache), never sped up; on this shared machine medians of the same import moved by 50 ms
        floor, framework, cold = (min(s[k]) for k in kinds)
        out[f] = {"floor_ms": round(floor, 1), "cold_ms": round(cold, 1), "over_floor_ms": round(cold - floor, 1),
                  "chalice_ms": round(framework - floor, 1), "ours_ms": round(cold - framework, 1)}
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    runs = int(args[0]) if args else 7
    pairs, packages = {}, {}
    for function, modules in sorted(function_modules(dispatched=False).items()):
        if function in FIRST_ACTION:  # a socket action's service loads on the action's first use
            function, modules = f"{function} ({FIRST_ACTION[function][0]})", modules | {FIRST_ACTION[function][1]}
        cold = statement(modules)
        deps = floor_packages(cold)
        packages[function] = deps
        pairs[function] = ("import " + ", ".join(sorted(set(deps) | {"boto3"})), cold)
    before = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--before=")), None)
    if before:  # every function of that revision imported all of app.py: one row for all of them
        tree = Path("/tmp") / f"cold-start-{before}"
        if not tree.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), before], cwd=ROOT, check=True,
                           capture_output=True)
        stmt = "import app; import boto3"
        deps = json.loads(_run(THIRD_PARTY_OF.format(stmt=stmt), tree))
        packages[f"every function @{before}"] = deps
        results_before = measure({f"every function @{before}": ("import " + ", ".join(sorted(set(deps) | {"boto3"})),
                                                               stmt)}, runs, tree)
    results = measure(pairs, runs)
    if before:
        results = {**results_before, **results}
    print(f"{'function':32} {'floor ms':>9} {'cold ms':>8} {'over floor':>11} {'Chalice':>8} {'ours':>6}"
          f"  floor = (runs={runs})")
    for function, r in results.items():
        print(f"{function:32} {r['floor_ms']:9.1f} {r['cold_ms']:8.1f} {r['over_floor_ms']:11.1f} "
              f"{r['chalice_ms']:8.1f} {r['ours_ms']:6.1f}  {', '.join(packages[function])}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cold_start.json").write_text(json.dumps({"runs": runs, "functions": results, "floor_packages": packages},
                                                    indent=2) + "\n")
    print("wrote bench/results/cold_start.json")


if __name__ == "__main__":
    main()
