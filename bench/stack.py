"""What the benchmarks share: their own local stack, the app's endpoint variables, the stack's counters.

Each benchmark starts its own stack so that its counters and timings see
no other traffic.  ``CHAT_STACK_FILE`` (a ``stack.json``) points at a
running stack instead.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STARTUP_TIMEOUT = 180
# For stacks that hold many sockets: presence schedules a delayed "turn idle"
# flush per connected user; pushed past the run, those flushes cannot land
# inside a measurement.
STACK_ENV = {"PRESENCE_IDLE_SECONDS": "3600"}


def raise_open_files(wanted: int = 8192) -> int:
    """Lift the soft open-files limit toward ``wanted`` (a socket is a file); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def local_stack(name: str, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Run ``python -m devstack`` on a free loopback port; yields its ``stack.json``.

    The stack's output goes to ``.devstack/<name>/stack.log`` and is drained
    continuously: a full pipe would block the stack's logging.
    """
    external = os.environ.get("CHAT_STACK_FILE")
    if external:
        yield json.loads(Path(external).read_text())
        return
    raise_open_files()
    state_dir = ROOT / ".devstack" / name
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "stack.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(state_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    assert proc.stdout is not None
    try:
        deadline, ready = time.monotonic() + STARTUP_TIMEOUT, False
        for line in iter(proc.stdout.readline, b""):
            log.write(line)
            ready = line.startswith(b"READY ")
            if ready or time.monotonic() > deadline:
                break
        if not ready:
            raise RuntimeError(f"stack did not start; see {state_dir / 'stack.log'}")

        def drain() -> None:
            with contextlib.suppress(ValueError):  # the log closed at shutdown
                for chunk in proc.stdout:
                    log.write(chunk)

        threading.Thread(target=drain, daemon=True).start()
        yield json.loads((state_dir / "stack.json").read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def use_stack_env(info: dict[str, Any]) -> None:
    """Give this process the endpoint variables the app's own code reads (as tests/conftest.py does).

    Call before importing ``chalicelib``: its settings are read once.
    """
    cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
    os.environ.update(cfg["stages"][info.get("stage", "dev")]["environment_variables"])
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": info["dynamodb"],
        "AWS_ENDPOINT_URL_S3": info["s3"], "WS_MANAGEMENT_ENDPOINT": info["management"],
    })
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def metrics(origin: str, reset: bool = False) -> dict[str, Any]:
    """The stack's counters (``GET /dev/stack/metrics``), or read-and-zero them."""
    if reset:
        resp = requests.post(f"{origin}/dev/stack/metrics/reset", timeout=10)
    else:
        resp = requests.get(f"{origin}/dev/stack/metrics", timeout=10)
    resp.raise_for_status()
    return resp.json()


def settle(origin: str, quiet: float = 0.5, timeout: float = 30.0) -> None:
    """Wait until the stack made no DynamoDB request and no post for ``quiet`` seconds
    (e.g. delayed presence publications after many connects), so a measurement sees only itself."""
    deadline = time.monotonic() + timeout
    metrics(origin, reset=True)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        seen = metrics(origin, reset=True)
        if not seen["dynamodb"]["total"]["requests"] and not seen["connections_api"]["posts"]:
            return
    print(f"warning: stack still busy after {timeout:.0f}s; figures include background work", file=sys.stderr)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
