"""Who may do what: the one place membership and tenant rules are decided.

Federation extends these functions (cross-company connections, each side's
policy); routes and services never test tenants or roles themselves.
A non-member gets ``not_found`` - never a hint that a conversation exists.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import models
from .identity import Principal
from .models import Conversation, Member, Tenant, TenantLink, split_user_key, tenant_of, user_key
from .protocol.errors import ChatError, Forbidden, NotFound

if TYPE_CHECKING:  # users are read across companies only: the users' models load on that first read
    from .models import User

MANAGER_ROLES = frozenset({"owner", "admin"})


def key_of(principal: Principal) -> str:
    return user_key(principal.tenant_id, principal.user_id)


def access(principal: Principal, conversation_id: str, *, consistent: bool = False
           ) -> tuple[Conversation, Member]:
    """The conversation and the caller's membership, or ``not_found`` (2 GetItems)."""
    member = Member.find(conversation_id, key_of(principal))
    conv = Conversation.find(conversation_id, consistent=consistent) if member else None
    if member is None or conv is None:
        raise NotFound("No such conversation.")
    return conv, member


def require_manager(member: Member) -> None:
    if member.role not in MANAGER_ROLES:
        raise Forbidden("Only the conversation's owners and admins may do this.")


def may_join(principal: Principal, conv: Conversation | None) -> Conversation:
    """Public channels of the caller's own tenant are open to join; nothing else is."""
    if conv is None or conv.kind != "channel" or conv.visibility != "public" \
            or conv.tenant_id != principal.tenant_id:
        raise NotFound("No such conversation.")
    if principal.roles == ("guest",):
        raise Forbidden("Guests join channels only when invited.")
    return conv


def reachable_users(principal: Principal, user_ids: list[str]) -> list[User]:
    """Directory entries the caller may put in a conversation: active users of its own tenant.

    Unknown ids, other tenants' users and deactivated users are all
    ``not_found`` alike (BatchGetItem, pages of 100).
    """
    wanted = list(dict.fromkeys(user_ids))
    found = {u.user_id: u for u in models.User.batch_get([(principal.tenant_id, uid) for uid in wanted])}
    missing = [uid for uid in wanted if uid not in found or not found[uid].active]
    if missing:
        raise NotFound(f"No such user: {missing[0][:64]}.", userId=missing[0][:64])
    return [found[uid] for uid in wanted]


# --- across companies ----------------------------------------------------------

class ExternalAccessDenied(ChatError):
    """Cross-company traffic refused; ``side`` names whose connection or policy refused."""

    code = "external_access_revoked"

    def __init__(self, side: str, reason: str) -> None:
        super().__init__(f"{side}: {reason}", side=side, reason=reason)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_window(external: dict[str, Any], now_ms: int) -> bool:
    """Is ``now`` allowed by the policy's time windows (in the tenant's time zone)?"""
    windows = external.get("windows") or []
    if not windows:
        return True
    from zoneinfo import ZoneInfo  # only a policy with time windows needs one (2 ms of imports: zoneinfo, sysconfig)

    local = datetime.fromtimestamp(now_ms / 1000, tz=ZoneInfo(external.get("timezone") or "UTC"))
    minute = local.hour * 60 + local.minute
    inside = any(local.weekday() in w.get("days", range(7))
                 and _minutes(w["start"]) <= minute < _minutes(w["end"]) for w in windows)
    return inside if external.get("windowMode", "inside") == "inside" else not inside


def _tenant_refusal(tenant: Tenant, peer: str, user: User | None, now_ms: int) -> str | None:
    """Why ``tenant``'s own external-access policy refuses traffic with ``peer`` (None = allowed)."""
    if tenant.status != "active":
        return "tenant is suspended"
    ext = tenant.external.as_dict() if tenant.external else {"mode": "all"}
    mode = ext.get("mode", "all")
    if mode == "off":
        return "external access is off"
    if mode == "partners" and peer not in (ext.get("partners") or []):
        return f"{peer} is not a listed partner"
    if mode == "users" and user is not None and user.user_id not in (ext.get("users") or []) \
            and not set(user.groups or []) & set(ext.get("groups") or []):
        return "user is not allowed to communicate externally"
    if not in_window(ext, now_ms):
        return "outside the allowed time window"
    return None


def crossing(a_tenant: str, b_tenant: str, now_ms: int, *, purpose: str = "message",
             a_user: User | None = None, b_user: User | None = None, starting: bool = False,
             a_is_admin: bool = False) -> None:
    """May traffic go between tenant A (and user) and tenant B (and user) now? Raises if not.

    Checks both sides of the connection (both approved, not revoked), each
    side's toggles for ``purpose`` (message | presence | files), who may start
    a conversation, both tenants' external-access policies and both users'
    status.  2 BatchGetItems.
    """
    mine, theirs = TenantLink.pair(a_tenant, b_tenant)
    refusal = _link_refusal(a_tenant, b_tenant, mine, theirs, purpose=purpose, starting=starting,
                            a_is_admin=a_is_admin)
    if refusal is None:
        tenants = {t.tenant_id: t for t in Tenant.batch_get([a_tenant, b_tenant])}
        refusal = _policy_refusal(a_tenant, b_tenant, tenants, now_ms, a_user=a_user, b_user=b_user)
    if refusal is not None:
        raise refusal


