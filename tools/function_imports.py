"""Which chalicelib modules each Lambda function imports, read from ``app.py`` itself.

Every handler in ``app.py`` imports its own module inside its body (REST
routes name their service as ``"module.function"``), so the modules a
function runs are visible in the source: this module reads them with ``ast``
for ``bench/cold_start.py`` (cold import per function),
``tests/unit/test_imports.py`` (import boundaries) and
``tools/split_package.py`` (one zip per function: :func:`closure` follows
every import from there, those inside functions too), so none keeps a list
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


def handlers(app_path: Path = ROOT / "app.py") -> dict[str, str]:
    """``app.<attr>`` (a function's ``Handler`` in the packaged template) -> its Chalice function name.

    Chalice points ``api_handler`` at the Chalice object itself (``app.app``)."""
    tree = ast.parse(app_path.read_text())
    out = {n.name: f for n in tree.body if isinstance(n, ast.FunctionDef) and (f := _function_of(n))}
    return {k: v for k, v in out.items() if v != "api_handler"} | {"app": "api_handler"}


def _runs(tree: ast.Module, nested: bool) -> list[ast.AST]:
    """The nodes that may run: every node (``nested``) or the module level; never an ``if TYPE_CHECKING:`` body."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and
               getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
               for stmt in node.body for n in ast.walk(stmt)}
    nodes = ast.walk(tree) if nested else iter(tree.body)
    return [n for n in nodes if id(n) not in skipped]


def imports_of(source: str, module: str, is_package: bool, ours: set[str],
               nested: bool = True) -> tuple[set[str], set[str]]:
    """(our modules, other modules) that ``module``'s source imports, in functions too unless not ``nested``.

    ``ours``: every module of the package(s) being walked; ``from pkg import x`` names
    module ``pkg.x`` when that is one of them, else a name of ``pkg``."""
    tops = {m.split(".")[0] for m in ours}
    package = module if is_package else module.rpartition(".")[0]
    mods: set[str] = set()
    other: set[str] = set()
    for node in _runs(ast.parse(source), nested):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] not in tops:
                other.add(base)
                continue
            mods.add(base)
            mods |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in ours}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                (mods if top in tops else other).add(alias.name)
    return mods, other - {"__future__"}


def _is_lazy_package(source: str) -> bool:
    """A package whose ``__getattr__`` imports its submodules on first use (PEP 562): any of them may load."""
    return any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(source).body)


def closure(roots: set[str], sources: dict[str, tuple[str, bool]],
            dynamic: dict[str, set[str]] | None = None) -> tuple[set[str], set[str]]:
    """(our modules, other modules but the standard library's) that importing ``roots`` may ever load, imports
    in functions included.

    ``sources``: module -> (source, is_package) of every module of ours; ``dynamic``: module -> the
    modules it imports by name at run time (``importlib``), which no import statement shows.
    Parent packages count (importing ``a.b`` runs ``a/__init__.py``); a lazy package loads all its
    submodules. Raises ``LookupError`` naming a module that is imported but has no source."""
    ours, dynamic = set(sources), dynamic or {}
    seen: set[str] = set()
    other: set[str] = set()
    todo = list(roots)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        if mod not in sources:
            raise LookupError(f"{mod} is imported but not in the package")
        seen.add(mod)
        source, is_package = sources[mod]
        mods, others = imports_of(source, mod, is_package, ours)
        parts = mod.split(".")
        mods |= {".".join(parts[:i]) for i in range(1, len(parts))} | dynamic.get(mod, set())
        if is_package and _is_lazy_package(source):
            mods |= {m for m in ours if m.rpartition(".")[0] == mod}
        other |= others
        todo += sorted(mods - seen)
    return seen, {t for t in other if t.split(".")[0] not in sys.stdlib_module_names}
