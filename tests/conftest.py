"""Shared fixtures: one local stack per test session, reached over real sockets.

Set ``CHAT_STACK_FILE`` to a JSON file describing an already running stack
(same keys as ``.devstack/stack.json``: origin, ws, management, and for
AWS the real endpoints) to run the suite against it instead of starting one.
Tests that sign crafted tokens need the dev IdP's keys and skip without them.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import launcher

ROOT = Path(__file__).resolve().parent.parent
# Seconds per retention "day" on the test stack (long enough to read an item back before it may go).
RETENTION_DAY_SECONDS = 3
STARTUP_TIMEOUT = 180


@dataclass
class Stack:
    origin: str
    ws: str
    management: str
    state_dir: Path | None
    info: dict

    def key(self, tenant: str) -> dict:
        if self.state_dir is None:
            pytest.skip("needs the dev IdP's signing keys (local stack only)")
        return json.loads((self.state_dir / "keys" / f"{tenant}.json").read_text())


def _stage_env() -> dict[str, str]:
    cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return cfg["stages"]["dev"]["environment_variables"]


@pytest.fixture(scope="session")
def stack() -> Stack:
    external = os.environ.get("CHAT_STACK_FILE")
    if external:
        info = json.loads(Path(external).read_text())
        yield Stack(info["origin"], info["ws"], info["management"], None, info)
        return
    state_dir = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    log_path = state_dir / "stack.log"
    # Short presence timers so idle and coalescing are observable within a test.
    env = {"PRESENCE_IDLE_SECONDS": "5", "PRESENCE_COALESCE_SECONDS": "1"}
    # Retention "days" of a few seconds, so messages really expire within a test, and export
    # steps of 1 page, so a small export runs in several steps (docs/compliance.md).
    # Exports list conversations 2 at a time, so listing chunks are crossed too.
    env.update(RETENTION_DAY_SECONDS=str(RETENTION_DAY_SECONDS), EXPORT_PAGES_PER_STEP="1",
               EXPORT_CHUNK_CONVERSATIONS="2")
    # Small delivery thresholds, so shards, workers and rosters carry most of the suite's events
    # (tests/e2e/test_delivery.py), and queue retries that come back within a test.
    env.update(DELIVERY_INLINE_MAX="4", DELIVERY_SHARD_SIZE="4", DELIVERY_LARGE_MEMBERS="5",
               DELIVERY_ROSTER_PAGE="6", DELIVERY_ROSTER_RANGE="6",
               DEVSTACK_SQS_VISIBILITY_SECONDS="3")
    # The seeded users are shared by the whole suite, whose sessions may still be closing: a per-user
    # device limit of 10 would refuse them by test order (tests/e2e/test_limits.py sets its own per company).
    env.update(DEVICES_PER_USER="1000")
    # Warm containers keep a tenant (identity, limits) this long: 8 s instead of 30, so suspension and
    # auto-provisioning are seen within a test.  Also for this process: tenantctl, run from here, waits
    # that long before its second sweep (tests/e2e/test_suspension.py).
    env.update(TENANT_CACHE_SECONDS="8")
    os.environ["TENANT_CACHE_SECONDS"] = env["TENANT_CACHE_SECONDS"]
    try:
        with launcher.running(state_dir, env, timeout=STARTUP_TIMEOUT) as info:
            # This test process talks to the same DynamoDB/S3 over HTTP, like the app.
            os.environ.update(_stage_env())
            os.environ.update(launcher.app_env(info))
            yield Stack(info["origin"], info["ws"], info["management"], state_dir, info)
    finally:
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        if log_path.exists():
            (artifacts / "stack.log").write_bytes(log_path.read_bytes())
    # Every AWS call of a function is checked against that function's own role (devstack/iam.py):
    # a refusal anywhere in the run fails it, even where the caller swallowed the error.
    denied = [line for line in log_path.read_text(errors="replace").splitlines() if "iam denied" in line]
    assert not denied, ("calls a function's role does not allow (add them to FUNCTION_ACCESS in "
                        "tools/render_infra.py, then `make infra`):\n" + "\n".join(denied[:20]))


@pytest.fixture(autouse=True)
def _rate_windows_forgotten():
    """What a container has learnt of the current rate windows (chalicelib/limits.py ``known``) is
    per process: tests in this process start without it, as a fresh container would."""
    import sys

    limits = sys.modules.get("chalicelib.limits")
    if limits is not None:
        limits.known.clear()
    yield
