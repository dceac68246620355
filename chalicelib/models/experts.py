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
    # The experts of the latest wave, those who declined, when it was cancelled; a
    # waiting marker (``w#<questionId>``) also keeps the asker's display name for the queue's list.
    wave_members = UnicodeSetAttribute(null=True)
    declined = UnicodeSetAttribute(null=True)
    cancelled_at = NumberAttribute(null=True)
    asked_by = UnicodeAttribute(null=True)
    # Q&A entries (``a#<questionId>``) and their words (``k#...``): the kept answer, the
    # expert's messages it came from (JSON [seq, ...]), when; TTL = the earliest expiry of those messages.
    answer = UnicodeAttribute(null=True)
    answer_seqs = UnicodeAttribute(null=True)
    answered_at = NumberAttribute(null=True)
    expert_name = UnicodeAttribute(null=True)  # the answering expert's display name, as it was
    # Shared topics: the host's consent (topic: peer tenant ids); a question's asker of a
    # partner company; a partner's consent item ``s#<hostTenant>#<topicId>`` names its host.
    shared_with = UnicodeSetAttribute(null=True)
    asker_tenant = UnicodeAttribute(null=True)
    host_tenant = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)

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


# --- experts: questions waiting, pools ---

def expert_waiting_key(question_id: str) -> str:
    """The marker of a question nobody reachable took: exists while it waits (open and exhausted)."""
    return f"w#{question_id}"


def expert_waiting(tenant_id: str, topic_id: str, limit: int = 50) -> list[ExpertItem]:
    """A topic's waiting questions, oldest first: 1 Query (``begins_with w#<topicId>.``); accepted and
    cancelled questions have no marker, so the cost follows what waits, not the topic's history."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(f"w#{topic_id}."), limit=limit))


# --- experts: Q&A entries ---
# ``a#<questionId>``: a topic's kept question and answer (browse: Query ``begins_with a#<topicId>.``);
# ``k#<scope>\x1f<word>\x1f<questionId>`` with scope = the topic id, or ``~`` for the whole company: the
# entry's words, found by a prefix Query (the people search's token pattern, in the company's partition).
# Both carry the entry's ``expires_at`` (TTL): they go when the first of the answer's messages expires.
EXPERT_WORD_SEP = "\x1f"
EXPERT_ALL_TOPICS = "~"


def expert_entry_key(question_id: str) -> str:
    return f"a#{question_id}"


def expert_word_key(scope: str, word: str, question_id: str) -> str:
    return f"k#{scope}{EXPERT_WORD_SEP}{word}{EXPERT_WORD_SEP}{question_id}"


def expert_entries(tenant_id: str, topic_id: str, limit: int) -> list[ExpertItem]:
    """A topic's Q&A entries, newest first: 1 Query."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(f"a#{topic_id}."),
                                 scan_index_forward=False, limit=limit))


def expert_word_hits(tenant_id: str, scope: str, word: str, limit: int) -> list[str]:
    """Question ids of entries with a word starting with ``word``: 1 Query (keys only are used)."""
    prefix = f"k#{scope}{EXPERT_WORD_SEP}{word}"
    return [i.item_id.rsplit(EXPERT_WORD_SEP, 1)[1]
            for i in ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(prefix), limit=limit)]


def expert_write(puts: list[ExpertItem]) -> None:
    """BatchWriteItem: 1 request per 25 items."""
    with ExpertItem.batch_write() as batch:
        for item in puts:
            batch.save(item)


# --- experts: topics shared with a connected company ---

def expert_share_key(host_tenant: str, topic_id: str) -> str:
    """The partner's consent to a host's shared topic, in the partner's partition."""
    return f"s#{host_tenant}#{topic_id}"


def expert_shares(tenant_id: str, limit: int = 100) -> list[ExpertItem]:
    """The shared topics a company accepted: 1 Query (``begins_with s#``)."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith("s#"), limit=limit))
