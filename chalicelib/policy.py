"""Who may do what: the one place membership and tenant rules are decided.

Federation extends these functions (cross-company connections, each side's
policy); routes and services never test tenants or roles themselves.
A non-member gets ``not_found`` - never a hint that a conversation exists.
"""
from __future__ import annotations

from .auth import Principal
from .models import Conversation, Member, User, user_key
from .protocol.errors import Forbidden, NotFound

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
    found = {u.user_id: u for u in User.batch_get([(principal.tenant_id, uid) for uid in wanted])}
    missing = [uid for uid in wanted if uid not in found or not found[uid].active]
    if missing:
        raise NotFound(f"No such user: {missing[0][:64]}.", userId=missing[0][:64])
    return [found[uid] for uid in wanted]
