"""Routes only: each handler hands its event to chalicelib and returns the reply."""
from chalice import Chalice, Response

from chalicelib import logs, rest_api, runtime, ws_api
from chalicelib.services import conversations, messages

app = Chalice(app_name="enterprise-chat")
app.experimental_feature_flags.update(["WEBSOCKETS"])
# Chalice's own websocket_api.send goes through this session to the configured
# management endpoint (see chalicelib/runtime.py).
app.websocket_api.session = runtime.ManagementSession()
logs.setup()


@app.on_ws_connect()
def ws_connect(event):
    return ws_api.on_connect(event.to_dict())


@app.on_ws_message()
def ws_message(event):
    return ws_api.on_message(event.to_dict())


@app.on_ws_disconnect()
def ws_disconnect(event):
    return ws_api.on_disconnect(event.to_dict())


@app.on_sqs_message(queue=runtime.settings().presence_queue, batch_size=10)
def presence_flush(event):
    ws_api.on_presence_flush([record.to_dict() for record in event])


@app.route("/health", methods=["GET"])
def health():
    return {"status": "ok"}


def _rest(action, fn, path_fields=None, query_names=(), status=200):
    req = app.current_request
    code, body, headers = rest_api.handle(req.headers, req.raw_body, req.query_params, action, fn,
                                          path_fields or {}, query_names, status)
    return Response(body=body, status_code=code, headers=headers)


@app.route("/conversations", methods=["GET"])
def list_conversations():
    return _rest("conversation.list", conversations.inbox, query_names=("limit", "cursor"))


@app.route("/conversations/{conversation_id}", methods=["GET"])
def get_conversation(conversation_id):
    return _rest("conversation.get", conversations.get, {"conversationId": conversation_id})


@app.route("/conversations/{conversation_id}/messages", methods=["GET"])
def list_messages(conversation_id):
    return _rest("history", messages.history, {"conversationId": conversation_id},
                 query_names=("beforeSeq", "limit"))


@app.route("/conversations/{conversation_id}/messages", methods=["POST"], content_types=["application/json"])
def post_message(conversation_id):
    return _rest("message.send", messages.send, {"conversationId": conversation_id}, status=201)


@app.route("/conversations/{conversation_id}/read", methods=["POST"], content_types=["application/json"])
def mark_read(conversation_id):
    return _rest("read", messages.read, {"conversationId": conversation_id})
