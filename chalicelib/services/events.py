"""Events after the write: describe who hears an event, then resolve that to live connections.

Services call ``to_conversation`` / ``to_users`` only after their write
committed.  Each call becomes one *job* on the invocation's outbox
(``chalicelib/fanout.py``), which runs it after the ack, or hands it to a
delivery worker when the conversation is large.  ``run`` is where a job's
recipients are resolved, wherever it runs:

* members of the conversation (the caller picks them; too many would be a
  security bug): 1 Query per page of members;
* other companies' members only where the connection and both policies
  allow it *now*, so a delivery in flight stops crossing the moment access
  is revoked (``policy.allowed_recipients``);
* live connections: 1 BatchGetItem per 100 users of the presence table;
* then one post per connection, inline or in shards (``Outbox.post``).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Iterable

from .. import metrics, policy
from ..models import Member, Presence, split_user_key, tenant_of
from ..protocol.frames import dumps
from . import rosters

log = logging.getLogger("chat.events")


def member_keys(conversation_id: str) -> list[str]:
    return [m.user_key for m in Member.of_conversation(conversation_id)]


def to_conversation(out: Any, conv: Any, frame: dict[str, Any], *, origin: str, now_ms: int,
                    exclude_connection: str | None = None, purpose: str = "message",
                    mention: dict[str, Any] | None = None, skip_keys: Iterable[str] = (),
                    also_keys: Iterable[str] = ()) -> None:
    """Every member of ``conv`` (plus ``also_keys``, minus ``skip_keys``) hears ``frame``.

    ``mention`` (``{"all": bool, "users": [user ids]}``) sets the frame's
    ``mention`` flag per recipient.  A conversation of more than
    ``large_members`` members is resolved on a delivery worker, never in
    the request.
    """
    job: dict[str, Any] = {"kind": "conversation", "conversationId": conv.conversation_id, "frame": frame,
                           "origin": origin, "nowMs": now_ms, "purpose": purpose}
    if exclude_connection:
        job["exclude"] = exclude_connection
    if mention is not None:
        job["mention"] = mention
    if skip_keys:
        job["skip"] = sorted(set(skip_keys))
    if also_keys:
        job["also"] = sorted(set(also_keys))
    if getattr(conv, "roster", None) == "ready":
        job["roster"] = True
    out.add(job, on_worker=int(conv.member_count or 0) > out.limits.large_members)


def to_users(out: Any, keys: Iterable[str], frame: dict[str, Any], *, origin: str, now_ms: int,
             exclude_connection: str | None = None, purpose: str = "message", on_worker: bool = False) -> None:
    """The named users (a handful: new members, an uploader) hear ``frame`` on every device
    (``on_worker``: resolved and posted by a delivery worker, e.g. from a function that posts nothing)."""
    job: dict[str, Any] = {"kind": "users", "keys": list(dict.fromkeys(keys)), "frame": frame,
                           "origin": origin, "nowMs": now_ms, "purpose": purpose}
    if exclude_connection:
        job["exclude"] = exclude_connection
    out.add(job, on_worker=on_worker)


def run(out: Any, job: dict[str, Any]) -> dict[str, list[str]]:
    """Resolve one job to connections and post (the outbox's runner).

    Returns, per payload, the connections whose post failed after the
    delivery's retries (a worker queues them again).
    """
    kind = job.get("kind")
    if kind == "connections":
        failed_posts = out.post(list(job["connections"]), job["payload"])
        return {job["payload"]: failed_posts} if failed_posts else {}
    if kind == "push":
        # Mobile push of a DM or mention (docs/push.md): always on a delivery worker.
        from .. import push

        sent = push.run(job)
        out.tally.charge(tenant_of(job.get("origin", "")), pushes=int((sent or {}).get("sent") or 0))
        return {}
    if kind == "push.clear":
        # Read on one device: the user's other phones drop the notification and badge (docs/push.md).
        from .. import push

        push.clear(job)
        return {}
    if kind == "roster.build":
        rosters.build_step(out, job, int(time.time()))
        return {}
    if kind == "roster.range":
        # One range of a huge roster, planned by another worker (rosters.plan).
        failed: dict[str, list[str]] = {}
        for chunk in rosters.in_range(job["conversationId"], job["after"], job["below"], out.limits.roster_page):
            _merge(failed, _post_live(out, job, _allowed(job, rosters.by_user(chunk))))
        return failed
    if kind not in ("conversation", "users"):
        raise ValueError(f"unknown delivery job kind {kind!r}")
    skip = set(job.get("skip") or ())
    if kind == "conversation" and job.get("roster"):
        # Large conversation: its online roster, not its members (docs/delivery.md).  A roster
        # longer than one page is cut into ranges that other workers read and post at once.
        entries, ranges = rosters.plan(job["conversationId"], out.limits.roster_page, out.limits.roster_range)
        if ranges:
            base = {k: v for k, v in job.items() if k not in ("also", "roster")}
            out.queue([{**base, "kind": "roster.range", "after": after, "below": below} for after, below in ranges])
            metrics.count("DeliveryRosterRanges", len(ranges))
        online = rosters.by_user(entries)
        also = list(job.get("also") or ())
        for key in also:
            online.setdefault(key, set())
        allowed = _allowed_keys(job, online)
        live = {k: conns for k, conns in online.items() if k in allowed and conns}
        live.update(Presence.connections_of([k for k in also if k in allowed]))
    else:
        if kind == "conversation":
            keys = member_keys(job["conversationId"]) + list(job.get("also") or ())
        else:
            keys = list(job["keys"])
        keys = [k for k in dict.fromkeys(keys) if k not in skip]
        if not keys:
            return {}
        live = Presence.connections_of(policy.allowed_recipients(job["origin"], keys, int(job["nowMs"]),
                                                                 job.get("purpose") or "message"))
    failed = _post_live(out, job, live)
    if failed:
        log.warning("event not delivered to every device",
                    extra={"failed": sum(len(v) for v in failed.values())})
    return failed


def _allowed_keys(job: dict[str, Any], keys: Iterable[str]) -> set[str]:
    """``keys`` minus skipped users and those the external-access policies refuse now."""
    skip = set(job.get("skip") or ())
    return set(policy.allowed_recipients(job["origin"], [k for k in keys if k not in skip],
                                         int(job["nowMs"]), job.get("purpose") or "message"))


def _allowed(job: dict[str, Any], online: dict[str, set[str]]) -> dict[str, set[str]]:
    allowed = _allowed_keys(job, online)
    return {k: conns for k, conns in online.items() if k in allowed and conns}


def _post_live(out: Any, job: dict[str, Any], live: dict[str, set[str]]) -> dict[str, list[str]]:
    """Post the job's frame to ``live`` (user key -> connections), one payload per mention flag."""
    exclude = job.get("exclude")
    mention = job.get("mention")
    by_payload: dict[str, list[str]] = defaultdict(list)
    for key, conns in live.items():
        frame = job["frame"]
        if mention is not None:
            frame = {**frame, "mention": bool(mention.get("all")) or split_user_key(key)[1] in (mention.get("users") or ())}
        by_payload[dumps(frame)].extend(c for c in conns if c != exclude)
    failed: dict[str, list[str]] = {}
    for payload, conns in by_payload.items():
        failed_posts = out.post(conns, payload)
        if failed_posts:
            failed[payload] = failed_posts
    return failed


def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    for payload, conns in more.items():
        into.setdefault(payload, []).extend(conns)
