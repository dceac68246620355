"""Retention, legal hold and eDiscovery export over real HTTP and sockets (docs/compliance.md).

The test stack runs with ``RETENTION_DAY_SECONDS=3`` (a retention "day" is
three seconds: short enough to watch items expire, long enough to read an
item back before it may; see below for who expires them locally) and
``EXPORT_PAGES_PER_STEP=1``, so a small export takes several steps.  Each
test builds its own companies, so states never leak.
"""
from __future__ import annotations

import json
import time
import uuid

import boto3
import jsonschema
import pytest
import requests
from botocore.config import Config

from chalicelib.config import settings
from chalicelib.models import File, Message, User
from chalicelib.protocol import schemas
from chalicelib.services.tenants import upsert_user

from ..conftest import RETENTION_DAY_SECONDS
from .test_federation import api, connect_companies, make_company

pytestmark = pytest.mark.e2e

DAY = RETENTION_DAY_SECONDS  # seconds per retention "day" on the test stack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _ok(resp: requests.Response, status: int, action: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    jsonschema.validate(body, schemas.COMPLIANCE_RESPONSES[action])
    return body


def _uid(email: str) -> str:
    return User.find_by_email(email).user_id


def _wait(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _history(stack, email: str, conv: str) -> dict[int, dict]:
    r = api(stack, email, "GET", f"/conversations/{conv}/messages", params={"limit": 50})
    assert r.status_code == 200, r.text
    return {m["seq"]: m for m in r.json()["messages"]}


def _hold_swept(stack, admin: str, hold_id: str) -> dict | None:
    holds = api(stack, admin, "GET", "/admin/holds").json()["holds"]
    hold = next(h for h in holds if h["holdId"] == hold_id)
    return hold if hold["sweep"] == "done" else None


async def _send(s, conv: str, body: str) -> int:
    res = await s.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body=body)
    return res["message"]["seq"]


# --- retention: expiry, tombstones, holds, each company decides for its own ---------------------
#
# Expiry here is the local stack's TTL, as on AWS.  DynamoDB Local's own TTL stops for good on a table
# once an expired item is missing from one of its sparse indexes (the messages table), so the stack's
# reaper (devstack/ttl_reaper.py) plays AWS's TTL there; tests/e2e/test_ttl_reaping.py pins why.


def _gone(conv: str, seq: int) -> bool:
    return Message.find(conv, seq) is None


@pytest.mark.slow
async def test_an_expired_thread_reply_leaves_a_tombstone_and_its_root(stack, sessions):
    if stack.state_dir is None:
        pytest.skip("needs the local stack's short retention days")
    a = make_company(stack, "reply")
    s, so = await sessions(a.member), await sessions(a.other)
    conv = (await s.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    conv = conv["conversationId"]
    # the root's sender is on hold: the root stays, the reply (another sender) expires
    _ok(api(stack, a.admin, "POST", "/admin/holds", json={"kind": "user", "userId": a.user_id(a.member)}),
        201, "admin.holds.place")
    root = await _send(s, conv, "root, written under a hold")
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 1}), 200, "admin.retention.set")
    reply = (await so.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex,
                           body="a reply, due in a day (seconds here)", threadRootSeq=root))["message"]["seq"]
    stored = Message.find(conv, reply)
    assert stored.thread_key and stored.retained_sender and stored.expires_at is not None
    assert Message.find(conv, root).expires_at is None  # held: kept
    _wait(lambda: _gone(conv, reply), 30, "the stack's TTL to delete the reply")
    assert Message.find(conv, root).body.startswith("root")
    hist = _history(stack, a.other, conv)
    assert hist[reply] == {"conversationId": conv, "seq": reply, "deleted": True, "reason": "retention"}
    thread = await s.call("thread.history", conversationId=conv, rootSeq=root)
    assert thread["replies"] == []


