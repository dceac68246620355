"""Screening (DLP): built-in detectors, tenant rules and the verdict on one text.

Pure logic, no AWS calls: ``chalicelib/services/screening.py`` loads and
caches rule sets, writes flags and raises ``message_blocked``.

Every detector and every tenant rule sees the text **folded** first
(:func:`fold`, :class:`Folded`): compatibility forms, invisible characters,
combining accents, non-ASCII digits, dashes and a table of look-alike
letters are reduced to plain text, so ``4111\\u200b1111…``, full-width or
Arabic-Indic digits and ``prојеctx`` (Cyrillic о, е, ј) are screened like
the plain forms.  Spans found in the folded text are mapped back to the
original characters, so a redaction replaces exactly the characters that
made up the match (the invisible ones inside it included).

Cost is linear in the text: folding is one table lookup per non-ASCII
character (ASCII text is checked and passed through in C), each built-in
detector is one scan plus a check of its candidates (Luhn, mod-97, ...), and
all custom rules of a tenant are compiled into one ``re2.Set`` that scans
the text once; only the rules that matched are scanned again for their
spans (to redact or mask).  Tenants' patterns run on re2, which never
backtracks, so none can hang the service; what re2 cannot do in linear time
(backreferences, lookarounds) it refuses to compile, and that is reported
when the rules are saved.  The built-in detectors run on re2 too, with
patterns that only match real candidates (e.g. chains of at least 13
digits): re2's DFA skips ordinary text fast, but its Python wrapper costs
~10 µs per match object, so a pattern that matched every number would
dominate the cost (bench/dlp_cost.py).
"""
from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import re
import unicodedata
from functools import cache
from typing import Any, Callable, Iterable, NamedTuple

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
BUILTIN_MAX_MEM = 8 << 20  # budget of one built-in detector's pattern
MASK = "[redacted]"
# What a blocked attempt's review entry keeps of the text, per company (blocked_text()).
BLOCKED_TEXT = ("masked", "kept", "hashed", "dropped")
KEPT_TEXT_MAX = 16_000     # characters of a kept blocked text (a file's extracted text can be MiBs)
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


# --- folding: one normalisation step before every detector and rule -----------------
#
# Each character of the text is folded on its own (so that a map back to the
# original is a matter of counting), in this order:
#   1. format characters (category Cf: zero-width space/joiners, word joiner,
#      BOM, soft hyphen, bidi controls, tags), C0/C1 controls other than
#      \t \n \v \f \r, and the invisible Hangul fillers are dropped;
#   2. compatibility decomposition (NFKD: full-width forms, ligatures,
#      mathematical letters, superscripts, circled digits, NBSP -> space, ...),
#      combining marks (Mn, Me: accents, variation selectors, keycaps) dropped,
#      then canonical recomposition (NFC) of what is left -- NFKC without the
#      accents;
#   3. every Unicode decimal digit (unicodedata.decimal: Arabic-Indic,
#      Devanagari, ...) becomes its ASCII digit; every dash (category Pd, the
#      minus sign) becomes "-"; space separators (Zs) become " ", line and
#      paragraph separators "\n";
#   4. look-alike letters become their Latin twin (CONFUSABLES);
#   5. the few characters whose case folding is longer than one character
#      (ß, ẞ) are case-folded ("ss"), so that re2's case-insensitive matching
#      of the folded text is the same as matching its str.casefold().
# Case is otherwise kept (detectors and case-sensitive rules need it);
# case-insensitive rules match with re2's Unicode case folding.  Whitespace is
# not collapsed in the text (regex rules may care about line breaks): a space
# in a keyword matches any run of whitespace instead, which is the same thing
# for keyword rules, and the card detector treats a whitespace run as one
# separator.

# Look-alike letters and their Latin twins.  The idea is Unicode TR39's
# confusables (https://www.unicode.org/reports/tr39/#Confusable_Detection);
# this is a small hand-picked table of the letters that pass for basic Latin
# ones in common fonts, not a copy of confusables.txt.  Letters with accents
# need no entry (step 2 drops the accent: Cyrillic ё -> е -> e), nor do
# full-width or mathematical letters (NFKD).  Whole words written in these
# letters (Russian "рот", "сор") fold to Latin words ("pot", "cop") and can
# match a Latin keyword: the price of catching "prојеctx".
CONFUSABLES: dict[str, str] = {
    # Cyrillic capitals
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M", "О": "O",
    "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Ь": "b",
    # Cyrillic small letters
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "н": "h", "і": "i", "ј": "j", "к": "k",
    "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "ѵ": "v", "ԝ": "w", "х": "x",
    "у": "y", "ү": "y", "ь": "b",
    # Greek capitals
    "Α": "A", "Β": "B", "Ϲ": "C", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Ϳ": "J", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Greek small letters
    "α": "a", "ϲ": "c", "ι": "i", "ϳ": "j", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y",
    # Armenian
    "հ": "h", "ո": "n", "օ": "o", "ս": "u",
    # Latin letters without a decomposition: dotless i/j, alpha, script g, small capitals
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}

