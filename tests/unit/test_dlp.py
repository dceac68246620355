"""Screening (DLP) decisions: detectors, rule validation, merged verdicts. Pure logic, no network."""
import json

import pytest

from chalicelib import dlp
from chalicelib.protocol import schemas


def found(detector, text):
    return [text[s:e] for s, e in dlp.DETECTORS[detector](text)]


# --- detectors: true and false positives ---------------------------------------------

@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
                                  "5555555555554444", "378282246310005", "3782 822463 10005", "6011111111111117"])
def test_payment_card_with_valid_luhn_is_found(card):
    assert found("payment_card", f"my card: {card}, thanks") == [card]


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",            # Luhn fails
    "5555555555554445",               # Luhn fails
    "0000 0000 0000 0000",            # all zeros pass Luhn, are no card
    "1234567812345670",               # Luhn passes, but no network starts with 1
    "order 411111111111",             # 12 digits: too short
    "tracking 41111111111111111111",  # 20 digits in one block: too long
    "call +1 555 123 4567 today",
    "version 4.1.1 build 1111",
    "on 2024-01-15 at 10:30:00",
    "2024-01-15 10:30:00 2024-01-15 10:31:00",
    "order 2024-118 12 4471 ref 55501",
])
def test_payment_card_false_positives_are_ignored(text):
    assert found("payment_card", text) == []


def test_payment_card_next_to_other_numbers_is_still_found():
    assert found("payment_card", "ref 12 4111 1111 1111 1111 2029") == ["4111 1111 1111 1111"]


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82WEST12345698765432",
                                  "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300", "BE68539007547034"])
def test_iban_with_valid_mod97_is_found(iban):
    assert found("iban", f"pay to {iban} please") == [iban]


def test_iban_does_not_swallow_a_following_upper_case_word():
    assert found("iban", "IBAN DE89 3704 0044 0532 0130 00 THANKS") == ["DE89 3704 0044 0532 0130 00"]


@pytest.mark.parametrize("text", ["DE89 3704 0044 0532 0130 01", "GB82WEST12345698765433", "NL92ABNA0417164300",
                                  "AB12 is not an account", "XX00 0000 0000 0000", "de89370400440532013000"])
def test_iban_failing_mod97_is_ignored(text):
    assert found("iban", text) == []


def test_ssn_valid_and_never_issued():
    assert found("us_ssn", "ssn 536-22-8745.") == ["536-22-8745"]
    for bad in ("000-12-3456", "666-12-3456", "912-34-5678", "536-00-8745", "536-22-0000", "536228745",
                "1536-22-8745", "536-22-87451"):
        assert found("us_ssn", f"id {bad} x") == [], bad


def test_aws_access_key_ids():
    assert found("aws_access_key", "key AKIAIOSFODNN7EXAMPLE ok") == ["AKIAIOSFODNN7EXAMPLE"]
    assert found("aws_access_key", "ASIAY34FZKBOKMUTVV7A") == ["ASIAY34FZKBOKMUTVV7A"]
    for bad in ("AKIAIOSFODNN7EXAMPL", "akiaiosfodnn7example", "XAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE1",
                "AKIA0000000000000000", "BKIAIOSFODNN7EXAMPLE"):
        assert found("aws_access_key", bad) == [], bad


@pytest.mark.parametrize("kind", ["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", ""])
def test_private_key_block_is_found_whole(kind):
    key = f"-----BEGIN {kind}PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83vEm==\n-----END {kind}PRIVATE KEY-----"
    assert found("private_key", f"here:\n{key}\nbye") == [key]


def test_private_key_without_footer_runs_to_the_end_and_public_material_is_ignored():
    assert found("private_key", "x -----BEGIN PRIVATE KEY-----\nMIIE...") == ["-----BEGIN PRIVATE KEY-----\nMIIE..."]
    for text in ("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
                 "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----",
                 "never paste your private key here"):
        assert found("private_key", text) == []


def test_schema_lists_exactly_the_detectors():
    assert schemas.DLP_DETECTORS == list(dlp.DETECTORS)


# --- rule validation at save time --------------------------------------------------------

def rx(pattern, rid="r1", action="block", **kw):
    return {"id": rid, "type": "regex", "pattern": pattern, "action": action, **kw}


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?P<x>a)(?P=x)", r"secret(?=\d)", r"(?!foo)bar", r"(?<=x)y",
                                     r"(?<!x)y"])
def test_backreferences_and_lookarounds_are_refused_naming_the_rule(pattern):
    with pytest.raises(dlp.RuleError) as err:
        dlp.normalize([rx("ok", "fine"), rx(pattern, "bad-one")])
    assert err.value.rule_id == "bad-one"
    assert "'bad-one'" in str(err.value) and "not supported" in str(err.value)


