"""Proof that each function's zip runs on its own, before anything is deployed.

``tools/split_package.py`` keeps in a function's zip only what its handler's
static import closure needs; a module it wrongly left out would only fail on
AWS, on the first event that imports it.  So, per function of the packaged
template, this extracts the zip its ``CodeUri`` names and, in a fresh
interpreter with no site-packages (``python -I -S``) and only that directory
on ``sys.path`` (plus the standard library and ``boto3``/``s3transfer``, which
the Lambda runtime provides and the package does not ship), with the function's
own environment variables: imports ``app``, resolves the ``Handler``, imports
every chalicelib module of the closure (the lazily imported ones too), every
other module those import (``boto3``, ``botocore.exceptions``, ``jwt``: imports
inside functions do not run on import) and every compiled extension in the zip, and checks PyJWT found cryptography.
It fails naming the function and the module.  It also checks each zip holds
exactly the files its closure needs (computed again from chalice's complete
``deployment.zip``), and that SCIM's libraries ship with the scim function only.

    .venv/bin/python tools/check_function_zips.py [build/package]
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.function_imports import handlers  # noqa: E402
from tools.split_package import FUNCTION, RUNTIME_TOPS, Plan, plan, runs_here  # noqa: E402

# Import names only these functions may ship (the rest must not carry them).
ONLY = {"pydantic": {"scim"}, "pydantic_core": {"scim"}, "scim2_models": {"scim"}}

_EXTRACTING = threading.Lock()

CHILD = r"""
import importlib, importlib.util, json, sys, sysconfig
cfg = json.loads(sys.argv[1])
sys.path[:0] = [cfg["code"], cfg["runtime"]]
def fail(name, e):
    print(json.dumps({"module": name, "error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
for name in ["app"] + cfg["modules"] + cfg["imports"] + cfg["extensions"]:
    try:
        importlib.import_module(name)
    except BaseException as e:
        fail(name, e)
app = sys.modules["app"]
if not callable(getattr(app, cfg["handler"].split(".", 1)[1], None)):
    fail(cfg["handler"], AttributeError("no such handler in app.py"))
if "jwt" in sys.modules:
    import jwt.algorithms
    if not jwt.algorithms.has_crypto:
        fail("cryptography", ImportError("PyJWT loaded without cryptography: RS256/ES256 tokens cannot be verified"))
allowed = (cfg["code"], cfg["runtime"], sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))
outside = sorted(n for n, m in list(sys.modules.items())
                 if getattr(m, "__file__", None) and not m.__file__.startswith(allowed))
if outside:
    fail(outside[0], ImportError("loaded from outside the zip: " + sys.modules[outside[0]].__file__))
# Our bytecode was used, not compiled again (-B: nothing is written, so a .pyc found came in the zip):
# each module loaded from the zip has its unchecked hash-based .pyc, of this magic and this source.
unused = []
for n, m in list(sys.modules.items()):
    f = getattr(m, "__file__", None) or ""
    if f.startswith(cfg["code"]) and f.endswith(".py"):
        cached = importlib.util.cache_from_source(f)
        try:
            head = open(cached, "rb").read(16)
        except OSError:
            head = b""
        src = open(f, "rb").read()
        if head != importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + importlib.util.source_hash(src):
            unused.append(n)
if unused and cfg["bytecode"]:
    fail(sorted(unused)[0], ImportError(f"no usable bytecode in the zip for {len(unused)} modules"))
print(json.dumps({"loaded": len(sys.modules), "compiled_at_start": len(unused)}))
"""


def runtime_dir(tmp: Path, shipped_tops: set[str]) -> Path:
    """What the Lambda runtime provides that the package does not ship (boto3, s3transfer), linked from this venv."""
    out = tmp / "_runtime"
    out.mkdir()
    for top in sorted(RUNTIME_TOPS - shipped_tops):
        spec = importlib.util.find_spec(top)
        if spec and spec.origin:
            src = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
            (out / src.name).symlink_to(src)
    return out


def function_env(props: dict) -> dict[str, str]:
    """The environment a function's import sees: its own variables from the template, a region, no more."""
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    return env | {k: v for k, v in props.get("Environment", {}).get("Variables", {}).items() if isinstance(v, str)}


def _extensions(names: list[str]) -> list[str]:
    """Dotted names of the compiled modules in a zip (``re2/_re2.cpython-311-x86_64-linux-gnu.so`` -> re2._re2)."""
    mods = []
    for n in names:
        if n.endswith(".so"):
            *pkg, file = n.split("/")
            mods.append(".".join(pkg + [file.split(".")[0]]))
    return sorted(mods)


def check_one(p: Plan, res: dict, package_dir: Path, tmp: Path, runtime: Path) -> str | None:
    """None when the zip of ``p``'s function holds what its closure needs and imports alone, else what failed."""
    props = res["Properties"]
    name = f"{p.logical_id} ({p.function})"
    zip_path = package_dir / props["CodeUri"]
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        sources = {n for n in names if not n.endswith(".pyc")}
        if p.files != sources:
            return f"{name}: {zip_path.name} differs from its closure: missing {sorted(p.files - sources)[:5]}, " \
                   f"extra {sorted(sources - p.files)[:5]}"
        code = tmp / hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
        with _EXTRACTING:  # functions with identical zips share one extraction
            if not code.exists():
                zf.extractall(code)
    env = function_env(props)
    cfg = {"code": str(code), "runtime": str(runtime), "handler": props["Handler"],
           "modules": sorted(p.modules), "imports": sorted(p.imports), "extensions": _extensions(names),
           "bytecode": runs_here(props.get("Runtime", ""))}
    out = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", CHILD, json.dumps(cfg)], env=env, cwd=tmp,
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        last = (out.stdout.strip().splitlines() or ["{}"])[-1]
        try:
            failed = json.loads(last)
            return f"{name}: import {failed['module']} failed: {failed['error']}"
        except (ValueError, KeyError):
            return f"{name}: {out.stderr.strip()[-800:]}"
    report = json.loads(out.stdout.splitlines()[-1])
    print(f"ok {p.logical_id:20} {len(p.modules):3} chalicelib modules, {len(cfg['extensions'])} extensions, "
          f"{report['loaded']} modules loaded, {report['compiled_at_start']} compiled at start")
    return None


def main(argv: list[str]) -> int:
    package_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / "package"
    template = json.loads((package_dir / "sam.json").read_text())
    functions = {k: r for k, r in sorted(template["Resources"].items()) if r["Type"] == FUNCTION}
    problems = []
    for lid, res in functions.items():
        version = res["Properties"].get("Runtime", "")
        if not runs_here(version):
            problems.append(f"{lid}: runtime {version}, but this interpreter is {sys.version.split()[0]}: "
                            "its compiled modules cannot be proven here")
    with zipfile.ZipFile(package_dir / "deployment.zip") as shared:
        shipped = {n.split("/")[0].removesuffix(".py") for n in shared.namelist()}
        try:
            plans = plan(shared, template)  # what each zip must hold, from chalice's complete package
        except LookupError as e:
            print(f"check_function_zips: {e}", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="function-zips-") as t:
        tmp = Path(t)
        runtime = runtime_dir(tmp, shipped)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = pool.map(lambda p: check_one(p, functions[p.logical_id], package_dir, tmp, runtime), plans)
            problems += [r for r in results if r]
    tops = {}
    for lid, res in functions.items():
        with zipfile.ZipFile(package_dir / res["Properties"]["CodeUri"]) as zf:
            tops[lid] = {n.split("/")[0] for n in zf.namelist()}
    by_handler = handlers()
    for top, allowed in ONLY.items():
        holders = {lid for lid, t in tops.items() if top in t}
        if {by_handler[functions[lid]["Properties"]["Handler"].removeprefix("app.")] for lid in holders} - allowed:
            problems.append(f"{top} ships with {sorted(holders)}; only {sorted(allowed)} may carry it")
    for top in ("pydantic", "cryptography", "jwt", "re2"):
        print(f"{top:13} in {sorted(lid for lid, t in tops.items() if top in t)}")
    for p in problems:
        print(f"check_function_zips: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