_DROP_CATEGORIES = frozenset(("Cf", "Cs", "Mn", "Me"))  # format characters, lone surrogates, combining marks
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0")      # Hangul fillers: letters that render as nothing
_KEPT_CONTROLS = "\t\n\v\f\r"
_EXTRA_DASHES = frozenset("\u2212\u2043\u02d7")          # minus sign, hyphen bullet, modifier minus
_FOLD_CACHE_MAX = 50_000                                 # code points remembered (a few MB at most)


def _fold_char(ch: str) -> str:
    """What one character folds to: "" (dropped), one character, or a few (ligatures, ß)."""
    cat = unicodedata.category(ch)
    if cat in _DROP_CATEGORIES or ch in _INVISIBLE:
        return ""
    if cat == "Cc":
        return ch if ch in _KEPT_CONTROLS else ("\n" if ch == "\x85" else "")
    if cat == "Zs":
        return " "
    if cat in ("Zl", "Zp"):
        return "\n"
    if ch == "\u2800":  # braille pattern blank: looks like a space
        return " "
    if ch in CONFUSABLES:  # before NFKD, which would make a lunate sigma (Ϲ, looks like C) a Σ
        return CONFUSABLES[ch]
    bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if unicodedata.category(c) not in _DROP_CATEGORIES)
    out = []
    for c in unicodedata.normalize("NFC", bare):
        digit = unicodedata.decimal(c, None)
        if digit is not None:
            c = chr(48 + digit)
        elif unicodedata.category(c) == "Pd" or c in _EXTRA_DASHES:
            c = "-"
        elif unicodedata.category(c) == "Zs":
            c = " "
        else:
            c = CONFUSABLES.get(c, c)
            if len(c.casefold()) > 1:
                c = "".join(x for x in unicodedata.normalize("NFKD", c.casefold())
                            if unicodedata.category(x) not in _DROP_CATEGORIES)
        out.append(c)
    return "".join(out)


# ASCII folds to itself but for the controls other than tab, newlines, vertical tab, form feed and
# carriage return, which are dropped: written out rather than worked out with unicodedata on every
# cold start (tests/unit/test_dlp.py checks it against _fold_char).
_ASCII_DROPPED = "".join(chr(i) for i in (*range(0x00, 0x09), *range(0x0e, 0x20), 0x7f))
# Characters whose fold is not exactly one character (dropped or expanded):
# the only places where positions in the folded text and the original differ.
_UNEVEN: set[str] = set(_ASCII_DROPPED)


class _FoldTable(dict):
    """Code point -> folded text, for str.translate; each character is worked out once per container."""

    def __missing__(self, code: int) -> str:
        out = _fold_char(chr(code))
        if len(out) != 1:
            _UNEVEN.add(chr(code))  # before the value is returned: every uneven character of a text is known
        if len(self) < _FOLD_CACHE_MAX:
            self[code] = out
        return out


_TABLE = _FoldTable()
_ASCII_TABLE = {i: None if chr(i) in _ASCII_DROPPED else chr(i) for i in range(128)}  # ASCII: controls dropped
_SPECIAL_RUN = re.compile(r"[^\t\n\v\f\r\x20-\x7e]+")  # what folding may change: non-ASCII and controls
_CHUNK = 64  # fold() and Folded._build() skip ASCII text this many characters at a time


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(_TABLE)


