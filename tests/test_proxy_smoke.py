"""A first end-to-end check: imaplib through the proxy to Dovecot."""

from __future__ import annotations

import imaplib

import trio

from imapproxy.testing import User


async def test_login_select_fetch_logout(proxy, shared_user: User) -> None:
    def client() -> tuple[str, int]:
        with imaplib.IMAP4_SSL(
            "localhost", proxy.implicit_port, ssl_context=proxy.ssl_context()
        ) as imap:
            imap.login(shared_user.name, shared_user.password)
            typ, _ = imap.select("INBOX", readonly=True)
            assert typ == "OK"
            typ, fetched = imap.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK"
            assert isinstance(fetched[0], tuple)
            return typ, len(fetched[0][1])

    with trio.fail_after(30):
        status, size = await trio.to_thread.run_sync(client)
    assert status == "OK"
    assert size > 100
