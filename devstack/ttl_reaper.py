"""The local stack's share of DynamoDB's TTL: delete the expired items its emulator leaves behind.

DynamoDB Local 1.25.1 deletes expired items of a table, but the first time
its TTL pass meets an expired item that is missing from one of the table's
global secondary indexes, it stops expiring that table for good: neither
that item nor any later one goes, even after the item is deleted by hand
(measured; nothing is logged; other tables go on).  Our indexes are sparse
on purpose (``by_thread`` holds only replies, ``by_retained_sender`` only
messages under retention), so locally the messages table would stop
expiring at the first top-level message due - which AWS would delete.
moto's DynamoDB (the fallback) deletes nothing.

So for the tables that have TTL and an index (every TTL table on moto) the
stack does what AWS does: every ``interval`` seconds it Scans each for
items whose TTL attribute has passed and deletes each under that same
condition.  It talks to the emulator directly, not through the metering
proxy: AWS's TTL deletes cost no capacity and should not show in benches.
Like AWS it ignores TTL values more than five years in the past and
non-numbers.  A Scan is fine here (a development tool, on a small
database); the product never scans.  tests/e2e/test_ttl_reaping.py pins
the emulator's behaviour: when a newer one expires such tables, this goes.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("devstack.ttl")

FIVE_YEARS_S = 5 * 365 * 86400


class TtlReaper:
    def __init__(self, client: Any, interval: float = 2.0, all_ttl_tables: bool = False,
                 clock: Any = time.time) -> None:
        self.client = client
        self.interval = interval
        self.all_ttl_tables = all_ttl_tables
        self.clock = clock
        self._tables: dict[str, tuple[str, list[str]]] | None = None  # name -> (ttl attribute, key names)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tables(self) -> dict[str, tuple[str, list[str]]]:
        """The tables to reap (looked up once: the stack creates its tables before starting this)."""
        if self._tables is None:
            found = {}
            for page in self.client.get_paginator("list_tables").paginate():
                for name in page["TableNames"]:
                    ttl = self.client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                    if ttl.get("TimeToLiveStatus") != "ENABLED":
                        continue
                    table = self.client.describe_table(TableName=name)["Table"]
                    if self.all_ttl_tables or table.get("GlobalSecondaryIndexes"):
                        found[name] = (ttl["AttributeName"], [k["AttributeName"] for k in table["KeySchema"]])
            self._tables = found
        return self._tables

    def reap_once(self) -> int:
        """One pass over every table; returns how many items it deleted."""
        deleted = 0
        for name, (attr, keys) in self.tables().items():
            now = int(self.clock())
            key_names = {f"#k{i}": k for i, k in enumerate(keys)}
            values = {":now": {"N": str(now)}, ":oldest": {"N": str(now - FIVE_YEARS_S)}}
            expired = "#ttl < :now AND #ttl > :oldest"
            pages = self.client.get_paginator("scan").paginate(
                TableName=name, FilterExpression=expired, ExpressionAttributeNames={"#ttl": attr, **key_names},
                ExpressionAttributeValues=values, ProjectionExpression=", ".join(key_names))
            for page in pages:
                for key in page["Items"]:
                    try:
                        self.client.delete_item(TableName=name, Key=key, ConditionExpression=expired,
                                                ExpressionAttributeNames={"#ttl": attr},
                                                ExpressionAttributeValues=values)
                        deleted += 1
                    except self.client.exceptions.ConditionalCheckFailedException:
                        pass  # rewritten meanwhile (e.g. a legal hold took the expiry off)
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap_once()
            except Exception as exc:  # noqa: BLE001 - the emulator is busy or shutting down; next pass
                log.warning("ttl reap failed: %r", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ttl-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
