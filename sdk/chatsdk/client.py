"""Async WebSocket client: requests by ``requestId``, typed events, reconnect + sync.

    async with ChatClient("http://127.0.0.1:8000", email="alice@acme.example") as chat:
        conv = (await chat.call("conversation.create", kind="group", members=[bob]))["conversation"]
        await chat.send(conv["conversationId"], "hello")
        async for event in chat.events():
            print(event)

What the client does for you (docs/protocol.md, "Reconnecting"):

* keeps, per conversation it has seen, the highest ``seq`` it has seen
  (``client.high_seq``) and the highest seq up to which it has seen every
  message (``client.complete_seq``): live events are best effort, so one can
  be missing below the highest; a message that arrives past a gap triggers a
  ``sync`` of that conversation (after ``gap_sync_delay`` seconds, in case the
  missing one is just late; longer while replies are slow, see ``gap_wait``),
  and every sync starts at the gap, not the top;
* when the socket drops, reconnects with jittered exponential backoff (a
  fresh token from the token source each time) and sends ``sync`` for every
  tracked conversation; missed messages are delivered as ``MessageCreated``
  events with ``replayed=True``, then a ``Synced`` event;
* ``send()`` is idempotent: one ``clientMessageId`` across all its retries
  (connection lost, timeout, ``internal``, ``rate_limited`` after
  ``retryAfter``), so a message is stored once whatever happens.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import itertools
import json
import logging
import mimetypes
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .auth import DEFAULT_URL, DevTokenProvider, token_claims
from .errors import ChatError, ClientClosed, ConnectionLost, HandshakeRefused, RequestTimeout
from .events import (Connected, ConversationCreated, ConversationUpdated, Disconnected, Event, FileReady,
                     FileRejected, MembersChanged, MessageCreated, MessageEdited, Synced, parse_event)
from .models import Message, PeoplePage, Person, SendResult, UserRef

log = logging.getLogger("chatsdk")

TokenSource = str | Callable[[], str | Awaitable[str]]
Handler = Callable[[Event], Any]

SYNC_BATCH = 100  # conversations per sync request (protocol limit)
USERS_BATCH = 100  # user keys per users.get request (protocol limit)
_SEEN_PER_CONVERSATION = 1024


def ws_url_for(url: str) -> str:
    """``http(s)://host[:port]`` → ``ws(s)://host[:port]/ws`` (the local stack's socket path).

    A ``ws://``/``wss://`` URL is used as is (on AWS the WebSocket API has its
    own ``wss://<api-id>.execute-api.<region>.amazonaws.com/<stage>`` URL).
    """
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def _size_and_sha256(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _presigned_post(url: str, fields: dict[str, str], path: Path, name: str, ctype: str, timeout: float) -> None:
    """S3 POST Object: the policy's fields first, the file last; 2xx or ``ChatError("upload_failed")``."""
    import requests

    with path.open("rb") as fh:
        try:
            resp = requests.post(url, data=fields, files={"file": (name, fh, ctype)}, timeout=timeout)
        except requests.RequestException as exc:
            raise ChatError("upload_failed", f"POST {url}: {exc}") from exc
    if not 200 <= resp.status_code < 300:
        raise ChatError("upload_failed", f"storage answered HTTP {resp.status_code}: {resp.text[:300]}")


def _user_key(u: str | UserRef | dict[str, Any]) -> str:
    if isinstance(u, UserRef):
        return f"{u.tenant_id}#{u.user_id}"
    if isinstance(u, dict):
        return f"{u.get('tenantId', '')}#{u.get('userId', '')}"
    return str(u)


def backoff_delays(initial: float = 0.5, maximum: float = 30.0, *, rng: random.Random | None = None) -> Iterable[float]:
    """Exponential backoff with jitter: attempt k waits uniformly in [cap/2, cap], cap = min(max, initial·2^k)."""
    rng = rng or random.Random()
    for k in itertools.count():
        cap = min(maximum, initial * (2 ** min(k, 32)))
        yield rng.uniform(cap / 2, cap)


