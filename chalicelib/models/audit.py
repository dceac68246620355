"""The append-only audit log of admin and reviewer actions, one partition per company."""
from __future__ import annotations

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class AuditEntry(Model):
    """Append-only record of an admin action (no route updates or deletes these)."""

    class Meta(_Meta):
        table_name = _S.audit_table

    tenant_id = UnicodeAttribute(hash_key=True)
    entry_id = UnicodeAttribute(range_key=True)  # "<ms, 13 digits>#<uuid>": ordered by time
    at = NumberAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    before = MapAttribute(null=True)
    after = MapAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)
