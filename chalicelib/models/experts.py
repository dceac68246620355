"""Ask the experts: topics and questions in one partition per company (docs/experts.md)."""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from .base import _Meta, _S


class ExpertItem(Model):
    """A company's expert topics and the questions asked on them: one table, one partition per company.

    * ``item_id`` = ``t#<topicId>``: a topic (name, tiers of named users and directory groups as
      JSON, wave size, timeout).  A company's topics are 1 Query (``begins_with t#``).
    * ``item_id`` = ``q#<questionId>`` with ``questionId`` = ``<topicId>.<ms, 13 digits>.<hex>``:
      a question.  A topic's queue is 1 Query (``begins_with q#<topicId>.``), oldest first.
      ``offered`` holds the experts it was offered to; ``wave`` the escalation step it is at (a
      delayed job for an older step is stale); ``state`` ``open`` -> ``accepted`` by one conditional
      UpdateItem (of concurrent accepts exactly one wins).
    """

    class Meta(_Meta):
        table_name = _S.experts_table

    tenant_id = UnicodeAttribute(hash_key=True)
    item_id = UnicodeAttribute(range_key=True)
    # topic
    name = UnicodeAttribute(null=True)
    tiers = UnicodeAttribute(null=True)  # JSON [{"users": [...], "groups": [...]}, ...]
    wave_size = NumberAttribute(null=True)
    timeout_seconds = NumberAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    created_at = NumberAttribute(default=0)
    updated_at = NumberAttribute(default=0)
    # question
    topic_id = UnicodeAttribute(null=True)
    asker = UnicodeAttribute(null=True)  # user id (same company)
    text = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)  # open | accepted
    exhausted = BooleanAttribute(null=True)  # every reachable expert was offered; waits in the queue
    tier = NumberAttribute(null=True)
    wave = NumberAttribute(null=True)
    offered = UnicodeSetAttribute(null=True)
    accepted_by = UnicodeAttribute(null=True)
    accepted_at = NumberAttribute(null=True)
    conversation_id = UnicodeAttribute(null=True)

    @staticmethod
    def topic_key(topic_id: str) -> str:
        return f"t#{topic_id}"

    @staticmethod
    def question_key(question_id: str) -> str:
        return f"q#{question_id}"

    @classmethod
    def find(cls, tenant_id: str, item_id: str) -> "ExpertItem | None":
        """GetItem (consistent): 1 request."""
        try:
            return cls.get(tenant_id, item_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def topics(cls, tenant_id: str, limit: int = 100) -> list["ExpertItem"]:
        """1 Query on the company's partition."""
        return list(cls.query(tenant_id, cls.item_id.startswith("t#"), limit=limit))

    @classmethod
    def queue(cls, tenant_id: str, topic_id: str, limit: int = 50) -> list["ExpertItem"]:
        """A topic's questions, oldest first: 1 Query."""
        return list(cls.query(tenant_id, cls.item_id.startswith(f"q#{topic_id}."), limit=limit))