def fold(text: str) -> str:
    """The folded form of ``text`` (see above): what detectors and rules match.

    str.translate costs ~40 ns per character once one character is not
    ASCII, so how the text is cut depends on how much of it is not ASCII
    (measured: bench/dlp_cost.py's text with curly quotes every 4000 to 8
    characters): ASCII text takes translate's C fast path; a few non-ASCII
    characters, chunks of 64 characters of which only those with one are
    translated; more (English with curly quotes, French), only the runs of
    non-ASCII characters; text mostly in another script, one pass.
    """
    if text.isascii():
        return text.translate(_ASCII_TABLE)
    extra = len(text.encode("utf-8", "surrogatepass")) - len(text)  # ~ how many characters are not ASCII
    if extra * 12 > len(text):
        return text.translate(_TABLE)
    if extra * 128 > len(text) or any(c in text for c in _ASCII_DROPPED):
        return _SPECIAL_RUN.sub(_fold_run, text)
    parts, kept = [], 0
    for k in range(0, len(text), _CHUNK):
        chunk = text[k:k + _CHUNK]
        if not chunk.isascii():
            if k > kept:
                parts.append(text[kept:k])
            parts.append(chunk.translate(_TABLE))
            kept = k + _CHUNK
    parts.append(text[kept:])
    return "".join(parts)


class Folded:
    """A text, its folded form and the way back from spans of the folded form to the original's.

    The map is built only when a span has to be mapped and the fold changed
    lengths (dropped or expanded characters; ASCII text without controls
    never does): a list of segments of the folded text, each mapping to the
    original one character for one character, or all to the same original
    character (an expansion such as "ﬁ" -> "fi").  Dropped characters fall
    between segments, so a span across them covers them.
    """

    __slots__ = ("original", "text", "_identity", "_starts", "_segments")

    def __init__(self, original: str) -> None:
        self.original = original
        self.text = fold(original)
        # ASCII text folds to itself unless controls were dropped; other text is checked when a span is mapped
        self._identity: bool | None = (len(self.text) == len(original)) if original.isascii() else None
        self._starts: list[int] = []
        self._segments: list[tuple[int, int, bool]] = []  # (folded start, original start, expanded)

    def _build(self) -> None:
        text, uneven = self.original, _UNEVEN
        positions = []
        for k in range(0, len(text), _CHUNK):
            chunk = text[k:k + _CHUNK]
            if not uneven.isdisjoint(chunk):
                positions.extend(k + j for j, ch in enumerate(chunk) if ch in uneven)
        segments: list[tuple[int, int, bool]] = []
        n = o = 0
        for j in positions:
            if j > o:
                segments.append((n, o, False))
                n += j - o
            width = len(fold(text[j]))
            if width:  # an expansion (0: dropped, no segment)
                segments.append((n, j, True))
                n += width
            o = j + 1
        if o < len(text) or not segments:
            segments.append((n, o, False))
        self._segments = segments
        self._starts = [s[0] for s in segments]

    def _origin(self, i: int) -> int:
        """The original index of folded character ``i``."""
        start, orig, expanded = self._segments[bisect.bisect_right(self._starts, i) - 1]
        return orig if expanded else orig + (i - start)

    def span(self, start: int, end: int) -> Span:
        """The original characters behind folded ``[start, end)`` (end > start), combining marks after it included."""
        if self._identity is None:
            self._identity = len(self.text) == len(self.original) and _UNEVEN.isdisjoint(self.original)
        if self._identity:
            return start, end
        if not self._segments:
            self._build()
        lo, hi = self._origin(start), self._origin(end - 1) + 1
        text = self.original
        while hi < len(text) and unicodedata.category(text[hi]) in ("Mn", "Me"):
            hi += 1  # an accent or variation selector belongs to the character before it
        return lo, hi

    def spans(self, spans: Iterable[Span]) -> list[Span]:
        return [self.span(s, e) for s, e in spans]


# --- built-in detectors ---------------------------------------------------------
# Each scans folded text and returns the character spans it found there;
# DETECTORS wraps them to take any text and answer in its own positions.

Span = tuple[int, int]

_WS = r"\t\n\v\f\r "  # whitespace left after folding
# What may separate the digits of a card: ASCII punctuation and symbols, the
# Latin-1 ones, general punctuation (bullets, ellipsis, fraction slash) and CJK
# punctuation; a run of whitespace counts as one.  Letters and digits never do.
_SEP_CHAR = r"[!-/:-@\[-`{-~\x{a1}-\x{bf}\x{d7}\x{f7}\x{2016}-\x{206f}\x{3001}-\x{3004}\x{3008}-\x{3020}]"
_SEP = rf"(?:{_SEP_CHAR}|[{_WS}]+)"
MAX_SEPARATORS = 3  # separator characters (a whitespace run counting as one) between two digits of a card


# The detectors' re2 programs are compiled on their first use, once per container: a company
# without detector rules never pays for them on a cold start.
@cache
def _digit_run() -> Any:
    return re2.compile(rf"[0-9](?:{_SEP}{{0,{MAX_SEPARATORS}}}[0-9]){{12,}}",  # >= 13 digits
                       _options(max_mem=BUILTIN_MAX_MEM))


