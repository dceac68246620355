"""People: the display names behind the user keys clients see in members, messages and events.

``users.search`` finds people by the words of their name and email
(docs/protocol.md "People search"; the index is ``chalicelib/search_index.py``).
Views elsewhere carry only ``{tenantId, userId}`` (or ``"<tenant>#<user>"``);
``users.get`` resolves up to 100 of them at once.  Who may see whom is
decided by :func:`chalicelib.policy.visible_people`; this module only shapes
the answer.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .. import policy, search_index
from ..models import User, UserSearchToken
from ..protocol.errors import ValidationFailed
from .context import Call


def person_view(user: User, caller_tenant: str) -> dict[str, Any]:
    """A directory entry as others see it.  A deactivated user keeps its name (old messages
    still say who wrote them) but not its email (the mailbox may be gone or reassigned)."""
    return {"tenantId": user.tenant_id, "userId": user.user_id, "displayName": user.display_name,
            "email": user.email if user.active else None, "external": user.tenant_id != caller_tenant,
            "active": user.active}


def get_users(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """``users.get``: the visible ones in request order; every other key in ``notFound``."""
    users, missing = policy.visible_people(call.principal, list(body["keys"]), call.now_ms())
    return {"users": [person_view(u, call.principal.tenant_id) for u in users], "notFound": missing}


# --- people search: users.search / GET /users (docs/protocol.md "People search") -----------------

DEFAULT_LIMIT = 20
MAX_ROUNDS = 3  # index pages read per company per request, at most (then a short page and a cursor)


@dataclass
class _Stream:
    """One company's part of a search: its index shard for the query word, read page by page."""

    tenant_id: str
    start: dict[str, Any] | None = None  # the Query's LastEvaluatedKey
    last: tuple[str, str] | None = None  # (entry, tenant) of the last item read
    done: bool = False


def _encode_cursor(word: str, key: tuple[str, str]) -> str:
    raw = json.dumps([word, key[0], key[1]], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, word: str) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        got = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = isinstance(got, list) and len(got) == 3 and all(isinstance(x, str) for x in got)
    except ValueError:
        ok = False
    if not ok or got[0] != word:
        raise ValidationFailed("cursor is not one this server returned for this query.")
    return got[1], got[2]


def search_users(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """``users.search``: active people of the caller's company and of connected companies that
    allow it now, whose name or email words start with the query's words; paged.

    Order: by the matching word, then by name (a user is listed once, at its
    first matching word).  Every index item is checked against the user's
    record (still active, still that name, still matching, still allowed), so
    a stale item never shows anyone.  Cost (docs/data-model.md "People
    search"): the peers' policy reads (:func:`policy.searchable_peers`); per
    round, 1 Query per company (own + k connected) of up to ``2*limit+1`` small
    items; BatchGetItem of the candidates' records (100 per request); at most
    ``MAX_ROUNDS`` rounds, after which a page may be short but carries a cursor.
    """
    words = search_index.query_words(body["q"])
    word = search_index.index_word(words)
    if word is None:
        raise ValidationFailed("q needs a word of at least 2 letters or digits.")
    limit = int(body.get("limit") or DEFAULT_LIMIT)
    after = _decode_cursor(body.get("cursor"), word)
    me, now = call.principal, call.now_ms()
    peers = policy.searchable_peers(me, now)
    streams = [_Stream(t) for t in [me.tenant_id, *sorted(peers)]]
    lower, upper = (max(after[0], word) if after else word), word + search_index.TOP
    page = min(100, 2 * limit + 1)
    pos = after
    pending: list[tuple[tuple[str, str], str]] = []  # ((entry, tenant), user id), read but not yet decided
    out: list[dict[str, Any]] = []
    users: dict[tuple[str, str], User] = {}
    seen: set[tuple[str, str]] = set()
    for _ in range(MAX_ROUNDS):
        for s in streams:
            if s.done or (s.last is not None and (pos is None or s.last > pos)):
                continue  # finished, or still holds read items past the position
            items, s.start = UserSearchToken.page(search_index.shard(s.tenant_id, word), lower, upper, page, s.start)
            pending += [((it.entry, s.tenant_id), it.user_id) for it in items
                        if after is None or (it.entry, s.tenant_id) > after]
            if items:
                s.last = (items[-1].entry, s.tenant_id)
            s.done = s.start is None
        open_streams = [s for s in streams if not s.done]
        frontier = min((s.last or pos or ("", "")) for s in open_streams) if open_streams else None
        ready = sorted(p for p in pending if frontier is None or p[0] <= frontier)
        pending = [p for p in pending if frontier is not None and p[0] > frontier]
        for i, (key, user_id) in enumerate(ready):
            ident = (key[1], user_id)
            if ident not in users:  # fetch the next candidates' records together
                wanted = list(dict.fromkeys((t, u) for (_, t), u in ready[i:] if (t, u) not in users))[:100]
                users.update({(u.tenant_id, u.user_id): u for u in User.batch_get(wanted)})
                users.update({w: None for w in wanted if w not in users})  # type: ignore[misc]
            user = users.get(ident)
            if user is None or ident in seen or not _shown(user, key[0], word, words, me.tenant_id, peers, now):
                continue
            seen.add(ident)
            out.append(person_view(user, me.tenant_id))
            if len(out) == limit:
                more = i + 1 < len(ready) or pending or open_streams
                return {"users": out, "nextCursor": _encode_cursor(word, key) if more else None}
        if frontier is None:
            return {"users": out, "nextCursor": None}
        pos = frontier
    return {"users": out, "nextCursor": _encode_cursor(word, pos) if pos else None}


def _shown(user: User, entry: str, word: str, words: list[str], caller_tenant: str,
           peers: dict[str, Any], now_ms: int) -> bool:
    """Is this index item the user's current first match, and may the caller see the user?"""
    if not search_index.searchable(user) or not search_index.matches(user, words):
        return False
    first = search_index.first_token(user, word)
    if first is None or entry != search_index.entry(first, user.display_name, user.user_id):
        return False  # another item of the user lists it, or the item is stale (renamed since)
    if user.tenant_id == caller_tenant:
        return True
    tenant = peers.get(user.tenant_id)
    return tenant is not None and policy.shows_external(tenant, caller_tenant, user, now_ms)
