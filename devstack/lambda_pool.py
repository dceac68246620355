"""Lambda stand-in: a pool of worker processes, each one a warm container.

Each worker imports ``app.py`` once and handles one invocation at a time,
as a Lambda execution environment does; several workers give the
concurrency of several containers.  Nothing is shared between them but
DynamoDB, S3 and the gateway, exactly as on AWS.  A worker that dies is
replaced and its invocation answered like a Lambda crash (502).
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

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
    import app as app_module  # noqa: PLC0415 - imported in the worker, as Lambda does

    _app_module = app_module


def _invoke_ws(route_key: str, event: dict[str, Any]) -> dict[str, Any]:
    config = _app_module.app.websocket_handlers[route_key]
    handler = getattr(_app_module, config.name)
    return handler(event, _Context(f"enterprise-chat-{config.name}", 30, 512))


def _invoke_event(function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A plain function (SQS, S3, the SCIM proxy): Chalice's handler object by its function name.

    A function that returns a dict (the ``scim`` function's REST proxy reply) is answered with it.
    """
    handler = getattr(_app_module, function_name)
    result = handler(event, _Context(f"enterprise-chat-{function_name}", 60, 512))
    return result if isinstance(result, dict) else {"statusCode": 200}


def _invoke_rest(method: str, path: str, headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
    from chalice.config import Config
    from chalice.local import ForbiddenError, LocalGateway

    gateway = LocalGateway(_app_module.app, Config.create(chalice_stage=os.environ.get("CHAT_STAGE", "dev"),
                                                          lambda_timeout=30))
    try:
        return gateway.handle_request(method=method, path=path, headers=headers, body=body)
    except ForbiddenError as exc:  # API Gateway's answer to an unknown route
        return {"statusCode": 403, "headers": dict(exc.headers), "body": exc.body.decode()}


class LambdaPool:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=ctx, initializer=_init_worker)

    def warm(self) -> None:
        """Start every worker and import the app now, not on the first request."""
        futures = [self._pool.submit(time.sleep, 0.2) for _ in range(self._workers)]
        for f in futures:
            f.result()

    async def _run(self, fn: Any, *args: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if pool is self._pool:
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            return {"statusCode": 502, "body": '{"message": "Internal server error"}'}
        except Exception as exc:  # noqa: BLE001 - an unhandled error in a Lambda is a 502
            print(f"lambda invocation failed: {exc!r}", file=sys.stderr)
            return {"statusCode": 502, "body": '{"message": "Internal server error"}'}

    async def invoke_ws(self, route_key: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self._run(_invoke_ws, route_key, event)

    async def invoke_event(self, function_name: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self._run(_invoke_event, function_name, event)

    async def invoke_rest(self, method: str, path: str, headers: dict[str, str],
                          body: bytes | None) -> dict[str, Any]:
        return await self._run(_invoke_rest, method, path, headers, body)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
