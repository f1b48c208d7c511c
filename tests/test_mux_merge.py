"""UID FETCHes of the same items by several sessions on a shared connection,
waiting for the turn at the same time, go upstream as one over the union of
their UID sets; each session gets the messages it asked for, numbered as it has
them (imapproxy/mux.py, ``_Merge``). The fake upstream plays the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_upstream import FakeConnection, RawClient
from mux_harness import Env, hold, lead_cancelled, started, until, waiting

from imapproxy.mux import SharedConnection
from imapproxy.testing.proxy import ProxyTls

TEST_TIMEOUT = 20


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    async with started(nursery, tmp_path, proxy_tls) as env:
        yield env


async def queued_behind_a_status(
    a: RawClient,
    conn: FakeConnection,
    shared: SharedConnection,
    sends: list[tuple[RawClient, bytes]],
) -> bytes:
    """a's STATUS holds the turn while ``sends`` are written; once every one is
    waiting (the first for the turn, the others merged into it or riding on it),
    the STATUS is answered. Returns the tag of the STATUS."""
    await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
    tag = await hold(conn, b"STATUS")
    for client, line in sends:
        await client.send(line)
    await until(lambda: waiting(shared) == len(sends))
    await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + tag + b" OK\r\n")
    assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
    return tag


def flags_lines(uids: range | tuple[int, ...]) -> bytes:
    return b"".join(b"* %d FETCH (UID %d FLAGS ())\r\n" % (uid, uid) for uid in uids)


@pytest.mark.parametrize(
    ("b_set", "c_set", "merged", "b_uids", "c_uids"),
    [
        (b"1:2", b"4", b"1:2,4", (1, 2), (4,)),  # distinct sets: their union
        (b"2:*", b"3:4", b"2:*", (2, 3, 4), (3, 4)),  # a range to * takes in the other
        (b"3,1", b"2:1", b"1:3", (1, 3), (1, 2)),  # out of order, overlapping
    ],
)
async def test_uid_fetches_go_as_one_and_each_gets_its_own(
    env: Env,
    b_set: bytes,
    c_set: bytes,
    merged: bytes,
    b_uids: tuple[int, ...],
    c_uids: tuple[int, ...],
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await queued_behind_a_status(
            a,
            conn,
            shared,
            [
                (b, b"f UID FETCH " + b_set + b" (FLAGS)\r\n"),
                (c, b"g UID FETCH " + c_set + b" (FLAGS)\r\n"),
            ],
        )
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH " + merged + b" (FLAGS)"), (name, rest)
        every = sorted({*b_uids, *c_uids})
        await conn.send(flags_lines(tuple(every)) + tag + b" OK done\r\n")
        for client, tag, uids in ((b, b"f", b_uids), (c, b"g", c_uids)):
            reply = await client.read_response(tag)
            assert reply == [*flags_lines(uids).splitlines(keepends=True), tag + b" OK done\r\n"]


async def test_star_beyond_the_last_uid_is_not_merged(env: Env) -> None:
    """``9:*`` with 4 the largest UID means the last message (RFC 9051 6.4.8):
    merged into ``1:*`` it would mean none. It goes on its own."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await queued_behind_a_status(
            a,
            conn,
            shared,
            [(b, b"f UID FETCH 1:* (FLAGS)\r\n"), (c, b"g UID FETCH 9:* (FLAGS)\r\n")],
        )
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1:* (FLAGS)"), (name, rest)
        await conn.send(flags_lines(range(1, 5)) + tag + b" OK\r\n")
        assert len(await b.read_response(b"f")) == 5
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 9:* (FLAGS)"), (name, rest)
        await conn.send(flags_lines((4,)) + tag + b" OK\r\n")
        assert await c.read_response(b"g") == [b"* 4 FETCH (UID 4 FLAGS ())\r\n", b"g OK\r\n"]


