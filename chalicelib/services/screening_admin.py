"""Screening's admin side: a company's rule set (admins) and its review entries' list (reviewers).

``GET``/``PUT /admin/dlp/rules`` and ``GET /admin/dlp/flags``.  Apart from
``screening`` (the write path), so that a send loads neither the audit
service nor the review entries' models on its cold start.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

from pynamodb.exceptions import PutError

from .. import dlp, models
from ..models import DlpRules, condition_failed, split_user_key
from ..protocol.errors import Conflict, ValidationFailed
from .audit import audit, next_cursor, require_admin, require_reviewer, time_window
from .context import Call
from .screening import invalidate


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


def flag_view(f: models.DlpFlag) -> dict[str, Any]:
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
    page = models.DlpFlag.page(call.principal.tenant_id, lower, upper, limit)
    audit(call, "review.flags.read", None,
          after={"filters": {k: body[k] for k in ("from", "to", "cursor") if body.get(k) is not None},
                 "itemIds": [f.flag_id.replace("#", "-", 1) for f in page]})
    return {"flags": [flag_view(f) for f in page],
            "nextCursor": next_cursor(page[-1].flag_id if len(page) == limit else None)}
