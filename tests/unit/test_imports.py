"""Import boundaries: each Lambda function loads only what it runs, and chalicelib has no import cycle.

Each function's modules are read from app.py (``tools/function_imports.py``)
and imported in a fresh interpreter, as a cold Lambda container would on its
first event; what ends up in ``sys.modules`` is checked against the lines
the issue drew (docs/operations.md "Functions, roles and packages").
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from tools.function_imports import function_modules

ROOT = Path(__file__).resolve().parents[2]
SCIM = {"scim2_models", "pydantic", "chalicelib.scim", "chalicelib.scim.api"}
EXPORTS = {"chalicelib.services.exports", "chalicelib.compliance_events"}
ADMIN = {"chalicelib.services.admin"}
MESSAGE_PATH = {"chalicelib.services.messages", "chalicelib.dlp", "chalicelib.services.screening",
                "chalicelib.services.files", "chalicelib.scanner", "re2"}
DELIVERY_PATH = {"chalicelib.delivery_worker", "chalicelib.fanout", "chalicelib.services.events",
                 "chalicelib.services.rosters"}
JWT = {"jwt", "cryptography", "chalicelib.auth"}
PRESENCE = {"chalicelib.services.presence", "chalicelib.policy"}  # what connects and disconnects publish
CONNECTIONS = {"chalicelib.services.connections", "chalicelib.models.presence"}  # the connection records
SOCKET_FUNCTIONS = ("ws_authorizer", "websocket_connect", "websocket_message", "websocket_disconnect",
                    "presence_flush", "deliver")

# What each function must never load (beyond the shared lines above).
NEVER = {
    "ws_authorizer": SCIM | EXPORTS | MESSAGE_PATH | DELIVERY_PATH | PRESENCE | CONNECTIONS,
    "websocket_connect": SCIM | EXPORTS | MESSAGE_PATH | JWT,
    "websocket_disconnect": SCIM | EXPORTS | MESSAGE_PATH | JWT,
    "websocket_message": SCIM | EXPORTS | JWT | ADMIN,  # the send path never loads company administration
    "presence_flush": SCIM | EXPORTS | MESSAGE_PATH | JWT,
    "deliver": SCIM | EXPORTS | MESSAGE_PATH | JWT,
    "scim": DELIVERY_PATH | MESSAGE_PATH | EXPORTS,
    "compliance_job": SCIM | JWT,
    "api_handler": SCIM,
    "file_uploaded": SCIM | EXPORTS | JWT,
    "file_scan_retry": SCIM | EXPORTS | JWT,
    "file_scan_result": SCIM | EXPORTS | JWT,
}


@lru_cache(maxsize=None)
def _loaded(modules: frozenset[str]) -> frozenset[str]:
    code = "import sys, json, app\n" + "".join(f"import {m}\n" for m in sorted(modules)) + \
        "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "LOG_LEVEL": "WARNING"})
    return frozenset(json.loads(out.stdout.strip().splitlines()[-1]))


def test_every_function_of_app_py_has_boundaries():
    assert set(function_modules()) == set(NEVER)


def test_importing_app_loads_no_handler_code():
    loaded = _loaded(frozenset())
    ours = {m for m in loaded if m.startswith("chalicelib")}
    assert ours <= {"chalicelib", "chalicelib.config", "chalicelib.stage_settings", "chalicelib.logs",
                    "chalicelib.management"}, sorted(ours)
    assert not {"boto3", "pynamodb", "jwt"} & loaded


@pytest.mark.parametrize("function", sorted(NEVER))
def test_a_function_loads_only_what_it_runs(function):
    loaded = _loaded(frozenset(function_modules()[function]))
    assert not NEVER[function] & loaded, sorted(NEVER[function] & loaded)


def test_the_cold_start_bench_loads_what_a_first_event_may_load():
    """bench/cold_start.py adds, per function, the modules its first event imports inside functions
    (FIRST_EVENT, read from the code): each must be one the function's package can load at all."""
    sys.path.insert(0, str(ROOT / "bench"))
    from cold_start import FIRST_EVENT
    from tools.function_imports import closure, dispatched_services

    sources = {}
    for path in (ROOT / "chalicelib").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = path.name == "__init__.py"
        sources[".".join(parts[:-1] if is_package else parts)] = (path.read_text(), is_package)
    dynamic = {"chalicelib.ws_api": dispatched_services()}
    for function, (_label, modules) in FIRST_EVENT.items():
        reachable, _ = closure(set(function_modules()[function]), sources, dynamic)
        assert modules <= reachable, (function, sorted(modules - reachable))


def _is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _top_level_imports(path: Path, package: str, nested: bool = False) -> set[str]:
    """chalicelib modules ``path`` (in ``package``) imports at module level (``nested``: in functions
    too; in-function imports are lazy by intent); ``if TYPE_CHECKING:`` blocks never run."""
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and
                   getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    nodes = [n for n in ast.walk(tree) if id(n) not in typing_only] if nested else tree.body
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("chalicelib"):
                for alias in node.names:
                    full = f"{mod}.{alias.name}"
                    out.add(full if _is_module(full) else mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("chalicelib")}
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in (ROOT / "chalicelib").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if path.name == "__init__.py":
            name = package = ".".join(parts[:-1])
        else:
            name, package = ".".join(parts), ".".join(parts[:-1])
        graph[name] = _top_level_imports(path, package) - {name}
    return graph


def _services_graph() -> dict[str, set[str]]:
    """Between the services, every import counts, in-function ones included."""
    graph = {}
    for path in (ROOT / "chalicelib" / "services").glob("*.py"):
        name = f"chalicelib.services.{path.stem}"
        graph[name] = {m for m in _top_level_imports(path, "chalicelib.services", nested=True)
                       if m.startswith("chalicelib.services.")} - {name}
    return graph


@pytest.mark.parametrize("which", ["module level", "services, in-function imports too"])
def test_chalicelib_has_no_import_cycle(which):
    """No cycle at module level anywhere; none among the services even counting the imports inside
    functions (a lazy import must not be what holds a cycle together: issue #16)."""
    graph = _graph() if which == "module level" else _services_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep in graph and not state.get(dep):
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node)


# Services that still reach up into runtime/config (issue #16: services take their collaborators as
# arguments).  This list may only shrink: a new upward import fails here.
UPWARD_TODAY: set[str] = set()


def _reaches_up(path: Path) -> bool:
    """Does the module import runtime or config anywhere (module level or inside a function)?
    ``if TYPE_CHECKING:`` blocks do not count: they never run."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", "") ==
            "TYPE_CHECKING" for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 2 and (
                node.module in ("runtime", "config") or
                (node.module is None and {a.name for a in node.names} & {"runtime", "config"})):
            return True
        if isinstance(node, ast.ImportFrom) and node.module in ("chalicelib.runtime", "chalicelib.config"):
            return True
    return False


def test_services_do_not_newly_reach_into_runtime_or_config():
    """Services take their collaborators (clock, settings, clients, scheduler) from the entry point,
    through ``Call``: an import of runtime or config, even inside a function, fails here."""
    upward = {f"chalicelib.services.{p.stem}" for p in (ROOT / "chalicelib" / "services").glob("*.py")
              if _reaches_up(p)}
    assert upward <= UPWARD_TODAY, sorted(upward - UPWARD_TODAY)
    assert UPWARD_TODAY <= upward, f"no longer reaching up, remove from UPWARD_TODAY: {sorted(UPWARD_TODAY - upward)}"