@pytest.mark.parametrize(
    ("b_items", "c_items", "leads"),
    [
        (b"(FLAGS)", b"(RFC822.SIZE)", 2),  # other items: a lead each
        (b"(FLAGS)", b"(BODY[])", 1),  # BODY[] sets \Seen: never merged
        # Bodies: a small fetch merged into a big one would wait for all of it.
        (b"(BODY.PEEK[])", b"(BODY.PEEK[])", 0),
        (b"(BODY.PEEK[TEXT])", b"(BODY.PEEK[TEXT])", 0),
        (b"(BINARY.PEEK[1])", b"(BINARY.PEEK[1])", 0),
        # Modifiers (PARTIAL): their results depend on the set as a whole.
        (b"(FLAGS) (PARTIAL 1:1)", b"(FLAGS) (PARTIAL 1:1)", 0),
    ],
)
async def test_what_is_not_merged_goes_on_its_own(
    env: Env, b_items: bytes, c_items: bytes, leads: int
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"f UID FETCH 1 " + b_items + b"\r\n")
        await c.send(b"g UID FETCH 2 " + c_items + b"\r\n")
        await until(lambda: shared._wanted == 2)
        assert len(shared.merging) == leads
        await conn.send(status + b" OK\r\n")
        sent = []
        for _ in range(2):
            tag, _name, rest = await conn.read_command()
            sent.append(rest)
            await conn.send(tag + b" OK\r\n")
        assert sorted(sent) == [b"FETCH 1 " + b_items, b"FETCH 2 " + c_items]
        for client, tag in ((b, b"f"), (c, b"g")):
            assert (await client.read_response(tag))[-1] == tag + b" OK\r\n"


async def test_fetches_by_number_merge_with_each_other_in_each_numbering(env: Env) -> None:
    """b has been shown a's expunge of message 2, c has not: their FETCH 2 are
    different messages (UID 3 for b, UID 2 for c), merged into UID FETCH 2:3,
    and each gets its own, numbered as it has it."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await b.send(b"n NOOP\r\n")
        tag = await hold(conn, b"NOOP")
        await conn.send(b"* 2 EXPUNGE\r\n" + tag + b" OK\r\n")
        assert await b.read_response(b"n") == [b"* 2 EXPUNGE\r\n", b"n OK\r\n"]
        await queued_behind_a_status(
            a,
            conn,
            shared,
            [(b, b"f FETCH 2 (FLAGS)\r\n"), (c, b"g FETCH 2 (FLAGS)\r\n")],
        )
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 2:3 (FLAGS)"), (name, rest)
        # UID 2 is gone on the server: it answers for UID 3 only (its message 2).
        await conn.send(b"* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n" + tag + b" OK\r\n")
        assert await b.read_response(b"f") == [b"* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n", b"f OK\r\n"]
        # c asked for UID 2 only (its message 2, expunged, not yet shown to it):
        # no result, as the server answers a FETCH of an expunged message.
        assert await c.read_response(b"g") == [b"g OK\r\n"]


async def test_a_session_gone_while_waiting_still_sends_what_others_merged_in(env: Env) -> None:
    """b's UID FETCH waits for the turn with c's merged into it when b's session
    is cancelled (here: by hand, as the proxy's watchdog or shutdown would): the
    command goes all the same, and c gets its answer."""
    with trio.fail_after(TEST_TIMEOUT):
        a, c, conn, status = await lead_cancelled(env)
        await conn.send(status + b" OK\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1,3 (FLAGS)"), (name, rest)
        await conn.send(flags_lines((1, 3)) + tag + b" OK\r\n")
        assert await c.read_response(b"g") == [b"* 3 FETCH (UID 3 FLAGS ())\r\n", b"g OK\r\n"]
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        await until(lambda: len(env.running.proxy.sessions) == 2 if env.running else False)


async def test_a_flag_change_of_another_message_during_a_uid_fetch_is_news_for_all(
    env: Env,
) -> None:
    """During b's UID FETCH 1 the server reports another connection's change to
    message 3: not b's result, but news for every session on the mailbox."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        await b.send(b"f UID FETCH 1 (FLAGS)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (FLAGS)"), (name, rest)
        await conn.send(
            b"* 3 FETCH (UID 3 FLAGS (\\Flagged))\r\n* 1 FETCH (UID 1 FLAGS ())\r\n"
            + tag
            + b" OK\r\n"
        )
        assert await b.read_response(b"f") == [
            b"* 3 FETCH (FLAGS (\\Flagged))\r\n",
            b"* 1 FETCH (UID 1 FLAGS ())\r\n",
            b"f OK\r\n",
        ]
        for client in (a, c):
            assert await client.read_line() == b"* 3 FETCH (FLAGS (\\Flagged))\r\n"
