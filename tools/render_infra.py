"""Render the deployment's CloudFormation fragment and IAM policy from the app's own code.

Why: keys, indexes and TTL live only in ``chalicelib/models/``; table,
queue and bucket names only in the stage's environment (``.chalice/config.json``
read through ``chalicelib/config.py``); the Lambda functions only in ``app.py``.  Generating ``infra/resources-<stage>.json`` (merged by
``chalice package --merge-template``) and ``.chalice/policy-<stage>.json``
from those sources keeps the deployment from drifting from the code, and a
unit test fails when the checked-in files are stale (``make infra``).

    python tools/render_infra.py --stage dev          # write both files
    python tools/render_infra.py --stage dev --check  # exit 1 if they are stale
    python tools/render_infra.py --stage dev --check-alarms build/package/sam.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
DOCS_OPERATIONS = ROOT / "docs" / "operations.md"
STAGES = ("dev", "prod")

# What the functions may do is per function: FUNCTION_ACCESS (below).  No Scan, no DescribeTable
# (pynamodb 6 builds its table metadata from the models), no table administration; a transaction
# is authorised item by item (TransactWriteItems is not an IAM action); no BypassGovernanceRetention,
# so no function can delete a file version under an S3 Object Lock legal hold.
EXPORT_DAYS = 7  # finished exports (and a failed step's leftovers) are removed after this many days
WS_METHODS = ["POST", "GET", "DELETE"]  # post_to_connection, get_connection, delete_connection

# Alarm thresholds over one 5-minute period (Sum; Maximum for queue gauges). An ops knob.
ALARM_PERIOD = 300
THRESHOLDS = {"Errors": 5, "Throttles": 1, "DynamoThrottles": 5, "Rest5xx": 5, "WsExecutionErrors": 5,
              "QueueAgeSeconds": 300}
# Alarms on the app's own EMF counters (namespace EnterpriseChat, docs/operations.md#metrics), each
# summed over every function: (name, metric, threshold, periods in a row, why).  Alarms whose
# threshold depends on a deployment's traffic (refusals by code, a drop in MessagesSent) are left
# to ops, documented there.
APP_METRIC_NAMESPACE = "EnterpriseChat"
APP_ALARMS = (
    ("internal-errors", "InternalErrors", 5, 1, "requests answered `internal` (handlers survive, so Lambda Errors stays 0)"),
    ("delivery-failures", "DeliveriesFailed", 1, 3, "posts to connections given up: live events are being lost"),
    ("files-quarantined", "FilesQuarantined", 1, 1, "an uploaded file was malware or did not match its type"),
    ("scans-deferred", "ScansDeferred", 1, 3, "the scanner is unavailable: uploads stay pending"),
    ("scans-failed", "ScansFailed", 1, 1, "a malware scan did not complete (GuardDuty UNSUPPORTED, ACCESS_DENIED, "
     "FAILED, or no verdict in time): uploads are refused"),
)
# A company held to one of its limits (TenantThrottled, by tenant: a send or connect window refused, a
# delivery job deferred; chalicelib/metrics.py) in this many alarm periods in a row: it is at its limit
# for real, not for a burst.  One alarm, each throttled company its own contributor (multi time series).
TENANT_THROTTLED_PERIODS = 3
GONE_RATIO = 0.2         # DeliveriesGone / DeliveriesPosted of websocket_message, 3 periods in a row,
GONE_RATIO_MIN_POSTS = 100  # once a period has at least this many posts (a few drops in a quiet hour are noise)
QUARANTINE_DAYS = 7
MAX_RECEIVES = 5  # deliveries of a queue message before it moves to the dead-letter queue
# SQS consumers (Chalice function names) whose handler returns a partial batch response
# ({"batchItemFailures": [...]}, chalicelib/delivery_worker.py): Chalice cannot say so itself.
PARTIAL_BATCH_RESPONSES = frozenset({"deliver"})
NONCURRENT_DAYS = 30


# --- reading the app's configuration ---------------------------------------

@contextmanager
def _logging_untouched() -> Iterator[None]:
    """``app.py`` routes the root logger to JSON on import; leave the caller's logging as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    app_name: str
    api_stage: str          # API Gateway stage of both the REST and the WebSocket API
    env: dict[str, str]     # the functions' environment variables
    policy_file: str
    lambda_timeout: int
    functions: tuple[str, ...]   # logical ids of the Lambda functions in sam.json
    sqs_consumers: tuple[tuple[str, str], ...]   # (function logical id, queue name as imported here)
    has_rest_api: bool
    has_websocket_api: bool
    # (function logical id, event logical id) of consumers answering partial batch responses
    partial_batch_events: tuple[tuple[str, str], ...] = ()
    # function logical id -> its timeout, per-function settings (``lambda_functions``) applied
    timeouts: tuple[tuple[str, int], ...] = ()
    function_names: tuple[str, ...] = ()  # Chalice names: the ``function`` dimension of the app's metrics

    def timeout_of(self, function: str) -> int:
        return dict(self.timeouts).get(function, self.lambda_timeout)


