"""The deployment templates and IAM policies match the models (tools/render_infra.py). Pure logic."""
import inspect
import json
from pathlib import Path

import pytest
from pynamodb.indexes import GlobalSecondaryIndex, LocalSecondaryIndex

from chalicelib import models
from tools import render_infra

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")
STALE = "is stale against chalicelib/models/ or .chalice/config.json: run `make infra` and commit the result"


def _stage_env(stage):
    cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {**cfg.get("environment_variables", {}), **cfg["stages"][stage]["environment_variables"]}


def _keys(attrs):
    return {(a.attr_name, "HASH" if a.is_hash_key else "RANGE") for a in attrs if a.is_hash_key or a.is_range_key}


def _indexes(model, kind):
    return {ix.Meta.index_name: ix for _, ix in inspect.getmembers(model, lambda v: isinstance(v, kind))}


@pytest.fixture(scope="module", params=STAGES)
def rendered(request):
    return request.param, render_infra.render_resources(request.param)


def _tables(template):
    return {r["Properties"]["TableName"]: r for r in template["Resources"].values()
            if r.get("Type") == "AWS::DynamoDB::Table"}


def test_every_model_has_its_table(rendered):
    stage, template = rendered
    tables = _tables(template)
    names = set(_stage_env(stage).values())
    assert len(tables) == len(models.ALL_MODELS)
    assert set(tables) <= names, "table names must come from the stage's environment variables"
    by_logical = {lid: r for lid, r in template["Resources"].items() if r.get("Type") == "AWS::DynamoDB::Table"}
    for model in models.ALL_MODELS:
        props = by_logical[f"{model.__name__}Table"]["Properties"]
        assert {(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]} == _keys(model.get_attributes().values())
        assert props["KeySchema"][0]["KeyType"] == "HASH"
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        for kind, prop in ((GlobalSecondaryIndex, "GlobalSecondaryIndexes"), (LocalSecondaryIndex, "LocalSecondaryIndexes")):
            expected = _indexes(model, kind)
            got = {ix["IndexName"]: ix for ix in props.get(prop, [])}
            assert set(got) == set(expected), (model.__name__, prop)
            for name, ix in expected.items():
                assert {(k["AttributeName"], k["KeyType"]) for k in got[name]["KeySchema"]} == \
                    _keys(ix.Meta.attributes.values())
                assert got[name]["Projection"]["ProjectionType"] == ix.Meta.projection.projection_type
                for a in ix.Meta.attributes.values():
                    if a.is_hash_key or a.is_range_key:
                        assert types[a.attr_name] == a.attr_type
        for a in model.get_attributes().values():
            if a.is_hash_key or a.is_range_key:
                assert types[a.attr_name] == a.attr_type
        ttl = models.TTL_ATTRIBUTES.get(model)
        if ttl:
            assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props


