"""The scanner: built-in checks, the clamd INSTREAM adapter against a fake daemon, and a real clamd.

The real-clamd tests need Debian's clamav-daemon (``make clamav``); they build
a tiny signature database of their own (no official signatures are
downloaded) and are skipped cleanly when ``clamd``/``sigtool`` are absent.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from chalicelib import scanner
from chalicelib.config import from_env

PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)
EXE = b"MZ\x90\x00" + bytes(200)


def _scan(engine, data: bytes, ctype: str, chunk: int = 7):
    session = engine.open(ctype, len(data))
    try:
        for i in range(0, len(data), chunk):
            session.feed(data[i:i + chunk])
        return session.finish()
    finally:
        session.close()


@pytest.mark.parametrize("data,ctype,clean", [
    (PNG, "image/png", True),
    (EXE, "image/png", False),             # an .exe renamed .png
    (PNG, "image/jpeg", False),
    (b"\xff\xd8\xff\xe0" + bytes(20), "image/jpeg", True),
    (b"GIF89a" + bytes(20), "image/gif", True),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", True),
    (b"%PDF-1.7\n", "application/pdf", True),
    (b"PK\x03\x04" + bytes(30), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", True),
    (b"\x00\x00\x00\x18ftypmp42", "video/mp4", True),
    ("naïve café, 東京\n".encode(), "text/plain", True),
    (b"a,b\n1,2\n", "text/csv", True),
    (b"caf\xe9", "text/plain", False),     # Latin-1, not UTF-8
    (b"text\x00with nul", "text/plain", False),
    (EXE, "text/plain", False),
    (b"\x7fELF\x02\x01\x01", "application/zip", False),
    (b"anything", "application/x-unknown", False),
    (b"%PD", "application/pdf", False),    # too short to be what it claims
])
def test_type_check(data, ctype, clean):
    verdict = _scan(scanner.TypeCheck(), data, ctype)
    assert verdict.clean is clean
    if not clean:
        assert verdict.reason == "type_mismatch"


def test_utf8_split_across_chunks_is_text():
    assert _scan(scanner.TypeCheck(), "é".encode() * 50, "text/plain", chunk=3).clean


def test_eicar_found_anywhere_even_across_chunk_boundaries():
    engine = scanner.EicarCheck()
    for prefix in (b"", b"x" * 5, b"y" * 1000):
        verdict = _scan(engine, prefix + scanner.EICAR + b"\r\n", "text/plain", chunk=13)
        assert not verdict.clean and verdict.reason == "malware"
    assert _scan(engine, scanner.EICAR[:-1] + b"?", "text/plain").clean


def test_pipeline_reports_malware_before_type_mismatch():
    builtin = scanner.from_settings(from_env({"SCANNER": "builtin"}))
    verdict = _scan(builtin, scanner.EICAR, "image/png")
    assert verdict.reason == "malware"
    assert _scan(builtin, PNG, "image/png").clean


def test_selection_by_configuration():
    assert scanner.from_settings(from_env({})).name == "type+eicar"
    clamd = scanner.from_settings(from_env({"SCANNER": "clamd", "CLAMD_ADDRESS": "unix:/run/clamd.ctl",
                                            "SCAN_MAX_BYTES": "1000"}))
    assert clamd.name == "type+clamd" and clamd.max_bytes == 1000
    with pytest.raises(ValueError):
        scanner.from_settings(from_env({"SCANNER": "clamd"}))
    with pytest.raises(ValueError):
        scanner.from_settings(from_env({"SCANNER": "nope"}))
    plugin = scanner.from_settings(from_env({"SCANNER": "tests.unit.test_scanner:plugin_factory"}))
    assert isinstance(plugin, scanner.TypeCheck)


def plugin_factory(settings):
    """``SCANNER=package.module:factory``: any object with ``name``, ``max_bytes`` and ``open``."""
    return scanner.TypeCheck()


def test_addresses():
    assert scanner.parse_address("unix:/run/clamd.ctl") == (socket.AF_UNIX, "/run/clamd.ctl")
    assert scanner.parse_address("tcp:127.0.0.1:3310") == (socket.AF_INET, ("127.0.0.1", 3310))
    assert scanner.parse_address("clamd.internal:3310") == (socket.AF_INET, ("clamd.internal", 3310))
    with pytest.raises(ValueError):
        scanner.parse_address("tcp:nohost")


# --- a fake clamd speaking INSTREAM ------------------------------------------------------------

class FakeClamd:
    """Accepts one INSTREAM per connection, records the chunks, answers like clamd."""

    def __init__(self, reply=b"stream: OK\0", delay: float = 0.0, close_after: int | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = "tcp:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.reply, self.delay, self.close_after = reply, delay, close_after
        self.commands: list[bytes] = []
        self.chunks: list[list[bytes]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read(self, conn, n):
        buf = b""
        while len(buf) < n:
            got = conn.recv(n - len(buf))
            if not got:
                raise ConnectionError
            buf += got
        return buf

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    cmd = b""
                    while not cmd.endswith(b"\0"):
                        cmd += self._read(conn, 1)
                    self.commands.append(cmd)
                    if cmd == b"zPING\0":
                        conn.sendall(b"PONG\0")
                        continue
                    chunks: list[bytes] = []
                    self.chunks.append(chunks)
                    total = 0
                    while True:
                        (n,) = struct.unpack(">I", self._read(conn, 4))
                        if n == 0:
                            break
                        chunks.append(self._read(conn, n))
                        total += n
                        if self.close_after is not None and total > self.close_after:
                            conn.sendall(b"INSTREAM size limit exceeded. ERROR\0")
                            break
                    if self.close_after is not None and total > self.close_after:
                        continue
                    time.sleep(self.delay)
                    conn.sendall(self.reply)
                except (ConnectionError, OSError):
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def fake():
    servers = []

    def make(**kw):
        s = FakeClamd(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_instream_framing_and_clean_reply(fake):
    server = fake()
    engine = scanner.ClamdScanner(server.address, chunk_bytes=10)
    data = bytes(range(256)) * 3
    assert _scan(engine, data, "application/pdf", chunk=100).clean
    assert server.commands == [b"zINSTREAM\0"]
    assert all(len(c) <= 10 for c in server.chunks[0]) and b"".join(server.chunks[0]) == data
    assert engine.ping() is True


def test_found_reply_is_malware(fake):
    server = fake(reply=b"stream: Win.Test.EICAR_HDB-1 FOUND\0")
    verdict = _scan(scanner.ClamdScanner(server.address), b"whatever", "text/plain")
    assert not verdict.clean and verdict.reason == "malware" and verdict.detail == "Win.Test.EICAR_HDB-1"


def test_daemon_down_is_unavailable_never_clean():
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    address = "tcp:127.0.0.1:%d" % port.getsockname()[1]
    port.close()
    engine = scanner.ClamdScanner(address, io_timeout=0.5)
    with pytest.raises(scanner.ScannerUnavailable):
        engine.open("text/plain", 3)
    assert engine.ping() is False
    with pytest.raises(scanner.ScannerUnavailable):  # a pipeline with it is unavailable too
        _scan(scanner.Pipeline(scanner.TypeCheck(), engine), b"abc", "text/plain")


def test_slow_daemon_times_out(fake):
    server = fake(delay=2.0)
    engine = scanner.ClamdScanner(server.address, io_timeout=0.3, scan_timeout=0.6)
    started = time.monotonic()
    with pytest.raises(scanner.ScannerUnavailable):
        _scan(engine, b"abc", "text/plain")
    assert time.monotonic() - started < 1.5


def test_size_cap_and_daemon_size_limit_fail_permanently(fake):
    with pytest.raises(scanner.ScanFailed):
        scanner.ClamdScanner(fake().address, max_bytes=10).open("text/plain", 11)
    server = fake(close_after=50)
    engine = scanner.ClamdScanner(server.address, chunk_bytes=20)
    with pytest.raises(scanner.ScanFailed):
        _scan(engine, b"x" * 100, "text/plain", chunk=20)


def test_type_mismatch_decides_without_the_daemon():
    """A definite refusal needs no answer from a daemon that is down."""
    class Down:
        name, max_bytes = "down", 1 << 30

        def open(self, content_type, size):
            class S:
                def feed(self, chunk): pass
                def finish(self): raise scanner.ScannerUnavailable("down")
                def close(self): pass
            return S()

    verdict = _scan(scanner.Pipeline(scanner.TypeCheck(), Down()), EXE, "image/png")
    assert verdict.reason == "type_mismatch"


# --- a real clamd (Debian's clamav-daemon) ----------------------------------------------------

CLAMD, SIGTOOL = shutil.which("clamd") or "/usr/sbin/clamd", shutil.which("sigtool")
needs_clamd = pytest.mark.skipif(not (os.path.exists(CLAMD) and SIGTOOL),
                                 reason="clamd/sigtool not installed (`make clamav`)")


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    """clamd on a unix socket and a TCP port, with a two-signature database built here."""
    base = tmp_path_factory.mktemp("clamd")
    db = base / "db"
    db.mkdir()
    sample = base / "known-bad.bin"
    sample.write_bytes(b"known bad sample " + bytes(range(256)))
    (db / "test.hdb").write_text(subprocess.run([SIGTOOL, "--md5", str(sample)], check=True, capture_output=True,
                                                text=True).stdout)
    (db / "test.ndb").write_text(f"Test.EICAR-1:0:*:{scanner.EICAR.hex()}\n")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sock = base / "clamd.sock"
    conf = base / "clamd.conf"
    conf.write_text("\n".join([
        "Foreground yes", f"LocalSocket {sock}", f"TCPSocket {port}", "TCPAddr 127.0.0.1",
        f"DatabaseDirectory {db}", f"LogFile {base / 'clamd.log'}", "StreamMaxLength 1M",
        f"PidFile {base / 'clamd.pid'}",
    ] + ([f"User {getpass.getuser()}"] if os.geteuid() == 0 else [])) + "\n")
    proc = subprocess.Popen([CLAMD, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = scanner.ClamdScanner(f"unix:{sock}")
    deadline = time.monotonic() + 60
    while not engine.ping():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log = (base / "clamd.log").read_text() if (base / "clamd.log").exists() else ""
            pytest.skip(f"clamd did not start: {log[-500:]}")
        time.sleep(0.2)
    yield {"unix": f"unix:{sock}", "tcp": f"tcp:127.0.0.1:{port}", "sample": sample.read_bytes(), "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@needs_clamd
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_real_clamd_finds_eicar_and_a_hash_signature(clamd, transport):
    engine = scanner.ClamdScanner(clamd[transport], chunk_bytes=4096)
    verdict = _scan(engine, b"prefix " + scanner.EICAR, "text/plain", chunk=5)
    assert verdict.reason == "malware" and verdict.detail.startswith("Test.EICAR-1")
    verdict = _scan(engine, clamd["sample"], "application/zip", chunk=64)
    assert verdict.reason == "malware" and "known-bad" in verdict.detail
    assert _scan(engine, b"perfectly harmless text\n" * 1000, "text/plain", chunk=1000).clean


@needs_clamd
def test_real_clamd_size_limit_is_a_permanent_failure(clamd):
    engine = scanner.ClamdScanner(clamd["unix"], max_bytes=4 * 1024 * 1024, chunk_bytes=64 * 1024)
    with pytest.raises(scanner.ScanFailed):
        _scan(engine, bytes(2 * 1024 * 1024), "application/zip", chunk=256 * 1024)


@needs_clamd
def test_real_clamd_behind_the_pipeline(clamd):
    settings = from_env({"SCANNER": "clamd", "CLAMD_ADDRESS": clamd["tcp"]})
    engine = scanner.from_settings(settings)
    assert _scan(engine, PNG, "image/png").clean
    assert _scan(engine, b"%PDF-1.4\n" + scanner.EICAR, "application/pdf").reason == "malware"
    assert _scan(engine, EXE, "image/png").reason == "type_mismatch"
