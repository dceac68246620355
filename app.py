"""Routes only: each handler hands its event to chalicelib and returns the reply."""
from chalice import Chalice

from chalicelib import logs, runtime, ws_api

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


@app.route("/health", methods=["GET"])
def health():
    return {"status": "ok"}
