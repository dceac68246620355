"""The per-tenant SCIM bearer token: created, rotated and revoked by the tenant's admins.

The secret is shown once, in the reply that creates it; only its SHA-256 is
stored, under ``token#<hash>`` so the SCIM function finds the tenant of a
request with one GetItem.  A ``tenant#<id>`` item remembers the current
hash, so a rotation deletes the old token in the same transaction that
writes the new one: from that commit on the old token gets 401.
Plain stdlib + pynamodb: the admin REST function imports this, and it must
not pay for the SCIM function's pydantic import.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Any

from pynamodb.exceptions import TransactWriteError

from ..models import ScimCredential, transaction
from ..protocol.errors import Conflict, NotFound
from .audit import audit, require_admin
from .context import Call

PREFIX = "scim_"  # recognisable in logs and secret scanners; 256 bits of randomness follow


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _pointer_key(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def tenant_of(token: str | None) -> str | None:
    """The tenant a SCIM token belongs to, or None (1 GetItem)."""
    if not token or not token.startswith(PREFIX) or len(token) > 256:
        return None
    item = ScimCredential.find(f"token#{token_hash(token)}")
    return item.tenant_id if item is not None else None


def _view(pointer: ScimCredential | None) -> dict[str, Any]:
    if pointer is None:
        return {"configured": False, "createdAt": None, "createdBy": None}
    return {"configured": True, "createdAt": int(pointer.created_at), "createdBy": pointer.created_by}


def status(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Whether the tenant has a SCIM token, and who made it when (never the secret)."""
    require_admin(call)
    return {"scimToken": _view(ScimCredential.find(_pointer_key(call.principal.tenant_id)))}


def create(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Create the tenant's SCIM token, or rotate it (the previous one stops working at once)."""
    admin = require_admin(call)
    tenant_id = call.principal.tenant_id
    now = call.now_ms()
    pointer = ScimCredential.find(_pointer_key(tenant_id))
    token = PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(token)
    try:
        with transaction() as tx:
            tx.save(ScimCredential(key=f"token#{digest}", tenant_id=tenant_id, created_at=now,
                                   created_by=admin.user_id),
                    condition=ScimCredential.key.does_not_exist())
            if pointer is not None and pointer.token_hash:
                tx.delete(ScimCredential(key=f"token#{pointer.token_hash}"))
            cond = (ScimCredential.key.does_not_exist() if pointer is None
                    else ScimCredential.token_hash == pointer.token_hash)
            tx.save(ScimCredential(key=_pointer_key(tenant_id), tenant_id=tenant_id, token_hash=digest,
                                   created_at=now, created_by=admin.user_id), condition=cond)
    except TransactWriteError:
        raise Conflict("The SCIM token changed meanwhile; reload and retry.") from None
    created = ScimCredential(key=_pointer_key(tenant_id), tenant_id=tenant_id, token_hash=digest,
                             created_at=now, created_by=admin.user_id)
    audit(call, "scim.token.rotate" if pointer is not None else "scim.token.create", tenant_id,
          before=_view(pointer) if pointer is not None else None, after=_view(created))
    return {"token": token, "scimToken": _view(created)}


def revoke(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Delete the tenant's SCIM token: provisioning stops until an admin creates a new one."""
    require_admin(call)
    tenant_id = call.principal.tenant_id
    pointer = ScimCredential.find(_pointer_key(tenant_id))
    if pointer is None:
        raise NotFound("The tenant has no SCIM token.")
    try:
        with transaction() as tx:
            tx.delete(ScimCredential(key=f"token#{pointer.token_hash}"))
            tx.delete(ScimCredential(key=_pointer_key(tenant_id)),
                      condition=ScimCredential.token_hash == pointer.token_hash)
    except TransactWriteError:
        raise Conflict("The SCIM token changed meanwhile; reload and retry.") from None
    audit(call, "scim.token.revoke", tenant_id, before=_view(pointer), after=None)
    return {"scimToken": _view(None)}
