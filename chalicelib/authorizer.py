"""The $connect route's Lambda REQUEST authorizer (function ``ws_authorizer``).

It verifies the token once and API Gateway hands its ``context`` to every
later event of that connection as ``requestContext.authorizer``, so a frame
needs no read to know who sent it (``identity.principal_from``).  The
authorizer allows even a refused token, with the refusal in its context:
$connect then answers the same structured refusal as ever (API Gateway's own
401/403 would carry no error code; ``ws_connect``).  A module of its own: the
authorizer loads identity and the directory, not the connection records or
presence.
"""
from __future__ import annotations

import logging
from typing import Any

from . import logs, metrics
from .identity import authorizer_context, token_from_ws_connect
from .models import user_key
from .protocol.errors import ChatError, Internal
from .services import authentication

log = logging.getLogger("chat.ws")


@metrics.flushed("ws_authorizer")
def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """The $connect REQUEST authorizer: verify the token (1 GetItem of the user), pass who it is on."""
    ctx = event.get("requestContext") or {}
    token_ctx = logs.bind(requestId=ctx.get("requestId"), connectionId=ctx.get("connectionId"), route="authorizer")
    try:
        token = token_from_ws_connect(event.get("headers") or {}, event.get("queryStringParameters") or {})
        principal, _user = authentication.authenticate(verifier(), token)
        principal_id, context = user_key(principal.tenant_id, principal.user_id), authorizer_context(principal)
    except ChatError as err:
        principal_id, context = "refused", {"refusedCode": err.code, "refusedStatus": err.status,
                                            "refusedMessage": err.message}
    except Exception:  # noqa: BLE001 - $connect answers `internal`; never a traceback
        log.exception("authorizer failed")
        metrics.count("InternalErrors")
        principal_id, context = "refused", {"refusedCode": "internal", "refusedStatus": 500,
                                            "refusedMessage": Internal().message}
    finally:
        logs.unbind(token_ctx)
    return {"principalId": principal_id, "context": context, "policyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event.get("methodArn", "*")}]}}


def verifier() -> Any:
    """The container's token verifier (also $connect's, without an authorizer in front): pyjwt and
    cryptography load on the first token checked, not when this module is imported."""
    from . import token_verifier

    return token_verifier.verifier()