@lru_cache(maxsize=None)
def stage(name: str) -> Stage:
    """The stage as Chalice itself resolves it (``.chalice/config.json`` + ``app.py``)."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import models as cm
    from chalice.deploy.appgraph import ApplicationGraphBuilder
    from chalice.utils import to_cfn_resource_name

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    # environ={}: Chalice would otherwise copy the stage's variables into os.environ.
    config = CLIFactory(project_dir=str(ROOT), environ={}).create_config_obj(chalice_stage_name=name)
    if name not in config.config_from_disk.get("stages", {}):
        raise SystemExit(f"unknown stage {name!r} in .chalice/config.json")
    with _logging_untouched():
        graph = ApplicationGraphBuilder().build(config, name)

    def walk(resource: Any) -> Iterator[Any]:
        yield resource
        for dep in resource.dependencies():
            yield from walk(dep)

    resources = list(walk(graph))
    lambdas = {r.resource_name for r in resources if isinstance(r, cm.LambdaFunction)}
    # chalice/package.py names the REST handler "APIHandler", everything else CamelCase.
    functions = sorted("APIHandler" if n == "api_handler" else to_cfn_resource_name(n) for n in lambdas)
    timeouts = sorted({("APIHandler" if r.resource_name == "api_handler" else to_cfn_resource_name(r.resource_name),
                        int(r.timeout)) for r in resources if isinstance(r, cm.LambdaFunction)})
    consumers = sorted({(to_cfn_resource_name(r.lambda_function.resource_name), r.queue)
                        for r in resources if isinstance(r, cm.SQSEventSource) and isinstance(r.queue, str)})
    partial = sorted({(to_cfn_resource_name(r.lambda_function.resource_name), to_cfn_resource_name(r.resource_name))
                      for r in resources if isinstance(r, cm.SQSEventSource)
                      and r.lambda_function.resource_name in PARTIAL_BATCH_RESPONSES})
    kinds = {type(r).__name__ for r in graph.resources}
    return Stage(name=name, app_name=config.app_name, api_stage=config.api_gateway_stage,
                 env=dict(config.environment_variables), policy_file=config.iam_policy_file,
                 lambda_timeout=config.lambda_timeout, functions=tuple(functions),
                 sqs_consumers=tuple(consumers), partial_batch_events=tuple(partial),
                 has_rest_api="RestAPI" in kinds,
                 has_websocket_api="WebsocketAPI" in kinds, timeouts=tuple(timeouts),
                 function_names=tuple(sorted(lambdas)))


def _camel(field: str) -> str:
    return "".join(part.capitalize() for part in field.split("_"))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, dicts merged key by key (as Chalice merges the template itself)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def _setting(value: str, suffix: str) -> str:
    """The one ``Settings`` field ending in ``suffix`` whose value in this process is ``value``.

    Models and handlers captured their names from this process's settings on
    import; the same field of the stage's settings is the deployed name.
    """
    from chalicelib.config import settings

    current = settings()
    fields = [name for name in current._fields if name.endswith(suffix) and getattr(current, name) == value]
    if len(fields) != 1:
        raise SystemExit(f"cannot tell which *{suffix} setting holds {value!r} (matches {fields})")
    return fields[0]


def _stage_settings(stage_name: str) -> Any:
    from chalicelib.config import from_env

    return from_env(stage(stage_name).env)


@dataclasses.dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    key_schema: list[dict[str, str]]
    attributes: list[dict[str, str]]
    gsis: list[dict[str, Any]]
    lsis: list[dict[str, Any]]
    ttl_attribute: str | None


def _hash_first(keys: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(({"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in keys),
                  key=lambda k: k["KeyType"] != "HASH")


def _index(ix: dict[str, Any]) -> dict[str, Any]:
    projection = {"ProjectionType": ix["projection"]["ProjectionType"]}
    if ix["projection"].get("NonKeyAttributes"):
        projection["NonKeyAttributes"] = sorted(ix["projection"]["NonKeyAttributes"])
    return {"IndexName": ix["index_name"], "KeySchema": _hash_first(ix["key_schema"]),
            "Projection": projection}


def tables(stage_name: str) -> list[Table]:
    """One :class:`Table` per model in ``ALL_MODELS``, named for ``stage_name``.

    The schema is pynamodb's own (``Model._get_schema``, what ``create_table``
    sends to the local stack); the name is the stage's value of the
    ``*_table`` setting the model's ``Meta.table_name`` came from.
    """
    from chalicelib import models

    target = _stage_settings(stage_name)
    unknown = set(models.TTL_ATTRIBUTES) - set(models.ALL_MODELS)
    if unknown:
        raise SystemExit(f"TTL_ATTRIBUTES names models outside ALL_MODELS: {sorted(m.__name__ for m in unknown)}")
    out = []
    for model in models.ALL_MODELS:
        schema = model._get_schema()
        out.append(Table(
            logical_id=f"{model.__name__}Table",
            name=getattr(target, _setting(model.Meta.table_name, "_table")),
            key_schema=_hash_first(schema["key_schema"]),
            attributes=sorted(({"AttributeName": a["AttributeName"], "AttributeType": a["AttributeType"]}
                               for a in schema["attribute_definitions"]),
                              key=lambda a: a["AttributeName"]),
            gsis=[_index(ix) for ix in schema["global_secondary_indexes"]],
            lsis=[_index(ix) for ix in schema["local_secondary_indexes"]],
            ttl_attribute=models.TTL_ATTRIBUTES.get(model),
        ))
    return out


def files_bucket(stage_name: str) -> str:
    return _stage_settings(stage_name).files_bucket


def queues(stage_name: str) -> dict[str, str]:
    """Logical id -> queue name of this stage, for every ``*_queue`` setting."""
    target = _stage_settings(stage_name)
    return {_camel(name): getattr(target, name) for name in target._fields if name.endswith("_queue")}


# --- CloudFormation ----------------------------------------------------------

def _tags(st: Stage) -> list[dict[str, str]]:
    return [{"Key": "app", "Value": st.app_name}, {"Key": "stage", "Value": st.name}]


def _table_resource(t: Table, st: Stage) -> dict[str, Any]:
    props: dict[str, Any] = {
        "TableName": t.name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": t.attributes,
        "KeySchema": t.key_schema,
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},  # KMS with the AWS managed key aws/dynamodb
        "DeletionProtectionEnabled": True,
        "Tags": _tags(st),
    }
    if t.gsis:
        props["GlobalSecondaryIndexes"] = t.gsis
    if t.lsis:
        props["LocalSecondaryIndexes"] = t.lsis
    if t.ttl_attribute:
        props["TimeToLiveSpecification"] = {"AttributeName": t.ttl_attribute, "Enabled": True}
    # Retain: deleting or replacing the stack must never take the data with it.
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain", "Properties": props}


def _bucket_resources(st: Stage) -> dict[str, Any]:
    bucket = {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": files_bucket(st.name),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True,
                "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                "BucketKeyEnabled": True,
            }]},
            # Versioning on: an overwrite or delete (a bug, a compromised function)
            # stays recoverable for NONCURRENT_DAYS; see docs/operations.md.
            "VersioningConfiguration": {"Status": "Enabled"},
            # Object Lock without a default retention: only legal holds (per object version, set by the app
            # while a legal hold covers the file) lock anything; S3 then refuses to delete that version.
            "ObjectLockEnabled": True,
            "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"},
            "LifecycleConfiguration": {"Rules": [
                {"Id": "quarantine-expiry", "Status": "Enabled", "Prefix": "quarantine/",
                 "ExpirationInDays": QUARANTINE_DAYS,
                 "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
                {"Id": "noncurrent-versions", "Status": "Enabled",
                 "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
                 "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                 "ExpiredObjectDeleteMarker": True},
            ] + _compliance_lifecycle_rules()},
            "Tags": _tags(st),
        },
    }
    policy = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": "FilesBucket"},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [{"Fn::GetAtt": ["FilesBucket", "Arn"]},
                             {"Fn::Sub": "${FilesBucket.Arn}/*"}],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }]},
        },
    }
    from chalicelib.services.files import cors_rules

    rules = cors_rules(_stage_settings(st.name))
    if rules:  # browsers POST uploads and fetch downloads cross-origin (docs/files.md)
        bucket["Properties"]["CorsConfiguration"] = {"CorsRules": rules}
    out = {"FilesBucket": bucket, "FilesBucketPolicy": policy}
    out.update(_bucket_notification(st, bucket))
    out.update(_malware_protection(st, bucket))
    return out


GUARDDUTY_RULE_PREFIX = "DO-NOT-DELETE-AmazonGuardDutyMalwareProtectionS3"
SCAN_RESULT_RETRY_SECONDS = 24 * 3600  # EventBridge retries a failed delivery this long, then dead-letters it


def _malware_protection(st: Stage, bucket: dict[str, Any]) -> dict[str, Any]:
    """``SCANNER=guardduty``: GuardDuty Malware Protection for S3 on the files bucket, and its verdicts
    routed to ``file_scan_result`` (docs/files.md "Malware scanning", docs/operations.md).

    * the plan (``AWS::GuardDuty::MalwareProtectionPlan``) scans every new object and tags it
      (``GuardDutyMalwareScanStatus``);
    * its role (assumed by ``malware-protection-plan.guardduty.amazonaws.com``) has GuardDuty's
      documented permissions, scoped to this bucket: manage its own EventBridge managed rule,
      turn on the bucket's EventBridge notifications, read objects (and their KMS data keys,
      through S3 only), tag them, write its validation object;
    * the bucket's ``EventBridgeConfiguration`` is declared on: GuardDuty enables it, and a stack
      update that did not say so would turn it off again;
    * an EventBridge rule on "GuardDuty Malware Protection Object Scan Result" for this bucket
      targets the decision function, with retries and a dead-letter queue (alarmed).
    """
    from chalice.utils import to_cfn_resource_name
    from chalicelib import file_events, guardduty

    fn = to_cfn_resource_name(file_events.SCAN_RESULT_FUNCTION)
    if _stage_settings(st.name).scanner != "guardduty" or fn not in st.functions:
        return {}
    name = files_bucket(st.name)
    notifications = bucket["Properties"].setdefault("NotificationConfiguration", {})
    notifications["EventBridgeConfiguration"] = {"EventBridgeEnabled": True}
    managed_rule = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
                               f"{GUARDDUTY_RULE_PREFIX}*"}
    role_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowManagedRuleToSendS3EventsToGuardDuty", "Effect": "Allow",
         "Action": ["events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets"],
         "Resource": [managed_rule],
         "Condition": {"StringLike": {"events:ManagedBy": "malware-protection-plan.guardduty.amazonaws.com"}}},
        {"Sid": "AllowGuardDutyToMonitorEventBridgeManagedRule", "Effect": "Allow",
         "Action": ["events:DescribeRule", "events:ListTargetsByRule"], "Resource": [managed_rule]},
        {"Sid": "AllowEnableS3EventBridgeEvents", "Effect": "Allow",
         "Action": ["s3:PutBucketNotification", "s3:GetBucketNotification"],
         "Resource": [f"arn:aws:s3:::{name}"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}},
        {"Sid": "AllowPostScanTag", "Effect": "Allow",
         "Action": ["s3:PutObjectTagging", "s3:GetObjectTagging", "s3:PutObjectVersionTagging",
                    "s3:GetObjectVersionTagging"],
         "Resource": [f"arn:aws:s3:::{name}/*"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}},
        {"Sid": "AllowPutValidationObject", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": [f"arn:aws:s3:::{name}/malware-protection-resource-validation-object"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}},
        {"Sid": "AllowCheckBucketOwnership", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{name}"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}},
        {"Sid": "AllowMalwareScan", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": [f"arn:aws:s3:::{name}/*"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}},
        # The bucket encrypts with KMS: the objects' data keys, decrypted through S3 only.
        {"Sid": "AllowDecryptForMalwareScan", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}],
         "Condition": {"StringLike": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}},
    ]}
    rule_pattern = {"source": [guardduty.SOURCE], "detail-type": [guardduty.DETAIL_TYPE],
                    "detail": {"s3ObjectDetails": {"bucketName": [name]}}}
    return {
        "FilesMalwareProtectionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "Description": f"GuardDuty Malware Protection for S3 on {name}",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": "malware-protection-plan.guardduty.amazonaws.com"}}]},
            "Policies": [{"PolicyName": "malware-protection-s3", "PolicyDocument": role_policy}],
            "Tags": _tags(st)}},
        "FilesMalwareProtectionPlan": {"Type": "AWS::GuardDuty::MalwareProtectionPlan", "Properties": {
            "Role": {"Fn::GetAtt": ["FilesMalwareProtectionRole", "Arn"]},
            "ProtectedResource": {"S3Bucket": {"BucketName": {"Ref": "FilesBucket"}}},
            "Actions": {"Tagging": {"Status": "ENABLED"}},
            "Tags": _tags(st)}},
        "FileScanResultDeadLetter": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": f"{st.app_name}-{st.name}-file-scan-results-dlq", "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": 14 * 24 * 3600, "Tags": _tags(st)}},
        "FileScanResultDeadLetterPolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "FileScanResultDeadLetter"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "EventBridgeDeadLetters", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["FileScanResultDeadLetter", "Arn"]},
                "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["FileScanResultRule", "Arn"]}}}}]}}},
        "FileScanResultRule": {"Type": "AWS::Events::Rule", "Properties": {
            "Description": f"GuardDuty malware scan results of {name} -> {file_events.SCAN_RESULT_FUNCTION}",
            "EventPattern": rule_pattern, "State": "ENABLED",
            "Targets": [{"Id": "file-scan-result", "Arn": {"Fn::GetAtt": [fn, "Arn"]},
                         "RetryPolicy": {"MaximumEventAgeInSeconds": SCAN_RESULT_RETRY_SECONDS,
                                         "MaximumRetryAttempts": 185},
                         "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["FileScanResultDeadLetter", "Arn"]}}}]}},
        "FileScanResultInvokePermission": {"Type": "AWS::Lambda::Permission", "Properties": {
            "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": fn}, "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": ["FileScanResultRule", "Arn"]}}},
        "FileScanResultDeadLetterAlarm": _alarm(
            st, "file-scan-results-dead-letters", "EventBridge could not deliver GuardDuty scan results to "
            f"{file_events.SCAN_RESULT_FUNCTION}: uploads wait for their verdict (see docs/operations.md#alarms)", 1,
            statistic="Maximum", metric={"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                                         "Dimensions": _dims(QueueName={"Fn::GetAtt": ["FileScanResultDeadLetter",
                                                                                        "QueueName"]})}),
    }



def _compliance_lifecycle_rules() -> list[dict[str, Any]]:
    """Retention of file objects by tag (one rule per allowed period; ``retention=hold`` matches none),
    and expiry of eDiscovery exports (docs/compliance.md)."""
    from chalicelib import retention

    return retention.lifecycle_rules() + [
        {"Id": "exports-expiry", "Status": "Enabled", "Prefix": "exports/", "ExpirationInDays": EXPORT_DAYS,
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]


def _bucket_notification(st: Stage, bucket: dict[str, Any]) -> dict[str, Any]:
    """ObjectCreated -> the app's S3 event function, declared on the bucket this template creates.

    (Chalice's ``@app.on_s3_event`` cannot be packaged for CloudFormation; the
    function is a plain ``@app.lambda_function`` named in chalicelib/file_events.py.)
    S3 checks that it may invoke the function when the configuration is set,
    so the bucket waits for the permission; the permission names the bucket
    by its literal ARN, which keeps the two out of a dependency cycle.
    """
    from chalice.utils import to_cfn_resource_name
    from chalicelib import file_events

    fn = to_cfn_resource_name(file_events.FUNCTION_NAME)
    if fn not in st.functions:
        return {}
    bucket["DependsOn"] = ["FilesBucketInvokePermission"]
    bucket["Properties"]["NotificationConfiguration"] = {"LambdaConfigurations": [
        {"Event": event, "Function": {"Fn::GetAtt": [fn, "Arn"]}} for event in file_events.EVENTS]}
    return {"FilesBucketInvokePermission": {"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": fn}, "Principal": "s3.amazonaws.com",
        "SourceArn": f"arn:aws:s3:::{files_bucket(st.name)}", "SourceAccount": {"Ref": "AWS::AccountId"}}}}


SCIM_FUNCTION = "scim"  # app.py: @app.lambda_function(name="scim")
SCIM_PATH = "/scim/v2/{proxy+}"


AUTHORIZER_FUNCTION = "WsAuthorizer"  # Chalice's logical id of app.py's ``ws_authorizer``


def _connect_authorizer(st: Stage) -> dict[str, Any]:
    """The $connect route's Lambda REQUEST authorizer (``authorizer.authorize``), which Chalice cannot declare.

    No identity source: the authorizer is always called (a token may come as ``?token=`` or as a
    subprotocol) and answers a refusal through $connect itself; caching is not supported for
    WebSocket authorizers.  Its context reaches every later route event of the connection in
    ``requestContext.authorizer``, so frames need no identity read (docs/delivery.md).
    """
    if not st.has_websocket_api or AUTHORIZER_FUNCTION not in st.functions:
        return {}
    return {
        "WebsocketConnectAuthorizer": {"Type": "AWS::ApiGatewayV2::Authorizer", "Properties": {
            "ApiId": {"Ref": "WebsocketAPI"}, "AuthorizerType": "REQUEST", "Name": f"{st.app_name}-{st.name}-connect",
            "AuthorizerUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                                         "functions/${" + AUTHORIZER_FUNCTION + ".Arn}/invocations"}}},
        "WebsocketConnectRoute": {"Properties": {"AuthorizationType": "CUSTOM",
                                                 "AuthorizerId": {"Ref": "WebsocketConnectAuthorizer"}}},
        f"{AUTHORIZER_FUNCTION}InvokePermission": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": AUTHORIZER_FUNCTION}, "Action": "lambda:InvokeFunction",
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                     "${WebsocketAPI}/authorizers/${WebsocketConnectAuthorizer}"}}},
    }


def _scim_route(st: Stage) -> dict[str, Any]:
    """``ANY /scim/v2/{proxy+}`` on Chalice's REST API -> the ``scim`` function (docs/scim.md).

    Chalice routes every REST path to its one API handler, so the route is
    added to the API's own swagger body, which ``chalice package
    --merge-template`` deep-merges: the path is then part of the API
    definition, deployed with it by the same ``AWS::Serverless::Api`` (an
    ``AWS::ApiGateway::Method`` outside the body would miss the deployment
    snapshot), on the same origin, stage and 5xx alarm as the rest of the
    REST API.  A separate HTTP API would have worked too, at the cost of a
    second base URL for admins to configure.  The permission lets API
    Gateway invoke the function for this API only.
    """
    from chalice.utils import to_cfn_resource_name

    fn = to_cfn_resource_name(SCIM_FUNCTION)
    if fn not in st.functions or not st.has_rest_api:
        return {}
    integration = {
        "type": "aws_proxy", "httpMethod": "POST", "passthroughBehavior": "when_no_match",
        "uri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                           "${" + fn + ".Arn}/invocations"},
    }
    method = {"consumes": ["application/scim+json", "application/json"], "produces": ["application/scim+json"],
              "parameters": [{"name": "proxy", "in": "path", "required": True, "type": "string"}],
              "responses": {"200": {"description": "SCIM response"}},
              "x-amazon-apigateway-integration": integration}
    return {
        "RestAPI": {"Properties": {"DefinitionBody": {"paths": {SCIM_PATH: {"x-amazon-apigateway-any-method": method}}}}},
        f"{fn}InvokePermission": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": fn}, "Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                                     "${RestAPI}/*/*/scim/v2/*"}}},
    }


def _queue_resources(st: Stage) -> dict[str, Any]:
    """Each queue with a dead-letter queue; the functions consuming it wait for it."""
    out: dict[str, Any] = {}
    consumer_timeouts: dict[str, int] = {}  # queue logical id -> longest timeout among its consumers
    for fn, imported_name in st.sqs_consumers:
        lid = _camel(_setting(imported_name, "_queue"))
        consumer_timeouts[lid] = max(consumer_timeouts.get(lid, 0), st.timeout_of(fn))
    for lid, name in queues(st.name).items():
        out[f"{lid}DeadLetter"] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": f"{name}-dlq", "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": 14 * 24 * 3600, "Tags": _tags(st)}}
        out[lid] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": name, "SqsManagedSseEnabled": True,
            # AWS's advice for Lambda consumers: at least 6x the function timeout.
            "VisibilityTimeout": 6 * consumer_timeouts.get(lid, st.lambda_timeout),
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [f"{lid}DeadLetter", "Arn"]},
                              "maxReceiveCount": MAX_RECEIVES},
            "Tags": _tags(st)}}
    for fn, imported_name in st.sqs_consumers:
        # Chalice refers to the queue by a literal ARN: without this the event
        # source mapping may be created before the queue exists.
        out[fn] = {"DependsOn": [_camel(_setting(imported_name, "_queue"))]}
    for fn, event in st.partial_batch_events:
        # Without it a returned batchItemFailures is ignored and the whole batch counts as done.
        out.setdefault(fn, {})["Properties"] = {"Events": {event: {"Properties": {
            "FunctionResponseTypes": ["ReportBatchItemFailures"]}}}}
    return out


def _function_overrides(st: Stage) -> dict[str, Any]:
    """Merged into Chalice's functions: the ``@connections`` endpoint, known only at deploy time.

    Without it, a container that has not yet seen a WebSocket event (the REST
    handler, a queue consumer) cannot post to sockets (chalicelib/runtime.py).
    """
    variables: dict[str, Any] = {}
    if st.has_websocket_api:
        variables["WS_MANAGEMENT_ENDPOINT"] = {
            "Fn::Sub": "https://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + st.api_stage}
    apps = push_application_parameters(st)
    if apps:  # PUSH_APPLICATIONS from the template's parameters (docs/operations.md, mobile push)
        pairs = ", ".join(f'"{key}": "${{{lid}}}"' for lid, (key, _default) in sorted(apps.items()))
        variables["PUSH_APPLICATIONS"] = {"Fn::Sub": "{" + pairs + "}"}
    if not variables:
        return {}
    return {fn: {"Properties": {"Environment": {"Variables": variables}}} for fn in st.functions}


PUSH_PLATFORMS = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}


def push_application_parameters(st: Stage) -> dict[str, tuple[str, str]]:
    """One template parameter per SNS platform application of ``PUSH_APPLICATIONS`` (mobile push):
    logical id -> ("<platform>:<appId>", the stage config's ARN as its default placeholder)."""
    apps = json.loads(st.env.get("PUSH_APPLICATIONS") or "{}")
    out = {}
    for key, arn in sorted(apps.items()):
        platform, _, app_id = key.partition(":")
        lid = "PushApp" + _camel(platform) + "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", app_id) if p)
        out[lid] = (key, arn)
    return out


