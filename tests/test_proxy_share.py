"""Concurrent sharing of upstream connections ([multiplex] max_sessions_per_connection
above 1, docs/multiplex.md "Sharing"): exact wire behaviour with raw clients."""

from __future__ import annotations

from pathlib import Path

import trio
from conftest import RunningProxy, proxy_login, start_proxy

from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream

SHARING = {"enabled": True, "max_sessions_per_connection": 10, "max_connections_per_user": 3}


async def sharing_proxy(
    nursery: trio.Nursery, dovecot: DovecotServer, tls: ProxyTls, tmp_path: Path
) -> RunningProxy:
    upstreams = [dovecot_upstream(dovecot)]
    return await start_proxy(nursery, tmp_path / "proxy", tls, upstreams, multiplex=SHARING)


def connections(dovecot: DovecotServer, user: User) -> int:
    return sum(1 for entry in dovecot.doveadm_who() if entry.username == user.name)


async def test_two_sessions_on_one_mailbox_share_one_connection(
    dovecot: DovecotServer,
    mail_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(20):
        running = await sharing_proxy(nursery, dovecot, proxy_tls, tmp_path)
        a = await proxy_login(running, mail_user)
        b = await proxy_login(running, mail_user)
        sel_a = await a.command(b"s", b"SELECT INBOX")
        sel_b = await b.command(b"s", b"SELECT INBOX")
        print(sel_a, sel_b)
        assert connections(dovecot, mail_user) == 1
        fa = await a.command(b"f", b"FETCH 1:3 (UID FLAGS)")
        fb = await b.command(b"f", b"FETCH 2 (UID)")
        print(fa, fb)
        st = await a.command(b"t", b"STORE 2 +FLAGS.SILENT (\\Flagged)")
        nb = await b.command(b"n", b"NOOP")
        print(st, nb)
        ex = await a.command(b"x", b"STORE 1 +FLAGS (\\Deleted)")
        ex = await a.command(b"y", b"EXPUNGE")
        fb = await b.command(b"g", b"FETCH 1 (UID)")
        nb = await b.command(b"n", b"NOOP")
        fb2 = await b.command(b"h", b"FETCH 1 (UID)")
        print(ex, fb, nb, fb2)
        se = await b.command(b"q", b"SEARCH 1:2")
        print(se)
        await b.send(b"i IDLE\r\n")
        print("idle", await b.read_line())
        print(await a.command(b"ap", b"APPEND INBOX {5+}\r\nhello"))
        print("idle got", await b.read_line())
        await b.send(b"DONE\r\n")
        print(await b.read_until_tagged(b"i"))
        en = await a.command(b"e", b"FETCH 1 (FLAGS) (CHANGEDSINCE 1)")
        print(en)
        assert connections(dovecot, mail_user) == 2
        await a.aclose()
        await b.aclose()
    running.proxy.shutdown()


async def test_sessions_on_three_mailboxes_use_three_connections(
    dovecot: DovecotServer,
    mail_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(30):
        running = await sharing_proxy(nursery, dovecot, proxy_tls, tmp_path)
        first = await proxy_login(running, mail_user)
        listing = await first.command(b"l", b'LIST "" "*"')
        print(listing)
        names = [line.rsplit(b" ", 1)[1].rstrip(b"\r\n") for line in listing[:-1]][:3]
        clients = [first] + [await proxy_login(running, mail_user) for _ in range(8)]
        results: dict[int, list[bytes]] = {}

        async def select(index: int) -> None:
            client = clients[index]
            results[index] = await client.command(b"s", b"SELECT " + names[index % 3])
            results[index] += await client.command(b"f", b"UID FETCH 1:5 (UID FLAGS)")

        async with trio.open_nursery() as inner:
            for index in range(len(clients)):
                inner.start_soon(select, index)
        for index, lines in sorted(results.items()):
            print(index, lines[-1], lines[-3:])
        print(running.proxy.mux.groups if running.proxy.mux else None)
        assert connections(dovecot, mail_user) <= 3
        for client in clients:
            await client.aclose()
    running.proxy.shutdown()
