"""Routes only: each handler hands its event to chalicelib and returns the reply.

Every function imports only what it runs: a handler imports its chalicelib
module inside its body, once per container, on its first event.  So the
authorizer never loads the message path, the delivery workers never load
REST or SCIM, and a REST route loads its own service only
(``bench/cold_start.py`` measures each function; ``tests/unit/test_imports.py``
keeps the boundaries).
"""
import importlib

from chalice import Chalice, Response

from chalicelib import logs
from chalicelib.config import settings
from chalicelib.management import ManagementSession

app = Chalice(app_name="enterprise-chat")
app.experimental_feature_flags.update(["WEBSOCKETS"])
# Chalice's own websocket_api.send goes through this session to the configured
# management endpoint (see chalicelib/runtime.py).
app.websocket_api.session = ManagementSession()
logs.setup()


# The $connect route's Lambda REQUEST authorizer (infra/ attaches it; devstack/gateway.py runs it
# locally): its context reaches every later event of the connection in requestContext.authorizer.
@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event, context):
    from chalicelib import authorizer

    return authorizer.authorize(event)


@app.on_ws_connect()
def ws_connect(event):
    from chalicelib import ws_connect

    return ws_connect.on_connect(event.to_dict())


@app.on_ws_message()
def ws_message(event):
    from chalicelib import ws_api

    return ws_api.on_message(event.to_dict())


@app.on_ws_disconnect()
def ws_disconnect(event):
    from chalicelib import ws_connect

    return ws_connect.on_disconnect(event.to_dict())


@app.on_sqs_message(queue=settings().presence_queue, batch_size=10)
def presence_flush(event):
    from chalicelib import presence_events

    presence_events.on_records([record.to_dict() for record in event])


# Delivery workers: shards of large fan-outs (chalicelib/delivery_worker.py, docs/delivery.md).
# A few shards per invocation; the queue's backlog scales the number of invocations, up to 100 at
# once: 100 x 32 posts in flight is far above the account's @connections rate (10,000/s by
# default), which is the real bound, and leaves the account's other functions their concurrency.
# The reply is a partial batch response (infra/ sets ReportBatchItemFailures on the event source).
@app.on_sqs_message(queue=settings().delivery_queue, batch_size=4, maximum_concurrency=100)
def deliver(event):
    from chalicelib import delivery_worker

    return delivery_worker.on_records([record.to_dict() for record in event])


@app.on_sqs_message(queue=settings().files_queue, batch_size=10)
def file_scan_retry(event):
    from chalicelib import file_events

    file_events.on_scan_retry([record.to_dict() for record in event])


# S3 ObjectCreated in the files bucket. A plain function, not @app.on_s3_event (which
# `chalice package` refuses): the notification is declared with the bucket, see chalicelib/file_events.py.
@app.lambda_function(name="file_uploaded")  # file_events.FUNCTION_NAME
def file_uploaded(event, context):
    from chalicelib import file_events

    file_events.on_s3_event(event)


# GuardDuty Malware Protection for S3's verdict on an uploaded object (SCANNER=guardduty): an
# EventBridge rule on "GuardDuty Malware Protection Object Scan Result" for the files bucket, declared
# with the plan in infra/ (tools/render_infra.py). Locally, file_uploaded's own engine builds the same
# event and hands it to the same decision (chalicelib/guardduty.py).
@app.lambda_function(name="file_scan_result")  # file_events.SCAN_RESULT_FUNCTION
def file_scan_result(event, context):
    from chalicelib import file_events

    file_events.on_scan_result(event)


@app.route("/health", methods=["GET"])
def health():
    return {"status": "ok"}


# Public: which OIDC issuer signs in the users of an email domain (a browser's first step of sign-in).
@app.route("/auth/discovery", methods=["GET"])
def auth_discovery():
    from chalicelib import discovery

    code, body, headers = discovery.handle(app.current_request.query_params)
    return Response(body=body, status_code=code, headers=headers)


def _rest(action, service, path_fields=None, query_names=(), status=200):
    """Hand the request to ``chalicelib.rest_api`` for ``service`` ("module.function" under
    ``chalicelib.services``), that module imported on the route's first request."""
    from chalicelib import rest_api

    module, _, name = service.rpartition(".")
    fn = getattr(importlib.import_module(f"chalicelib.services.{module}"), name)
    req = app.current_request
    context = dict(req.context or {})
    context.setdefault("requestId", getattr(app.lambda_context, "aws_request_id", None))
    code, body, headers = rest_api.handle(req.headers, req.raw_body, req.query_params, action, fn,
                                          path_fields or {}, query_names, status, context)
    return Response(body=body, status_code=code, headers=headers)


