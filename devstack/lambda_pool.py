"""Lambda stand-in: pools of worker processes, each one a warm container.

Each worker imports ``app.py`` once and handles one invocation at a time,
as a Lambda execution environment does; several workers give the
concurrency of several containers.  Nothing is shared between them but
DynamoDB, S3 and the gateway, exactly as on AWS.  A worker that dies is
replaced and its invocation answered like a Lambda crash (502, as a
:class:`Crash`, which an event source can tell from any value a handler returns).

On AWS every function scales on its own, so a burst of queue work never
makes a WebSocket frame wait.  Here the functions named in
``event_functions`` (the SQS consumers) get a pool of processes of their own
(``event_workers``); everything else (WebSocket routes, REST, SCIM, S3
notifications) shares the front pool (``workers``).
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent

_app_module: Any = None


class _Context:
    """The parts of a Lambda context object handlers use."""

    def __init__(self, function_name: str, timeout_s: float, memory_mb: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _init_worker() -> None:
    global _app_module
    sys.path.insert(0, str(ROOT))
    from devstack import iam  # noqa: PLC0415 - each function's role, checked on its calls (iam.py)

    iam.install()
    import app as app_module  # noqa: PLC0415 - imported in the worker, as Lambda does

    _app_module = app_module


# Chalice's Lambda function names for the WebSocket routes (each its own function and role).
_WS_FUNCTIONS = {"$connect": "websocket_connect", "$default": "websocket_message", "$disconnect": "websocket_disconnect"}


@contextmanager
def _as_function(name: str) -> Iterator[None]:
    """AWS calls made meanwhile are checked against ``name``'s role (devstack/iam.py)."""
    from devstack import iam  # noqa: PLC0415

    iam.set_current(name)
    try:
        yield
    finally:
        iam.set_current(None)


def _invoke_ws(route_key: str, event: dict[str, Any]) -> dict[str, Any]:
    config = _app_module.app.websocket_handlers[route_key]
    handler = getattr(_app_module, config.name)
    with _as_function(_WS_FUNCTIONS.get(route_key, config.name)):
        return handler(event, _Context(f"enterprise-chat-{config.name}", 30, 512))


def _invoke_event(function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A plain function (SQS, S3, the SCIM proxy): Chalice's handler object by its function name.

    A function that returns a dict (the ``scim`` function's REST proxy reply, an SQS handler's
    ``batchItemFailures``) is answered with it.
    """
    handler = getattr(_app_module, function_name)
    with _as_function(function_name):
        result = handler(event, _Context(f"enterprise-chat-{function_name}", 60, 512))
    return result if isinstance(result, dict) else {"statusCode": 200}


def _invoke_rest(method: str, path: str, headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
    from chalice.config import Config
    from chalice.local import ForbiddenError, LocalGateway

    gateway = LocalGateway(_app_module.app, Config.create(chalice_stage=os.environ.get("CHAT_STAGE", "dev"),
                                                          lambda_timeout=30))
    try:
        with _as_function("api_handler"):
            return gateway.handle_request(method=method, path=path, headers=headers, body=body)
    except ForbiddenError as exc:  # API Gateway's answer to an unknown route
        return {"statusCode": 403, "headers": dict(exc.headers), "body": exc.body.decode()}


class Crash(dict):
    """The answer to an invocation that returned nothing: the handler raised, or its worker died.

    It is API Gateway's 502 body for the callers that relay a reply (REST, SCIM, S3
    notifications), and a type of its own so that an SQS event source can tell a crash
    (delete nothing) from a handler's own return value, whatever dict that is.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(statusCode=502, body='{"message": "Internal server error"}')
        self.reason = reason


class _Workers:
    """One ProcessPoolExecutor of warm containers, replaced whole when one of its processes dies."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=self.size, mp_context=ctx, initializer=_init_worker)

    def warm(self) -> list[Any]:
        return [self.executor.submit(time.sleep, 0.2) for _ in range(self.size)]

    async def run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        executor = self.executor
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            if executor is self.executor:
                self.executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            print(f"lambda worker died ({self.name} pool)", file=sys.stderr)
            return Crash("worker died")
        except Exception as exc:  # noqa: BLE001 - an unhandled error in a Lambda is a 502
            print(f"lambda invocation failed: {exc!r}", file=sys.stderr)
            return Crash(repr(exc))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class LambdaPool:
    """Where invocations run: ``invoke_event`` of a function in ``event_functions`` goes to the
    event pool (when ``event_workers`` > 0), everything else to the front pool."""

    def __init__(self, workers: int, *, event_workers: int = 0, event_functions: Iterable[str] = ()) -> None:
        self._front = _Workers("front", workers)
        self._events = _Workers("events", event_workers) if event_workers > 0 else None
        self.event_functions = frozenset(event_functions)

    def warm(self) -> None:
        """Start every worker of every pool and import the app now, not on the first request."""
        futures = self._front.warm() + (self._events.warm() if self._events else [])
        for f in futures:
            f.result()

    def _workers_for(self, function_name: str) -> _Workers:
        if self._events is not None and function_name in self.event_functions:
            return self._events
        return self._front

    async def invoke_ws(self, route_key: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self._front.run(_invoke_ws, route_key, event)

    async def invoke_event(self, function_name: str, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's dict reply, ``{"statusCode": 200}`` for any other return value, or a :class:`Crash`."""
        return await self._workers_for(function_name).run(_invoke_event, function_name, event)

    async def invoke_rest(self, method: str, path: str, headers: dict[str, str],
                          body: bytes | None) -> dict[str, Any]:
        return await self._front.run(_invoke_rest, method, path, headers, body)

    def shutdown(self) -> None:
        self._front.shutdown()
        if self._events is not None:
            self._events.shutdown()
