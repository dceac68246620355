"""Conversations: direct (one per pair), groups, channels; membership and roles; inbox."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pynamodb.exceptions import TransactWriteError

from .. import policy
from ..models import Conversation, Member, User, transaction, user_key, user_ref
from ..protocol.errors import Conflict, NotFound, ValidationFailed
from .context import Call, offset_cursor
from . import events, rosters, screening

MAX_INBOX = 1000  # memberships read to build one inbox (documented limit)


def conversation_view(conv: Conversation, member: Member | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "conversationId": conv.conversation_id, "kind": conv.kind, "tenantId": conv.tenant_id,
        "name": conv.name, "topic": conv.topic, "visibility": conv.visibility,
        "archived": bool(conv.archived), "receipts": bool(conv.receipts),
        "memberCount": int(conv.member_count or 0), "lastSeq": int(conv.last_seq or 0),
        "lastActivityAt": int(conv.last_activity_at or 0),
        "external": len(conv.tenants or ()) > 1, "tenants": sorted(conv.tenants or {conv.tenant_id}),
        "lastMessage": dict(conv.last_preview.as_dict()) if conv.last_preview else None,
    }
    if member is not None:
        view["role"] = member.role
        view["lastReadSeq"] = int(member.last_read_seq or 0)
        view["unread"] = max(0, view["lastSeq"] - view["lastReadSeq"])
    return view


def _own_view(call: Call, conv: Conversation, member: Member | None) -> dict[str, Any]:
    """The caller's view: the guest side of an external conversation sees no preview of what it may
    not read (written after a revocation, or while a policy refuses; see ``policy.read_cutoff``)."""
    view = conversation_view(conv, member)
    if member is not None:  # the caller's own mobile push setting here (push.conversation.set, docs/push.md)
        view["push"] = {"level": member.push_level,
                        "mutedUntil": int(member.push_muted_until) if member.push_muted_until else None}
    last = view["lastMessage"]
    if last and len(conv.tenants or ()) > 1 and conv.tenant_id != call.principal.tenant_id:
        try:
            cutoff = policy.read_cutoff(call.principal, conv, call.now_ms())
        except policy.ExternalAccessDenied:
            cutoff = -1
        if cutoff is not None and int(last.get("at") or 0) > cutoff:
            view["lastMessage"] = None
    return view


def _member(conv_id: str, user: User, role: str, now: int) -> Member:
    return Member(conversation_id=conv_id, user_key=user_key(user.tenant_id, user.user_id),
                  tenant_id=user.tenant_id, user_id=user.user_id, role=role, joined_at=now)


def _screen_texts(call: Call, conv: Conversation, texts: dict[str, str | None],
                  exists: bool = True) -> dict[str, Any]:
    """DLP on a name and/or topic (source = the field): raises message_blocked; the verdicts of those given."""
    return {field: screening.screen(call, conv, text, field, exists=exists) for field, text in texts.items() if text}


def _record_flags(call: Call, verdicts: dict[str, Any], conv_id: str) -> None:
    for field, verdict in verdicts.items():
        screening.record_flags(call, verdict, conv_id, field)


def _direct_id(a: str, b: str) -> str:
    return "d-" + hashlib.sha256("|".join(sorted((a, b))).encode()).hexdigest()[:32]


def create(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    p = call.principal
    kind = body["kind"]
    now = call.now_ms()
    me = User.find(p.tenant_id, p.user_id)
    if me is None:
        raise NotFound("No such user.")
    others = [uid for uid in dict.fromkeys(body.get("members", [])) if uid != p.user_id]
    users = policy.reachable_users(p, others) + _by_email(call, body.get("memberEmails") or [])
    users = list({(u.tenant_id, u.user_id): u for u in users if (u.tenant_id, u.user_id) !=
                  (p.tenant_id, p.user_id)}.values())
    if kind == "direct":
        if len(users) != 1:
            raise ValidationFailed("A direct conversation has exactly one other member.")
        conv_id = _direct_id(policy.key_of(p), user_key(users[0].tenant_id, users[0].user_id))
        existing = Conversation.find(conv_id, consistent=True)
        if existing is not None:
            return {"conversation": _own_view(call, existing, Member.find(conv_id, policy.key_of(p))),
                    "created": False}
        name = None
    else:
        if kind == "group" and len(users) + 1 > call.settings.max_group_members:
            raise ValidationFailed(f"A group has at most {call.settings.max_group_members} members.",
                                   limit=call.settings.max_group_members)
        if kind == "channel" and not body.get("name"):
            raise ValidationFailed("A channel needs a name.")
        conv_id = "c-" + uuid.uuid4().hex
        name = body.get("name")
    visibility = body.get("visibility", "private") if kind == "channel" else "private"
    conv = Conversation(
        conversation_id=conv_id, tenant_id=p.tenant_id, kind=kind, name=name,
        name_lower=name.lower() if name else None, topic=body.get("topic"), visibility=visibility,
        public_tenant=p.tenant_id if (kind == "channel" and visibility == "public") else None,
        created_by=policy.key_of(p), created_at=now, member_count=len(users) + 1, last_activity_at=now,
        tenants={p.tenant_id} | {u.tenant_id for u in users},
        receipts=bool(body.get("receipts", kind != "channel")),
    )
    members = [_member(conv_id, me, "owner" if kind != "direct" else "member", now)]
    members += [_member(conv_id, u, "member", now) for u in users]
    if len(members) > 99:
        raise ValidationFailed("Create with at most 98 initial members; add more with member.add.")
    # DLP under the rules of every company it would include (a refusal records no conversation id)
    screened = _screen_texts(call, conv, {"name": name, "topic": conv.topic}, exists=False)
    if "name" in screened:
        conv.name = screened["name"].text
        conv.name_lower = conv.name.lower()
    if "topic" in screened:
        conv.topic = screened["topic"].text
    try:
        with transaction() as tx:
            tx.save(conv, condition=Conversation.conversation_id.does_not_exist())
            for m in members:
                tx.save(m)
    except TransactWriteError:
        # A concurrent create of the same direct pair won: return that one.
        if kind == "direct" and Conversation.find(conv_id, consistent=True) is not None:
            return create(call, body)
        raise
    if len(members) > call.settings.delivery_large_members:  # large from the start: build its online roster
        rosters.start(call.delivery, conv, call.settings.connection_ttl_seconds)
    _record_flags(call, screened, conv_id)
    view = conversation_view(conv, members[0])
    events.to_users(call.delivery, [m.user_key for m in members],
                    {"type": "conversation.created", "conversation": conversation_view(conv)},
                    exclude_connection=call.connection_id, origin=policy.key_of(call.principal),
                    now_ms=call.now_ms())
    return {"conversation": view, "created": True}


def _by_email(call: Call, emails: list[str]) -> list[User]:
    """Users found by exact email, in this tenant or a connected one the policies allow."""
    if not emails:  # the common case: no directory read at all
        return []
    me = User.find(call.principal.tenant_id, call.principal.user_id)
    return [policy.reachable_by_email(call.principal, me, e, call.now_ms())
            for e in dict.fromkeys(e.strip().lower() for e in emails)]


def get(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    return {"conversation": _own_view(call, conv, member)}


def inbox(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """My conversations by last activity, with preview and unread count.

    Query my memberships (by_user) + BatchGetItem the conversations in pages of
    100, sorted in memory; the cursor is the position after the last item.
    """
    limit = int(body.get("limit") or call.settings.page_size)
    start = offset_cursor(body.get("cursor"))
    members: dict[str, Member] = {}
    for m in Member.of_user(policy.key_of(call.principal)):
        members[m.conversation_id] = m
        if len(members) >= MAX_INBOX:
            break
    convs = list(Conversation.batch_get(list(members)))
    convs.sort(key=lambda c: (-(c.last_activity_at or 0), c.conversation_id))
    page = convs[start:start + limit]
    nxt = start + limit if start + limit < len(convs) else None
    return {"conversations": [_own_view(call, c, members[c.conversation_id]) for c in page],
            "nextCursor": str(nxt) if nxt is not None else None}


def update(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    policy.require_manager(member)
    if conv.kind == "direct":
        raise ValidationFailed("Direct conversations cannot be renamed or archived.")
    screened = _screen_texts(call, conv, {f: body.get(f) for f in ("name", "topic")})  # DLP: may block or redact
    actions = []
    if "name" in body:
        name = screened["name"].text if "name" in screened else body["name"]
        actions += [Conversation.name.set(name), Conversation.name_lower.set(name.lower())]
    if "topic" in body:
        actions.append(Conversation.topic.set(screened["topic"].text if "topic" in screened else body["topic"]))
    if "receipts" in body:
        actions.append(Conversation.receipts.set(bool(body["receipts"])))
    if body.get("archived") is not None:
        actions.append(Conversation.archived.set(bool(body["archived"])))
        if conv.public_tenant:
            actions.append(Conversation.public_tenant.remove() if body["archived"]
                           else Conversation.public_tenant.set(conv.tenant_id))
    if not actions:
        raise ValidationFailed("Nothing to change.")
    conv.update(actions=actions)
    _record_flags(call, screened, conv.conversation_id)
    view = conversation_view(conv)
    events.to_conversation(call.delivery, conv, {"type": "conversation.updated", "conversation": view},
                           exclude_connection=call.connection_id, origin=policy.key_of(call.principal),
                           now_ms=call.now_ms())
    return {"conversation": conversation_view(conv, member)}


TX_MEMBERS = 99  # DynamoDB allows 100 items per transaction: members + the conversation's counter


def _change_members(call: Call, conv: Conversation, add: list[Member], remove: list[str],
                    kind: str) -> None:
    # Each chunk updates members and the count together, so the count never drifts.
    for i in range(0, max(len(add), len(remove), 1), TX_MEMBERS):
        chunk_add, chunk_remove = add[i:i + TX_MEMBERS], remove[i:i + TX_MEMBERS]
        with transaction() as tx:
            for m in chunk_add:
                tx.save(m, condition=Member.user_key.does_not_exist())
            for key in chunk_remove:
                tx.delete(Member(conversation_id=conv.conversation_id, user_key=key),
                          condition=Member.user_key.exists())
            actions = [Conversation.member_count.add(len(chunk_add) - len(chunk_remove))]
            new_tenants = {m.tenant_id for m in chunk_add} - set(conv.tenants or ())
            if new_tenants:  # sharing into another company makes the conversation external
                actions.append(Conversation.tenants.add(new_tenants | {conv.tenant_id}))
            tx.update(conv, actions=actions)
    changed = [m.user_key for m in add] + remove
    event = {"type": "members.changed", "conversationId": conv.conversation_id, "change": kind,
             "users": [user_ref(k) for k in changed]}
    # The members now, and those just removed (they hear that they left); the count as of this change
    # decides whether a worker resolves them.
    conv.member_count = int(conv.member_count or 0) + len(add) - len(remove)
    rosters.members_changed(call.delivery, conv, [m.user_key for m in add], remove,
                            now_s=int(call.clock()), ttl_seconds=call.settings.connection_ttl_seconds)
    events.to_conversation(call.delivery, conv, event, also_keys=remove, exclude_connection=call.connection_id,
                           origin=policy.key_of(call.principal), now_ms=call.now_ms())


def add_members(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    policy.require_manager(member)
    if conv.kind == "direct":
        raise ValidationFailed("Members cannot be added to a direct conversation.")
    if not body.get("userIds") and not body.get("memberEmails"):
        raise ValidationFailed("Give userIds and/or memberEmails.")
    users = policy.reachable_users(call.principal, body.get("userIds") or []) + \
        _by_email(call, body.get("memberEmails") or [])
    now = call.now_ms()
    new = [_member(conv.conversation_id, u, "member", now) for u in users
           if Member.find(conv.conversation_id, user_key(u.tenant_id, u.user_id)) is None]
    if conv.kind == "group" and (conv.member_count or 0) + len(new) > call.settings.max_group_members:
        raise ValidationFailed(f"A group has at most {call.settings.max_group_members} members.",
                               limit=call.settings.max_group_members)
    if new:
        _change_members(call, conv, new, [], "added")
    return {"added": [m.user_id for m in new]}


def remove_member(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    policy.require_manager(member)
    target = user_key(call.principal.tenant_id, body["userId"])
    tm = Member.find(conv.conversation_id, target)
    if tm is None:
        raise NotFound("No such member.")
    if tm.role == "owner" and member.role != "owner":
        raise policy.Forbidden("Only an owner may remove an owner.")
    _change_members(call, conv, [], [target], "removed")
    return {"removed": body["userId"]}


def leave(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    if conv.kind == "direct":
        raise ValidationFailed("Direct conversations cannot be left.")
    if member.role == "owner":
        owners = [m for m in Member.of_conversation(conv.conversation_id) if m.role == "owner"]
        if len(owners) == 1 and (conv.member_count or 0) > 1:
            raise Conflict("The last owner must hand over ownership before leaving.")
    _change_members(call, conv, [], [member.user_key], "left")
    return {"left": conv.conversation_id}


def join(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv = policy.may_join(call.principal, Conversation.find(body["conversationId"]))
    me = User.find(call.principal.tenant_id, call.principal.user_id)
    if Member.find(conv.conversation_id, policy.key_of(call.principal)) is None and me is not None:
        _change_members(call, conv, [_member(conv.conversation_id, me, "member", call.now_ms())], [], "joined")
    conv, member = policy.access(call.principal, conv.conversation_id)
    return {"conversation": conversation_view(conv, member)}


def members(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, _ = policy.access(call.principal, body["conversationId"])
    return {"members": [{"tenantId": m.tenant_id, "userId": m.user_id, "role": m.role,
                         "lastReadSeq": int(m.last_read_seq or 0)}
                        for m in Member.of_conversation(conv.conversation_id)]}


def set_role(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    conv, member = policy.access(call.principal, body["conversationId"])
    if member.role != "owner":
        raise policy.Forbidden("Only owners change roles.")
    tm = Member.find(conv.conversation_id, user_key(call.principal.tenant_id, body["userId"]))
    if tm is None:
        raise NotFound("No such member.")
    tm.update(actions=[Member.role.set(body["role"])])
    return {"userId": body["userId"], "role": body["role"]}


def public_channels(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Query the sparse public_channels index of my tenant: 1 request per page."""
    limit = int(body.get("limit") or call.settings.page_size)
    kwargs: dict[str, Any] = {"limit": limit}
    if body.get("cursor"):
        kwargs["range_key_condition"] = Conversation.name_lower > body["cursor"]
    found = list(Conversation.public_channels.query(call.principal.tenant_id, **kwargs))
    return {"channels": [conversation_view(c) for c in found],
            "nextCursor": found[-1].name_lower if len(found) == limit else None}
