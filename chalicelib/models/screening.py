"""Screening (DLP): each company's rule set (its review entries: ``review``)."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class DlpRules(Model):
    """A company's screening rule set, replaced as a whole by its admins (1 item per tenant).

    ``rules`` is the normalized rule list as JSON text (never queried by
    field; at most 50 rules of at most ~7 KB each).  ``version`` grows by one per
    save, so a warm container that refetches an unchanged set keeps its
    compiled form, and a save may be conditioned on the version it read.
    """

    class Meta(_Meta):
        table_name = _S.dlp_rules_table

    tenant_id = UnicodeAttribute(hash_key=True)
    rules = UnicodeAttribute(default="[]")
    version = NumberAttribute(default=0)
    updated_at = NumberAttribute(default=0)
    updated_by = UnicodeAttribute(null=True)
    # What a blocked attempt's entry keeps of the refused text (docs/compliance.md
    # "Blocked attempts"): masked (default) | kept | hashed | dropped.
    blocked_text = UnicodeAttribute(null=True)
    # The company's secret for "hashed" (hex, created with the setting, never returned).
    text_key = UnicodeAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str) -> "DlpRules | None":
        """GetItem: 1 request."""
        try:
            return cls.get(tenant_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def many(cls, tenant_ids: list[str]) -> dict[str, "DlpRules"]:
        """BatchGetItem: the rule sets of the companies in one conversation (1 request)."""
        return {item.tenant_id: item for item in cls.batch_get(list(dict.fromkeys(tenant_ids)))}
