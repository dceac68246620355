"""Tenant administration: company connections, external-access policy, roles, audit log.

Every function requires an admin of the caller's own tenant (per the
directory, so a role change applies at once) and writes an audit entry.
Nothing here can read or change another tenant's data: every key starts
with the caller's tenant, and the peer's side of a connection is only ever
written in the same transaction as ours, with a condition on its state.
"""
from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pynamodb.exceptions import TransactWriteError

from ..identity import ROLES as ROLE_NAMES
from ..models import AuditEntry, DomainClaim, Tenant, TenantLink, User, transaction
from ..protocol.errors import Conflict, Forbidden, NotFound, ValidationFailed
from .audit import audit, key_page, next_cursor, require_admin, require_reviewer, time_window  # noqa: F401 - also used by others
from .context import Call

MODES = ("off", "all", "partners", "users")
ROLES = ROLE_NAMES  # chalicelib/identity.py: admin, member, guest, reviewer


def _link_view(link: TenantLink) -> dict[str, Any]:
    return {"peerTenantId": link.peer_tenant_id, "state": link.state, "presence": bool(link.presence),
            "files": bool(link.files), "whoMayStart": link.who_may_start, "updatedAt": int(link.updated_at or 0),
            "revokedAt": int(link.revoked_at) if link.revoked_at else None}


# --- connections ----------------------------------------------------------------

