"""Reuse of logged-in upstream connections ([multiplex], docs/multiplex.md), against
Dovecot with IMAPClient and a raw client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from conftest import RunningProxy, dovecot_commands, proxy_login, start_proxy
from imap_raw import RawImap
from imapclient import IMAPClient

from imapproxy.pool import UpstreamPool
from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream

POOL = {"enabled": True}


async def pool_proxy(
    nursery: trio.Nursery,
    dovecot: DovecotServer,
    tls: ProxyTls,
    tmp_path: Path,
    **multiplex: object,
) -> RunningProxy:
    """A proxy with ``[multiplex] enabled = true`` and ``multiplex`` set."""
    upstreams = [dovecot_upstream(dovecot)]
    return await start_proxy(
        nursery, tmp_path / "proxy", tls, upstreams, multiplex={**POOL, **multiplex}
    )


def pool_of(running: RunningProxy) -> UpstreamPool:
    pool = running.proxy.pool
    assert pool is not None
    return pool


def session(port: int, ctx: Any, user: User, password: str | None = None) -> dict[str, Any]:
    """A small but complete client session; what each command gave back."""
    seen: dict[str, Any] = {}
    with IMAPClient("localhost", port=port, ssl_context=ctx) as client:
        client.login(user.name, password or user.password)
        seen["capabilities"] = client.capabilities()
        seen["folders"] = sorted(name for _f, _d, name in client.list_folders())
        seen["selected"] = {
            k: v for k, v in client.select_folder("INBOX").items() if k != b"HIGHESTMODSEQ"
        }
        seen["envelopes"] = client.fetch([1, 2, 3], ["ENVELOPE", "RFC822.SIZE"])
        seen["unseen"] = client.search(["UNSEEN"])
        client.logout()
    return seen


async def test_the_next_login_reuses_the_connection_and_sees_a_fresh_one(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    ctx = proxy_tls.client_context()
    async with trio.open_nursery() as nursery:
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path)
        pool = pool_of(running)
        port = running.implicit_port
        with trio.fail_after(60):
            first = await trio.to_thread.run_sync(session, port, ctx, mail_user)
            await running.proxy.wait_quiet()
            assert (len(pool), pool.reused) == (1, 0)  # kept after LOGOUT
            second = await trio.to_thread.run_sync(session, port, ctx, mail_user)
            await running.proxy.wait_quiet()
            assert pool.reused == 1
            assert len(pool) == 1  # and kept again
        running.proxy.shutdown()
    assert second == first  # a reused connection behaves like a fresh login


async def test_a_wrong_password_never_gets_a_pooled_connection(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path)
        pool = pool_of(running)
        with trio.fail_after(30):
            await visit(running, mail_user)
            assert len(pool) == 1
            wrong = await _raw(running)
            login = f'LOGIN "{mail_user.name}" "not-{mail_user.password}"'.encode()
            refused = await wrong.command(b"a", login)
            # The upstream said no (a fresh login), and the pooled one stays put.
            assert refused[-1].startswith(b"a NO [AUTHENTICATIONFAILED]"), refused
            assert (len(pool), pool.reused) == (1, 0)
            await wrong.aclose()
            right = await proxy_login(running, mail_user)
            assert pool.reused == 1
            await right.command(b"z", b"LOGOUT")
            await right.aclose()
        running.proxy.shutdown()


async def visit(running: RunningProxy, user: User, *commands: bytes) -> list[list[bytes]]:
    """A session of ``user``: LOGIN, ``commands``, LOGOUT; returns when the proxy
    is done with it (its upstream connection pooled or logged out)."""
    client = await proxy_login(running, user)
    replies = [await client.command(b"c%d" % i, command) for i, command in enumerate(commands)]
    await client.command(b"z", b"LOGOUT")
    await client.aclose()
    await running.proxy.wait_quiet()
    return replies


async def _raw(running: RunningProxy) -> RawImap:
    client = await RawImap.connect(
        "localhost", running.implicit_port, ssl_context=running.ssl_context()
    )
    await client.read_line()
    return client


async def test_a_selected_mailbox_is_unselected_never_closed(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # A message marked \Deleted in a read-write mailbox: CLOSE would expunge it.
    async with trio.open_nursery() as nursery:
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path)
        pool = pool_of(running)
        with trio.fail_after(30):
            selected, _ = await visit(
                running, mail_user, b"SELECT INBOX", b"STORE 1 +FLAGS.SILENT (\\Deleted)"
            )
            exists = next(line for line in selected if line.endswith(b" EXISTS\r\n"))
            assert len(pool) == 1
            again = await proxy_login(running, mail_user)
            assert pool.reused == 1
            nothing = await again.command(b"d", b"FETCH 1 (FLAGS)")
            assert nothing[-1].startswith(b"d BAD"), nothing  # no mailbox selected
            await again.command(b"z", b"LOGOUT")
            await again.aclose()
        running.proxy.shutdown()
    with trio.fail_after(30):
        direct = await dovecot_commands(dovecot, mail_user, b"SELECT INBOX")
    assert exists in direct[0]  # nothing was expunged


async def test_connections_with_state_or_too_old_are_not_kept(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path / "a")
        pool = pool_of(running)
        with trio.fail_after(30):
            for stateful in (b"ENABLE CONDSTORE", b"EXAMINE INBOX (CONDSTORE)"):
                await visit(running, mail_user, stateful)
                assert len(pool) == 0, stateful  # logged out, not kept
        running.proxy.shutdown()
    async with trio.open_nursery() as nursery:
        # Past reuse_max_age the upstream must check the password again.
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path / "b", reuse_max_age="1ms")
        pool = pool_of(running)
        with trio.fail_after(30):
            for _ in range(2):
                client = await proxy_login(running, mail_user)
                # Past the 1 ms by the logout (a LOGIN and LOGOUT on loopback can take
                # less): this waits for time to pass, not for an event.
                await trio.sleep(0.01)
                await client.command(b"z", b"LOGOUT")
                await client.aclose()
                await running.proxy.wait_quiet()
            assert (len(pool), pool.reused) == (0, 0)
        running.proxy.shutdown()


async def test_close_or_a_failed_select_before_logout_still_pools(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        running = await pool_proxy(nursery, dovecot, proxy_tls, tmp_path)
        pool = pool_of(running)
        with trio.fail_after(30):
            for commands in ((b"EXAMINE INBOX", b"CLOSE"), (b"SELECT NoSuchBox",)):
                await visit(running, mail_user, *commands)
                assert len(pool) == 1, commands
        running.proxy.shutdown()
