"""The Lambda package holds the app and its runtime dependencies only."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_TOP = {"devstack", "tests", "tools", "bench", "moto", "aiohttp", "websockets", "pytest",
                 "boto3", "jsonschema", "requests", "sdk", "chatsdk", "playwright"}


@pytest.mark.slow
def test_chalice_package_contains_no_local_stack_or_test_code(tmp_path):
    chalice = Path(sys.executable).with_name("chalice")
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    subprocess.run([str(chalice), "package", "--stage", "dev", str(tmp_path)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=600)
    with zipfile.ZipFile(tmp_path / "deployment.zip") as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert "app.py" in tops and "chalicelib" in tops
    assert not tops & FORBIDDEN_TOP, tops & FORBIDDEN_TOP
    assert {"pynamodb", "jwt", "fastjsonschema"} <= tops
    # Screening (DLP): chalice package silently drops a wheel whose glibc tag Lambda's runtime lacks;
    # google-re2 is pinned to one that fits (requirements.txt).
    assert "re2" in tops, "google-re2 is missing from the package"
    # Directory sync (SCIM): the scim function's models and pydantic's compiled core (docs/scim.md).
    assert {"scim2_models", "pydantic", "pydantic_core"} <= tops, "SCIM dependencies are missing"