def _link_refusal(a_tenant: str, b_tenant: str, mine: TenantLink | None, theirs: TenantLink | None, *,
                  purpose: str = "message", starting: bool = False,
                  a_is_admin: bool = False) -> ExternalAccessDenied | None:
    """The connection's part of ``crossing`` on both sides' links as read: the refusal, or None."""
    for side, link in ((a_tenant, mine), (b_tenant, theirs)):
        if link is None or link.state != "active":
            return ExternalAccessDenied(side, "no active connection between the companies")
        if purpose == "presence" and not link.presence:
            return ExternalAccessDenied(side, "presence is not shared with the other company")
        if purpose == "files" and not link.files:
            return ExternalAccessDenied(side, "file sharing with the other company is off")
    assert mine is not None
    if starting and mine.who_may_start == "admins" and not a_is_admin:
        return ExternalAccessDenied(a_tenant, "only admins may start external conversations")
    return None


def _policy_refusal(a_tenant: str, b_tenant: str, tenants: dict[str, Tenant], now_ms: int, *,
                    a_user: User | None = None, b_user: User | None = None) -> ExternalAccessDenied | None:
    """The policies' part of ``crossing`` (both tenants as read, both users): the refusal, or None."""
    for side, peer, user in ((a_tenant, b_tenant, a_user), (b_tenant, a_tenant, b_user)):
        if user is not None and not user.active:
            return ExternalAccessDenied(side, "user is deactivated")
        reason = _tenant_refusal(tenants[side], peer, user, now_ms) if side in tenants else "unknown tenant"
        if reason:
            return ExternalAccessDenied(side, reason)
    return None


def allowed_recipients(origin_key: str, keys: list[str], now_ms: int, purpose: str = "message") -> list[str]:
    """Filter event recipients at fan-out time: other tenants' users only where allowed *now*.

    Same-tenant recipients pass untouched (no extra request).  Per other
    tenant: one crossing check; if that tenant lists users/groups, one
    BatchGetItem of those recipients' directory entries.
    """
    origin_tenant = tenant_of(origin_key)
    by_tenant: dict[str, list[str]] = {}
    for k in keys:
        by_tenant.setdefault(tenant_of(k), []).append(k)
    out = list(by_tenant.pop(origin_tenant, []))
    if not by_tenant:
        return out
    tenants = {t.tenant_id: t for t in Tenant.batch_get([origin_tenant, *by_tenant])}
    origin = tenants.get(origin_tenant)
    origin_user = models.User.find(*split_user_key(origin_key)) \
        if origin is not None and _mode(origin) == "users" else None
    for tenant_id, tkeys in by_tenant.items():
        try:
            crossing(origin_tenant, tenant_id, now_ms, purpose=purpose, a_user=origin_user)
        except ExternalAccessDenied:
            continue
        tenant = tenants[tenant_id]
        if _mode(tenant) == "users":
            users = models.User.batch_get([split_user_key(k) for k in tkeys])
            out += [user_key(u.tenant_id, u.user_id) for u in users
                    if u.active and not _tenant_refusal(tenant, origin_tenant, u, now_ms)]
        else:
            out += tkeys
    return out


def _mode(tenant: Tenant) -> str:
    return (tenant.external.as_dict() if tenant.external else {}).get("mode", "all")


def write_access(principal: Principal, conv: Conversation, now_ms: int) -> None:
    """May the caller add to this conversation (send, edit, react, read marker, typing) now?

    The other side of an external conversation becomes read-only when the
    connection or a policy no longer allows it; the host side keeps its own
    conversation, except a direct one, which has nobody left to talk to: there either
    person is refused as soon as the other may not take part (its company's policy no
    longer lets that user communicate externally, or the user is deactivated).
    """
    others = set(conv.tenants or ()) - {principal.tenant_id}
    if not others:
        return
    me = models.User.find(principal.tenant_id, principal.user_id)
    if conv.kind == "direct":
        # Both people of a direct conversation are known: both users' standing counts (a "users"-mode
        # policy's list or groups, deactivation), whoever writes.  1 Query (2 members) + 1 GetItem.
        mine = key_of(principal)
        peer = next((m for m in Member.of_conversation(conv.conversation_id) if m.user_key != mine), None)
        if peer is not None and peer.tenant_id != principal.tenant_id:
            crossing(principal.tenant_id, peer.tenant_id, now_ms, a_user=me,
                     b_user=models.User.find(peer.tenant_id, peer.user_id))
        return
    if principal.tenant_id != conv.tenant_id:
        crossing(principal.tenant_id, conv.tenant_id, now_ms, a_user=me)
    elif conv.kind == "direct":
        for other in others:
            crossing(principal.tenant_id, other, now_ms, a_user=me)


