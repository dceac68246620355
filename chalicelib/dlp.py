"""Screening (DLP): built-in detectors, tenant rules and the verdict on one text.

Pure logic, no AWS calls: ``chalicelib/services/screening.py`` loads and
caches rule sets, writes flags and raises ``message_blocked``.

Cost is linear in the text: each built-in detector is one scan plus a
check of its candidates (Luhn, mod-97, ...), and all custom rules of a
tenant are compiled into one ``re2.Set`` that scans the text once; only the
rules that matched are scanned again for their spans (to redact or mask).
Tenants' patterns run on re2, which never backtracks, so none can hang the
service; what re2 cannot do in linear time (backreferences, lookarounds) it
refuses to compile, and that is reported when the rules are saved.  The
built-in detectors run on re2 too, with patterns that only match real
candidates (e.g. runs of at least 13 digits): re2's DFA skips ordinary text
fast, but its Python wrapper costs ~10 µs per match object, so a pattern
that matched every number would dominate the cost (bench/dlp_cost.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import re2

ACTIONS = ("flag", "redact", "block")  # ascending strictness
RANK = {a: i for i, a in enumerate(ACTIONS, 1)}
KINDS = ("detector", "keyword", "regex")
KIND_FIELD = {"detector": "detector", "keyword": "keywords", "regex": "pattern"}  # what each type needs
MAX_RULES = 50             # rules per tenant, detectors included
MAX_PATTERN_CHARS = 256    # one custom regex
MAX_KEYWORDS = 50          # keywords of one keyword rule
MAX_KEYWORD_CHARS = 128
MAX_RULESET_CHARS = 32_000  # the whole normalized rule set as JSON (one item, one audit entry)
MAX_SPANS = 1000           # spans kept per rule and text (more matches still count as a match)
RULE_MAX_MEM = 1 << 20     # re2 program + DFA budget of one rule; bigger patterns are refused
SET_MAX_MEM = 8 << 20      # budget of a tenant's combined Set
MASK = "[redacted]"
EXCERPT_CONTEXT = 40       # characters either side of a flagged match in a flag's excerpt


class RuleError(ValueError):
    """A rule set that cannot be saved; ``rule_id`` names the offending rule (None: the whole set)."""

    def __init__(self, message: str, rule_id: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id


def _options(case_sensitive: bool = True, max_mem: int = RULE_MAX_MEM) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # a refused pattern is a validation error, not a line on stderr
    opts.case_sensitive = case_sensitive
    opts.max_mem = max_mem
    return opts


# --- built-in detectors ---------------------------------------------------------
# Each takes the text and returns the character spans it found.

Span = tuple[int, int]

_DIGIT_RUN = re2.compile(r"[0-9](?:[ -]?[0-9]){12,}", _options())  # >= 13 digits, single separators
_DIGITS = re.compile(r"[0-9]+")  # splits one short run into its groups


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def payment_cards(text: str) -> list[Span]:
    """13-19 digits, in groups separated by single spaces or dashes, passing the Luhn check.

    A run of digit groups is tried window by window (at most 19 digits each),
    so a card next to other numbers is still found; the first digit must be
    2-6 (the major networks), and all-zero numbers never match.
    """
    spans: list[Span] = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [(run.start() + m.start(), run.start() + m.end(), m.group()) for m in _DIGITS.finditer(run.group())]
        i = 0
        while i < len(groups):
            digits = ""
            found = None
            for j in range(i, len(groups)):
                digits += groups[j][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and digits[0] in "23456" and digits.strip("0") and luhn_ok(digits):
                    found = j  # keep extending: the longest valid window wins
            if found is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[found][1]))
            i = found + 1
    return spans


_IBAN = re2.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", _options())


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def ibans(text: str) -> list[Span]:
    """IBANs (upper case, compact or in groups separated by single spaces) with a valid mod-97 check.

    A candidate may run into a following upper-case word; trailing groups are
    dropped until the check passes (at most a few tries per candidate).
    """
    spans: list[Span] = []
    for m in _IBAN.finditer(text):
        parts = m.group().split(" ")
        for k in range(len(parts), 0, -1):
            if iban_ok("".join(parts[:k])):
                spans.append((m.start(), m.start() + len(" ".join(parts[:k]))))
                break
    return spans


_SSN = re2.compile(r"\b([0-9]{3})-([0-9]{2})-([0-9]{4})\b", _options())


def us_ssns(text: str) -> list[Span]:
    """US SSNs written AAA-GG-SSSS; never-issued numbers (area 000, 666, 9xx; group 00; serial 0000) don't match."""
    spans: list[Span] = []
    for m in _SSN.finditer(text):
        area, group, serial = m.group(1), m.group(2), m.group(3)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        spans.append(m.span())
    return spans


