"""The online index of a conversation: one entry per live device, by slot (docs/delivery.md)."""
from __future__ import annotations

import hashlib
from typing import Iterator

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class OnlineEntry(Model):
    """One live connection of a member of a large conversation: the conversation's online roster.

    Written on $connect for every conversation in the user's ``Presence.rooms``
    and deleted on $disconnect (BatchWriteItem, 25 per request), so resolving
    who is online in a conversation of 100,000 members reads only the
    online ones: 1 Query per ~1 MB page (~9,000 entries).  ``expires_at``
    (TTL) removes the entry of a connection whose $disconnect was lost.

    The sort key is ``<4 hex digits of a hash of the connection id>#<connection id>``
    (``slot_of``): entries spread evenly over the key space ``0000``..``ffff``,
    so a huge roster is read by several workers at once, each a Query on
    its own range of slots (``in_range``), rather than page after page by one.
    """

    class Meta(_Meta):
        table_name = _S.online_table

    conversation_id = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)  # the slot: see slot_of
    user_key = UnicodeAttribute()
    expires_at = NumberAttribute()

    SLOTS = 0x10000
    SLOT_END = "g"  # above every slot ("ffff#...")

    @staticmethod
    def slot_of(connection_id: str) -> str:
        return f"{hashlib.blake2b(connection_id.encode(), digest_size=2).hexdigest()}#{connection_id}"

    @staticmethod
    def slot_bound(position: int) -> str:
        """The sort-key bound before every slot at ``position`` (0..SLOTS): "0a3f", or SLOT_END."""
        return OnlineEntry.SLOT_END if position >= OnlineEntry.SLOTS else f"{position:04x}"

    @staticmethod
    def slot_position(sort_key: str) -> int:
        """Where ``sort_key`` sits in 0..SLOTS (an entry written before slots existed sorts as 0)."""
        try:
            return int(sort_key[:4], 16) if sort_key[4:5] == "#" else 0
        except ValueError:
            return 0

    @property
    def connection(self) -> str:
        """The connection id this entry stands for."""
        key = self.connection_id
        return key[5:] if key[4:5] == "#" else key

    @classmethod
    def add(cls, rooms: set[str], connection_id: str, user_key: str, expires_at: int) -> None:
        """One new connection in each of ``rooms`` ($connect): BatchWriteItem, 1 request per 25 rooms."""
        cls._save_all([(conv, connection_id, user_key) for conv in sorted(rooms)], expires_at)

    @classmethod
    def add_members(cls, conversation_id: str, by_user: dict[str, set[str]], expires_at: int) -> None:
        """Members' live connections in one room (a roster build, members added): 1 request per 25."""
        cls._save_all([(conversation_id, cid, key) for key, conns in by_user.items() for cid in sorted(conns)],
                      expires_at)

    @classmethod
    def _save_all(cls, entries: list[tuple[str, str, str]], expires_at: int) -> None:
        if entries:
            with cls.batch_write() as batch:
                for conv, cid, key in entries:
                    batch.save(cls(conversation_id=conv, connection_id=cls.slot_of(cid), user_key=key,
                                   expires_at=expires_at))

    @classmethod
    def remove(cls, rooms: set[str], connection_ids: set[str]) -> None:
        """BatchWriteItem: delete each (room, connection) entry (1 request per 25)."""
        if rooms and connection_ids:
            with cls.batch_write() as batch:
                for conv in sorted(rooms):
                    for cid in sorted(connection_ids):
                        batch.delete(cls(conversation_id=conv, connection_id=cls.slot_of(cid)))

    @classmethod
    def of_conversation(cls, conversation_id: str) -> Iterator["OnlineEntry"]:
        """Query: 1 request per 1 MB page of entries."""
        return cls.query(conversation_id)

    @classmethod
    def first_page(cls, conversation_id: str, page: int) -> tuple[list["OnlineEntry"], str | None]:
        """Up to ``page`` entries from the start of the roster (1 Query) and the sort key of the
        last one when there are more (None when this was all of it)."""
        result = cls.query(conversation_id, limit=page, page_size=page)
        entries = list(result)
        more = result.last_evaluated_key
        return entries, (more["connection_id"]["S"] if more and entries else None)

    @classmethod
    def in_range(cls, conversation_id: str, after: str, below: str) -> Iterator["OnlineEntry"]:
        """Entries with ``after`` < sort key < ``below``: 1 Query per 1 MB page of the range.

        ``after`` need not be an entry's key: a slot bound ("0a3f") is before every key of its slot.
        """
        for entry in cls.query(conversation_id, cls.connection_id.between(after, below)):
            if entry.connection_id != after:  # BETWEEN is inclusive; a filter may not name a key
                yield entry