class EventStream:
    """Events delivered to one consumer, from the moment it was created (no race with actions).

    Iterate with ``async for``, or ``await stream.next(timeout)`` /
    ``await stream.wait_for(predicate, timeout)``. Close it (or use ``with``)
    when done so the client stops queueing for it.
    """

    def __init__(self, client: "ChatClient", types: Iterable[str] | None, conversation_id: str | None) -> None:
        self._client = client
        self.types = set(types) if types else None
        self.conversation_id = conversation_id
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        if self.conversation_id is not None and not event.type.startswith("sdk.") \
                and event.target_conversation() != self.conversation_id:
            return
        self._queue.put_nowait(event)

    def _end(self) -> None:
        self._queue.put_nowait(None)

    async def next(self, timeout: float | None = None) -> Event:
        """The next event; ``asyncio.TimeoutError`` after ``timeout``; ``ClientClosed`` at the end."""
        if self.closed and self._queue.empty():
            raise ClientClosed()
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self.closed = True
            raise ClientClosed(self._client.close_reason or "the client is closed")
        return item

    async def wait_for(self, predicate: Callable[[Event], bool] | type | str, timeout: float | None = None) -> Event:
        """Skip events until one matches (an Event class, a type string, or a predicate)."""
        if isinstance(predicate, type):
            cls = predicate
            predicate = lambda e: isinstance(e, cls)  # noqa: E731
        elif isinstance(predicate, str):
            name = predicate
            predicate = lambda e: e.type == name  # noqa: E731
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = await self.next(left)
            if predicate(event):
                return event

    def close(self) -> None:
        self.closed = True
        self._client._streams.discard(self)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.next()
        except ClientClosed:
            raise StopAsyncIteration from None


class _Seen:
    """Recently delivered seqs of one conversation (dedupes live events against sync replays)."""

    def __init__(self) -> None:
        self.order: collections.deque[int] = collections.deque()
        self.seqs: set[int] = set()

    def add(self, seq: int) -> bool:
        if seq in self.seqs:
            return False
        self.seqs.add(seq)
        self.order.append(seq)
        if len(self.order) > _SEEN_PER_CONVERSATION:
            self.seqs.discard(self.order.popleft())
        return True


