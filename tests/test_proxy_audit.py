"""The audit trail: one structured line per command, through the proxy to Dovecot."""

from __future__ import annotations

import re

import structlog
import trio
from imap_raw import RawImap

import imapproxy.logs
from imapproxy.testing import User


async def test_one_audit_line_per_command(proxy, mail_user: User, monkeypatch) -> None:
    # Whatever level an earlier test configured: audit lines are built and written.
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    with structlog.testing.capture_logs() as logs, trio.fail_after(30):
        client = await RawImap.connect(
            "localhost", proxy.implicit_port, ssl_context=proxy.ssl_context()
        )
        await client.read_line()
        login = f'LOGIN "{mail_user.name}" "{mail_user.password}"'.encode()
        assert (await client.command(b"a", login))[-1].startswith(b"a OK")
        await client.command(b"b", b"SELECT INBOX")
        await client.command(b"c", b"UID FETCH 1:3 (FLAGS)")
        await client.command(b"d", b"COPY 1:2 Archive")
        refused = (await client.command(b"e", b"STATUS NoSuchFolder (MESSAGES)"))[-1]
        assert refused.startswith(b"e NO")
        await client.command(b"f", b"CAPABILITY")
        await client.command(b"g", b"FETCH 1 (FLAGS")  # refused by the proxy
        await client.command(b"z", b"LOGOUT")
        await client.aclose()
    lines = {entry["tag"]: entry for entry in logs if entry.get("event") == "command"}
    assert set(lines) == {"b", "c", "d", "e", "f", "g", "z"}  # never the LOGIN
    assert lines["b"]["command"] == "SELECT"
    assert lines["b"]["mailboxes"] == ["INBOX"]
    assert lines["b"]["status"] == "OK"
    assert lines["b"]["bytes_down"] > 100  # FLAGS, EXISTS, OK [UIDVALIDITY] ...
    assert lines["c"]["command"] == "UID FETCH"
    assert lines["c"]["set"] == "1:3"
    assert lines["d"]["mailboxes"] == ["INBOX", "Archive"]  # selected and destination
    assert lines["d"]["set"] == "1:2"
    assert lines["e"]["status"] == "NO"
    code = re.match(rb"e NO \[([A-Z-]+)\]", refused)
    assert lines["e"]["code"] == (code.group(1).decode() if code else None)
    assert lines["f"]["local"] is True
    assert lines["g"]["status"] == "BAD"
    for entry in lines.values():
        assert entry["duration_ms"] >= 0
        assert entry["rules"] == []
        assert mail_user.password not in repr(entry)
