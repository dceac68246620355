"""Seed demo tenants through the same ops entry point an operator uses."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from tools import tenantctl

from .idp import AUDIENCE, DevIdp

SEED_FILE = Path(__file__).with_name("seed.json")
_NS = uuid.UUID("6f1c3f0e-6a52-4c55-9a0e-0d3b7c1d2e4f")


def subject_for(email: str) -> str:
    """A stable, opaque subject per email, like a real IdP's ``sub``."""
    return str(uuid.uuid5(_NS, email.lower()))


def seed(idp: DevIdp, path: Path = SEED_FILE) -> list[dict]:
    data = json.loads(path.read_text())
    for t in data["tenants"]:
        args = ["register", "--tenant", t["tenant"], "--name", t["name"],
                "--issuer", idp.issuer(t["tenant"]), "--audience", AUDIENCE]
        for d in t["domains"]:
            args += ["--domain", d]
        if tenantctl.main(args) != 0:
            raise RuntimeError(f"seeding tenant {t['tenant']} failed")
        idp.key(t["tenant"])  # tests read it from the state dir to sign crafted tokens
        for u in t["users"]:
            uargs = ["add-user", "--tenant", t["tenant"], "--sub", subject_for(u["email"]),
                     "--email", u["email"], "--name", u["name"]]
            for r in u["roles"]:
                uargs += ["--role", r]
            if tenantctl.main(uargs) != 0:
                raise RuntimeError(f"seeding user {u['email']} failed")
    return data["tenants"]
