"""Directory sync (SCIM 2.0): groups and the SCIM bearer credentials (docs/scim.md)."""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class DirectoryGroup(Model):
    """A directory group pushed by the tenant's IdP over SCIM.

    ``members`` holds user ids of the same tenant.  Each member's
    ``User.groups`` carries the group's display name as well, so the
    external-access policy (chalicelib/policy.py) reads it with the one
    GetItem of the user it already does.
    """

    class Meta(_Meta):
        table_name = _S.groups_table

    tenant_id = UnicodeAttribute(hash_key=True)
    group_id = UnicodeAttribute(range_key=True)
    display_name = UnicodeAttribute()
    external_id = UnicodeAttribute(null=True)
    members = UnicodeSetAttribute(default=set)
    # The IdP's members[].display, JSON {user id: display} (only members it was sent for).
    member_display = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    # Expert topics naming this group (docs/experts.md): SCIM marks members it adds (models.mark_expert_pool).
    expert_topics = UnicodeSetAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str, group_id: str) -> "DirectoryGroup | None":
        """GetItem: 1 request."""
        try:
            return cls.get(tenant_id, group_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def of_tenant(cls, tenant_id: str) -> Iterator["DirectoryGroup"]:
        """Query on the tenant's partition: 1 request per 1 MB page."""
        return cls.query(tenant_id)


class ScimCredential(Model):
    """A tenant's SCIM bearer token, stored only as its SHA-256.

    Two kinds of item share the table: ``token#<sha256 hex>`` -> tenant (the
    lookup on every SCIM request: 1 GetItem), and ``tenant#<tenant id>`` ->
    the hash of the tenant's current token (so rotation and revocation find
    the old one).  Both change in one transaction.
    """

    class Meta(_Meta):
        table_name = _S.scim_tokens_table

    key = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    token_hash = UnicodeAttribute(null=True)  # on the tenant# item
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()

    @classmethod
    def find(cls, key: str) -> "ScimCredential | None":
        """GetItem: 1 request."""
        try:
            return cls.get(key, consistent_read=True)
        except cls.DoesNotExist:
            return None
