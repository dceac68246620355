"""DynamoDB Local (AWS's own emulator) as a child process on loopback.

The jar ships inside the npm package ``amplify-dynamodb-simulator``
(published by AWS, Apache-2.0).  We fetch one pinned version with
``npm pack``, check the tarball against a pinned SHA-256, unpack only its
``emulator/`` folder into ``.cache/`` (git-ignored) and check the jar too.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from .ports import free_port

PACKAGE = "amplify-dynamodb-simulator"
VERSION = "2.9.30"
# sha256 of the npm tarball (the registry's own sha512 integrity is checked by npm).
TARBALL_SHA256 = "3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9"
# sha256 of emulator/DynamoDBLocal.jar inside it (DynamoDB Local 1.25.1).
JAR_SHA256 = "454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7"

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DEVSTACK_CACHE", ROOT / ".cache")) / f"dynamodb-local-{VERSION}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_jar() -> Path:
    """Return the emulator folder, downloading and verifying it on first use."""
    jar = CACHE / "emulator" / "DynamoDBLocal.jar"
    if jar.exists() and _sha256(jar) == JAR_SHA256:
        return jar.parent
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as tmp:
        tarball = Path(tmp) / f"{PACKAGE}-{VERSION}.tgz"
        npm = shutil.which("npm")
        if npm is not None:  # honours the machine's npm registry configuration
            subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
        else:
            url = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
            with urllib.request.urlopen(url, timeout=120) as resp, tarball.open("wb") as fh:  # noqa: S310
                shutil.copyfileobj(resp, fh)
        got = _sha256(tarball)
        if got != TARBALL_SHA256:
            raise RuntimeError(f"{tarball.name}: sha256 {got} != pinned {TARBALL_SHA256}")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith("package/emulator/") and (m.isfile() or m.isdir())]
            tar.extractall(tmp, members=members, filter="data")
        shutil.rmtree(CACHE / "emulator", ignore_errors=True)
        shutil.move(str(Path(tmp) / "package" / "emulator"), CACHE / "emulator")
    if _sha256(jar) != JAR_SHA256:
        raise RuntimeError(f"{jar}: sha256 does not match the pinned value")
    return jar.parent


class DynamoDBLocal:
    """Start/stop one in-memory DynamoDB Local on a free port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java is needed for DynamoDB Local (apt-get install default-jre-headless), "
                               "or set DEVSTACK_DYNAMODB=moto to use moto's DynamoDB instead")
        folder = ensure_jar()
        self._proc = subprocess.Popen(
            [java, "-Xmx512m", f"-Djava.library.path={folder / 'DynamoDBLocal_lib'}",
             "-jar", str(folder / "DynamoDBLocal.jar"),
             "-inMemory", "-sharedDb", "-disableTelemetry", "-port", str(self.port)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        client = boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local",
                              config=Config(retries={"max_attempts": 0}, connect_timeout=1, read_timeout=2))
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"DynamoDB Local exited: {err[-2000:]}")
            try:
                client.list_tables()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("DynamoDB Local did not answer in time") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
