"""One zip per Lambda function, cut from the shared ``deployment.zip``, and the packaged template pointed at them.

``chalice package`` writes one ``deployment.zip`` and sets every function's
``CodeUri`` to it, so each function would ship every dependency (pydantic for
SCIM, re2 for screening, ...).  This step keeps in a function's zip only what
its handler can import at run time:

* ``app.py``, ``chalice`` and the chalicelib modules of the handler's static
  closure: ``tools/function_imports.py`` reads the handler's modules from
  ``app.py`` and follows every import, those inside functions too (a lazy
  import still runs on some path), plus the services ``ws_api`` loads by name;
* the distributions those modules import, with everything they require
  (``Requires-Dist`` of the ``*.dist-info`` in the zip, markers evaluated for
  the function's Lambda runtime, extras as ``requirements.txt`` asks for them:
  ``PyJWT[crypto]`` brings cryptography), whole: all files of their ``RECORD``.

Stale ``__pycache__`` files Chalice copies from the work tree are dropped (the
zip's 1980 timestamps never match them, so Lambda never used them), and every
``.py`` gets its bytecode instead: an *unchecked hash-based* ``.pyc`` (PEP 552),
which the interpreter uses whatever the file times.  Lambda's ``/var/task`` is
read-only, so without them every cold start compiles every module it imports
(botocore, pynamodb, Chalice, ours) and throws the result away: ~0.6 s of CPU
for ``websocket_message`` (docs/proof.md).  Bytecode is specific to the minor
version, so it is only written when this interpreter is the function's runtime.  The zips
are deterministic (sorted, fixed timestamps, modes kept), so ``aws cloudformation
package`` re-uploads only the ones that changed.  ``deployment.zip`` stays for
re-runs and ``tools/package_sizes.py``; nothing references it any more, so it is
not uploaded.  ``tools/check_function_zips.py`` proves each zip imports alone.

    .venv/bin/python tools/split_package.py [build/package]
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import marshal
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import closure, dispatched_services, function_modules, handlers, imports_of  # noqa: E402

FUNCTION = "AWS::Serverless::Function"
SHARED = "./deployment.zip"
# What the Lambda Python runtime provides (a copy in the zip shadows it): code may import these without shipping them.
RUNTIME_DISTS = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
RUNTIME_TOPS = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}
STAMP = (1980, 1, 1, 0, 0, 0)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Dist:
    """One installed distribution in the zip: its files (as ``RECORD`` lists them), import names and requirements."""
    name: str
    files: frozenset[str]
    tops: frozenset[str]
    requires: tuple[str, ...]


def _top(path: str) -> str | None:
    """The import name a ``RECORD`` path provides (``pkg/x.py`` -> pkg, ``mod.cpython-311-...so`` -> mod)."""
    first, slash, _ = path.partition("/")
    if path.startswith("..") or first.endswith((".dist-info", ".data")) or first == "__pycache__":
        return None
    if slash:
        return None if "." in first else first
    return first.split(".")[0] if first.endswith((".py", ".so", ".pyd")) else None


def read_dists(zf: zipfile.ZipFile) -> dict[str, Dist]:
    """Canonical name -> :class:`Dist`, for every ``*.dist-info`` at the top of the zip."""
    names = set(zf.namelist())
    out = {}
    for info in sorted({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}):
        meta = HeaderParser().parsestr(zf.read(f"{info}/METADATA").decode())
        record = [row[0] for row in csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())) if row]
        files = {p for p in record if not p.startswith("..")} | {n for n in names if n.startswith(info + "/")}
        name = canonical(meta["Name"])
        out[name] = Dist(name, frozenset(files), frozenset(t for p in record if (t := _top(p))),
                         tuple(meta.get_all("Requires-Dist") or ()))
    return out


def marker_env(runtime: str, architecture: str) -> dict[str, str]:
    """PEP 508 marker values for a Lambda runtime (``python3.11``) and architecture (``x86_64``/``arm64``)."""
    version = runtime.removeprefix("python")
    return {"python_version": version, "python_full_version": version + ".0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_release": "", "platform_version": "",
            "platform_machine": "aarch64" if architecture == "arm64" else "x86_64",
            "platform_python_implementation": "CPython", "implementation_name": "cpython",
            "implementation_version": version + ".0", "extra": ""}


def requested_extras(requirements: str) -> dict[str, set[str]]:
    """Canonical name -> the extras ``requirements.txt`` installs (``PyJWT[crypto]`` -> {pyjwt: {crypto}})."""
    out: dict[str, set[str]] = {}
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out.setdefault(canonical(req.name), set()).update(req.extras)
    return out


def needed_dists(dists: dict[str, Dist], tops: set[str], extras: dict[str, set[str]],
                 env: dict[str, str]) -> set[str]:
    """The distributions that provide ``tops`` and all they require, transitively, with their extras.

    Raises ``LookupError`` for an import or requirement that neither the zip nor the Lambda runtime provides."""
    owners: dict[str, set[str]] = {}
    for d in dists.values():
        for t in d.tops:
            owners.setdefault(t, set()).add(d.name)
    todo: list[tuple[str, frozenset[str]]] = []
    for top in sorted(tops):
        if top not in owners and top not in RUNTIME_TOPS:
            raise LookupError(f"{top} is imported but no distribution in the package provides it")
        todo += [(d, frozenset(extras.get(d, ()))) for d in sorted(owners.get(top, ()))]
    want: dict[str, set[str]] = {}
    while todo:
        name, ex = todo.pop()
        if name in want and ex <= want[name]:
            continue
        want[name] = want.get(name, set()) | ex
        for text in dists[name].requires:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in {"", *want[name]}):
                continue
            dep = canonical(req.name)
            if dep in dists:
                todo.append((dep, frozenset(req.extras)))
            elif dep not in RUNTIME_DISTS:
                raise LookupError(f"{name} requires {dep}, which is not in the package")
    return set(want)


def sources(zf: zipfile.ZipFile, package: str = "chalicelib") -> dict[str, tuple[str, bool]]:
    """Module -> (source, is_package) of every ``.py`` of ``package`` in the zip."""
    out = {}
    for name in zf.namelist():
        if name.startswith(package + "/") and name.endswith(".py") and "__pycache__" not in name:
            parts = name[:-3].split("/")
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (zf.read(name).decode(), is_package)
    return out


def module_file(module: str, is_package: bool) -> str:
    return module.replace(".", "/") + ("/__init__.py" if is_package else ".py")


@dataclass
class Plan:
    """What one function's zip holds."""
    logical_id: str
    function: str
    handler: str
    modules: set[str]  # ours (chalicelib)
    imports: set[str]  # the other modules those import (``botocore.exceptions``), standard library left out
    dists: set[str]
    files: set[str]