def _push_parameters(st: Stage) -> dict[str, Any]:
    """Ops set the ARNs of the platform applications they created at deploy time; the pattern keeps
    each to its platform and to the names the functions' SNS permissions allow (<app>-<stage>-*)."""
    params = {}
    for lid, (key, default) in push_application_parameters(st).items():
        platform = PUSH_PLATFORMS[key.partition(":")[0]]
        params[lid] = {"Type": "String", "Default": default,
                       "Description": f"ARN of the SNS platform application for {key} (mobile push, docs/push.md)",
                       "AllowedPattern": f"^arn:aws:sns:[a-z0-9-]+:[0-9]{{12}}:app/{platform}/"
                                         f"{st.app_name}-{st.name}-.+$"}
    return params


def _alarm(st: Stage, name: str, description: str, threshold: float, metric: dict[str, Any] | None = None,
           metrics: list[dict[str, Any]] | None = None, statistic: str = "Sum", periods: int = 1) -> dict[str, Any]:
    props: dict[str, Any] = {
        "AlarmName": f"{st.app_name}-{st.name}-{name}",
        "AlarmDescription": description,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Threshold": threshold,
        "EvaluationPeriods": periods,
        "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": "AlarmTopic"}],
        "OKActions": [{"Ref": "AlarmTopic"}],
    }
    if metric:
        props.update(metric, Statistic=statistic, Period=ALARM_PERIOD)
    else:
        props["Metrics"] = metrics
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": props}