@pytest.mark.slow
async def test_retention_expires_own_members_messages_and_a_hold_keeps_until_released(stack, sessions):
    if stack.state_dir is None:
        pytest.skip("needs the local stack's short retention days")
    a, b = make_company(stack, "keep"), make_company(stack, "peer")
    connect_companies(stack, a, b)
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 1}), 200, "admin.retention.set")
    hold = _ok(api(stack, a.admin, "POST", "/admin/holds",
                   json={"kind": "user", "userId": a.user_id(a.other), "name": "matter 42"}),
               201, "admin.holds.place")["hold"]
    sa, so, sb = await sessions(a.member), await sessions(a.other), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)],
                          memberEmails=[b.member]))["conversation"]["conversationId"]
    s1 = await _send(sa, conv, "a: expires in a second")
    s2 = await _send(so, conv, "a: held")
    s3 = await _send(sb, conv, "b: b keeps everything")
    assert (s1, s2, s3) == (1, 2, 3)
    m1 = Message.find(conv, 1)
    assert m1.expires_at == m1.created_at // 1000 + DAY and m1.retain_s == DAY
    assert Message.find(conv, 2).expires_at is None and Message.find(conv, 2).retain_s == DAY
    assert Message.find(conv, 3).expires_at is None and Message.find(conv, 3).retain_s is None

    _wait(lambda: _gone(conv, 1), 30, "the stack's TTL to delete seq 1")
    hist = _history(stack, b.member, conv)
    assert hist[1] == {"conversationId": conv, "seq": 1, "deleted": True, "reason": "retention"}
    assert hist[2]["body"] == "a: held" and hist[3]["body"] == "b: b keeps everything"
    sync = (await sb.call("sync", conversations=[{"conversationId": conv, "afterSeq": 0}]))["conversations"][0]
    assert [(m["seq"], m.get("reason")) for m in sync["messages"]] == [(1, "retention"), (2, None), (3, None)]
    older = (await sb.call("history", conversationId=conv, beforeSeq=3, limit=2))
    assert [(m["seq"], m.get("reason")) for m in older["messages"]] == [(2, None), (1, "retention")]
    assert older["nextBeforeSeq"] is None

    # Releasing the hold puts the expiry back from the write time: due at once, then gone.
    _ok(api(stack, a.admin, "POST", f"/admin/holds/{hold['holdId']}/release"), 200, "admin.holds.release")
    _wait(lambda: _hold_swept(stack, a.admin, hold["holdId"]), 60, "the release sweep")
    _wait(lambda: _gone(conv, 2), 30, "the stack's TTL to delete seq 2")
    hist = _history(stack, a.member, conv)
    assert hist[2]["reason"] == "retention"
    assert hist[3]["body"] == "b: b keeps everything"  # the other company's retention (none) governs it
    r = api(stack, a.admin, "POST", f"/admin/holds/{hold['holdId']}/release")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    actions = [e["action"] for e in api(stack, a.admin, "GET", "/admin/audit").json()["entries"]]
    assert {"retention.set", "hold.place", "hold.release"} <= set(actions)


# --- a retention change applies to what was already written: the backfill -------------------------

def _backfill(stack, admin: str) -> dict | None:
    got = _ok(api(stack, admin, "GET", "/admin/retention"), 200, "admin.retention.get")["retention"]
    return got["backfill"] if got["backfill"] and got["backfill"]["state"] == "done" else None


@pytest.mark.slow
async def test_a_retention_change_backfills_what_exists_and_a_hold_still_wins(stack, sessions):
    if stack.state_dir is None:
        pytest.skip("needs the local stack's short retention days")
    a, b = make_company(stack, "bfill"), make_company(stack, "bpeer")
    connect_companies(stack, a, b)
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 3650}), 200, "admin.retention.set")
    sa, so, sb = await sessions(a.member), await sessions(a.other), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)],
                          memberEmails=[b.member]))["conversation"]["conversationId"]
    solo = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)],
                          name="second"))["conversation"]["conversationId"]
    s1 = await _send(sa, conv, "a: 3650 days, then 1")
    s2 = await _send(so, conv, "a, held: kept")
    s3 = await _send(sb, conv, "b: b keeps everything")
    t1 = await _send(so, solo, "a: in a second conversation")
    assert Message.find(conv, s1).retain_s == 3650 * DAY
    _ok(api(stack, a.admin, "POST", "/admin/holds", json={"kind": "user", "userId": a.user_id(a.other)}),
        201, "admin.holds.place")
    # Shorten: the backfill recomputes from each message's write time, so these are due at once.
    got = _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 1}), 200, "admin.retention.set")
    assert got["retention"]["backfill"]["state"] == "running"
    done = _wait(lambda: _backfill(stack, a.admin), 60, "the backfill")
    assert done["processed"] >= 2 and done["conversationIds"] is None
    assert Message.find(conv, s2).expires_at is None  # the hold wins
    assert Message.find(conv, s3).retain_s is None  # the other company's message: not ours to change
    _wait(lambda: _gone(conv, s1), 30, "the stack's TTL to delete seq 1")
    assert Message.find(conv, s2).retain_s == DAY and Message.find(solo, t1).expires_at is None  # held sender
    hist = _history(stack, b.member, conv)
    assert hist[s1] == {"conversationId": conv, "seq": s1, "deleted": True, "reason": "retention"}
    assert hist[s3]["body"] == "b: b keeps everything"

    # A conversation override ("keep forever" here) supersedes and narrows to that conversation;
    # a newer change while one runs supersedes it (the last one decides).
    _ok(api(stack, a.admin, "PUT", f"/admin/conversations/{solo}/retention", json={"days": 3650}),
        200, "admin.retention.conversation")
    s4 = await _send(sa, solo, "a: under the override")
    assert Message.find(solo, s4).retain_s == 3650 * DAY
    _ok(api(stack, a.admin, "PUT", f"/admin/conversations/{solo}/retention", json={"days": None}),
        200, "admin.retention.conversation")
    done = _wait(lambda: _backfill(stack, a.admin), 60, "the override's backfill")
    assert done["conversationIds"] == [solo]
    m4 = Message.find(solo, s4)
    assert m4 is not None and m4.retain_s is None and m4.expires_at is None


