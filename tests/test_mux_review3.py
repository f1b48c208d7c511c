"""Third review of concurrent sharing: UID FETCHes merged while they wait for the
turn (imapproxy/mux.py, ``_Merge``), a command sent for the others when its session
is cancelled (``Lane._send``, ``_send_orphan``), and moving a session to a dedicated
connection (imapproxy/session.py, ``_go_dedicated`` / ``_reselect``). The fake
upstream plays the server so that the order of events is the test's (see
tests/test_mux_review.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_upstream import FakeConnection
from mux_harness import CAPS, Env, hold, lead_cancelled, sessions, started, until, waiting

from imapproxy.testing.proxy import ProxyTls

TEST_TIMEOUT = 20


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    async with started(nursery, tmp_path, proxy_tls) as env:
        yield env


# -- n:* means "from n to the last message", whatever n ----------------------------------


async def test_a_uid_fetch_to_star_gets_the_last_message_when_n_is_above_it(env: Env) -> None:
    """b's ``UID FETCH 3:*`` (3 <= 4, the largest UID known): messages 3 and 4 are
    expunged as the server runs it, so ``3:*`` is ``2:3`` -- the server answers
    for UID 2, and that is b's result."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, conn = await env.two_on_inbox()
        await b.send(b"f UID FETCH 3:* (FLAGS)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 3:* (FLAGS)"), (name, rest)
        await conn.send(
            b"* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
            + tag
            + b" OK done\r\n"
        )
        reply = await b.read_response(b"f")
        assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" in reply, reply


async def test_a_merged_range_to_star_still_means_the_last_message(env: Env) -> None:
    """c's ``UID FETCH 3:*`` merges into b's ``UID FETCH 1`` while a's STATUS holds
    the turn; during the STATUS messages 3 and 4 are expunged. The merged command
    ``1,3:*`` gets UIDs 1 and 2 from the server: c's ``3:*`` (now ``2:3``) is UID 2."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"f UID FETCH 1 (FLAGS)\r\n")
        await c.send(b"g UID FETCH 3:* (FLAGS)\r\n")
        await until(lambda: waiting(shared) == 2)
        assert len(shared.merging) == 1  # merged
        await conn.send(
            b"* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* STATUS INBOX (MESSAGES 2)\r\n" + status + b" OK\r\n"
        )
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1,3:* (FLAGS)"), (name, rest)
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n" + tag + b" OK\r\n"
        )
        assert b"* 1 FETCH (UID 1 FLAGS ())\r\n" in await b.read_response(b"f")
        reply = await c.read_response(b"g")
        assert b"* 2 FETCH (UID 2 FLAGS ())\r\n" in reply, reply


# -- FETCH modifiers whose results depend on the set ----------------------------------------


_PARTIAL_FETCH = re.compile(rb"FETCH ([0-9:,]+) \(FLAGS\) \(PARTIAL 1:1\)")


async def answer_first_of_set(conn: FakeConnection) -> None:
    """Play a server with PARTIAL (RFC 9394) for ``UID FETCH set (FLAGS) (PARTIAL
    1:1)``: the first message of the set (UIDs 1..4, message n is UID n)."""
    tag, name, rest = await conn.read_command()
    match = _PARTIAL_FETCH.fullmatch(rest)
    assert name == b"UID", (name, rest)
    assert match is not None, rest
    first = min(int(item.split(b":")[0]) for item in match.group(1).split(b","))
    await conn.send(b"* %d FETCH (UID %d FLAGS ())\r\n%s OK\r\n" % (first, first, tag))


async def test_uid_fetches_with_partial_are_not_merged(env: Env) -> None:
    """b asks for the first message of UIDs 1:2, c for the first of 3:4 (PARTIAL
    1:1): c's answer is UID 3, as it would be on a connection of its own."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox(CAPS + " PARTIAL")
        shared = env.shared()
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"f UID FETCH 1:2 (FLAGS) (PARTIAL 1:1)\r\n")
        await c.send(b"g UID FETCH 3:4 (FLAGS) (PARTIAL 1:1)\r\n")
        await until(lambda: waiting(shared) == 2)
        await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + status + b" OK\r\n")
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        await answer_first_of_set(conn)
        assert (await b.read_response(b"f"))[0] == b"* 1 FETCH (UID 1 FLAGS ())\r\n"
        if not conn.commands[-1].endswith(b"FETCH 1:4 (FLAGS) (PARTIAL 1:1)\r\n"):
            await answer_first_of_set(conn)  # c's went on its own
        reply = await c.read_response(b"g")
        assert reply[0] == b"* 3 FETCH (UID 3 FLAGS ())\r\n", reply


