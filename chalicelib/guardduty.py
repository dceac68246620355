"""GuardDuty Malware Protection for S3: the scan-result event, built and read.

On AWS, GuardDuty scans every new object of the files bucket (the
``AWS::GuardDuty::MalwareProtectionPlan`` in ``infra/``) and publishes one
event per object on the default EventBridge bus; a rule sends it to the
``file_scan_result`` function (``chalicelib/file_events.py``), which makes
the file decision (``chalicelib/services/files.py``: ``on_scan_result``).

On the local stack there is no GuardDuty: ``file_uploaded`` runs its own
engine (the built-in EICAR check or clamd), then builds this same event with
:func:`event` and hands it to the same decision, so tests run what AWS runs
from the verdict on.

The event (``detail-type`` "GuardDuty Malware Protection Object Scan Result"):

    {"version": "0", "id": "…", "detail-type": "GuardDuty Malware Protection Object Scan Result",
     "source": "aws.guardduty", "account": "111122223333", "time": "2025-01-01T00:00:00Z",
     "region": "us-east-1", "resources": ["arn:aws:guardduty:…:malware-protection-plan/…"],
     "detail": {"schemaVersion": "1.0", "scanStatus": "COMPLETED", "resourceType": "S3_OBJECT",
                "s3ObjectDetails": {"bucketName": "…", "objectKey": "…", "eTag": "…",
                                    "versionId": "…", "s3Throttled": false},
                "scanResultDetails": {"scanResultStatus": "THREATS_FOUND",
                                      "threats": [{"name": "EICAR-Test-File (not a virus)"}]}}}

Pure: no AWS call, nothing at import time.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, NamedTuple

SOURCE = "aws.guardduty"
DETAIL_TYPE = "GuardDuty Malware Protection Object Scan Result"
TAG = "GuardDutyMalwareScanStatus"  # the object tag GuardDuty writes when the plan's tagging is enabled

NO_THREATS_FOUND = "NO_THREATS_FOUND"
THREATS_FOUND = "THREATS_FOUND"
UNSUPPORTED = "UNSUPPORTED"     # skipped: e.g. password-protected archive, over GuardDuty's size quota
ACCESS_DENIED = "ACCESS_DENIED"  # GuardDuty's role cannot read the object (role or KMS key policy)
FAILED = "FAILED"               # GuardDuty's internal error
STATUSES = frozenset({NO_THREATS_FOUND, THREATS_FOUND, UNSUPPORTED, ACCESS_DENIED, FAILED})
_SCAN_STATUS = {NO_THREATS_FOUND: "COMPLETED", THREATS_FOUND: "COMPLETED", UNSUPPORTED: "SKIPPED",
                ACCESS_DENIED: "SKIPPED", FAILED: "FAILED"}


class Malformed(ValueError):
    """Not a scan-result event this code understands (logged and dropped, never retried)."""


class ScanResult(NamedTuple):
    bucket: str
    key: str
    version_id: str | None
    status: str                 # one of STATUSES
    threats: tuple[str, ...]    # threat names (THREATS_FOUND)


def event(bucket: str, key: str, version_id: str | None, status: str, threats: tuple[str, ...] = (), *,
          account: str = "000000000000", region: str = "us-east-1", plan_id: str = "local",
          now: float | None = None) -> dict[str, Any]:
    """The event GuardDuty publishes for one scanned object (the local stack's stand-in builds it)."""
    if status not in STATUSES:
        raise ValueError(f"unknown scan result status {status!r}")
    at = time.gmtime(time.time() if now is None else now)
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE, "source": SOURCE,
        "account": account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", at), "region": region,
        "resources": [f"arn:aws:guardduty:{region}:{account}:malware-protection-plan/{plan_id}"],
        "detail": {
            "schemaVersion": "1.0", "scanStatus": _SCAN_STATUS[status], "resourceType": "S3_OBJECT",
            "s3ObjectDetails": {"bucketName": bucket, "objectKey": key, "eTag": "",
                                **({"versionId": version_id} if version_id else {}), "s3Throttled": False},
            "scanResultDetails": {"scanResultStatus": status,
                                  "threats": [{"name": n} for n in threats] if threats else None},
        },
    }


def parse(ev: Any) -> ScanResult:
    """The scan result in ``ev``, or :class:`Malformed` saying what is wrong (never the content)."""
    if not isinstance(ev, dict):
        raise Malformed("event is not an object")
    if ev.get("source") != SOURCE or ev.get("detail-type") != DETAIL_TYPE:
        raise Malformed(f"not a GuardDuty scan result (source {str(ev.get('source'))[:40]!r}, "
                        f"detail-type {str(ev.get('detail-type'))[:80]!r})")
    detail = ev.get("detail")
    obj = detail.get("s3ObjectDetails") if isinstance(detail, dict) else None
    result = detail.get("scanResultDetails") if isinstance(detail, dict) else None
    if not isinstance(obj, dict) or not isinstance(result, dict):
        raise Malformed("detail.s3ObjectDetails or detail.scanResultDetails missing")
    bucket, key, version = obj.get("bucketName"), obj.get("objectKey"), obj.get("versionId")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key or len(key) > 1024:
        raise Malformed("bucketName or objectKey missing")
    if version is not None and not isinstance(version, str):
        raise Malformed("versionId is not a string")
    status = result.get("scanResultStatus")
    if status not in STATUSES:
        raise Malformed(f"unknown scanResultStatus {str(status)[:40]!r}")
    raw = result.get("threats") or []
    if not isinstance(raw, list):
        raise Malformed("threats is not a list")
    threats = tuple(str(t.get("name") or "unnamed")[:200] for t in raw[:10] if isinstance(t, dict))
    return ScanResult(bucket, key, version or None, status, threats)