def _usage(tenant: str) -> int:
    from chalicelib.models import TenantUsage

    item = TenantUsage.find(tenant)
    return int(item.file_bytes or 0) if item else 0


@pytest.mark.slow
async def test_a_file_set_to_expire_returns_its_quota_exactly_once(stack, sessions):
    from chalicelib.services import holds

    a = make_company(stack, "quota")
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 3650}), 200, "admin.retention.set")
    _wait(lambda: _backfill(stack, a.admin), 60, "the (empty) backfill")
    sa = await sessions(a.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    conv = conv["conversationId"]
    grant = await sa.call("file.upload.request", conversationId=conv, name="q.png", size=len(PNG),
                          contentType="image/png")
    assert _usage(a.tenant) == len(PNG)  # reserved
    assert _post(grant["upload"], PNG).status_code == 204
    ready = await sa.event("file.ready", timeout=30)
    file_id = ready["file"]["fileId"]
    rec = File.find(file_id, consistent=True)
    # its expiry is set: the bytes are committed to go, so they no longer count
    assert rec.expires_at is not None and rec.quota_returned is not None and _usage(a.tenant) == 0
    # a retried step (the announcement's, a sweep's, a backfill's) sets the expiry again: nothing more
    assert holds.file_expiry(rec, int(rec.expires_at)) is False
    assert holds.file_expiry(File.find(file_id, consistent=True), int(rec.expires_at)) is False
    assert _usage(a.tenant) == 0
    # keep forever: the expiry goes, the bytes count again (once, however often it is retried)
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": None}), 200, "admin.retention.set")
    _wait(lambda: _backfill(stack, a.admin), 60, "the keep-forever backfill")
    rec = File.find(file_id, consistent=True)
    assert rec.expires_at is None and rec.quota_returned is None and _usage(a.tenant) == len(PNG)
    assert holds.file_expiry(rec, None, forever=True) is False and _usage(a.tenant) == len(PNG)
    _ok(api(stack, a.admin, "PUT", "/admin/retention", json={"days": 3650}), 200, "admin.retention.set")
    _wait(lambda: _backfill(stack, a.admin), 60, "the backfill back to 3650 days")
    assert File.find(file_id, consistent=True).quota_returned is not None and _usage(a.tenant) == 0
    # deleting its message gives back nothing more: the bytes went back once already
    await sa.call("message.delete", conversationId=conv, seq=ready["seq"])
    assert File.find(file_id, consistent=True).status == "deleted" and _usage(a.tenant) == 0


async def test_an_export_lists_conversations_in_chunks_and_includes_all(stack, sessions):
    """The test stack lists 2 conversations at a time (EXPORT_CHUNK_CONVERSATIONS): 5 conversations,
    several shared by two of the company's members, each exported exactly once."""
    a = make_company(stack, "chunks")
    sa, so = await sessions(a.member), await sessions(a.other)
    other = a.user_id(a.other)
    convs = []
    for i in range(3):  # both members: listed through the first of them only
        c = (await sa.call("conversation.create", kind="group", members=[other], name=f"both {i}"))
        convs.append(c["conversation"]["conversationId"])
    for who, s in (("member", sa), ("other", so)):  # one member each
        c = (await s.call("conversation.create", kind="group", members=[], name=f"only {who}"))
        convs.append(c["conversation"]["conversationId"])
    t0 = int(time.time() * 1000)
    for c in convs:
        await _send(sa if c != convs[4] else so, c, f"in {c}")
    t1 = int(time.time() * 1000) + 1000
    for body in ({"from": t0, "to": t1}, {"from": t0, "to": t1, "userIds": [a.user_id(a.member), other]},
                 {"from": t0, "to": t1, "userIds": [other], "conversationIds": [convs[3]]}):
        exp, lines = _export(stack, a.admin, body)
        listed = [x["conversationId"] for x in lines if x["type"] == "conversation"]
        want = sorted(convs) if "conversationIds" not in body else sorted(set(convs) - {convs[3]}) + [convs[3]]
        assert sorted(listed) == sorted(want) and len(listed) == len(set(listed)), (body, listed)
        assert exp["progress"]["conversationsTotal"] == exp["progress"]["conversationsDone"] == len(want)
        assert exp["progress"]["listingDone"] is True
        assert lines[-1]["conversations"] == len(want) and lines[-1]["messages"] == len(want)


# --- holds take the expiry off what was written, releases put it back; overrides are per company ----

async def test_hold_sweeps_and_overrides_on_stored_items(stack, sessions):
    a, b = make_company(stack, "sweep"), make_company(stack, "other")
    connect_companies(stack, a, b)
    # 365 "days" are 18 minutes on the test stack: nothing expires during this test
    api(stack, a.admin, "PUT", "/admin/retention", json={"days": 365})
    sa, so, sb = await sessions(a.member), await sessions(a.other), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)],
                          memberEmails=[b.member]))["conversation"]["conversationId"]
    await _send(sa, conv, "one")  # seq 1

    def expiry(seq: int) -> int | None:
        m = Message.find(conv, seq)
        return None if m.expires_at is None else int(m.expires_at)

    def due(seq: int) -> int:
        m = Message.find(conv, seq)
        return int(m.created_at) // 1000 + int(m.retain_s)

    assert expiry(1) == due(1) and Message.find(conv, 1).retain_s == 365 * DAY
    # a user hold placed after the write: the sweep (sparse by_retained_sender index) takes it off
    user_hold = api(stack, a.admin, "POST", "/admin/holds", json={"kind": "user", "userId": a.user_id(a.member)}
                    ).json()["hold"]
    done = _wait(lambda: _hold_swept(stack, a.admin, user_hold["holdId"]), 60, "the user hold's sweep")
    assert expiry(1) is None and done["swept"] == 1
    api(stack, a.admin, "POST", f"/admin/holds/{user_hold['holdId']}/release")
    _wait(lambda: _hold_swept(stack, a.admin, user_hold["holdId"]), 60, "the release sweep")
    assert expiry(1) == due(1)

    # a conversation hold covers this company's members' messages in it, written before and after
    conv_hold = _ok(api(stack, a.admin, "POST", "/admin/holds", json={"kind": "conversation",
                                                                      "conversationId": conv}),
                    201, "admin.holds.place")["hold"]
    await _send(so, conv, "two")  # seq 2: held at write time
    _wait(lambda: _hold_swept(stack, a.admin, conv_hold["holdId"]), 60, "the conversation hold's sweep")
    assert expiry(1) is None and expiry(2) is None
    listed = _ok(api(stack, a.admin, "GET", "/admin/holds"), 200, "admin.holds.list")["holds"]
    assert {h["holdId"]: h["state"] for h in listed} == {user_hold["holdId"]: "released",
                                                         conv_hold["holdId"]: "active"}
    api(stack, a.admin, "POST", f"/admin/holds/{conv_hold['holdId']}/release")
    _wait(lambda: _hold_swept(stack, a.admin, conv_hold["holdId"]), 60, "the release sweep")
    assert expiry(1) == due(1) and expiry(2) == due(2)

    # overrides: b's override in the shared conversation applies to b's members' messages only
    _ok(api(stack, b.admin, "PUT", f"/admin/conversations/{conv}/retention", json={"days": 7}),
        200, "admin.retention.conversation")
    _ok(api(stack, a.admin, "PUT", f"/admin/conversations/{conv}/retention", json={"days": 30}),
        200, "admin.retention.conversation")
    await _send(sb, conv, "three")  # seq 3, b's: 7
    await _send(sa, conv, "four")   # seq 4, a's: 30
    assert Message.find(conv, 3).retain_s == 7 * DAY and Message.find(conv, 4).retain_s == 30 * DAY
    back = _ok(api(stack, a.admin, "PUT", f"/admin/conversations/{conv}/retention", json={"inherit": True}),
               200, "admin.retention.conversation")
    assert back["override"] is False
    await _send(sa, conv, "five")  # seq 5: a's default again
    assert Message.find(conv, 5).retain_s == 365 * DAY
    r = api(stack, a.admin, "PUT", "/admin/retention", json={"days": 5})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    got = _ok(api(stack, a.admin, "GET", "/admin/retention"), 200, "admin.retention.get")["retention"]
    assert got["days"] == 365 and got["allowedDays"][0] == 1