_DIGITS = re.compile(r"[0-9]+")  # splits one candidate into its groups
_TIGHT = re.compile(rf"[{_WS}]+|-")  # what cards are commonly written with: any grouping goes


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a digit string (the detector keeps the same sums as a window grows: _luhn_sums)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _network_prefix(digits: str) -> bool:
    """Starts like a card of a major network: 3 (Amex, Diners, JCB), 4 (Visa), 5, 6 or 22-27 (Mastercard's 2-series
    2221-2720, Mir 2200-2204).  No network issues 20, 21, 28 or 29, which is how years and dates start."""
    return digits[0] in "3456" or "22" <= digits[:2] <= "27"


_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a doubled digit's contribution to the Luhn sum


def _luhn_sums(digits: str) -> tuple[int, int]:
    """The Luhn sum of ``digits`` (last digit not doubled), and the sum with every digit's doubling flipped.

    Appending a group of k digits to a number: its sums are the group's plus
    the number's own (k even) or the number's flipped ones (k odd), so a
    window of groups is checked in O(1) per group.
    """
    even = odd = 0
    for ch in digits:
        d = ord(ch) - 48
        even, odd = odd + d, even + _LUHN_DOUBLE[d]
    return even, odd


def _payment_cards(text: str) -> list[Span]:
    """13-19 digits passing the Luhn check, starting like a major network's card (:func:`_network_prefix`).

    Digits may be separated by up to three punctuation characters or
    whitespace runs.  Single dashes or whitespace runs (what cards are
    commonly written with) allow any grouping: a run of groups is tried
    window by window, at most 19 digits each, so a card next to other
    numbers is still found.  Any other separator (dots, slashes, " - ",
    colons, ...) needs the groups cards are written in: equal groups, the
    last one shorter or equal (4-4-4-4, 4-4-4-4-3, one digit at a time), or
    4-6-5/4-6-4, so that timestamps, IP addresses and dotted version numbers
    that happen to pass Luhn are not cards.  Windows grow one group at a
    time in O(1) (:func:`_luhn_sums`): at most 19 steps per group, linear.
    """
    spans: list[Span] = []
    for run in _digit_run().finditer(text):
        base, chars = run.start(), run.group()
        groups = [(base + m.start(), base + m.end(), m.group()) for m in _DIGITS.finditer(chars)]
        sizes = [len(g[2]) for g in groups]
        luhn = [_luhn_sums(g[2]) for g in groups]
        tight = [_TIGHT.fullmatch(text, groups[k][1], groups[k + 1][0]) is not None for k in range(len(groups) - 1)]
        i = 0
        while i < len(groups):
            if not _network_prefix(groups[i][2] + (groups[i + 1][2][:1] if i + 1 < len(groups) else "")):
                i += 1  # no card starts here
                continue
            first, count, even, odd = sizes[i], 0, 0, 0
            loose = False       # a separator other than whitespace or a single dash
            equal = True        # every group before the last one as long as the first
            found = None
            for j in range(i, len(groups)):
                size = sizes[j]
                if j > i:
                    loose = loose or not tight[j - 1]
                    equal = equal and sizes[j - 1] == first
                count += size
                if count > 19:
                    break
                g_even, g_odd = luhn[j]
                even, odd = (even + g_even, odd + g_odd) if size % 2 == 0 else (odd + g_even, even + g_odd)
                if count >= 13 and even % 10 == 0 and (not loose or (equal and size <= first) or (
                        j == i + 2 and (first, sizes[i + 1], size) in ((4, 6, 5), (4, 6, 4)))):
                    found = j  # keep extending: the longest valid window wins
            if found is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[found][1]))
            i = found + 1
    return spans


@cache
def _iban() -> Any:
    return re2.compile(rf"\b[A-Z]{{2}}[0-9]{{2}}(?:(?:[{_WS}]+|[-./])?[A-Z0-9]){{11,}}\b", _options())


_IBAN_GROUP = re.compile(r"[A-Z0-9]+")
_IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}")


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _mod97(chars: str) -> tuple[int, int]:
    """``chars`` as ISO 13616 digits (letters as 10-35) mod 97, and 10 ** (that many digits) mod 97."""
    value, scale = 0, 1
    for ch in chars:
        if ch <= "9":
            value, scale = (value * 10 + ord(ch) - 48) % 97, scale * 10 % 97
        else:
            value, scale = (value * 100 + ord(ch) - 55) % 97, scale * 100 % 97
    return value, scale


