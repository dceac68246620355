"""Tenant isolation, complete: every REST route and WebSocket action x every way to be the wrong caller.

Driven by ``isolation_table.py`` (one row per route/action; a unit test keeps
it complete).  Three worlds are built once per module, each a fresh pair of
companies V (victim) and X (caller): ``unconnected``; ``policy`` (connected,
an external conversation hosted by V, then V's policy turned ``off``);
``revoked`` (the same, then the connection revoked).  The ``role`` and
``guest`` cases use the unconnected world's V with a plain member and a
guest.  After the world is built V keeps writing ``VICTIM-SECRET`` messages
the caller may never see.

For each row and case the test asserts the structured outcome, that an
allowed reply holds nothing hidden, that V's stored state (conversation,
members, messages, reactions, files, quota, connection, policy, roles) is
unchanged, and that no V device received anything the caller caused.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from chalicelib.models import (Conversation, DlpFlag, File, Member, Message, Tenant, TenantLink, TenantUsage, User)
from chalicelib.protocol.errors import ERROR_CODES
from chalicelib.services.tenants import upsert_user

from .client import Session, token_for
from .isolation_table import CASES, REST, WS, Entry
from .test_federation import Company, api, connect_companies, make_company
from .test_files import PNG, _post

pytestmark = pytest.mark.e2e

SECRET = "VICTIM-SECRET"
# Any event an attack caused has arrived this long after it (presence coalesces for
# PRESENCE_COALESCE_SECONDS, 1 s in tests).  Rows do not wait for it: each row checks the victims'
# frames against its own attacks and those of the rows before it still within this time, and the
# last test waits it out once (a late frame names the row and case that caused it).
QUIET_SECONDS = 2.0


@dataclass
class Attack:
    row: str
    case: str
    caller_id: str
    markers: set[str]
    at: float


_recent: list[Attack] = []  # attacks whose events may still be on their way


@dataclass
class World:
    case: str
    v: Company
    x: Company
    values: dict[str, Any]
    victims: list[Session]
    sessions: dict[str, Session] = field(default_factory=dict)  # email -> socket
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, stack, email: str) -> str:
        if email not in self.tokens:
            self.tokens[email] = token_for(stack, email)
        return self.tokens[email]

    def digest(self) -> str:
        """Everything of V's an attack could change (strongly consistent reads, in this process)."""
        conv_id, v, x = self.values["conv"], self.v.tenant, self.x.tenant
        conv = Conversation.find(conv_id, consistent=True)
        channel = Conversation.find(self.values["channel"], consistent=True)
        links = TenantLink.pair(v, x)
        tenant = Tenant.get(v)
        rec = File.find(self.values["file"], consistent=True)
        usage = {t: int((TenantUsage.find(t) or TenantUsage(tenant_id=t)).file_bytes or 0) for t in (v, x)}
        state = {
            "conv": [conv.last_seq, conv.member_count, conv.name, conv.topic, conv.archived, conv.receipts,
                     sorted(conv.tenants or ())],
            "members": sorted((m.user_key, m.role, int(m.last_read_seq or 0))
                              for m in Member.of_conversation(conv_id)),
            "messages": [(int(m.seq), m.body, bool(m.deleted), m.edited_at,
                          {k: sorted(u) for k, u in (m.reactions.as_dict() if m.reactions else {}).items()})
                         for m in Message.page(conv_id, limit=100, consistent=True)],
            "channel": [channel.member_count],
            "links": [(lk.state, lk.presence, lk.files, lk.revoked_at) if lk else None for lk in links[:1]],
            "policy": tenant.external.as_dict() if tenant.external else None,
            "roles": {e: sorted(User.find_by_email(e).roles or []) for e in (self.v.admin, self.v.member, self.v.other)},
            "file": [rec.status, rec.seq],
            "usage": usage,
            "review": [(f.flag_id, f.review_state, f.claimed_by, f.resolution, len(f.history or []))
                       for f in DlpFlag.query(v, consistent_read=True)],
        }
        return json.dumps(state, sort_keys=True, default=str)


# --- building the worlds ----------------------------------------------------------------------

async def _open(world: World, stack, email: str) -> Session:
    s = await Session.open(stack, email)
    world.sessions[email] = s
    return s


async def _upload(owner: Session, others: list[Session], conv: str) -> str:
    res = await owner.call("file.upload.request", conversationId=conv, name="plan.png", size=len(PNG),
                           contentType="image/png")
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
    for s in others:
        await s.event("file.ready", timeout=30, file__fileId=res["file"]["fileId"])
    return res["file"]["fileId"]


