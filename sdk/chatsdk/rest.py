"""The REST API (docs/openapi.json) for offline clients and probes: inbox, history, send, read."""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable
from urllib.parse import quote

import requests

from .errors import ChatError


class RestClient:
    """Blocking REST client. ``token`` is a string or a callable returning one."""

    def __init__(self, url: str, token: str | Callable[[], str] | None = None, *, timeout: float = 15.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.http = session or requests.Session()

    def _headers(self) -> dict[str, str]:
        tok = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {tok}"} if tok else {}

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> Any:
        try:
            resp = self.http.request(method, self.url + path, params=params, json=json,
                                     headers=self._headers(), timeout=self.timeout)
        except requests.RequestException as exc:
            raise ChatError("unreachable", f"{method} {self.url}{path}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict):
                raise ChatError(str(err.get("code", "internal")), str(err.get("message", "")),
                                err.get("retryAfter"), error=err)
            raise ChatError("internal" if resp.status_code >= 500 else "http_error",
                            f"HTTP {resp.status_code}: {resp.text[:200]}")
        return body

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def inbox(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        return self.request("GET", "/conversations", params=params)

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        return self.request("GET", f"/conversations/{quote(conversation_id, safe='')}")

    def history(self, conversation_id: str, before_seq: int | None = None, limit: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("beforeSeq", before_seq), ("limit", limit)) if v is not None}
        return self.request("GET", f"/conversations/{quote(conversation_id, safe='')}/messages", params=params)

    def send(self, conversation_id: str, body: str, client_message_id: str | None = None, *,
             thread_root_seq: int | None = None, max_attempts: int = 5) -> dict[str, Any]:
        """Idempotent like ``ChatClient.send``: one clientMessageId across retries, honours retryAfter."""
        cmid = client_message_id or uuid.uuid4().hex
        payload: dict[str, Any] = {"clientMessageId": cmid, "body": body}
        if thread_root_seq is not None:
            payload["threadRootSeq"] = thread_root_seq
        for attempt in range(1, max_attempts + 1):
            try:
                return self.request("POST", f"/conversations/{quote(conversation_id, safe='')}/messages",
                                    json=payload)
            except ChatError as err:
                if attempt == max_attempts or err.code not in ("rate_limited", "internal", "unreachable"):
                    raise
                time.sleep(float(err.retry_after or min(8.0, 0.25 * 2 ** attempt)))
        raise AssertionError("unreachable")

    def search_users(self, q: str, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """``GET /users``: people whose name or email words start with ``q``'s (see ``ChatClient.search_users``)."""
        params = {k: v for k, v in (("q", q), ("limit", limit), ("cursor", cursor)) if v is not None}
        return self.request("GET", "/users", params=params)

    def read(self, conversation_id: str, seq: int) -> dict[str, Any]:
        return self.request("POST", f"/conversations/{quote(conversation_id, safe='')}/read", json={"seq": seq})
