"""The models package is one registry over modules by feature (chalicelib/models/__init__.py).

A name resolves to the module that defines it, importing only that module
(and ``base``); every table model is in ``ALL_MODELS`` (so infra/ and the
local stack create it); no feature module imports another, so a function
pays only for the models it uses.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from pynamodb.models import Model

from chalicelib import models

PACKAGE = Path(models.__file__).parent


def test_every_name_lives_where_the_registry_says():
    for name, module in models.HOME.items():
        mod = importlib.import_module(f"chalicelib.models.{module}")
        assert name in vars(mod), f"{name} is not defined in chalicelib/models/{module}.py"


def test_every_table_model_is_registered():
    defined = {}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        mod = importlib.import_module(f"chalicelib.models.{path.stem}")
        for name, value in vars(mod).items():
            if isinstance(value, type) and issubclass(value, Model) and value is not Model \
                    and value.__module__ == mod.__name__:
                defined[name] = value
                assert models.HOME.get(name) == path.stem, f"add {name} to HOME in chalicelib/models/__init__.py"
    # A model may be a second view of a registered table (EmailClaim: items of the users table).
    tables = {m.Meta.table_name: m for m in models.ALL_MODELS}
    assert set(models.ALL_MODELS) <= set(defined.values())
    assert {n for n, m in defined.items() if m.Meta.table_name not in tables} == set(), \
        "ALL_MODELS must list every table (a model of a table not in it would never be created)"
    assert set(models.TTL_ATTRIBUTES) <= set(models.ALL_MODELS)


def test_feature_modules_import_only_base():
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("__init__", "base"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module == "base", f"{path.name} imports .{node.module}: keep features apart"


def test_a_name_imports_its_module_only():
    code = ("import sys\nfrom chalicelib.models import Message\n"
            "print(sorted(m for m in sys.modules if m.startswith('chalicelib.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent.parent).stdout
    assert out.strip() == "['chalicelib.models', 'chalicelib.models.base', 'chalicelib.models.messages']"
