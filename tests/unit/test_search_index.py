"""People search decisions without a stack: normalization, a user's words, index keys, sync, cursors."""
from __future__ import annotations

import pytest

from chalicelib import search_index as si
from chalicelib.models import User
from chalicelib.protocol.errors import ValidationFailed
from chalicelib.services import people


def user(name: str, email: str, status: str = "active", uid: str = "u1", tenant: str = "acme") -> User:
    return User(tenant_id=tenant, user_id=uid, email=email, display_name=name, status=status)


@pytest.mark.parametrize("raw,expected", [
    ("José", "jose"), ("NÚÑEZ", "nunez"), ("Straße", "strasse"), ("Zoë Ölander", "zoe olander"),
    ("İlker", "ilker"), ("ﬁle", "file"), ("a\x1fb\u200bc", "abc"), ("Åsa\U000f0000", "asa"), ("", ""),
])
def test_normalize_strips_accents_case_and_invisible_characters(raw, expected):
    assert si.normalize(raw) == expected


def test_words_of_a_user_name_and_email():
    assert si.tokens_of("Jean-Luc O'Brien", "Jean.Dupont@X.example") == [
        "jean.dupont@x.example", "jean.dupont", "jeandupont", "jean", "dupont",
        "jean-luc", "jeanluc", "luc", "o'brien", "obrien", "brien"]
    assert si.tokens_of("José Núñez", "jn@acme.example") == ["jn@acme.example", "jn", "jose", "nunez"]
    # one-letter words are not indexed (a query needs 2 characters); long words are cut; at most MAX_TOKENS
    assert "j" not in si.tokens_of("J R Tolkien", "jrr@x.example")
    assert max(map(len, si.tokens_of("x" * 300, "a" * 64 + "@x.example"))) == si.MAX_TOKEN_CHARS
    many = " ".join(f"w{i:02d}" for i in range(50))
    assert len(si.tokens_of(many, "m@x.example")) == si.MAX_TOKENS


def test_query_words_and_the_index_word():
    assert si.query_words("  Bob  BOB smi ") == ["bob", "smi"]
    assert si.index_word(["bo", "smit"]) == "smit" and si.index_word(["b", "é"]) is None
    assert si.index_word([]) is None
    assert si.shard("acme", "bowen") == "acme#bo"


def test_entries_exist_only_for_active_users_and_sync_writes_the_difference(monkeypatch):
    writes: list[tuple[set, set]] = []
    monkeypatch.setattr(si.UserSearchToken, "write", classmethod(lambda cls, puts, dels: writes.append((puts, dels))))
    bob = user("Bob Smith", "bob@acme.example")
    entries = si.entries_of(bob)
    assert {e for _, e, _ in entries} == {si.entry(t, "Bob Smith", "u1")
                                          for t in ("bob@acme.example", "bob", "smith")}
    assert all(s == f"acme#{e[:2]}" for s, e, _ in entries)
    assert si.entries_of(user("Bob", "b@x.example", status="deactivated")) == set()
    assert si.entries_of(None) == set()
    deleted = user("Bob", "bob@acme.example")
    deleted.scim_deleted_at = 1
    assert si.entries_of(deleted) == set()

    assert si.sync(set(), bob) == (3, 0)
    assert si.sync(entries, bob) == (0, 0)  # nothing searchable changed: nothing to write
    renamed = user("Robert Smith", "bob@acme.example")
    puts, dels = si.sync(entries, renamed)
    assert puts == 4 and dels == 3  # bob@, bob, robert, smith: the name is in every key, so all change
    assert si.sync(si.entries_of(renamed), user("Robert Smith", "bob@acme.example", "deactivated")) == (0, 4)


def test_a_user_is_shown_at_its_first_matching_word_only():
    bob = user("Bob Bobson", "bob@acme.example")
    assert si.first_token(bob, "bo") == "bob"
    assert si.first_token(bob, "bobs") == "bobson"
    assert si.first_token(bob, "x") is None
    assert si.matches(bob, ["bob", "bobs"]) and not si.matches(bob, ["bob", "smi"])
    words = ["bo"]
    first = si.entry("bob", "Bob Bobson", "u1")
    assert people._shown(bob, first, "bo", words, "acme", {}, 0)
    assert not people._shown(bob, si.entry("bobson", "Bob Bobson", "u1"), "bo", words, "acme", {}, 0)
    assert not people._shown(bob, si.entry("bob", "Old Name", "u1"), "bo", words, "acme", {}, 0)  # stale
    other = user("Bob Other", "bob@globex.example", tenant="globex")
    assert not people._shown(other, si.entry("bob", "Bob Other", "u1"), "bo", words, "acme", {}, 0)  # not allowed


def test_cursors_are_tied_to_their_query():
    cursor = people._encode_cursor("bo", ("bob\x1fbob\x1fu1", "acme"))
    assert people._decode_cursor(cursor, "bo") == ("bob\x1fbob\x1fu1", "acme")
    assert people._decode_cursor(None, "bo") is None
    for bad, word in ((cursor, "bob"), ("not-a-cursor", "bo"), ("W10", "bo"), ("!!!", "bo")):
        with pytest.raises(ValidationFailed):
            people._decode_cursor(bad, word)
