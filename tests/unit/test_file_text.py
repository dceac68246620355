"""Text of uploads for screening (chalicelib/file_text.py), GuardDuty's event (chalicelib/guardduty.py)
and the file-content verdict (files.screen_content): pure, no stack."""
from __future__ import annotations

import io
import json
import logging
import zipfile

import pytest

from chalicelib import dlp, file_events, file_text, guardduty
from chalicelib.config import settings
from chalicelib.identity import Principal
from chalicelib.services import files
from chalicelib.services.context import Call

CARD = "4111 1111 1111 1111"
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
S = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def docx(*paragraphs: str, extra: dict[str, str] | None = None) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    parts = {"[Content_Types].xml": "<Types/>", "word/document.xml": f"<w:document {W}><w:body>{body}</w:body></w:document>",
             **(extra or {})}
    return _zip(parts)


def _zip(parts: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buf.getvalue()


def extract(data: bytes, ctype: str, max_chars: int = 1 << 20, chunk: int = 7) -> file_text.Extracted:
    c = file_text.Collector(ctype, max_chars)
    for i in range(0, len(data), chunk):
        c.feed(data[i:i + chunk])
    return c.finish()


def test_docx_body_headers_comments_and_properties():
    data = docx("Quarterly plan", f"pay {CARD}", extra={
        "word/header1.xml": f"<w:hdr {W}><w:p><w:r><w:t>CONFIDENTIAL header</w:t></w:r></w:p></w:hdr>",
        "word/comments.xml": f"<w:comments {W}><w:comment><w:p><w:r><w:t>a comment</w:t></w:r></w:p></w:comment></w:comments>",
        "docProps/core.xml": '<cp:coreProperties xmlns:cp="x" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                             "<dc:title>Falcon title</dc:title></cp:coreProperties>",
        "word/media/image1.png": b"\x89PNG not read"})
    out = extract(data, file_text.DOCX)
    assert out.complete
    assert out.text.split("\n")[:2] == ["Quarterly plan", f"pay {CARD}"]
    for piece in ("CONFIDENTIAL header", "a comment", "Falcon title"):
        assert piece in out.text
    assert "PNG" not in out.text


def test_xlsx_shared_strings_inline_strings_and_numbers_but_not_string_indexes():
    sheet = (f"<worksheet {S}><sheetData><row><c r='A1' t='s'><v>0</v></c><c r='B1'><v>4111111111111111</v></c>"
             "<c r='C1' t='inlineStr'><is><t>inline text</t></is></c></row></sheetData></worksheet>")
    data = _zip({"xl/workbook.xml": f"<workbook {S}/>", "xl/sharedStrings.xml":
                 f"<sst {S}><si><t>shared secret</t></si></sst>", "xl/worksheets/sheet1.xml": sheet})
    out = extract(data, file_text.XLSX)
    assert "shared secret" in out.text and "4111111111111111" in out.text and "inline text" in out.text
    assert "\t0\t" not in out.text and not out.text.startswith("0")


def test_pptx_slides_in_numeric_order_and_notes():
    slide = lambda t: f"<p:sld xmlns:p='p' {A}><a:p><a:r><a:t>{t}</a:t></a:r></a:p></p:sld>"  # noqa: E731
    data = _zip({"ppt/presentation.xml": "<p:presentation xmlns:p='p'/>", "ppt/slides/slide10.xml": slide("ten"),
                 "ppt/slides/slide2.xml": slide("two"), "ppt/notesSlides/notesSlide1.xml": slide("speaker note")})
    out = extract(data, file_text.PPTX)
    assert out.text.index("two") < out.text.index("ten") < out.text.index("speaker note")


def test_bounds_mark_the_text_incomplete():
    out = extract(("x" * 50 + CARD).encode(), "text/plain", max_chars=40)
    assert not out.complete and len(out.text) == 40 and "beyond 40" in out.why
    out = extract(docx("a" * 100, CARD), file_text.DOCX, max_chars=60)
    assert not out.complete and CARD not in out.text
    assert extract(b"short", "text/plain", max_chars=40).complete


def test_zip_bomb_is_bounded(monkeypatch):
    monkeypatch.setattr(file_text, "MAX_XML_BYTES", 1 << 20)
    body = "<w:p><w:r><w:t>" + "A" * (8 << 20) + "</w:t></w:r></w:p>"
    data = _zip({"word/document.xml": f"<w:document {W}><w:body>{body}</w:body></w:document>"})
    assert len(data) < 64 * 1024  # 8 MB of XML in a few KB
    out = extract(data, file_text.DOCX, chunk=1 << 16)
    assert not out.complete and "expands beyond" in out.why


def test_too_many_entries_is_not_walked(monkeypatch):
    monkeypatch.setattr(file_text, "MAX_ENTRIES", 5)
    data = _zip({"word/document.xml": f"<w:document {W}/>", **{f"x/{i}": "" for i in range(6)}})
    out = extract(data, file_text.DOCX)
    assert not out.complete and out.text == ""


@pytest.mark.parametrize("data", [b"PK\x03\x04 not really a zip", _zip({"other.xml": "<a/>"}),
                                  _zip({"word/document.xml": "<w:document><unclosed></w:document>"})])
def test_unreadable_archives(data):
    with pytest.raises(file_text.Unreadable):
        extract(data, file_text.DOCX)


def test_json_escapes_are_decoded_and_utf8_split_across_chunks():
    out = extract(json.dumps({"card": "4111\u0031"}).encode().replace(b"41111", b"4111\\u0031"), "application/json")
    assert "41111" in out.text
    assert extract("été ✓".encode(), "text/markdown", chunk=1).text == "été ✓"
    assert not file_text.screened("image/png") and file_text.screened("text/csv")


# --- GuardDuty's event ---------------------------------------------------------------

def test_event_round_trip():
    ev = guardduty.event("b", "t/c/f/x.txt", "v1", guardduty.THREATS_FOUND, ("EICAR-Test-File (not a virus)",))
    assert ev["detail-type"] == "GuardDuty Malware Protection Object Scan Result" and ev["source"] == "aws.guardduty"
    r = guardduty.parse(ev)
    assert (r.bucket, r.key, r.version_id, r.status, r.threats) == (
        "b", "t/c/f/x.txt", "v1", "THREATS_FOUND", ("EICAR-Test-File (not a virus)",))
    clean = guardduty.parse(guardduty.event("b", "k", None, guardduty.NO_THREATS_FOUND))
    assert clean.threats == () and clean.version_id is None


@pytest.mark.parametrize("ev", [None, [], {"source": "aws.s3"},
                                {"source": "aws.guardduty", "detail-type": guardduty.DETAIL_TYPE},
                                {"source": "aws.guardduty", "detail-type": guardduty.DETAIL_TYPE,
                                 "detail": {"s3ObjectDetails": {"bucketName": "b"}, "scanResultDetails": {}}},
                                {"source": "aws.guardduty", "detail-type": guardduty.DETAIL_TYPE,
                                 "detail": {"s3ObjectDetails": {"bucketName": "b", "objectKey": "k"},
                                            "scanResultDetails": {"scanResultStatus": "MAYBE"}}}])
def test_malformed_events_are_refused(ev):
    with pytest.raises(guardduty.Malformed):
        guardduty.parse(ev)


def test_handler_drops_malformed_and_ignores_other_buckets(caplog, monkeypatch):
    def boom():
        raise AssertionError("no AWS client for an event that is dropped")

    monkeypatch.setattr("chalicelib.runtime.files_env", boom)
    with caplog.at_level(logging.INFO, logger="chat.file_events"):
        assert file_events.on_scan_result({"detail-type": "nonsense"}) == "malformed"
        other = guardduty.event("someone-elses-bucket", "a/b/c/d", None, guardduty.THREATS_FOUND, ("x",))
        assert file_events.on_scan_result(other) == "ignored"
    assert "malformed scan result dropped" in caplog.text and "Traceback" not in caplog.text
    assert "scan result for another bucket ignored" in caplog.text


# --- the verdict on a file's text ------------------------------------------------------

def _sets(*tenant_rules):
    return [dlp.Ruleset(t, dlp.parse_rules(rules)) for t, rules in tenant_rules]


def _call():
    return Call(principal=Principal("acme", "u1", ""), delivery=None, clock=lambda: 0.0, settings=settings())


def test_redact_refuses_a_file_and_strictest_side_wins():
    sets = _sets(("acme", [{"id": "fal", "type": "keyword", "keywords": ["falcon"], "action": "flag"}]),
                 ("north", [{"id": "cards", "type": "detector", "detector": "payment_card", "action": "redact"}]))
    v = files.screen_content(_call(), sets, file_text.Extracted(f"falcon {CARD}", True))
    assert v.action == "block" and v.blocking.tenant_id == "north" and v.blocking.rule.id == "cards"
    assert v.flags("block") == {"north": ["cards"]} and CARD not in v.excerpt("north", "block")
    flag = files.screen_content(_call(), sets, file_text.Extracted("falcon only", True))
    assert flag.action == "flag" and flag.flags() == {"acme": ["fal"]}
    assert files.screen_content(_call(), sets, file_text.Extracted("nothing", True)).action is None


def test_unscreened_rest_follows_each_companys_rule():
    sets = _sets(("acme", [{"id": "big", "type": "detector", "detector": "file_unscreened", "action": "flag"}]),
                 ("north", [{"id": "fal", "type": "keyword", "keywords": ["falcon"], "action": "flag"}]))
    partial = file_text.Extracted("harmless", False, "text beyond 8 characters")
    v = files.screen_content(_call(), sets, partial)
    assert v.action == "flag" and v.flags() == {"acme": ["big"]}
    assert files.screen_content(_call(), sets, file_text.Extracted("harmless", True)).action is None
    strict = _sets(("acme", [{"id": "big", "type": "detector", "detector": "file_unscreened", "action": "block"}]))
    assert files.screen_content(_call(), strict, partial).blocking.rule.id == "big"
    # the detector never matches a message
    assert dlp.screen("anything at all " * 10, strict).action is None
