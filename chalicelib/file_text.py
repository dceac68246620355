"""The text of a text-bearing upload, for screening (DLP) before anyone sees the file.

Pure, standard library only (no parser dependency in the Lambda package):

* **text types** (``text/plain``, ``text/csv``, ``text/markdown``,
  ``application/json``): the UTF-8 text itself (the type check has already
  refused anything that is not UTF-8).  JSON that parses is screened with
  its string escapes decoded (``"4111\\u0031…"`` is screened as digits).
* **Office Open XML** (docx, xlsx, pptx): ZIP archives of XML parts.  The
  parts that carry what a reader sees are read with ``zipfile`` and parsed
  incrementally with ``xml.etree``'s pull parser: the body, headers,
  footers, footnotes, endnotes and comments of a document; the shared
  strings, inline strings, cell values and comments of a workbook; the
  slides, speaker notes and comments of a presentation; and every
  document's core properties (title, subject, author, keywords,
  description).  Embedded objects, images and macros are not read.

Everything is bounded, so a hostile archive cannot make the function run
out of memory or time (a "zip bomb"): at most ``max_chars`` characters of
text are collected, at most :data:`MAX_XML_BYTES` of XML are decompressed
in total, and an archive with more than :data:`MAX_ENTRIES` entries is not
walked.  When a bound stops the extraction, :attr:`Extracted.complete` is
False: the rest of the file was **not screened** - what that means is the
tenants' rule (detector ``file_unscreened``, docs/compliance.md).

A file whose bytes are not a readable archive of its declared type is
:class:`Unreadable` (the upload is refused as ``type_mismatch``).
"""
from __future__ import annotations

import codecs
import io
import json
import re
import zipfile
from typing import Iterator, NamedTuple
from xml.etree.ElementTree import ParseError, XMLPullParser

TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/markdown", "application/json"})
_OOXML = "application/vnd.openxmlformats-officedocument."
DOCX = _OOXML + "wordprocessingml.document"
XLSX = _OOXML + "spreadsheetml.sheet"
PPTX = _OOXML + "presentationml.presentation"

MAX_XML_BYTES = 64 * 1024 * 1024  # decompressed XML read from one archive, all parts together
MAX_ENTRIES = 10_000              # entries in an archive (Office files have tens to a few thousand)
READ_CHUNK = 64 * 1024

# The parts read, per type, in this order (numbered parts in numeric order: slide2 before slide10).
PARTS: dict[str, tuple[str, ...]] = {
    DOCX: (r"word/document\.xml", r"word/header\d*\.xml", r"word/footer\d*\.xml", r"word/footnotes\.xml",
           r"word/endnotes\.xml", r"word/comments\.xml", r"docProps/core\.xml"),
    XLSX: (r"xl/sharedStrings\.xml", r"xl/worksheets/sheet\d+\.xml", r"xl/comments\d*\.xml",
           r"docProps/core\.xml"),
    PPTX: (r"ppt/slides/slide\d+\.xml", r"ppt/notesSlides/notesSlide\d+\.xml", r"ppt/comments/[^/]+\.xml",
           r"docProps/core\.xml"),
}
MAIN_PART = {DOCX: "word/document.xml", XLSX: "xl/workbook.xml", PPTX: "ppt/presentation.xml"}
SCREENED_TYPES = TEXT_TYPES | frozenset(PARTS)

# Elements whose text is content (w:t, a:t, a shared or inline string's t, a cell's v, core properties),
# and elements after which a line (or a cell) ends.
_TEXT_TAGS = frozenset({"t", "v", "instrText", "title", "subject", "creator", "keywords", "description",
                        "lastModifiedBy", "category", "text"})
_LINE_TAGS = frozenset({"p", "si", "row", "br", "cr", "comment"})
_CELL_TAGS = frozenset({"c", "tab"})


class Unreadable(ValueError):
    """The bytes are not a readable file of the declared type (bad ZIP, no main part, bad XML)."""


class Extracted(NamedTuple):
    text: str
    complete: bool              # False: a bound stopped the extraction; the rest was not screened
    why: str | None = None      # what stopped it (for logs and the flag), never content


def screened(content_type: str) -> bool:
    """Is the text of this type screened at all (other types: images, PDF, ZIP, audio, video are not)?"""
    return content_type in SCREENED_TYPES


