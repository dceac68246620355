"""A fix to the local stack's SQS (moto 5.2.5), so that receiving costs what it does on AWS.

moto checks each message it hands out against the queue's retention period by
calling ``get_queue_attributes``, which computes *every* attribute, among them
three ``Approximate*`` counts that walk the whole queue.  A receive of 10 thus
walks the queue about 30 times: with a thousand delayed messages (presence's
idle wake-ups, one per online user) one receive took 1.8 s, and due messages
(presence publications, file scans) waited behind them.  This reads the one
attribute the check needs.  Only the local stack applies it.
"""
from __future__ import annotations

from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import SQSBackend


def _within_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


def apply() -> None:
    """Replace moto's per-message retention check (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention
