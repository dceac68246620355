"""The review queue's backfill (``tenantctl review-backfill``): entries from before the queue join it."""
from __future__ import annotations

import uuid

import pytest

from chalicelib.identity import Principal
from chalicelib.models import DlpFlag
from chalicelib.services import review
from chalicelib.services.tenants import upsert_user

pytestmark = pytest.mark.functional


def _legacy(tenant: str, sender: str, at: int, action: str, conversation: str | None) -> DlpFlag:
    """As the first wave wrote entries: no state, no index keys."""
    flag = DlpFlag(tenant_id=tenant, flag_id=f"{at:013d}#{uuid.uuid4().hex}", at=at, source="message",
                   conversation_id=conversation, sender_key=sender, rule_ids=["x"], action=action, excerpt="…")
    flag.save()
    return flag


def test_backfill_puts_old_entries_in_the_queue_once_and_resumes(company):
    tenant = company.tenant
    upsert_user(tenant, f"{tenant}-rv", f"rv@{tenant}.example", "Rv", ["member", "reviewer"])
    rv = company.call(Principal(tenant, f"{tenant}-rv", f"rv@{tenant}.example", ("member", "reviewer")))
    sender = f"{tenant}#{company.users['bob'].user_id}"
    old = [_legacy(tenant, sender, 1_700_000_000_000 + i, "block" if i % 2 else "flag", "c-old" if i < 2 else None)
           for i in range(5)]
    assert review.list_items(rv, {"state": "open"})["items"] == []  # the queue's index does not have them

    first = review.backfill_queue(tenant, max_items=3)
    assert first["written"] == 3 and first["cursor"] == old[2].flag_id
    rest = review.backfill_queue(tenant, after=first["cursor"])
    assert rest == {"written": 2, "cursor": None}
    assert review.backfill_queue(tenant) == {"written": 0, "cursor": None}  # idempotent

    listed = review.list_items(rv, {"state": "open", "limit": 10})["items"]
    assert sorted(i["id"] for i in listed) == sorted(f.flag_id for f in old)
    blocks = review.list_items(rv, {"state": "open", "kind": "block"})["items"]
    assert len(blocks) == 2
    assert len(review.list_items(rv, {"conversationId": "c-old"})["items"]) == 2
    # another company's run touches nothing of this one
    assert review.backfill_queue(f"{tenant}-other") == {"written": 0, "cursor": None}
