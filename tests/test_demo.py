"""``imapproxy demo`` (what ``make demo`` runs) starts the proxy in front of Dovecot,
serves the demo user through it, and stops on Ctrl-C."""

from __future__ import annotations

import imaplib
import os
import re
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapproxy.testing import DovecotServer


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Dovecot's unprivileged processes must reach the directory: not pytest's
    # tmp_path, which is private to root.
    path = Path(tempfile.mkdtemp(prefix="imapproxy-demo-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """Output up to and including ``marker``, read from the pipe unbuffered (so
    select() and the data agree)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while marker.encode() not in out and time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            data = os.read(fd, 65536)
            if not data:
                break
            out += data
    text = out.decode("utf-8", "replace")
    if marker not in text:
        pytest.fail(f"no {marker!r} within {timeout} s; output so far:\n{text}")
    return text


def test_demo_serves_the_demo_user_and_stops_on_ctrl_c(
    workdir: Path, dovecot: DovecotServer
) -> None:
    del dovecot  # requested for its handling of a missing Dovecot (fail, or skip)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapproxy", "demo", "--dir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        text = _read_until(proc, "Press Ctrl-C", timeout=30)
        port_match = re.search(r"IMAPS\s+port (\d+)", text)
        ca_match = re.search(r"CA file\s+(\S+)", text)
        assert port_match is not None
        assert ca_match is not None
        port = int(port_match.group(1))
        context = ssl.create_default_context(cafile=ca_match.group(1))
        with imaplib.IMAP4_SSL("localhost", port, ssl_context=context, timeout=10) as imap:
            assert imap.login("demo", "demo")[0] == "OK"
            status, data = imap.select("INBOX", readonly=True)
            assert status == "OK"
            assert data[0] is not None
            assert int(data[0]) > 0
        proc.send_signal(signal.SIGINT)
        rest = _read_until(proc, "Stopped.", timeout=30)
        assert "Stopping Dovecot" in rest
        # The login went through the proxy: it logged it.
        assert '"event":"login"' in text + rest
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