@app.route("/users", methods=["GET"])
def search_users():
    return _rest("users.search", "people.search_users", query_names=("q", "limit", "cursor"))


@app.route("/push/devices", methods=["POST"], content_types=["application/json"])
def register_push_device():
    return _rest("push.register", "push.register")


@app.route("/push/devices/{device_id}", methods=["DELETE"])
def unregister_push_device(device_id):
    return _rest("push.unregister", "push.unregister", {"deviceId": device_id})


@app.route("/push/preferences", methods=["GET"])
def get_push_preferences():
    return _rest("push.preferences.get", "push.get_preferences")


@app.route("/push/preferences", methods=["PUT"], content_types=["application/json"])
def set_push_preferences():
    return _rest("push.preferences.set", "push.set_preferences")


@app.route("/conversations/{conversation_id}/push", methods=["PUT"], content_types=["application/json"])
def set_conversation_push(conversation_id):
    return _rest("push.conversation.set", "push.set_conversation", {"conversationId": conversation_id})


@app.route("/conversations", methods=["GET"])
def list_conversations():
    return _rest("conversation.list", "conversations.inbox", query_names=("limit", "cursor"))


@app.route("/conversations/{conversation_id}", methods=["GET"])
def get_conversation(conversation_id):
    return _rest("conversation.get", "conversations.get", {"conversationId": conversation_id})


@app.route("/conversations/{conversation_id}/messages", methods=["GET"])
def list_messages(conversation_id):
    return _rest("history", "messages.history", {"conversationId": conversation_id},
                 query_names=("beforeSeq", "limit"))


@app.route("/conversations/{conversation_id}/messages", methods=["POST"], content_types=["application/json"])
def post_message(conversation_id):
    return _rest("message.send", "messages.send", {"conversationId": conversation_id}, status=201)


@app.route("/conversations/{conversation_id}/read", methods=["POST"], content_types=["application/json"])
def mark_read(conversation_id):
    return _rest("read", "messages.read", {"conversationId": conversation_id})


@app.route("/conversations/{conversation_id}/files", methods=["POST"], content_types=["application/json"])
def request_file_upload(conversation_id):
    return _rest("file.upload.request", "files.request_upload", {"conversationId": conversation_id}, status=201)


@app.route("/files/{file_id}/download", methods=["GET"])
def request_file_download(file_id):
    return _rest("file.download.request", "files.request_download", {"fileId": file_id})


# Ask the experts (docs/experts.md): a member asks a topic's pool without knowing who is in it.
@app.route("/experts/questions", methods=["POST"], content_types=["application/json"])
def ask_experts():
    return _rest("expert.ask", "experts.ask", status=201)


@app.route("/experts/questions/{question_id}", methods=["DELETE"])
def cancel_expert_question(question_id):
    return _rest("expert.cancel", "experts.cancel", {"questionId": question_id})


# The asker keeps the expert's answer as the topic's Q&A entry; the company's entries are searched.
@app.route("/experts/questions/{question_id}/answered", methods=["POST"], content_types=["application/json"])
def mark_expert_question_answered(question_id):
    return _rest("expert.answered", "experts.answered", {"questionId": question_id})


@app.route("/experts/answers", methods=["GET"])
def search_expert_answers():
    return _rest("expert.search", "experts.search", query_names=("q", "topicId", "limit"))


# The topics a member may ask: the company's and those connected companies share with it.
@app.route("/experts/topics", methods=["GET"])
def list_expert_topics():
    return _rest("expert.topics", "experts.list_member_topics")


# A topic's waiting questions, for the people of its pool.
@app.route("/experts/topics/{topic_id}/queue", methods=["GET"])
def expert_topic_queue(topic_id):
    return _rest("expert.queue", "experts.queue", {"topicId": topic_id}, query_names=("limit",))


# --- tenant admins ---------------------------------------------------------------

@app.route("/admin/connections", methods=["GET"])
def admin_list_connections():
    return _rest("admin.connections.list", "admin.list_connections")


@app.route("/admin/connections", methods=["POST"])
def admin_invite():
    return _rest("admin.connections.invite", "admin.invite", status=201)


@app.route("/admin/connections/{peer}", methods=["PUT"])
def admin_connection_settings(peer):
    return _rest("admin.connections.settings", "admin.connection_settings", {"peerTenantId": peer})


@app.route("/admin/connections/{peer}/accept", methods=["POST"])
def admin_accept(peer):
    return _rest("admin.connections.accept", "admin.accept", {"peerTenantId": peer})


@app.route("/admin/connections/{peer}/decline", methods=["POST"])
def admin_decline(peer):
    return _rest("admin.connections.decline", "admin.decline", {"peerTenantId": peer})


