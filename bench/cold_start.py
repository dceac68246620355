"""Cold-start import cost per Lambda function, against that function's own dependency floor.

A Lambda container of function F imports ``app`` (every function's handler
module), then, on its first event, the chalicelib modules F's handler
imports (read from app.py: ``tools/function_imports.py``) and those its
first event loads inside functions (FIRST_EVENT, read from the code: the
Env, the outbox, the token verifier, the action's service), and builds its
first boto3 client.  Its *floor* is what no code of ours can avoid: the
third-party modules F ends up with (boto3 always, pynamodb's models and
attributes, pyjwt, ..., found by importing F's modules once and listing every
third-party module then loaded).  Over the floor is what our code and Chalice
cost; the goal is at most 30 ms per function.  Chalice's share is measured
apart (the floor plus ``chalice.app``), so "ours" is what chalicelib and
app.py add.  A function that dispatches to services by action or route is
measured with a typical first one: ``websocket_message`` with
``message.send``, ``api_handler`` with the REST ``history`` route (the
messages service); ``api_handler (every route)`` is a container that has
served every REST route.

Our modules are byte-compiled first (``compileall``), as the function zips
carry their bytecode (``tools/split_package.py``): a stale ``__pycache__``
would add the compiler to the figure.

Each figure is the fastest of N fresh interpreters, in CPU time of the
importing process (an import is CPU-bound; wall time on a shared machine
follows its load, and a run can only be slowed, never sped up); floor and
function runs alternate.  ``--top-level-floor`` measures the floor as the
top-level packages only (``import pynamodb`` loads none of its models: the
first figures in docs/proof.md were taken so).

``--instructions`` also counts each import's instructions under valgrind (one run each, deterministic)
and gives the excess over the floor in instructions and in ms at the floor's own rate: the figure to
compare two revisions by, as CPU times of the same import move by 10-20% between runs here.

Usage: python bench/cold_start.py [runs (7)] [--before=<git rev>] [--top-level-floor] [--instructions]
Writes bench/results/cold_start.json.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import function_modules  # noqa: E402

# What a function's first event imports inside functions, besides its handler's module (read from
# the code; tests/unit/test_imports.py checks each is in the function's package closure):
# services' Env (runtime.env), the invocation's outbox (runtime.outbox: fan-out, events, posts), the
# token verifier, the action's or route's service.  The label names the event.
_ENV = {"chalicelib.services.context"}
_OUTBOX = {"chalicelib.fanout", "chalicelib.services.events", "chalicelib.delivery"}
FIRST_EVENT: dict[str, tuple[str, set[str]]] = {
    "ws_authorizer": ("a token", {"chalicelib.token_verifier"}),
    "websocket_connect": ("a connect", {"chalicelib.services.presence"} | _ENV | _OUTBOX),
    "websocket_disconnect": ("a disconnect", {"chalicelib.services.presence"} | _ENV | _OUTBOX),
    "websocket_message": ("message.send", {"chalicelib.services.messages"} | _ENV | _OUTBOX),
    "api_handler": ("history", {"chalicelib.token_verifier", "chalicelib.services.messages"} | _ENV | _OUTBOX),
    "presence_flush": ("a flush", _ENV | _OUTBOX),
    "deliver": ("a shard", {"chalicelib.fair"} | _ENV | _OUTBOX),
    "compliance_job": ("a hold sweep", {"chalicelib.services.compliance"} | _ENV),
    "file_uploaded": ("an upload", {"chalicelib.scanner"} | _ENV | _OUTBOX),
    "file_scan_retry": ("a retry", {"chalicelib.scanner"} | _ENV | _OUTBOX),
    "file_scan_result": ("a verdict", _ENV | _OUTBOX),
}
# CPU time of the importing process, not wall time: an import is CPU-bound, and on a shared machine the
# wall clock mostly measures waiting for a core (the figures would follow the machine's load).
TIMER = "import time,sys\nt=time.process_time()\n{stmt}\nprint((time.process_time()-t)*1000)"
THIRD_PARTY_OF = """
import sys, json
{stmt}
ours = {{'app', 'chalicelib', 'chalice', '__main__', 'tools'}}
mods = [m for m in sys.modules if m.split('.')[0] not in ours and m.split('.')[0] not in sys.stdlib_module_names
        and not any(part.startswith('_') for part in m.split('.'))]
print(json.dumps(sorted(mods)))
"""
# The floor imports each of those modules; a name some package only registers at run time (six.moves.*)
# cannot be imported by itself and is left to its package.
FLOOR = "for _m in {mods!r}:\n    try: __import__(_m)\n    except Exception: pass"
ENV = dict(os.environ, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", PYTHONDONTWRITEBYTECODE="1",
           LOG_LEVEL="WARNING")


def _run(code: str, cwd: Path = ROOT) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def rows_of(function: str, modules: set[str]) -> list[tuple[str, set[str]]]:
    """(row name, chalicelib modules a cold start of ``function`` imports): its handler's modules and its
    first event's (FIRST_EVENT); for the REST function also a container that has served every route."""
    if function not in FIRST_EVENT:
        return [(function, modules)]
    label, first = FIRST_EVENT[function]
    # REST routes load their modules (a service, discovery) on their own first request: the event's only
    handler = {"chalicelib.rest_api"} if function == "api_handler" else modules
    rows = [(f"{function} ({label})", handler | first)]
    if function == "api_handler":
        rows.append((f"{function} (every route)", modules | first))
    return rows


