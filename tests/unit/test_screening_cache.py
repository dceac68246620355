"""The per-container rule cache: TTL, reuse of an unchanged compiled set, invalidation. No network:
the one BatchGetItem is replaced by a counting fake of ``DlpRules.many``."""
import json

import pytest

from chalicelib.models import DlpRules
from chalicelib.services import screening

RULES = [{"id": "cards", "type": "detector", "detector": "payment_card", "action": "block"}]


@pytest.fixture
def store(monkeypatch):
    items, calls = {}, []

    def many(tenant_ids):
        calls.append(list(tenant_ids))
        return {t: items[t] for t in tenant_ids if t in items}

    monkeypatch.setattr(DlpRules, "many", classmethod(lambda cls, ids: many(ids)))
    screening._cache.clear()
    yield items, calls
    screening._cache.clear()


def test_one_fetch_per_ttl_for_all_companies_and_compiled_sets_are_reused(store):
    items, calls = store
    items["acme"] = DlpRules(tenant_id="acme", rules=json.dumps(RULES), version=1)
    first = screening.rulesets(["acme", "globex"], now=100.0, ttl=30)
    assert calls == [["acme", "globex"]] and bool(first[0]) and not first[1]
    assert screening.rulesets(["globex", "acme"], now=129.0, ttl=30)[1] is first[0]  # cached: no request
    assert len(calls) == 1
    again = screening.rulesets(["acme"], now=131.0, ttl=30)  # expired: refetched, same version: same object
    assert len(calls) == 2 and again[0] is first[0]
    items["acme"] = DlpRules(tenant_id="acme", rules="[]", version=2)
    assert not screening.rulesets(["acme"], now=200.0, ttl=30)[0]


def test_zero_ttl_always_refetches_and_invalidate_drops_one_tenant(store):
    _, calls = store
    screening.rulesets(["acme"], now=1.0, ttl=0)
    screening.rulesets(["acme"], now=1.0, ttl=0)
    assert len(calls) == 2
    screening.rulesets(["acme"], now=1.0, ttl=60)
    screening.invalidate("acme")
    screening.rulesets(["acme"], now=1.0, ttl=60)
    assert len(calls) == 3  # the ttl=60 read was served from the cache
