"""``imapproxy serve`` as a real process: SIGTERM drains the sessions (issue #3).

The proxy runs as ``python -m imapproxy serve --config FILE`` in front of the
scripted fake upstream (tests/fake_upstream.py); the test reads its JSON log
lines from stdout to learn the listening address and when the signal arrived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio
from conftest import TEST_LIMITS
from fake_upstream import FakeUpstream, RawClient, login

from imapproxy.testing.proxy import ProxyTls, proxy_config


class LogReader:
    """JSON log lines from the process's stdout, read as needed."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self._buf = bytearray()

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The next log line whose ``event`` is ``event`` (earlier ones are kept)."""
        with trio.fail_after(15):
            while True:
                end = self._buf.find(b"\n")
                if end < 0:
                    data = await self.stream.receive_some(65536)
                    assert data, f"stdout closed before {event!r}; saw {self.events}"
                    self._buf += data
                    continue
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                record: dict[str, Any] = json.loads(line)
                self.events.append(record)
                if record.get("event") == event:
                    return record


async def test_sigterm_drains_sessions_and_exits_0(
    nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls
) -> None:
    fake = FakeUpstream()
    await nursery.start(fake.serve)
    config = proxy_config(
        tmp_path / "proxy",
        proxy_tls,
        [fake.table(tmp_path)],
        listeners=("implicit",),
        limits=dict(TEST_LIMITS),
        timeouts={"shutdown_grace": 10, "upstream_response": 5},
        logging={"format": "json"},
    )
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "imapproxy", "serve", "--config", str(config.source)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    clients: list[RawClient] = []
    try:
        assert process.stdout is not None
        logs = LogReader(process.stdout)
        listening = await logs.wait_for("listening")
        host, _, port = listening["address"].rpartition(":")
        assert host == "127.0.0.1"
        ctx = proxy_tls.client_context()
        with trio.fail_after(20):
            quiet = await RawClient.connect(int(port), ctx)
            busy = await RawClient.connect(int(port), ctx)
            clients += [quiet, busy]
            quiet_up = await login(quiet, fake)
            busy_up = await login(busy, fake)
            await busy.send(b"a NOOP\r\n")
            tag, name, _ = await busy_up.read_command()
            assert name == b"NOOP"

            process.send_signal(signal.SIGTERM)
            assert (await logs.wait_for("shutting down"))["signal"] == "SIGTERM"
            # The idle session ends at once, while the other one's NOOP is in flight;
            # its upstream connection is logged out.
            assert await quiet.read_to_eof() == b"* BYE Server shutting down\r\n"
            await quiet_up.answer_logout()
            # The busy one gets its answer first, then the BYE.
            await busy_up.send(tag + b" OK NOOP completed\r\n")
            assert await busy.read_to_eof() == (
                b"a OK NOOP completed\r\n* BYE Server shutting down\r\n"
            )
            await busy_up.answer_logout()

            assert await process.wait() == 0
            await logs.wait_for("stopped")
        closed = [event for event in logs.events if event["event"] == "connection closed"]
        assert [event["reason"] for event in closed] == ["server shutting down"] * 2
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        for client in clients:
            await client.aclose()
        await fake.aclose()
        if process.stdout is not None:
            await process.stdout.aclose()