def instructions(code: str, cwd: Path = ROOT) -> int:
    """Instructions the interpreter runs for ``code`` (valgrind's callgrind): deterministic to a few
    in 10^7 with a fixed hash seed, where CPU time on this shared machine moves by 10-20%."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code],
                         cwd=cwd, env=dict(ENV, PYTHONHASHSEED="0"), capture_output=True, text=True, check=True)
    return int(re.search(r"I\s+refs:\s+([\d,]+)", out.stderr).group(1).replace(",", ""))


def count(pairs: dict[str, tuple[str, str]], timed: dict[str, dict[str, float]],
          cwd: Path = ROOT) -> dict[str, dict[str, float]]:
    """Per function: instructions of the floor and over it (ours, Chalice), and that excess in ms at the
    rate the floor itself ran (its fastest time over its instructions past interpreter start)."""
    start = instructions("pass", cwd)
    out = {}
    for function, (floor_stmt, cold_stmt) in pairs.items():
        floor, framework, cold = (instructions(c, cwd) for c in
                                  (floor_stmt, floor_stmt + "\nimport chalice.app", cold_stmt))
        ms_per_instruction = timed[function]["floor_ms"] / (floor - start)
        out[function] = {"floor_minstr": round((floor - start) / 1e6, 1),
                         "over_floor_minstr": round((cold - floor) / 1e6, 1),
                         "chalice_minstr": round((framework - floor) / 1e6, 1),
                         "over_floor_ms_by_instructions": round((cold - floor) * ms_per_instruction, 1)}
    return out


def statement(modules: set[str]) -> str:
    return "; ".join(["import app", *(f"import {m}" for m in sorted(modules)), "import boto3"])


def floor_modules(stmt: str, cwd: Path = ROOT) -> list[str]:
    """Every third-party module importing ``stmt`` loads (dotted names, private ones left to their package)."""
    return json.loads(_run(THIRD_PARTY_OF.format(stmt=stmt), cwd))


def floor_statement(modules: list[str], top_level: bool) -> str:
    if top_level:
        return "import " + ", ".join(sorted({m.split(".")[0] for m in modules} | {"boto3"}))
    return FLOOR.format(mods=sorted(set(modules) | {"boto3"}))


def packages(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules})


def compile_ours(tree: Path) -> None:
    """Bytecode for app.py and chalicelib, as the function zips carry it (PYTHONDONTWRITEBYTECODE is set)."""
    import compileall

    compileall.compile_dir(str(tree / "chalicelib"), quiet=1)
    compileall.compile_file(str(tree / "app.py"), quiet=1)


def measure(pairs: dict[str, tuple[str, str]], runs: int, cwd: Path = ROOT) -> dict[str, dict[str, float]]:
    """Per function: the floor, the floor with Chalice, and the function's cold import (fastest run, ms CPU)."""
    kinds = ("floor", "framework", "cold")
    samples: dict[str, dict[str, list[float]]] = {f: {k: [] for k in kinds} for f in pairs}
    for _ in range(runs):
        for function, (floor_stmt, cold_stmt) in pairs.items():
            stmts = {"floor": floor_stmt, "framework": floor_stmt + "\nimport chalice.app", "cold": cold_stmt}
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
    top_level = "--top-level-floor" in sys.argv
    compile_ours(ROOT)
    pairs, packages_of = {}, {}
    functions = sorted(function_modules(dispatched=False).items())
    for function, modules in functions:
        rows = rows_of(function, modules)
        for name, mods in rows:
            cold = statement(mods)
            deps = floor_modules(cold)
            packages_of[name] = packages(deps)
            pairs[name] = (floor_statement(deps, top_level), cold)
    before = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--before=")), None)
    if before:  # every function of that revision imported all of app.py: one row for all of them
        tree = Path("/tmp") / f"cold-start-{before}"
        if not tree.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), before], cwd=ROOT, check=True,
                           capture_output=True)
        compile_ours(tree)
        stmt = "import app; import boto3"
        deps = floor_modules(stmt, tree)
        packages_of[f"every function @{before}"] = packages(deps)
        results_before = measure({f"every function @{before}": (floor_statement(deps, top_level), stmt)}, runs, tree)
    results = measure(pairs, runs)
    if "--instructions" in sys.argv:
        for function, counted in count(pairs, results).items():
            results[function].update(counted)
    if before:
        results = {**results_before, **results}
    print(f"{'function':32} {'floor ms':>9} {'cold ms':>8} {'over floor':>11} {'Chalice':>8} {'ours':>6}"
          + ("  over floor (M instr, ~ms)" if "--instructions" in sys.argv else "") + f"  floor = (runs={runs})")
    for function, r in results.items():
        by_count = (f"  {r['over_floor_minstr']:12.1f} {r['over_floor_ms_by_instructions']:6.1f}"
                    if "over_floor_minstr" in r else "")
        print(f"{function:32} {r['floor_ms']:9.1f} {r['cold_ms']:8.1f} {r['over_floor_ms']:11.1f} "
              f"{r['chalice_ms']:8.1f} {r['ours_ms']:6.1f}{by_count}  {', '.join(packages_of[function])}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    floor = "top-level packages" if top_level else "every third-party module loaded"
    (out / "cold_start.json").write_text(json.dumps({"runs": runs, "floor": floor, "functions": results,
                                                    "floor_packages": packages_of}, indent=2) + "\n")
    print("wrote bench/results/cold_start.json")


if __name__ == "__main__":
    main()