# --- export, checked line by line ------------------------------------------------------------------

def _post(upload: dict, data: bytes) -> requests.Response:
    return requests.post(upload["url"], data=dict(upload["fields"]), files={"file": ("f.png", data, "image/png")},
                         timeout=60)


def _export(stack, admin: str, body: dict) -> tuple[dict, list[dict]]:
    started = _ok(api(stack, admin, "POST", "/admin/exports", json=body), 202, "admin.exports.start")["export"]
    assert started["state"] == "queued"

    def done():
        r = _ok(api(stack, admin, "GET", f"/admin/exports/{started['exportId']}"), 200, "admin.exports.get")
        return r["export"] if r["export"]["state"] in ("done", "failed") else None

    exp = _wait(done, 90, "the export")
    assert exp["state"] == "done", exp
    resp = requests.get(exp["download"]["url"], timeout=30)
    assert resp.status_code == 200, resp.text
    assert exp["progress"]["bytes"] == len(resp.content)
    lines = [json.loads(x) for x in resp.content.decode("utf-8").splitlines()]
    return exp, lines


async def test_export_contents_line_by_line(stack, sessions):
    a, b = make_company(stack, "disc"), make_company(stack, "party")
    connect_companies(stack, a, b)
    api(stack, a.admin, "PUT", "/admin/retention", json={"days": 3650})  # three hours here: nothing expires
    sa, so = await sessions(a.member), await sessions(a.other)
    sb, sbo = await sessions(b.member), await sessions(b.other)
    member, other = a.user_id(a.member), a.user_id(a.other)
    group = (await sa.call("conversation.create", kind="group", members=[other]))["conversation"]["conversationId"]
    await _send(sa, group, "before the range")  # seq 1
    time.sleep(1.1)
    t0 = int(time.time() * 1000)
    await _send(sa, group, "hello")  # seq 2
    await sa.call("message.edit", conversationId=group, seq=2, body="hello v2")
    await so.call("reaction.add", conversationId=group, seq=2, emoji="👍")
    await _send(so, group, "to delete")  # seq 3
    await so.call("message.delete", conversationId=group, seq=3)
    await so.call("message.send", conversationId=group, clientMessageId="r", body="reply", threadRootSeq=2)  # 4
    grant = await sa.call("file.upload.request", conversationId=group, name="plan.png", size=len(PNG),
                          contentType="image/png")
    assert _post(grant["upload"], PNG).status_code == 204
    ready = await sa.event("file.ready", timeout=30)  # seq 5
    file_id = ready["file"]["fileId"]
    shared = (await sa.call("conversation.create", kind="group", memberEmails=[b.member]))["conversation"]
    shared = shared["conversationId"]
    await _send(sa, shared, "cross hi")  # seq 1
    await _send(sb, shared, "cross back")  # seq 2
    private_b = (await sb.call("conversation.create", kind="group", members=[b.user_id(b.other)]))
    private_b = private_b["conversation"]["conversationId"]
    await _send(sbo, private_b, "b only")
    t1 = int(time.time() * 1000) + 1000

    exp, lines = _export(stack, a.admin, {"from": t0, "to": t1})
    assert exp["progress"] == {"conversationsTotal": 2, "conversationsDone": 2, "listingDone": True,
                               "messages": 6, "files": 1,
                               "tombstones": 0, "bytes": exp["progress"]["bytes"]}
    head, *body, summary = lines
    assert head["type"] == "export" and head["tenantId"] == a.tenant and head["from"] == t0 and head["to"] == t1
    # listed 2 at a time on the test stack: the total is not known yet when the header is written
    assert head["conversations"] is None and head["userIds"] == [] and head["createdBy"] == a.user_id(a.admin)
    assert summary == {"type": "summary", "conversations": 2, "messages": 6, "files": 1, "tombstones": 0}
    # per conversation (in id order): its line, then its messages newest first
    by_conv: dict[str, list[dict]] = {}
    order = []
    for line in body:
        if line["type"] == "conversation":
            order.append(line["conversationId"])
            by_conv[line["conversationId"]] = [line]
        else:
            by_conv[line["conversationId"]].append(line)
    assert order == sorted([group, shared])
    assert private_b not in by_conv and "b only" not in json.dumps(lines)

    conv_line, f5, r4, d3, m2 = by_conv[group]
    assert conv_line == {"type": "conversation", "conversationId": group, "kind": "group", "name": None,
                         "topic": None, "hostTenantId": a.tenant, "tenants": [a.tenant], "shared": False,
                         "createdAt": conv_line["createdAt"], "lastSeq": 5}
    me, them = {"tenantId": a.tenant, "userId": member}, {"tenantId": a.tenant, "userId": other}
    assert [x["seq"] for x in (f5, r4, d3, m2)] == [5, 4, 3, 2]  # seq 1 is before the range
    assert m2["body"] == "hello v2" and m2["edited"] and m2["sender"] == me and not m2["deleted"]
    assert [r["body"] for r in m2["revisions"]] == ["hello"] and m2["revisions"][0]["at"] == m2["createdAt"]
    assert m2["reactions"] == {"👍": [them]} and m2["threadRootSeq"] is None
    assert m2["expiresAt"] == m2["createdAt"] // 1000 + 3650 * DAY
    assert d3["deleted"] and d3["body"] is None and d3["revisions"] == [] and d3["deletedAt"] >= d3["createdAt"]
    assert d3["sender"] == them
    assert r4["body"] == "reply" and r4["threadRootSeq"] == 2
    assert f5["kind"] == "file" and f5["sender"] == me
    assert f5["file"] == {"fileId": file_id, "name": "plan.png", "size": len(PNG), "contentType": "image/png",
                          "uploader": me, "status": "clean", "sha256": None, "uploadedAt": f5["file"]["uploadedAt"]}
    for line in (f5, r4, d3, m2):
        assert set(line) == set(m2)  # every message line has the same fields
        assert line["type"] == "message" and t0 <= line["createdAt"] <= t1

    conv_line, back, hi = by_conv[shared]
    assert conv_line["shared"] and conv_line["tenants"] == sorted([a.tenant, b.tenant])
    assert (hi["seq"], hi["body"], hi["sender"]) == (1, "cross hi", me)
    assert (back["seq"], back["body"], back["sender"]) == (2, "cross back",
                                                          {"tenantId": b.tenant, "userId": b.user_id(b.member)})
    assert back["expiresAt"] is None  # b has no retention

    # the file object carries the retention tag its company's lifecycle rule acts on
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    rec = File.find(file_id)
    tags = s3.get_object_tagging(Bucket=settings().files_bucket, Key=rec.object_key, VersionId=rec.version_id)
    assert tags["TagSet"] == [{"Key": "retention", "Value": "3650d"}]

    # b's company-wide export: the shared conversation and its own, never a's group
    _, b_lines = _export(stack, b.admin, {"from": t0, "to": t1})
    assert {x["conversationId"] for x in b_lines if x["type"] == "conversation"} == {shared, private_b}
    # scoped to one user: that user's conversations only
    _, u_lines = _export(stack, b.admin, {"from": t0, "to": t1, "userIds": [b.user_id(b.other)]})
    assert [x["conversationId"] for x in u_lines if x["type"] == "conversation"] == [private_b]
    assert [x["body"] for x in u_lines if x["type"] == "message"] == ["b only"]
    # an empty range still makes a well-formed file
    _, e_lines = _export(stack, a.admin, {"from": 0, "to": 1, "conversationIds": [group]})
    assert [x["type"] for x in e_lines] == ["export", "conversation", "summary"]
    r = api(stack, a.admin, "POST", "/admin/exports", json={"from": t1, "to": t0})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    actions = [e["action"] for e in api(stack, a.admin, "GET", "/admin/audit").json()["entries"]]
    assert actions.count("export.start") == 2 and "export.download" in actions


