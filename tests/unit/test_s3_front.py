"""The local S3 front's pure parts: POST policy verification, the event JSON, key naming. No network."""
from __future__ import annotations

import time
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config

from chalicelib.services.files import _disposition, safe_name
from devstack.s3_gateway import Notification, S3Error, S3Front, object_created_event

BUCKET, KEY = "chat-dev-files", "acme/c-1/0123456789abcdef0123456789abcdef/report.pdf"


def _form(expires: int = 300, **conditions_extra):
    client = boto3.client("s3", aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1",
                          endpoint_url="http://127.0.0.1:1", config=Config(signature_version="s3v4"))
    post = client.generate_presigned_post(
        Bucket=BUCKET, Key=KEY, Fields={"Content-Type": "application/pdf", "x-amz-server-side-encryption": "aws:kms"},
        Conditions=[{"Content-Type": "application/pdf"}, {"x-amz-server-side-encryption": "aws:kms"},
                    ["content-length-range", 100, 100]], ExpiresIn=expires)
    return post["fields"]


def _verify(fields, size=100, bucket=BUCKET, now=None):
    front = S3Front("http://127.0.0.1:1", credentials={"local": "local"}, region="us-east-1",
                    clock=(lambda: now) if now else time.time)
    lower = {k.lower(): v for k, v in fields.items()}
    front._verify_policy(bucket, lower["key"], lower, {k.lower(): k for k in fields}, size)


def test_a_genuine_form_passes():
    _verify(_form())


@pytest.mark.parametrize("change,size,code,status", [
    ({"x-amz-signature": "0" * 64}, 100, "SignatureDoesNotMatch", 403),
    ({"key": KEY.replace("report", "other")}, 100, "AccessDenied", 403),
    ({"Content-Type": "text/html"}, 100, "AccessDenied", 403),
    ({"x-amz-meta-x": "1"}, 100, "AccessDenied", 403),
    ({}, 101, "EntityTooLarge", 400),
    ({}, 99, "EntityTooSmall", 400),
    ({"x-amz-credential": "someone/20260101/us-east-1/s3/aws4_request"}, 100, "InvalidAccessKeyId", 403),
    ({"x-amz-algorithm": "AWS4-HMAC-SHA1"}, 100, "InvalidArgument", 400),
])
def test_every_deviation_is_refused(change, size, code, status):
    with pytest.raises(S3Error) as err:
        _verify({**_form(), **change}, size=size)
    assert (err.value.code, err.value.status) == (code, status)


def test_expiry_and_other_bucket():
    with pytest.raises(S3Error) as err:
        _verify(_form(expires=60), now=time.time() + 61)
    assert err.value.code == "AccessDenied" and "expired" in err.value.message
    with pytest.raises(S3Error) as err:
        _verify(_form(), bucket="someone-elses")
    assert err.value.code == "AccessDenied" and "bucket" in err.value.message


def test_object_created_event_is_shaped_like_s3s():
    event = object_created_event(BUCKET, "a/b/my file+(1).png", "ObjectCreated:Post", size=12, etag="abc",
                                 version_id="v1", region="us-east-1", source_ip="127.0.0.1", now=1795452016.191,
                                 configuration_id="cfg")
    (rec,) = event["Records"]
    assert rec["eventSource"] == "aws:s3" and rec["eventVersion"] == "2.1" and rec["eventName"] == "ObjectCreated:Post"
    assert rec["eventTime"] == "2026-11-23T16:40:16.191Z"
    obj = rec["s3"]["object"]
    assert obj["key"] == "a/b/my+file%2B%281%29.png" and unquote_plus(obj["key"]) == "a/b/my file+(1).png"
    assert obj["size"] == 12 and obj["eTag"] == "abc" and obj["versionId"] == "v1" and obj["sequencer"]
    assert rec["s3"]["bucket"] == {"name": BUCKET, "ownerIdentity": {"principalId": "LOCALOWNER"},
                                   "arn": f"arn:aws:s3:::{BUCKET}"}


def test_notification_matching():
    n = Notification(BUCKET, "file_uploaded", ("s3:ObjectCreated:*",))
    assert n.matches(BUCKET, "ObjectCreated:Post", "k") and n.matches(BUCKET, "ObjectCreated:Copy", "k")
    assert not n.matches("other", "ObjectCreated:Put", "k") and not n.matches(BUCKET, "ObjectRemoved:Delete", "k")


@pytest.mark.parametrize("name,safe", [
    ("Q3 plan (final).pdf", "Q3_plan_final.pdf"),
    ("résumé.docx", "resume.docx"),
    ("東京.png", "file.png"),
    ("...hidden", "hidden"),
    ("a" * 300 + ".txt", "a" * 96 + ".txt"),
])
def test_object_key_names_are_safe(name, safe):
    assert safe_name(name) == safe


def test_download_keeps_the_original_name():
    assert _disposition("résumé 1.pdf") == "attachment; filename=\"resume 1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"
