"""People: the display names behind the user keys clients see in members, messages and events.

Views elsewhere carry only ``{tenantId, userId}`` (or ``"<tenant>#<user>"``);
``users.get`` resolves up to 100 of them at once.  Who may see whom is
decided by :func:`chalicelib.policy.visible_people`; this module only shapes
the answer.
"""
from __future__ import annotations

from typing import Any

from .. import policy
from ..models import User
from .context import Call


def person_view(user: User, caller_tenant: str) -> dict[str, Any]:
    """A directory entry as others see it.  A deactivated user keeps its name (old messages
    still say who wrote them) but not its email (the mailbox may be gone or reassigned)."""
    return {"tenantId": user.tenant_id, "userId": user.user_id, "displayName": user.display_name,
            "email": user.email if user.active else None, "external": user.tenant_id != caller_tenant,
            "active": user.active}


def get_users(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """``users.get``: the visible ones in request order; every other key in ``notFound``."""
    users, missing = policy.visible_people(call.principal, list(body["keys"]), call.now_ms())
    return {"users": [person_view(u, call.principal.tenant_id) for u in users], "notFound": missing}
