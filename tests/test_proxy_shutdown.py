"""Shutdown drains: sessions get a BYE, idle ones (IDLE included) at once."""

from __future__ import annotations

from pathlib import Path

import trio
from conftest import start_proxy
from imap_raw import RawImap

from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream


async def test_shutdown_ends_idle_and_idling_sessions_with_bye_at_once(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        running = await start_proxy(
            nursery,
            tmp_path,
            proxy_tls,
            [dovecot_upstream(dovecot)],
            timeouts={"shutdown_grace": 600},
        )
        ctx = running.ssl_context()
        with trio.fail_after(20):
            login = f'LOGIN "{shared_user.name}" "{shared_user.password}"'.encode()
            quiet = await RawImap.connect("localhost", running.implicit_port, ssl_context=ctx)
            idling = await RawImap.connect("localhost", running.implicit_port, ssl_context=ctx)
            for client in (quiet, idling):
                await client.read_line()
                assert (await client.command(b"a", login))[-1].startswith(b"a OK")
            await idling.command(b"b", b"SELECT INBOX")
            await idling.send(b"c IDLE\r\n")
            assert (await idling.read_line()).startswith(b"+")

            running.proxy.shutdown()
            for client in (quiet, idling):
                rest = await client.read_to_eof()
                assert b"* BYE Server shutting down" in rest
                await client.aclose()
        # serve() returned well before the 600 s grace: the nursery is empty.
