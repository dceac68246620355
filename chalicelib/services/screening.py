"""Screening (DLP) on the write path; its admin side (rule sets, the entries reviewers read) is ``screening_admin``.

Every path that stores typed text calls :func:`screen` after access checks
and before anything is written (message send and edit, file name,
conversation name and topic, reaction emoji; a custom status calls
:func:`screen_own`): a block writes a review entry for each company whose
block rule matched (``action`` ``block``, :func:`record_blocked`) and raises
``message_blocked``, a redact returns the text to store and deliver, a flag
is recorded with :func:`record_flags` once the write succeeded.  Every
company in the conversation has its rules applied (the sender's first); the
decisions themselves are in :mod:`chalicelib.dlp`.

Rule sets are cached per tenant in the warm container for
``dlp_cache_seconds`` (a save invalidates the saving container at once;
others pick it up within the TTL).  A cache miss costs one BatchGetItem for
all the conversation's companies; a hit costs no request.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from .. import dlp, models, usage
from ..models import Conversation, DlpRules
from ..protocol.errors import MessageBlocked
from .context import Call

log = logging.getLogger("chat.screening")

CACHE_MAX_TENANTS = 256
# tenant -> (fetched at, compiled rule set); per container, never shared.
_cache: dict[str, tuple[float, dlp.Ruleset]] = {}


def rulesets(tenant_ids: list[str], now: float, ttl: float) -> list[dlp.Ruleset]:
    """The compiled rule sets of these tenants, in this order (≤ 1 BatchGetItem)."""
    stale = [t for t in dict.fromkeys(tenant_ids) if t not in _cache or now - _cache[t][0] >= ttl]
    if stale:
        items = DlpRules.many(stale)
        for tenant in stale:
            item = items.get(tenant)
            version = int(item.version) if item is not None else 0
            cached = _cache.get(tenant)
            if cached is not None and cached[1].version == version:
                ruleset = cached[1]  # unchanged: keep the compiled form
            else:
                ruleset = dlp.Ruleset.from_stored(tenant, json.loads(item.rules) if item is not None else [],
                                                  version, item.blocked_text if item is not None else None,
                                                  item.text_key if item is not None else None)
            _cache[tenant] = (now, ruleset)
        while len(_cache) > CACHE_MAX_TENANTS:
            _cache.pop(min(_cache, key=lambda t: _cache[t][0]))
    return [_cache[t][1] for t in tenant_ids]


def invalidate(tenant_id: str) -> None:
    _cache.pop(tenant_id, None)


def tenants_of(call: Call, conv: Conversation) -> list[str]:
    """Whose rules apply: the sender's company first, then every other company in the conversation."""
    me = call.principal.tenant_id
    return [me] + sorted((set(conv.tenants or ()) | {conv.tenant_id}) - {me})


def screen(call: Call, conv: Conversation, text: str, source: str = "message", *, seq: int | None = None,
           message_id: str | None = None, exists: bool = True) -> dlp.Verdict:
    """Screen ``text`` for ``conv`` under every applicable company's rules; raise on block.

    ``seq``/``message_id`` name the message an edit or a reaction is about and
    ``exists=False`` says ``conv`` is not stored yet (``conversation.create``):
    they only go into a blocked attempt's record, which then names no conversation.
    """
    return _screen(call, tenants_of(call, conv), text, source, conv.conversation_id if exists else None,
                   seq, message_id, int(conv.last_seq or 0) if exists else None)


def screen_own(call: Call, text: str, source: str) -> dlp.Verdict:
    """Screen text that belongs to no conversation (a custom status) under the caller's company's rules only."""
    return _screen(call, [call.principal.tenant_id], text, source, None, None, None)