def _dims(**kv: Any) -> list[dict[str, Any]]:
    return [{"Name": k, "Value": v} for k, v in kv.items()]


def _app_metric(st: Stage, qid: str, metric: str, function: str) -> dict[str, Any]:
    """A query of one EMF counter of one function (Sum over the alarm period)."""
    dims = _dims(stage=st.env.get("CHAT_STAGE", st.name), function=function)
    return {"Id": qid, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": APP_METRIC_NAMESPACE, "MetricName": metric, "Dimensions": dims},
        "Period": ALARM_PERIOD, "Stat": "Sum"}}


def _app_alarms(st: Stage) -> dict[str, Any]:
    """Alarms on the app's EMF counters (docs/operations.md#alarms)."""
    out: dict[str, Any] = {}
    names = st.function_names
    stage_value = st.env.get("CHAT_STAGE", st.name)
    for name, metric, threshold, periods, why in APP_ALARMS:
        # One Metrics Insights query sums the counter over every function of the stage: an alarm
        # takes at most 10 metric queries, fewer than the app has functions.
        stats = [{"Id": "total", "Label": metric, "ReturnData": True, "Period": ALARM_PERIOD,
                  "Expression": f'SELECT SUM("{metric}") FROM SCHEMA("{APP_METRIC_NAMESPACE}", function, stage) '
                                f"WHERE stage = '{stage_value}'"}]
        out[f"App{metric}Alarm"] = _alarm(st, name, f"{metric} >= {threshold} in {periods} period(s) in a row: "
                                          f"{why} (see docs/operations.md#alarms)", threshold,
                                          metrics=stats, periods=periods)
    throttled = [{"Id": "throttled", "Label": "TenantThrottled", "ReturnData": True, "Period": ALARM_PERIOD,
                  "Expression": f'SELECT SUM("TenantThrottled") FROM SCHEMA("{APP_METRIC_NAMESPACE}", stage, tenant) '
                                f"WHERE stage = '{stage_value}' GROUP BY tenant ORDER BY SUM() DESC"}]
    out["AppTenantThrottledAlarm"] = _alarm(
        st, "tenant-throttled", f"A company was held to its limits (sends, connects, delivery budget) in "
        f"{TENANT_THROTTLED_PERIODS} periods in a row; the alarm's contributors name it (tenant): raise its "
        "limit with tenantctl limits or talk to it (see docs/operations.md#alarms)", 1,
        metrics=throttled, periods=TENANT_THROTTLED_PERIODS)
    if "websocket_message" in names:
        stats = [_app_metric(st, "gone", "DeliveriesGone", "websocket_message"),
                 _app_metric(st, "posted", "DeliveriesPosted", "websocket_message"),
                 {"Id": "ratio", "Label": "GoneRatio", "ReturnData": True,
                  "Expression": f"IF(posted >= {GONE_RATIO_MIN_POSTS}, gone / posted, 0)"}]
        out["AppGoneRatioAlarm"] = _alarm(
            st, "gone-ratio", f"websocket_message: at least {GONE_RATIO:.0%} of posts answered Gone, 3 periods "
            "in a row: clients drop without $disconnect or cleanup lags (see docs/operations.md#alarms)",
            GONE_RATIO, metrics=stats, periods=3)
    return out