_AWS_KEY = re2.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z2-7]{16}\b",
                       _options())


def aws_access_keys(text: str) -> list[Span]:
    """AWS access key ids: a known 4-letter prefix and 16 base-32 characters."""
    return [m.span() for m in _AWS_KEY.finditer(text)]


_PEM = re2.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
                   r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)", _options())


def private_keys(text: str) -> list[Span]:
    """PEM/OpenSSH/PGP private keys: from the BEGIN header to its END line (or the end of the text)."""
    return [m.span() for m in _PEM.finditer(text)]


DETECTORS: dict[str, Callable[[str], list[Span]]] = {
    "payment_card": payment_cards,
    "iban": ibans,
    "us_ssn": us_ssns,
    "aws_access_key": aws_access_keys,
    "private_key": private_keys,
}


# --- rules ----------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    action: str
    kind: str
    detector: str | None = None
    source: str | None = None  # the re2 pattern of a custom rule (keywords already compiled into one)
    case_sensitive: bool = False


def _keyword_source(words: list[str]) -> str:
    """Whole words/phrases: a word character at either end must not continue into a neighbour."""
    alts = []
    for w in words:
        pre = r"\b" if (w[0].isalnum() or w[0] == "_") else ""
        post = r"\b" if (w[-1].isalnum() or w[-1] == "_") else ""
        alts.append(pre + re2.escape(w) + post)
    return "(?:" + "|".join(alts) + ")"


def _matches_empty(rx: Any) -> bool:
    """A pattern that can match zero characters would match (and block/flag) every message."""
    return any(m.end() == m.start() for probe in ("", "a", " ", "0", "a b\n") for m in rx.finditer(probe))


def _compile_rule(rule: Rule) -> Any:
    try:
        rx = re2.compile(rule.source, _options(rule.case_sensitive))
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        hint = " (backreferences and lookaround assertions are not supported)" \
            if any(k in reason for k in ("escape sequence", "perl operator")) else ""
        raise RuleError(f"Rule {rule.id!r}: the pattern is not supported: {reason[:120]}{hint}.", rule.id) from None
    if _matches_empty(rx):
        raise RuleError(f"Rule {rule.id!r}: the pattern can match empty text; it must match at least one "
                        f"character.", rule.id)
    return rx


