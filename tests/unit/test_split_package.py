"""The pure parts of the per-function packages (tools/split_package.py): the import closure of our
modules, the distributions it needs (RECORD, Requires-Dist, markers, extras), deterministic zips and
the CodeUri rewrite. On a tiny fake package and fake dist-infos; `make package` runs the real split
and tools/check_function_zips.py proves the real zips import."""
from __future__ import annotations

import io
import zipfile

import pytest

from tools.function_imports import closure
from tools.split_package import (SHARED, Plan, marker_env, needed_dists, pyc_name, read_dists, requested_extras,
                                 rewrite_code_uris, write_zip)

PKG = {
    "pkg": ("", True),
    "pkg.a": ("from . import b\nimport jwt\n\ndef f():\n    from .sub import c\n    import botocore.exceptions\n", False),
    "pkg.b": ("from typing import TYPE_CHECKING\nimport json\nif TYPE_CHECKING:\n    from pkg import never\n"
              "else:\n    import re2\n", False),
    "pkg.never": ("import pydantic\n", False),
    "pkg.sub": ("", True),
    "pkg.sub.c": ("from ..lazy import Thing\n", False),
    "pkg.lazy": ("import importlib\n\ndef __getattr__(name):\n    return importlib.import_module('pkg.lazy.m')\n",
                 True),
    "pkg.lazy.m": ("import pynamodb.models\n", False),
    "pkg.dyn": ("", False),
    "pkg.alone": ("import scim2_models\n", False),
}


def test_closure_follows_imports_in_functions_parents_lazy_packages_and_dynamic_edges():
    mods, other = closure({"pkg.a"}, PKG, {"pkg.b": {"pkg.dyn"}})
    assert mods == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.lazy", "pkg.lazy.m", "pkg.dyn"}
    # Standard library left out, dotted names kept; an ``if TYPE_CHECKING:`` body never runs, its else does.
    assert other == {"jwt", "botocore.exceptions", "re2", "pynamodb.models"}


def test_closure_names_a_module_it_cannot_find():
    with pytest.raises(LookupError, match="pkg.gone"):
        closure({"pkg.x"}, {**PKG, "pkg.x": ("import pkg.gone\n", False)})


def _dist(z: zipfile.ZipFile, name: str, version: str, files: dict[str, bytes], requires: list[str]) -> None:
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {r}\n" for r in requires)
    for path, data in files.items():
        z.writestr(path, data)
    z.writestr(f"{info}/METADATA", meta)
    record = [*files, f"{info}/METADATA", f"{info}/RECORD,,", f"../../bin/{name}-script,,"]
    z.writestr(f"{info}/RECORD", "\n".join(r if r.endswith(",,") else f"{r},sha256=x,1" for r in record) + "\n")


@pytest.fixture
def dists():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        _dist(z, "PyJWT", "2.0", {"jwt/__init__.py": b""},
              ['typing_extensions; python_version < "3.11"', 'cryptography>=3; extra == "crypto"'])
        _dist(z, "cryptography", "1.0", {"cryptography/__init__.py": b"", "cryptography/_rust.abi3.so": b""},
              ["cffi>=1; platform_python_implementation != 'PyPy'"])
        _dist(z, "cffi", "1.0", {"cffi/__init__.py": b"", "_cffi_backend.cpython-311-x86_64-linux-gnu.so": b""},
              ["pycparser"])
        _dist(z, "pycparser", "1.0", {"pycparser/__init__.py": b""}, [])
        _dist(z, "typing_extensions", "4.0", {"typing_extensions.py": b""}, [])
        _dist(z, "scim2-models", "1.0", {"scim2_models/__init__.py": b""}, ["pydantic[email]>=2"])
        _dist(z, "pydantic", "2.0", {"pydantic/__init__.py": b""},
              ["typing-extensions>=4", 'email-validator>=2; extra == "email"', 'tzdata; sys_platform == "win32"'])
        _dist(z, "email_validator", "2.0", {"email_validator/__init__.py": b""}, ["dnspython"])
        _dist(z, "pynamodb", "6.0", {"pynamodb/__init__.py": b""}, ["botocore>=1.12"])
    with zipfile.ZipFile(buf) as z:
        yield read_dists(z)


def test_read_dists_maps_import_names_and_files_from_record(dists):
    assert dists["cffi"].tops == {"cffi", "_cffi_backend"}
    assert dists["typing-extensions"].tops == {"typing_extensions"}
    assert "cryptography-1.0.dist-info/RECORD" in dists["cryptography"].files
    assert not any(f.startswith("..") for d in dists.values() for f in d.files)