@app.route("/admin/connections/{peer}/revoke", methods=["POST"])
def admin_revoke(peer):
    return _rest("admin.connections.revoke", "admin.revoke", {"peerTenantId": peer})


@app.route("/admin/policy", methods=["GET"])
def admin_get_policy():
    return _rest("admin.policy.get", "admin.get_policy")


@app.route("/admin/policy", methods=["PUT"])
def admin_set_policy():
    return _rest("admin.policy.set", "admin.set_policy")


@app.route("/admin/push", methods=["GET"])
def admin_get_push_policy():
    return _rest("admin.push.get", "admin.get_push_policy")


@app.route("/admin/push", methods=["PUT"], content_types=["application/json"])
def admin_set_push_policy():
    return _rest("admin.push.set", "admin.set_push_policy")


@app.route("/admin/users", methods=["GET"])
def admin_list_users():
    return _rest("admin.users.list", "admin.list_users", query_names=("limit", "cursor"))


@app.route("/admin/users/{user_id}/roles", methods=["PUT"])
def admin_set_roles(user_id):
    return _rest("admin.users.roles", "admin.set_roles", {"userId": user_id})


# Expert topics (docs/experts.md): admins define who answers what, in tiers.
@app.route("/admin/experts/topics", methods=["GET"])
def admin_list_expert_topics():
    return _rest("admin.experts.topics.list", "experts.list_topics")


@app.route("/admin/experts/topics", methods=["POST"], content_types=["application/json"])
def admin_create_expert_topic():
    return _rest("admin.experts.topics.create", "experts.create_topic", status=201)


@app.route("/admin/experts/topics/{topic_id}", methods=["PUT"], content_types=["application/json"])
def admin_update_expert_topic(topic_id):
    return _rest("admin.experts.topics.update", "experts.update_topic", {"topicId": topic_id})


@app.route("/admin/experts/topics/{topic_id}", methods=["DELETE"])
def admin_delete_expert_topic(topic_id):
    return _rest("admin.experts.topics.delete", "experts.delete_topic", {"topicId": topic_id})


# Usage each company can see (chalicelib/usage.py; docs/operations.md "Usage"): JSON or CSV.
@app.route("/admin/usage", methods=["GET"])
def admin_usage():
    return _rest("admin.usage.get", "usage_report.get_usage", query_names=("from", "to", "format"))


# Sharing a topic with a connected company needs both admins: the host offers, the partner accepts.
@app.route("/admin/experts/topics/{topic_id}/sharing", methods=["PUT"], content_types=["application/json"])
def admin_share_expert_topic(topic_id):
    return _rest("admin.experts.topics.share", "experts.share_topic", {"topicId": topic_id})


@app.route("/admin/experts/shared/{peer}/{topic_id}", methods=["PUT"], content_types=["application/json"])
def admin_accept_shared_expert_topic(peer, topic_id):
    return _rest("admin.experts.shared.accept", "experts.accept_shared", {"peerTenantId": peer, "topicId": topic_id})


@app.route("/admin/audit", methods=["GET"])
def admin_audit():
    return _rest("admin.audit.list", "admin.read_audit",
                 query_names=("from", "to", "actor", "actionName", "limit", "cursor"))


# --- compliance: screening -----------------------------------------------------------
# (DLP rules, managed by admins; the entries they caught, read by reviewers; docs/compliance.md
# "Screening (DLP)")


@app.route("/admin/dlp/rules", methods=["GET"])
def admin_get_dlp_rules():
    return _rest("admin.dlp.rules.get", "screening_admin.get_rules")


@app.route("/admin/dlp/rules", methods=["PUT"])
def admin_set_dlp_rules():
    return _rest("admin.dlp.rules.set", "screening_admin.set_rules")


@app.route("/admin/dlp/flags", methods=["GET"])
def admin_list_dlp_flags():
    return _rest("admin.dlp.flags.list", "screening_admin.list_flags", query_names=("from", "to", "limit", "cursor"))


# --- compliance: the review queue (reviewers only; docs/compliance.md "Review queue") -------
# Every route requires the reviewer role and is audited, reads included (chalicelib/services/review.py).

_REVIEW_FILTERS = ("state", "kind", "conversationId", "userId", "userTenantId", "from", "to", "limit", "cursor")


@app.route("/admin/review/items", methods=["GET"])
def admin_review_list():
    return _rest("admin.review.list", "review.list_items", query_names=_REVIEW_FILTERS)


@app.route("/admin/review/items/{item_id}", methods=["GET"])
def admin_review_get(item_id):
    return _rest("admin.review.get", "review.get_item", {"itemId": item_id})


