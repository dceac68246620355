"""What every model module shares: the settings' region, the Meta defaults, condition checks,
cross-table batch reads and transactions, and the user key format (``<tenant>#<user>``)."""
from __future__ import annotations

import time
from typing import Any

from pynamodb.connection import Connection as PynamoConnection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ..config import settings


_S = settings()


def condition_failed(exc: Exception) -> bool:
    """True when a pynamodb write error is a failed ConditionExpression (not throttling etc.)."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class _Meta:
    region = _S.region
    billing_mode = "PAY_PER_REQUEST"
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 3


def user_key(tenant_id: str, user_id: str) -> str:
    """The key naming a user of a tenant everywhere a model stores one: ``<tenant>#<user>``."""
    return f"{tenant_id}#{user_id}"


def split_user_key(key: str) -> tuple[str, str]:
    """``user_key``'s inverse: (tenant id, user id)."""
    tenant, _, user = key.partition("#")
    return tenant, user


def tenant_of(key: str) -> str:
    """The tenant id of a user key."""
    return key.partition("#")[0]


def user_ref(key: str) -> dict[str, str]:
    """A user key as views and events show it: ``{"tenantId", "userId"}``."""
    tenant, user = split_user_key(key)
    return {"tenantId": tenant, "userId": user}


def batch_get_across(wanted: list[tuple[type[Model], tuple[Any, ...], bool]]) -> list[Any]:
    """One BatchGetItem over several tables: ``(model, key values, consistent)`` in, items (or None) out.

    pynamodb batches one table at a time; the send path reads a conversation,
    the caller's membership and the retention rules together (1 request
    instead of 3).  At most 100 keys; unprocessed keys are asked again.
    """
    if not wanted:
        return []
    request: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for model, key, consistent in wanted:
        table = request.setdefault(model.Meta.table_name, {"Keys": []})
        if consistent:
            table["ConsistentRead"] = True
        if (model.Meta.table_name, tuple(key)) not in seen:  # BatchGetItem refuses duplicate keys
            seen.add((model.Meta.table_name, tuple(key)))
            attrs = [model._hash_key_attribute(), model._range_key_attribute()][:len(key)]
            table["Keys"].append({a.attr_name: {a.attr_type: a.serialize(v)} for a, v in zip(attrs, key)})
    models = {m.Meta.table_name: m for m, _, _ in wanted}
    found: dict[tuple[str, tuple[Any, ...]], Any] = {}
    client = wanted[0][0]._get_connection().connection.client
    pending = request
    for attempt in range(8):
        if not pending:
            break
        resp = client.batch_get_item(RequestItems=pending)
        for table, items in resp.get("Responses", {}).items():
            model = models[table]
            names = [model._hash_key_attribute().attr_name] + (
                [model._range_key_attribute().attr_name] if model._range_key_attribute() else [])
            for raw in items:
                item = model.from_raw_data(raw)
                found[(table, tuple(getattr(item, n) for n in names))] = item
        pending = resp.get("UnprocessedKeys") or {}
        if pending:
            time.sleep(min(0.5, 0.02 * 2 ** attempt))
    if pending:
        raise RuntimeError("BatchGetItem left keys unprocessed after retries")
    return [found.get((m.Meta.table_name, tuple(_attr_python(m, key)))) for m, key, _ in wanted]


def _attr_python(model: type[Model], key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Key values as the model's attributes hold them (numbers come back as int/float)."""
    attrs = [model._hash_key_attribute(), model._range_key_attribute()][:len(key)]
    return tuple(a.deserialize(a.serialize(v)) for a, v in zip(attrs, key))


_tx_connection: Any = None


def transaction() -> TransactWrite:
    """A TransactWriteItems batch over any of these tables (all-or-nothing)."""
    global _tx_connection
    if _tx_connection is None:
        _tx_connection = PynamoConnection(region=_S.region, max_retry_attempts=3)
    return TransactWrite(connection=_tx_connection)