# --- isolation: every new route x (own admin, member, no token, other company's admin) ------------

ROUTES = [
    ("GET", "/admin/retention", None, "admin.retention.get"),
    ("PUT", "/admin/retention", {"days": 30}, "admin.retention.set"),
    ("PUT", "/admin/conversations/{conv}/retention", {"days": 7}, "admin.retention.conversation"),
    ("POST", "/admin/holds", {"kind": "user", "userId": "{member_id}"}, "admin.holds.place"),
    ("POST", "/admin/holds", {"kind": "conversation", "conversationId": "{conv}"}, "admin.holds.place"),
    ("GET", "/admin/holds", None, "admin.holds.list"),
    ("POST", "/admin/holds/{hold}/release", None, "admin.holds.release"),
    ("POST", "/admin/exports", {"from": 0, "to": 9_999_999_999_999, "conversationIds": ["{conv}"]},
     "admin.exports.start"),
    ("POST", "/admin/exports", {"from": 0, "to": 9_999_999_999_999, "userIds": ["{member_id}"]},
     "admin.exports.start"),
    ("GET", "/admin/exports/{export}", None, "admin.exports.get"),
]


@pytest.mark.parametrize("method,path,body,action", ROUTES,
                         ids=[f"{m} {p} {json.dumps(b)[:40] if b else ''}" for m, p, b, _ in ROUTES])
