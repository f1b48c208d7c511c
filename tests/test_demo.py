"""``imapproxy demo`` (what ``make demo`` runs) starts, serves the demo user, stops."""

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


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    out = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if marker in line:
                return "".join(out)
    pytest.fail(f"no {marker!r} within {timeout} s; output so far:\n{''.join(out)}")


def test_demo_serves_the_demo_user_and_stops_on_ctrl_c(
    workdir: Path, dovecot: DovecotServer
) -> None:
    del dovecot  # requested for its handling of a missing Dovecot (fail, or skip)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imapproxy", "demo", "--dir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        text = _read_until(proc, "Press Ctrl-C", timeout=30)
        port = int(re.search(r"IMAPS\s+port (\d+)", text).group(1))  # type: ignore[union-attr]
        ca = re.search(r"CA file\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        context = ssl.create_default_context(cafile=ca)
        with imaplib.IMAP4_SSL("localhost", port, ssl_context=context, timeout=10) as imap:
            assert imap.login("demo", "demo")[0] == "OK"
            status, data = imap.select("INBOX", readonly=True)
            assert status == "OK"
            assert int(data[0]) > 0
        proc.send_signal(signal.SIGINT)
        rest = _read_until(proc, "Stopped.", timeout=30)
        assert "Stopping Dovecot" in rest
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