async def build(stack, case: str) -> World:
    label = {"unconnected": "u", "policy": "p", "revoked": "r"}[case]
    v, x = make_company(stack, f"iv{label}"), make_company(stack, f"ix{label}")
    role_email, guest_email = f"plain@{v.domain}", f"guest@{v.domain}"
    # the caller's company's admin also reviews its own company's queue: the review routes then
    # answer it (about its own company), so a leak of V's queue would show
    upsert_user(x.tenant, f"{x.tenant}-admin", x.admin, "Admin", ["admin", "reviewer"])
    upsert_user(v.tenant, f"{v.tenant}-plain", role_email, "Plain", ["member"])
    upsert_user(v.tenant, f"{v.tenant}-guest", guest_email, "Guest", ["guest"])
    world = World(case, v, x, {}, [])
    vm, vo = await _open(world, stack, v.member), await _open(world, stack, v.other)
    xm = await _open(world, stack, x.member)
    await _open(world, stack, role_email)
    await _open(world, stack, guest_email)
    world.victims = [vm, vo]
    vid = {e: v.user_id(e) for e in (v.member, v.other, role_email)}
    own = (await xm.call("conversation.create", kind="group", members=[x.user_id(x.other)]))["conversation"]
    channel = (await vm.call("conversation.create", kind="channel", name=f"pub-{uuid.uuid4().hex[:6]}",
                             visibility="public"))["conversation"]
    private = (await vm.call("conversation.create", kind="group", members=[vid[v.other]]))["conversation"]
    await vm.call("message.send", conversationId=private["conversationId"], clientMessageId="p1",
                  body=f"{SECRET} private")
    if case != "unconnected":
        connect_companies(stack, v, x)
    external = {"memberEmails": [x.member]} if case != "unconnected" else {}
    conv = (await vm.call("conversation.create", kind="group", members=[vid[v.other], vid[role_email]],
                          **external))["conversation"]
    cid = conv["conversationId"]
    await vm.call("message.send", conversationId=cid, clientMessageId="root", body="root message")
    own_seq = 1
    leave = None
    if case != "unconnected":
        await xm.event("conversation.created", conversation__conversationId=cid)
        own_seq = (await xm.call("message.send", conversationId=cid, clientMessageId="mine",
                                 body="caller's own message"))["message"]["seq"]
        await vo.event("message.created", message__seq=own_seq, message__conversationId=cid)
        leave = (await vm.call("conversation.create", kind="group", memberEmails=[x.member]))["conversation"]
        await vo.call("presence.subscribe")  # watches xm while allowed: a later leak would show
    file_id = await _upload(vm, [vo] + ([xm] if case != "unconnected" else []), cid)
    if case == "policy":
        assert api(stack, v.admin, "PUT", "/admin/policy", json={"mode": "off"}).status_code == 200
    elif case == "revoked":
        assert api(stack, v.admin, "POST", f"/admin/connections/{x.tenant}/revoke").status_code == 200
    # V keeps writing: none of this may ever reach X.
    await vm.call("message.send", conversationId=cid, clientMessageId="after", body=f"{SECRET} after")
    await vm.call("message.send", conversationId=cid, clientMessageId="reply", body=f"{SECRET} reply",
                  threadRootSeq=1)
    await vo.event("message.created", message__body=f"{SECRET} reply")
    # an open review item of V's about conv (as screening writes it), with a secret excerpt
    now = int(time.time() * 1000)
    flag = DlpFlag(tenant_id=v.tenant, flag_id=f"{now:013d}#{uuid.uuid4().hex}", at=now, source="message",
                   conversation_id=cid, seq=1, sender_key=f"{v.tenant}#{vid[v.member]}", rule_ids=["secret"],
                   action="flag", excerpt=f"{SECRET} excerpt", state="open", history=[])
    flag.index_keys()
    flag.save()
    world.values = {
        "conv": cid, "own_conv": own["conversationId"], "leave_conv": leave["conversationId"] if leave else None,
        "channel": channel["conversationId"], "conv_private": private["conversationId"], "file": file_id,
        "victim_uid": vid[v.member], "victim_email": v.member, "other_uid": vid[v.other], "peer": v.tenant,
        "victim_key": f"{v.tenant}#{vid[v.member]}",
        "victim_seq": 1, "own_seq": own_seq, "role_email": role_email, "guest_email": guest_email,
        "review_item": flag.flag_id.replace("#", "-", 1),
    }
    await asyncio.sleep(0.5)  # let set-up events land before the victims' frames are cleared
    for s in world.victims:
        s.frames.clear()
    return world


@pytest.fixture(scope="module")
async def worlds(stack):
    built: dict[str, World] = {}
    lock = asyncio.Lock()

    async def get(case: str) -> World:
        key = "unconnected" if case in ("role", "guest") else case
        async with lock:
            if key not in built:
                built[key] = await build(stack, key)
        return built[key]

    get.built = built  # the worlds built so far: the late-event check reads every victim's frames
    yield get
    for w in built.values():
        for s in w.sessions.values():
            await s.close()


# --- playing one row ---------------------------------------------------------------------------

def _fill(value: Any, values: dict[str, Any], marker: str) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value.count("{") == 1:
        key = value[1:-1]
        return marker if key == "marker" else values[key]
    if isinstance(value, str):
        return value.replace("{marker}", marker)
    if isinstance(value, list):
        return [_fill(v, values, marker) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values, marker) for k, v in value.items()}
    return value


