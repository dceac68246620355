"""Uploaded files and each company's stored-bytes quota."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from .base import _Meta, _S, condition_failed


class File(Model):
    """One uploaded file: what the uploader declared, where the object is, and its scan state.

    ``status``: ``pending`` (upload URL issued, not yet scanned), ``clean``
    (scanned; downloadable; ``seq`` is its notice message), ``quarantined``
    (object moved under ``quarantine/``), ``deleted`` (its message was
    deleted and the object with it) or ``expired`` (no upload arrived before
    the form expired; the quota reservation was given back).  ``expires_at`` (TTL) is set on every
    state but ``clean``, so abandoned and rejected records go away by themselves.
    """

    class Meta(_Meta):
        table_name = _S.files_table

    file_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    conversation_id = UnicodeAttribute()
    uploader_key = UnicodeAttribute()  # "<tenant>#<user>"
    name = UnicodeAttribute()
    object_key = UnicodeAttribute()  # "<tenant>/<conversation>/<file id>/<safe name>"
    size = NumberAttribute()
    content_type = UnicodeAttribute()
    sha256 = UnicodeAttribute(null=True)  # declared by the uploader (hex), checked at scan time
    status = UnicodeAttribute(default="pending")
    reason = UnicodeAttribute(null=True)  # why quarantined or rejected
    seq = NumberAttribute(null=True)
    # The object version that was scanned: downloads are pinned to it, so an overwrite through a
    # still-valid upload URL is never served (the bucket is versioned).
    version_id = UnicodeAttribute(null=True)
    scan_attempts = NumberAttribute(default=0)
    # Set (conditionally on ``pending``) when the object's ObjectCreated event arrives: a pending record
    # without it at the upload form's expiry + grace is ``expired`` and its reservation released, once.
    uploaded_at = NumberAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    expires_at = NumberAttribute(null=True)
    # Its message was deleted while a legal hold covered it: the scanned version is kept (S3 Object Lock
    # legal hold ON), downloadable by the company's admins only, until the last hold ends (docs/compliance.md).
    held_at = NumberAttribute(null=True)
    # Set (conditionally, once) when the bytes went back to the tenant's quota because a retention expiry
    # was set on the file (the bytes are committed to go); removed, with the bytes charged again, when a
    # retention change to "keep forever" takes the expiry away (docs/files.md "Quota").
    quota_returned = NumberAttribute(null=True)

    @classmethod
    def find(cls, file_id: str, consistent: bool = False) -> "File | None":
        """GetItem: 1 request."""
        try:
            return cls.get(file_id, consistent_read=consistent)
        except cls.DoesNotExist:
            return None


class TenantUsage(Model):
    """Bytes of files a tenant holds (pending + clean), against its quota.

    Reserved with a conditional ``ADD`` when an upload URL is issued, given
    back when a file is rejected or deleted.  ``quota_bytes`` overrides the
    stage's default for this tenant.
    """

    class Meta(_Meta):
        table_name = _S.usage_table

    tenant_id = UnicodeAttribute(hash_key=True)
    file_bytes = NumberAttribute(default=0)
    file_count = NumberAttribute(default=0)
    quota_bytes = NumberAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str) -> "TenantUsage | None":
        try:
            return cls.get(tenant_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def reserve(cls, tenant_id: str, size: int, quota: int) -> bool:
        """UpdateItem ADD under ``file_bytes <= quota - size``: False when over quota (1 request)."""
        limit = quota - size
        if limit < 0:
            return False
        try:
            cls(tenant_id=tenant_id).update(
                actions=[cls.file_bytes.add(size), cls.file_count.add(1)],
                condition=cls.file_bytes.does_not_exist() | (cls.file_bytes <= limit))
            return True
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise

    @classmethod
    def release(cls, tenant_id: str, size: int) -> None:
        """UpdateItem ADD of the negative size (1 request)."""
        cls(tenant_id=tenant_id).update(actions=[cls.file_bytes.add(-size), cls.file_count.add(-1)])

    @classmethod
    def charge(cls, tenant_id: str, size: int) -> None:
        """UpdateItem ADD of the size without a quota check (bytes already stored count again; 1 request)."""
        cls(tenant_id=tenant_id).update(actions=[cls.file_bytes.add(size), cls.file_count.add(1)])
