"""eDiscovery exports: one job item per export (docs/compliance.md "Export").

A module of its own: the message path builds the retention and hold models,
never this one (a cold start builds each model class it imports).
"""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class Export(Model):
    """An eDiscovery export job: its scope, where it is, and what it has written so far.

    The job runs in steps (one SQS message each); ``step`` orders them and
    makes a redelivered step a no-op.  ``plan`` is the list of conversation
    ids, ``position``/``before_seq`` the cursor in it, ``parts`` the
    multipart upload's finished parts.
    """

    class Meta(_Meta):
        table_name = _S.exports_table

    tenant_id = UnicodeAttribute(hash_key=True)
    export_id = UnicodeAttribute(range_key=True)
    state = UnicodeAttribute(default="queued")  # queued | running | done | failed
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    from_ms = NumberAttribute()
    to_ms = NumberAttribute()
    user_ids = ListAttribute(of=UnicodeAttribute, null=True)
    conversation_ids = ListAttribute(of=UnicodeAttribute, null=True)
    plan = ListAttribute(of=UnicodeAttribute, null=True)  # the current chunk of conversation ids
    position = NumberAttribute(default=0)  # index in ``plan``
    listing = UnicodeAttribute(null=True)  # JSON: where the conversation listing goes on (None: not begun)
    listed = NumberAttribute(null=True)  # conversations listed so far (every chunk)
    chunk_base = NumberAttribute(null=True)  # conversations done in the chunks before ``plan``
    listing_done = BooleanAttribute(null=True)
    before_seq = NumberAttribute(null=True)
    newer_at = NumberAttribute(null=True)  # created_at of the message at before_seq (gap tombstones)
    step = NumberAttribute(default=0)
    object_key = UnicodeAttribute()
    upload_id = UnicodeAttribute(null=True)
    parts = ListAttribute(of=MapAttribute, default=list)
    counts = MapAttribute(default=dict)  # conversations, messages, files, tombstones, bytes
    error = UnicodeAttribute(null=True)
    updated_at = NumberAttribute(default=0)
    finished_at = NumberAttribute(null=True)
