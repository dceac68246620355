"""The session Chalice's ``websocket_api`` builds its management client from.

Assigned to ``app.websocket_api.session`` at import, so it must cost nothing:
the client comes from ``runtime`` on first use.
"""
from __future__ import annotations

from typing import Any

from .config import settings


class ManagementSession:
    """Assigned to ``app.websocket_api.session`` so Chalice's own ``send``
    reaches the configured management endpoint (Chalice otherwise builds an
    ``execute-api.amazonaws.com`` URL and ignores endpoint settings)."""

    region_name = property(lambda self: settings().region)

    def client(self, service_name: str, **_kwargs: Any) -> Any:
        if service_name != "apigatewaymanagementapi":
            raise ValueError(f"ManagementSession only builds apigatewaymanagementapi, not {service_name}")
        from .runtime import management_client

        return management_client()
