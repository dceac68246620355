"""File scanning: is an uploaded object what it claims to be, and is it free of known malware?

Pluggable and incremental: a :class:`Scanner` opens a session per object,
the caller feeds the object's bytes once (while hashing them), and
``finish`` returns a :class:`Verdict`.  Every configuration checks the
declared content type against the bytes (:class:`TypeCheck`: an ``.exe``
renamed ``.png`` is refused); the malware engine is either the built-in
:class:`EicarCheck` (the EICAR test string only) or a ClamAV daemon
(:class:`ClamdScanner`, clamd's INSTREAM protocol spoken directly over TCP
or a unix socket).  ``SCANNER`` selects it (see docs/files.md):

* ``builtin``  - type check + EICAR (the default; the local stack's).
* ``clamd``    - type check + clamd at ``CLAMD_ADDRESS``.
* ``guardduty`` - the malware engine is GuardDuty Malware Protection for S3, outside the
  function (its verdict arrives as an EventBridge event, ``chalicelib/guardduty.py``); the
  function runs the built-in checks only (:func:`builtin_checks`), as defence in depth.
* ``package.module:factory`` - ``factory(settings)`` returns any :class:`Scanner`.

Two failure kinds, never confused with "clean": :class:`ScannerUnavailable`
(transient: daemon down, timeout - the file stays pending and the scan is
retried) and :class:`ScanFailed` (permanent: the engine cannot scan this
object - it is rejected).  Nothing here imports boto3 or opens a connection
at import time.
"""
from __future__ import annotations

import codecs
import importlib
import select
import socket
import struct
import time
from typing import Any, Callable, NamedTuple, Protocol

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

# Content types the type check understands: each needs a recogniser below.
TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/markdown", "application/json"})
ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OOXML = "application/vnd.openxmlformats-officedocument."


def _mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


