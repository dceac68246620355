"""Files over real sockets and real HTTP: presigned POST to the local S3 front, scan, notice, download.

The local stack's S3 endpoint (devstack/s3_gateway.py) checks signatures and
POST policies as S3 does and delivers S3's ObjectCreated notification to the
app's ``file_uploaded`` function; the stack runs the built-in scanner.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib import scanner
from chalicelib.config import settings
from chalicelib.models import File, TenantUsage, User
from chalicelib.protocol import schemas
from chalicelib.services.context import Env, Scheduler

from .client import ActionError, Session, token_for

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
EXE_AS_PNG = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 512
EICAR_TXT = scanner.EICAR + b"\r\n"
TIMINGS = Path(__file__).resolve().parents[2] / "test-artifacts" / "files-timing.json"


def uid(email: str) -> str:
    return User.find_by_email(email).user_id


def s3():
    return boto3.client("s3", config=Config(signature_version="s3v4"))


async def _group(owner: Session, *emails: str) -> str:
    res = await owner.call("conversation.create", kind="group", members=[uid(e) for e in emails])
    return res["conversation"]["conversationId"]


async def _request(s: Session, conv: str, data: bytes, name: str = "diagram.png", ctype: str = "image/png",
                   **extra: Any) -> dict:
    return await s.call("file.upload.request", conversationId=conv, name=name, size=len(data), contentType=ctype,
                        **extra)


def _post(upload: dict, data: bytes, fields: dict | None = None, filename: str = "upload.bin",
          part_type: str = "application/octet-stream") -> requests.Response:
    """The browser's form POST: every field of the presigned POST, then the file last."""
    form = dict(upload["fields"] if fields is None else fields)
    return requests.post(upload["url"], data=form, files={"file": (filename, data, part_type)}, timeout=60)


def _s3_error(resp: requests.Response) -> str:
    assert resp.headers.get("Content-Type", "").startswith("application/xml"), resp.text
    return resp.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def _usage(tenant: str) -> int:
    item = TenantUsage.find(tenant)
    return int(item.file_bytes or 0) if item else 0


