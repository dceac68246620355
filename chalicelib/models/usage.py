"""Usage each company can see: sharded counters per tenant and UTC day (chalicelib/usage.py)."""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class UsageDay(Model):
    """One shard of one company's usage on one UTC day (chalicelib/usage.py): counters only ever ``ADD``ed.

    ``shard_key`` = ``<tenant_id>#<shard>`` (``USAGE_SHARDS`` shards, 8 by default, a random one per
    write), ``day`` = ``YYYY-MM-DD`` (UTC).
    The shard is in the partition key, so a busy company's counting spreads over that many
    partitions and no one key takes all of its writes; a company's days are read with one Query per
    shard (``day BETWEEN``), summed.  Removed by TTL after ``USAGE_KEEP_DAYS``.
    """

    class Meta(_Meta):
        table_name = _S.usage_days_table

    shard_key = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)
    messages = NumberAttribute(null=True)            # messages sent by the company's users
    posts = NumberAttribute(null=True)               # WebSocket posts of their events the gateway accepted
    pushes = NumberAttribute(null=True)              # mobile pushes sent for their messages
    uploads = NumberAttribute(null=True)             # files accepted (clean) from their users
    upload_bytes = NumberAttribute(null=True)        # bytes of those files
    connection_minutes = NumberAttribute(null=True)  # sockets' lifetimes, each rounded up to a minute
    dlp_flags = NumberAttribute(null=True)           # screening entries written for the company
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def key_of(tenant_id: str, shard: int) -> str:
        return f"{tenant_id}#{shard}"

    @classmethod
    def days(cls, tenant_id: str, shard: int, first: str, last: str) -> Iterator["UsageDay"]:
        """1 Query of one shard over ``[first, last]`` (eventually consistent; ~31 items per KB-page)."""
        return cls.query(cls.key_of(tenant_id, shard), cls.day.between(first, last))
