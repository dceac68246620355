"""Screening (DLP) of the text inside uploads, over real sockets, the S3 front and the stack's file_uploaded.

The text of a plain text, CSV, Markdown, JSON or Office (docx/xlsx/pptx)
upload is screened under every company in the conversation's rules before
``file.ready``: block (and redact: a file cannot be redacted) refuses it
with ``file.rejected`` ``blocked_content`` and a blocked-attempt entry; flag
delivers it and writes the entry; text beyond the bound follows each
company's ``file_unscreened`` rule.  Each test uses fresh companies, whose
rules are set before their first upload.
"""
from __future__ import annotations

import asyncio
import io
import zipfile

import jsonschema
import pytest

from chalicelib.config import settings
from chalicelib.models import File, TenantUsage
from chalicelib.protocol import schemas

from .test_federation import connect_companies, make_company
from .test_files import _post
from .test_screening import flags, set_rules

pytestmark = pytest.mark.e2e

CARD = "4111 1111 1111 1111"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx(*paragraphs: str) -> bytes:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", f"<w:document {W}><w:body>{body}</w:body></w:document>")
    return buf.getvalue()


async def _group(sessions, company):
    sa, sb = await sessions(company.member), await sessions(company.other)
    conv = (await sa.call("conversation.create", kind="group",
                          members=[company.user_id(company.other)]))["conversation"]["conversationId"]
    await sb.event("conversation.created")
    return sa, sb, conv


async def _upload(s, conv, data: bytes, name: str, ctype: str) -> str:
    res = await s.call("file.upload.request", conversationId=conv, name=name, size=len(data), contentType=ctype)
    resp = await asyncio.to_thread(_post, res["upload"], data)
    assert resp.status_code == 204, resp.text
    return res["file"]["fileId"]


async def _flags(stack, company, count: int) -> list[dict]:
    """The company's entries once there are ``count`` (a flag is written just after the notice goes out)."""
    for _ in range(50):
        got = flags(stack, company)["flags"]
        if len(got) >= count:
            return got
        await asyncio.sleep(0.1)
    return flags(stack, company)["flags"]


def _usage(tenant: str) -> int:
    item = TenantUsage.find(tenant)
    return int(item.file_bytes or 0) if item else 0


async def test_blocked_text_refuses_the_file_and_records_the_attempt(stack, sessions):
    co = make_company(stack, "fscan")
    set_rules(stack, co, [{"id": "cards", "name": "Payment cards", "type": "detector", "detector": "payment_card",
                           "action": "block"}])
    sa, sb, conv = await _group(sessions, co)
    before = _usage(co.tenant)
    text = ("Totals for Q3\n" * 200 + f"pay to {CARD} by Friday\n").encode()
    file_id = await _upload(sa, conv, text, "totals.csv", "text/csv")
    rejected = await sa.event("file.rejected", timeout=30, fileId=file_id)
    jsonschema.validate(rejected, schemas.OUTBOUND["file.rejected"])
    assert (rejected["reason"], rejected["ruleId"], rejected["ruleName"], rejected["side"]) == (
        "blocked_content", "cards", "Payment cards", co.tenant)
    assert CARD not in str(rejected)
    await sb.no_event("file.ready", wait=1.0)
    await sb.no_event("file.rejected", wait=0.1)
    assert (await sb.call("history", conversationId=conv))["messages"] == []
    rec = File.find(file_id, consistent=True)
    assert (rec.status, rec.reason) == ("deleted", "blocked_content")
    assert _usage(co.tenant) == before
    (entry,) = flags(stack, co)["flags"]
    assert (entry["source"], entry["action"], entry["fileId"], entry["conversationId"], entry["ruleIds"]) == (
        "file_content", "block", file_id, conv, ["cards"])
    assert "[redacted]" in entry["excerpt"] and "4111" not in entry["excerpt"]