class Collector:
    """Fed the object's bytes once, alongside the scanner; ``finish`` extracts the text."""

    def __init__(self, content_type: str, max_chars: int) -> None:
        self.content_type = content_type
        self.max_chars = max_chars
        self.text_type = content_type in TEXT_TYPES
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace") if self.text_type else None
        self.parts: list[str] = []
        self.chars = 0
        self.truncated = False
        self.raw: list[bytes] = []  # an archive: its bytes, read once the upload is whole

    def feed(self, chunk: bytes) -> None:
        if self.decoder is not None:
            if self.truncated:
                return
            text = self.decoder.decode(chunk)
            room = self.max_chars - self.chars
            if len(text) > room:
                text, self.truncated = text[:room], True
            self.parts.append(text)
            self.chars += len(text)
        elif self.content_type in PARTS:
            self.raw.append(chunk)

    def finish(self) -> Extracted:
        if self.decoder is not None:
            if not self.truncated:
                self.parts.append(self.decoder.decode(b"", final=True)[:self.max_chars - self.chars])
            text = "".join(self.parts)
            if self.content_type == "application/json" and not self.truncated:
                text = _json_text(text)
            return Extracted(text, not self.truncated, f"text beyond {self.max_chars} characters"
                             if self.truncated else None)
        if self.content_type in PARTS:
            data, self.raw = b"".join(self.raw), []
            return ooxml_text(data, self.content_type, self.max_chars)
        return Extracted("", True)


def _json_text(text: str) -> str:
    """JSON with its escapes decoded (what a reader of the values sees); the raw text if it does not parse."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False)


def _order(name: str) -> tuple[str, int]:
    m = re.search(r"(\d+)\.xml$", name)
    return (name[:m.start()] if m else name[:-4], int(m.group(1)) if m else -1)


def _parts(zf: zipfile.ZipFile, content_type: str) -> list[zipfile.ZipInfo]:
    infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    if MAIN_PART[content_type] not in infos:
        raise Unreadable(f"no {MAIN_PART[content_type]} in the archive")
    out: list[zipfile.ZipInfo] = []
    for pattern in PARTS[content_type]:
        rx = re.compile(pattern)
        out += sorted((i for n, i in infos.items() if rx.fullmatch(n)), key=lambda i: _order(i.filename))
    return out


class _Budget:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self.xml_bytes = 0
        self.out: list[str] = []
        self.why: str | None = None

    def add(self, text: str) -> bool:
        room = self.max_chars - self.chars
        if len(text) > room:
            self.out.append(text[:room])
            self.chars = self.max_chars
            self.why = f"text beyond {self.max_chars} characters"
            return False
        self.out.append(text)
        self.chars += len(text)
        return True


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Iterator[bytes]:
    with zf.open(info) as part:
        while True:
            room = MAX_XML_BYTES - budget.xml_bytes
            if room <= 0:
                if part.read(1):
                    budget.why = budget.why or f"archive expands beyond {MAX_XML_BYTES} bytes of XML"
                return
            chunk = part.read(min(READ_CHUNK, room))
            if not chunk:
                return
            budget.xml_bytes += len(chunk)
            yield chunk


def _part_text(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, sheet: bool) -> bool:
    """Append one part's text; False once a bound was hit."""
    parser = XMLPullParser(events=("start", "end") if sheet else ("end",))  # starts only for a cell's type
    skip_value = False  # a worksheet cell of type "s": its <v> is an index into the shared strings
    try:
        for chunk in _read(zf, info, budget):
            parser.feed(chunk)
            for event, elem in parser.read_events():
                name = _local(elem.tag)
                if event == "start":
                    if sheet and name == "c":
                        skip_value = elem.get("t") == "s"
                    continue
                if name in _TEXT_TAGS and elem.text and not (name == "v" and (skip_value or not sheet)):
                    if not budget.add(elem.text):
                        return False
                if name in _LINE_TAGS:
                    budget.add("\n")
                elif name in _CELL_TAGS:
                    budget.add("\t")
                elem.clear()  # keep memory flat: the text is taken, the element is not needed
        if budget.why:
            return False
        parser.close()
    except ParseError as exc:
        raise Unreadable(f"{info.filename}: not well-formed XML ({exc.code})") from None
    return True


def ooxml_text(data: bytes, content_type: str, max_chars: int) -> Extracted:
    """The text of a docx/xlsx/pptx archive, within the bounds (module docstring)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Unreadable(f"not a readable ZIP archive ({str(exc)[:80]})") from None
    with zf:
        if len(zf.infolist()) > MAX_ENTRIES:
            return Extracted("", False, f"archive has more than {MAX_ENTRIES} entries")
        budget = _Budget(max_chars)
        try:
            for info in _parts(zf, content_type):
                if not _part_text(zf, info, budget, sheet=info.filename.startswith("xl/worksheets/")):
                    break
                budget.add("\n")
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            # corrupt member, an unsupported compression method, an encrypted member
            raise Unreadable(f"an archive member cannot be read ({str(exc)[:80]})") from None
    return Extracted("".join(budget.out), budget.why is None, budget.why)