def parse_rules(raw: Iterable[dict[str, Any]], check: bool = True) -> list[Rule]:
    """Validate a tenant's whole rule set (already shaped by the JSON Schema) into :class:`Rule` s.

    Raises :class:`RuleError` naming the first offending rule: unknown
    detector, missing fields, duplicate id, a pattern that is too long,
    unsupported by re2 (backreferences, lookarounds) or matches empty text.
    ``check=False`` skips compiling each pattern on its own (a stored set was
    checked when it was saved; the Set compiles it anyway).
    """
    rules: list[Rule] = []
    seen: set[str] = set()
    raw = list(raw)
    if len(raw) > MAX_RULES:
        raise RuleError(f"At most {MAX_RULES} rules per company; got {len(raw)}.")
    for item in raw:
        rid = item["id"]
        if rid in seen:
            raise RuleError(f"Rule {rid!r} appears twice; rule ids must be unique.", rid)
        seen.add(rid)
        kind, action = item["type"], item["action"]
        if action not in RANK or kind not in KINDS:
            raise RuleError(f"Rule {rid!r}: unknown type or action.", rid)
        if any(k in item for k in set(KIND_FIELD.values()) - {KIND_FIELD[kind]}):
            raise RuleError(f"Rule {rid!r}: a {kind} rule takes {KIND_FIELD[kind]!r}, not "
                            f"{' or '.join(sorted(set(KIND_FIELD.values()) - {KIND_FIELD[kind]}))}.", rid)
        name = item.get("name") or rid
        case = bool(item.get("caseSensitive", False))
        if kind == "detector":
            if item.get("detector") not in DETECTORS:
                raise RuleError(f"Rule {rid!r}: detector must be one of {', '.join(DETECTORS)}.", rid)
            rule = Rule(rid, name, action, kind, detector=item["detector"])
        elif kind == "keyword":
            words = [w.strip() for w in (item.get("keywords") or []) if w.strip()]
            if not words or len(words) > MAX_KEYWORDS or any(len(w) > MAX_KEYWORD_CHARS for w in words):
                raise RuleError(f"Rule {rid!r}: keywords must be 1-{MAX_KEYWORDS} non-blank strings of at most "
                                f"{MAX_KEYWORD_CHARS} characters.", rid)
            rule = Rule(rid, name, action, kind, source=_keyword_source(words), case_sensitive=case)
        else:
            pattern = item.get("pattern") or ""
            if not pattern or len(pattern) > MAX_PATTERN_CHARS:
                raise RuleError(f"Rule {rid!r}: pattern must be 1-{MAX_PATTERN_CHARS} characters "
                                f"(got {len(pattern)}).", rid)
            rule = Rule(rid, name, action, kind, source=pattern, case_sensitive=case)
        if rule.source is not None and check:
            _compile_rule(rule)
        if item.get("enabled", True):
            rules.append(rule)
    return rules


