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
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benches run as scripts from bench/
    sys.path.insert(0, str(ROOT))

from devstack import launcher  # noqa: E402
RESULTS = ROOT / "bench" / "results"
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
    """A stack of this benchmark's own (``devstack/launcher.py``, as the tests start theirs);
    its output goes to ``.devstack/<name>/stack.log``."""
    raise_open_files()
    with launcher.running(ROOT / ".devstack" / name, env) as info:
        yield info


def use_stack_env(info: dict[str, Any]) -> None:
    """Give this process the endpoint variables the app's own code reads (as tests/conftest.py does).

    Call before importing ``chalicelib``: its settings are read once.
    """
    os.environ.update(launcher.app_env(info))
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