def _ibans(text: str) -> list[Span]:
    """IBANs (upper case, compact or in groups separated by whitespace, "-", "." or "/") with a valid mod-97 check.

    A candidate may run into following upper-case words or another IBAN:
    trailing groups are dropped until the check passes, and the search goes
    on after the IBAN found.  The check (the same as :func:`iban_ok`) is kept
    as the candidate grows, one step per group, so hostile input stays linear.
    """
    spans: list[Span] = []
    for m in _iban().finditer(text):
        groups = [(m.start() + g.start(), m.start() + g.end(), g.group()) for g in _IBAN_GROUP.finditer(m.group())]
        mods = [_mod97(g[2]) for g in groups]
        i = 0
        while i < len(groups):
            first = groups[i][2]
            if not _IBAN_START.match(first):
                i += 1
                continue
            # ISO 13616: the BBAN, then the country code and check digits (always 6 digits), mod 97 == 1
            head = _mod97(first[:4])[0]
            rest, length, found = _mod97(first[4:])[0], len(first), None
            for j in range(i, len(groups)):
                if j > i:
                    value, scale = mods[j]
                    rest = (rest * scale + value) % 97
                    length += len(groups[j][2])
                if length > 34:
                    break
                if length >= 15 and (rest * 1_000_000 + head) % 97 == 1:
                    found = j  # keep extending: the longest valid candidate wins
            if found is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[found][1]))
            i = found + 1
    return spans


_SSN_SEP = rf"(?:[{_WS}]*-[{_WS}]*|[./])"  # a dash of any kind (spaces around it allowed), a dot or a slash
@cache
def _ssn() -> Any:
    return re2.compile(rf"\b([0-9]{{3}})({_SSN_SEP})([0-9]{{2}})({_SSN_SEP})([0-9]{{4}})\b", _options())


def _ssn_separator(sep: str) -> str:
    return sep.strip()


def _us_ssns(text: str) -> list[Span]:
    """US SSNs written AAA-GG-SSSS, with dashes of any kind (or twice the same of "." or "/").

    Never-issued numbers (area 000, 666, 9xx; group 00; serial 0000) don't
    match, nor do undashed 9-digit numbers or numbers separated by spaces
    only ("118 12 4471": too often just numbers in a row).
    """
    spans: list[Span] = []
    for m in _ssn().finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(5)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if _ssn_separator(m.group(2)) != _ssn_separator(m.group(4)):
            continue  # 536-22 8745: not how SSNs are written, and more likely a phone number
        spans.append(m.span())
    return spans


@cache
def _aws_key() -> Any:
    return re2.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z2-7]{16}\b",
                       _options())


def _aws_access_keys(text: str) -> list[Span]:
    """AWS access key ids: a known 4-letter prefix and 16 base-32 characters."""
    return [m.span() for m in _aws_key().finditer(text)]


@cache
def _pem() -> Any:
    return re2.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
                       r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)", _options())


def _private_keys(text: str) -> list[Span]:
    """PEM/OpenSSH/PGP private keys: from the BEGIN header to its END line (or the end of the text)."""
    return [m.span() for m in _pem().finditer(text)]


def _in_original(scan: Callable[[str], list[Span]], text: str) -> list[Span]:
    folded = Folded(text)
    return folded.spans(scan(folded.text))


def payment_cards(text: str) -> list[Span]:
    """Payment cards in ``text`` (:func:`_payment_cards` on its folded form), as spans of ``text``."""
    return _in_original(_payment_cards, text)


def ibans(text: str) -> list[Span]:
    """IBANs in ``text`` (:func:`_ibans` on its folded form), as spans of ``text``."""
    return _in_original(_ibans, text)


def us_ssns(text: str) -> list[Span]:
    """US SSNs in ``text`` (:func:`_us_ssns` on its folded form), as spans of ``text``."""
    return _in_original(_us_ssns, text)


def aws_access_keys(text: str) -> list[Span]:
    """AWS access key ids in ``text`` (:func:`_aws_access_keys` on its folded form), as spans of ``text``."""
    return _in_original(_aws_access_keys, text)


def private_keys(text: str) -> list[Span]:
    """Private keys in ``text`` (:func:`_private_keys` on its folded form), as spans of ``text``."""
    return _in_original(_private_keys, text)


