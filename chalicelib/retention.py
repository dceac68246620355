"""Retention decisions as pure functions: which period applies to a message or file, and its expiry.

Why here and not in a service: the write path (``services/timeline.append``),
the hold sweeps, the file tagging and ``tools/render_infra.py`` (S3 lifecycle
rules) must agree on the same rules, and unit tests check them with an
injected clock and no AWS at all.  See docs/compliance.md.

Rules:

* A message follows the retention of its **sender's** company: the
  company's override for the conversation if it set one, else its default.
  In a shared conversation each company's settings apply to its own
  members' messages only.
* A legal hold of the sender's company on the sender, or on the
  conversation, keeps the message: no expiry.
* Periods come from :data:`ALLOWED_DAYS` only, so files can follow them
  with one S3 lifecycle rule per period (objects tagged ``retention=<n>d``;
  ``retention=hold`` matches no rule).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

# The periods a company may choose (days); None = keep forever.  One S3 lifecycle rule each.
ALLOWED_DAYS: tuple[int, ...] = (1, 7, 30, 90, 180, 365, 730, 1095, 1825, 2555, 3650)
TAG_KEY = "retention"
HOLD_TAG = "hold"


def tenant_subject(tenant: str) -> str:
    return f"tenant#{tenant}"


def override_subject(tenant: str, conversation_id: str) -> str:
    return f"conv#{tenant}#{conversation_id}"


def user_hold_subject(tenant: str, user_id: str) -> str:
    return f"hold#user#{tenant}#{user_id}"


def conversation_hold_subject(tenant: str, conversation_id: str) -> str:
    return f"hold#conv#{tenant}#{conversation_id}"


def subjects_for(sender_key: str, conversation_id: str) -> list[str]:
    """The rule items a message of ``sender_key`` in ``conversation_id`` depends on (1 BatchGetItem)."""
    tenant, user = sender_key.split("#", 1)
    return [tenant_subject(tenant), override_subject(tenant, conversation_id),
            user_hold_subject(tenant, user), conversation_hold_subject(tenant, conversation_id)]


class Decision(NamedTuple):
    """What applies to one new message: the period (seconds; None = forever) and whether a hold keeps it."""

    retain_s: int | None
    held: bool

    def expires_at(self, created_ms: int) -> int | None:
        """The DynamoDB TTL value (epoch seconds), or None when the message is kept."""
        if self.retain_s is None or self.held:
            return None
        return expiry(created_ms, self.retain_s)

    def attributes(self, sender_key: str, created_ms: int) -> dict[str, Any]:
        """Message attributes to set: expires_at, retain_s, retained_sender (empty without retention)."""
        if self.retain_s is None:
            return {}
        out: dict[str, Any] = {"retain_s": self.retain_s, "retained_sender": sender_key}
        exp = self.expires_at(created_ms)
        if exp is not None:
            out["expires_at"] = exp
        return out


def expiry(created_ms: int, retain_s: int) -> int:
    """Epoch second at which a message written at ``created_ms`` under ``retain_s`` expires."""
    return int(created_ms) // 1000 + int(retain_s)


def _get(rule: Any, name: str) -> Any:
    if rule is None:
        return None
    return rule.get(name) if isinstance(rule, Mapping) else getattr(rule, name, None)


def decide(rules: Mapping[str, Any], sender_key: str, conversation_id: str, day_seconds: int) -> Decision:
    """The decision for one message, from the rule items found (``subject -> item``; missing = absent).

    An override item exists only while an override is set; its ``days`` may be None (keep forever).
    """
    tenant, user = sender_key.split("#", 1)
    override = rules.get(override_subject(tenant, conversation_id))
    days = _get(override, "days") if override is not None else _get(rules.get(tenant_subject(tenant)), "days")
    held = bool(_get(rules.get(user_hold_subject(tenant, user)), "holds")) or \
        bool(_get(rules.get(conversation_hold_subject(tenant, conversation_id)), "holds"))
    return Decision(retain_s=int(days) * day_seconds if days is not None else None, held=held)


def days_of(retain_s: int | None, day_seconds: int) -> int | None:
    return None if retain_s is None else int(retain_s) // day_seconds


def file_tag(retain_s: int | None, held: bool, day_seconds: int) -> str | None:
    """The ``retention`` tag of a file object: ``<n>d``, ``hold``, or None (no retention: untagged)."""
    if retain_s is None:
        return None
    if held:
        return HOLD_TAG
    days = days_of(retain_s, day_seconds)
    return f"{days}d" if days in ALLOWED_DAYS else HOLD_TAG  # unknown period: never expire by mistake


def lifecycle_rules(allowed: Iterable[int] = ALLOWED_DAYS) -> list[dict[str, Any]]:
    """S3 lifecycle rules (CloudFormation shape) expiring tagged file objects, one per allowed period.

    The bucket is versioned: expiry makes a delete marker and the data
    becomes a noncurrent version, removed a day later by the same rule.
    """
    return [{"Id": f"retention-{days}d", "Status": "Enabled",
             "TagFilters": [{"Key": TAG_KEY, "Value": f"{days}d"}],
             "ExpirationInDays": days,
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}} for days in allowed]


def missing_seqs(present: Iterable[int], low: int, high: int) -> list[int]:
    """Seqs in ``[low, high]`` with no item: removed by retention (the seq counter has no gaps)."""
    have = set(int(s) for s in present)
    return [s for s in range(int(low), int(high) + 1) if s not in have]
