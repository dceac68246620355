"""Run the independent SCIM conformance checker ``scim2-tester`` against the local stack (docs/scim.md).

    .venv/bin/python tools/scim_conformance.py                  # starts a local stack, runs, stops it
    .venv/bin/python tools/scim_conformance.py --stack-file .devstack/stack.json   # a running `make run`
    .venv/bin/python tools/scim_conformance.py --verbose        # every check, not only the failures
    .venv/bin/python tools/scim_conformance.py --tenant-addresses   # the checker's users get acme addresses

The product requires each user's email to be an address of the tenant's
domains (docs/scim.md); scim2-tester makes users with random addresses at
random domains, or none. ``--tenant-addresses`` gives the users it
generates a userName that is an address at ``--domain`` and no ``emails``
(so the userName is the address), so the checks behind user creation
measure everything else.

A SCIM token for the demo tenant ``acme`` is created over the admin API with
a dev-IdP token of its admin (alice@acme.example), as an admin would. Prints
one line per failed check (``--verbose``: every check) and a closing
``N passed, N failed`` line. Exits 0 whatever the counts: it measures, the
e2e tests assert.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
# scim2-tester's verdicts: MUST met, SHOULD met, MAY used reasonably -> passed; MUST violated -> failed;
# a SHOULD not met is a "deviation", counted apart.
PASSED = ("success", "compliant", "acceptable")
FAILED = ("error", "critical")


@contextmanager
def local_stack() -> Iterator[str]:
    """A fresh local stack on free ports (as tests/conftest.py starts it); yields its origin."""
    state_dir = Path(tempfile.mkdtemp(prefix="devstack-scim-"))
    log = (state_dir / "stack.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(state_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        deadline, origin = time.monotonic() + 180, None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            if line.startswith("READY "):
                origin = line.split()[1]
                break
        if origin is None:
            raise SystemExit("local stack did not start: see " + str(state_dir / "stack.log"))
        # Keep draining the stack's stdout (handler logs) into its log, or it blocks once the pipe is full.
        threading.Thread(target=lambda: [log.write(chunk) for chunk in iter(proc.stdout.readline, b"")],
                         daemon=True).start()
        yield origin
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def scim_token(origin: str, admin: str) -> str:
    idp = requests.post(f"{origin}/dev/idp/token", json={"email": admin}, timeout=10)
    idp.raise_for_status()
    resp = requests.post(f"{origin}/admin/scim/token", timeout=10,
                         headers={"Authorization": f"Bearer {idp.json()['access_token']}"})
    resp.raise_for_status()
    return resp.json()["token"]


def use_tenant_addresses(domain: str) -> None:
    """Make every User that scim2-tester generates an address of ``domain`` as userName, without emails.

    (Its models are built from our /Schemas at discovery, so they are matched by their fields.)
    """
    import uuid

    import scim2_tester.checkers.resource_put as resource_put
    import scim2_tester.filling as filling

    original = filling.fill_with_random_values

    def fill(context, obj, *args, **kwargs):  # type: ignore[no-untyped-def]
        obj = original(context, obj, *args, **kwargs)
        if "user_name" in type(obj).model_fields and "emails" in type(obj).model_fields:
            obj.user_name = f"{uuid.uuid4().hex[:12]}@{domain}"
            obj.emails = None
        return obj

    filling.fill_with_random_values = fill
    resource_put.fill_with_random_values = fill


def run(origin: str, admin: str, verbose: bool) -> Counter[str]:
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import check_server

    token = scim_token(origin, admin)
    client = SyncSCIMClient(Client(base_url=f"{origin}/scim/v2", headers={"Authorization": f"Bearer {token}"},
                                   timeout=30))
    client.discover()
    counts: Counter[str] = Counter()
    for result in check_server(client):
        status = result.status.name.lower()
        counts[status] += 1
        if verbose or status not in PASSED + ("skipped",):
            where = f" [{result.resource_type}]" if result.resource_type else ""
            print(f"{status:10} {result.title}{where}: {result.reason or result.description or ''}".strip())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stack-file", help="stack.json of a running local stack (else one is started)")
    ap.add_argument("--admin", default="alice@acme.example", help="an admin of the tenant to test")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--tenant-addresses", action="store_true",
                    help="give the checker's generated users an address at --domain (see above)")
    ap.add_argument("--domain", default="acme.example")
    args = ap.parse_args()
    if args.tenant_addresses:
        use_tenant_addresses(args.domain)
    if args.stack_file:
        counts = run(json.loads(Path(args.stack_file).read_text())["origin"], args.admin, args.verbose)
    else:
        with local_stack() as origin:
            counts = run(origin, args.admin, args.verbose)
    passed = sum(counts.pop(k, 0) for k in PASSED)
    failed = sum(counts.pop(k, 0) for k in FAILED)
    extra = "".join(f", {n} {k}" for k, n in sorted(counts.items()))
    print(f"{passed} passed, {failed} failed{extra}")


if __name__ == "__main__":
    main()