def _nothing(text: str) -> list[Span]:
    return []


# Not a pattern: it never matches text.  It "matches" an uploaded file whose text was not screened to the
# end (beyond the size bound, or an archive too large to walk): the file screening adds its hit
# (``Ruleset.unscreened``), so its action applies to such files (docs/compliance.md "Files").
UNSCREENED = "file_unscreened"
DETECTORS: dict[str, Callable[[str], list[Span]]] = {
    "payment_card": payment_cards,
    "iban": ibans,
    "us_ssn": us_ssns,
    "aws_access_key": aws_access_keys,
    "private_key": private_keys,
    UNSCREENED: _nothing,
}
_SCANS: dict[str, Callable[[str], list[Span]]] = {  # the same on folded text (Ruleset.matches folds once)
    "payment_card": _payment_cards,
    "iban": _ibans,
    "us_ssn": _us_ssns,
    "aws_access_key": _aws_access_keys,
    "private_key": _private_keys,
    UNSCREENED: _nothing,
}


# --- rules ----------------------------------------------------------------------

class Rule(NamedTuple):
    id: str
    name: str
    action: str
    kind: str
    detector: str | None = None
    source: str | None = None  # the re2 pattern run on folded text (keywords already compiled into one)
    case_sensitive: bool = False


_WS_RUN = rf"[{_WS}]+"


def _keyword_source(words: list[str]) -> str:
    """Whole words/phrases, folded like the text: a word character at either end must not continue into a neighbour.

    A space inside a phrase matches any run of whitespace (spaces of any
    kind, tabs, line breaks) in the text.
    """
    alts = []
    for w in words:
        f = fold(w).strip()
        pre = r"\b" if (f[0].isalnum() or f[0] == "_") else ""
        post = r"\b" if (f[-1].isalnum() or f[-1] == "_") else ""
        alts.append(pre + _WS_RUN.join(re2.escape(part) for part in f.split()) + post)
    return "(?:" + "|".join(alts) + ")"


def _fold_literal(ch: str) -> str:
    """One literal character of a pattern, outside a class, folded like the text and escaped."""
    out = fold(ch)
    return re2.escape(out) if len(out) == 1 else "(?:" + re2.escape(out) + ")"


def _fold_pattern(pattern: str) -> str:
    """A tenant's pattern with its non-ASCII literal characters folded as the text is (``défense`` -> ``defense``).

    Rules are written for plain text; this keeps a literal "é", a Cyrillic
    word or a full-width character in a pattern meaningful on folded text.
    Outside a class a literal becomes its fold; inside a class a member gains
    its folded twin (``[éè]`` -> ``[éeèe]``); range ends and escapes are left
    as written.  ASCII patterns (the usual case) are returned unchanged.
    """
    if pattern.isascii():
        return pattern
    out: list[str] = []
    i, n, in_class, members = 0, len(pattern), False, 0  # members: where the open class's members begin
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if pattern.startswith("\\Q", i) and not in_class:  # \Q...\E quotes literal text
                j = pattern.find("\\E", i + 2)
                j = n if j < 0 else j
                out.extend(_fold_literal(c) if not c.isascii() else re2.escape(c) for c in pattern[i + 2:j])
                i = j + 2
                continue
            j = i + 2
            if pattern[i + 1:i + 2] in ("p", "P", "x") and pattern[i + 2:i + 3] == "{":
                j = pattern.find("}", i) + 1 or n
            out.append(pattern[i:j])
            i = j
        elif not in_class:
            if ch == "[":
                in_class = True
                j = i + 1
                if pattern[j:j + 1] == "^":
                    j += 1
                members = j
                if pattern[j:j + 1] == "]":  # a leading "]" is a member
                    j += 1
                out.append(pattern[i:j])
                i = j
            else:
                out.append(ch if ch.isascii() else _fold_literal(ch))
                i += 1
        elif ch == "]":
            in_class = False
            out.append(ch)
            i += 1
        elif ch == "[" and pattern[i + 1:i + 2] == ":":  # [:alpha:]
            j = pattern.find(":]", i + 2)
            j = n if j < 0 else j + 2
            out.append(pattern[i:j])
            i = j
        elif ch == "-" and i > members and pattern[i + 1:i + 2] not in ("", "]"):
            out.append(ch)  # a range after an escape (\x{41}-é): its end stays as written
            i += 1
            if pattern[i] != "\\":
                out.append(pattern[i])
                i += 1
        elif pattern[i + 1:i + 2] == "-" and pattern[i + 2:i + 3] not in ("", "]"):
            out.append(pattern[i:i + 2])  # a range: its ends stay as written (the next one is copied next)
            i += 2
            if pattern[i:i + 1] == "\\":
                continue
            out.append(pattern[i])
            i += 1
        else:
            twin = fold(ch)
            out.append(ch + (re2.escape(twin) if len(twin) == 1 and twin != ch and not ch.isascii() else ""))
            i += 1
    return "".join(out)


