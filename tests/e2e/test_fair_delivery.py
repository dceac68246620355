"""Fair delivery (issue #21 item 2, chalicelib/fair.py): a company over its posts/s budget on the shared
delivery workers gets every event late, never dropped, and does not hold back another company.

Both companies here have 6-member conversations, so in the test stack (DELIVERY_LARGE_MEMBERS=5,
DELIVERY_SHARD_SIZE=4) every event goes through the delivery workers.  The flooding company's budget
is 6 posts a second, set before any of its users connects (no container has its limits cached)."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tools import tenantctl

from .client import Session
from .test_emf_metrics import StackLog
from .test_federation import make_company

pytestmark = pytest.mark.e2e

MESSAGES = 5
EXTRA = ("u1", "u2", "u3")


def company_of_six(stack, label: str, **limits: int):
    from chalicelib.services.tenants import upsert_user

    co = make_company(stack, label)
    for name in EXTRA:
        upsert_user(co.tenant, f"{co.tenant}-{name}", f"{name}@{co.domain}", name.upper(), ["member"])
    if limits:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in limits.items()]
        assert tenantctl.main(["limits", "--tenant", co.tenant, *args]) == 0
    return co, [co.admin, co.member, co.other, *(f"{n}@{co.domain}" for n in EXTRA)]


async def burst(sender: Session, conv: str, label: str) -> None:
    for i in range(MESSAGES):
        await sender.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=f"{label} {i}")


async def all_received(devices: list[Session], conv: str, timeout: float) -> float:
    """Wait until every device but the sender's has every message of ``conv``; when the last arrived."""
    async def one(d: Session) -> None:
        for seq in range(1, MESSAGES + 1):
            await d.event("message.created", timeout=timeout, message__seq=seq, message__conversationId=conv)

    await asyncio.gather(*[one(d) for d in devices[1:]])
    return time.monotonic()


async def test_a_company_over_its_delivery_budget_gets_everything_late_and_the_other_is_not_held(stack):
    log = StackLog(stack)
    flood, flood_emails = company_of_six(stack, "flood", delivery_posts_per_second=6)
    quiet, quiet_emails = company_of_six(stack, "quiet")
    f_dev = [await Session.open(stack, e) for e in flood_emails]
    q_dev = [await Session.open(stack, e) for e in quiet_emails]
    try:
        convs = []
        for co, devs, emails in ((flood, f_dev, flood_emails), (quiet, q_dev, quiet_emails)):
            res = await devs[0].call("conversation.create", kind="group", members=[co.user_id(e) for e in emails[1:]])
            convs.append(res["conversation"]["conversationId"])
        f_conv, q_conv = convs
        for d in f_dev[1:]:  # even the flooding company's announcements arrive (late, maybe)
            await d.event("conversation.created", timeout=90, conversation__conversationId=f_conv)

        await burst(f_dev[0], f_conv, "flood")  # 5 events x 6 devices: 30 posts, 5 s of its budget at least
        await burst(q_dev[0], q_conv, "quiet")
        # A deferred job waits 1, 2, 4 ... up to 60 s (+25% jitter) between tries (chalicelib/fair.py), so
        # one that keeps losing the budget can take minutes: this run has taken 22 s and 70 s.
        quiet_done, flood_done = await asyncio.gather(all_received(q_dev, q_conv, 60),
                                                      all_received(f_dev, f_conv, 240))
        # Nothing lost: every device of both companies has every message (all_received).  The quiet
        # company, which sent after the flood, had all of its messages while the flood's were still held.
        assert quiet_done < flood_done

        def throttled(tenant: str):
            return lambda doc: doc.get("tenant") == tenant and doc.get("TenantThrottled", 0) > 0

        doc = await log.wait_for(throttled(flood.tenant))
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["stage", "tenant"]]
        assert not [d for d in log.docs() if throttled(quiet.tenant)(d)]
        deferred = sum(d.get("DeliveryJobsDeferred", 0) for d in log.docs() if d.get("function") == "deliver")
        assert deferred > 0
    finally:
        for d in f_dev + q_dev:
            await d.close()