def history_cutoff(principal: Principal, conv: Conversation) -> int | None:
    """For the guest side of a revoked external conversation: history ends at the revocation."""
    if principal.tenant_id == conv.tenant_id or not conv.tenants or len(conv.tenants) < 2:
        return None
    mine, _ = TenantLink.pair(principal.tenant_id, conv.tenant_id)
    if mine is not None and mine.state != "active" and mine.revoked_at:
        return int(mine.revoked_at)
    return None


def read_cutoff(principal: Principal, conv: Conversation, now_ms: int) -> int | None:
    """What the guest side of an external conversation may read now (history, threads, sync, revisions).

    After a revocation: its copy, up to ``revokedAt``.  While the connection is
    active but a policy refuses (mode ``off``, not a listed partner or user,
    outside the time window, a suspended tenant): nothing -
    ``external_access_revoked`` naming the side - so what the host side writes
    meanwhile does not cross by being pulled instead of pushed.  The host
    side and same-company conversations are never limited (no extra request).
    """
    if principal.tenant_id == conv.tenant_id or not conv.tenants or len(conv.tenants) < 2:
        return None
    cutoff = history_cutoff(principal, conv)
    if cutoff is not None:
        return cutoff
    me = models.User.find(principal.tenant_id, principal.user_id)
    crossing(principal.tenant_id, conv.tenant_id, now_ms, a_user=me)
    return None


def reachable_by_email(principal: Principal, me: User | None, email: str, now_ms: int) -> User:
    """A user of any tenant by exact email, if the caller (``me``, its directory entry) may start
    a conversation with them."""
    user = models.User.find_by_email(email)
    if user is None or not user.active:
        raise NotFound(f"No such user: {email[:254]}.")
    if user.tenant_id == principal.tenant_id:
        return user
    mine, _ = TenantLink.pair(principal.tenant_id, user.tenant_id)
    if mine is None or mine.state != "active":
        raise NotFound(f"No such user: {email[:254]}.")  # unconnected companies learn nothing
    crossing(principal.tenant_id, user.tenant_id, now_ms, a_user=me, b_user=user, starting=True,
             a_is_admin=me is not None and "admin" in (me.roles or []))
    return user


# --- files (docs/files.md) ---------------------------------------------------------
# Every file permission is decided here: members of the conversation, and across
# companies only while the connection's ``files`` toggle is on on BOTH sides and both
# companies' external-access policies allow the two users (``crossing(purpose="files")``).

def _files_cross(principal: Principal, others: set[str], now_ms: int, peer_user: User | None = None) -> None:
    """Refuse unless every other company in ``others`` shares files with the caller's now."""
    if not others:
        return
    me = models.User.find(principal.tenant_id, principal.user_id)
    for other in sorted(others):
        crossing(principal.tenant_id, other, now_ms, purpose="files", a_user=me, b_user=peer_user)


def may_share_files(principal: Principal, conversation_id: str, now_ms: int) -> tuple[Conversation, Member]:
    """May the caller upload a file into this conversation now?  Returns it and the membership.

    Non-members get ``not_found``.  In an external conversation (members of
    several companies) the file would reach every company in it, so each other
    company must share files with the caller's (both sides' ``files`` toggle,
    both policies, both users): else ``external_access_revoked`` naming the
    refusing side.  Same-company conversations cost nothing extra.
    """
    conv, member = access(principal, conversation_id, consistent=True)
    _files_cross(principal, set(conv.tenants or ()) - {principal.tenant_id}, now_ms)
    return conv, member


def may_download(principal: Principal, file: Any, now_ms: int) -> tuple[Conversation, Member]:
    """May the caller fetch this file (a ``models.File``) now?  Members of its conversation only.

    Anyone who is not a member sees ``not_found`` (as if the file did not
    exist).  A member from another company than the uploader's may fetch it
    only while the two companies share files and both policies allow the
    caller and the uploader (``external_access_revoked`` otherwise, naming the
    side): a revoke or a toggle turned off stops new download URLs at once.
    """
    try:
        conv, member = access(principal, file.conversation_id)
    except NotFound:
        raise NotFound("No such file.") from None
    if file.tenant_id != principal.tenant_id:  # the uploader is the file's sender: both users must be allowed
        tenant, user_id = split_user_key(file.uploader_key)
        uploader = models.User.find(tenant, user_id)  # a departed uploader's files stay (as its messages do)
        _files_cross(principal, {file.tenant_id}, now_ms,
                     peer_user=uploader if uploader is not None and uploader.active else None)
    return conv, member


