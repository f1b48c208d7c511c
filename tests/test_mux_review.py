"""Review scenarios for concurrent sharing (imapproxy/mux.py): two or three raw
sessions of one user on one shared upstream connection, the fake upstream playing
the server so that the order of events is the test's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_upstream import login
from mux_harness import CAPS, Env, answer_select, hold, started, until

from imapproxy.testing.proxy import ProxyTls

TEST_TIMEOUT = 20


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    async with started(nursery, tmp_path, proxy_tls) as env:
        yield env


async def test_pipelined_select_then_fetch(env: Env) -> None:
    """SELECT and a FETCH pipelined behind it (legal, RFC 9051 5.5): the FETCH is
    for the mailbox being selected."""
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake, caps=CAPS)
        await a.send(b"s SELECT INBOX\r\nf FETCH 1 (FLAGS)\r\n")
        await answer_select(conn)
        reply = await a.read_response(b"s")
        assert reply[-1].startswith(b"s OK"), reply
        assert not any(line.startswith(b"f ") for line in reply), reply
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (FLAGS)"), (name, rest)
        await conn.send(b"* 1 FETCH (UID 1 FLAGS ())\r\n" + tag + b" OK done\r\n")
        reply = await a.read_response(b"f")
        assert reply[-1].startswith(b"f OK"), reply


async def test_pipelined_fetch_then_unselect_keeps_the_fetch_results(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, _b, conn = await env.two_on_inbox()
        await a.send(b"f FETCH 2 (FLAGS)\r\nu UNSELECT\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" + tag + b" OK done\r\n")
        # The session's commands go one after another: FETCH first, with its data.
        reply = await a.read_response(b"f")
        assert any(line.startswith(b"* 2 FETCH") for line in reply), reply
        assert (await a.read_response(b"u"))[-1].startswith(b"u OK")


async def test_pipelined_fetch_then_select_elsewhere_keeps_the_fetch_results(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake, caps=CAPS)
        await a.send(b"s SELECT INBOX\r\n")
        await answer_select(conn)
        await a.read_response(b"s")
        await a.send(b"f FETCH 2 (FLAGS)\r\nt SELECT Sent\r\n")
        tag = await hold(conn, b"UID")
        shared = env.shared()
        await trio.testing.wait_all_tasks_blocked(0.01)
        assert shared.mailbox is not None  # the SELECT waits for the FETCH
        assert shared.mailbox.name.raw == b"INBOX"
        await conn.send(b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" + tag + b" OK done\r\n")
        reply = await a.read_response(b"f")
        await answer_select(conn, (5, 6))
        reply += await a.read_response(b"t")
        assert any(line.startswith(b"* 2 FETCH") for line in reply), reply


async def test_noop_riding_on_another_sessions_status_is_not_its_answer(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        c = await env.third()
        shared = env.shared()
        await a.send(b"h CHECK\r\n")
        held = await hold(conn, b"CHECK")
        await b.send(b"t STATUS nosuch (MESSAGES)\r\n")
        await until(lambda: bool(shared.waiting))
        await c.send(b"n NOOP\r\n")
        # The NOOP waits for the command on the wire (a's CHECK), not a turn.
        await until(lambda: shared.current is not None and bool(shared.current.noops))
        await conn.send(held + b" OK done\r\n")
        await a.read_response(b"h")
        reply = await c.read_response(b"n")
        tag = await hold(conn, b"STATUS")
        await conn.send(tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n")
        assert (await b.read_response(b"t"))[-1].startswith(b"t NO")
        assert reply[-1].startswith(b"n OK"), reply


async def test_noop_riding_on_another_sessions_list_gets_no_list_data(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        c = await env.third()
        shared = env.shared()
        await a.send(b"h CHECK\r\n")
        held = await hold(conn, b"CHECK")
        await b.send(b'l LIST "" "*"\r\n')
        await until(lambda: bool(shared.waiting))
        await c.send(b"n NOOP\r\n")
        await until(lambda: shared.current is not None and bool(shared.current.noops))
        await conn.send(held + b" OK done\r\n")
        await a.read_response(b"h")
        reply = await c.read_response(b"n")
        tag = await hold(conn, b"LIST")
        await conn.send(b'* LIST () "/" Secret\r\n' + tag + b" OK List completed\r\n")
        await b.read_response(b"l")
        assert not any(line.startswith(b"* LIST") for line in reply), reply


async def test_sequence_fetch_riding_on_a_uid_fetch_sees_no_expunge(env: Env) -> None:
    """RFC 9051 7.5.1: no EXPUNGE while responding to a FETCH."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        c = await env.third(select=True)
        shared = env.shared()
        await a.send(b"h CHECK\r\n")
        held = await hold(conn, b"CHECK")
        await b.send(b"u UID FETCH 1:4 (FLAGS)\r\n")
        await until(lambda: bool(shared.waiting))
        await c.send(b"f FETCH 1:4 (FLAGS)\r\n")
        await until(lambda: len(shared.waiting) == 2)  # not riding: another name
        assert not any(turn.riders for turn in shared.waiting.values())
        await conn.send(held + b" OK done\r\n")
        await a.read_response(b"h")
        tag = await hold(conn, b"UID")
        await conn.send(
            b"* 1 EXPUNGE\r\n* 1 FETCH (UID 2 FLAGS ())\r\n* 2 FETCH (UID 3 FLAGS ())\r\n"
            b"* 3 FETCH (UID 4 FLAGS ())\r\n" + tag + b" OK done\r\n"
        )
        await b.read_response(b"u")
        tag = await hold(conn, b"UID")
        await conn.send(
            b"* 1 FETCH (UID 2 FLAGS ())\r\n* 2 FETCH (UID 3 FLAGS ())\r\n"
            b"* 3 FETCH (UID 4 FLAGS ())\r\n" + tag + b" OK done\r\n"
        )
        reply = await c.read_response(b"f")
        assert not any(line.endswith(b"EXPUNGE\r\n") for line in reply), reply
        assert b"* 2 FETCH (UID 2 FLAGS ())\r\n" in reply  # c's numbers, UID 1 still 1