def normalize(raw: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rule set as stored and shown to admins: validated, defaults filled in, field order fixed."""
    raw = list(raw)
    parse_rules(raw)
    out = []
    for item in raw:
        rule = {"id": item["id"], "name": item.get("name") or item["id"], "type": item["type"],
                "action": item["action"], "enabled": bool(item.get("enabled", True))}
        for key in ("detector", "keywords", "pattern"):
            if key in item:
                rule[key] = list(item[key]) if key == "keywords" else item[key]
        if item["type"] != "detector":
            rule["caseSensitive"] = bool(item.get("caseSensitive", False))
        out.append(rule)
    size = len(json.dumps(out, separators=(",", ":")))
    if size > MAX_RULESET_CHARS:
        raise RuleError(f"The rule set is {size} characters as JSON; the limit is {MAX_RULESET_CHARS}.")
    try:
        Ruleset("", parse_rules(out, check=False))  # the combined Set must compile within its budget too
    except re2.error:
        raise RuleError("The custom rules are too complex together; remove or simplify some patterns.") from None
    return out


# --- scanning -------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    tenant_id: str
    rule: Rule
    spans: tuple[Span, ...]


class Ruleset:
    """One tenant's enabled rules, compiled: detectors, one re2 Set for all custom rules."""

    def __init__(self, tenant_id: str, rules: list[Rule], version: int = 0) -> None:
        self.tenant_id = tenant_id
        self.version = version
        self.rules = rules
        self._detectors = [r for r in rules if r.kind == "detector"]
        self._custom = [r for r in rules if r.source is not None]
        self._regexes: dict[int, Any] = {}
        self._set = None
        if self._custom:
            rset = re2.Set.SearchSet(_options(True, SET_MAX_MEM))
            for rule in self._custom:
                rset.Add(rule.source if rule.case_sensitive else "(?i:" + rule.source + ")")
            rset.Compile()
            self._set = rset

    @classmethod
    def from_stored(cls, tenant_id: str, raw: list[dict[str, Any]], version: int = 0) -> "Ruleset":
        return cls(tenant_id, parse_rules(raw, check=False), version)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _spans(self, index: int, text: str) -> tuple[Span, ...]:
        rx = self._regexes.get(index)
        if rx is None:
            rule = self._custom[index]
            rx = self._regexes[index] = re2.compile(rule.source, _options(rule.case_sensitive))
        spans = []
        for m in rx.finditer(text):
            if m.end() > m.start():
                spans.append(m.span())
                if len(spans) >= MAX_SPANS:
                    break
        return tuple(spans)

    def matches(self, text: str) -> list[Hit]:
        hits = []
        for rule in self._detectors:
            spans = DETECTORS[rule.detector](text)
            if spans:
                hits.append(Hit(self.tenant_id, rule, tuple(spans[:MAX_SPANS])))
        if self._set is not None:
            for index in sorted(self._set.Match(text) or ()):
                spans = self._spans(index, text)
                if spans:  # the Set also reports zero-width matches; a hit needs a character
                    hits.append(Hit(self.tenant_id, self._custom[index], spans))
        return hits


@dataclass
class Verdict:
    """What screening decided about one text, across every ruleset that applies."""

    action: str | None          # None (clean), "flag", "redact" or "block": the strictest matched rule's
    text: str                   # to store and deliver: redacted spans replaced by MASK
    original: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def matches(self) -> int:
        return sum(len(h.spans) for h in self.hits)

    @property
    def blocking(self) -> Hit | None:
        return next((h for h in self.hits if h.rule.action == "block"), None)

    def flags(self) -> dict[str, list[str]]:
        """Tenant -> ids of its flag rules that matched (each tenant reviews its own)."""
        out: dict[str, list[str]] = {}
        for h in self.hits:
            if h.rule.action == "flag":
                out.setdefault(h.tenant_id, []).append(h.rule.id)
        return out

    def excerpt(self, tenant_id: str | None = None) -> str:
        """A short piece of the original around the first flagged match, every match in it masked."""
        flagged = [s for h in self.hits if h.rule.action == "flag" and tenant_id in (None, h.tenant_id)
                   for s in h.spans] or [s for h in self.hits for s in h.spans]
        if not flagged:
            return ""
        first = min(flagged)
        lo, hi = max(0, first[0] - EXCERPT_CONTEXT), min(len(self.original), first[1] + EXCERPT_CONTEXT)
        inside = [(max(s, lo), min(e, hi)) for h in self.hits for s, e in h.spans if s < hi and e > lo]
        body = _replace(self.original[lo:hi], [(s - lo, e - lo) for s, e in inside])
        return ("…" if lo > 0 else "") + body + ("…" if hi < len(self.original) else "")


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _replace(text: str, spans: Iterable[Span]) -> str:
    parts, pos = [], 0
    for s, e in _merge(spans):
        parts.append(text[pos:s])
        parts.append(MASK)
        pos = e
    parts.append(text[pos:])
    return "".join(parts)


def screen(text: str, rulesets: Iterable[Ruleset]) -> Verdict:
    """Scan ``text`` with every ruleset (e.g. both companies' in an external conversation).

    The strictest matched action wins (block > redact > flag): block stops
    everything; otherwise every redact rule's spans are masked, and every
    matched flag rule asks for a review entry by its own tenant.  Rulesets
    are listed in precedence order (the sender's company first), which
    decides which blocking rule is named.
    """
    hits = [h for rs in rulesets if rs for h in rs.matches(text)]
    if not hits:
        return Verdict(None, text, text)
    action = max((h.rule.action for h in hits), key=RANK.__getitem__)
    out = text
    if action == "redact":
        out = _replace(text, [s for h in hits if h.rule.action == "redact" for s in h.spans])
    return Verdict(action, out, text, hits)