async def test_flagged_docx_is_delivered_and_redact_refuses(stack, sessions):
    co = make_company(stack, "fscan")
    set_rules(stack, co, [{"id": "falcon", "type": "keyword", "keywords": ["falcon"], "action": "flag"},
                          {"id": "ssn", "type": "detector", "detector": "us_ssn", "action": "redact"}])
    sa, sb, conv = await _group(sessions, co)
    flagged = await _upload(sa, conv, docx("Plan", "Project Falcon ships in May"), "plan.docx", DOCX)
    ready = await sb.event("file.ready", timeout=30, file__fileId=flagged)
    assert ready["file"]["name"] == "plan.docx"
    (entry,) = await _flags(stack, co, 1)
    assert (entry["source"], entry["action"], entry["fileId"], entry["ruleIds"]) == (
        "file_content", "flag", flagged, ["falcon"])
    assert "[redacted]" in entry["excerpt"]
    # A redact rule cannot redact a file: the file is refused, like a block.
    refused = await _upload(sa, conv, docx("HR record", "SSN 219-09-9999"), "hr.docx", DOCX)
    rejected = await sa.event("file.rejected", timeout=30, fileId=refused)
    assert (rejected["reason"], rejected["ruleId"]) == ("blocked_content", "ssn")
    newest = flags(stack, co)["flags"][0]
    assert (newest["action"], newest["fileId"], newest["ruleIds"]) == ("block", refused, ["ssn"])
    # A docx that is not a readable archive is not what it claims to be.
    broken = await _upload(sa, conv, b"PK\x03\x04" + b"\x00" * 200, "broken.docx", DOCX)
    assert (await sa.event("file.rejected", timeout=30, fileId=broken))["reason"] == "type_mismatch"


async def test_the_other_companys_rule_refuses_in_an_external_conversation(stack, sessions):
    a, b = make_company(stack, "fsa"), make_company(stack, "fsb")
    set_rules(stack, b, [{"id": "secret", "name": "Secret word", "type": "keyword", "keywords": ["bluebird"],
                          "action": "block"}])
    set_rules(stack, a, [])
    connect_companies(stack, a, b)
    sa, sb = await sessions(a.member), await sessions(b.member)
    cid = (await sa.call("conversation.create", kind="group", memberEmails=[b.member]))["conversation"][
        "conversationId"]
    await sb.event("conversation.created", conversation__conversationId=cid)
    file_id = await _upload(sa, cid, b"# Notes\n\nThe bluebird plan.\n", "notes.md", "text/markdown")
    rejected = await sa.event("file.rejected", timeout=30, fileId=file_id)
    assert (rejected["reason"], rejected["side"], rejected["ruleId"]) == ("blocked_content", b.tenant, "secret")
    await sb.no_event("file.ready", wait=1.0)
    assert [(f["source"], f["fileId"]) for f in flags(stack, b)["flags"]] == [("file_content", file_id)]
    assert flags(stack, a)["flags"] == []  # a's rules did not refuse it


async def test_text_beyond_the_bound_follows_the_file_unscreened_rule(stack, sessions):
    bound = settings().file_screen_max_chars
    co = make_company(stack, "fscan")
    set_rules(stack, co, [{"id": "cards", "type": "detector", "detector": "payment_card", "action": "block"},
                          {"id": "unscreened", "type": "detector", "detector": "file_unscreened", "action": "flag"}])
    sa, sb, conv = await _group(sessions, co)
    line = b"nothing to see here, just a long log line\n"
    big = line * (bound // len(line) + 1) + f"card {CARD} after the bound\n".encode()
    file_id = await _upload(sa, conv, big, "big.log.txt", "text/plain")
    await sb.event("file.ready", timeout=60, file__fileId=file_id)  # flag: delivered, and recorded
    (entry,) = await _flags(stack, co, 1)
    assert (entry["source"], entry["action"], entry["fileId"], entry["ruleIds"]) == (
        "file_content", "flag", file_id, ["unscreened"])
    # A company whose rule refuses what was not screened: the same file is refused.
    strict = make_company(stack, "fscan")
    set_rules(stack, strict, [{"id": "unscreened", "type": "detector", "detector": "file_unscreened",
                               "action": "block"}])
    sc, _sd, conv2 = await _group(sessions, strict)
    again = await _upload(sc, conv2, big, "big.log.txt", "text/plain")
    rejected = await sc.event("file.rejected", timeout=60, fileId=again)
    assert (rejected["reason"], rejected["ruleId"]) == ("blocked_content", "unscreened")
    # ... and one just under the bound is screened to its end: the card is found.
    small = line * ((bound - 200) // len(line)) + f"card {CARD}\n".encode()
    third = await _upload(sa, conv, small, "small.log.txt", "text/plain")
    assert (await sa.event("file.rejected", timeout=60, fileId=third))["ruleId"] == "cards"