@app.route("/admin/review/items/{item_id}/claim", methods=["POST"])
def admin_review_claim(item_id):
    return _rest("admin.review.claim", "review.claim", {"itemId": item_id})


@app.route("/admin/review/items/{item_id}/release", methods=["POST"])
def admin_review_release(item_id):
    return _rest("admin.review.release", "review.release", {"itemId": item_id})


@app.route("/admin/review/items/{item_id}/resolve", methods=["POST"])
def admin_review_resolve(item_id):
    return _rest("admin.review.resolve", "review.resolve", {"itemId": item_id})


@app.route("/admin/review/items/{item_id}/case", methods=["GET"])
def admin_review_case(item_id):
    return _rest("admin.review.case", "review.export_case", {"itemId": item_id}, query_names=("context",))


@app.route("/admin/review/cases", methods=["GET"])
def admin_review_cases():
    return _rest("admin.review.cases", "review.export_cases",
                 query_names=("conversationId", "userId", "userTenantId", "state", "kind", "from", "to", "limit",
                              "cursor", "context"))


# --- directory sync (SCIM 2.0, docs/scim.md) -------------------------------------------
# The admin REST side: the tenant's SCIM bearer token (shown once; rotation revokes the old one).

@app.route("/admin/scim/token", methods=["GET"])
def admin_scim_token_status():
    return _rest("admin.scim.token.get", "scim_tokens.status")


@app.route("/admin/scim/token", methods=["POST"])
def admin_scim_token_create():
    return _rest("admin.scim.token.create", "scim_tokens.create", status=201)


@app.route("/admin/scim/token", methods=["DELETE"])
def admin_scim_token_revoke():
    return _rest("admin.scim.token.revoke", "scim_tokens.revoke")


# The role map: the IdP's role values -> admin | member | guest | reviewer (tenantctl scim-roles sets the same).
@app.route("/admin/scim/roles", methods=["GET"])
def admin_scim_roles_get():
    return _rest("admin.scim.roles.get", "admin.get_scim_roles")


@app.route("/admin/scim/roles", methods=["PUT"], content_types=["application/json"])
def admin_scim_roles_set():
    return _rest("admin.scim.roles.set", "admin.set_scim_roles")


# The SCIM endpoints: a function of their own, because scim2-models + pydantic cost ~0.6-0.75 s
# to import. API Gateway sends /scim/v2/{proxy+} here as REST proxy events (tools/render_infra.py
# adds that route to Chalice's REST API; devstack/gateway.py does the same locally). The import
# is inside the handler so no other function's import path ever loads scim2_models.
@app.lambda_function(name="scim")
def scim(event, context):
    from chalicelib.scim import api as scim_api

    return scim_api.handle(event, context)


# --- compliance: retention, holds, export ---------------------------------------------
# (docs/compliance.md "Retention and legal hold", "Export"; chalicelib/services/compliance.py, exports.py)


@app.on_sqs_message(queue=settings().compliance_queue, batch_size=1)
def compliance_job(event):
    from chalicelib import compliance_events

    compliance_events.on_records([record.to_dict() for record in event])


@app.route("/admin/retention", methods=["GET"])
def admin_get_retention():
    return _rest("admin.retention.get", "compliance.get_retention")


@app.route("/admin/retention", methods=["PUT"])
def admin_set_retention():
    return _rest("admin.retention.set", "compliance.set_retention")


@app.route("/admin/conversations/{conversation_id}/retention", methods=["PUT"])
def admin_set_conversation_retention(conversation_id):
    return _rest("admin.retention.conversation", "compliance.set_conversation_retention",
                 {"conversationId": conversation_id})


@app.route("/admin/holds", methods=["POST"])
def admin_place_hold():
    return _rest("admin.holds.place", "compliance.place_hold", status=201)


@app.route("/admin/holds", methods=["GET"])
def admin_list_holds():
    return _rest("admin.holds.list", "compliance.list_holds", query_names=("limit", "cursor"))


@app.route("/admin/holds/{hold_id}/release", methods=["POST"])
def admin_release_hold(hold_id):
    return _rest("admin.holds.release", "compliance.release_hold", {"holdId": hold_id})


@app.route("/admin/exports", methods=["POST"])
def admin_start_export():
    return _rest("admin.exports.start", "exports.start_export", status=202)


@app.route("/admin/exports/{export_id}", methods=["GET"])
def admin_get_export(export_id):
    return _rest("admin.exports.get", "exports.get_export", {"exportId": export_id})


@app.route("/admin/files/{file_id}/download", methods=["GET"])
def admin_download_file(file_id):
    return _rest("admin.files.download", "compliance.download_file", {"fileId": file_id})