async def test_compliance_route_isolation(stack, sessions, method, path, body, action):
    a, b = make_company(stack, "iso"), make_company(stack, "intruder")
    s = await sessions(a.member)
    conv = (await s.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    hold = api(stack, a.admin, "POST", "/admin/holds", json={"kind": "user", "userId": a.user_id(a.other)}).json()
    export = api(stack, a.admin, "POST", "/admin/exports", json={"from": 0, "to": 1}).json()
    fill = {"conv": conv["conversationId"], "member_id": a.user_id(a.member), "hold": hold["hold"]["holdId"],
            "export": export["export"]["exportId"]}
    url = path.format(**fill)
    payload = {k: (v.format(**fill) if isinstance(v, str) else
                   [x.format(**fill) for x in v] if isinstance(v, list) else v)
               for k, v in (body or {}).items()} or None
    audit_before = api(stack, a.admin, "GET", "/admin/audit").json()["entries"]
    retention_before = api(stack, a.admin, "GET", "/admin/retention").json()
    # the wrong role: a member of the same company
    r = api(stack, a.member, method, url, json=payload)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    # no token
    r = requests.request(method, f"{stack.origin}{url}", json=payload, timeout=15)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    # the wrong tenant: another company's admin
    r = api(stack, b.admin, method, url, json=payload)
    if "{" in path or any("{" in str(v) for v in (body or {}).values()):  # names a's conversation/user/...
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    else:
        assert r.status_code in (200, 201), r.text  # acts on b's own company only
        if path == "/admin/holds" and method == "GET":
            assert r.json()["holds"] == []
    assert api(stack, a.admin, "GET", "/admin/audit").json()["entries"] == audit_before
    assert api(stack, a.admin, "GET", "/admin/retention").json() == retention_before
    # the own admin may
    r = api(stack, a.admin, method, url, json=payload)
    status = {"admin.holds.place": 201, "admin.exports.start": 202}.get(action, 200)
    _ok(r, status, action)


# --- a legal hold keeps every original: edits, deletes, a deleted file's object version (issue #22) ----

def _originals(conv: str) -> list:
    from chalicelib.models import HeldOriginal

    return list(HeldOriginal.query(conv, consistent_read=True))


async def test_a_hold_keeps_every_original_until_released(stack, sessions):
    from botocore.exceptions import ClientError

    a, b = make_company(stack, "keep"), make_company(stack, "snoop")
    api(stack, a.admin, "PUT", "/admin/retention", json={"days": 1})  # 3 s here: only the hold keeps anything
    hold = _ok(api(stack, a.admin, "POST", "/admin/holds", json={"kind": "user", "userId": a.user_id(a.member),
                                                                 "name": "matter 22"}),
               201, "admin.holds.place")["hold"]
    sa, so = await sessions(a.member), await sessions(a.other)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    conv = conv["conversationId"]
    t0 = int(time.time() * 1000)
    await _send(sa, conv, "v0")  # seq 1: edited 22 times, past the 20 revisions a message keeps
    for n in range(1, 23):
        await sa.call("message.edit", conversationId=conv, seq=1, body=f"v{n}")
    await _send(sa, conv, "the secret")  # seq 2: deleted
    await sa.call("message.delete", conversationId=conv, seq=2)
    deleted = await so.event("message.deleted", timeout=10)  # the other member's screen shows the delete
    assert deleted["seq"] == 2
    grant = await sa.call("file.upload.request", conversationId=conv, name="evidence.png", size=len(PNG),
                          contentType="image/png")
    assert _post(grant["upload"], PNG).status_code == 204
    file_id = (await sa.event("file.ready", timeout=30))["file"]["fileId"]  # seq 3
    await sa.call("message.delete", conversationId=conv, seq=3)
    t1 = int(time.time() * 1000) + 1000

    # users see what they always saw: the edit, the deletes, 20 revisions at most, no deleted body
    hist = _history(stack, a.other, conv)
    assert hist[1]["body"] == "v22" and hist[1]["editedAt"] and not hist[1]["deleted"]
    assert hist[2]["deleted"] and hist[2]["body"] is None and hist[3]["deleted"] and hist[3]["file"] is None
    revs = await so.call("message.revisions", conversationId=conv, seq=1)
    assert [r["body"] for r in revs["revisions"]] == [f"v{n}" for n in range(2, 22)]
    assert (await so.call("message.revisions", conversationId=conv, seq=2))["revisions"] == []
    # a download of the deleted file is refused to members
    with pytest.raises(Exception):
        await so.call("file.download.request", fileId=file_id)

    # the file's scanned version is kept under an S3 legal hold: S3 refuses to delete it
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    rec = File.find(file_id, consistent=True)
    assert rec.status == "deleted" and rec.held_at and rec.expires_at is None
    where = {"Bucket": settings().files_bucket, "Key": rec.object_key, "VersionId": rec.version_id}
    assert s3.get_object_legal_hold(**where)["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as refused:
        s3.delete_object(**where)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.get_object(**where)["Body"].read() == PNG

    # ... and the company's admins and reviewers can still download it (audited); nobody else can
    got = _ok(api(stack, a.admin, "GET", f"/admin/files/{file_id}/download"), 200, "admin.files.download")
    assert got["file"]["held"] and got["file"]["status"] == "deleted" and got["file"]["versionId"] == rec.version_id
    assert requests.get(got["download"]["url"], timeout=30).content == PNG
    reviewer = f"reviewer@{a.domain}"
    upsert_user(a.tenant, f"{a.tenant}-reviewer", reviewer, "Reviewer", ["member", "reviewer"])
    got = _ok(api(stack, reviewer, "GET", f"/admin/files/{file_id}/download"), 200, "admin.files.download")
    assert requests.get(got["download"]["url"], timeout=30).content == PNG
    r = api(stack, a.member, "GET", f"/admin/files/{file_id}/download")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = requests.get(f"{stack.origin}/admin/files/{file_id}/download", timeout=15)
    assert r.status_code == 401
    r = api(stack, b.admin, "GET", f"/admin/files/{file_id}/download")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api(stack, a.admin, "GET", "/admin/files/not-a-file-id/download")
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_failed"
    r = api(stack, a.admin, "GET", f"/admin/files/{uuid.uuid4().hex}/download")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    entries = api(stack, a.admin, "GET", "/admin/audit").json()["entries"]
    assert [(e["action"], e["actor"]) for e in entries if e["action"] == "file.download"] == \
        [("file.download", f"{a.tenant}-reviewer"), ("file.download", a.user_id(a.admin))]

    # the export has every original, marked edited/deleted with times
    _, lines = _export(stack, a.admin, {"from": t0, "to": t1, "conversationIds": [conv]})
    msgs = {x["seq"]: x for x in lines if x["type"] == "message"}
    m1, m2, m3 = msgs[1], msgs[2], msgs[3]
    assert m1["body"] == "v22" and len(m1["revisions"]) == 20
    assert [o["body"] for o in m1["originals"]] == [f"v{n}" for n in range(22)]
    assert {o["replacedBy"] for o in m1["originals"]} == {"edit"}
    assert m1["originals"][0]["at"] == m1["createdAt"]
    assert all(x["replacedAt"] == y["at"] for x, y in zip(m1["originals"], m1["originals"][1:]))
    assert m1["originals"][-1]["replacedAt"] == m1["editedAt"]
    assert m2["deleted"] and m2["body"] is None and m2["deletedAt"]
    assert m2["originals"] == [{"body": "the secret", "at": m2["createdAt"], "replacedAt": m2["deletedAt"],
                                "replacedBy": "delete", "file": None}]
    assert m3["deleted"] and m3["file"]["fileId"] == file_id and m3["file"]["status"] == "deleted"
    assert m3["originals"] == [{"body": "evidence.png", "at": m3["createdAt"], "replacedAt": m3["deletedAt"],
                                "replacedBy": "delete",
                                "file": {"fileId": file_id, "versionId": rec.version_id, "kept": True}}]
    assert len(_originals(conv)) == 24

    # releasing the hold: normal retention resumes; the originals expire with their messages
    _ok(api(stack, a.admin, "POST", f"/admin/holds/{hold['holdId']}/release"), 200, "admin.holds.release")
    _wait(lambda: _hold_swept(stack, a.admin, hold["holdId"]), 60, "the release sweep")
    assert s3.get_object_legal_hold(**where)["LegalHold"]["Status"] == "OFF"
    tags = s3.get_object_tagging(**where)["TagSet"]
    assert tags == [{"Key": "retention", "Value": "1d"}]  # the lifecycle rule expires it with its message
    _wait(lambda: not _originals(conv), 60, "the originals to expire")
    _wait(lambda: all(_gone(conv, s) for s in (1, 2, 3)), 60, "the messages to expire")
    s3.delete_object(**where)  # no legal hold any more: S3 lets it go


async def test_a_conversation_hold_without_retention_keeps_then_lets_go(stack, sessions):
    """A company without retention: held originals exist only for the hold; a release removes them and
    deletes the file version the delete would have deleted."""
    from botocore.exceptions import ClientError

    a = make_company(stack, "plain")
    sa = await sessions(a.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    conv = conv["conversationId"]
    await _send(sa, conv, "first")  # seq 1, before the hold: its edit and delete keep nothing
    await sa.call("message.edit", conversationId=conv, seq=1, body="first, edited")
    hold = _ok(api(stack, a.admin, "POST", "/admin/holds", json={"kind": "conversation", "conversationId": conv}),
               201, "admin.holds.place")["hold"]
    await sa.call("message.edit", conversationId=conv, seq=1, body="first, edited twice")
    await sa.call("message.delete", conversationId=conv, seq=1)
    grant = await sa.call("file.upload.request", conversationId=conv, name="a.png", size=len(PNG),
                          contentType="image/png")
    assert _post(grant["upload"], PNG).status_code == 204
    file_id = (await sa.event("file.ready", timeout=30))["file"]["fileId"]
    await sa.call("message.delete", conversationId=conv, seq=2)
    kept = sorted(_originals(conv), key=lambda o: o.version)
    assert [(o.seq, o.kind, o.body) for o in kept] == [(1, "edited", "first, edited"),
                                                       (1, "deleted", "first, edited twice"), (2, "deleted", "a.png")]
    assert [(r.as_dict() if hasattr(r, "as_dict") else r)["body"] for r in kept[1].revisions] == \
        ["first", "first, edited"]  # the revisions it had
    assert all(o.expires_at is None for o in kept)
    rec = File.find(file_id, consistent=True)
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    where = {"Bucket": settings().files_bucket, "Key": rec.object_key, "VersionId": rec.version_id}
    with pytest.raises(ClientError) as refused:
        s3.delete_object(**where)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    api(stack, a.admin, "POST", f"/admin/holds/{hold['holdId']}/release")
    _wait(lambda: _hold_swept(stack, a.admin, hold["holdId"]), 60, "the release sweep")
    assert _originals(conv) == []  # nothing would have been kept without the hold
    with pytest.raises(ClientError):
        s3.head_object(**where)  # the version the delete would have removed is gone
    rec = File.find(file_id, consistent=True)
    assert rec.held_at is None and rec.expires_at
    r = api(stack, a.admin, "GET", f"/admin/files/{file_id}/download")
    assert r.status_code == 404
    # after the release, a delete keeps nothing again
    await _send(sa, conv, "after")
    await sa.call("message.delete", conversationId=conv, seq=3)
    assert _originals(conv) == []
