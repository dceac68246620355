"""tools/smoke.py (and `chat smoke`) against the test session's stack, as a subprocess, as CI and operators run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["health", "token.a", "token.b", "connect.a", "connect.b", "conversation", "send", "receive", "upload",
         "file.ready", "download"]


def _env(stack, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update({"CHAT_API_URL": stack.origin, "CHAT_WS_URL": stack.ws, "CHAT_IDP_URL": stack.origin,
                "CHAT_SMOKE_TIMEOUT": "60"}, **extra)
    return env


def _run(args, env):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_smoke_script_passes_every_step_against_the_stack(stack):
    proc = _run([sys.executable, "tools/smoke.py"],
                _env(stack, CHAT_EMAIL_A="carol@acme.example", CHAT_EMAIL_B="dave@acme.example"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == STEPS
    assert all(line.startswith("ok ") and " ms " in line for line in lines[:-1])
    assert lines[-1].startswith("PASS  11 steps")


def test_smoke_json_output_and_failure_exit_status(stack):
    env = _env(stack, CHAT_EMAIL_A="carol@acme.example", CHAT_TOKEN_B="not-a-jwt")
    proc = _run([sys.executable, "tools/smoke.py", "--json"], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["step"] for s in steps] == ["health", "token.a", "connect.a", "connect.b"]
    assert all(s["ok"] for s in steps[:-1]) and all(s["ms"] >= 0 for s in steps)
    assert steps[-1]["ok"] is False and "401" in steps[-1]["detail"] or "unauthorized" in steps[-1]["detail"]
    # nothing configured: a usage error, not a failed probe
    proc = _run([sys.executable, "tools/smoke.py"], {k: v for k, v in env.items() if k != "CHAT_API_URL"})
    assert proc.returncode == 2 and "CHAT_API_URL" in proc.stderr


def test_chat_cli_runs_the_same_probe(stack):
    chat = Path(sys.executable).parent / "chat"
    if not chat.exists():
        pytest.skip("the chat command is installed by `make install` (pip install -e sdk)")
    proc = _run([str(chat), "--url", stack.origin, "--ws-url", stack.ws, "smoke", "--json",
                 "--email-a", "dave@acme.example", "--email-b", "carol@acme.example"], _env(stack))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["step"] for s in steps] == STEPS and all(s["ok"] for s in steps)