def test_tables_are_prod_safe(rendered):
    _, template = rendered
    for lid, res in template["Resources"].items():
        if res.get("Type") != "AWS::DynamoDB::Table":
            continue
        props, name = res["Properties"], res["Properties"]["TableName"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert props["DeletionProtectionEnabled"] is True, name
        assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Retain", name
        assert {"Value": {"Ref": lid}} in template["Outputs"].values(), f"no output for {name}"


def test_files_bucket_is_private_encrypted_and_tls_only(rendered):
    stage, template = rendered
    bucket = template["Resources"]["FilesBucket"]
    props = bucket["Properties"]
    assert props["BucketName"] == _stage_env(stage)["FILES_BUCKET"]
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in
               ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("aws:kms", "AES256")
    assert any(r.get("Prefix") == "quarantine/" and r.get("ExpirationInDays")
               for r in props["LifecycleConfiguration"]["Rules"])
    assert bucket["DeletionPolicy"] == "Retain"
    (deny,) = template["Resources"]["FilesBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queues_have_dead_letters_and_consumers_wait_for_them(rendered):
    stage, template = rendered
    res = template["Resources"]
    for lid, name in render_infra.queues(stage).items():
        props = res[lid]["Properties"]
        assert name in _stage_env(stage).values()
        assert props["QueueName"] == name and props["SqsManagedSseEnabled"] is True
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{lid}DeadLetter", "Arn"]}
        assert props["VisibilityTimeout"] >= render_infra.stage(stage).lambda_timeout
    for fn, _queue in render_infra.stage(stage).sqs_consumers:
        assert set(res[fn]["DependsOn"]) <= set(render_infra.queues(stage))


def test_every_function_knows_the_connections_endpoint(rendered):
    """REST handlers and queue consumers never see a WebSocket event to derive it from."""
    stage, template = rendered
    for fn in render_infra.stage(stage).functions:
        url = template["Resources"][fn]["Properties"]["Environment"]["Variables"]["WS_MANAGEMENT_ENDPOINT"]
        assert url["Fn::Sub"].startswith("https://${WebsocketAPI}.")
        assert url["Fn::Sub"].endswith("/" + render_infra.stage(stage).api_stage)


def test_push_applications_are_template_parameters_within_the_sns_permissions(rendered):
    """Ops set the platform application ARNs at deploy time (docs/operations.md); each parameter's
    pattern keeps it to its platform and to the names the functions' SNS statements allow."""
    import re

    stage, template = rendered
    apps = json.loads(_stage_env(stage)["PUSH_APPLICATIONS"])
    params = template["Parameters"]
    assert len(params) == len(apps)
    allowed = {r for fn in render_infra.stage(stage).function_names
               for st in render_infra.render_function_policy(stage, fn)["Statement"] if st["Sid"] == "PushEndpoints"
               for r in st["Resource"] if ":app/" in r}
    assert allowed == {f"arn:aws:sns:*:*:app/*/enterprise-chat-{stage}-*"}
    for lid, param in params.items():
        assert re.fullmatch(param["AllowedPattern"], param["Default"]) and param["Default"] in apps.values()
        assert not re.fullmatch(param["AllowedPattern"], param["Default"].replace(f"-{stage}-", "-other-"))
    for fn in render_infra.stage(stage).functions:
        env = template["Resources"][fn]["Properties"]["Environment"]["Variables"]["PUSH_APPLICATIONS"]["Fn::Sub"]
        assert set(json.loads(re.sub(r"\$\{(\w+)\}", lambda m: params[m.group(1)]["Default"], env)).items()) \
            == set(apps.items())


def test_alarms_cover_functions_tables_and_apis(rendered):
    stage, template = rendered
    alarms = [r["Properties"] for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    lambda_alarms = {(a["MetricName"], a["Dimensions"][0]["Value"]["Ref"]) for a in alarms
                     if a.get("Namespace") == "AWS/Lambda"}
    for fn in render_infra.stage(stage).functions:
        assert {("Errors", fn), ("Throttles", fn)} <= lambda_alarms
    assert {"APIHandler", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect"} <= \
        set(render_infra.stage(stage).functions)
    throttle_tables = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
                       for a in alarms for m in a.get("Metrics", [])
                       if m.get("MetricStat", {}).get("Metric", {}).get("Namespace") == "AWS/DynamoDB"}
    assert throttle_tables == {f"{m.__name__}Table" for m in models.ALL_MODELS}
    assert {a.get("MetricName") for a in alarms} >= {"5XXError", "ExecutionError"}
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


def test_app_metric_alarms_watch_series_the_app_emits(rendered):
    """Alarms on the EMF counters name metrics the code counts, under the functions' real names and
    the stage's own dimension value: a renamed function or counter would otherwise leave an alarm
    watching a series that never exists (and never fires)."""
    import re

    stage, template = rendered
    source = "\n".join(p.read_text() for p in (ROOT / "chalicelib").rglob("*.py")) + (ROOT / "app.py").read_text()
    counted = set(re.findall(r'metrics\.count\("(\w+)"', source)) | set(re.findall(r'count\("(\w+)"', source))
    from chalicelib import file_events  # the one entry point that names itself through a constant

    flushed = set(re.findall(r'metrics\.flushed\("(\w+)"\)', source)) | {file_events.FUNCTION_NAME}
    assert set(render_infra.stage(stage).function_names) == flushed
    insights = re.compile(r'^SELECT SUM\("(\w+)"\) FROM SCHEMA\("EnterpriseChat", function, stage\) '
                          r"WHERE stage = '(\w+)'$")
    app = [r["Properties"] for r in template["Resources"].values()
           if r.get("Type") == "AWS::CloudWatch::Alarm"
           and any(m.get("MetricStat", {}).get("Metric", {}).get("Namespace") == "EnterpriseChat"
                   or insights.match(m.get("Expression", "")) for m in r["Properties"].get("Metrics", []))]
    assert {a["AlarmName"].rsplit(f"-{stage}-", 1)[1] for a in app} == \
        {name for name, *_ in render_infra.APP_ALARMS} | {"gone-ratio"}
    for alarm in app:
        for query in alarm["Metrics"]:
            summed = insights.match(query.get("Expression", ""))
            if summed:  # a sum over every function of the stage
                assert summed.group(1) in counted and summed.group(2) == _stage_env(stage)["CHAT_STAGE"]
                continue
            if "MetricStat" not in query:
                continue
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            assert metric["MetricName"] in counted, metric["MetricName"]
            assert dims == {"stage": _stage_env(stage)["CHAT_STAGE"], "function": dims["function"]}
            assert dims["function"] in flushed
        assert len(alarm["Metrics"]) <= 10 and sum(bool(q["ReturnData"]) for q in alarm["Metrics"]) == 1


def _function_policies(stage: str) -> dict[str, dict]:
    return {fn: render_infra.render_function_policy(stage, fn) for fn in render_infra.stage(stage).function_names}


def _granted(policy: dict) -> set[tuple[str, str]]:
    return {(a, r) for s in policy["Statement"] for a in s["Action"]
            for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_has_a_role_of_its_own(stage):
    """Chalice gives each function with its own ``iam_policy_file`` its own role; the stage default is logs only."""
    st = render_infra.stage(stage)
    configured = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]["lambda_functions"]
    for fn in st.function_names:
        assert configured.get(fn, {}).get("iam_policy_file") == render_infra.function_policy_file(stage, fn), fn
    assert set(render_infra.FUNCTION_ACCESS) <= set(st.function_names), "FUNCTION_ACCESS names a function app.py lacks"
    default = render_infra.render_policy(stage)
    assert {a for s in default["Statement"] for a in s["Action"]} == {
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}


@pytest.mark.parametrize("stage", STAGES)
def test_function_policies_are_least_privilege(stage):
    st = render_infra.stage(stage)
    env = _stage_env(stage)
    for fn, policy in _function_policies(stage).items():
        assert all(s["Effect"] == "Allow" for s in policy["Statement"]), fn
        for action, resource in _granted(policy):
            assert "*" not in action and action != "dynamodb:Scan", (fn, action)
            assert not action.startswith("dynamodb:") or "TransactWriteItems" not in action, (fn, action)
            assert resource != "*" and not resource.endswith(":*:*:*"), (fn, resource)
            if action.startswith("logs:"):
                assert f"/aws/lambda/{st.app_name}-{st.name}-{render_infra.logical_id(fn)}-*" in resource, (fn, resource)
            if action == "execute-api:ManageConnections":
                assert f"/{st.api_stage}/" in resource
            if action.startswith("s3:"):
                assert resource.startswith(f"arn:aws:s3:::{env['FILES_BUCKET']}"), (fn, resource)
    # who may do what, in broad strokes: the front functions never touch compliance exports, and
    # only the functions that post to sockets may manage connections
    grants = {fn: _granted(p) for fn, p in _function_policies(stage).items()}
    exports = f":table/{env['EXPORTS_TABLE']}"
    for fn in ("websocket_connect", "websocket_disconnect", "ws_authorizer", "deliver", "presence_flush"):
        assert not any(exports in r for _, r in grants[fn]), fn
    assert not any(a == "execute-api:ManageConnections" for a, _ in grants["ws_authorizer"])
    assert not any(a.startswith("s3:") for a, _ in grants["ws_authorizer"] | grants["deliver"])


@pytest.mark.parametrize("stage", STAGES)
def test_no_function_may_rewrite_the_audit_log(stage):
    """The audit log is append-only: PutItem for those who write it, reads for those who show it, nothing else."""
    audit = f"arn:aws:dynamodb:*:*:table/{_stage_env(stage)['AUDIT_TABLE']}"
    for fn, policy in _function_policies(stage).items():
        on_audit = {a for a, r in _granted(policy) if r == audit or r.startswith(audit + "/")}
        assert on_audit <= {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}, (
            fn, sorted(on_audit))


@pytest.mark.parametrize("stage", STAGES)
def test_sqs_consumers_may_read_their_own_queue_only(stage):
    st = render_infra.stage(stage)
    queues = render_infra.queues(stage)
    for fn, policy in _function_policies(stage).items():
        receive = {r for a, r in _granted(policy) if a == "sqs:ReceiveMessage"}
        consumed = {f"arn:aws:sqs:*:*:{render_infra._stage_settings(stage)._asdict()[render_infra._setting(q, '_queue')]}"
                    for lid, q in st.sqs_consumers if lid == render_infra.logical_id(fn)}
        assert receive == consumed, fn
        assert all(r.split(":")[-1] in queues.values() for a, r in _granted(policy) if a.startswith("sqs:"))


def test_stages_cannot_reach_each_others_connections():
    """The WebSocket stage is in the execute-api ARN (api id is a wildcard): it must differ per stage."""
    assert render_infra.stage("dev").api_stage != render_infra.stage("prod").api_stage


@pytest.mark.parametrize("stage", STAGES)
def test_checked_in_files_are_current(stage):
    for path, text in render_infra.outputs(stage).items():
        rel = path.relative_to(ROOT)
        assert path.exists() and path.read_text() == text, f"{rel} {STALE}"


def test_files_bucket_notifies_the_upload_function(rendered):
    """ObjectCreated -> file_uploaded, declared on the bucket (Chalice cannot package @app.on_s3_event)."""
    from chalicelib import file_events

    stage, template = rendered
    res = template["Resources"]
    bucket = res["FilesBucket"]
    (target,) = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert target == {"Event": "s3:ObjectCreated:*", "Function": {"Fn::GetAtt": ["FileUploaded", "Arn"]}}
    assert file_events.EVENTS == ("s3:ObjectCreated:*",) and "FileUploaded" in render_infra.stage(stage).functions
    permission = res["FilesBucketInvokePermission"]["Properties"]
    assert bucket["DependsOn"] == ["FilesBucketInvokePermission"]  # S3 validates the target when configured
    assert permission["Principal"] == "s3.amazonaws.com" and permission["FunctionName"] == {"Ref": "FileUploaded"}
    assert permission["SourceArn"] == f"arn:aws:s3:::{_stage_env(stage)['FILES_BUCKET']}"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


@pytest.mark.parametrize("stage", STAGES)
def test_queue_visibility_covers_its_consumers_per_function_timeout(stage):
    """Per-function timeouts (.chalice/config.json lambda_functions) reach the queues: visibility >= 6x the consumer's."""
    st = render_infra.stage(stage)
    template = render_infra.render_resources(stage)
    assert st.timeout_of("FileScanRetry") == 120 and st.timeout_of("FileUploaded") == 120
    assert st.timeout_of("APIHandler") <= 29, "API Gateway gives up after 29 s"
    assert st.timeout_of("WebsocketConnect") <= 29
    assert st.sqs_consumers
    for fn, imported in st.sqs_consumers:
        lid = render_infra._camel(render_infra._setting(imported, "_queue"))
        assert template["Resources"][lid]["Properties"]["VisibilityTimeout"] >= 6 * st.timeout_of(fn), (fn, lid)


def test_files_bucket_has_object_lock_for_legal_holds(rendered):
    """A legal hold puts an S3 Object Lock legal hold on held file versions (docs/compliance.md): the bucket
    has Object Lock (no default retention: nothing else is locked), the functions may set and read legal
    holds, and never bypass a lock."""
    stage, template = rendered
    props = template["Resources"]["FilesBucket"]["Properties"]
    assert props["ObjectLockEnabled"] is True and props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}  # no "Rule": no default lock
    actions = {a for p in _function_policies(stage).values() for a, _ in _granted(p)}
    assert "s3:PutObjectLegalHold" in actions
    assert "s3:BypassGovernanceRetention" not in actions and "s3:PutObjectRetention" not in actions
    originals = template["Resources"]["HeldOriginalTable"]["Properties"]
    assert originals["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [ix["IndexName"] for ix in originals["GlobalSecondaryIndexes"]] == ["by_sender"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_tenant_throttled_alarm_watches_what_the_code_writes(stage):
    """One multi-time-series alarm over TenantThrottled by tenant (chalicelib/metrics.py writes it with the
    dimensions stage and tenant), the stage's own value, for TENANT_THROTTLED_PERIODS periods."""
    from chalicelib import metrics

    alarm = render_infra.render_resources(stage)["Resources"]["AppTenantThrottledAlarm"]["Properties"]
    (query,) = alarm["Metrics"]
    assert query["Expression"] == (f'SELECT SUM("{metrics.TENANT_THROTTLED}") FROM SCHEMA("EnterpriseChat", stage, '
                                   f"tenant) WHERE stage = '{_stage_env(stage)['CHAT_STAGE']}' GROUP BY tenant "
                                   "ORDER BY SUM() DESC")
    doc, = metrics.tenant_lines({"acme": 1}, stage="x", function="deliver", timestamp_ms=0)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["stage", "tenant"]]
    assert alarm["EvaluationPeriods"] == render_infra.TENANT_THROTTLED_PERIODS and alarm["Threshold"] == 1
