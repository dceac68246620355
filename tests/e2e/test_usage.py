"""Usage each company can see (issue #21, chalicelib/usage.py): per tenant and UTC day, counted where
things happen, read by the company's admins (``GET /admin/usage``, JSON or CSV) and by ops across
tenants (``tenantctl usage``).  Each test uses a fresh company, so its counts are exactly what the
test did."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import jsonschema
import pytest

from chalicelib.protocol import schemas

from .client import Session
from .test_federation import api, make_company
from .test_files import PNG, _post
from .test_screening import set_rules

pytestmark = pytest.mark.e2e

CARD = "4111 1111 1111 1111"
EXTRA = ("u1", "u2", "u3")  # with admin, member, other: 6 members, a large conversation in the test stack


class Device(Session):
    """A session that also keeps every event it was posted (``wait_for`` consumes what it matches)."""

    def __init__(self, ws, email: str) -> None:
        self.events: list[dict[str, Any]] = []
        super().__init__(ws, email)

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if "requestId" not in frame:
                    self.events.append(frame)
                async with self._cond:
                    self.frames.append(frame)
                    self._cond.notify_all()
        except websockets.ConnectionClosed:
            pass


def usage(stack, email: str, **params) -> dict:
    r = api(stack, email, "GET", "/admin/usage", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    jsonschema.validate(body, schemas.RESPONSES["admin.usage.get"])
    return body


async def until(check, what: str, deadline: float = 30.0):
    """Poll ``check()`` (a value, or None while not there yet) until it answers."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = check()
        if last is not None and last[0]:
            return last[1]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not reached; last {last}")


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


async def test_usage_counts_exactly_what_the_company_did(stack):
    from chalicelib.services.tenants import upsert_user

    co = make_company(stack, "use")
    for name in EXTRA:
        upsert_user(co.tenant, f"{co.tenant}-{name}", f"{name}@{co.domain}", name.upper(), ["member"])
    set_rules(stack, co, [{"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card",
                           "action": "flag"}])
    emails = [co.admin, co.member, co.member, co.other, *(f"{n}@{co.domain}" for n in EXTRA)]
    devices = [await Device.open(stack, e) for e in emails]
    admin, member = devices[0], devices[1]
    try:
        others = [co.user_id(e) for e in [co.member, co.other, *(f"{n}@{co.domain}" for n in EXTRA)]]
        conv = (await admin.call("conversation.create", kind="group", members=others))["conversation"]
        conv_id = conv["conversationId"]
        for ws_send in range(3):
            body = f"pay {CARD}" if ws_send == 0 else f"hello {ws_send}"
            await admin.call("message.send", conversationId=conv_id, clientMessageId=uuid.uuid4().hex, body=body)
        r = api(stack, co.admin, "POST", f"/conversations/{conv_id}/messages",
                json={"clientMessageId": uuid.uuid4().hex, "body": "over REST"})
        assert r.status_code == 201, r.text
        res = await member.call("file.upload.request", conversationId=conv_id, name="d.png", size=len(PNG),
                                contentType="image/png")
        assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
        for d in devices:  # every device has every message (the sending device has the ack instead)
            for seq in range(1, 6):
                if d is admin and seq < 5:
                    continue
                await d.event("message.created", timeout=30, message__seq=seq, message__conversationId=conv_id)

        def posted():
            # Every event a device of the company got, but presence changes (nobody's event; not counted).
            expected = sum(1 for d in devices for f in d.events if f.get("type") != "presence.changed")
            got = usage(stack, co.admin)
            return got["totals"]["postsDelivered"] == expected, (got, expected)

        got, expected = await until(posted, "posts delivered")
        assert expected >= 5 * (len(devices) - 1)  # 6 devices had each of the 5 messages, at least
        totals = got["totals"]
        assert totals["messages"] == 4  # 3 on the socket, 1 over REST; the file notice is an upload
        assert (totals["uploads"], totals["uploadBytes"]) == (1, len(PNG))
        assert totals["pushes"] == 0 and totals["connectionMinutes"] == 0
        await until(lambda: (usage(stack, co.admin)["totals"]["dlpFlags"] == 1, True), "the DLP flag")
        assert got["storedBytes"] == len(PNG)
        assert got["to"] == today() and len(got["days"]) == 31 and got["days"][-1]["day"] == today()
        assert sum(d["messages"] for d in got["days"][:-1]) == 0
    finally:
        for d in devices:
            await d.close()

    # Each socket counts its minutes once, when it closes (rounded up: 1 minute each here).
    await until(lambda: (usage(stack, co.admin)["totals"]["connectionMinutes"] == len(devices), True),
                "connection-minutes")

    r = api(stack, co.admin, "GET", "/admin/usage", params={"from": today(), "to": today(), "format": "csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    day = usage(stack, co.admin, **{"from": today(), "to": today()})["days"]
    assert len(rows) == 1 and rows[0]["tenantId"] == co.tenant
    assert {k: int(v) for k, v in rows[0].items() if k not in ("tenantId", "day")} == \
        {k: v for k, v in day[0].items() if k != "day"}

    # ops: the same across tenants, by name (no Scan)
    other = make_company(stack, "use2")
    from tools import tenantctl

    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf):
        assert tenantctl.main(["usage", "--tenant", co.tenant, "--tenant", other.tenant,
                               "--from", today(), "--to", today(), "--format", "csv"]) == 0
    ops = {row["tenantId"]: row for row in csv.DictReader(io.StringIO(buf.getvalue()))}
    assert ops[co.tenant] == rows[0] and int(ops[other.tenant]["messages"]) == 0


async def test_usage_of_another_company_and_by_a_member_is_refused(stack):
    victim, attacker = make_company(stack, "usev"), make_company(stack, "usea")
    s = await Session.open(stack, victim.admin)
    try:
        conv = (await s.call("conversation.create", kind="group",
                             members=[victim.user_id(victim.member)]))["conversation"]["conversationId"]
        await s.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body="VICTIM-SECRET")
    finally:
        await s.close()
    await until(lambda: (usage(stack, victim.admin)["totals"]["messages"] == 1, True), "the victim's send")
    # wrong tenant: another company's admin sees its own company only, whatever it asks
    mine = usage(stack, attacker.admin)
    assert mine["tenantId"] == attacker.tenant and all(v == 0 for v in mine["totals"].values())
    r = api(stack, attacker.admin, "GET", "/admin/usage", params={"tenantId": victim.tenant})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    assert victim.tenant not in api(stack, attacker.admin, "GET", "/admin/usage", params={"format": "csv"}).text
    # wrong role: a member of the company itself
    r = api(stack, victim.member, "GET", "/admin/usage")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = api(stack, victim.member, "GET", "/admin/usage", params={"format": "csv"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("params", [{"from": "yesterday"}, {"to": "2026-13-01"}, {"format": "xml"},
                                    {"from": "2026-02-01", "to": "2026-01-01"},
                                    {"from": "2020-01-01", "to": "2026-01-01"}])
def test_usage_bad_windows_are_validation_errors(stack, params):
    co = make_company(stack, "useb")
    r = api(stack, co.admin, "GET", "/admin/usage", params=params)
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed", r.text