def _matches_empty(rx: Any) -> bool:
    """A pattern that can match zero characters would match (and block/flag) every message."""
    return any(m.end() == m.start() for probe in ("", "a", " ", "0", "a b\n") for m in rx.finditer(probe))


def _compile_rule(rule: Rule, pattern: str | None = None) -> Any:
    try:
        rx = re2.compile(pattern or rule.source, _options(rule.case_sensitive))
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


def _regex_source(rule: Rule, pattern: str) -> str:
    """What a regex rule runs: its folded pattern, or the pattern as written if folding made it unusable."""
    folded = _fold_pattern(pattern)
    if folded == pattern:
        return pattern
    try:
        _compile_rule(rule, folded)
    except RuleError:
        return pattern
    return folded


def parse_rules(raw: Iterable[dict[str, Any]], check: bool = True) -> list[Rule]:
    """Validate a tenant's whole rule set (already shaped by the JSON Schema) into :class:`Rule` s.

    Raises :class:`RuleError` naming the first offending rule: unknown
    detector, missing fields, duplicate id, a pattern that is too long,
    unsupported by re2 (backreferences, lookarounds) or matches empty text.
    ``check=False`` skips compiling each pattern on its own (a stored set was
    checked when it was saved; the Set compiles it anyway).  Keywords and
    the literal characters of patterns are folded like the text
    (:func:`_keyword_source`, :func:`_fold_pattern`); what is stored and
    shown to admins stays as they wrote it.
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
            blank = [w for w in words if not fold(w).strip()]
            if blank and check:
                raise RuleError(f"Rule {rid!r}: keyword {blank[0]!r} is only invisible characters or accents, which "
                                f"screening ignores.", rid)
            words = [w for w in words if w not in blank]
            if not words:
                continue  # stored before such keywords were refused: nothing it could match
            rule = Rule(rid, name, action, kind, source=_keyword_source(words), case_sensitive=case)
        else:
            pattern = item.get("pattern") or ""
            if not pattern or len(pattern) > MAX_PATTERN_CHARS:
                raise RuleError(f"Rule {rid!r}: pattern must be 1-{MAX_PATTERN_CHARS} characters "
                                f"(got {len(pattern)}).", rid)
            rule = Rule(rid, name, action, kind, source=pattern, case_sensitive=case)
        if rule.source is not None and check:
            _compile_rule(rule)  # as written: errors quote what the admin wrote
        if kind == "regex":  # then what runs on the folded text
            rule = Rule(rid, name, action, kind, source=_regex_source(rule, pattern), case_sensitive=case)
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

class Hit(NamedTuple):
    tenant_id: str
    rule: Rule
    spans: tuple[Span, ...]


class Ruleset:
    """One tenant's enabled rules, compiled: detectors, one re2 Set for all custom rules."""

    def __init__(self, tenant_id: str, rules: list[Rule], version: int = 0, blocked_text: str = "masked",
                 text_key: str | None = None) -> None:
        self.tenant_id = tenant_id
        self.version = version
        self.rules = rules
        self.blocked_text = blocked_text  # what a blocked attempt's entry keeps (BLOCKED_TEXT)
        self.text_key = text_key
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
    def from_stored(cls, tenant_id: str, raw: list[dict[str, Any]], version: int = 0,
                    blocked_text: str | None = None, text_key: str | None = None) -> "Ruleset":
        return cls(tenant_id, parse_rules(raw, check=False), version, blocked_text or "masked", text_key)

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

    def unscreened(self) -> list[Hit]:
        """This tenant's ``file_unscreened`` rules, as hits without spans: a file's text was not screened to its end."""
        return [Hit(self.tenant_id, r, ()) for r in self._detectors if r.detector == UNSCREENED]

    def matches(self, text: str | Folded) -> list[Hit]:
        """Every rule that matches, with its spans in the original text (``text`` folded here if it is a str)."""
        folded = text if isinstance(text, Folded) else Folded(text)
        hits = []
        for rule in self._detectors:
            spans = _SCANS[rule.detector or ""](folded.text)
            if spans:
                hits.append(Hit(self.tenant_id, rule, tuple(folded.spans(spans[:MAX_SPANS]))))
        if self._set is not None:
            for index in sorted(self._set.Match(folded.text) or ()):
                spans = self._spans(index, folded.text)
                if spans:  # the Set also reports zero-width matches; a hit needs a character
                    hits.append(Hit(self.tenant_id, self._custom[index], tuple(folded.spans(spans))))
        return hits


