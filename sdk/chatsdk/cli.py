"""``chat``: the SDK on the command line, to use or probe a deployment.

    chat [--url URL] login --email alice@acme.example     # dev IdP; or: login --token <jwt>
    chat ping                                             # /health, handshake, ping round trip
    chat inbox                                            # conversations with unread counts
    chat send <conversationId> "hello"                    # idempotent send, prints the message
    chat tail [<conversationId>]                          # events as JSON lines, reconnects + syncs
    chat upload <conversationId> <path> [--wait]          # share a file: presigned POST, then the notice
    chat call <action> '{"field": ...}'                   # any protocol action, prints the result
    chat smoke --email-a A --email-b B                    # two users: send, receive, file, download; timed

``--url``/``$CHAT_URL`` is the service's HTTP origin (default
http://127.0.0.1:8000); the socket is ``<url>/ws`` unless ``--ws-url``/
``$CHAT_WS_URL`` says otherwise (AWS: the WebSocket API's wss:// URL). The
token comes from ``--token``/``$CHAT_TOKEN`` or the file written by ``chat
login`` (``$CHAT_TOKEN_FILE``, default ``~/.config/chat/token``).

Exit status: 0 success, 1 a service or connection error, 2 usage.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .auth import DEFAULT_URL, dev_token_grant, load_token, save_token, token_claims, token_file
from .client import ChatClient, ws_url_for
from .errors import ChatError, HandshakeRefused
from .events import Event
from .rest import RestClient


class UsageError(Exception):
    pass


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _token(args: argparse.Namespace, required: bool = True) -> str | None:
    tok = args.token or os.environ.get("CHAT_TOKEN") or load_token(_token_path(args))
    if tok is None and required:
        raise UsageError(f"no token: run `chat login --email <you>` (or set CHAT_TOKEN); looked in {_token_path(args)}")
    return tok


def _token_path(args: argparse.Namespace) -> Path:
    return Path(args.token_file).expanduser() if args.token_file else token_file()


def _client(args: argparse.Namespace, **kwargs: Any) -> ChatClient:
    return ChatClient(args.url, _token(args), ws_url=args.ws_url, device=args.device,
                      request_timeout=args.timeout, open_timeout=args.timeout, **kwargs)


# --- commands ------------------------------------------------------------------------

def cmd_login(args: argparse.Namespace) -> int:
    if bool(args.email) == bool(args.login_token):
        raise UsageError("give exactly one of --email (dev identity provider) or --token <jwt>")
    if args.email:
        grant = dev_token_grant(args.url, args.email, timeout=args.timeout)
        token = grant.access_token
    else:
        token = args.login_token.strip()
    path = save_token(token, _token_path(args))
    claims = token_claims(token)
    _out({"loggedIn": True, "email": claims.get("email"), "sub": claims.get("sub"), "issuer": claims.get("iss"),
          "expiresAt": claims.get("exp"), "tokenFile": str(path)})
    return 0


async def cmd_ping(args: argparse.Namespace) -> int:
    """Probe: REST /health, the WebSocket handshake, and ``ping`` round trips."""
    report: dict[str, Any] = {"url": args.url, "ws": args.ws_url or ws_url_for(args.url)}
    ok = True
    t0 = time.monotonic()
    try:
        report["health"] = (await asyncio.to_thread(RestClient(args.url, timeout=args.timeout).health)).get("status")
        report["healthMs"] = round((time.monotonic() - t0) * 1000, 1)
    except ChatError as exc:
        report["health"] = f"{exc.code}: {exc.message}"
        ok = False
    token = _token(args, required=False)
    if token is None:
        # No credentials: the best probe is that the gateway and $connect answer a refusal.
        probe = ChatClient(args.url, "", ws_url=args.ws_url, reconnect=False, open_timeout=args.timeout)
        try:
            await probe._open()
            report["handshake"] = 101
        except HandshakeRefused as exc:
            report["handshake"] = exc.status
            report["authenticated"] = False
            ok = ok and exc.status == 401
        except ChatError as exc:
            report["handshake"] = f"{exc.code}: {exc.message}"
            ok = False
        report["ok"] = ok
        _out(report)
        return 0 if ok else 1
    t1 = time.monotonic()
    client = _client(args, reconnect=False)
    try:
        await client.connect()
        report["handshake"] = 101
        report["connectMs"] = round((time.monotonic() - t1) * 1000, 1)
        report["authenticated"] = True
        rtts = []
        for _ in range(max(1, args.count)):
            t = time.monotonic()
            res = await client.call("ping")
            rtts.append(round((time.monotonic() - t) * 1000, 1))
            report["serverTime"] = res.get("serverTime")
        report["rttMs"] = rtts
    except HandshakeRefused as exc:
        report.update(handshake=exc.status, error=exc.code, message=exc.message)
        ok = False
    except ChatError as exc:
        report.update(error=exc.code, message=exc.message)
        ok = False
    finally:
        await client.close()
    report["ok"] = ok
    _out(report)
    return 0 if ok else 1


async def cmd_inbox(args: argparse.Namespace) -> int:
    if args.rest:
        result = await asyncio.to_thread(RestClient(args.url, _token(args), timeout=args.timeout).inbox, args.limit)
    else:
        async with _client(args, reconnect=False) as client:
            result = await client.call("conversation.list", limit=args.limit)
    convs = result.get("conversations") or []
    if args.json:
        for c in convs:
            _out(c)
        return 0
    if not convs:
        print("(no conversations)")
        return 0
    print(f"{'UNREAD':>6}  {'KIND':<8} {'CONVERSATION':<40} {'NAME':<20} LAST MESSAGE")
    for c in convs:
        last = (c.get("lastMessage") or {}).get("text") or ""
        name = c.get("name") or ""
        if c.get("external"):
            name = (name + " [external]").strip()
        print(f"{c.get('unread') or 0:>6}  {c.get('kind', ''):<8} {c.get('conversationId', ''):<40} "
              f"{name[:20]:<20} {last[:60]}")
    if result.get("nextCursor"):
        print(f"(more: --limit {args.limit} shows {len(convs)})")
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        res = await client.send(args.conversation_id, args.text, args.client_message_id,
                                thread_root_seq=args.thread)
    _out({"message": res.message.raw, "duplicate": res.duplicate, "attempts": res.attempts})
    return 0


async def cmd_tail(args: argparse.Namespace) -> int:
    types = [t for t in (args.types or "").split(",") if t] or None
    client = _client(args)
    try:
        await client.connect()
        stream = client.events()
        if args.conversation_id:
            conv = (await client.call("conversation.get", conversationId=args.conversation_id))["conversation"]
            client.high_seq[args.conversation_id] = args.since if args.since is not None else int(conv["lastSeq"])
            if args.since is not None:
                await client.sync([args.conversation_id])
        else:
            await client.call("conversation.list", limit=100)  # tracks the inbox: a reconnect syncs it
        if args.presence:
            await client.call("presence.subscribe")
        _err(f"tailing {args.conversation_id or 'all conversations'} as {client.user_id} (Ctrl-C stops)")
        seen = 0
        deadline = None if args.timeout_total is None else time.monotonic() + args.timeout_total
        while args.count is None or seen < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                event: Event = await stream.next(left)
            except asyncio.TimeoutError:
                break
            if event.type.startswith("sdk."):
                if event.type != "sdk.synced" or any(getattr(event, "replayed", {}).values()):
                    _err(json.dumps(event.to_json()))
                continue
            if args.conversation_id and event.target_conversation() not in (None, args.conversation_id):
                continue
            if types and event.type not in types:
                continue
            _out(event.to_json())
            seen += 1
        return 0 if args.count is None or seen >= args.count else 1
    finally:
        await client.close()


async def cmd_upload(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        record = await client.upload_file(args.conversation_id, args.path, content_type=args.content_type,
                                          wait=args.wait, timeout=args.wait_timeout)
    _out(record)
    return 0


async def cmd_smoke(args: argparse.Namespace) -> int:
    """The deployment probe of tools/smoke.py (sdk/chatsdk/probe.py) with flags; env vars as defaults."""
    from .probe import ProbeConfig, format_step, run_probe

    env = os.environ
    emails = (args.email_a or env.get("CHAT_EMAIL_A"), args.email_b or env.get("CHAT_EMAIL_B"))
    cfg = ProbeConfig(url=args.url, ws_url=args.ws_url,
                      token_a=args.token_a or env.get("CHAT_TOKEN_A") or args.token or env.get("CHAT_TOKEN"),
                      token_b=args.token_b or env.get("CHAT_TOKEN_B"),
                      idp_url=args.idp_url or env.get("CHAT_IDP_URL") or (args.url if any(emails) else None),
                      email_a=emails[0], email_b=emails[1], conversation_id=args.conversation,
                      timeout=args.timeout)

    def show(step: Any) -> None:
        if args.json:
            _out(step.to_json())
        else:
            print(format_step(step), flush=True)

    steps = await run_probe(cfg, show)
    ok = bool(steps) and all(s.ok for s in steps) and steps[-1].name == "download"
    if not args.json:
        print(f"{'PASS' if ok else 'FAIL'}  {len(steps)} steps, {sum(s.ms for s in steps):.1f} ms", flush=True)
    return 0 if ok else 1


async def cmd_call(args: argparse.Namespace) -> int:
    try:
        fields = json.loads(args.fields) if args.fields else {}
    except ValueError as exc:
        raise UsageError(f"fields must be a JSON object: {exc}") from None
    if not isinstance(fields, dict):
        raise UsageError("fields must be a JSON object")
    async with _client(args, reconnect=False) as client:
        _out(await client.call(args.action, **fields))
    return 0


# --- entry -----------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chat", description="Command line for the enterprise chat service.")
    p.add_argument("--url", default=os.environ.get("CHAT_URL", DEFAULT_URL),
                   help="HTTP origin of the service (default $CHAT_URL or %(default)s)")
    p.add_argument("--ws-url", default=os.environ.get("CHAT_WS_URL"),
                   help="WebSocket URL if not <url>/ws (default $CHAT_WS_URL)")
    p.add_argument("--token", default=None, help="JWT to use (default $CHAT_TOKEN, else the token file)")
    p.add_argument("--token-file", default=None, help="default $CHAT_TOKEN_FILE or ~/.config/chat/token")
    p.add_argument("--device", default="chat-cli", help="device label sent with the connection")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per request (default 15)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("login", help="get a token and store it")
    s.add_argument("--email", help="a user of the dev identity provider (local stack)")
    s.add_argument("--token", dest="login_token", help="store this JWT from your company's IdP instead")
    s.set_defaults(func=cmd_login)

    s = sub.add_parser("ping", help="probe /health, the handshake and ping round trips")
    s.add_argument("--count", type=int, default=3, help="ping round trips (default 3)")
    s.set_defaults(func=cmd_ping)

    s = sub.add_parser("inbox", help="conversations by last activity, with unread counts")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--rest", action="store_true", help="use the REST API instead of the socket")
    s.set_defaults(func=cmd_inbox)

    s = sub.add_parser("send", help="send a message (idempotent, retried)")
    s.add_argument("conversation_id")
    s.add_argument("text")
    s.add_argument("--client-message-id", help="idempotency key (default: a new one)")
    s.add_argument("--thread", type=int, help="reply in the thread of this seq")
    s.set_defaults(func=cmd_send)

    s = sub.add_parser("tail", help="print events as JSON lines (reconnects and syncs by itself)")
    s.add_argument("conversation_id", nargs="?")
    s.add_argument("--since", type=int, help="first replay messages after this seq")
    s.add_argument("--types", help="comma-separated event types to print")
    s.add_argument("--presence", action="store_true", help="also subscribe to presence")
    s.add_argument("--count", type=int, help="exit after this many events")
    s.add_argument("--for", dest="timeout_total", type=float, help="exit after this many seconds")
    s.set_defaults(func=cmd_tail)

    s = sub.add_parser("upload", help="share a file (presigned POST straight to storage)")
    s.add_argument("conversation_id")
    s.add_argument("path")
    s.add_argument("--content-type", help="default: guessed from the name")
    s.add_argument("--wait", action="store_true", help="wait until it is scanned and posted")
    s.add_argument("--wait-timeout", type=float, default=60.0)
    s.set_defaults(func=cmd_upload)

    s = sub.add_parser("smoke", help="probe a deployment end to end with two users (timed steps)")
    s.add_argument("--email-a", help="user A by email, token from the dev IdP (default $CHAT_EMAIL_A)")
    s.add_argument("--email-b", help="user B by email (default $CHAT_EMAIL_B)")
    s.add_argument("--token-a", help="user A's JWT (default $CHAT_TOKEN_A, then --token/$CHAT_TOKEN)")
    s.add_argument("--token-b", help="user B's JWT (default $CHAT_TOKEN_B)")
    s.add_argument("--idp-url", help="dev identity provider origin (default $CHAT_IDP_URL, else --url)")
    s.add_argument("--conversation", help="probe in this conversation instead of A and B's direct one")
    s.add_argument("--json", action="store_true", help="one JSON object per step")
    s.set_defaults(func=cmd_smoke)

    s = sub.add_parser("call", help="any protocol action; prints the ack's result")
    s.add_argument("action")
    s.add_argument("fields", nargs="?", help="JSON object of the action's fields")
    s.set_defaults(func=cmd_call)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.url = args.url.rstrip("/")
    try:
        out = args.func(args)
        if asyncio.iscoroutine(out):
            out = asyncio.run(out)
        return int(out or 0)
    except UsageError as exc:
        _err(f"chat: {exc}")
        return 2
    except HandshakeRefused as exc:
        hint = " (token expired or not accepted: run `chat login`)" if exc.status == 401 else ""
        _err(f"chat: connection refused, HTTP {exc.status} {exc.code}: {exc.message}{hint}")
        return 1
    except ChatError as exc:
        extra = f" (retry after {exc.retry_after}s)" if exc.retry_after is not None else ""
        _err(f"chat: {exc.code}: {exc.message}{extra}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