async def test_upload_scan_notice_and_download(sessions):
    alice, alice2 = await sessions("alice@acme.example"), await sessions("alice@acme.example")
    bob, carol = await sessions("bob@acme.example"), await sessions("carol@acme.example")
    conv = await _group(alice, "bob@acme.example", "carol@acme.example")
    await alice.call("message.send", conversationId=conv, clientMessageId=uuid.uuid4().hex, body="see below")
    used_before = _usage("acme")
    res = await _request(alice, conv, PNG, name="Q3 diagram (final) é.png", sha256=hashlib.sha256(PNG).hexdigest())
    file, upload = res["file"], res["upload"]
    assert file["status"] == "pending" and file["size"] == len(PNG)
    assert upload["method"] == "POST" and upload["expiresAt"] - time.time() * 1000 <= 300_000 + 5000
    key = upload["fields"]["key"]
    assert key.startswith(f"acme/{conv}/{file['fileId']}/") and key.endswith(".png") and " " not in key
    assert upload["fields"]["x-amz-server-side-encryption"] == "aws:kms"
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert ["content-length-range", len(PNG), len(PNG)] in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    assert _usage("acme") == used_before + len(PNG)  # reserved at request time

    resp = await asyncio.to_thread(_post, upload, PNG, filename="whatever.png", part_type="image/png")
    uploaded = time.monotonic()
    assert resp.status_code == 204, resp.text
    ready = await bob.event("file.ready", timeout=20, file__fileId=file["fileId"])
    latency = time.monotonic() - uploaded
    jsonschema.validate(ready, schemas.OUTBOUND["file.ready"])
    assert ready["file"] == {"fileId": file["fileId"], "name": "Q3 diagram (final) é.png", "size": len(PNG),
                             "contentType": "image/png", "uploader": {"tenantId": "acme",
                                                                     "userId": uid("alice@acme.example")}}
    seq = ready["seq"]
    assert seq == 2  # after the text message: the normal ordered path
    for device in (alice, alice2, bob, carol):  # every member's every device, the uploader's too (no ack)
        created = await device.event("message.created", message__seq=seq, message__conversationId=conv)
        jsonschema.validate(created, schemas.OUTBOUND["message.created"])
        assert created["message"]["kind"] == "file" and created["message"]["file"]["fileId"] == file["fileId"]
    for device in (alice, alice2, carol):
        await device.event("file.ready", file__fileId=file["fileId"])
    hist = await carol.call("history", conversationId=conv)
    assert [m["kind"] for m in hist["messages"]] == ["file", "text"]
    inbox = await bob.call("conversation.list")
    entry = next(c for c in inbox["conversations"] if c["conversationId"] == conv)
    assert entry["unread"] == 2 and entry["lastMessage"]["seq"] == 2

    got = await bob.call("file.download.request", fileId=file["fileId"])
    assert got["file"]["status"] == "clean" and got["file"]["seq"] == seq
    assert got["download"]["expiresAt"] - time.time() * 1000 <= 60_000 + 5000
    url = got["download"]["url"]
    body = await asyncio.to_thread(requests.get, url, timeout=30)
    assert body.status_code == 200 and body.content == PNG
    assert body.headers["Content-Type"] == "image/png"
    assert body.headers["Content-Disposition"].startswith("attachment;") and "%C3%A9" in \
        body.headers["Content-Disposition"]
    # The same URL with a tampered signature, for another object, or without any signature: refused.
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    r = await asyncio.to_thread(requests.get, tampered, timeout=10)
    assert r.status_code == 403 and _s3_error(r) == "SignatureDoesNotMatch"
    other = url.replace(file["fileId"], uuid.uuid4().hex)
    r = await asyncio.to_thread(requests.get, other, timeout=10)
    assert r.status_code == 403 and _s3_error(r) == "SignatureDoesNotMatch"
    r = await asyncio.to_thread(requests.get, url.split("?", 1)[0], timeout=10)
    assert r.status_code == 403 and _s3_error(r) == "AccessDenied"

    # The upload form stays valid for minutes: a second POST with other bytes is never served.
    resp = await asyncio.to_thread(_post, upload, PNG[:-4] + b"EVIL")
    assert resp.status_code == 204
    await asyncio.sleep(1.5)
    again = await bob.call("file.download.request", fileId=file["fileId"])
    body = await asyncio.to_thread(requests.get, again["download"]["url"], timeout=30)
    assert body.content == PNG
    await bob.no_event("file.ready", wait=0.5, file__fileId=file["fileId"])

    TIMINGS.parent.mkdir(exist_ok=True)
    TIMINGS.write_text(json.dumps({"upload_to_file_ready_seconds": round(latency, 3), "bytes": len(PNG)}))
    print(f"\nfiles: upload completion -> file.ready at another member: {latency * 1000:.0f} ms")


@pytest.mark.parametrize("data,ctype,name,reason", [
    (EICAR_TXT, "text/plain", "readme.txt", "malware"),
    (EXE_AS_PNG, "image/png", "holiday.png", "type_mismatch"),
    (b"%PDF-1.7\n" + scanner.EICAR, "application/pdf", "invoice.pdf", "malware"),
])
async def test_malware_and_type_mismatch_are_quarantined(sessions, data, ctype, name, reason):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    alice2 = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    used_before = _usage("acme")
    res = await _request(alice, conv, data, name=name, ctype=ctype)
    file_id, key = res["file"]["fileId"], res["upload"]["fields"]["key"]
    resp = await asyncio.to_thread(_post, res["upload"], data)
    assert resp.status_code == 204, resp.text
    rejected = await alice.event("file.rejected", timeout=20, fileId=file_id)
    jsonschema.validate(rejected, schemas.OUTBOUND["file.rejected"])
    assert rejected["reason"] == reason and rejected["conversationId"] == conv and rejected["name"] == name
    await alice2.event("file.rejected", fileId=file_id)  # the uploader's other devices too
    await bob.no_event("file.rejected", wait=1.0)  # nobody else ever hears of it
    await bob.no_event("file.ready", wait=0.1)
    await bob.no_event("message.created", wait=0.1, message__conversationId=conv)
    assert (await bob.call("history", conversationId=conv))["messages"] == []
    for who in (alice, bob):
        with pytest.raises(ActionError) as err:
            await who.call("file.download.request", fileId=file_id)
        assert err.value.code == "not_found"
    rec = File.find(file_id, consistent=True)
    assert rec.status == "quarantined" and rec.reason == reason
    client = s3()
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=settings().files_bucket, Key=key)
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    held = client.get_object(Bucket=settings().files_bucket, Key="quarantine/" + key)
    assert held["Body"].read() == data
    assert _usage("acme") == used_before  # the reservation was given back