class Verdict(NamedTuple):
    """What screening decided about one text, across every ruleset that applies."""

    action: str | None          # None (clean), "flag", "redact" or "block": the strictest matched rule's
    text: str                   # to store and deliver: redacted spans replaced by MASK
    original: str
    hits: list[Hit] | tuple[Hit, ...] = ()

    @property
    def matches(self) -> int:
        return sum(len(h.spans) for h in self.hits)

    @property
    def blocking(self) -> Hit | None:
        return next((h for h in self.hits if h.rule.action == "block"), None)

    def flags(self, action: str = "flag") -> dict[str, list[str]]:
        """Tenant -> ids of its rules of ``action`` that matched (each tenant reviews its own).

        ``flags()`` asks for review entries; ``flags("block")`` names the
        companies whose block rules refused the text (a blocked attempt's record).
        """
        out: dict[str, list[str]] = {}
        for h in self.hits:
            if h.rule.action == action:
                out.setdefault(h.tenant_id, []).append(h.rule.id)
        return out

    def excerpt(self, tenant_id: str | None = None, action: str = "flag") -> str:
        """A short piece of the original around the first match of ``tenant_id``'s rules of ``action``
        (any match if there is none), every match in it masked."""
        flagged = [s for h in self.hits if h.rule.action == action and tenant_id in (None, h.tenant_id)
                   for s in h.spans] or [s for h in self.hits for s in h.spans]
        if not flagged:
            return ""
        first = min(flagged)
        lo, hi = max(0, first[0] - EXCERPT_CONTEXT), min(len(self.original), first[1] + EXCERPT_CONTEXT)
        inside = [(max(s, lo), min(e, hi)) for h in self.hits for s, e in h.spans if s < hi and e > lo]
        body = _replace(self.original[lo:hi], [(s - lo, e - lo) for s, e in inside])
        return ("…" if lo > 0 else "") + body + ("…" if hi < len(self.original) else "")


def blocked_text(verdict: Verdict, tenant_id: str, policy: str, key: str | None) -> dict[str, Any]:
    """What ``tenant_id``'s entry of a blocked attempt keeps of the refused text, by its policy.

    ``masked``: the excerpt around its first block match, every match masked
    (the sensitive value is kept nowhere).  ``kept``: that excerpt and the
    whole original (at most ``KEPT_TEXT_MAX`` characters; ``text_truncated``
    says when cut).  ``hashed``: no text, an HMAC-SHA256 of the NFC original
    under the company's own key, so repeated attempts of one text can be
    matched without keeping it.  ``dropped``: nothing of the text.
    """
    out: dict[str, Any] = {"text_policy": policy, "excerpt": "", "text": None, "text_truncated": None,
                           "text_hash": None}
    if policy in ("masked", "kept"):
        out["excerpt"] = verdict.excerpt(tenant_id, "block")
    if policy == "kept":
        out["text"] = verdict.original[:KEPT_TEXT_MAX]
        out["text_truncated"] = len(verdict.original) > KEPT_TEXT_MAX
    elif policy == "hashed":
        if not key:
            raise ValueError("hashed needs the company's key")
        digest = hmac.new(bytes.fromhex(key), unicodedata.normalize("NFC", verdict.original).encode(),
                          hashlib.sha256).hexdigest()
        out["text_hash"] = f"hmac-sha256:{digest}"
    return out


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
    decides which blocking rule is named.  The text is folded once
    (:class:`Folded`); spans, the redacted text and excerpts are in the
    original's characters.
    """
    sets = [rs for rs in rulesets if rs]
    hits: list[Hit] = []
    if sets:
        folded = Folded(text)  # once for every ruleset
        hits = [h for rs in sets for h in rs.matches(folded)]
    if not hits:
        return Verdict(None, text, text)
    action = max((h.rule.action for h in hits), key=RANK.__getitem__)
    out = text
    if action == "redact":
        out = _replace(text, [s for h in hits if h.rule.action == "redact" for s in h.spans])
    return Verdict(action, out, text, hits)