def plan(zf: zipfile.ZipFile, template: dict, root: Path = ROOT) -> list[Plan]:
    """One :class:`Plan` per function of the packaged template.

    The handlers' modules are read from ``app.py`` in ``root``, so the zip's sources must be those."""
    app_source = zf.read("app.py").decode()
    srcs = sources(zf)
    stale = [f for f, text in [("app.py", app_source)] + [(module_file(m, p), t) for m, (t, p) in srcs.items()]
             if not (root / f).is_file() or (root / f).read_text() != text]
    if stale:
        raise SystemExit(f"deployment.zip is stale against the work tree ({', '.join(stale[:3])}): run `make package`")
    names = set(zf.namelist())
    dists = read_dists(zf)
    owned = set().union(*(d.files for d in dists.values()))
    app_mods, _ = imports_of(app_source, "app", False, set(srcs), nested=False)
    _, app_imports = imports_of(app_source, "app", False, set(srcs))
    app_imports = {m for m in app_imports if m.split(".")[0] not in sys.stdlib_module_names}
    extras = requested_extras((root / "requirements.txt").read_text())
    by_handler, roots = handlers(root / "app.py"), function_modules(root / "app.py")
    dynamic = {"chalicelib.ws_api": dispatched_services(root / "chalicelib" / "ws_api.py")}
    out = []
    for lid, res in sorted(template["Resources"].items()):
        if res["Type"] != FUNCTION:
            continue
        props = res["Properties"]
        handler = props["Handler"].removeprefix("app.")
        function = by_handler[handler]
        modules, imports = closure(app_mods | roots.get(function, set()), srcs, dynamic)
        imports |= app_imports
        tops = {m.split(".")[0] for m in imports}
        # Top-level trees the zip holds without a dist-info (chalice's runtime part) ship whole.
        local = {t for t in tops if any(n.startswith(t + "/") and n not in owned for n in names)}
        env = marker_env(props.get("Runtime", "python3.11"), (props.get("Architectures") or ["x86_64"])[0])
        need = needed_dists(dists, tops - local, extras, env)
        files = {"app.py"} | {module_file(m, srcs[m][1]) for m in modules}
        files |= {n for n in names if n.split("/")[0] in local and "__pycache__/" not in n}
        files |= set().union(*(dists[d].files for d in need))
        if files - names:
            raise LookupError(f"{lid}: the package lacks {sorted(files - names)[:3]} (listed in a RECORD)")
        out.append(Plan(lid, function, props["Handler"], modules, imports, need, files))
    return out


