"""Start and stop a local stack from another process: the one launcher tests and benchmarks share.

``running(state_dir, env)`` runs ``python -m devstack`` on a free loopback
port, waits for its ``READY`` line, keeps draining its output into
``<state_dir>/stack.log`` (a full pipe would block the stack's logging) and
stops the whole process group afterwards.  ``CHAT_STACK_FILE`` (a
``stack.json``) points at a stack that is already running instead, local or
deployed.  ``app_env(info)`` is what a process needs to talk to the same
DynamoDB, S3 and ``@connections`` as the app.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 180


@contextlib.contextmanager
def running(state_dir: Path, env: dict[str, str] | None = None,
            timeout: float = STARTUP_TIMEOUT) -> Iterator[dict[str, Any]]:
    """A local stack for the block; yields its ``stack.json`` (``{"origin": ..., "ws": ..., ...}``)."""
    external = os.environ.get("CHAT_STACK_FILE")
    if external:
        yield json.loads(Path(external).read_text())
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(state_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    assert proc.stdout is not None
    try:
        deadline, ready = time.monotonic() + timeout, False
        for line in iter(proc.stdout.readline, b""):
            log.write(line)
            ready = line.startswith(b"READY ")
            if ready or time.monotonic() > deadline:
                break
        if not ready:
            log.flush()
            raise RuntimeError("local stack did not start:\n" + log_path.read_text(errors="replace")[-4000:])

        def drain() -> None:
            with contextlib.suppress(ValueError):  # the log closed at shutdown
                for chunk in iter(proc.stdout.readline, b""):
                    log.write(chunk)
                    log.flush()

        threading.Thread(target=drain, daemon=True).start()
        yield json.loads((state_dir / "stack.json").read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def app_env(info: dict[str, Any]) -> dict[str, str]:
    """The stage's variables and the endpoints of this stack, as the app's own code reads them."""
    cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = dict(cfg["stages"][info.get("stage", "dev")]["environment_variables"])
    env.update({
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": info["dynamodb"],
        "AWS_ENDPOINT_URL_S3": info["s3"], "WS_MANAGEMENT_ENDPOINT": info["management"],
    })
    return env