# --- people: display names for the user keys a client sees (users.get, docs/protocol.md) ---------

def visible_people(principal: Principal, keys: list[str], now_ms: int) -> tuple[list[User], list[str]]:
    """Directory entries behind ``keys`` ("<tenant>#<user>") the caller may see by name, and the rest.

    Own company: every user, deactivated ones too (history keeps showing who
    wrote an old message).  Another company: only active users, only while
    the connection is active on both sides and both companies' policies allow
    traffic now (``crossing``, with the caller's own entry for a ``users``
    policy), and only users that company lets talk externally (its ``users``
    /groups list): an enterprise admin's "no external access" user cannot be
    enumerated by id.  Everything else - unknown, hidden, malformed by
    content - lands in the second list alike, so nothing leaks.

    Cost: 1 BatchGetItem for up to 100 users (the caller's own entry rides
    along when other companies are asked about); then, only if other
    companies' users were found, 1 BatchGetItem of the caller's side of those
    connections and 1 of the tenants, plus one ``crossing`` (2 BatchGetItems)
    per *connected* company asked about.  No scans, no Query.
    """
    wanted = list(dict.fromkeys(keys))
    pairs = [split_user_key(k) for k in wanted]
    mine = key_of(principal)
    foreign = any(t != principal.tenant_id for t, _ in pairs)
    ask = list(pairs) + ([(principal.tenant_id, principal.user_id)] if foreign and mine not in wanted else [])
    found = {user_key(u.tenant_id, u.user_id): u for u in models.User.batch_get(ask)} if ask else {}
    me = found.get(mine)
    visible: dict[str, User] = {}
    others: dict[str, list[User]] = {}
    for k in wanted:
        user = found.get(k)
        if user is None:
            continue
        if user.tenant_id == principal.tenant_id:
            visible[k] = user
        elif user.active:
            others.setdefault(user.tenant_id, []).append(user)
    if others:
        links = TenantLink.batch_get([(principal.tenant_id, t) for t in others])
        connected = [lk.peer_tenant_id for lk in links if lk.state == "active"]
        tenants = {t.tenant_id: t for t in Tenant.batch_get(connected)} if connected else {}
        for tenant_id in connected:
            try:
                crossing(principal.tenant_id, tenant_id, now_ms, a_user=me)
            except ExternalAccessDenied:
                continue
            tenant = tenants.get(tenant_id)
            for user in others[tenant_id]:
                if tenant is not None and not _tenant_refusal(tenant, principal.tenant_id, user, now_ms):
                    visible[user_key(user.tenant_id, user.user_id)] = user
    return [visible[k] for k in wanted if k in visible], [k for k in wanted if k not in visible]


# --- people search: whose directories a caller may search (users.search, docs/protocol.md) ------

def searchable_peers(principal: Principal, now_ms: int) -> dict[str, Tenant]:
    """The connected companies whose active users the caller may find by name now, by tenant id.

    The same rule as :func:`visible_people` (what ``users.get`` would show by
    key): the connection active on both sides and both companies' policies
    allowing traffic now (``crossing``'s checks, with the caller's own entry
    for a ``users`` policy of its own company).  Each returned company's own
    ``users``/groups list is then applied per user (:func:`shows_external`).

    Cost: 1 Query of the caller's side of its connections; if any is active,
    1 BatchGetItem of the other sides and 1 of the tenants (100 per request),
    plus 1 GetItem of the caller's entry when its company's policy lists users.
    """
    mine = {lk.peer_tenant_id: lk for lk in TenantLink.of_tenant(principal.tenant_id) if lk.state == "active"}
    if not mine:
        return {}
    theirs = {lk.tenant_id: lk for lk in TenantLink.batch_get([(peer, principal.tenant_id) for peer in mine])}
    linked = [peer for peer in sorted(mine)
              if _link_refusal(principal.tenant_id, peer, mine[peer], theirs.get(peer)) is None]
    if not linked:
        return {}
    tenants = {t.tenant_id: t for t in Tenant.batch_get([principal.tenant_id, *linked])}
    own = tenants.get(principal.tenant_id)
    me = models.User.find(principal.tenant_id, principal.user_id) if own is not None and _mode(own) == "users" else None
    return {peer: tenants[peer] for peer in linked if peer in tenants
            and _policy_refusal(principal.tenant_id, peer, tenants, now_ms, a_user=me) is None}


def shows_external(tenant: Tenant, caller_tenant: str, user: User, now_ms: int) -> bool:
    """May a user of ``tenant`` (a company :func:`searchable_peers` returned) be shown to ``caller_tenant``?"""
    return user.active and not _tenant_refusal(tenant, caller_tenant, user, now_ms)