def test_extras_come_from_requirements_txt_and_markers_fit_lambda(dists):
    env = marker_env("python3.11", "x86_64")
    plain = needed_dists(dists, {"jwt"}, {}, env)
    assert plain == {"pyjwt"}  # typing_extensions only below 3.11, cryptography only with [crypto]
    extras = requested_extras("# runtime\nPyJWT[crypto]==2.0\n-r other.txt\n\npynamodb==6.0  # tables\n")
    assert extras == {"pyjwt": {"crypto"}, "pynamodb": set()}
    assert needed_dists(dists, {"jwt"}, extras, env) == {"pyjwt", "cryptography", "cffi", "pycparser"}
    assert needed_dists(dists, {"jwt"}, {}, marker_env("python3.10", "x86_64")) == {"pyjwt", "typing-extensions"}


def test_a_requirements_extras_carry_over_and_missing_dependencies_are_named(dists):
    env = marker_env("python3.12", "arm64")
    with pytest.raises(LookupError, match="email-validator requires dnspython"):
        needed_dists(dists, {"scim2_models"}, {}, env)
    # botocore is not in the zip but the Lambda runtime provides it; an unknown import is an error.
    assert needed_dists(dists, {"pynamodb", "boto3"}, {}, env) == {"pynamodb"}
    with pytest.raises(LookupError, match="yaml"):
        needed_dists(dists, {"yaml"}, {}, env)


def test_zips_are_deterministic_and_keep_modes(tmp_path):
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        for name, mode in (("b.py", 0o100644), ("a/x.so", 0o100755), ("a/skip.txt", 0o100644)):
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 6, 7, 8, 10))
            info.external_attr = mode << 16
            z.writestr(info, name * 100)
    with zipfile.ZipFile(src) as z:
        write_zip(z, {"b.py", "a/x.so"}, tmp_path / "one.zip")
        write_zip(z, {"a/x.so", "b.py"}, tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as z:
        assert z.namelist() == ["a/x.so", "b.py"]
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert z.getinfo("a/x.so").external_attr >> 16 == 0o100755
        assert z.read("b.py") == b"b.py" * 100


def test_each_module_ships_bytecode_the_interpreter_uses_without_writing(tmp_path):
    """Lambda's /var/task is read-only: a module without usable bytecode is compiled on every cold start."""
    import subprocess
    import sys

    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/mod.py", "VALUE = 6 * 7\n")
        z.writestr("pkg/broken.py", "def (:\n")  # does not compile: shipped as is, no bytecode
    with zipfile.ZipFile(src) as z:
        pycs: dict = {}
        write_zip(z, {"pkg/__init__.py", "pkg/mod.py", "pkg/broken.py"}, tmp_path / "fn.zip", pycs)
        write_zip(z, {"pkg/__init__.py", "pkg/mod.py"}, tmp_path / "fn2.zip", pycs)  # compiled once, reused
    assert pycs["pkg/broken.py"] is None
    with zipfile.ZipFile(tmp_path / "fn.zip") as z:
        assert pyc_name("pkg/mod.py") in z.namelist() and pyc_name("pkg/broken.py") not in z.namelist()
        z.extractall(tmp_path / "code")
    # the source changed after packaging: an unchecked pyc is still what runs, so it is what was used
    (tmp_path / "code" / "pkg" / "mod.py").write_text("VALUE = 0\n")
    check = "import sys; sys.path.insert(0, sys.argv[1]); import pkg.mod; print(pkg.mod.VALUE)"
    before = sorted(p.name for p in (tmp_path / "code" / "pkg" / "__pycache__").iterdir())
    out = subprocess.run([sys.executable, "-I", "-B", "-c", check, str(tmp_path / "code")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["42"]
    assert sorted(p.name for p in (tmp_path / "code" / "pkg" / "__pycache__").iterdir()) == before
    # an unchecked hash-based pyc: the source's times never matter, its hash is the one in the header
    head = (tmp_path / "code" / pyc_name("pkg/mod.py")).read_bytes()[:16]
    assert int.from_bytes(head[4:8], "little") == 1
    assert head[8:16] == __import__("importlib.util").util.source_hash(b"VALUE = 6 * 7\n")


def test_code_uris_point_at_each_functions_zip_and_a_rerun_is_a_no_op():
    template = {"Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": SHARED}}}}
    plans = [Plan("Fn", "fn", "app.fn", set(), set(), set(), set())]
    rewrite_code_uris(template, plans)
    rewrite_code_uris(template, plans)
    assert template["Resources"]["Fn"]["Properties"]["CodeUri"] == "./functions/Fn.zip"
    template["Resources"]["Fn"]["Properties"]["CodeUri"] = "s3://bucket/key"
    with pytest.raises(SystemExit, match="unexpected CodeUri"):
        rewrite_code_uris(template, plans)
