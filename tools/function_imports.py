"""Which chalicelib modules each Lambda function imports, read from ``app.py`` itself.

Every handler in ``app.py`` imports its own module inside its body (REST
routes name their service as ``"module.function"``), so the modules a
function runs are visible in the source: this module reads them with ``ast``
for ``bench/cold_start.py`` (cold import per function) and
``tests/unit/test_imports.py`` (import boundaries), so neither keeps a list
that could drift from the handlers.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_WS = {"on_ws_connect": "websocket_connect", "on_ws_message": "websocket_message",
       "on_ws_disconnect": "websocket_disconnect"}


def _function_of(node: ast.FunctionDef) -> str | None:
    """The Chalice function (Lambda) name a handler belongs to, from its decorator."""
    for dec in node.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        attr = (call.func if call else dec)
        if not isinstance(attr, ast.Attribute):
            continue
        if attr.attr == "route":
            return "api_handler"
        if attr.attr in _WS:
            return _WS[attr.attr]
        if attr.attr == "on_sqs_message":
            return node.name
        if attr.attr == "lambda_function" and call:
            for kw in call.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
            return node.name
    return None


def _is_module(name: str) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _modules_in(node: ast.AST) -> set[str]:
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("chalicelib"):
            for alias in sub.names:  # ``from pkg import mod`` names a module; ``from mod import name`` does not
                candidate = f"{sub.module}.{alias.name}"
                out.add(candidate if importlib.util.find_spec(sub.module) and _is_module(candidate) else sub.module)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "_rest":
            if len(sub.args) > 1 and isinstance(sub.args[1], ast.Constant):
                out.add("chalicelib.services." + str(sub.args[1].value).rpartition(".")[0])
    return out


def dispatched_services(ws_api_path: Path = ROOT / "chalicelib" / "ws_api.py") -> set[str]:
    """The service modules ``ws_api`` imports on an action's first use (``_service("module.function")``)."""
    out: set[str] = set()
    for sub in ast.walk(ast.parse(ws_api_path.read_text())):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in ("_service", "_presence") \
                and sub.args and isinstance(sub.args[0], ast.Constant):
            out.add("chalicelib.services." + str(sub.args[0].value).rpartition(".")[0])
    return out


def function_modules(app_path: Path = ROOT / "app.py", *, dispatched: bool = True) -> dict[str, set[str]]:
    """Lambda function name -> the chalicelib modules its handlers import on their first event.

    ``dispatched``: also every service a socket action may load on its first
    use (what the function may ever import: for import boundaries); without
    it, only what the handler itself imports (the cold start's fixed part).
    """
    tree = ast.parse(app_path.read_text())
    helpers = {n.name: _modules_in(n) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_rest"}
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            function = _function_of(node)
            if function:
                mods = _modules_in(node)
                if function == "api_handler":
                    mods |= helpers.get("_rest", set())
                if dispatched and "chalicelib.ws_api" in mods:
                    mods |= dispatched_services()
                out.setdefault(function, set()).update(mods)
    return out