@pytest.mark.parametrize("rules,rule_id,words", [
    ([rx("a" * 257)], "r1", "256"),
    ([rx("x*")], "r1", "empty"),
    ([rx(r"\b")], "r1", "empty"),
    ([rx("(")], "r1", "not supported"),
    ([rx("a"), rx("b")], "r1", "twice"),
    ([{"id": "d", "type": "detector", "detector": "passport", "action": "flag"}], "d", "detector must be"),
    ([{"id": "d", "type": "detector", "detector": "iban", "pattern": "x", "action": "flag"}], "d", "takes"),
    ([{"id": "k", "type": "keyword", "keywords": ["  "], "action": "flag"}], "k", "keywords"),
    ([rx(f"w{i}", f"r{i}") for i in range(dlp.MAX_RULES + 1)], None, "At most"),
])
def test_invalid_rule_sets_are_refused(rules, rule_id, words):
    with pytest.raises(dlp.RuleError) as err:
        dlp.normalize(rules)
    assert err.value.rule_id == rule_id and words in str(err.value)


def test_normalize_fills_defaults_and_round_trips():
    rules = dlp.normalize([{"id": "cards", "type": "detector", "detector": "payment_card", "action": "block"},
                           {"id": "falcon", "name": "Project Falcon", "type": "keyword",
                            "keywords": ["falcon"], "action": "flag"}])
    assert rules[0] == {"id": "cards", "name": "cards", "type": "detector", "action": "block", "enabled": True,
                        "detector": "payment_card"}
    assert rules[1]["caseSensitive"] is False and rules[1]["name"] == "Project Falcon"
    assert dlp.normalize(json.loads(json.dumps(rules))) == rules


# --- verdicts ----------------------------------------------------------------------------

CARD = "4111 1111 1111 1111"


def ruleset(tenant, *rules):
    return dlp.Ruleset.from_stored(tenant, dlp.normalize(list(rules)))


def test_clean_text_passes_unchanged():
    v = dlp.screen("hello there", [ruleset("acme", {"id": "c", "type": "detector", "detector": "payment_card",
                                                    "action": "block"})])
    assert v.action is None and v.text == "hello there" and v.matches == 0


def test_redact_masks_every_span_and_keeps_the_rest():
    rs = ruleset("acme", {"id": "c", "type": "detector", "detector": "payment_card", "action": "redact"},
                 {"id": "t", "type": "regex", "pattern": "TICKET-[0-9]{4}", "action": "redact"})
    v = dlp.screen(f"card {CARD} and {CARD}, see ticket-1234", [rs])
    assert v.action == "redact"
    assert v.text == f"card {dlp.MASK} and {dlp.MASK}, see {dlp.MASK}"
    assert v.matches == 3 and "1111" not in v.text


def test_keywords_match_whole_words_case_insensitively_unless_told():
    rs = ruleset("acme", {"id": "k", "type": "keyword", "keywords": ["falcon", "blue sky"], "action": "flag"})
    assert dlp.screen("Project FALCON is go", [rs]).action == "flag"
    assert dlp.screen("a Blue  Sky day", [rs]).action == "flag"     # any run of whitespace is one space
    assert dlp.screen("a Blue\n\tSky day", [rs]).action == "flag"
    assert dlp.screen("a BlueSky day", [rs]).action is None          # no space at all: not the phrase
    assert dlp.screen("falconry club", [rs]).action is None          # not a whole word
    strict = ruleset("acme", {"id": "k", "type": "keyword", "keywords": ["Falcon"], "action": "flag",
                              "caseSensitive": True})
    assert dlp.screen("falcon", [strict]).action is None and dlp.screen("Falcon", [strict]).action == "flag"


def test_disabled_rules_do_not_apply():
    rs = ruleset("acme", {"id": "c", "type": "detector", "detector": "payment_card", "action": "block",
                          "enabled": False})
    assert dlp.screen(CARD, [rs]).action is None and not rs


def test_strictest_action_wins_across_companies_and_each_company_gets_its_flags():
    acme = ruleset("acme", {"id": "cards", "type": "detector", "detector": "payment_card", "action": "flag"})
    globex = ruleset("globex", {"id": "g-cards", "type": "detector", "detector": "payment_card", "action": "redact"},
                     {"id": "g-falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"})
    v = dlp.screen(f"falcon pays with {CARD}", [acme, globex])
    assert v.action == "redact" and v.text == f"falcon pays with {dlp.MASK}"
    assert v.flags() == {"acme": ["cards"], "globex": ["g-falcon"]}
    # block beats both; the sender's company (listed first) is the one named when both block
    acme_block = ruleset("acme", {"id": "a-block", "type": "detector", "detector": "payment_card", "action": "block"})
    globex_block = ruleset("globex", {"id": "g-block", "type": "detector", "detector": "payment_card",
                                      "action": "block"})
    assert dlp.screen(CARD, [acme, globex_block]).blocking.tenant_id == "globex"
    hit = dlp.screen(CARD, [acme_block, globex_block]).blocking
    assert (hit.tenant_id, hit.rule.id) == ("acme", "a-block")


