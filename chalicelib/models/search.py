"""The people-search token index (docs/data-model.md)."""
from __future__ import annotations

from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class UserSearchToken(Model):
    """One searchable word of one active user: the directory's prefix index (no Scan, no GSI).

    ``shard`` = ``<tenant_id>#<first 2 characters of the token>``, ``entry`` =
    ``<token>\\x1f<normalized display name>\\x1f<user_id>``: a Query with
    ``begins_with(entry, word)`` on ``<tenant>#<word[:2]>`` lists the users
    with a word starting with ``word`` in (token, name) order.  Tokens,
    normalization and the writes live in ``chalicelib/search_index.py``; the
    read check against the user's record in ``chalicelib/services/people.py``.
    """

    class Meta(_Meta):
        table_name = _S.user_search_table

    shard = UnicodeAttribute(hash_key=True)
    entry = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()

    @classmethod
    def page(cls, shard: str, lower: str, upper: str, limit: int,
             start: dict[str, Any] | None = None) -> tuple[list["UserSearchToken"], dict[str, Any] | None]:
        """Up to ``limit`` entries with ``lower <= entry <= upper`` after ``start``: 1 Query.

        Returns them and the key to continue from (None when the range is exhausted).
        """
        result = cls.query(shard, cls.entry.between(lower, upper), limit=limit, page_size=limit,
                           last_evaluated_key=start)
        items = list(result)
        return items, result.last_evaluated_key

    @classmethod
    def write(cls, puts: set[tuple[str, str, str]], deletes: set[tuple[str, str]]) -> None:
        """BatchWriteItem: 1 request per 25 puts/deletes (``(shard, entry, user_id)`` / ``(shard, entry)``)."""
        if not puts and not deletes:
            return
        with cls.batch_write() as batch:
            for shard, entry in sorted(deletes):
                batch.delete(cls(shard=shard, entry=entry))
            for shard, entry, user_id in sorted(puts):
                batch.save(cls(shard=shard, entry=entry, user_id=user_id))