def _fields(entry: Entry, case: str, values: dict[str, Any], marker: str) -> dict[str, Any]:
    merged = {**entry.fields, **entry.by_case.get(case, {})}
    return {k: _fill(v, values, marker) for k, v in merged.items() if v is not None}


def _caller(world: World, case: str, admin: bool) -> str:
    if case == "role":
        return world.values["role_email"]
    if case == "guest":
        return world.values["guest_email"]
    return world.x.admin if admin else world.x.member


def _values_for(world: World, case: str) -> dict[str, Any]:
    values = dict(world.values)
    if case in ("role", "guest"):
        values["peer"] = world.x.tenant  # the own company's admin routes, aimed at some other company
    return values


async def _attack(stack, world: World, entry: Entry, case: str, is_rest: bool, marker: str) -> tuple[str, str]:
    """Run one attack; (outcome code or "ok", raw reply text)."""
    values = _values_for(world, case)
    body = _fields(entry, case, values, marker)
    if not is_rest:
        email = _caller(world, case, admin=False)
        session = world.sessions.get(email)
        reply = await session.raw(entry.name, **body)
        text = json.dumps(reply)
        return (reply["error"]["code"] if reply["type"] == "error" else "ok"), text
    email = _caller(world, case, admin=entry.path.startswith("/admin/"))
    path = entry.path.format(**{name: values[key] for name, key in entry.params.items()})
    headers = {"Authorization": f"Bearer {world.token(stack, email)}"}
    r = await asyncio.to_thread(requests.request, entry.method, f"{stack.origin}{path}", headers=headers,
                                json=body or None, timeout=20)
    if r.status_code < 300:
        return "ok", r.text
    err = r.json()["error"]
    assert ERROR_CODES[err["code"]][0] == r.status_code, (entry.name, case, r.status_code, err)
    return err["code"], r.text


def _caller_id(world: World, case: str, entry: Entry, is_rest: bool) -> str:
    email = _caller(world, case, admin=is_rest and entry.path.startswith("/admin/"))
    return User.find_by_email(email).user_id


ROWS = [(e, False) for e in WS] + [(e, True) for e in REST]


@pytest.mark.parametrize("entry,is_rest", ROWS, ids=[("rest " if r else "ws ") + e.name for e, r in ROWS])
async def test_isolation_matrix(stack, worlds, entry: Entry, is_rest: bool):
    cases = [c for c in CASES if entry.expect.get(c)]
    if not cases:
        pytest.skip(entry.why_not or "no case applies")
    failures: list[str] = []
    for case in cases:
        world = await worlds(case)
        before = world.digest()
        marker = f"ATTACK-{uuid.uuid4().hex[:10]}"
        _recent.append(Attack(entry.name, case, _caller_id(world, case, entry, is_rest), {marker}, time.monotonic()))
        got, text = await _attack(stack, world, entry, case, is_rest, marker)
        allowed = entry.expect[case].split("|")
        if got not in allowed:
            failures.append(f"{case}: expected {entry.expect[case]}, got {got}: {text[:300]}")
        if got == "ok":
            leaks = [SECRET] + [str(_values_for(world, case)[k]) for k in entry.hidden]
            found = [s for s in leaks if s in text]
            if found:
                failures.append(f"{case}: the reply shows what the caller may not see: {found}: {text[:300]}")
        after = world.digest()
        if after != before:
            failures.append(f"{case}: the victim's stored state changed:\n  {before}\n  {after}")
    failures += _late_frames(worlds.built.values())
    assert not failures, f"{entry.name}:\n" + "\n".join(failures)


def _late_frames(built) -> list[str]:
    """What the victims received that an attack (this row's or a recent one's) caused."""
    now = time.monotonic()
    _recent[:] = [a for a in _recent if now - a.at < QUIET_SECONDS + 30]  # a frame later than that: a timeout
    failures: list[str] = []
    for world in built:
        for victim in world.victims:
            for frame in list(victim.frames):
                user = frame.get("user") if isinstance(frame.get("user"), dict) else {}
                if frame.get("type") == "presence.changed" and user.get("tenantId") == world.v.tenant:
                    continue  # a colleague's own presence is the company's business
                raw = json.dumps(frame)
                causes = [a for a in _recent if any(m in raw for m in a.markers) or a.caller_id in raw]
                if causes or "ATTACK-" in raw:
                    named = ", ".join(sorted({f"{a.row} ({a.case})" for a in causes})[:5]) or "an attack"
                    failures.append(f"{victim.email} received what {named} caused: {raw[:300]}")
            victim.frames.clear()
    return failures


async def test_isolation_no_late_event_after_the_last_row(worlds):
    """The rows do not wait for late events one by one: this waits once, after the last of them."""
    if not worlds.built:
        pytest.skip("no row ran")
    await asyncio.sleep(QUIET_SECONDS)
    failures = _late_frames(worlds.built.values())
    assert not failures, "\n".join(failures)
