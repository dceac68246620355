"""SQS event-source mappings: poll moto's SQS and invoke the app's ``on_sqs_message``
handlers with the event AWS would send (delete on success, redeliver on failure)."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

log = logging.getLogger("devstack.queues")


def sqs_sources(app: Any) -> list[tuple[str, str, int]]:
    """(queue name, handler function name, batch size) of every SQS handler in the app."""
    out = []
    for source in getattr(app, "event_sources", []):
        if type(source).__name__ == "SQSEventConfig":
            out.append((source.queue, source.name, source.batch_size))
    return out


class QueuePoller:
    def __init__(self, pool: Any, sqs: Any, queue: str, function_name: str, batch_size: int) -> None:
        self.pool = pool
        self.sqs = sqs
        self.queue = queue
        self.function_name = function_name
        self.batch_size = min(10, batch_size)
        self.url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        self._stop = asyncio.Event()

    def _record(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": msg["MessageId"], "receiptHandle": msg["ReceiptHandle"], "body": msg["Body"],
            "attributes": msg.get("Attributes", {}), "messageAttributes": msg.get("MessageAttributes", {}),
            "md5OfBody": hashlib.md5(msg["Body"].encode()).hexdigest(), "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{self.queue}", "awsRegion": "us-east-1",
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                resp = await loop.run_in_executor(None, lambda: self.sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=1,
                    AttributeNames=["All"]))
            except Exception as exc:  # noqa: BLE001 - the stack is shutting down or moto hiccuped
                log.warning("sqs receive failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            msgs = resp.get("Messages") or []
            if not msgs:
                continue
            result = await self.pool.invoke_event(self.function_name,
                                                  {"Records": [self._record(m) for m in msgs]})
            if result.get("statusCode") == 200:
                await loop.run_in_executor(None, lambda: self.sqs.delete_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                for i, m in enumerate(msgs)]))

    def stop(self) -> None:
        self._stop.set()
