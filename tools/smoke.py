"""Smoke test of a deployment: connect → send → receive → file upload → file.ready → download.

Built on the SDK's probe (sdk/chatsdk/probe.py); prints each step with its
latency and exits non-zero when a step fails.  Configured by environment
variables so CI and an operator after a deploy run it the same way:

    CHAT_API_URL=https://<rest-api-id>.execute-api.<region>.amazonaws.com/prod \
    CHAT_WS_URL=wss://<ws-api-id>.execute-api.<region>.amazonaws.com/prod \
    CHAT_TOKEN_A=<jwt of probe user A> CHAT_TOKEN_B=<jwt of probe user B> \
    .venv/bin/python tools/smoke.py

    # the local stack: tokens minted by its dev identity provider
    CHAT_API_URL=http://127.0.0.1:8000 CHAT_IDP_URL=http://127.0.0.1:8000 \
    CHAT_EMAIL_A=alice@acme.example CHAT_EMAIL_B=bob@acme.example .venv/bin/python tools/smoke.py

Variables: CHAT_API_URL (or CHAT_URL), CHAT_WS_URL (default <api url>/ws),
CHAT_TOKEN_A/CHAT_TOKEN_B, or CHAT_IDP_URL with CHAT_EMAIL_A/CHAT_EMAIL_B;
CHAT_EMAIL_B also picks B by email when A's token is given; CHAT_CONVERSATION_ID
(probe in that conversation); CHAT_SMOKE_TIMEOUT (seconds per step, default 30).
``--json`` prints one JSON object per step instead of text.

Exit status: 0 every step passed, 1 a step failed, 2 configuration error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "sdk") not in sys.path:  # runs from a checkout without `pip install -e sdk` too
    sys.path.insert(0, str(ROOT / "sdk"))

from chatsdk.probe import config_from_env, format_step, run_probe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per step")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_env()
    except ValueError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2

    def show(step):
        print(json.dumps(step.to_json()) if args.json else format_step(step), flush=True)

    steps = asyncio.run(run_probe(cfg, show))
    ok = bool(steps) and all(s.ok for s in steps) and steps[-1].name == "download"
    total = sum(s.ms for s in steps)
    if not args.json:
        print(f"{'PASS' if ok else 'FAIL'}  {len(steps)} steps, {total:.1f} ms in total against {cfg.url}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