# -- the flags filter of a merged command -----------------------------------------------------


async def test_a_merged_owner_hears_of_changed_flags_it_did_not_ask_for(env: Env) -> None:
    """b and c both fetched flags of 1..4 before. Merged, b asks for UID 1 and c for
    UID 3; the server reports UID 3's flags changed (c's result) and UID 1's (b's
    result): b gets UID 3's change as an unsolicited FETCH, as a's session, which
    asked for nothing, does; c the same for UID 1."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        for client in (b, c):
            await client.send(b"f UID FETCH 1:4 (FLAGS)\r\n")
            tag = await hold(conn, b"UID")
            lines = b"".join(b"* %d FETCH (UID %d FLAGS ())\r\n" % (n, n) for n in range(1, 5))
            await conn.send(lines + tag + b" OK\r\n")
            assert len(await client.read_response(b"f")) == 5
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"g UID FETCH 1 (FLAGS)\r\n")
        await c.send(b"g UID FETCH 3 (FLAGS)\r\n")
        await until(lambda: waiting(shared) == 2)
        await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + status + b" OK\r\n")
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1,3 (FLAGS)"), (name, rest)
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS (\\Answered))\r\n* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n"
            + tag
            + b" OK\r\n"
        )
        assert await b.read_response(b"g") == [
            b"* 1 FETCH (UID 1 FLAGS (\\Answered))\r\n",
            b"* 3 FETCH (FLAGS (\\Seen))\r\n",
            b"g OK\r\n",
        ]
        assert await c.read_response(b"g") == [
            b"* 1 FETCH (FLAGS (\\Answered))\r\n",
            b"* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n",
            b"g OK\r\n",
        ]
        await a.send(b"n NOOP\r\n")
        tag, name, _rest = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag + b" OK\r\n")
        reply = await a.read_response(b"n")
        assert reply == [
            b"* 1 FETCH (FLAGS (\\Answered))\r\n",
            b"* 3 FETCH (FLAGS (\\Seen))\r\n",
            b"n OK\r\n",
        ], reply


async def test_flags_changed_in_a_streamed_fetch_reach_the_other_sessions(env: Env) -> None:
    size = 70 * 1024  # streamed, not framed whole
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await a.send(b"f UID FETCH 1 (FLAGS)\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(b"* 1 FETCH (UID 1 FLAGS ())\r\n" + tag + b" OK\r\n")
        assert len(await a.read_response(b"f")) == 2
        await a.send(b"g UID FETCH 1 (FLAGS BODY.PEEK[])\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}\r\n" % size
            + b"x" * size
            + b")\r\n"
            + tag
            + b" OK\r\n"
        )
        reply = await a.read_response(b"g")
        assert reply[-1] == b"g OK\r\n", reply[-1]
        await b.send(b"n NOOP\r\n")
        tag = await hold(conn, b"NOOP")
        await conn.send(tag + b" OK\r\n")
        reply = await b.read_response(b"n")
        assert reply == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"n OK\r\n"], reply


# -- a command sent for the others when its session goes ---------------------------------------


@pytest.fixture
async def patient(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    """A proxy that waits a minute for the server (``upstream_response``)."""
    async with started(nursery, tmp_path, proxy_tls, upstream_response=60) as env:
        yield env


async def test_a_cancelled_session_whose_connection_is_lost_ends_at_once(
    patient: Env,
) -> None:
    """b's UID FETCH waits for the turn with c's merged in when b's session is
    cancelled (so it waits on, shielded, to send it for c); then the server goes
    away. Nothing can be sent any more: b's session ends with the others, not a
    minute later."""
    env = patient
    with trio.fail_after(TEST_TIMEOUT):
        a, c, conn, _status = await lead_cancelled(env)
        assert sessions(env) == 3  # b's waits to send its UID FETCH for c
        await conn.aclose()
        assert (await a.read_line()).startswith(b"* BYE")
        assert (await c.read_line()).startswith(b"* BYE")
        # Not upstream_response later: b's session stops waiting for a turn that
        # cannot come.
        await until(lambda: sessions(env) == 0)


# -- moving to a dedicated connection ----------------------------------------------------------


async def test_an_expunge_during_the_flags_fetch_of_the_move_is_shown(env: Env) -> None:
    """b moves (UID FETCH ... MODSEQ). On its new connection INBOX has 1..4 when
    selected and searched; message 2 is expunged as the proxy fetches the flags. b
    must hear of it before it numbers messages on that connection."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"u UID FETCH 1 (MODSEQ)\r\n")
        own = await env.fake.accept()
        await own.login(caps=CAPS)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"INBOX"), (name, rest)
        await own.send(b"* 4 EXISTS\r\n" + tag + b" OK [READ-WRITE] done\r\n")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"SEARCH ALL"), (name, rest)
        await own.send(b"* SEARCH 1 2 3 4\r\n" + tag + b" OK\r\n")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1:4 (FLAGS)"), (name, rest)
        await own.send(
            b"* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n"
            b"* 3 FETCH (UID 3 FLAGS ())\r\n* 4 FETCH (UID 4 FLAGS ())\r\n"
            b"* 2 EXPUNGE\r\n" + tag + b" OK\r\n"
        )
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (MODSEQ)"), (name, rest)
        await own.send(b"* 1 FETCH (UID 1 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        seen = await b.read_response(b"u")
        await b.send(b"n NOOP\r\n")
        tag, name, _rest = await own.read_command()
        assert name == b"NOOP"
        await own.send(tag + b" OK\r\n")
        seen += await b.read_response(b"n")
        assert b"* 2 EXPUNGE\r\n" in seen, seen


# -- the FLAGS item is the FETCH list's own ------------------------------------------------


@pytest.mark.parametrize(
    "items",
    [
        # A Subject that looks like a FLAGS item: a quoted string.
        b'UID 2 ENVELOPE (NIL "FLAGS (\\\\Deleted)" NIL NIL NIL NIL NIL NIL NIL NIL)',
        # An escaped quote does not end the string.
        b'UID 2 ENVELOPE (NIL "a \\" FLAGS (\\\\Deleted)" NIL NIL NIL NIL NIL NIL NIL NIL)',
        # A nested list.
        b"UID 2 X-ITEM (FLAGS (\\Deleted))",
    ],
)
async def test_flags_inside_another_item_are_not_taken_for_the_message_flags(
    env: Env, items: bytes
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        await b.send(b"f UID FETCH 2 (FLAGS)\r\n")
        tag, _name, _rest = await conn.read_command()
        await conn.send(b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" + tag + b" OK\r\n")
        assert len(await b.read_response(b"f")) == 2
        # Then the server reports something of message 2 that is not its flags.
        await b.send(b"e UID FETCH 2 (ENVELOPE)\r\n")
        tag, _name, _rest = await conn.read_command()
        await conn.send(b"* 2 FETCH (" + items + b")\r\n" + tag + b" OK\r\n")
        assert (await b.read_response(b"e"))[-1] == b"e OK\r\n"
        assert env.shared().flags[2] == b"(\\Seen)"
        # a and c heard nothing of message 2: their next line is their NOOP's.
        await a.send(b"n NOOP\r\n")
        tag = await hold(conn, b"NOOP")
        await c.send(b"n NOOP\r\n")
        shared = env.shared()
        await until(lambda: shared.current is not None and len(shared.current.riders) == 1)
        await conn.send(tag + b" OK\r\n")
        for client in (a, c):
            assert (await client.read_response(b"n"))[0].startswith(b"n OK"), client
