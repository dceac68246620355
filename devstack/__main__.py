"""Run the local stack in the foreground: ``python -m devstack`` (what ``make run`` does).

Starts DynamoDB Local (child process) and moto's S3 (in-process) on loopback,
creates tables and bucket from the app's own models, starts the Lambda worker
pool, the dev IdP and the gateway, seeds the demo tenants, and prints
``READY http://127.0.0.1:<port>`` once everything answers.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _stage_env(stage: str) -> dict[str, str]:
    cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = dict(cfg.get("environment_variables", {}))
    env.update(cfg["stages"][stage].get("environment_variables", {}))
    return env


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="gateway port on 127.0.0.1 (0 = any free port); default $PORT or 8000")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("LAMBDA_WORKERS", "4")),
                        help="concurrent Lambda containers (worker processes) for WebSocket, REST, SCIM and S3")
    parser.add_argument("--event-workers", type=int, default=int(os.environ.get("DEVSTACK_EVENT_WORKERS", "4")),
                        help="worker processes of the SQS consumers, apart from the others (0 = share them)")
    parser.add_argument("--state-dir", default=os.environ.get("DEVSTACK_STATE_DIR", str(ROOT / ".devstack")))
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo tenants")
    parser.add_argument("--dynamodb", choices=["local", "moto"],
                        default=os.environ.get("DEVSTACK_DYNAMODB", "local"),
                        help="DynamoDB Local (default, needs Java) or moto's DynamoDB (fallback)")
    args = parser.parse_args(argv)

    sock = _bind(args.port)
    port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)

    from moto.server import ThreadedMotoServer

    from . import sqs_receive
    from .dynamodb_local import DynamoDBLocal
    from .metering import MeteringProxy
    from .ports import free_port

    sqs_receive.apply()  # receiving must not cost O(queue) per message (see the module)

    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto_server.start()
    moto_url = "http://127.0.0.1:%d" % moto_server.get_host_and_port()[1]
    # S3 is reached through a front that verifies signatures and POST policies as S3 does
    # (moto checks none) and delivers the bucket's event notifications: devstack/s3_gateway.py.
    s3_sock = _bind(0)
    s3_url = "http://127.0.0.1:%d" % s3_sock.getsockname()[1]
    ddb = None
    if args.dynamodb == "local":
        ddb = DynamoDBLocal()
        ddb.start()
        ddb_url = ddb.endpoint
    else:
        print("devstack: using moto's DynamoDB (fallback: TTL expiry by the stack's reaper, no consumed capacity)",
              file=sys.stderr)
        ddb_url = moto_url
    # Every DynamoDB client goes through the metering proxy (GET /dev/stack/metrics).
    metering = MeteringProxy(ddb_url)
    ddb_url, ddb_upstream = metering.start(), ddb_url

    # Everything below (this process and the spawned Lambda workers) reaches
    # AWS services only through the standard endpoint variables.
    os.environ.update(_stage_env(args.stage))
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_url, "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        # Mobile push: moto's SNS, in this process (platform applications created below; what was
        # published is read back by GET /dev/stack/pushes, devstack/pushes.py).
        "AWS_ENDPOINT_URL_SNS": moto_url,
        "WS_MANAGEMENT_ENDPOINT": f"{origin}/{args.stage}",
        "CHAT_STAGE": args.stage,
    })
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)

    import boto3

    from chalicelib import models
    from chalicelib.config import settings

    from .gateway import Gateway, WsLimits
    from .idp import DevIdp
    from .lambda_pool import LambdaPool
    from .seed import seed

    models.create_tables()
    from .ttl_reaper import TtlReaper

    # DynamoDB Local stops expiring a table at its first expired item missing from a sparse index;
    # moto expires nothing. The reaper plays AWS's TTL for those tables (see the module).
    reaper = TtlReaper(boto3.client("dynamodb", endpoint_url=ddb_upstream),
                       interval=float(os.environ.get("DEVSTACK_TTL_REAP_SECONDS", "2")), all_ttl_tables=ddb is None)
    reaper.start()
    s3 = boto3.client("s3", endpoint_url=moto_url)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        # Object Lock, as infra/ declares it: a legal hold's file versions cannot be deleted (moto refuses
        # DeleteObject of a version under legal hold with AccessDenied, as S3 does).
        s3.create_bucket(Bucket=settings().files_bucket, ObjectLockEnabledForBucket=True)
    # Versioned, as infra/ declares it: downloads are pinned to the scanned version.
    s3.put_bucket_versioning(Bucket=settings().files_bucket, VersioningConfiguration={"Status": "Enabled"})

    from .pushes import create_platform_applications

    create_platform_applications(boto3.client("sns", endpoint_url=moto_url), settings().push_applications)

    idp = DevIdp(origin, state_dir)
    if not args.no_seed:
        with contextlib.redirect_stdout(sys.stderr):
            seed(idp)
    from app import app as chalice_app

    from .queues import sqs_sources

    sources = sqs_sources(chalice_app)
    # Queue consumers get processes of their own: a burst of queue work must not make frames wait.
    pool = LambdaPool(args.workers, event_workers=args.event_workers,
                      event_functions=[s.function_name for s in sources])
    pool.warm()
    gateway = Gateway(pool, stage=args.stage, api_id="local0api", domain_name=f"127.0.0.1:{port}",
                      limits=WsLimits.from_env(), idp=idp, meter=metering.meter,
                      # the $connect authorizer, when the app declares one (infra/ attaches it on AWS)
                      authorizer=next((f.name for f in chalice_app.pure_lambda_functions
                                       if f.name == "ws_authorizer"), None))
    (state_dir / "stack.json").write_text(json.dumps({
        "origin": origin, "ws": f"ws://127.0.0.1:{port}/ws", "dynamodb": ddb_url,
        "dynamodb_upstream": ddb_upstream, "s3": s3_url, "s3_upstream": moto_url,
        "management": f"{origin}/{args.stage}", "stage": args.stage, "pid": os.getpid(), "sns": moto_url,
    }))

    async def serve() -> None:
        from aiohttp import web

        runner = web.AppRunner(gateway.web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=2.0)
        from chalicelib import file_events

        from chalicelib.services.files import cors_rules as files_cors_rules

        from .s3_gateway import Notification, S3Front

        s3_front = S3Front(moto_url, credentials={"local": "local"}, region=os.environ["AWS_REGION"],
                           invoke=pool.invoke_event, notifications=[Notification(
                               settings().files_bucket, file_events.FUNCTION_NAME, file_events.EVENTS)],
                           cors_rules=files_cors_rules(settings()))  # the bucket's CorsConfiguration
        s3_runner = web.AppRunner(s3_front.web_app(), access_log=None, handle_signals=False)
        await s3_runner.setup()
        await web.SockSite(s3_runner, s3_sock, shutdown_timeout=2.0).start()
        await site.start()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log

        from botocore.config import Config

        from .queues import QueuePoller

        # One slot per process the SQS functions run on: pollers pull no more than the workers can take.
        slots = asyncio.Semaphore(args.event_workers if args.event_workers > 0 else args.workers)
        pollers = [QueuePoller(pool, boto3.client("sqs", config=Config(max_pool_connections=50)),
                               s.queue, s.function_name, s.batch_size, max_concurrency=s.maximum_concurrency,
                               slots=slots)
                   for s in sources]
        gateway.pollers = pollers  # their counters in GET /dev/stack/metrics
        poll_tasks = [asyncio.create_task(p.run()) for p in pollers]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {origin}", flush=True)
        await stop.wait()
        for p in pollers:
            p.stop()
        await asyncio.gather(*poll_tasks, return_exceptions=True)
        await gateway.close_all()
        await runner.cleanup()
        await s3_runner.cleanup()

    try:
        asyncio.run(serve())
    finally:
        reaper.stop()
        pool.shutdown()
        metering.stop()
        if ddb is not None:
            ddb.stop()
        moto_server.stop()
    print("devstack: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