def test_excerpt_masks_the_match_and_is_short():
    rs = ruleset("acme", {"id": "c", "type": "detector", "detector": "payment_card", "action": "flag"},
                 {"id": "s", "type": "detector", "detector": "us_ssn", "action": "flag"})
    text = "x" * 500 + f" my card {CARD} and ssn 536-22-8745 " + "y" * 500
    v = dlp.screen(text, [rs])
    ex = v.excerpt("acme")
    assert v.action == "flag" and v.text == text  # flag delivers as is
    assert "4111" not in ex and "8745" not in ex and dlp.MASK in ex and "my card" in ex
    assert ex.startswith("…") and ex.endswith("…") and len(ex) < 200


def test_pathological_pattern_finishes_and_is_correct():
    """`(a+)+$` backtracks exponentially in a backtracking engine; re2 scans linearly (bench/dlp_cost.py)."""
    rs = ruleset("acme", rx("(a+)+$", "evil"))
    assert dlp.screen("a" * 200_000 + "b", [rs]).action is None
    assert dlp.screen("b" + "a" * 200_000, [rs]).action == "block"


def test_many_rules_scan_once_and_report_each_match():
    rules = [rx(f"code{i:02d}x", f"r{i}", "flag") for i in range(dlp.MAX_RULES)]
    rs = ruleset("acme", *rules)
    v = dlp.screen("see code07x and code42x", [rs])
    assert sorted(h.rule.id for h in v.hits) == ["r42", "r7"]


def test_blocked_text_keeps_what_the_policy_says():
    """kept: the excerpt and the whole text (capped); hashed: an HMAC under the company's key only;
    dropped: nothing; masked: the excerpt."""
    rs = dlp.Ruleset("acme", dlp.parse_rules([{"id": "c", "name": "cards", "type": "detector",
                                                "detector": "payment_card", "action": "block"}]))
    text = "pay 4111 1111 1111 1111 now"
    v = dlp.screen(text, [rs])
    masked = dlp.blocked_text(v, "acme", "masked", None)
    assert masked["excerpt"] == f"pay {dlp.MASK} now" and masked["text"] is None and masked["text_hash"] is None
    kept = dlp.blocked_text(v, "acme", "kept", None)
    assert (kept["text"], kept["text_truncated"], kept["excerpt"]) == (text, False, masked["excerpt"])
    key, other_key = "ab" * 32, "cd" * 32
    h1 = dlp.blocked_text(v, "acme", "hashed", key)
    assert h1["excerpt"] == "" and h1["text"] is None and h1["text_hash"].startswith("hmac-sha256:")
    # NFC: the same text typed decomposed hashes the same; another company's key does not
    assert dlp.blocked_text(v, "acme", "hashed", key)["text_hash"] == h1["text_hash"]
    assert dlp.blocked_text(v, "acme", "hashed", other_key)["text_hash"] != h1["text_hash"]
    with pytest.raises(ValueError):
        dlp.blocked_text(v, "acme", "hashed", None)
    dropped = dlp.blocked_text(v, "acme", "dropped", None)
    assert (dropped["excerpt"], dropped["text"], dropped["text_hash"]) == ("", None, None)
    long = dlp.screen("4111 1111 1111 1111 " + "x" * dlp.KEPT_TEXT_MAX, [rs])
    cut = dlp.blocked_text(long, "acme", "kept", None)
    assert len(cut["text"]) == dlp.KEPT_TEXT_MAX and cut["text_truncated"] is True


def test_blocked_text_hash_is_of_the_nfc_text():
    rs = dlp.Ruleset("acme", dlp.parse_rules([{"id": "k", "name": "k", "type": "keyword", "keywords": ["cafe"],
                                               "action": "block"}]))
    composed, decomposed = "caf\u00e9 cafe", "cafe\u0301 cafe"
    key = "11" * 32
    a = dlp.blocked_text(dlp.screen(composed, [rs]), "acme", "hashed", key)["text_hash"]
    b = dlp.blocked_text(dlp.screen(decomposed, [rs]), "acme", "hashed", key)["text_hash"]
    assert a == b


def test_the_written_out_ascii_fold_is_what_folding_each_character_gives():
    """dlp writes ASCII's fold out (no unicodedata on a cold start); it must be _fold_char's own answer."""
    for i in range(128):
        assert (dlp._ASCII_TABLE[i] or "") == dlp._fold_char(chr(i)), hex(i)
        assert (chr(i) in dlp._ASCII_DROPPED) == (len(dlp._fold_char(chr(i))) != 1), hex(i)
    assert {chr(i) for i in range(128)} & dlp._UNEVEN == set(dlp._ASCII_DROPPED)
