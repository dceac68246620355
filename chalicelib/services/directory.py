"""Directory writes that SCIM provisioning drives: deactivation, group membership.

Kept free of pydantic/scim2-models so any function may call it; the SCIM
function (chalicelib/scim/) turns requests into these calls.

Deactivation is enforced where identity is checked: ``authentication.authenticate``
refuses a directory entry that is not active on every ``$connect`` and REST
call, and the dev IdP issues it no token.  Sockets that are already open are
closed here through the ``@connections`` API; API Gateway then sends each its
``$disconnect``, whose handler removes the records as for any other close.
"""
from __future__ import annotations

import logging
from typing import Iterable

from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from ..identity import Principal
from ..models import Connection, User, condition_failed, user_key
from .connections import disconnect
from .context import Call, Env

log = logging.getLogger("chat.directory")

ACTOR = "scim"  # the audit log's actor for everything the tenant's IdP changes
_RETRIES = 5


def scim_call(env: Env, tenant_id: str, source_ip: str | None, request_id: str | None) -> Call:
    """A service call on behalf of the tenant's directory (audit actor ``scim``)."""
    return env.acting(Principal(tenant_id=tenant_id, user_id=ACTOR, email=f"{ACTOR}@{tenant_id}.invalid"),
                      source_ip=source_ip, request_id=request_id)


def close_sockets(env: Env, tenant_id: str, user_id: str) -> int:
    """Close every open socket of one user (Query by_user + one DELETE @connections each).

    A record whose socket is already gone (GoneException) is removed here,
    as a post answering Gone would; the others are removed by the
    ``$disconnect`` API Gateway sends after the close.
    """
    closed = 0
    client = None
    for conn in list(Connection.of_user(tenant_id, user_id)):
        if client is None:
            if env.management is None:
                raise RuntimeError("closing sockets needs the @connections client")
            client = env.management()
        try:
            client.delete_connection(ConnectionId=conn.connection_id)
            closed += 1
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "GoneException":
                raise
            disconnect(conn.connection_id)
    if closed:
        log.info("closed sockets of a deactivated user", extra={"tenant": tenant_id, "closed": closed})
    return closed


def set_active(env: Env, user: User, active: bool, now_ms: int) -> bool:
    """Activate or deactivate one user; deactivation closes their sockets at once. True if it changed."""
    status = "active" if active else "deactivated"
    changed = user.status != status
    if changed:
        user.update(actions=[User.status.set(status), User.updated_at.set(now_ms)])
    if not active:
        # Also when unchanged: a retried request (or a $connect racing the first one) leaves nothing open.
        close_sockets(env, user.tenant_id, user.user_id)
        # and their phones stop getting pushes (docs/push.md): devices and SNS endpoints removed.
        from .. import push
        from ..models import user_key

        push.unregister_all(user_key(user.tenant_id, user.user_id))
    return changed


def existing_users(tenant_id: str, user_ids: Iterable[str]) -> set[str]:
    """Which of these ids are live (not SCIM-deleted) users of the tenant (BatchGetItem, 100 per request)."""
    keys = [(tenant_id, uid) for uid in dict.fromkeys(user_ids) if 0 < len(uid.encode("utf-8")) <= 255]
    return {u.user_id for u in User.batch_get(keys, attributes_to_get=["tenant_id", "user_id", "scim_deleted_at"])
            if not u.scim_deleted_at}


def retag_user(tenant_id: str, user_id: str, remove: Iterable[str] = (), add: Iterable[str] = ()) -> None:
    """Edit one user's ``groups`` (the names the external-access policy matches).

    GetItem + conditional UpdateItem on the list as read, retried on a
    concurrent change, so two group updates touching one user both land.
    """
    remove, add = set(remove), [a for a in dict.fromkeys(add)]
    for _ in range(_RETRIES):
        try:
            user = User.get(tenant_id, user_id, consistent_read=True)
        except User.DoesNotExist:
            return
        current = list(user.groups or [])
        wanted = [g for g in current if g not in remove or g in add]
        wanted += [g for g in add if g not in wanted]
        if wanted == current:
            return
        cond = (User.groups.does_not_exist() | (User.groups == current)) if not current else (User.groups == current)
        try:
            user.update(actions=[User.groups.set(wanted)], condition=cond)
            return
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
    raise RuntimeError(f"groups of {user_key(tenant_id, user_id)} kept changing; retry the request")


def sync_group(tenant_id: str, old_name: str | None, new_name: str | None,
               old_members: set[str], new_members: set[str]) -> int:
    """Mirror a group change into its members' ``User.groups``; returns how many users changed.

    One GetItem + UpdateItem per user whose membership or group name changed
    (a rename touches every member).
    """
    touched = 0
    for uid in sorted(old_members - new_members):
        if old_name:
            retag_user(tenant_id, uid, remove=[old_name])
            touched += 1
    for uid in sorted(new_members - old_members):
        if new_name:
            retag_user(tenant_id, uid, add=[new_name])
            touched += 1
    if old_name != new_name:
        for uid in sorted(old_members & new_members):
            retag_user(tenant_id, uid, remove=[old_name] if old_name else [], add=[new_name] if new_name else [])
            touched += 1
    return touched