def pyc_name(path: str) -> str:
    """Where the interpreter looks for the bytecode of ``path`` (``a/b.py`` -> ``a/__pycache__/b.cpython-311.pyc``)."""
    folder, _, file = path.rpartition("/")
    return f"{folder + '/' if folder else ''}__pycache__/{file[:-3]}.{sys.implementation.cache_tag}.pyc"


def bytecode(source: bytes, path: str) -> bytes | None:
    """An unchecked hash-based ``.pyc`` of ``source`` (PEP 552: magic, flags 0b01, source hash, code);
    None for a file that does not compile (it could not be imported either)."""
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + importlib.util.source_hash(source) \
        + marshal.dumps(code)


def compiled(names: set[str]) -> set[str]:
    """The ``.py`` files of ``names`` that get bytecode."""
    return {n for n in names if n.endswith(".py") and "__pycache__/" not in n}


def write_zip(src: zipfile.ZipFile, names: set[str], dest: Path, pycs: dict[str, bytes | None] | None = None) -> None:
    """``names`` of ``src`` into ``dest``: sorted, fixed timestamps, file modes kept, so the bytes repeat;
    with ``pycs`` (a cache shared by the functions) each ``.py`` also gets its bytecode."""
    entries: dict[str, tuple[bytes, int]] = {}
    sources = compiled(names) if pycs is not None else set()
    for name in names:
        old = src.getinfo(name)
        data = src.read(name)
        entries[name] = (data, old.external_attr if old.external_attr >> 16 else (0o100644 << 16))
        if name in sources:
            if name not in pycs:
                pycs[name] = bytecode(data, name)
            if pycs[name] is not None:
                entries[pyc_name(name)] = (pycs[name], 0o100644 << 16)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for name in sorted(entries):
            data, mode = entries[name]
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.create_system = 3  # unix: Lambda applies the mode bits below
            info.external_attr = mode
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, data)
    tmp.replace(dest)


def runs_here(runtime: str) -> bool:
    """Whether this interpreter is the function's Lambda runtime (``python3.11``): its bytecode fits."""
    return runtime == f"python{sys.version_info.major}.{sys.version_info.minor}"


def rewrite_code_uris(template: dict, plans: list[Plan]) -> None:
    """Point each function at its own zip; a template already pointed there (a re-run) is accepted."""
    for p in plans:
        props = template["Resources"][p.logical_id]["Properties"]
        mine = f"./functions/{p.logical_id}.zip"
        if props["CodeUri"] not in (SHARED, mine):
            raise SystemExit(f"{p.logical_id}: unexpected CodeUri {props['CodeUri']!r}")
        props["CodeUri"] = mine


def split(package_dir: Path) -> list[Plan]:
    """Write ``functions/<LogicalId>.zip`` for each function and rewrite ``sam.json``; return the plans."""
    template_path = package_dir / "sam.json"
    template = json.loads(template_path.read_text())
    out_dir = package_dir / "functions"
    out_dir.mkdir(exist_ok=True)
    with zipfile.ZipFile(package_dir / "deployment.zip") as zf:
        plans = plan(zf, template)
        written: dict[frozenset[str], Path] = {}  # functions with the same files share the bytes: copy them
        pycs: dict[str, bytes | None] = {}  # each file compiled once for all functions
        for p in plans:
            dest = out_dir / f"{p.logical_id}.zip"
            runtime = template["Resources"][p.logical_id]["Properties"].get("Runtime", "")
            if frozenset(p.files) in written:
                shutil.copyfile(written[frozenset(p.files)], dest)
            else:
                fits = runs_here(runtime)
                if not fits:
                    print(f"split_package: {p.logical_id} runs {runtime}, this is {sys.version.split()[0]}: "
                          "no bytecode shipped (each cold start compiles)", file=sys.stderr)
                write_zip(zf, p.files, dest, pycs if fits else None)
                written[frozenset(p.files)] = dest
    for stale in set(out_dir.iterdir()) - {out_dir / f"{p.logical_id}.zip" for p in plans}:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    rewrite_code_uris(template, plans)
    template_path.write_text(json.dumps(template, indent=2) + "\n")
    return plans


def main(argv: list[str]) -> int:
    from tools import package_sizes

    package_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "package"
    try:
        split(package_dir)
    except LookupError as e:
        print(f"split_package: {e}", file=sys.stderr)
        return 1
    return package_sizes.main(["package_sizes", str(package_dir)])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
