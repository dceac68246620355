"""The audit log and the checks in front of every administrative act: one small module.

What screening, compliance, exports, SCIM and the admin routes share.  Kept
apart from ``admin.py`` so the send path (messages -> screening) never loads
company administration.  The audit log is append-only: one conditional
PutItem per entry (no role may update or delete one, docs/operations.md).
"""
from __future__ import annotations

import uuid
from typing import Any

from ..models import AuditEntry, User
from ..protocol.errors import Forbidden, ValidationFailed
from .context import Call


def require_admin(call: Call) -> User:
    user = User.find(call.principal.tenant_id, call.principal.user_id)
    if user is None or not user.active or "admin" not in (user.roles or []):
        raise Forbidden("Only the tenant's admins may do this.")
    return user


def require_reviewer(call: Call) -> User:
    """The caller holds ``reviewer`` in its company's directory now (admin alone is not enough:
    admins manage the screening rules, reviewers read what they caught; docs/compliance.md)."""
    user = User.find(call.principal.tenant_id, call.principal.user_id)
    if user is None or not user.active or "reviewer" not in (user.roles or []):
        raise Forbidden("Only the company's reviewers (compliance officers) may do this.")
    return user


def require_admin_or_reviewer(call: Call) -> User:
    """Admins (who hold and release) and reviewers (who investigate) alike: a held file's download."""
    user = User.find(call.principal.tenant_id, call.principal.user_id)
    if user is None or not user.active or not {"admin", "reviewer"} & set(user.roles or []):
        raise Forbidden("Only the company's admins and reviewers may do this.")
    return user


def audit(call: Call, action: str, target: str | None, before: Any = None, after: Any = None) -> None:
    """Append one entry (conditional put: an entry is never overwritten)."""
    now = call.now_ms()
    entry = AuditEntry(tenant_id=call.principal.tenant_id, entry_id=f"{now:013d}#{uuid.uuid4().hex}", at=now,
                       actor=call.principal.user_id, action=action, target=target,
                       before=before if isinstance(before, dict) else ({"value": before} if before is not None else None),
                       after=after if isinstance(after, dict) else ({"value": after} if after is not None else None),
                       source_ip=call.source_ip, request_id=call.request_id)
    entry.save(condition=AuditEntry.entry_id.does_not_exist())


def key_page(model: Any, tenant_id: str, range_attr: Any, body: dict[str, Any],
             default_limit: int) -> tuple[list[Any], str | None]:
    """One page of a tenant's partition in range-key order after ``body["cursor"]``: 1 Query.

    Returns the items and the next cursor (the last range key of a full page, else None).
    """
    limit = int(body.get("limit") or default_limit)
    cond = range_attr > body["cursor"] if body.get("cursor") else None
    items = list(model.query(tenant_id, range_key_condition=cond, limit=limit))
    return items, getattr(items[-1], range_attr.attr_name) if len(items) == limit else None


def time_window(body: dict[str, Any]) -> tuple[str, str]:
    """Sort-key bounds ``(lower, upper)`` of a newest-first page of ``"<ms, 13 digits>#..."`` ids.

    ``from``/``to`` are epoch ms, ``cursor`` the previous page's ``nextCursor``.
    DynamoDB refuses a BETWEEN whose bounds are reversed, so an empty window
    is the caller's mistake: ``validation_failed``, not a server error.
    """
    start = int(body.get("from") or 0)
    end = int(body.get("to") or 9_999_999_999_999)
    lower, upper = f"{start:013d}#", body.get("cursor") or f"{end:013d}#~"
    if start > end or upper < lower:
        raise ValidationFailed("The window is empty: from must not be after to, nor the cursor before from.")
    return lower, upper


def next_cursor(last_id: str | None) -> str | None:
    """The cursor after a full page: just below its last (oldest) id."""
    return last_id[:-1] + chr(ord(last_id[-1]) - 1) if last_id else None