# content type -> (bytes needed, predicate on the first bytes)
MAGIC: dict[str, tuple[int, Callable[[bytes], bool]]] = {
    "image/png": (8, lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    "image/jpeg": (3, lambda h: h.startswith(b"\xff\xd8\xff")),
    "image/gif": (6, lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    "image/webp": (12, lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    "application/pdf": (5, lambda h: h.startswith(b"%PDF-")),
    "application/zip": (4, lambda h: h[:4] in ZIP),
    _OOXML + "wordprocessingml.document": (4, lambda h: h[:4] in ZIP),
    _OOXML + "spreadsheetml.sheet": (4, lambda h: h[:4] in ZIP),
    _OOXML + "presentationml.presentation": (4, lambda h: h[:4] in ZIP),
    "audio/mpeg": (3, _mp3),
    "video/mp4": (8, lambda h: h[4:8] == b"ftyp"),
}
KNOWN_TYPES = frozenset(MAGIC) | TEXT_TYPES

# Executable formats, refused whatever the declared type.
EXECUTABLE = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
              b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
HEAD_BYTES = 16


class Verdict(NamedTuple):
    clean: bool
    reason: str | None = None   # malware | type_mismatch | scan_failed
    detail: str | None = None   # signature name or what was wrong (never the content)


CLEAN = Verdict(True)


class ScannerUnavailable(Exception):
    """Transient: the engine could not be reached or did not answer in time; retry later."""


class ScanFailed(Exception):
    """Permanent: the engine refused to scan this object (e.g. over its size limit)."""


class Session(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def finish(self) -> Verdict: ...
    def close(self) -> None: ...


class Scanner(Protocol):
    name: str
    max_bytes: int  # largest object it can scan; larger uploads are refused up front

    def open(self, content_type: str, size: int) -> Session: ...


# --- built-in checks ---------------------------------------------------------------

class _TypeSession:
    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.head = b""
        self.text = content_type in TEXT_TYPES
        self.decoder = codecs.getincrementaldecoder("utf-8")() if self.text else None
        self.problem: str | None = None

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[:HEAD_BYTES - len(self.head)]
        if self.decoder is not None and self.problem is None:
            if b"\x00" in chunk:
                self.problem = "binary content declared as text"
            else:
                try:
                    self.decoder.decode(chunk)
                except UnicodeDecodeError:
                    self.problem = "not UTF-8 text"

    def finish(self) -> Verdict:
        if self.head.startswith(EXECUTABLE):
            return Verdict(False, "type_mismatch", f"executable content declared as {self.content_type}")
        if self.text:
            if self.problem is None and self.decoder is not None:
                try:
                    self.decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    self.problem = "not UTF-8 text"
            return Verdict(False, "type_mismatch", self.problem) if self.problem else CLEAN
        magic = MAGIC.get(self.content_type)
        if magic is None:
            return Verdict(False, "type_mismatch", f"no recogniser for {self.content_type}")
        if len(self.head) < magic[0] or not magic[1](self.head):
            return Verdict(False, "type_mismatch", f"content is not {self.content_type}")
        return CLEAN

    def close(self) -> None:
        pass


class TypeCheck:
    """Magic bytes (or UTF-8 text) against the declared content type."""

    name = "type"
    max_bytes = 1 << 62

    def open(self, content_type: str, size: int) -> Session:
        return _TypeSession(content_type)


class _EicarSession:
    def __init__(self) -> None:
        self.tail = b""
        self.found = False

    def feed(self, chunk: bytes) -> None:
        if not self.found:
            window = self.tail + chunk
            self.found = EICAR in window
            self.tail = window[-(len(EICAR) - 1):]

    def finish(self) -> Verdict:
        return Verdict(False, "malware", "Eicar-Test-Signature") if self.found else CLEAN

    def close(self) -> None:
        pass


class EicarCheck:
    """The built-in malware engine: the EICAR test string anywhere in the object.

    Enough to exercise the quarantine path end to end; it is *not* malware
    protection - production stages use ``SCANNER=clamd``.
    """

    name = "eicar"
    max_bytes = 1 << 62

    def open(self, content_type: str, size: int) -> Session:
        return _EicarSession()


# --- clamd ---------------------------------------------------------------------------

def parse_address(address: str) -> tuple[int, Any]:
    """``unix:/path``, ``tcp:host:port`` or ``host:port`` -> (address family, address)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if address.startswith("/"):
        return socket.AF_UNIX, address
    host, _, port = address.removeprefix("tcp:").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad clamd address {address!r}: want unix:/path or tcp:host:port")
    return socket.AF_INET6 if ":" in host else socket.AF_INET, (host.strip("[]"), int(port))


class _ClamdSession:
    def __init__(self, scanner: "ClamdScanner") -> None:
        self.scanner = scanner
        self.sent = 0
        self.sock = scanner.connect()
        self.deadline = time.monotonic() + scanner.scan_timeout
        try:
            self.sock.sendall(b"zINSTREAM\0")
        except OSError as exc:
            self.close()
            raise ScannerUnavailable(f"clamd: {exc}") from None

    def _timed(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ScannerUnavailable("clamd: scan took longer than the timeout")
        self.sock.settimeout(min(left, self.scanner.io_timeout))

    def _send(self, data: bytes) -> None:
        # clamd answers early only to refuse the stream (e.g. its size limit) and then closes it:
        # read that answer rather than write into a closed connection.
        ready = select.poll()
        ready.register(self.sock, select.POLLIN)
        if ready.poll(0):
            raise ScannerUnavailable(f"clamd answered before the end of the stream: {self._reply()[:200]}")
        self._timed()
        try:
            self.sock.sendall(data)
        except OSError as exc:
            try:
                text = self._reply()
            except ScannerUnavailable:
                raise ScannerUnavailable(f"clamd: {exc}") from None
            raise ScannerUnavailable(f"clamd closed the stream: {text[:200]}") from None

    def feed(self, chunk: bytes) -> None:
        step = self.scanner.chunk_bytes
        for i in range(0, len(chunk), step):
            part = chunk[i:i + step]
            self.sent += len(part)
            if self.sent > self.scanner.max_bytes:
                raise ScanFailed(f"object is larger than the scanner's limit ({self.scanner.max_bytes} bytes)")
            self._send(struct.pack(">I", len(part)) + part)

    def _reply(self) -> str:
        out = b""
        while not out.endswith(b"\0") and len(out) < 4096:
            self._timed()
            try:
                got = self.sock.recv(4096)
            except OSError as exc:
                raise ScannerUnavailable(f"clamd: {exc}") from None
            if not got:
                break
            out += got
        if not out.endswith(b"\0"):
            raise ScannerUnavailable("clamd closed the connection without a verdict")
        text = out[:-1].decode("utf-8", "replace").strip()
        if text.endswith("ERROR"):
            if "size limit" in text:
                raise ScanFailed(f"clamd: {text}")
            raise ScannerUnavailable(f"clamd: {text}")
        return text

    def finish(self) -> Verdict:
        try:
            self._send(struct.pack(">I", 0))
            text = self._reply()
        finally:
            self.close()
        # "stream: OK" | "stream: <signature> FOUND"
        body = text.split(":", 1)[1].strip() if ":" in text else text
        if body == "OK":
            return CLEAN
        if body.endswith(" FOUND"):
            return Verdict(False, "malware", body[:-len(" FOUND")][:200])
        raise ScannerUnavailable(f"clamd: unexpected reply {text[:200]!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ClamdScanner:
    """A ClamAV daemon over INSTREAM (``zINSTREAM\\0``, then 4-byte big-endian length-prefixed
    chunks, a zero-length chunk, and one ``\\0``-terminated reply).

    ``max_bytes`` must not exceed clamd's ``StreamMaxLength`` (25 MB by
    default): larger uploads are refused at request time.  A connect or
    reply slower than ``io_timeout``, or a whole scan slower than
    ``scan_timeout``, is :class:`ScannerUnavailable` - never clean.
    """

    name = "clamd"

    def __init__(self, address: str, *, max_bytes: int = 25 * 1024 * 1024, io_timeout: float = 5.0,
                 scan_timeout: float = 20.0, chunk_bytes: int = 256 * 1024) -> None:
        self.family, self.address = parse_address(address)
        self.max_bytes = max_bytes
        self.io_timeout = io_timeout
        self.scan_timeout = scan_timeout
        self.chunk_bytes = chunk_bytes

    def connect(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.io_timeout)
        try:
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            raise ScannerUnavailable(f"clamd at {self.address}: {exc}") from None
        return sock

    def ping(self) -> bool:
        """``zPING`` -> ``PONG``: the daemon is up and answering."""
        try:
            sock = self.connect()
        except ScannerUnavailable:
            return False
        try:
            sock.sendall(b"zPING\0")
            return sock.recv(16).rstrip(b"\0") == b"PONG"
        except OSError:
            return False
        finally:
            sock.close()

    def open(self, content_type: str, size: int) -> Session:
        if size > self.max_bytes:
            raise ScanFailed(f"object is larger than the scanner's limit ({self.max_bytes} bytes)")
        return _ClamdSession(self)


# --- composition and selection ---------------------------------------------------------

class _PipelineSession:
    def __init__(self, sessions: list[Session]) -> None:
        self.sessions = sessions

    def feed(self, chunk: bytes) -> None:
        for s in self.sessions:
            s.feed(chunk)

    def finish(self) -> Verdict:
        verdicts: list[Verdict] = []
        error: Exception | None = None
        for s in self.sessions:
            try:
                verdicts.append(s.finish())
            except (ScannerUnavailable, ScanFailed) as exc:
                error = error or exc
        bad = [v for v in verdicts if not v.clean]
        # Malware outranks a type mismatch in what the uploader is told; a definite
        # refusal by one engine needs no answer from another.
        bad.sort(key=lambda v: v.reason != "malware")
        if bad:
            return bad[0]
        if error is not None:
            raise error
        return CLEAN

    def close(self) -> None:
        for s in self.sessions:
            s.close()


class Pipeline:
    """Several engines over one pass of the bytes; the object is clean only if all say so."""

    def __init__(self, *engines: Scanner) -> None:
        self.engines = engines
        self.name = "+".join(e.name for e in engines)
        self.max_bytes = min(e.max_bytes for e in engines)

    def open(self, content_type: str, size: int) -> Session:
        sessions: list[Session] = []
        try:
            for engine in self.engines:
                sessions.append(engine.open(content_type, size))
        except BaseException:
            for s in sessions:
                s.close()
            raise
        return _PipelineSession(sessions)


def builtin_checks() -> Scanner:
    """The checks every file passes before it is announced, whatever the malware engine: type + EICAR."""
    return Pipeline(TypeCheck(), EicarCheck())


def from_settings(settings: Any) -> Scanner:
    """The scanner ``settings.scanner`` names (see the module docstring)."""
    kind = settings.scanner
    if kind in ("builtin", "guardduty"):
        return builtin_checks()
    if kind == "clamd":
        if not settings.clamd_address:
            raise ValueError("SCANNER=clamd needs CLAMD_ADDRESS (unix:/path or tcp:host:port)")
        return Pipeline(TypeCheck(), ClamdScanner(settings.clamd_address, max_bytes=settings.scan_max_bytes,
                                                  io_timeout=settings.clamd_timeout_seconds,
                                                  scan_timeout=settings.clamd_scan_timeout_seconds))
    if ":" in kind:
        module, _, factory = kind.partition(":")
        return getattr(importlib.import_module(module), factory)(settings)
    raise ValueError(f"unknown SCANNER {kind!r}: builtin, clamd, guardduty or package.module:factory")