async def test_literal_move_after_anothers_expunge_moves_the_message_asked_for(env: Env) -> None:
    """b's MOVE 2 (a literal: relayed untranslated) waits for the turn behind a's
    EXPUNGE of message 1; b has not been shown that expunge, so its message 2 is
    UID 2 -- the connection's message 2 by then is UID 3."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        shared = env.shared()
        await a.send(b"x EXPUNGE\r\n")
        held = await hold(conn, b"EXPUNGE")
        await b.send(b"m MOVE 2 {5}\r\n")
        assert (await b.read_line()).startswith(b"+")
        await b.send(b"Trash\r\n")
        await until(lambda: shared._wanted > 0)
        await conn.send(b"* 1 EXPUNGE\r\n" + held + b" OK done\r\n")
        await a.read_response(b"x")
        # b's numbers are no longer the connection's: refused, nothing sent.
        reply = await b.read_response(b"m")
        assert reply[-1].startswith(b"m NO [EXPUNGEISSUED]"), reply
        await a.send(b"n NOOP\r\n")
        tag, name, _rest = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag + b" OK done\r\n")
        await a.read_response(b"n")


async def test_a_session_cut_mid_append_never_leaves_half_a_command_for_the_next(
    env: Env,
) -> None:
    """a's APPEND is being written upstream (the server reads slowly) when a's session
    ends (here: UIDVALIDITY changed under its mailbox). c's NOOP, waiting for the
    turn, must not be written into the middle of a's literal."""
    size = 48 * 1024 * 1024
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake, caps=CAPS)
        c = await env.client()
        await c.send(b"L LOGIN user pass\r\n")
        assert (await c.read_line()).startswith(b"L OK")
        await a.send(b"s SELECT INBOX\r\n")
        await answer_select(conn)
        await a.read_response(b"s")
        shared = env.shared()
        await a.send(b"p APPEND INBOX {%d}\r\n" % size)
        assert (await a.read_line()).startswith(b"+")
        await a.send(b"x" * size + b"\r\n")
        tag, name, rest = await conn.read_command()
        assert name == b"APPEND", rest
        await conn.send(b"+ go\r\n")
        await until(lambda: shared.conn.sending_since is not None)
        await c.send(b"n CREATE Later\r\n")  # a command of its own (a NOOP would ride)
        await until(lambda: shared._wanted > 0)
        await conn.send(b"* OK [UIDVALIDITY 8] recreated\r\n")
        assert (await a.read_line()).startswith(b"* BYE")
        await trio.testing.wait_all_tasks_blocked(0.05)  # a's session has ended
        at, seen, answered = -1, 0, False
        while at < 0:
            at = conn._buf.find(b" CREATE Later\r\n", max(0, seen - 16))
            seen = len(conn._buf)
            conn.received.clear()
            if at < 0 and seen >= size + 2 and not answered:
                await conn.send(tag + b" OK APPEND completed\r\n")
                answered = True
            if at < 0 and not await conn._fill():
                break
        assert at == -1 or at >= size, f"CREATE written {at} octets into a {size}-octet literal"


async def test_a_stalled_server_ends_the_shared_connection_and_its_sessions(
    nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls
) -> None:
    """The server stops answering a's FETCH: b, waiting for the turn, is not held
    for ever -- the connection is given up and both sessions get their BYE."""
    env = Env(nursery, tmp_path, proxy_tls)
    await env.start(upstream_response=1)
    try:
        with trio.fail_after(TEST_TIMEOUT):
            a, b, conn = await env.two_on_inbox()
            await a.send(b"f FETCH 1 (FLAGS)\r\n")
            await hold(conn, b"UID")
            await b.send(b"n NOOP\r\n")
            assert (await a.read_line()).startswith(b"* BYE")
            assert (await b.read_line()).startswith(b"* BYE")
    finally:
        for client in env.clients:
            await client.aclose()
        await env.fake.aclose()