class ChatClient:
    """One device's connection to the chat service.

    ``url`` is the service's HTTP origin (``http://127.0.0.1:8000`` locally);
    the socket URL is derived from it (``/ws``) unless ``ws_url`` is given.
    ``token`` is a JWT or a callable (sync or async) returning one, called
    on every (re)connect so it can renew; ``email`` instead uses the dev
    identity provider at ``url``.
    """

    def __init__(self, url: str = DEFAULT_URL, token: TokenSource | None = None, *, email: str | None = None,
                 ws_url: str | None = None, device: str | None = None, reconnect: bool = True,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 max_reconnect_attempts: int | None = None, request_timeout: float = 15.0,
                 open_timeout: float = 15.0, ping_interval: float | None = 20.0,
                 sync_on_reconnect: bool = True, sync_max_pages: int = 10) -> None:
        if token is None and email is None:
            raise ValueError("give a token (or token source) or a dev-IdP email")
        self.url = url.rstrip("/")
        self.ws_url = ws_url or ws_url_for(self.url)
        self._token_source: TokenSource = token if token is not None else DevTokenProvider(self.url, email or "")
        self.device = device
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_reconnect_attempts = max_reconnect_attempts
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.sync_on_reconnect = sync_on_reconnect
        self.sync_max_pages = sync_max_pages

        self.high_seq: dict[str, int] = {}  # conversationId -> highest seq seen
        self.complete_seq: dict[str, int] = {}  # conversationId -> every seq up to this one was delivered
        # Long enough for a late shard or a retried one (delivery workers retry after 2 s) to close
        # a gap by itself: a shorter wait turns reordering into a sync storm (docs/delivery.md).
        self.gap_sync_delay = 3.0
        # ... and longer while the service answers slowly: events then lag as much as replies do, and
        # syncing sooner would add load exactly when the service has none to spare (see gap_wait).
        self.gap_sync_max_delay = 30.0
        self.reply_seconds: float | None = None  # smoothed seconds from a request to its reply
        self._gap_syncs: set[str] = set()
        self.user_id: str | None = None  # the token's ``sub``, once connected
        self.connections = 0  # successful handshakes so far
        self.sync_requests = 0  # `sync` actions sent (reconnects and gaps): how chatty recovery is
        self.close_reason: str | None = None

        self._ws: websockets.ClientConnection | None = None
        self._seen: dict[str, _Seen] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._streams: set[EventStream] = set()
        self._handlers: dict[str | None, list[Handler]] = collections.defaultdict(list)
        self._connected = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    # --- lifecycle -------------------------------------------------------------------

    async def connect(self) -> "ChatClient":
        """Open the socket (one attempt: raises ``HandshakeRefused``/``ChatError`` on failure)."""
        if self._runner is not None:
            return self
        ws = await self._open()
        self._attach(ws)
        self._emit(Connected(reconnect=False))
        self._runner = asyncio.create_task(self._run(), name="chatsdk-reader")
        return self

    async def close(self) -> None:
        """Close the socket, stop reconnecting, fail pending requests and end event streams."""
        if self._closing:
            return
        self._closing = True
        self.close_reason = self.close_reason or "closed by the client"
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            if not was_connected:  # waiting out a reconnect backoff: stop now
                self._runner.cancel()
            await asyncio.wait({self._runner}, timeout=5)
            if not self._runner.done():
                self._runner.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._finish()

    async def __aenter__(self) -> "ChatClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await self._wait_connected(time.monotonic() + (timeout if timeout is not None else self.request_timeout))

    # --- events ----------------------------------------------------------------------

    def events(self, *types: str, conversation_id: str | None = None) -> EventStream:
        """A stream of the events from now on, optionally only of ``types`` / one conversation."""
        stream = EventStream(self, types or None, conversation_id)
        if self._closing:
            stream._end()
        self._streams.add(stream)
        return stream

    def on(self, event_type: str | None, handler: Handler) -> Callable[[], None]:
        """Call ``handler(event)`` for every event of ``event_type`` (None: all). Returns an unsubscribe."""
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    def track(self, conversation_id: str, after_seq: int = 0) -> None:
        """Follow a conversation from ``after_seq`` on: a reconnect will sync it."""
        self.high_seq.setdefault(conversation_id, after_seq)
        self.complete_seq.setdefault(conversation_id, self.high_seq[conversation_id])

    # --- requests --------------------------------------------------------------------

    async def call(self, action: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send an action; return the ack's ``result`` (``ping``: ``{"serverTime"}``), or raise ``ChatError``.

        Waits for the connection if it is being re-established. Raises
        ``ConnectionLost``/``RequestTimeout`` when the outcome is unknown: retry
        only what is idempotent (``send`` does so by itself).
        """
        reply = await self.request(action, timeout=timeout, **fields)
        if reply.get("type") == "error":
            raise ChatError.from_frame(reply)
        if reply.get("type") == "pong":
            return {"serverTime": reply.get("serverTime")}
        return reply.get("result") or {}

    async def request(self, action: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send an action and return the raw reply frame (``ack``, ``pong`` or ``error``)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.request_timeout)
        await self._wait_connected(deadline)
        ws = self._ws
        assert ws is not None
        rid = f"{self._prefix}-{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            try:
                await ws.send(json.dumps({"action": action, "requestId": rid, **fields}))
            except ConnectionClosed as exc:
                raise ConnectionLost(f"the connection closed while sending: {exc}") from exc
            sent = time.monotonic()
            try:
                reply = await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                self._observe_reply_time(time.monotonic() - sent)
                raise RequestTimeout(f"no reply to {action} in time") from None
            self._observe_reply_time(time.monotonic() - sent)
        finally:
            self._pending.pop(rid, None)
        if reply.get("type") == "ack":
            self._observe_result(action, fields, reply.get("result") or {})
        return reply

    async def ping(self) -> float:
        """Round trip of a ``ping`` action in seconds."""
        t0 = time.monotonic()
        await self.call("ping")
        return time.monotonic() - t0

    async def send(self, conversation_id: str, body: str, client_message_id: str | None = None, *,
                   thread_root_seq: int | None = None, max_attempts: int = 8,
                   timeout: float | None = None) -> SendResult:
        """Send a message exactly once, whatever happens on the way.

        One ``clientMessageId`` (generated unless given) is reused for every
        retry, so the server stores the message once and answers a retry
        with the original (``duplicate=True``). Retries: lost connection and
        timeouts (after reconnecting), ``internal`` (backoff) and
        ``rate_limited`` (after ``retryAfter``). Other errors raise.
        """
        cmid = client_message_id or uuid.uuid4().hex
        fields: dict[str, Any] = {"conversationId": conversation_id, "clientMessageId": cmid, "body": body}
        if thread_root_seq is not None:
            fields["threadRootSeq"] = thread_root_seq
        delays = iter(backoff_delays(self.backoff_initial, self.backoff_max))
        for attempt in range(1, max_attempts + 1):
            try:
                result = await self.call("message.send", timeout=timeout, **fields)
                return SendResult(Message.from_dict(result["message"]), bool(result.get("duplicate")), attempt)
            except ClientClosed:
                raise
            except ChatError as err:
                retriable = isinstance(err, (ConnectionLost, RequestTimeout)) or err.code in ("rate_limited", "internal")
                if not retriable or attempt == max_attempts:
                    raise
                if err.code == "rate_limited" and err.retry_after is not None:
                    wait = float(err.retry_after) + random.uniform(0, 0.05)
                else:
                    wait = next(delays)
                log.debug("send %s: %s, retrying in %.2fs with the same clientMessageId", cmid, err.code, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def upload_file(self, conversation_id: str, path: str | os.PathLike[str], *,
                          content_type: str | None = None, name: str | None = None, wait: bool = False,
                          timeout: float = 60.0) -> dict[str, Any]:
        """Share a file: ``file.upload.request``, then the presigned POST straight to storage.

        Returns the file record (``status: "pending"`` until the server has
        scanned it). With ``wait=True``, waits for the file's notice and
        returns its ``file`` with ``seq``, or raises ``ChatError`` with code
        ``file_rejected`` (``retry_after`` None, ``error["reason"]`` the reason).
        """
        p = Path(path)
        name = name or p.name
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        size, digest = await asyncio.to_thread(_size_and_sha256, p)
        stream = self.events("message.created", "file.ready", "file.rejected", conversation_id=conversation_id) \
            if wait else None
        try:
            result = await self.call("file.upload.request", conversationId=conversation_id, name=name, size=size,
                                     contentType=ctype, sha256=digest)
            up = result["upload"]
            await asyncio.to_thread(_presigned_post, up["url"], up.get("fields") or {}, p, name, ctype,
                                    self.request_timeout + size / 1e6)
            record = dict(result.get("file") or {})
            if stream is None:
                return record
            fid = record.get("fileId")

            def mine(e: Event) -> bool:
                f = e.file if isinstance(e, FileReady) else \
                    (e.message.raw.get("file") if isinstance(e, MessageCreated) else None)
                return (isinstance(f, dict) and f.get("fileId") == fid) or \
                    (isinstance(e, FileRejected) and e.file_id == fid)

            ev = await stream.wait_for(mine, timeout)
            if isinstance(ev, FileRejected):
                raise ChatError("file_rejected", ev.message, error={"code": "file_rejected", "reason": ev.reason,
                                                                   "message": ev.message, "fileId": fid})
            seq = ev.seq if isinstance(ev, FileReady) else ev.message.seq  # type: ignore[attr-defined]
            return {**record, "status": "clean", "seq": seq}
        finally:
            if stream is not None:
                stream.close()

    async def get_users(self, users: Iterable[str | UserRef | dict[str, Any]], *,
                        timeout: float | None = None) -> dict[str, Person | None]:
        """Display names for user keys (``"tenant#user"``, ``UserRef`` or ``{tenantId, userId}``).

        Asks ``users.get`` in batches of 100.  Returns every asked key: its
        ``Person``, or None when the server does not show it (unknown, or not
        visible to the caller now: the two are not told apart).  No caching:
        visibility changes with connections and policies, keep your own.
        """
        keys = list(dict.fromkeys(_user_key(u) for u in users))
        out: dict[str, Person | None] = {k: None for k in keys}
        for i in range(0, len(keys), USERS_BATCH):
            result = await self.call("users.get", timeout=timeout, keys=keys[i:i + USERS_BATCH])
            for d in result.get("users") or []:
                person = Person.from_dict(d)
                out[person.key] = person
        return out

    users_get = get_users  # the action's name, for those who look for it

    async def search_users(self, q: str, *, limit: int | None = None, cursor: str | None = None,
                           timeout: float | None = None) -> PeoplePage:
        """Find people by the start of any word of their name or email (``users.search``).

        ``"bo"`` finds Bob Smith, Jim Bowen and bogart@...; case and accents are
        ignored, every word of ``q`` must match, the longest needs 2 characters.
        Your company's active users, and those of connected companies that
        allow you now (``Person.external``).  One page (``limit`` 1-50, server
        default 20); pass ``page.next_cursor`` as ``cursor`` with the same ``q``
        for the next (None on the last).  ``open_direct(person)`` starts a chat.
        """
        fields: dict[str, Any] = {"q": q}
        if limit is not None:
            fields["limit"] = limit
        if cursor is not None:
            fields["cursor"] = cursor
        return PeoplePage.from_result(await self.call("users.search", timeout=timeout, **fields), q)

    users_search = search_users  # the action's name

    async def search_all_users(self, q: str, *, page_size: int = 50, maximum: int = 500) -> list[Person]:
        """Every match of ``q`` (page after page), at most ``maximum``."""
        out: list[Person] = []
        cursor: str | None = None
        while len(out) < maximum:
            page = await self.search_users(q, limit=page_size, cursor=cursor)
            out += page.people
            cursor = page.next_cursor
            if cursor is None:
                break
        return out[:maximum]

    async def open_direct(self, person: Person | str, *, timeout: float | None = None) -> dict[str, Any]:
        """The direct conversation with ``person`` (a ``Person`` from a search, or an email): created on
        first use, the same one afterwards.  Returns the conversation view."""
        if isinstance(person, Person) and not person.external:
            fields: dict[str, Any] = {"members": [person.user_id]}
        else:
            email = person if isinstance(person, str) else person.email
            if not email:
                raise ValueError("this person has no email (deactivated): no conversation can be started")
            fields = {"memberEmails": [email]}
        result = await self.call("conversation.create", timeout=timeout, kind="direct", **fields)
        return result["conversation"]

    # --- ask the experts (docs/experts.md) ----------------------------------------------------

    async def expert_topics(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The topics you may ask (``expert.topics``): ``{topicId, name, tenantId, shared}`` each; a shared
        topic of a connected company has that company's ``tenantId`` (give it to ``ask_experts``)."""
        return (await self.call("expert.topics", timeout=timeout))["topics"]

    async def ask_experts(self, topic_id: str, text: str, *, tenant_id: str | None = None,
                          timeout: float | None = None) -> dict[str, Any]:
        """Ask a topic's experts without knowing who they are (``expert.ask``); returns the question.
        Watch ``expert.question.wave`` (each wave offered), ``.accepted`` (who took it, the conversation)
        and ``.unanswered`` on ``events()``.  Show ``search_answers(text, topic_id=...)`` first."""
        fields: dict[str, Any] = {"topicId": topic_id, "text": text}
        if tenant_id is not None:
            fields["tenantId"] = tenant_id
        return (await self.call("expert.ask", timeout=timeout, **fields))["question"]

    async def accept_question(self, question_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Take a question offered to you (``expert.accept``): ``{question, conversation}``; the first accept
        wins, the others get ``ChatError`` ``conflict``."""
        return await self.call("expert.accept", timeout=timeout, questionId=question_id)

    async def decline_question(self, question_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Pass on a question offered to you (``expert.decline``)."""
        return await self.call("expert.decline", timeout=timeout, questionId=question_id)

    async def cancel_question(self, question_id: str, *, tenant_id: str | None = None,
                              timeout: float | None = None) -> dict[str, Any]:
        """Withdraw your open question (``expert.cancel``); returns it (``state: "cancelled"``)."""
        fields: dict[str, Any] = {"questionId": question_id}
        if tenant_id is not None:
            fields["tenantId"] = tenant_id
        return (await self.call("expert.cancel", timeout=timeout, **fields))["question"]

    async def expert_queue(self, topic_id: str, *, limit: int | None = None,
                           timeout: float | None = None) -> list[dict[str, Any]]:
        """A topic's waiting questions, for the people of its pool (``expert.queue``)."""
        fields: dict[str, Any] = {"topicId": topic_id}
        if limit is not None:
            fields["limit"] = limit
        return (await self.call("expert.queue", timeout=timeout, **fields))["questions"]

    async def mark_answered(self, question_id: str, message_seqs: Iterable[int], *, tenant_id: str | None = None,
                            timeout: float | None = None) -> dict[str, Any]:
        """Keep the expert's messages (their seqs) as the topic's Q&A entry (``expert.answered``)."""
        fields: dict[str, Any] = {"questionId": question_id, "messageSeqs": [int(s) for s in message_seqs]}
        if tenant_id is not None:
            fields["tenantId"] = tenant_id
        return (await self.call("expert.answered", timeout=timeout, **fields))["entry"]

    async def search_answers(self, q: str | None = None, *, topic_id: str | None = None, limit: int | None = None,
                             timeout: float | None = None) -> list[dict[str, Any]]:
        """The company's Q&A entries (``expert.search``): by words (or a draft question), by topic, or both;
        without ``q``, the topic's newest (browse).  A draft longer than the protocol's 500 characters is cut."""
        q = q[:500] if q is not None else None
        fields: dict[str, Any] = {k: v for k, v in (("q", q), ("topicId", topic_id), ("limit", limit)) if v is not None}
        return (await self.call("expert.search", timeout=timeout, **fields))["entries"]

    async def sync(self, conversation_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Fetch what was missed in the tracked (or given) conversations and deliver it as events.

        Returns, per conversation, how many messages were replayed.
        Conversations that are no longer visible (left, removed) stop being tracked.
        """
        ids = list(conversation_ids) if conversation_ids is not None else list(self.high_seq)
        replayed: dict[str, int] = {}
        truncated: list[str] = []
        pending = {cid: self.complete_seq.get(cid, self.high_seq.get(cid, 0)) for cid in ids}
        for _page in range(max(1, self.sync_max_pages)):
            if not pending:
                break
            again: dict[str, int] = {}
            items = list(pending.items())
            for i in range(0, len(items), SYNC_BATCH):
                batch = [{"conversationId": cid, "afterSeq": after} for cid, after in items[i:i + SYNC_BATCH]]
                self.sync_requests += 1
                reply = await self.request("sync", conversations=batch)
                if reply.get("type") == "error":
                    raise ChatError.from_frame(reply)
                for entry in (reply.get("result") or {}).get("conversations", []):
                    cid = entry.get("conversationId")
                    if entry.get("error"):
                        if entry["error"].get("code") == "not_found":
                            self._forget(cid)
                        continue
                    msgs = sorted(entry.get("messages") or [], key=lambda m: m.get("seq", 0))
                    n = 0
                    for m in msgs:
                        if self._deliver_message(m):
                            self._emit(MessageCreated(Message.from_dict(m), False, True, raw={
                                "type": "message.created", "message": m, "mention": False, "replayed": True}))
                            n += 1
                    replayed[cid] = replayed.get(cid, 0) + n
                    if entry.get("hasMore") and msgs:
                        again[cid] = max(int(m.get("seq", 0)) for m in msgs)
                    elif isinstance(entry.get("lastSeq"), int):  # all there is for us is delivered
                        self._complete_through(cid, entry["lastSeq"])
            pending = again
        for cid in pending:  # more than sync_max_pages pages missed: jump to the end, let the app page history
            truncated.append(cid)
            self._complete_through(cid, self.high_seq.get(cid, 0))
        self._emit(Synced(replayed=replayed, truncated=truncated))
        return replayed

    # --- internals: connection ---------------------------------------------------------

    async def _token(self) -> str:
        src = self._token_source
        if isinstance(src, str):
            return src
        if inspect.iscoroutinefunction(src) or inspect.iscoroutinefunction(getattr(src, "__call__", None)):
            value = await src()  # type: ignore[misc]
        else:  # a plain callable may block (HTTP to the IdP): keep it off the event loop
            value = await asyncio.to_thread(src)
            if inspect.isawaitable(value):
                value = await value
        return str(value)

    async def _open(self) -> websockets.ClientConnection:
        token = await self._token()
        query = {"token": token}
        if self.device:
            query["device"] = self.device
        sep = "&" if "?" in self.ws_url else "?"
        try:
            ws = await websockets.connect(f"{self.ws_url}{sep}{urlencode(query)}", open_timeout=self.open_timeout,
                                          ping_interval=self.ping_interval, max_size=None, compression=None,
                                          user_agent_header=f"chatsdk/0.1 websockets/{websockets.__version__}")
        except InvalidStatus as exc:
            status = exc.response.status_code
            code, message = "unauthorized" if status == 401 else "forbidden" if status == 403 else "internal", ""
            try:
                err = json.loads(exc.response.body or b"{}").get("error") or {}
                code, message = err.get("code", code), err.get("message", "")
            except (ValueError, AttributeError):
                pass
            raise HandshakeRefused(status, code, message or f"handshake refused with HTTP {status}") from exc
        except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ChatError("unreachable", f"{self.ws_url}: {exc or type(exc).__name__}") from exc
        claims = token_claims(token)
        self.user_id = claims.get("sub", self.user_id)
        return ws

    def _attach(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws
        self.connections += 1
        self._connected.set()

    async def _wait_connected(self, deadline: float) -> None:
        while not self._connected.is_set():
            if self._closing:
                raise ClientClosed(self.close_reason or "the client is closed")
            if self._runner is None:
                raise ClientClosed("not connected: call connect() first")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout("not connected in time")
            try:
                await asyncio.wait_for(self._connected.wait(), left)
            except asyncio.TimeoutError:
                raise RequestTimeout("not connected in time") from None

    async def _run(self) -> None:
        try:
            while True:
                ws = self._ws
                assert ws is not None
                await self._read(ws)
                self._connected.clear()
                self._fail_pending(ConnectionLost())
                if self._closing:
                    return
                will = self.reconnect
                self._emit(Disconnected(ws.close_code, ws.close_reason or "", will))
                if not will:
                    self.close_reason = f"connection closed ({ws.close_code})"
                    return
                new_ws, attempt = await self._reconnect()
                if new_ws is None:
                    return
                self._attach(new_ws)
                self._emit(Connected(reconnect=True, attempt=attempt))
                if self.sync_on_reconnect and self.high_seq:
                    self._spawn(self._resync())
        finally:
            self._connected.clear()
            self._fail_pending(ClientClosed(self.close_reason or "the client is closed"))
            if not self._closing:
                self._closing = True
                self._finish()

    async def _reconnect(self) -> tuple[websockets.ClientConnection | None, int]:
        permanent_failures = 0
        for attempt, delay in enumerate(backoff_delays(self.backoff_initial, self.backoff_max), start=1):
            if self.max_reconnect_attempts is not None and attempt > self.max_reconnect_attempts:
                self.close_reason = f"gave up reconnecting after {attempt - 1} attempts"
                return None, attempt
            await asyncio.sleep(delay)
            if self._closing:
                return None, attempt
            try:
                return await self._open(), attempt
            except HandshakeRefused as exc:
                log.info("reconnect attempt %d refused: %s", attempt, exc)
                if exc.permanent:
                    permanent_failures += 1
                    # A static token will not get better; a token source gets a few fresh tries.
                    if isinstance(self._token_source, str) or permanent_failures >= 3:
                        self.close_reason = f"reconnect refused: {exc}"
                        return None, attempt
            except ChatError as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
        raise AssertionError("unreachable")

    async def _resync(self) -> None:
        try:
            await self.sync()
        except ChatError as exc:  # the next reconnect syncs again
            log.info("sync after reconnect failed: %s", exc)

    async def _read(self, ws: websockets.ClientConnection) -> None:
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON: %.80r", raw)
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - a bug in a handler must not kill the connection silently
            log.exception("chatsdk reader failed")
            await ws.close()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        rid = frame.get("requestId")
        if rid is not None and rid in self._pending:
            fut = self._pending[rid]
            if not fut.done():
                fut.set_result(frame)
            return
        if frame.get("type") in ("ack", "pong") or (frame.get("type") == "error" and rid is not None):
            return  # a late reply to a request that already timed out
        event = parse_event(frame)
        if isinstance(event, (MessageCreated, MessageEdited)):
            if isinstance(event, MessageCreated) and not self._deliver_message(frame.get("message") or {}):
                return  # already delivered (by a sync replay)
            self.track(event.message.conversation_id)
        elif isinstance(event, (ConversationCreated, ConversationUpdated)):
            self.track(event.conversation.conversation_id, event.conversation.last_seq)
        elif isinstance(event, MembersChanged):
            if event.change in ("removed", "left") and any(u.user_id == self.user_id for u in event.users):
                self._forget(event.conversation_id)
        self._emit(event)

    def _deliver_message(self, m: dict[str, Any]) -> bool:
        """Record a message as delivered; False if it already was."""
        cid, seq = m.get("conversationId"), m.get("seq")
        if not cid or not isinstance(seq, int):
            return True
        seen = self._seen.setdefault(cid, _Seen())
        fresh = seen.add(seq)
        # A conversation first met through a message starts there (older ones are history).
        done = self.complete_seq.setdefault(cid, self.high_seq.get(cid, seq - 1))
        while done + 1 in seen.seqs:
            done += 1
        self.complete_seq[cid] = done
        if seq > self.high_seq.get(cid, 0):
            self.high_seq[cid] = seq
        if done < self.high_seq[cid]:
            self._fill_gap_later(cid)
        return fresh

    def _complete_through(self, cid: str, seq: int) -> None:
        if cid in self.high_seq or cid in self.complete_seq:
            self.complete_seq[cid] = max(self.complete_seq.get(cid, 0), seq)
            self.high_seq[cid] = max(self.high_seq.get(cid, 0), seq)

    def _observe_reply_time(self, seconds: float) -> None:
        """Smooth the reply time as TCP smooths its round trip (1/8 of each new sample)."""
        prev = self.reply_seconds
        self.reply_seconds = seconds if prev is None else prev + (seconds - prev) / 8

    def gap_wait(self) -> float:
        """Seconds to let a gap close by itself: ``gap_sync_delay``, or four smoothed reply times when the
        service is slow (a late event is as late as a slow reply), at most ``gap_sync_max_delay``."""
        slow = 4 * (self.reply_seconds or 0.0)
        return min(self.gap_sync_max_delay, max(self.gap_sync_delay, slow))

    def _fill_gap_later(self, cid: str) -> None:
        """A live message arrived past a missing one: sync that conversation unless the gap closes first."""
        if cid in self._gap_syncs or not self.sync_on_reconnect:
            return
        self._gap_syncs.add(cid)

        async def fill() -> None:
            try:
                await asyncio.sleep(self.gap_wait())
                if self.complete_seq.get(cid, 0) < self.high_seq.get(cid, 0) and self.connected:
                    await self.sync([cid])
            except ChatError as exc:  # the next gap or reconnect syncs again
                log.info("gap sync failed: %s", exc)
            finally:
                self._gap_syncs.discard(cid)
        self._spawn(fill())

    def _forget(self, conversation_id: str | None) -> None:
        if conversation_id:
            self.high_seq.pop(conversation_id, None)
            self.complete_seq.pop(conversation_id, None)
            self._seen.pop(conversation_id, None)

    def _observe_result(self, action: str, fields: dict[str, Any], result: dict[str, Any]) -> None:
        """Learn conversations and seqs from our own replies (what a reconnect must sync)."""
        if isinstance(result.get("message"), dict) and action == "message.send":
            self._deliver_message(result["message"])
        conv = result.get("conversation")
        if isinstance(conv, dict) and conv.get("conversationId"):
            self.track(conv["conversationId"], int(conv.get("lastSeq") or 0))
        if action == "conversation.list":
            for c in result.get("conversations") or []:
                if c.get("conversationId"):
                    self.track(c["conversationId"], int(c.get("lastSeq") or 0))
        elif action == "history":
            msgs = result.get("messages") or []
            if msgs:
                cid = fields.get("conversationId")
                top = max(int(m.get("seq") or 0) for m in msgs)
                if cid and top > self.high_seq.get(cid, 0):
                    self.high_seq[cid] = top
                if cid and cid in self.complete_seq:  # the app reads history from here on
                    self.complete_seq[cid] = max(self.complete_seq[cid], top)
        elif action == "conversation.leave" and result.get("left"):
            self._forget(fields.get("conversationId"))

    def _fail_pending(self, exc: ChatError) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: the waiter may have timed out already
        self._pending.clear()

    def _emit(self, event: Event) -> None:
        for stream in list(self._streams):
            stream._offer(event)
        for key in (event.type, None):
            for handler in list(self._handlers.get(key, ())):
                try:
                    out = handler(event)
                    if inspect.isawaitable(out):
                        self._spawn(out)
                except Exception:  # noqa: BLE001
                    log.exception("event handler failed")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self) -> None:
        for stream in list(self._streams):
            stream._end()
