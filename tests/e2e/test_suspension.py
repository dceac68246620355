"""Tenant suspension over real sockets and REST (docs/operations.md "Suspending a tenant").

`tenantctl suspend` sets ``Tenant.status`` to ``suspended`` and closes every open socket of the
tenant the way SCIM deactivation closes one user's; tokens of the tenant are refused on the
handshake and on REST (``forbidden``, 403) once running containers drop their cached tenant
(TENANT_CACHE_SECONDS: 30 s, 8 s on the test stack), and a second sweep after that time closes any socket a client
reopened meanwhile.  A fresh company per test: acme and globex stay active for everyone else.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .client import ActionError, connect, handshake_status, token_for
from .test_federation import connect_companies, make_company

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CACHE_WAIT = 45  # TENANT_CACHE_SECONDS (30, 8 on the test stack) + the second sweep + slack on 2 shared cores


async def _closed(session, timeout=15.0):
    await asyncio.wait_for(session.ws.wait_closed(), timeout)
    return session.ws.close_code


async def _eventually(check, want, timeout=CACHE_WAIT):
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


async def _tenantctl(stack, *args: str) -> subprocess.CompletedProcess:
    """The ops command as an operator runs it against the local stack (README: `--stack`)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tools.tenantctl", "--stack", str(stack.state_dir / "stack.json"),
                         *args], cwd=ROOT, capture_output=True, text=True, timeout=CACHE_WAIT + 60)


async def test_suspension_closes_sockets_and_refuses_handshake_and_rest(stack, sessions):
    from chalicelib.models import Tenant

    if stack.state_dir is None:
        pytest.skip("needs the local stack's stack.json (tenantctl --stack)")

    held, partner = make_company(stack, "held"), make_company(stack, "peer")
    connect_companies(stack, held, partner)
    member, other = await sessions(held.member), await sessions(held.other)
    outside = await sessions(partner.member)
    conv = (await outside.call("conversation.create", kind="direct", memberEmails=[held.member]))["conversation"]
    token = await asyncio.to_thread(token_for, stack, held.member)
    rest = f"{stack.origin}/conversations"
    assert requests.get(rest, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200

    # The suspension (with its second sweep after the cache time) runs while we watch.
    suspending = asyncio.create_task(_tenantctl(stack, "suspend", "--tenant", held.tenant))
    assert await _closed(member) == 1000 and await _closed(other) == 1000
    assert Tenant.get(held.tenant, consistent_read=True).status == "suspended"
    # Cross-company traffic stops at once (policy reads the tenant uncached): the partner is told why.
    with pytest.raises(ActionError) as err:
        await outside.call("message.send", conversationId=conv["conversationId"], clientMessageId="s1", body="hi?")
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == held.tenant
    assert err.value.error["reason"] == "tenant is suspended"

    # A client reconnecting at once may reach a warm container that still has the tenant cached:
    # the second sweep closes such a socket too.
    try:
        reopened = await connect(stack, token)
    except Exception:  # refused already (a container that had not cached the tenant)
        reopened = None
    done = await asyncio.wait_for(suspending, CACHE_WAIT + 90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"suspended": "%s", "closed": ' % held.tenant in done.stdout, done.stdout
    if reopened is not None:
        await asyncio.wait_for(reopened.wait_closed(), 15)

    # From now on every container refuses the tenant's tokens: handshake and REST alike.
    assert await handshake_status(stack, token) == 403
    resp = requests.get(rest, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", resp.text
    assert "suspended" in resp.json()["error"]["message"]

    # Resuming lets the same token in again once the caches turn.
    resumed = await _tenantctl(stack, "resume", "--tenant", held.tenant)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert await _eventually(lambda: handshake_status(stack, token), 101) == 101
