"""Email uniqueness: every user write that sets an email claims it in the same transaction.

A tenant's email addresses are unique (docs/data-model.md "Email claims").  The
``by_email`` index cannot promise that: it is eventually consistent, so two
first sign-ins with one address (or SCIM racing a sign-in) could each read
"free" and each create a user.  So the authority is one item per address,
:class:`~chalicelib.models.EmailClaim`, written in the same TransactWriteItems
as the user: a creation puts the user and its claim; an email change updates
the user, claims the new address and releases the old one.  The claim's
condition (absent, or already this user's) makes exactly one of concurrent
writers win; the others get :class:`EmailTaken`.

Every writer of a user's email goes through :func:`write`: ``tenants.upsert_user``
(tenantctl, the devstack seed), SCIM create / replace / patch, and sign-in
auto-provisioning.  No route deletes a user record (a SCIM DELETE keeps it,
deactivated, and a later create of the address brings it back), so a claim is
released only when its holder's email changes.  :func:`backfill` writes the
claims of users created before claims existed.  Kept free of the policy and
message modules, so the authorizer loads nothing more for it.
"""
from __future__ import annotations

import random
import time
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError

from .models import EmailClaim, User, condition_failed, transaction

MAX_ATTEMPTS = 6  # a TransactionConflict (another transaction on one of the items) is retried


class EmailTaken(Exception):
    """Another user of the tenant holds the address (``holder``: its user id, when still known)."""

    def __init__(self, email: str, holder: str | None):
        super().__init__(f"{email} is held by another user")
        self.email, self.holder = email, holder


class UserConditionFailed(Exception):
    """The user item's own condition failed (e.g. it exists already, for a creation)."""


def write(user: User, *, old_email: str | None, condition: Any = None,
          actions: list[Any] | None = None) -> None:
    """The user's write and its email claim: 1 TransactWriteItems (2 or 3 items).

    Without ``actions``: PutItem of ``user`` (a creation or a whole replacement); with them:
    UpdateItem of ``user`` with ``actions``, which must set ``User.email`` to ``user.email``
    when it changes (the caller sets the attribute on ``user`` too: a transaction does not
    read the item back).  ``condition`` applies to the user item.  ``old_email``: the address
    the stored user holds now (None for a new user); when it differs from ``user.email`` its
    claim is released in the same transaction, if this user holds it.

    Raises :class:`EmailTaken` (the new address is another user's) or
    :class:`UserConditionFailed`; retries TransactionConflict with a short backoff.
    """
    new = (user.email or "").strip().lower()
    old = (old_email or "").strip().lower()
    release = bool(old) and old != new
    me = user.user_id
    for attempt in range(MAX_ATTEMPTS):
        tags: list[str] = []  # in the order the request lists the items: deletes, puts, updates
        try:
            with transaction() as tx:
                if release:
                    tx.delete(EmailClaim.item(user.tenant_id, old),
                              condition=EmailClaim.holder.does_not_exist() | (EmailClaim.holder == me))
                    tags.append("release")
                if new:
                    tx.save(EmailClaim.item(user.tenant_id, new, me),
                            condition=EmailClaim.holder.does_not_exist() | (EmailClaim.holder == me))
                    tags.append("claim")
                if actions is None:
                    tx.save(user, condition=condition)
                else:
                    tx.update(user, actions=actions, condition=condition)
                tags.append("user")  # after the claim either way: pynamodb lists puts, then updates
            return
        except TransactWriteError as exc:
            codes = {tag: (r.code if r else None) for tag, r in zip(tags, exc.cancellation_reasons or [])}
            if codes.get("user") == "ConditionalCheckFailed":
                raise UserConditionFailed() from None
            if codes.get("claim") == "ConditionalCheckFailed":
                raise EmailTaken(new, EmailClaim.holder_of(user.tenant_id, new)) from None
            if codes.get("release") == "ConditionalCheckFailed":
                release = False  # the old address is another user's claim (written by a backfill): keep it
                continue
            if "TransactionConflict" not in codes.values() or attempt == MAX_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, min(0.2, 0.01 * (2 ** attempt))))



def backfill(tenant_id: str, after: str | None = None, page_size: int = 100,
             progress: Any = None) -> dict[str, Any]:
    """Write the claims of a tenant's existing users (tenantctl email-claims-backfill).

    For directories written before claims existed.  Query the tenant's users in
    user id order (1 request per ``page_size`` users, keys and email only; never a
    Scan), then per user with an email 1 conditional PutItem of its claim (absent,
    or already this user's: running it again changes nothing).  ``after``: resume
    after this user id; ``progress(last_user_id, counts)`` is called after each page
    with the cursor to resume from.  Two users already sharing an address (written
    before claims) are reported in ``conflicts``, the first in user id order holding
    the claim; an operator changes or removes the other's email.
    """
    counts: dict[str, Any] = {"users": 0, "claimed": 0, "conflicts": []}
    last = after
    while True:
        cond = (User.user_id > last) if last else None
        page = list(User.query(tenant_id, cond, limit=page_size, page_size=page_size,
                               attributes_to_get=["tenant_id", "user_id", "email"]))
        for user in page:
            counts["users"] += 1
            conflict = _claim_existing(user)
            if conflict is None:
                counts["claimed"] += int(bool(user.email))
            else:
                counts["conflicts"].append(conflict)
        if not page:
            return counts
        last = page[-1].user_id
        if progress is not None:
            progress(last, counts)
        if len(page) < page_size:
            return counts


def _claim_existing(user: User) -> dict[str, str] | None:
    """1 conditional PutItem; the conflict (address, holder, this user) if another user holds it."""
    if not user.email:
        return None
    try:
        EmailClaim.item(user.tenant_id, user.email, user.user_id).save(
            condition=EmailClaim.holder.does_not_exist() | (EmailClaim.holder == user.user_id))
        return None
    except PutError as exc:
        if not condition_failed(exc):
            raise
    return {"email": user.email.lower(), "holder": EmailClaim.holder_of(user.tenant_id, user.email) or "",
            "userId": user.user_id}