async def test_presigned_post_is_enforced_like_s3(sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    res = await _request(alice, conv, PNG)
    upload, fields, key = res["upload"], res["upload"]["fields"], res["upload"]["fields"]["key"]
    other_key = key.replace(res["file"]["fileId"], uuid.uuid4().hex)
    expired = s3().generate_presigned_post(
        Bucket=settings().files_bucket, Key=key,
        Fields={"Content-Type": "image/png", "x-amz-server-side-encryption": "aws:kms"},
        Conditions=[{"Content-Type": "image/png"}, {"x-amz-server-side-encryption": "aws:kms"},
                    ["content-length-range", len(PNG), len(PNG)]], ExpiresIn=-5)
    forged_policy = base64.b64encode(json.dumps({
        "expiration": "2099-01-01T00:00:00Z",
        "conditions": [["starts-with", "$key", ""], ["content-length-range", 0, 10 ** 9]]}).encode()).decode()
    cases = [
        ("expired", {**expired["fields"]}, PNG, 403, "AccessDenied", "Policy expired"),
        ("tampered signature", {**fields, "x-amz-signature": fields["x-amz-signature"][:-1] + (
            "0" if fields["x-amz-signature"][-1] != "0" else "1")}, PNG, 403, "SignatureDoesNotMatch", ""),
        ("forged policy", {**fields, "policy": forged_policy}, PNG, 403, "SignatureDoesNotMatch", ""),
        ("bigger body", fields, PNG + b"!", 400, "EntityTooLarge", "MaxSizeAllowed"),
        ("smaller body", fields, PNG[:-1], 400, "EntityTooSmall", "MinSizeAllowed"),
        ("other key", {**fields, "key": other_key}, PNG, 403, "AccessDenied", "Policy Condition failed"),
        ("other content type", {**fields, "Content-Type": "text/html"}, PNG, 403, "AccessDenied",
         "Policy Condition failed"),
        ("no encryption", {k: v for k, v in fields.items() if k != "x-amz-server-side-encryption"}, PNG, 403,
         "AccessDenied", "Policy Condition failed"),
        ("extra field", {**fields, "x-amz-meta-owner": "mallory"}, PNG, 403, "AccessDenied", "Extra input fields"),
        ("no policy", {k: v for k, v in fields.items() if k not in ("policy", "x-amz-signature")}, PNG, 403,
         "AccessDenied", ""),
        ("wrong access key", {**fields, "x-amz-credential": fields["x-amz-credential"].replace("local/", "AKIAX/")},
         PNG, 403, "InvalidAccessKeyId", ""),
    ]
    for label, form, data, status, code, text in cases:
        r = await asyncio.to_thread(_post, upload, data, form)
        assert r.status_code == status and _s3_error(r) == code and text in r.text, (label, r.status_code, r.text)
    client = s3()
    for k in (key, other_key):
        with pytest.raises(ClientError):
            client.head_object(Bucket=settings().files_bucket, Key=k)
    # A presigned PUT is enforced too: expired, and for another key.
    put_url = client.generate_presigned_url("put_object", Params={
        "Bucket": settings().files_bucket, "Key": key, "ContentType": "image/png"}, ExpiresIn=1)
    await asyncio.sleep(2.1)
    r = await asyncio.to_thread(requests.put, put_url, data=PNG, headers={"Content-Type": "image/png"}, timeout=10)
    assert r.status_code == 403 and _s3_error(r) == "AccessDenied" and "Request has expired" in r.text
    assert File.find(res["file"]["fileId"], consistent=True).status == "pending"
    await bob.no_event("file.ready", wait=0.5)
    # The genuine form still works.
    r = await asyncio.to_thread(_post, upload, PNG)
    assert r.status_code == 204
    await bob.event("file.ready", timeout=20, file__fileId=res["file"]["fileId"])


async def test_download_refused_to_non_members_other_tenants_and_pending(stack, sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    dave, hank = await sessions("dave@acme.example"), await sessions("hank@globex.example")
    conv = await _group(alice, "bob@acme.example")
    res = await _request(alice, conv, PNG)
    file_id = res["file"]["fileId"]
    with pytest.raises(ActionError) as err:
        await bob.call("file.download.request", fileId=file_id)
    assert err.value.code == "conflict"  # still pending: not yet scanned
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
    await bob.event("file.ready", timeout=20, file__fileId=file_id)
    for intruder in (dave, hank):
        with pytest.raises(ActionError) as err:
            await intruder.call("file.download.request", fileId=file_id)
        assert err.value.code == "not_found", intruder.email
        with pytest.raises(ActionError) as err:
            await intruder.call("file.upload.request", conversationId=conv, name="x.png", size=10,
                                contentType="image/png")
        assert err.value.code == "not_found"
    with pytest.raises(ActionError) as err:
        await bob.call("file.download.request", fileId=uuid.uuid4().hex)
    assert err.value.code == "not_found"
    for email, status in (("hank@globex.example", 404), ("dave@acme.example", 404), ("bob@acme.example", 200)):
        r = await asyncio.to_thread(requests.get, f"{stack.origin}/files/{file_id}/download", timeout=10,
                                    headers={"Authorization": f"Bearer {token_for(stack, email)}"})
        assert r.status_code == status, (email, r.text)
        if status == 404:
            assert r.json()["error"]["code"] == "not_found"


async def test_request_limits_quota_and_types(sessions):
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    too_big = settings().max_file_bytes + 1
    reply = await alice.raw("file.upload.request", conversationId=conv, name="big.mp4", size=too_big,
                            contentType="video/mp4")
    assert reply["error"]["code"] == "payload_too_large" and reply["error"]["limit"] == settings().max_file_bytes
    for fields in ({"contentType": "application/x-msdownload"}, {"contentType": "text/html"},
                   {"name": "../../etc/passwd"}, {"name": "a\x00b.png"}, {"size": 0}, {"sha256": "abc"}):
        frame = {"conversationId": conv, "name": "ok.png", "size": 10, "contentType": "image/png", **fields}
        reply = await alice.raw("file.upload.request", **frame)
        assert reply["type"] == "error" and reply["error"]["code"] == "validation_failed", (fields, reply)
    used = _usage("acme")
    TenantUsage(tenant_id="acme").update(actions=[TenantUsage.quota_bytes.set(used + 100)])
    try:
        reply = await alice.raw("file.upload.request", conversationId=conv, name="a.png", size=101,
                                contentType="image/png")
        assert reply["error"]["code"] == "forbidden" and reply["error"]["reason"] == "quota_exceeded"
        assert _usage("acme") == used
        ok = await alice.call("file.upload.request", conversationId=conv, name="a.png", size=100,
                              contentType="image/png")
        assert ok["file"]["status"] == "pending" and _usage("acme") == used + 100
        reply = await alice.raw("file.upload.request", conversationId=conv, name="b.png", size=1,
                                contentType="image/png")
        assert reply["error"]["code"] == "forbidden"
    finally:
        TenantUsage(tenant_id="acme").update(actions=[TenantUsage.quota_bytes.remove()])


async def test_rest_upload_download_and_delete_removes_the_object(stack, sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    auth = {"Authorization": f"Bearer {token_for(stack, 'alice@acme.example')}"}
    r = requests.post(f"{stack.origin}/conversations/{conv}/files", headers=auth, timeout=10,
                      json={"name": "notes.txt", "size": 11, "contentType": "text/plain"})
    assert r.status_code == 201, r.text
    res = r.json()
    file_id, key = res["file"]["fileId"], res["upload"]["fields"]["key"]
    used = _usage("acme")
    assert (await asyncio.to_thread(_post, res["upload"], b"hello world")).status_code == 204
    ready = await bob.event("file.ready", timeout=20, file__fileId=file_id)
    r = requests.get(f"{stack.origin}/files/{file_id}/download", headers=auth, timeout=10)
    assert r.status_code == 200 and requests.get(r.json()["download"]["url"], timeout=10).content == b"hello world"
    with pytest.raises(ActionError) as err:  # a file message is not edited
        await alice.call("message.edit", conversationId=conv, seq=ready["seq"], body="renamed")
    assert err.value.code == "validation_failed"

    await alice.call("message.delete", conversationId=conv, seq=ready["seq"])
    await bob.event("message.deleted", seq=ready["seq"], conversationId=conv)
    tomb = (await bob.call("history", conversationId=conv))["messages"][0]
    assert tomb["deleted"] is True and tomb["file"] is None and tomb["body"] is None
    rec = File.find(file_id, consistent=True)
    assert rec.status == "deleted"
    with pytest.raises(ClientError):
        s3().get_object(Bucket=settings().files_bucket, Key=key, VersionId=rec.version_id)
    with pytest.raises(ActionError) as err:
        await bob.call("file.download.request", fileId=file_id)
    assert err.value.code == "not_found"
    assert _usage("acme") == used - 11


class _RecordingDelivery:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def fan_out(self, connection_ids, payload):
        from chalicelib.delivery import DeliveryReport

        self.frames.append(json.loads(payload))
        return DeliveryReport(delivered=list(connection_ids))


def _Recorder():  # noqa: N802 - used like the class it replaces
    """An outbox whose recipients are resolved against the stack's tables and whose posts are
    recorded, not sent (``.delivery.frames``; no queue: everything is posted inline)."""
    from chalicelib.fanout import FanoutLimits, Outbox
    from chalicelib.services import events

    unbounded = 10 ** 9

    def no_queue(_bodies, _delay=0):
        raise AssertionError("nothing is queued with unbounded inline limits")

    return Outbox(_RecordingDelivery(), no_queue, FanoutLimits(unbounded, unbounded, unbounded), events.run)


async def test_scanner_down_leaves_the_file_pending_and_queues_a_retry(stack, sessions):
    """Driven in this process against the stack's tables and S3 (the object is put straight into
    moto, so the stack's own notification does not race us)."""
    from chalicelib.services import files

    if "s3_upstream" not in stack.info:
        pytest.skip("needs the local stack's moto endpoint")
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    res = await _request(alice, conv, PNG)
    rec_id, key = res["file"]["fileId"], res["upload"]["fields"]["key"]
    upstream = boto3.client("s3", endpoint_url=stack.info["s3_upstream"])
    put = upstream.put_object(Bucket=settings().files_bucket, Key=key, Body=PNG, ContentType="image/png",
                              ServerSideEncryption="aws:kms")
    retries: list[tuple] = []
    delivery = _Recorder()

    def env(engine):
        return Env(s3=s3, delivery=delivery, clock=time.time, settings=settings(),
                   scanner=lambda: engine, schedule=Scheduler(file_scan=lambda *a: retries.append(a)))

    dead = scanner.Pipeline(scanner.TypeCheck(), scanner.ClamdScanner("tcp:127.0.0.1:9", io_timeout=0.5))
    for attempt in (1, 2):
        outcome = files.on_object_created(env(dead), settings().files_bucket, key, put.get("VersionId"))
        assert outcome == "pending"
        assert retries[-1][:3] == (settings().files_bucket, key, put.get("VersionId"))
        assert retries[-1][3] == settings().scan_retry_seconds * 2 ** (attempt - 1)  # backoff
    rec = File.find(rec_id, consistent=True)
    assert rec.status == "pending" and rec.scan_attempts == 2 and delivery.delivery.frames == []
    with pytest.raises(ActionError) as err:
        await alice.call("file.download.request", fileId=rec_id)
    assert err.value.code == "conflict"
    # The scanner is back: the queued retry, consumed by the stack's file_scan_retry, decides.
    sqs = boto3.client("sqs", endpoint_url=stack.info["s3_upstream"])  # moto serves SQS too
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=settings().files_queue)["QueueUrl"],
                     MessageBody=json.dumps({"bucket": settings().files_bucket, "key": key,
                                             "versionId": put.get("VersionId")}))
    ready = await alice.event("file.ready", timeout=20, file__fileId=rec_id)
    assert File.find(rec_id, consistent=True).status == "clean"
    # A repeated notification changes nothing: the notice was posted once.
    healthy = scanner.from_settings(settings())
    assert files.on_object_created(env(healthy), settings().files_bucket, key, put.get("VersionId")) == "clean"
    assert delivery.delivery.frames == []
    hist = await alice.call("history", conversationId=conv)
    assert [m["seq"] for m in hist["messages"]] == [ready["seq"]]


async def test_a_scan_abandoned_after_the_last_attempt_refuses_the_file_and_frees_its_quota(stack, sessions):
    """Scanner down for every attempt: the uploader is told (``scan_failed``), the object goes and
    the reserved bytes come back - not a file pending forever that still counts against the quota."""
    from chalicelib.services import files

    from .test_federation import make_company

    if "s3_upstream" not in stack.info:
        pytest.skip("needs the local stack's moto endpoint")
    co = make_company(stack, "scan")  # its own tenant: nothing else moves its usage meanwhile
    owner = await sessions(co.member)
    conv = await _group(owner, co.other)
    usage = TenantUsage.find(co.tenant)
    before = int(usage.file_bytes or 0) if usage else 0
    res = await _request(owner, conv, PNG)
    rec_id, key = res["file"]["fileId"], res["upload"]["fields"]["key"]
    assert int(TenantUsage.find(co.tenant).file_bytes) == before + len(PNG)
    upstream = boto3.client("s3", endpoint_url=stack.info["s3_upstream"])
    put = upstream.put_object(Bucket=settings().files_bucket, Key=key, Body=PNG, ContentType="image/png",
                              ServerSideEncryption="aws:kms")
    retries: list[tuple] = []
    delivery = _Recorder()
    cfg = settings()._replace(scan_max_attempts=2)
    dead = scanner.Pipeline(scanner.TypeCheck(), scanner.ClamdScanner("tcp:127.0.0.1:9", io_timeout=0.5))
    env = Env(s3=s3, delivery=delivery, clock=time.time, settings=cfg,
              scanner=lambda: dead, schedule=Scheduler(file_scan=lambda *a: retries.append(a)))
    assert files.on_object_created(env, cfg.files_bucket, key, put.get("VersionId")) == "pending"
    assert len(retries) == 1 and delivery.delivery.frames == []
    assert files.on_object_created(env, cfg.files_bucket, key, put.get("VersionId")) == "deleted"
    assert len(retries) == 1  # no further retry
    rec = File.find(rec_id, consistent=True)
    assert (rec.status, rec.reason, int(rec.scan_attempts)) == ("deleted", "scan_failed", 2)
    assert int(TenantUsage.find(co.tenant).file_bytes) == before
    (frame,) = delivery.delivery.frames
    jsonschema.validate(frame, schemas.OUTBOUND["file.rejected"])
    assert (frame["fileId"], frame["reason"]) == (rec_id, "scan_failed")
    with pytest.raises(ClientError):
        upstream.head_object(Bucket=cfg.files_bucket, Key=key)
    # A late retry (already queued) or a repeated notification changes nothing and frees nothing twice.
    healthy = env.replace(scanner=lambda: scanner.from_settings(settings()))
    assert files.on_object_created(healthy, cfg.files_bucket, key, put.get("VersionId")) == "deleted"
    assert int(TenantUsage.find(co.tenant).file_bytes) == before
    with pytest.raises(ActionError) as err:
        await owner.call("file.download.request", fileId=rec_id)
    assert err.value.code in ("not_found", "conflict")


# --- GuardDuty Malware Protection for S3: the verdict event reaches the same decision ----------

async def _pending_object(stack, sessions, data: bytes, name: str = "diagram.png", ctype: str = "image/png"):
    """A requested upload whose object is put straight into moto (no notification races the test)."""
    if "s3_upstream" not in stack.info:
        pytest.skip("needs the local stack's moto endpoint")
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    res = await _request(alice, conv, data, name=name, ctype=ctype)
    key = res["upload"]["fields"]["key"]
    upstream = boto3.client("s3", endpoint_url=stack.info["s3_upstream"])
    put = upstream.put_object(Bucket=settings().files_bucket, Key=key, Body=data, ContentType=ctype,
                              ServerSideEncryption="aws:kms")
    return alice, bob, conv, res["file"]["fileId"], key, put.get("VersionId"), upstream


def _guardduty_env(delivery, **cfg):
    waits: list[tuple] = []
    env = Env(s3=s3, delivery=delivery, clock=time.time,
              settings=settings()._replace(scanner="guardduty", **cfg),
              scanner=lambda: scanner.from_settings(settings()),
              schedule=Scheduler(file_scan=lambda *a: None, verdict_check=lambda *a: waits.append(a)))
    return env, waits


async def test_guardduty_threats_found_quarantines_the_file(stack, sessions):
    from chalicelib import guardduty
    from chalicelib.services import files

    alice, bob, conv, file_id, key, version, upstream = await _pending_object(stack, sessions, PNG)
    delivery = _Recorder()
    env, waits = _guardduty_env(delivery)
    # SCANNER=guardduty: ObjectCreated only records the arrival and waits; nothing is announced.
    assert files.on_object_created(env, settings().files_bucket, key, version) == "awaiting_verdict"
    assert waits == [(settings().files_bucket, key, version, settings().guardduty_verdict_seconds)]
    rec = File.find(file_id, consistent=True)
    assert rec.status == "pending" and rec.uploaded_at is not None and delivery.delivery.frames == []
    event = guardduty.event(settings().files_bucket, key, version, guardduty.THREATS_FOUND,
                            ("EICAR-Test-File (not a virus)",))
    assert files.handle_scan_result(env, event) == "quarantined"
    rec = File.find(file_id, consistent=True)
    assert (rec.status, rec.reason) == ("quarantined", "malware")
    (frame,) = delivery.delivery.frames
    jsonschema.validate(frame, schemas.OUTBOUND["file.rejected"])
    assert (frame["fileId"], frame["reason"]) == (file_id, "malware")
    assert upstream.get_object(Bucket=settings().files_bucket, Key="quarantine/" + key)["Body"].read() == PNG
    with pytest.raises(ClientError):
        upstream.head_object(Bucket=settings().files_bucket, Key=key)
    # Delivered again (EventBridge is at least once), or the deadline check comes later: nothing changes.
    assert files.handle_scan_result(env, event) == "quarantined"
    assert files.verdict_overdue(env, settings().files_bucket, key, version) == "quarantined"
    assert len(delivery.delivery.frames) == 1
    await bob.no_event("file.ready", wait=0.5)


async def test_guardduty_no_threats_found_posts_the_notice(stack, sessions):
    from chalicelib import guardduty
    from chalicelib.services import files

    alice, bob, conv, file_id, key, version, _ = await _pending_object(stack, sessions, PNG)
    env, _waits = _guardduty_env(_Recorder())
    # The verdict may come before S3's ObjectCreated: it decides anyway, and records the arrival.
    event = guardduty.event(settings().files_bucket, key, version, guardduty.NO_THREATS_FOUND)
    assert files.handle_scan_result(env, event) == "clean"
    rec = File.find(file_id, consistent=True)
    assert rec.status == "clean" and rec.version_id == version and rec.seq == 1 and rec.uploaded_at
    assert files.on_object_created(env, settings().files_bucket, key, version) == "clean"  # late: nothing posted
    assert files.handle_scan_result(env, event) == "clean"
    hist = await bob.call("history", conversationId=conv)
    assert [(m["kind"], m["file"]["fileId"]) for m in hist["messages"]] == [("file", file_id)]
    got = await bob.call("file.download.request", fileId=file_id)
    assert got["file"]["status"] == "clean"


async def test_guardduty_no_threats_still_runs_the_builtin_checks(stack, sessions):
    """Defence in depth: GuardDuty's NO_THREATS_FOUND does not let an executable renamed .png through."""
    from chalicelib import guardduty
    from chalicelib.services import files

    _alice, _bob, _conv, file_id, key, version, _ = await _pending_object(stack, sessions, EXE_AS_PNG)
    env, _waits = _guardduty_env(_Recorder())
    event = guardduty.event(settings().files_bucket, key, version, guardduty.NO_THREATS_FOUND)
    assert files.handle_scan_result(env, event) == "quarantined"
    assert File.find(file_id, consistent=True).reason == "type_mismatch"


@pytest.mark.parametrize("status", ["UNSUPPORTED", "ACCESS_DENIED", "FAILED", "overdue"])
async def test_guardduty_no_verdict_refuses_the_file_as_scan_failed(stack, sessions, status):
    from chalicelib import guardduty
    from chalicelib.services import files

    _alice, _bob, _conv, file_id, key, version, upstream = await _pending_object(stack, sessions, PNG)
    delivery = _Recorder()
    env, _waits = _guardduty_env(delivery)
    if status == "overdue":
        assert files.verdict_overdue(env, settings().files_bucket, key, version) == "deleted"
    else:
        event = guardduty.event(settings().files_bucket, key, version, status)
        assert files.handle_scan_result(env, event) == "deleted"
    rec = File.find(file_id, consistent=True)
    assert (rec.status, rec.reason) == ("deleted", "scan_failed")
    assert [f["reason"] for f in delivery.delivery.frames] == ["scan_failed"]
    with pytest.raises(ClientError):
        upstream.head_object(Bucket=settings().files_bucket, Key=key)


async def test_guardduty_events_for_other_buckets_and_malformed_ones_change_nothing(stack, sessions, caplog):
    import logging

    from chalicelib import file_events, guardduty
    from chalicelib.services import files

    _alice, _bob, _conv, file_id, key, version, _ = await _pending_object(stack, sessions, PNG)
    env, _waits = _guardduty_env(_Recorder())
    other = guardduty.event("another-bucket", key, version, guardduty.THREATS_FOUND, ("x",))
    assert files.handle_scan_result(env, other) == "ignored"
    with caplog.at_level(logging.INFO):
        assert file_events.on_scan_result(other) == "ignored"
        broken = guardduty.event(settings().files_bucket, key, version, guardduty.THREATS_FOUND)
        broken["detail"]["scanResultDetails"]["scanResultStatus"] = "PROBABLY_FINE"
        assert file_events.on_scan_result(broken) == "malformed"
        assert file_events.on_scan_result({"source": "aws.guardduty"}) == "malformed"
    assert "malformed scan result dropped" in caplog.text and "Traceback" not in caplog.text
    assert File.find(file_id, consistent=True).status == "pending"
    # GuardDuty's validation object at the bucket's root is not an upload: never deleted as an orphan.
    assert files.on_object_created(env, settings().files_bucket, files.GUARDDUTY_VALIDATION_KEY) == "ignored"
