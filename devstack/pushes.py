"""The local stack's mobile push: moto's SNS, its platform applications, and what was published.

The app reaches SNS through ``AWS_ENDPOINT_URL_SNS`` (moto's server, running in
the stack's own process).  At start the platform applications named by
``PUSH_APPLICATIONS`` are created with the very ARNs the setting holds.  moto
keeps every message published to a platform endpoint; ``GET /dev/stack/pushes``
lists them (``?user=<tenant>#<user>`` is not known to SNS: tests filter by the
endpoint ARN the device got), and ``POST /dev/stack/pushes`` with
``{"endpointArn": ..., "enabled": false}`` disables an endpoint as APNs/FCM
feedback would (the next publish is refused with ``EndpointDisabled``).
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

ACCOUNT = "123456789012"  # moto's default account: the ARNs in PUSH_APPLICATIONS (dev) name it
SNS_PLATFORM = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}


def create_platform_applications(sns: Any, applications: tuple[tuple[str, str], ...]) -> None:
    """One platform application per ``<platform>:<appId>``, with the ARN the setting names."""
    for key, arn in applications:
        platform = key.split(":", 1)[0]
        name = arn.rsplit("/", 1)[-1]
        created = sns.create_platform_application(Name=name, Platform=SNS_PLATFORM[platform],
                                                  Attributes={"PlatformCredential": "local"})
        if created["PlatformApplicationArn"] != arn:
            raise RuntimeError(f"PUSH_APPLICATIONS names {arn}, the stack created {created['PlatformApplicationArn']}")


def _backend() -> Any:
    from moto.sns.models import sns_backends

    return sns_backends[ACCOUNT]["us-east-1"]


def snapshot() -> list[dict[str, Any]]:
    out = []
    for endpoint in list(_backend().platform_endpoints.values()):
        for message_id, message in list(endpoint.messages.items()):
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = message
            out.append({"endpointArn": endpoint.arn, "messageId": message_id, "message": parsed})
    return out


def endpoints() -> list[dict[str, Any]]:
    return [{"endpointArn": e.arn, "application": e.application.arn, "enabled": e.enabled}
            for e in list(_backend().platform_endpoints.values())]


async def handle(request: web.Request) -> web.Response:
    if request.method == "GET":
        return web.json_response({"pushes": snapshot(), "endpoints": endpoints()})
    if request.method == "POST":
        body = await request.json()
        endpoint = _backend().platform_endpoints.get(body.get("endpointArn"))
        if endpoint is None:
            return web.json_response({"message": "no such endpoint"}, status=404)
        endpoint.attributes["Enabled"] = bool(body.get("enabled", False))
        return web.json_response({"endpointArn": endpoint.arn, "enabled": endpoint.enabled})
    return web.json_response({"message": "Method not allowed"}, status=405)
