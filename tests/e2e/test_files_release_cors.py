"""Upload forms never used give their quota back (once), and the bucket answers browsers (CORS).

The release is a delayed message on the files queue, sent when the form is
issued and due at its expiry + grace (``UPLOAD_URL_SECONDS`` +
``UPLOAD_RELEASE_GRACE_SECONDS``, 15 minutes by default - too long for a
test).  So the tests check the message was queued, then hand the stack's own
``file_scan_retry`` consumer the message as it will arrive when due, and call
``files.release_unused`` in this process against the same DynamoDB for the
races (redelivery, concurrent deliveries, an upload that landed first).
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from chalicelib import scanner
from chalicelib.config import settings
from chalicelib.models import File
from chalicelib.services import files
from chalicelib.services.context import Env, Scheduler

from .client import ActionError, Session
from .test_files import PNG, _group, _post, _Recorder, _usage, s3

pytestmark = pytest.mark.e2e


def _env(engine: Any = None, scheduled: list | None = None) -> Env:
    sched = scheduled if scheduled is not None else []
    return Env(s3=s3, delivery=_Recorder(), clock=time.time, settings=settings(),
               scanner=lambda: engine or scanner.from_settings(settings()),
               schedule=Scheduler(file_scan=lambda *a: None, upload_release=lambda *a: sched.append(a)))


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a state the stack reaches asynchronously (polled; never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "state not reached in time"
        await asyncio.sleep(0.2)


def _queue(stack) -> tuple[Any, str]:
    if "s3_upstream" not in stack.info:
        pytest.skip("needs the local stack's moto endpoint")
    sqs = boto3.client("sqs", endpoint_url=stack.info["s3_upstream"])  # moto serves SQS too
    return sqs, sqs.get_queue_url(QueueName=settings().files_queue)["QueueUrl"]


async def _form(s: Session, conv: str) -> dict:
    return await s.call("file.upload.request", conversationId=conv, name="never.png", size=len(PNG),
                        contentType="image/png")


async def test_unused_form_releases_its_reservation_once_and_a_late_upload_is_dropped(stack, sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    sqs, url = _queue(stack)
    before = _usage("acme")
    res = await _form(alice, conv)
    fid = res["file"]["fileId"]
    assert _usage("acme") == before + len(PNG)
    delayed = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert int(delayed["Attributes"]["ApproximateNumberOfMessagesDelayed"]) >= 1  # the check, queued at issue

    # The message as it arrives when due, through the stack's own queue consumer.
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"fileId": fid, "releaseAt": int(time.time() * 1000)}))
    await _until(lambda: File.find(fid, consistent=True).status == "expired" and _usage("acme") == before)
    rec = File.find(fid, consistent=True)
    assert rec.reason == "upload_expired" and rec.expires_at  # the record goes by itself (TTL)
    # Redelivered: nothing more is given back.
    assert files.release_unused(_env(), fid, 0) == "expired"
    assert _usage("acme") == before
    with pytest.raises(ActionError) as err:
        await bob.call("file.download.request", fileId=fid)
    assert err.value.code == "not_found"

    # The form used after all (it is still signed): the object is removed, never announced or counted.
    key = res["upload"]["fields"]["key"]
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204

    def gone() -> bool:
        try:
            s3().head_object(Bucket=settings().files_bucket, Key=key)
            return False
        except ClientError:
            return True

    await _until(gone)
    await bob.no_event("file.ready", wait=1.0, file__fileId=fid)
    assert File.find(fid, consistent=True).status == "expired" and _usage("acme") == before


async def test_release_happens_exactly_once_under_concurrent_deliveries(sessions):
    alice = await sessions("alice@acme.example")
    conv = await _group(alice, "bob@acme.example")
    before = _usage("acme")
    fid = (await _form(alice, conv))["file"]["fileId"]
    # Not due yet: waits again (SQS delays at most 900 s), changes nothing.
    scheduled: list = []
    due = int(time.time() * 1000) + 1_500_000
    assert files.release_unused(_env(scheduled=scheduled), fid, due) == "waiting"
    assert scheduled and scheduled[0][:2] == (fid, due) and 1490 <= scheduled[0][2] <= 1500
    assert _usage("acme") == before + len(PNG)
    outcomes = await asyncio.gather(*(asyncio.to_thread(files.release_unused, _env(), fid, 0) for _ in range(6)))
    assert outcomes.count("released") == 1, outcomes
    assert set(outcomes) <= {"released", "raced", "expired"}
    assert _usage("acme") == before


async def test_no_release_once_the_upload_arrived(stack, sessions):
    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    before = _usage("acme")
    # Scanned and clean: the release leaves it alone.
    res = await _form(alice, conv)
    assert (await asyncio.to_thread(_post, res["upload"], PNG)).status_code == 204
    await bob.event("file.ready", timeout=30, file__fileId=res["file"]["fileId"])
    assert files.release_unused(_env(), res["file"]["fileId"], 0) == "clean"
    # Arrived but still pending (the scanner is down, retries queued): the scan decides, not the release.
    if "s3_upstream" not in stack.info:
        pytest.skip("needs the local stack's moto endpoint")
    res2 = await _form(alice, conv)
    key = res2["upload"]["fields"]["key"]
    put = boto3.client("s3", endpoint_url=stack.info["s3_upstream"]).put_object(
        Bucket=settings().files_bucket, Key=key, Body=PNG, ContentType="image/png", ServerSideEncryption="aws:kms")
    dead = scanner.Pipeline(scanner.TypeCheck(), scanner.ClamdScanner("tcp:127.0.0.1:9", io_timeout=0.5))
    assert files.on_object_created(_env(dead), settings().files_bucket, key, put.get("VersionId")) == "pending"
    assert File.find(res2["file"]["fileId"], consistent=True).uploaded_at
    assert files.release_unused(_env(), res2["file"]["fileId"], 0) == "uploaded"
    assert _usage("acme") == before + 2 * len(PNG)


# --- CORS: the bucket's rules, answered by the local S3 front as by S3 ---------------------------

def _preflight(stack, origin: str, method: str = "POST", headers: str = "content-type") -> requests.Response:
    return requests.options(f"{stack.info['s3']}/{settings().files_bucket}", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


async def test_browsers_may_post_uploads_and_read_downloads_from_allowed_origins(stack, sessions):
    if "s3" not in stack.info:
        pytest.skip("needs the stack's S3 endpoint")
    web_origin = stack.origin  # the local web client's page: http://127.0.0.1:<port> (dev stage allows it)
    ok = await asyncio.to_thread(_preflight, stack, web_origin)
    assert ok.status_code == 200, ok.text
    assert ok.headers["Access-Control-Allow-Origin"] == web_origin
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert int(ok.headers["Access-Control-Max-Age"]) == files.CORS_MAX_AGE_SECONDS
    for origin, method, hdrs in (("https://evil.example", "POST", "content-type"), (web_origin, "PUT", ""),
                                 (web_origin, "DELETE", ""), (web_origin, "POST", "x-amz-meta-owner")):
        r = await asyncio.to_thread(_preflight, stack, origin, method, hdrs)
        assert r.status_code == 403 and "<Code>CORSResponse</Code>" in r.text, (origin, method, hdrs)
        assert "Access-Control-Allow-Origin" not in r.headers

    alice, bob = await sessions("alice@acme.example"), await sessions("bob@acme.example")
    conv = await _group(alice, "bob@acme.example")
    res = await _form(alice, conv)

    def browser_post(origin: str) -> requests.Response:
        return requests.post(res["upload"]["url"], data=dict(res["upload"]["fields"]),
                             files={"file": ("never.png", PNG, "image/png")}, headers={"Origin": origin}, timeout=30)

    posted = await asyncio.to_thread(browser_post, web_origin)
    assert posted.status_code == 204 and posted.headers["Access-Control-Allow-Origin"] == web_origin
    assert "ETag" in posted.headers["Access-Control-Expose-Headers"]
    await bob.event("file.ready", timeout=30, file__fileId=res["file"]["fileId"])
    got = await bob.call("file.download.request", fileId=res["file"]["fileId"])
    for origin, allowed in ((web_origin, True), ("https://evil.example", False)):
        r = await asyncio.to_thread(requests.get, got["download"]["url"], headers={"Origin": origin}, timeout=30)
        assert r.status_code == 200 and r.content == PNG  # CORS never replaces the signature ...
        assert (r.headers.get("Access-Control-Allow-Origin") == origin) is allowed  # ... it lets a page read it
    # An error answer to an allowed origin carries the headers too (the page can show S3's reason).
    url = got["download"]["url"]
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    bad = await asyncio.to_thread(requests.get, tampered, headers={"Origin": web_origin}, timeout=30)
    assert bad.status_code == 403 and bad.headers["Access-Control-Allow-Origin"] == web_origin