def _alarms(st: Stage, tbls: list[Table]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fn in st.functions:
        for metric in ("Errors", "Throttles"):
            out[f"{fn}{metric}Alarm"] = _alarm(
                st, f"{fn}-{metric.lower()}", f"Lambda {fn}: {metric} (see docs/operations.md#alarms)",
                THRESHOLDS[metric], metric={"Namespace": "AWS/Lambda", "MetricName": metric,
                                            "Dimensions": _dims(FunctionName={"Ref": fn})})
    for t in tbls:
        # Read + write throttle events of the table and each GSI, summed.
        dims = [_dims(TableName={"Ref": t.logical_id})] + [
            _dims(TableName={"Ref": t.logical_id}, GlobalSecondaryIndexName=ix["IndexName"]) for ix in t.gsis]
        stats = [{"Id": f"m{i}", "ReturnData": False, "MetricStat": {
                     "Metric": {"Namespace": "AWS/DynamoDB", "MetricName": name, "Dimensions": d},
                     "Period": ALARM_PERIOD, "Stat": "Sum"}}
                 for i, (d, name) in enumerate((d, n) for d in dims
                                               for n in ("ReadThrottleEvents", "WriteThrottleEvents"))]
        if len(stats) >= 10:
            raise SystemExit(f"{t.logical_id}: too many indexes for one throttle alarm")
        stats.append({"Id": "throttles", "Expression": "SUM(METRICS())", "Label": "ThrottleEvents",
                      "ReturnData": True})
        out[f"{t.logical_id}ThrottleAlarm"] = _alarm(
            st, f"{t.logical_id}-throttles", f"DynamoDB {t.name}: throttled requests (see docs/operations.md#alarms)",
            THRESHOLDS["DynamoThrottles"], metrics=stats)
    for lid, name in queues(st.name).items():
        out[f"{lid}DeadLetterAlarm"] = _alarm(
            st, f"{lid}-dead-letters", f"SQS {name}: messages failed {MAX_RECEIVES} times (see docs/operations.md#alarms)",
            1, statistic="Maximum",
            metric={"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": _dims(QueueName={"Fn::GetAtt": [f"{lid}DeadLetter", "QueueName"]})})
        out[f"{lid}AgeAlarm"] = _alarm(
            st, f"{lid}-age", f"SQS {name}: oldest message waits (see docs/operations.md#alarms)",
            THRESHOLDS["QueueAgeSeconds"], statistic="Maximum",
            metric={"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": _dims(QueueName={"Fn::GetAtt": [lid, "QueueName"]})})
    if st.has_rest_api:
        # REST metrics are keyed by API name (= the swagger title = app name) and stage.
        out["RestApi5xxAlarm"] = _alarm(
            st, "rest-5xx", "REST API: 5xx responses (see docs/operations.md#alarms)", THRESHOLDS["Rest5xx"],
            metric={"Namespace": "AWS/ApiGateway", "MetricName": "5XXError",
                    "Dimensions": _dims(ApiName=st.app_name, Stage=st.api_stage)})
    if st.has_websocket_api:
        # WebSocket APIs have no 5XXError; ExecutionError counts the gateway's failures
        # to invoke the integration (IntegrationError would count refused handshakes too).
        out["WebsocketExecutionErrorAlarm"] = _alarm(
            st, "websocket-execution-errors", "WebSocket API: execution errors (see docs/operations.md#alarms)",
            THRESHOLDS["WsExecutionErrors"],
            metric={"Namespace": "AWS/ApiGateway", "MetricName": "ExecutionError",
                    "Dimensions": _dims(ApiId={"Ref": "WebsocketAPI"}, Stage=st.api_stage)})
    out.update(_app_alarms(st))
    return out


def render_resources(stage_name: str) -> dict[str, Any]:
    """The template fragment for ``chalice package --merge-template``."""
    st, tbls = stage(stage_name), tables(stage_name)
    resources: dict[str, Any] = {t.logical_id: _table_resource(t, st) for t in tbls}
    resources.update(_bucket_resources(st))
    for part in (_function_overrides(st), _queue_resources(st), _scim_route(st), _connect_authorizer(st)):
        for lid, res in part.items():
            resources[lid] = _deep_merge(resources.get(lid, {}), res)
    # Unencrypted on purpose: CloudWatch cannot publish to a topic encrypted with
    # the AWS managed SNS key, and alarm notifications carry no customer data.
    resources["AlarmTopic"] = {"Type": "AWS::SNS::Topic",
                               "Properties": {"DisplayName": f"{st.app_name}-{st.name} alarms",
                                              "Tags": _tags(st)}}
    resources.update(_alarms(st, tbls))
    outputs = {f"{t.logical_id}Name": {"Value": {"Ref": t.logical_id}} for t in tbls}
    outputs.update({f"{lid}Url": {"Value": {"Ref": lid}} for lid in queues(stage_name)})
    outputs["FilesBucketName"] = {"Value": {"Ref": "FilesBucket"}}
    outputs["AlarmTopicArn"] = {"Value": {"Ref": "AlarmTopic"}}
    template: dict[str, Any] = {"Resources": resources, "Outputs": outputs}
    params = _push_parameters(st)
    if params:
        template = {"Parameters": params, **template}
    return template


# --- IAM: one role per function ----------------------------------------------------

# What each function calls, by resource: tables by their setting (``conversations``
# is CONVERSATIONS_TABLE; ``<table>/index`` its indexes), ``queue:<setting>``,
# ``bucket:files`` (the files bucket's objects), ``@connections`` (posting to sockets).
# First derived from the local stack recording every call of every function over
# the whole suite (``DEVSTACK_IAM=record``, ``tools/iam_usage.py``), then reviewed.
# The local stack enforces each function's policy on every call (devstack/iam.py),
# so a new call missing here fails the tests that make it.  Consuming its event
# source's queue is added to each SQS consumer (``_event_source_statements``).
FUNCTION_ACCESS: dict[str, dict[str, list[str]]] = {
    "api_handler": {
        "audit": ["PutItem", "Query"],
        "bucket:files": ["GetObject", "GetObjectVersion", "PutObject"],
        "conversations": ["BatchGetItem", "GetItem", "UpdateItem"],
        "dlp_flags": ["GetItem", "PutItem", "Query", "UpdateItem"],
        "dlp_flags/index": ["Query"],
        "dlp_rules": ["BatchGetItem", "GetItem", "PutItem"],
        "domains": ["GetItem"],
        "exports": ["GetItem", "PutItem"],
        "files": ["GetItem", "PutItem"],
        "holds": ["GetItem", "PutItem", "Query", "UpdateItem"],
        "idempotency": ["GetItem", "PutItem"],
        "links": ["BatchGetItem", "PutItem", "Query", "UpdateItem"],
        "members": ["BatchGetItem", "GetItem", "Query", "UpdateItem"],
        "members/index": ["Query"],
        "messages": ["GetItem", "PutItem", "Query"],
        "presence": ["BatchGetItem"],
        "queue:compliance": ["GetQueueUrl", "SendMessage"],
        "queue:files": ["GetQueueUrl", "SendMessage"],
        "ratelimits": ["UpdateItem"],
        "retention": ["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "UpdateItem"],
        "scim_tokens": ["DeleteItem", "GetItem", "PutItem"],
        "tenants": ["BatchGetItem", "GetItem", "UpdateItem"],
        "tenants/index": ["Query"],
        "usage": ["GetItem", "UpdateItem"],
        # Query: people search; BatchWriteItem, users PutItem and users/index: a tenant's first sign-in
        # over REST when it auto-provisions (connections._provision), as ws_authorizer on the socket.
        "user_search": ["BatchWriteItem", "Query"],
        "users": ["BatchGetItem", "GetItem", "PutItem", "Query", "UpdateItem"],
        "users/index": ["Query"],
    },
    "compliance_job": {
        "bucket:files": ["DeleteObject", "DeleteObjectVersion", "DeleteObjectVersionTagging", "GetObject", "PutObject",
                         "PutObjectLegalHold", "PutObjectVersionTagging"],
        "conversations": ["GetItem"],
        "exports": ["GetItem", "UpdateItem"],
        "files": ["BatchGetItem", "GetItem", "UpdateItem"],
        "holds": ["GetItem", "UpdateItem"],
        "links": ["BatchGetItem"],
        "members/index": ["Query"],
        "messages": ["Query", "UpdateItem"],
        "messages/index": ["Query"],
        "originals": ["DeleteItem", "Query", "UpdateItem"],
        "originals/index": ["Query"],
        "queue:compliance": ["GetQueueUrl", "SendMessage"],
        # the retention backfill: its state item (lease, progress), a conversation's first member, quota
        "retention": ["BatchGetItem", "GetItem", "UpdateItem"],
        "members": ["BatchGetItem", "Query"],
        "usage": ["UpdateItem"],
        "users": ["Query"],
    },
    "deliver": {
        "@connections": ["ManageConnections"],
        "connections": ["DeleteItem", "GetItem"],
        "conversations": ["UpdateItem"],
        "members": ["BatchGetItem", "Query"],
        "online": ["BatchWriteItem", "Query"],
        "presence": ["BatchGetItem", "UpdateItem"],
        "queue:delivery": ["GetQueueUrl", "SendMessageBatch"],
        "queue:presence": ["GetQueueUrl", "SendMessage"],
        "subscriptions/index": ["Query"],
    },
    "file_scan_retry": {
        "@connections": ["ManageConnections"],
        "bucket:files": ["GetObject", "GetObjectVersion"],
        "conversations": ["GetItem", "UpdateItem"],
        "files": ["GetItem", "UpdateItem"],
        "idempotency": ["GetItem", "PutItem"],
        "members": ["GetItem", "Query", "UpdateItem"],
        "messages": ["PutItem"],
        "presence": ["BatchGetItem"],
        "retention": ["BatchGetItem"],
        "usage": ["UpdateItem"],
    },
    "file_uploaded": {
        "@connections": ["ManageConnections"],
        "bucket:files": ["DeleteObjectVersion", "GetObject", "GetObjectVersion", "PutObject", "PutObjectLegalHold", "PutObjectVersionTagging"],
        "connections": ["GetItem"],
        "conversations": ["GetItem", "UpdateItem"],
        # content screening (docs/compliance.md "Files"): the rule sets, flags and blocked attempts
        "dlp_flags": ["PutItem"],
        "dlp_rules": ["BatchGetItem"],
        "files": ["GetItem", "UpdateItem"],
        "idempotency": ["GetItem", "PutItem"],
        "links": ["BatchGetItem"],
        "members": ["GetItem", "Query", "UpdateItem"],
        "messages": ["PutItem"],
        "presence": ["BatchGetItem"],
        # a scan retry (scanner unavailable) and, with SCANNER=guardduty, the verdict's deadline
        "queue:files": ["GetQueueUrl", "SendMessage"],
        "retention": ["BatchGetItem"],
        "tenants": ["BatchGetItem"],
        "usage": ["UpdateItem"],
        "users": ["GetItem"],
    },
    "presence_flush": {
        "@connections": ["ManageConnections"],
        "connections": ["GetItem"],
        "links": ["BatchGetItem"],
        "presence": ["GetItem", "UpdateItem"],
        "queue:delivery": ["GetQueueUrl", "SendMessageBatch"],
        "queue:presence": ["GetQueueUrl", "SendMessage"],
        "subscriptions": ["Query"],
        "tenants": ["BatchGetItem"],
    },
    "scim": {
        "@connections": ["ManageConnections"],
        "audit": ["PutItem"],
        "connections/index": ["Query"],
        "groups": ["DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"],
        "scim_tokens": ["GetItem"],
        "tenants": ["GetItem"],
        "user_search": ["BatchWriteItem"],
        # DeleteItem: an email change releases the old address's claim (chalicelib/email_claims.py)
        "users": ["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"],
        "users/index": ["Query"],
    },
    "websocket_connect": {
        # @connections: also GetConnection, to find dead ids when the device limit refuses (limits.py)
        "@connections": ["ManageConnections"],
        "connections": ["PutItem"],
        "online": ["BatchWriteItem"],
        "presence": ["GetItem", "UpdateItem"],
        "queue:delivery": ["GetQueueUrl", "SendMessageBatch"],
        "queue:presence": ["GetQueueUrl", "SendMessage"],
        # the tenant's connect window (chalicelib/limits.py) and its limits (GetItem, cached)
        "ratelimits": ["UpdateItem"],
        "subscriptions": ["Query"],
        "tenants": ["GetItem"],
    },
    "websocket_disconnect": {
        "@connections": ["ManageConnections"],
        "connections": ["DeleteItem", "GetItem"],
        "online": ["BatchWriteItem"],
        "presence": ["GetItem", "UpdateItem"],
        "queue:presence": ["GetQueueUrl", "SendMessage"],
        "subscriptions": ["BatchWriteItem", "Query"],
        "subscriptions/index": ["Query"],
    },
    "websocket_message": {
        "@connections": ["ManageConnections"],
        "bucket:files": ["DeleteObjectVersion", "GetObjectVersion", "PutObject", "PutObjectLegalHold"],
        "connections": ["DeleteItem", "GetItem"],
        "conversations": ["BatchGetItem", "GetItem", "PutItem", "UpdateItem"],
        "conversations/index": ["Query"],
        "dlp_flags": ["PutItem"],
        "dlp_rules": ["BatchGetItem"],
        "files": ["GetItem", "PutItem", "UpdateItem"],
        "idempotency": ["GetItem", "PutItem"],
        "links": ["BatchGetItem", "Query"],
        "members": ["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"],
        "members/index": ["Query"],
        "messages": ["GetItem", "PutItem", "Query", "UpdateItem"],
        "messages/index": ["Query"],
        "online": ["BatchWriteItem"],
        "originals": ["PutItem"],
        "presence": ["BatchGetItem", "GetItem", "UpdateItem"],
        "queue:delivery": ["GetQueueUrl", "SendMessageBatch"],
        "queue:files": ["GetQueueUrl", "SendMessage"],
        "queue:presence": ["GetQueueUrl", "SendMessage"],
        "ratelimits": ["UpdateItem"],
        "retention": ["BatchGetItem"],
        "subscriptions": ["BatchWriteItem", "Query"],
        "subscriptions/index": ["Query"],
        "tenants": ["BatchGetItem", "GetItem"],  # GetItem: the tenant's limits (chalicelib/limits.py, cached)
        "usage": ["GetItem", "UpdateItem"],
        "user_search": ["Query"],
        "users": ["BatchGetItem", "GetItem"],
        "users/index": ["Query"],
    },
    "ws_authorizer": {
        "tenants/index": ["Query"],
        "user_search": ["BatchWriteItem"],
        "users": ["GetItem", "PutItem"],
        "users/index": ["Query"],
    },
}
# Ask the experts (docs/experts.md): topics over REST (admins), asking on both APIs (the question, its
# pool: users, groups, presence; the first escalation step queued), accepting on the socket (the
# conditional claim, then conversation.create's needs, already there); escalation steps on the
# compliance queue offer the next wave.  Offers go through the delivery queue (nothing here posts).
for _fn, _extra in {
    "api_handler": {"experts": ["DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"],
                    "groups": ["GetItem"], "dlp_rules": ["BatchGetItem"], "dlp_flags": ["PutItem"],
                    "queue:compliance": ["GetQueueUrl", "SendMessage"]},
    "websocket_message": {"experts": ["GetItem", "PutItem", "UpdateItem"], "groups": ["GetItem"],
                          "queue:compliance": ["GetQueueUrl", "SendMessage"]},
    "compliance_job": {"experts": ["GetItem", "UpdateItem"], "groups": ["GetItem"],
                       "users": ["BatchGetItem", "GetItem"], "presence": ["BatchGetItem"],
                       "queue:delivery": ["GetQueueUrl", "SendMessageBatch"]},
}.items():
    for _key, _acts in _extra.items():
        FUNCTION_ACCESS[_fn][_key] = sorted({*FUNCTION_ACCESS[_fn].get(_key, []), *_acts})
# Questions waiting (docs/experts.md, h-experts2): a topic's save marks its pool (Presence.expert_topics,
# DirectoryGroup.expert_topics; SCIM marks members it adds to such a group); a presence publication of a
# marked user turning available queues one ``expert.online`` compliance job (every function that
# publishes presence), which Queries the topics' waiting markers and offers them; accepting/cancelling
# removes a marker, an exhausted question writes one.  Q&A entries (expert.answered, expert.search): the
# answer's messages (BatchGetItem), the entry and its words (BatchWriteItem), the hits (BatchGetItem).
_COMPLIANCE_SEND = {"queue:compliance": ["GetQueueUrl", "SendMessage"]}
for _fn, _extra in {
    "api_handler": {"presence": ["UpdateItem"], "groups": ["UpdateItem"],
                    "experts": ["BatchGetItem", "BatchWriteItem"], "messages": ["BatchGetItem"]},
    "websocket_message": {"experts": ["BatchGetItem", "BatchWriteItem", "DeleteItem", "Query"],
                          "messages": ["BatchGetItem"]},
    "compliance_job": {"experts": ["PutItem", "Query"], "presence": ["UpdateItem"],
                       "tenants": ["BatchGetItem"]},  # a partner's asker: policy.allowed_recipients per wave
    "scim": {"presence": ["UpdateItem"]},
    "websocket_connect": _COMPLIANCE_SEND,
    "websocket_disconnect": _COMPLIANCE_SEND,
    "presence_flush": _COMPLIANCE_SEND,
}.items():
    for _key, _acts in _extra.items():
        FUNCTION_ACCESS[_fn][_key] = sorted({*FUNCTION_ACCESS[_fn].get(_key, []), *_acts})
# $disconnect publishes presence like $connect (to watchers of other companies too).
for _key, _acts in {"queue:delivery": ["GetQueueUrl", "SendMessageBatch"],
                    "queue:presence": ["GetQueueUrl", "SendMessage"]}.items():
    FUNCTION_ACCESS["websocket_disconnect"][_key] = sorted({*FUNCTION_ACCESS["websocket_disconnect"].get(_key, []),
                                                           *_acts})
# Who may hear an event is decided when it is delivered (policy.allowed_recipients): the companies'
# policies and links, and in "users" mode the sender's directory entry (GetItem) and the recipients'
# (BatchGetItem) -- the deliver worker was refused them in test_federation's group-mode test.
_AUDIENCE = {"tenants": ["BatchGetItem"], "links": ["BatchGetItem"], "users": ["BatchGetItem", "GetItem"]}
for _fn, _access in FUNCTION_ACCESS.items():
    if "@connections" in _access:
        for _key, _acts in _AUDIENCE.items():
            _access[_key] = sorted({*_access.get(_key, []), *_acts})
# A post that answers Gone removes that connection as $disconnect does (services/connections.disconnect,
# then the presence publish): every function that posts to sockets may do what websocket_disconnect does.
for _fn, _access in FUNCTION_ACCESS.items():
    if "@connections" in _access and _fn != "websocket_disconnect":
        for _key, _acts in FUNCTION_ACCESS["websocket_disconnect"].items():
            _access[_key] = sorted({*_access.get(_key, []), *_acts})
# file_scan_retry re-runs file_uploaded's decision (chalicelib/file_events.py): the same needs.
FUNCTION_ACCESS["file_scan_retry"] = {**FUNCTION_ACCESS["file_uploaded"],
                                      **{k: sorted(set(v) | set(FUNCTION_ACCESS["file_uploaded"].get(k, [])))
                                         for k, v in FUNCTION_ACCESS["file_scan_retry"].items()}}
# file_scan_result makes the same decision on GuardDuty's verdict (file_uploaded hands its own engine's
# verdict to it locally), so the same needs; it never queues anything.
FUNCTION_ACCESS["file_scan_result"] = {k: v for k, v in FUNCTION_ACCESS["file_uploaded"].items()
                                       if k != "queue:files"}
# An export step that fails aborts its multipart upload (not reached by the suite).
FUNCTION_ACCESS["compliance_job"]["bucket:files"] = sorted({*FUNCTION_ACCESS["compliance_job"]["bucket:files"],
                                                            "AbortMultipartUpload"})

# Mobile push (docs/push.md): registration on the socket and REST (endpoints, devices, claims), the
# send on the delivery worker (devices, the sender's name, Publish; a disabled endpoint is removed),
# SCIM deactivation removes the user's devices.  A DM or mention over REST queues its push job.
_PUSH_REGISTER = {"push_devices": ["DeleteItem", "GetItem", "PutItem"],
                  "sns:push": ["CreatePlatformEndpoint", "DeleteEndpoint", "SetEndpointAttributes"]}
for _fn, _extra in {
    "api_handler": {**_PUSH_REGISTER, "queue:delivery": ["GetQueueUrl", "SendMessageBatch"]},
    "websocket_message": _PUSH_REGISTER,
    # preferences of the offline recipients (BatchGetItem), the badge (the user's memberships and their
    # conversations' last seq), the companies' preview policies (tenants BatchGetItem, already there)
    "deliver": {"push_devices": ["BatchGetItem", "DeleteItem", "Query"], "users": ["GetItem"],
                "members/index": ["Query"], "conversations": ["BatchGetItem"],
                "sns:push": ["DeleteEndpoint", "Publish"]},
    "scim": {"push_devices": ["DeleteItem", "GetItem", "Query"], "sns:push": ["DeleteEndpoint"]},
}.items():
    for _key, _acts in _extra.items():
        FUNCTION_ACCESS[_fn][_key] = sorted({*FUNCTION_ACCESS[_fn].get(_key, []), *_acts})

# Usage each company can see (chalicelib/usage.py): counted where it happens (ADD on a tenant-day
# shard; in the send's transaction on the socket and REST), read by admins over REST (1 Query per
# shard).  Connection-minutes are counted by whoever removes a connection record: websocket_disconnect
# and, through the Gone cleanup above, every function that posts (added to each below).
for _fn, _acts in {"api_handler": ["Query", "UpdateItem"], "websocket_message": ["UpdateItem"],
                   "deliver": ["UpdateItem"], "websocket_disconnect": ["UpdateItem"],
                   "file_uploaded": ["UpdateItem"], "file_scan_retry": ["UpdateItem"],
                   "file_scan_result": ["UpdateItem"]}.items():
    FUNCTION_ACCESS[_fn]["usage_days"] = sorted({*FUNCTION_ACCESS[_fn].get("usage_days", []), *_acts})
for _fn, _access in FUNCTION_ACCESS.items():
    if "@connections" in _access:
        _access["usage_days"] = sorted({*_access.get("usage_days", []), "UpdateItem"})

# Fair delivery (chalicelib/fair.py): the worker takes each job's posts from its company's one-second
# window (ratelimits, conditional UpdateItem) after reading the company's budget (tenants, cached).
for _key, _acts in {"ratelimits": ["UpdateItem"], "tenants": ["GetItem"]}.items():
    FUNCTION_ACCESS["deliver"][_key] = sorted({*FUNCTION_ACCESS["deliver"].get(_key, []), *_acts})

# The audit log is append-only: whoever writes it may only PutItem (test_infra checks it).
AUDIT_TABLE = "audit"
_ACCESS_PREFIX = {"queue": "sqs", "bucket": "s3", "sns": "sns"}
_OBJECT_PAIRS = {f"s3:{a}": f"s3:{b}" for a, b in (
    ("GetObject", "GetObjectVersion"), ("DeleteObject", "DeleteObjectVersion"),
    ("PutObjectTagging", "PutObjectVersionTagging"))}
_OBJECT_PAIRS.update({b: a for a, b in list(_OBJECT_PAIRS.items())})


def function_policy_file(stage_name: str, function: str) -> str:
    return f"policy-{stage_name}-{function}.json"


def logical_id(function: str) -> str:
    """CloudFormation logical id of a Chalice function (chalice/package.py's naming)."""
    from chalice.utils import to_cfn_resource_name

    return "APIHandler" if function == "api_handler" else to_cfn_resource_name(function)


def _logs_statement(st: Stage, function: str | None) -> dict[str, Any]:
    # CloudFormation names functions <stack>-<LogicalId>-<suffix>; `make deploy` uses the
    # stack <app>-<stage>, so this covers exactly this function's log group.
    name = f"{st.app_name}-{st.name}-{logical_id(function)}-*" if function else f"{st.app_name}-{st.name}-*"
    group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{name}"
    return {"Sid": "Logs", "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [group, f"{group}:log-stream:*"]}


def _resource_statement(stage_name: str, key: str, actions: list[str]) -> dict[str, Any]:
    st, target = stage(stage_name), _stage_settings(stage_name)
    kind, _, name = key.partition(":") if ":" in key else ("table", "", key)
    prefix = _ACCESS_PREFIX.get(kind, "dynamodb")
    acts = sorted(f"{prefix}:{a}" for a in actions)
    if kind == "queue":
        resources: list[str] | str = [f"arn:aws:sqs:*:*:{getattr(target, name + '_queue')}"]
        sid = f"{_camel(name)}Queue"
    elif kind == "bucket":
        # The code addresses a version when it knows it and the object otherwise: grant both forms.
        acts = sorted(set(acts) | {_OBJECT_PAIRS[a] for a in acts if a in _OBJECT_PAIRS})
        bucket = getattr(target, name + "_bucket")
        bucket_level = {"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}
        resources = sorted({f"arn:aws:s3:::{bucket}" if a in bucket_level else f"arn:aws:s3:::{bucket}/*"
                            for a in acts})
        sid = f"{_camel(name)}Bucket"
    elif kind == "sns":
        # Mobile push (docs/push.md): the stage's platform applications (named <app>-<stage>-*, created
        # by ops, docs/operations.md) and the endpoints SNS creates under them.
        app = f"{st.app_name}-{st.name}-*"
        resources = sorted({f"arn:aws:sns:*:*:app/*/{app}" if a == "sns:CreatePlatformEndpoint"
                            else f"arn:aws:sns:*:*:endpoint/*/{app}/*" for a in acts})
        sid = "PushEndpoints"
    elif key == "@connections":
        acts = ["execute-api:ManageConnections"]
        resources = [f"arn:aws:execute-api:*:*:*/{st.api_stage}/{m}/@connections/*" for m in WS_METHODS]
        sid = "ManageConnections"
    else:
        table, _, index = name.partition("/")
        arn = f"arn:aws:dynamodb:*:*:table/{getattr(target, table + '_table')}"
        resources = [f"{arn}/index/*" if index else arn]
        sid = f"{_camel(table)}Table{'Indexes' if index else ''}"
    return {"Sid": sid, "Effect": "Allow", "Action": acts, "Resource": resources}


def _event_source_statements(stage_name: str, function: str) -> list[dict[str, Any]]:
    """What Lambda's pollers need, under the consumer's role, to read its queue."""
    st = stage(stage_name)
    target = _stage_settings(stage_name)
    out = []
    for lid, imported in st.sqs_consumers:
        if lid == logical_id(function):
            name = getattr(target, _setting(imported, "_queue"))
            out.append({"Sid": "EventSource", "Effect": "Allow",
                        "Action": ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
                        "Resource": [f"arn:aws:sqs:*:*:{name}"]})
    return out


def render_function_policy(stage_name: str, function: str) -> dict[str, Any]:
    """One function's role: exactly what ``FUNCTION_ACCESS`` lists for it."""
    st = stage(stage_name)
    statements = [_logs_statement(st, function)]
    for key, actions in sorted(FUNCTION_ACCESS.get(function, {}).items()):
        statements.append(_resource_statement(stage_name, key, actions))
    statements += _event_source_statements(stage_name, function)
    return {"Version": "2012-10-17", "Statement": statements}


ROLES_BEGIN, ROLES_END = "<!-- roles:begin (tools/render_infra.py) -->", "<!-- roles:end -->"


def roles_table() -> str:
    """docs/operations.md's table of what each function's role allows (from FUNCTION_ACCESS)."""
    st = stage("dev")
    consumers = {lid: imported for lid, imported in st.sqs_consumers}
    rows = ["| function | DynamoDB (table: actions) | SQS | files bucket | @connections |", "|---|---|---|---|---|"]
    for fn in st.function_names:
        access = FUNCTION_ACCESS.get(fn, {})
        tables = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(access.items())
                           if ":" not in k and not k.startswith("@"))
        queues = [f"{k.split(':', 1)[1]}: {', '.join(v)}" for k, v in sorted(access.items()) if k.startswith("queue:")]
        consumed = consumers.get(logical_id(fn))
        if consumed:
            queues.append(f"{_setting(consumed, '_queue')[:-len('_queue')]}: receive, delete (event source)")
        files = ", ".join(access.get("bucket:files", [])) or "—"
        posts = "yes" if "@connections" in access else "—"
        rows.append(f"| `{fn}` | {tables or '—'} | {'; '.join(queues) or '—'} | {files} | {posts} |")
    return "\n".join(rows) + "\n"


def operations_doc(text: str) -> str:
    """docs/operations.md with the roles table between its markers replaced."""
    head, _, rest = text.partition(ROLES_BEGIN)
    _, _, tail = rest.partition(ROLES_END)
    return f"{head}{ROLES_BEGIN}\n{roles_table()}{ROLES_END}{tail}"


def render_policy(stage_name: str) -> dict[str, Any]:
    """The stage's default policy: logs only.  Every function has its own (``render_function_policy``),
    so a function added without one can do nothing but log (test_infra fails on it first)."""
    return {"Version": "2012-10-17", "Statement": [_logs_statement(stage(stage_name), None)]}


# --- files -------------------------------------------------------------------

def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def outputs(stage_name: str) -> dict[Path, str]:
    """Checked-in path -> freshly rendered text, for one stage."""
    return {
        ROOT / "infra" / f"resources-{stage_name}.json": dumps(render_resources(stage_name)),
        ROOT / ".chalice" / stage(stage_name).policy_file: dumps(render_policy(stage_name)),
        **{ROOT / ".chalice" / function_policy_file(stage_name, fn): dumps(render_function_policy(stage_name, fn))
           for fn in stage(stage_name).function_names},
        **({DOCS_OPERATIONS: operations_doc(DOCS_OPERATIONS.read_text())} if stage_name == "dev" else {}),
    }


def check_alarms(template_path: Path) -> list[str]:
    """Problems with a packaged template: a Lambda function without Errors and Throttles alarms."""
    resources = json.loads(template_path.read_text())["Resources"]
    covered: dict[str, set[str]] = {}
    for res in resources.values():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::CloudWatch::Alarm" and props.get("Namespace") == "AWS/Lambda":
            for dim in props.get("Dimensions", []):
                if dim["Name"] == "FunctionName" and isinstance(dim["Value"], dict):
                    covered.setdefault(dim["Value"].get("Ref"), set()).add(props["MetricName"])
    return [f"{lid}: no {m} alarm (run `make infra`)"
            for lid, res in resources.items()
            if res.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
            for m in ("Errors", "Throttles") if m not in covered.get(lid, set())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render_infra", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in files are stale")
    parser.add_argument("--check-alarms", metavar="SAM_JSON", type=Path,
                        help="exit 1 if a function in this packaged template has no alarms")
    args = parser.parse_args(argv)
    if args.check_alarms:
        problems = check_alarms(args.check_alarms)
        for p in problems:
            print(f"render_infra: {p}", file=sys.stderr)
        if not problems:
            print(f"render_infra: alarms cover every function in {args.check_alarms}")
        return 1 if problems else 0
    stale = []
    for path, text in outputs(args.stage).items():
        rel = path.relative_to(ROOT)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(rel))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}")
    if stale:
        print(f"render_infra: stale for stage {args.stage}: {', '.join(stale)}; run `make infra`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
