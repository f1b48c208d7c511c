"""Concurrent sharing of upstream connections ([multiplex] max_sessions_per_connection
above 1, docs/multiplex.md "Sharing"): the exact wire behaviour, with raw clients
against Dovecot. (tests/test_proxy_mux.py drives many IMAPClient sessions.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from conftest import RunningProxy, proxy_login, start_proxy
from imap_raw import RawImap

from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream

SHARING = {"enabled": True, "max_sessions_per_connection": 10, "max_connections_per_user": 3}


@pytest.fixture
async def sharing(
    dovecot: DovecotServer, proxy_tls: ProxyTls, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[RunningProxy]:
    upstreams = [dovecot_upstream(dovecot)]
    running = await start_proxy(
        nursery, tmp_path / "proxy", proxy_tls, upstreams, multiplex=SHARING
    )
    yield running
    running.proxy.shutdown()


def connections(dovecot: DovecotServer, user: User) -> int:
    """Dovecot's logged-in connections of ``user`` (``doveadm who``)."""
    return sum(1 for entry in dovecot.doveadm_who() if entry.username == user.name)


async def logins(running: RunningProxy, user: User, count: int) -> list[RawImap]:
    return [await proxy_login(running, user) for _ in range(count)]


def untagged(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* ")]


async def test_sessions_on_one_mailbox_share_a_connection_with_their_own_numbers(
    dovecot: DovecotServer, mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        direct = await a.command(b"s", b"SELECT INBOX")
        joined = await b.command(b"s", b"SELECT INBOX")
        # The joining session's SELECT is answered from tracked state, alike but
        # for the completion text.
        assert untagged(joined) == untagged(direct)
        assert joined[-1].startswith(b"s OK [READ-WRITE]")
        assert connections(dovecot, mail_user) == 1

        # A expunges message 1; B is shown nothing during its FETCH by number,
        # and its numbers still hold: message 2 is still UID 2.
        await a.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        expunged = await a.command(b"x", b"EXPUNGE")
        assert b"* 1 EXPUNGE\r\n" in expunged
        during = await b.command(b"f", b"FETCH 2 (UID)")
        assert not any(b"EXPUNGE" in line for line in during), during
        assert b"* 2 FETCH (UID 2)\r\n" in during
        # Its NOOP shows the expunge; from then on message 1 is UID 2.
        news = await b.command(b"n", b"NOOP")
        assert b"* 1 EXPUNGE\r\n" in news
        again = await b.command(b"g", b"FETCH 1 (UID)")
        assert b"* 1 FETCH (UID 2)\r\n" in again
        for client in (a, b):
            await client.aclose()


async def test_a_silent_store_is_heard_by_the_others_only(
    mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        for client in (a, b):
            await client.command(b"s", b"SELECT INBOX")
            await client.command(b"f", b"FETCH 3 (FLAGS)")  # both have seen its flags
        stored = await a.command(b"t", b"STORE 3 +FLAGS.SILENT (\\Flagged)")
        assert untagged(stored) == []
        news = untagged(await b.command(b"n", b"NOOP"))
        assert len(news) == 1, news
        assert news[0].startswith(b"* 3 FETCH (FLAGS (")
        assert b"\\Flagged" in news[0]
        # A non-silent STORE answers the storer and tells the other too.
        loud = untagged(await b.command(b"u", b"STORE 3 -FLAGS (\\Flagged)"))
        assert len(loud) == 1, loud
        assert b"\\Flagged" not in loud[0]
        flags = re.search(rb"FLAGS \([^)]*\)", loud[0])
        assert loud[0].startswith(b"* 3 FETCH (")
        assert flags is not None
        heard = untagged(await a.command(b"n", b"NOOP"))
        assert heard == [b"* 3 FETCH (" + flags.group(0) + b")\r\n"], heard
        for client in (a, b):
            await client.aclose()


async def test_idle_is_emulated_and_sees_what_others_do(
    mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        selected = await a.command(b"s", b"SELECT INBOX")
        exists = next(int(line.split()[1]) for line in selected if line.endswith(b"EXISTS\r\n"))
        await b.command(b"s", b"SELECT INBOX")
        await b.send(b"i IDLE\r\n")
        assert (await b.read_line()).startswith(b"+ ")
        appended = await a.command(b"p", b"APPEND INBOX {7+}\r\nSubj: x")
        assert appended[-1].startswith(b"p OK [APPENDUID ")
        assert await b.read_line() == b"* %d EXISTS\r\n" % (exists + 1)
        await a.command(b"d", b"STORE %d +FLAGS.SILENT (\\Deleted)" % (exists + 1))
        await a.command(b"x", b"EXPUNGE")
        # During IDLE the expunge may be shown at once (after the flag change).
        lines = [await b.read_line(), await b.read_line()]
        assert lines[-1] == b"* %d EXPUNGE\r\n" % (exists + 1), lines
        await b.send(b"DONE\r\n")
        assert (await b.read_until_tagged(b"i"))[-1] == b"i OK IDLE terminated\r\n"
        for client in (a, b):
            await client.aclose()


async def test_sessions_on_three_mailboxes_use_three_connections(
    dovecot: DovecotServer, mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(30):
        clients = await logins(sharing, mail_user, 9)
        names = [b"INBOX", b"Archive", b"Trash"]
        expected = [await clients[i].command(b"s", b"EXAMINE " + names[i]) for i in range(3)]
        results: dict[int, list[bytes]] = {}

        async def select(index: int) -> None:
            client = clients[index]
            results[index] = await client.command(b"s", b"EXAMINE " + names[index % 3])

        async with trio.open_nursery() as inner:
            for index in range(3, len(clients)):
                inner.start_soon(select, index)
        for index, lines in results.items():
            assert untagged(lines) == untagged(expected[index % 3])
        assert connections(dovecot, mail_user) == 3
        # A fourth mailbox is over the user's limit of three connections.
        refused = await clients[0].command(b"l", b"SELECT Drafts")
        assert refused[-1].startswith(b"l NO [LIMIT]"), refused
        for client in clients:
            await client.aclose()


async def test_close_expunges_for_everyone_but_deselects_only_the_closer(
    mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        for client in (a, b):
            await client.command(b"s", b"SELECT Archive")
        await a.command(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
        closed = await a.command(b"c", b"CLOSE")
        assert closed == [b"c OK CLOSE completed\r\n"] or (
            untagged(closed) == [] and closed[-1].startswith(b"c OK")
        ), closed
        # No mailbox for A, so nothing of B's mailbox is touched by A's FETCH.
        assert (await a.command(b"f", b"FETCH 1 (UID)"))[-1].startswith(b"f BAD")
        news = await b.command(b"n", b"NOOP")
        assert b"* 2 EXPUNGE\r\n" in news
        assert (await b.command(b"f", b"FETCH 1 (UID)"))[-1].startswith(b"f OK")
        for client in (a, b):
            await client.aclose()


async def test_identical_commands_are_answered_to_each_session(
    mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        clients = await logins(sharing, mail_user, 6)
        for client in clients:
            await client.command(b"s", b"EXAMINE INBOX")
        answers: dict[int, list[bytes]] = {}

        async def fetch(index: int) -> None:
            tag = b"t%d" % index
            answers[index] = await clients[index].command(tag, b"UID FETCH 1:5 (UID FLAGS)")

        async with trio.open_nursery() as inner:
            for index in range(len(clients)):
                inner.start_soon(fetch, index)
        first = untagged(answers[0])
        assert len(first) == 5
        for index, lines in answers.items():
            assert untagged(lines) == first
            assert lines[-1].startswith(b"t%d OK" % index)
        for client in clients:
            await client.aclose()


async def test_per_connection_state_moves_the_session_to_a_connection_of_its_own(
    dovecot: DovecotServer, mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        for client in (a, b):
            await client.command(b"s", b"SELECT INBOX")
        assert connections(dovecot, mail_user) == 1
        # A CONDSTORE fetch: A moves, its mailbox selected again, its numbers kept.
        changed = await a.command(b"c", b"FETCH 1:2 (UID FLAGS) (CHANGEDSINCE 1)")
        assert changed[-1].startswith(b"c OK"), changed
        assert any(b"MODSEQ" in line for line in untagged(changed)), changed
        assert connections(dovecot, mail_user) == 2
        # B stays on the shared connection and goes on as before.
        assert b"* 1 FETCH (UID 1)\r\n" in await b.command(b"f", b"FETCH 1 (UID)")
        for client in (a, b):
            await client.aclose()


async def test_a_client_gone_mid_append_never_reaches_the_shared_connection(
    dovecot: DovecotServer, mail_user: User, sharing: RunningProxy
) -> None:
    with trio.fail_after(20):
        a, b = await logins(sharing, mail_user, 2)
        before = await b.command(b"s", b"SELECT Drafts")
        count = next(int(line.split()[1]) for line in before if line.endswith(b"EXISTS\r\n"))
        await a.send(b"p APPEND Drafts {100}\r\n")
        assert (await a.read_line()).startswith(b"+ ")
        await a.send(b"Subject: half\r\n\r\nonly part of it")
        await a.aclose()
        # B's session and the shared connection go on; no half message arrived.
        after = await b.command(b"n", b"NOOP")
        assert not any(b"EXISTS" in line for line in after), after
        status = await b.command(b"t", b"STATUS Drafts (MESSAGES)")
        assert b"(MESSAGES %d)" % count in status[0]
        assert connections(dovecot, mail_user) == 1
        await b.aclose()
