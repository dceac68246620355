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
STALE = "is stale against chalicelib/models.py or .chalice/config.json: run `make infra` and commit the result"


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


@pytest.mark.parametrize("stage", STAGES)
def test_policy_is_least_privilege(stage):
    policy = render_infra.render_policy(stage)
    env = _stage_env(stage)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    tables = by_sid["Tables"]
    assert "dynamodb:Scan" not in tables["Action"] and "dynamodb:TransactWriteItems" not in tables["Action"]
    assert all(a.startswith("dynamodb:") and "*" not in a for a in tables["Action"])
    expected = {arn for name in _tables(render_infra.render_resources(stage))
                for arn in (f"arn:aws:dynamodb:*:*:table/{name}", f"arn:aws:dynamodb:*:*:table/{name}/index/*")}
    assert set(tables["Resource"]) == expected
    api_stage = render_infra.stage(stage).api_stage
    assert sorted(by_sid["ManageConnections"]["Resource"]) == sorted(
        f"arn:aws:execute-api:*:*:*/{api_stage}/{m}/@connections/*" for m in ("POST", "GET", "DELETE"))
    assert by_sid["FilesObjects"]["Resource"] == f"arn:aws:s3:::{env['FILES_BUCKET']}/*"
    queue_arns = {f"arn:aws:sqs:*:*:{name}" for name in render_infra.queues(stage).values()}
    assert set(by_sid.get("Queues", {}).get("Resource", [])) == queue_arns


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
    actions = {a for s in render_infra.render_policy(stage)["Statement"] for a in s["Action"]}
    assert {"s3:PutObjectLegalHold", "s3:GetObjectLegalHold"} <= actions
    assert "s3:BypassGovernanceRetention" not in actions and "s3:PutObjectRetention" not in actions
    originals = template["Resources"]["HeldOriginalTable"]["Properties"]
    assert originals["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [ix["IndexName"] for ix in originals["GlobalSecondaryIndexes"]] == ["by_sender"]
