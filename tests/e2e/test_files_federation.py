"""Files across companies over real sockets, HTTP and S3: both sides' toggle and policy, revoke.

A file in an external conversation crosses only while the connection's
``files`` toggle is on on both sides and both companies' external-access
policies allow the two users (``policy.crossing(purpose="files")``).
"""
from __future__ import annotations

import asyncio
import time

import pytest
import requests

from chalicelib import policy
from chalicelib.models import user_key

from .client import ActionError, Session
from .test_federation import api, connect_companies, make_company
from .test_files import PNG, _post

pytestmark = pytest.mark.e2e


async def _share(uploader: Session, conv: str, *watchers: Session, name: str = "plan.png") -> str:
    res = await uploader.call("file.upload.request", conversationId=conv, name=name, size=len(PNG),
                              contentType="image/png")
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
    for w in watchers:
        await w.event("file.ready", timeout=30, file__fileId=res["file"]["fileId"])
    return res["file"]["fileId"]


async def _download(s: Session, file_id: str) -> bytes:
    got = await s.call("file.download.request", fileId=file_id)
    assert got["download"]["expiresAt"] - time.time() * 1000 <= 60_000 + 5_000  # DOWNLOAD_URL_SECONDS
    r = await asyncio.to_thread(requests.get, got["download"]["url"], timeout=30)
    assert r.status_code == 200
    return r.content


async def _refused(s: Session, action: str, side: str, **fields) -> dict:
    with pytest.raises(ActionError) as err:
        await s.call(action, **fields)
    assert err.value.code == "external_access_revoked" and err.value.error["side"] == side, err.value.error
    return err.value.error


async def test_files_cross_only_while_both_companies_share_them(stack, sessions):
    a, b = make_company(stack, "fa"), make_company(stack, "fb")
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    conv = (await sa.call("conversation.create", kind="group", memberEmails=[b.member]))["conversation"]
    cid = conv["conversationId"]
    await sb.event("conversation.created", conversation__conversationId=cid)

    # Both directions while both share files: the notice crosses, the other company downloads.
    fa = await _share(sa, cid, sb)
    assert await _download(sb, fa) == PNG
    fb = await _share(sb, cid, sa, name="guest side.png")  # the guest side uploads into the host's conversation
    assert await _download(sa, fb) == PNG

    # b turns file sharing off on its side: every crossing refused, naming b; own files stay.
    assert api(stack, b.admin, "PUT", f"/admin/connections/{a.tenant}", json={"files": False}).status_code == 200
    upload = {"conversationId": cid, "name": "x.png", "size": 10, "contentType": "image/png"}
    err = await _refused(sa, "file.upload.request", b.tenant, **upload)
    assert "file sharing" in err["reason"]
    await _refused(sb, "file.upload.request", b.tenant, **upload)
    await _refused(sb, "file.download.request", b.tenant, fileId=fa)
    await _refused(sa, "file.download.request", b.tenant, fileId=fb)
    assert await _download(sa, fa) == PNG and await _download(sb, fb) == PNG
    r = await asyncio.to_thread(api, stack, b.member, "GET", f"/files/{fa}/download")
    assert r.status_code == 403 and r.json()["error"]["code"] == "external_access_revoked"
    assert r.json()["error"]["side"] == b.tenant
    # ... and a fan-out with purpose "files" leaves b's users out (the delivery re-check)
    a_key, b_key = user_key(a.tenant, a.user_id(a.member)), user_key(b.tenant, b.user_id(b.member))
    other_a = user_key(a.tenant, a.user_id(a.other))
    now = int(time.time() * 1000)
    assert policy.allowed_recipients(a_key, [b_key, other_a], now, "files") == [other_a]
    assert policy.allowed_recipients(a_key, [b_key, other_a], now, "message") == [other_a, b_key]

    # On again; now a's own policy only lets listed users talk externally: refused, naming a.
    api(stack, b.admin, "PUT", f"/admin/connections/{a.tenant}", json={"files": True})
    api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "users", "users": [a.user_id(a.other)]})
    await _refused(sa, "file.upload.request", a.tenant, **upload)
    await _refused(sb, "file.download.request", a.tenant, fileId=fa)
    api(stack, a.admin, "PUT", "/admin/policy", json={"mode": "all"})

    # Sharing turned off between the upload form and the upload: the scan re-checks, nothing crosses.
    res = await sa.call("file.upload.request", **{**upload, "size": len(PNG), "name": "late.png"})
    api(stack, b.admin, "PUT", f"/admin/connections/{a.tenant}", json={"files": False})
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
    rejected = await sa.event("file.rejected", timeout=30, fileId=res["file"]["fileId"])
    assert rejected["reason"] == "not_allowed" and b.tenant in rejected["message"]
    await sb.no_event("file.ready", wait=1.0, file__fileId=res["file"]["fileId"])
    await sb.no_event("message.created", wait=0.1, message__body="late.png")
    api(stack, b.admin, "PUT", f"/admin/connections/{a.tenant}", json={"files": True})

    # Revoke: new download URLs stop at once on both sides; each company keeps its own files.
    assert await _download(sb, fa) == PNG
    assert api(stack, a.admin, "POST", f"/admin/connections/{b.tenant}/revoke").status_code == 200
    await _refused(sb, "file.download.request", b.tenant, fileId=fa)
    await _refused(sa, "file.download.request", a.tenant, fileId=fb)
    await _refused(sb, "file.upload.request", b.tenant, **upload)
    assert await _download(sa, fa) == PNG and await _download(sb, fb) == PNG


async def test_unconnected_company_cannot_see_or_fetch_files(stack, sessions):
    a, c = make_company(stack, "fh"), make_company(stack, "fc")
    sa, sa2, sc = await sessions(a.member), await sessions(a.other), await sessions(c.member)
    conv = (await sa.call("conversation.create", kind="group", members=[a.user_id(a.other)]))["conversation"]
    fid = await _share(sa, conv["conversationId"], sa2)
    for action, fields in (("file.download.request", {"fileId": fid}),
                           ("file.upload.request", {"conversationId": conv["conversationId"], "name": "x.png",
                                                    "size": 10, "contentType": "image/png"})):
        with pytest.raises(ActionError) as err:
            await sc.call(action, **fields)
        assert err.value.code == "not_found"
