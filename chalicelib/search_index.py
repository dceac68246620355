"""People search: the words a user is found by, and keeping their index items in step with the directory.

Every writer of a directory entry (``tenants.upsert_user``, SCIM create /
replace / patch / delete, sign-in auto-provisioning, ``tenantctl``, the
devstack seed through tenantctl) calls :func:`sync` with the entries the user
had before the write (:func:`entries_of` on the record as it was read) and
the record as written: one BatchWriteItem removes what no longer applies (a
rename, a new email, a deactivation) and adds the rest.  Kept free of the
policy and message modules, so the authorizer and the SCIM function load
nothing more for it.

Normalization (:func:`normalize`): Unicode NFKD, combining marks dropped
(accents: "José" -> "jose"), casefold ("Straße" -> "strasse"), control,
format, private-use and unassigned characters dropped.  The words of a user
(:func:`tokens_of`), each of at least 2 characters, at most 64 (longer ones
are cut), at most ``MAX_TOKENS`` per user:

* the full email address and its local part, the local part without
  punctuation and each run of letters/digits in it
  (``jean.dupont@x.example`` -> ``jean.dupont@x.example``, ``jean.dupont``,
  ``jeandupont``, ``jean``, ``dupont``);
* each whitespace-separated word of the display name as written, without
  punctuation, and each run of letters/digits in it (``Jean-Luc O'Brien`` ->
  ``jean-luc``, ``jeanluc``, ``jean``, ``luc``, ``o'brien``, ``obrien``,
  ``brien``).

A query matches a user when every one of its words (whitespace-separated,
normalized the same way) is a prefix of one of the user's words; the longest
query word (at least 2 characters) is the one looked up in the index.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from .models import User, UserSearchToken

MAX_TOKEN_CHARS = 64
MIN_WORD_CHARS = 2
MAX_TOKENS = 24
NAME_SORT_CHARS = 64
SEP = "\x1f"  # never in a token or a name: normalize() drops control characters
TOP = "\U0010ffff"  # above every character a token may hold (normalize() drops unassigned code points)
_RUNS = re.compile(r"[^\W_]+")
_PUNCT = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Accent-free, case-folded text: NFKD, combining marks dropped, casefold, no control/format characters."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return "".join(c for c in unicodedata.normalize("NFKD", bare)
                   if not unicodedata.combining(c) and unicodedata.category(c)[0] != "C")


def _variants(chunk: str) -> list[str]:
    return [chunk, _PUNCT.sub("", chunk), *_RUNS.findall(chunk)]


def tokens_of(display_name: str, email: str) -> list[str]:
    """The words a user is found by, in a stable order, deduplicated (see the module's docstring)."""
    mail = normalize(email).strip()
    local = mail.split("@", 1)[0]
    out: list[str] = []
    for word in [mail, *_variants(local), *(v for chunk in normalize(display_name).split() for v in _variants(chunk))]:
        word = word[:MAX_TOKEN_CHARS]
        if len(word) >= MIN_WORD_CHARS and word not in out:
            out.append(word)
    return out[:MAX_TOKENS]


def query_words(q: str) -> list[str]:
    """A query's words, normalized (each cut to the token length), in order, deduplicated."""
    return list(dict.fromkeys(w[:MAX_TOKEN_CHARS] for w in normalize(q).split()))


def index_word(words: list[str]) -> str | None:
    """The query word looked up in the index: the longest (the first of equals); None if all are too short."""
    best = max(words, key=len, default="")
    return best if len(best) >= MIN_WORD_CHARS else None


def shard(tenant_id: str, word: str) -> str:
    return f"{tenant_id}#{word[:MIN_WORD_CHARS]}"


def name_sort(display_name: str) -> str:
    return normalize(display_name)[:NAME_SORT_CHARS]


def entry(token: str, display_name: str, user_id: str) -> str:
    return f"{token}{SEP}{name_sort(display_name)}{SEP}{user_id}"


def searchable(user: User | None) -> bool:
    """Only active directory entries are found (deactivated and SCIM-deleted ones never)."""
    return user is not None and user.active and not user.scim_deleted_at


def entries_of(user: User | None) -> set[tuple[str, str, str]]:
    """The index items ``(shard, entry, user_id)`` this record should have (none unless searchable)."""
    if not searchable(user):
        return set()
    assert user is not None
    return {(shard(user.tenant_id, t), entry(t, user.display_name, user.user_id), user.user_id)
            for t in tokens_of(user.display_name, user.email)}


def matches(user: User, words: Iterable[str]) -> bool:
    tokens = tokens_of(user.display_name, user.email)
    return all(any(t.startswith(w) for t in tokens) for w in words)


def first_token(user: User, word: str) -> str | None:
    """The user's first word (in index order) starting with ``word``: the one entry a search shows it at."""
    hits = [t for t in tokens_of(user.display_name, user.email) if t.startswith(word)]
    return min(hits, key=lambda t: t + SEP) if hits else None


def sync(before: set[tuple[str, str, str]], user: User | None) -> tuple[int, int]:
    """Make the index hold exactly ``entries_of(user)``, given it held ``before``.

    One BatchWriteItem per 25 changes (none when nothing changed: a role or
    group change, a repeated write).  Returns (puts, deletes).
    """
    after = entries_of(user)
    kept = {(s, e) for s, e, _ in after}
    deletes = {(s, e) for s, e, _ in before if (s, e) not in kept}
    puts = after - before
    UserSearchToken.write(puts, deletes)
    return len(puts), len(deletes)


def backfill(tenant_id: str) -> int:
    """(Re)write the index items of every active user of a tenant (tenantctl search-backfill).

    For directories written before people search existed, or to repair lost
    writes: Query the tenant's users (1 request per 1 MB page) and put every
    entry (BatchWriteItem, 25 per request).  Returns the number of items written.
    """
    written = 0
    batch: set[tuple[str, str, str]] = set()
    for user in User.query(tenant_id):
        batch |= entries_of(user)
        if len(batch) >= 250:
            UserSearchToken.write(batch, set())
            written += len(batch)
            batch = set()
    UserSearchToken.write(batch, set())
    return written + len(batch)