def list_connections(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    return {"connections": [_link_view(x) for x in TenantLink.of_tenant(call.principal.tenant_id)]}


def _peer(call: Call, body: dict[str, Any]) -> str:
    peer = body.get("tenantId")
    if not peer and body.get("domain"):
        try:
            peer = DomainClaim.get(body["domain"].lower()).tenant_id
        except DomainClaim.DoesNotExist:
            peer = None
    if not peer:
        raise NotFound("No such company.")
    if peer == call.principal.tenant_id:
        raise ValidationFailed("A company cannot connect to itself.")
    try:
        Tenant.get(peer)
    except Tenant.DoesNotExist:
        raise NotFound("No such company.") from None
    return peer


def _write_pair(call: Call, peer: str, mine_state: str, theirs_state: str,
                mine_was: tuple[str, ...], theirs_was: tuple[str, ...], revoked: bool = False) -> None:
    """Both sides in one transaction, each conditioned on its expected previous state."""
    me = call.principal.tenant_id
    now = call.now_ms()
    mine, theirs = TenantLink.pair(me, peer)
    try:
        with transaction() as tx:
            for link, tenant, other, state, was in ((mine, me, peer, mine_state, mine_was),
                                                    (theirs, peer, me, theirs_state, theirs_was)):
                if link is None:
                    if "" not in was:
                        raise Conflict("The connection is not in a state that allows this.")
                    tx.save(TenantLink(tenant_id=tenant, peer_tenant_id=other, state=state, updated_at=now),
                            condition=TenantLink.state.does_not_exist())
                else:
                    if link.state not in was:
                        raise Conflict(f"The connection is {link.state}.")
                    actions = [TenantLink.state.set(state), TenantLink.updated_at.set(now)]
                    if revoked:
                        actions.append(TenantLink.revoked_at.set(now))
                    elif state == "active":
                        actions.append(TenantLink.revoked_at.remove())
                    tx.update(link, actions=actions, condition=TenantLink.state == link.state)
    except TransactWriteError:
        raise Conflict("The connection changed meanwhile; reload and retry.") from None


def invite(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Ask another company to connect; if it already asked us, this approves (both agreed)."""
    require_admin(call)
    peer = _peer(call, body)
    mine, _ = TenantLink.pair(call.principal.tenant_id, peer)
    if mine is not None and mine.state == "pending":
        _write_pair(call, peer, "active", "active", ("pending",), ("invited",))
        action = "connection.accept"
    else:
        _write_pair(call, peer, "invited", "pending", ("", "declined", "revoked"), ("", "declined", "revoked"))
        action = "connection.invite"
    link, _ = TenantLink.pair(call.principal.tenant_id, peer)
    audit(call, action, peer, before={"state": mine.state} if mine else None, after={"state": link.state})
    return {"connection": _link_view(link)}


def _transition(call: Call, body: dict[str, Any], action: str) -> dict[str, Any]:
    require_admin(call)
    peer = body["peerTenantId"]
    mine, _ = TenantLink.pair(call.principal.tenant_id, peer)
    if mine is None:
        raise NotFound("No such connection.")
    if action == "accept":  # only the side that was invited can accept: the inviter holds "invited"
        _write_pair(call, peer, "active", "active", ("pending",), ("invited",))
    elif action == "decline":
        _write_pair(call, peer, "declined", "declined", ("pending",), ("invited",))
    else:
        _write_pair(call, peer, "revoked", "revoked", ("invited", "pending", "active"),
                    ("invited", "pending", "active"), revoked=True)
    link, _ = TenantLink.pair(call.principal.tenant_id, peer)
    audit(call, f"connection.{action}", peer, before={"state": mine.state}, after={"state": link.state})
    return {"connection": _link_view(link)}


def accept(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    return _transition(call, body, "accept")


def decline(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    return _transition(call, body, "decline")


def revoke(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    return _transition(call, body, "revoke")


def connection_settings(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Our side's toggles for one connection: presence, files, who may start conversations."""
    require_admin(call)
    mine, _ = TenantLink.pair(call.principal.tenant_id, body["peerTenantId"])
    if mine is None:
        raise NotFound("No such connection.")
    before = _link_view(mine)
    actions = [TenantLink.updated_at.set(call.now_ms())]
    if "presence" in body:
        actions.append(TenantLink.presence.set(bool(body["presence"])))
    if "files" in body:
        actions.append(TenantLink.files.set(bool(body["files"])))
    if "whoMayStart" in body:
        actions.append(TenantLink.who_may_start.set(body["whoMayStart"]))
    mine.update(actions=actions)
    audit(call, "connection.settings", mine.peer_tenant_id, before=before, after=_link_view(mine))
    return {"connection": _link_view(mine)}


# --- external-access policy ------------------------------------------------------

def get_policy(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    tenant = Tenant.get(call.principal.tenant_id)
    return {"policy": tenant.external.as_dict() if tenant.external else {"mode": "all"}}


def set_policy(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    policy = {k: body[k] for k in ("mode", "partners", "users", "groups", "timezone", "windows", "windowMode")
              if k in body}
    try:
        ZoneInfo(policy.get("timezone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"Unknown time zone {str(policy.get('timezone'))[:64]!r}.") from None
    for w in policy.get("windows") or []:  # HH:MM is the schema's; the order is not expressible there
        if w["start"] >= w["end"]:
            raise ValidationFailed("Each window needs start < end as HH:MM (local time).")
    tenant = Tenant.get(call.principal.tenant_id)
    before = tenant.external.as_dict() if tenant.external else {"mode": "all"}
    tenant.update(actions=[Tenant.external.set(policy)])
    audit(call, "policy.update", call.principal.tenant_id, before=before, after=policy)
    return {"policy": policy}


# --- mobile push preview policy (docs/push.md "Content policy") ---------------------

def get_push_policy(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    tenant = Tenant.get(call.principal.tenant_id)
    return {"preview": tenant.push_preview or "full"}


def set_push_policy(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """What a notification of a message to our users may show: full | sender | none (audited)."""
    require_admin(call)
    tenant = Tenant.get(call.principal.tenant_id)
    before = tenant.push_preview or "full"
    tenant.update(actions=[Tenant.push_preview.set(body["preview"])])
    audit(call, "push.preview.update", call.principal.tenant_id, before={"preview": before},
          after={"preview": body["preview"]})
    return {"preview": body["preview"]}


# --- users and roles ------------------------------------------------------------

def list_users(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Query the tenant's own partition of the directory: 1 request per page."""
    require_admin(call)
    users, nxt = key_page(User, call.principal.tenant_id, User.user_id, body, 100)
    return {"users": [{"userId": u.user_id, "email": u.email, "displayName": u.display_name,
                       "roles": list(u.roles or []), "status": u.status, "groups": list(u.groups or [])}
                      for u in users],
            "nextCursor": nxt}


def set_roles(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    admin = require_admin(call)
    user = User.find(call.principal.tenant_id, body["userId"])
    if user is None:
        raise NotFound("No such user.")
    roles = sorted(set(body["roles"]))
    if user.user_id == admin.user_id and "admin" not in roles:
        raise Conflict("Admins cannot remove their own admin role; ask another admin.")
    if user.user_id == admin.user_id and "reviewer" in roles and "reviewer" not in (user.roles or []):
        # separation of duties: who writes the rules does not also read what they catch unchecked
        raise Forbidden("Admins cannot grant themselves the reviewer role; ask another admin.")
    before = list(user.roles or [])
    user.update(actions=[User.roles.set(roles)])
    audit(call, "user.roles", user.user_id, before={"roles": before}, after={"roles": roles})
    return {"userId": user.user_id, "roles": roles}


# --- directory sync: the SCIM role map (docs/scim.md "What maps to what") ---------------

def _role_map_view(tenant: Tenant) -> dict[str, Any]:
    stored = tenant.scim_role_map.as_dict() if tenant.scim_role_map is not None else {}
    return {"roleMap": {str(k): str(v) for k, v in sorted(stored.items())}, "roles": list(ROLE_NAMES)}


def get_scim_roles(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The company's SCIM role map (the IdP's role values -> ours): 1 GetItem."""
    require_admin(call)
    return _role_map_view(Tenant.get(call.principal.tenant_id, consistent_read=True))


def set_scim_roles(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the SCIM role map (what ``tenantctl scim-roles`` sets): 1 GetItem + 1 UpdateItem + the audit entry.

    Applies from the next SCIM write of a user (the SCIM function reads the map per request);
    users already provisioned keep their roles until the IdP sends them again.  ``{}`` clears it.
    """
    from .tenants import clean_scim_role_map

    require_admin(call)
    clean = clean_scim_role_map(body["roleMap"])
    tenant = Tenant.get(call.principal.tenant_id, consistent_read=True)
    before = _role_map_view(tenant)["roleMap"]
    tenant.update(actions=[Tenant.scim_role_map.set(clean) if clean else Tenant.scim_role_map.remove()])
    audit(call, "scim.roles.update", call.principal.tenant_id, before={"roleMap": before}, after={"roleMap": clean})
    return {"roleMap": dict(sorted(clean.items())), "roles": list(ROLE_NAMES)}


# --- audit log --------------------------------------------------------------------

def read_audit(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Query by time on the tenant's partition, newest first; actor/action filter the page."""
    require_admin(call)
    limit = int(body.get("limit") or 50)
    cond = AuditEntry.entry_id.between(*time_window(body))
    flt = None
    if body.get("actor"):
        flt = AuditEntry.actor == body["actor"]
    if body.get("actionName"):
        by_action = AuditEntry.action == body["actionName"]
        flt = by_action if flt is None else flt & by_action
    page = list(AuditEntry.query(call.principal.tenant_id, cond, filter_condition=flt,
                                 scan_index_forward=False, limit=limit))
    entries = [{"id": e.entry_id, "at": int(e.at), "actor": e.actor, "action": e.action, "target": e.target,
                "before": e.before.as_dict() if e.before else None, "after": e.after.as_dict() if e.after else None,
                "sourceIp": e.source_ip, "requestId": e.request_id} for e in page]
    return {"entries": entries, "nextCursor": next_cursor(page[-1].entry_id if len(page) == limit else None)}