def _screen(call: Call, tenants: list[str], text: str, source: str, conversation_id: str | None,
            seq: int | None, message_id: str | None, after_seq: int | None = None) -> dlp.Verdict:
    sets = rulesets(tenants, call.clock(), call.settings.dlp_cache_seconds)
    if not any(sets):
        return dlp.Verdict(None, text, text)
    verdict = dlp.screen(text, sets)
    if verdict.action is not None:
        log.info("screening hit", extra={"conversation": conversation_id, "source": source,
                                         "dlp_action": verdict.action, "matches": verdict.matches,
                                         "rules": [f"{h.tenant_id}/{h.rule.id}" for h in verdict.hits]})
    hit = verdict.blocking
    if hit is not None:
        record_blocked(call, verdict, conversation_id, source, seq=seq, message_id=message_id, after_seq=after_seq)
        raise MessageBlocked(hit.rule.id, hit.rule.name, hit.tenant_id)
    return verdict


def _entry(call: Call, tenant: str, rule_ids: list[str], action: str, text: dict[str, Any],
           conversation_id: str | None, source: str, seq: int | None, message_id: str | None,
           file_id: str | None, what: str, after_seq: int | None = None) -> None:
    """Write one review entry, open in the review queue (1 conditional PutItem, which also writes the
    queue's three index entries); a failure is logged without content, never raised.

    ``text``: the entry's ``excerpt`` (and for a blocked attempt what its
    company's policy keeps, :func:`dlp.blocked_text`)."""
    now = call.now_ms()
    flag = models.DlpFlag(tenant_id=tenant, flag_id=f"{now:013d}#{uuid.uuid4().hex}", at=now, source=source,
                   conversation_id=conversation_id, seq=seq, message_id=message_id, file_id=file_id,
                   sender_key=f"{call.principal.tenant_id}#{call.principal.user_id}", rule_ids=rule_ids,
                   action=action, after_seq=after_seq, state="open", history=[], **text)
    flag.index_keys()
    try:
        flag.save(condition=models.DlpFlag.flag_id.does_not_exist())
    except Exception:  # noqa: BLE001 - the caller's outcome (stored or refused) must not change
        log.exception(f"screening {what} not written", extra={"tenant": tenant, "conversation": conversation_id,
                                                              "source": source, "seq": seq, "rules": rule_ids})
        return
    usage.add(tenant, now / 1000, dlpFlags=1)  # the company's usage of the day (1 UpdateItem)


def record_flags(call: Call, verdict: dlp.Verdict, conversation_id: str | None, source: str, *,
                 seq: int | None = None, message_id: str | None = None, file_id: str | None = None) -> None:
    """One review entry per company whose flag rule matched (1 PutItem each).

    Called after the text was stored: a failure here is logged (without
    content) and does not undo or fail the send.
    """
    if verdict.action is None:
        return
    for tenant, rule_ids in verdict.flags().items():
        _entry(call, tenant, rule_ids, verdict.action, {"excerpt": verdict.excerpt(tenant)}, conversation_id,
               source, seq, message_id, file_id, "flag")


def record_blocked(call: Call, verdict: dlp.Verdict, conversation_id: str | None, source: str, *,
                   seq: int | None = None, message_id: str | None = None, file_id: str | None = None,
                   after_seq: int | None = None) -> None:
    """A blocked attempt: one entry (``action`` ``block``) per company whose block rule matched (1 PutItem each).

    Written before ``message_blocked`` is raised; a failure is logged
    (``screening block not written``, without content) and the refusal stays
    exactly the same.  A company whose rules only flagged or redacted this
    text gets nothing: the text was not stored.  ``after_seq`` (the
    conversation's last seq then) places the attempt for a review case's context.
    Each entry keeps of the text what its own company's policy says
    (``blockedText``); the rule sets were just read, so this is a cache hit.
    """
    blocked = verdict.flags("block")
    policies = {rs.tenant_id: rs for rs in rulesets(list(blocked), call.clock(), call.settings.dlp_cache_seconds)}
    for tenant, rule_ids in blocked.items():
        rs = policies[tenant]
        try:
            text = dlp.blocked_text(verdict, tenant, rs.blocked_text, rs.text_key)
        except ValueError:  # "hashed" without a key cannot be stored: keep nothing rather than the text
            text = dlp.blocked_text(verdict, tenant, "dropped", None)
        _entry(call, tenant, rule_ids, "block", text, conversation_id, source, seq, message_id, file_id,
               "block", after_seq)
