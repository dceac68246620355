"""Screening (DLP) on the write path, and its admin side: rule sets, and the entries reviewers read.

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
import secrets
import uuid
from typing import Any

from pynamodb.exceptions import PutError

from .. import dlp, usage
from ..models import Conversation, DlpFlag, DlpRules, condition_failed, split_user_key
from ..protocol.errors import Conflict, MessageBlocked, ValidationFailed
from .audit import audit, next_cursor, require_admin, require_reviewer, time_window
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
    flag = DlpFlag(tenant_id=tenant, flag_id=f"{now:013d}#{uuid.uuid4().hex}", at=now, source=source,
                   conversation_id=conversation_id, seq=seq, message_id=message_id, file_id=file_id,
                   sender_key=f"{call.principal.tenant_id}#{call.principal.user_id}", rule_ids=rule_ids,
                   action=action, after_seq=after_seq, state="open", history=[], **text)
    flag.index_keys()
    try:
        flag.save(condition=DlpFlag.flag_id.does_not_exist())
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


# --- admin REST: GET/PUT /admin/dlp/rules (admins), GET /admin/dlp/flags (reviewers) --------

def _limits() -> dict[str, int]:
    return {"rules": dlp.MAX_RULES, "patternChars": dlp.MAX_PATTERN_CHARS, "keywords": dlp.MAX_KEYWORDS,
            "keywordChars": dlp.MAX_KEYWORD_CHARS, "ruleSetChars": dlp.MAX_RULESET_CHARS}


def _rules_view(rules: list[dict[str, Any]], version: int, blocked_text: str | None) -> dict[str, Any]:
    return {"rules": rules, "version": version, "blockedText": blocked_text or "masked",
            "detectors": list(dlp.DETECTORS), "limits": _limits()}


def get_rules(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(call)
    item = DlpRules.find(call.principal.tenant_id)
    if item is None:
        return _rules_view([], 0, None)
    return _rules_view(json.loads(item.rules), int(item.version), item.blocked_text)


def set_rules(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the whole rule set: validated (each pattern compiled), versioned, audited."""
    require_admin(call)
    tenant = call.principal.tenant_id
    try:
        rules = dlp.normalize(body["rules"])
    except dlp.RuleError as err:
        fields = {"ruleId": err.rule_id} if err.rule_id else {}
        raise ValidationFailed(str(err), **fields) from None
    item = DlpRules.find(tenant)
    current = int(item.version) if item is not None else 0
    if body.get("version") is not None and int(body["version"]) != current:
        raise Conflict(f"The rules changed meanwhile (version {current}); reload and retry.", version=current)
    before = json.loads(item.rules) if item is not None else []
    before_text = (item.blocked_text if item is not None else None) or "masked"
    blocked_text = body.get("blockedText") or before_text
    key = item.text_key if item is not None else None
    if blocked_text == "hashed" and not key:
        key = secrets.token_hex(32)  # the company's own: hashes never compare across companies
    new = DlpRules(tenant_id=tenant, rules=json.dumps(rules, separators=(",", ":")), version=current + 1,
                   updated_at=call.now_ms(), updated_by=call.principal.user_id, blocked_text=blocked_text,
                   text_key=key)
    try:
        new.save(condition=DlpRules.tenant_id.does_not_exist() if item is None else DlpRules.version == current)
    except PutError as exc:
        if condition_failed(exc):
            raise Conflict("The rules changed meanwhile; reload and retry.") from None
        raise
    invalidate(tenant)
    audit(call, "dlp.rules.update", tenant, before={"version": current, "rules": before, "blockedText": before_text},
          after={"version": current + 1, "rules": rules, "blockedText": blocked_text})
    return _rules_view(rules, current + 1, blocked_text)


def flag_view(f: DlpFlag) -> dict[str, Any]:
    tenant, user = split_user_key(f.sender_key)
    return {"id": f.flag_id, "at": int(f.at), "source": f.source, "conversationId": f.conversation_id,
            "seq": int(f.seq) if f.seq is not None else None, "messageId": f.message_id, "fileId": f.file_id,
            "sender": {"tenantId": tenant, "userId": user}, "ruleIds": list(f.rule_ids or []),
            "action": f.action, "excerpt": f.excerpt, "textPolicy": f.text_policy, "text": f.text,
            "textTruncated": bool(f.text_truncated) if f.text is not None else None, "textHash": f.text_hash}


def list_flags(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The company's entries, newest first, by time range; 1 Query per page + 1 audit append.

    Reading content is the reviewers' (docs/compliance.md "Review queue"): an
    admin without the ``reviewer`` role is refused, and every page read is audited.
    """
    require_reviewer(call)
    limit = int(body.get("limit") or 50)
    lower, upper = time_window(body)
    page = DlpFlag.page(call.principal.tenant_id, lower, upper, limit)
    audit(call, "review.flags.read", None,
          after={"filters": {k: body[k] for k in ("from", "to", "cursor") if body.get(k) is not None},
                 "itemIds": [f.flag_id.replace("#", "-", 1) for f in page]})
    return {"flags": [flag_view(f) for f in page],
            "nextCursor": next_cursor(page[-1].flag_id if len(page) == limit else None)}
