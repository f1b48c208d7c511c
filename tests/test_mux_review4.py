"""Fourth review of concurrent sharing (imapproxy/mux.py, imapproxy/session.py):
the FLAGS item of a FETCH response (``_FlagsScan``, ``_flags_in``, streamed
responses in ``SharedConnection.upstream_part``), which messages a merged UID
FETCH answers for each session (``_within``, ``_union``, ``_fetch_spans``,
``_one_list``), and state left on a shared connection by a SELECT that never
went. The fake upstream plays the server (tests/mux_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_upstream import FakeConnection, RawClient, login
from hypothesis import given
from hypothesis import strategies as st
from mux_harness import CAPS, Env, answer_select, answer_status, hold, started, until, waiting

from imapproxy.mux import (
    Lane,
    _fetch_spans,
    _FlagsScan,
    _one_list,
    _Spans,
    _uid_in,
    _union,
    _within,
)
from imapproxy.testing.proxy import ProxyTls
from imapproxy.wire import Frame
from imapproxy.wire.framing import LiteralSpan

TEST_TIMEOUT = 20
#: A literal this large is streamed, not framed whole (see tests/test_mux_review3.py).
STREAMED = 70 * 1024


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    async with started(nursery, tmp_path, proxy_tls) as env:
        yield env


# -- helpers -------------------------------------------------------------------------------


async def flags_known(client: RawClient, conn: FakeConnection, uid: int = 1) -> None:
    """``client`` fetches message ``uid``'s flags: ``()`` (the connection knows them)."""
    await client.send(b"k UID FETCH %d (FLAGS)\r\n" % uid)
    tag = await hold(conn, b"UID")
    await conn.send(b"* %d FETCH (UID %d FLAGS ())\r\n%s OK\r\n" % (uid, uid, tag))
    assert (await client.read_response(b"k"))[-1] == b"k OK\r\n"


async def noop_news(client: RawClient, conn: FakeConnection) -> list[bytes]:
    """What ``client``'s NOOP shows (the NOOP goes upstream, answered plainly)."""
    await client.send(b"n NOOP\r\n")
    tag = await hold(conn, b"NOOP")
    await conn.send(tag + b" OK\r\n")
    return await client.read_response(b"n")


# -- the FLAGS item of a FETCH response, by itself ----------------------------------------


@pytest.mark.parametrize(
    ("parts", "flags"),
    [
        ([b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n"], b"(\\Seen)"),
        # Lowercase, odd spacing inside the list, keywords with odd characters.
        ([b"* 1 fetch (uid 1 flags ( \\seen  $Junk ))\r\n"], b"(\\seen $Junk)"),
        (
            [b"* 1 FETCH (FLAGS (OIB-Seen-[Gmail]/All $X.y) UID 1)\r\n"],
            b"(OIB-Seen-[Gmail]/All $X.y)",
        ),
        # Two spaces after the item (QUIRKS F3).
        ([b"* 1 FETCH (FLAGS (\\Seen)  RFC822.SIZE 4)\r\n"], b"(\\Seen)"),
        # After a streamed literal, in the next part's text.
        ([b"* 1 FETCH (UID 1 BODY[] {9}\r\n", b" FLAGS (\\Seen))\r\n"], b"(\\Seen)"),
        # A FLAGS in an ENVELOPE (quoted, escaped) or a nested list: not the item.
        ([b'* 1 FETCH (ENVELOPE (NIL "a \\" FLAGS (\\\\D)" NIL) UID 1)\r\n'], None),
        ([b"* 1 FETCH (X-ITEM (FLAGS (\\Deleted)) UID 1)\r\n"], None),
        ([b"* 1 FETCH (X-ITEM (FLAGS (\\D)) FLAGS (\\Seen))\r\n"], b"(\\Seen)"),
        # Not a FLAGS item: another name ending in FLAGS.
        ([b"* 1 FETCH (X-GM-FLAGS (\\D) UID 1)\r\n"], None),
    ],
)
def test_flags_scan_finds_the_top_level_item(parts: list[bytes], flags: bytes | None) -> None:
    scan = _FlagsScan()
    found = [text for part in parts if (text := scan.feed(part)) is not None]
    assert found == ([flags] if flags is not None else [])


# -- the FLAGS item of a FETCH response, on a shared connection ------------------------------


async def test_flags_after_a_literal_in_a_whole_response_reach_the_others(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await flags_known(b, conn)
        await b.send(b"h UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] FLAGS)\r\n")
        tag = await hold(conn, b"UID")
        header = b"Subject: x\r\n\r\n"
        await conn.send(
            b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n" % len(header)
            + header
            + b" FLAGS (\\Seen))\r\n"
            + tag
            + b" OK\r\n"
        )
        assert (await b.read_response(b"h"))[-1] == b"h OK\r\n"
        assert env.shared().flags[1] == b"(\\Seen)"
        assert await noop_news(a, conn) == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"n OK\r\n"]


async def streamed_fetch(
    b: RawClient, conn: FakeConnection, header: bytes, flags: bytes = b""
) -> None:
    """b fetches message 1's header (a small literal, framed inline) and text (a
    streamed literal); the server puts ``flags`` (an item) after the text."""
    await b.send(b"h UID FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])\r\n")
    tag = await hold(conn, b"UID")
    await conn.send(
        b"* 1 FETCH (UID 1 BODY[HEADER] {%d}\r\n" % len(header)
        + header
        + b" BODY[TEXT] {%d}\r\n" % STREAMED
        + b"x" * STREAMED
        + flags
        + b")\r\n"
        + tag
        + b" OK\r\n"
    )
    reply = await b.read_response(b"h")
    assert reply[-1] == b"h OK\r\n"
    assert len(reply[0]) > STREAMED, reply[0][:200]


async def test_a_header_in_a_streamed_fetch_is_not_taken_for_its_flags(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await flags_known(b, conn)
        await streamed_fetch(b, conn, b"Subject: a FLAGS (\\Deleted)\r\n\r\n")
        assert env.shared().flags[1] == b"()"
        assert await noop_news(a, conn) == [b"n OK\r\n"]


@pytest.mark.parametrize("header", [b'Subject: "quoted\r\n\r\n', b"Subject: (aside\r\n\r\n"])
async def test_a_header_in_a_streamed_fetch_does_not_hide_its_flags(
    env: Env, header: bytes
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await flags_known(b, conn)
        await streamed_fetch(b, conn, header, b" FLAGS (\\Seen)")
        assert env.shared().flags[1] == b"(\\Seen)"
        assert await noop_news(a, conn) == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"n OK\r\n"]


async def test_flags_after_a_streamed_literal_reach_the_others(env: Env) -> None:
    """Regression: a header without quotes or parentheses, FLAGS after the text."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await flags_known(b, conn)
        await streamed_fetch(b, conn, b"Subject: plain\r\n\r\n", b" FLAGS (\\Seen)")
        assert env.shared().flags[1] == b"(\\Seen)"
        assert await noop_news(a, conn) == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"n OK\r\n"]


async def test_a_streamed_fetch_with_two_spaces_reaches_its_asker(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, conn = await env.two_on_inbox()
        await b.send(b"h UID FETCH 1 (BODY.PEEK[])\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(
            b"* 1  FETCH (UID 1 BODY[] {%d}\r\n" % STREAMED
            + b"x" * STREAMED
            + b")\r\n"
            + tag
            + b" OK\r\n"
        )
        reply = await b.read_response(b"h")
        assert len(reply) == 2, [line[:80] for line in reply]


async def test_a_merged_streamed_fetch_goes_only_to_its_asker_with_flags_to_the_other(
    env: Env,
) -> None:
    """Regression: b's and c's header fetches (merged; c's header is large, so
    streamed) -- c gets its message in its numbering, b only the flags news."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        for client in (b, c):
            await flags_known(client, conn, 3)
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"f UID FETCH 1 (FLAGS BODY.PEEK[HEADER])\r\n")
        await c.send(b"g UID FETCH 3 (FLAGS BODY.PEEK[HEADER])\r\n")
        await until(lambda: waiting(shared) == 2)
        await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + status + b" OK\r\n")
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1,3 (FLAGS BODY.PEEK[HEADER])"), rest
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS () BODY[HEADER] {5}\r\nA\r\n\r\n)\r\n"
            b"* 3 FETCH (UID 3 FLAGS (\\Seen) BODY[HEADER] {%d}\r\n"
            % STREAMED
            + b"y" * STREAMED
            + b")\r\n"
            + tag
            + b" OK\r\n"
        )
        reply = await b.read_response(b"f")
        assert reply[0] == b"* 1 FETCH (UID 1 FLAGS () BODY[HEADER] {5}\r\nA\r\n\r\n)\r\n"
        assert reply[1:] == [b"* 3 FETCH (FLAGS (\\Seen))\r\n", b"f OK\r\n"], reply[1:]
        reply = await c.read_response(b"g")
        assert len(reply) == 2
        assert reply[0].startswith(b"* 3 FETCH (UID 3 FLAGS (\\Seen) BODY")
        assert await noop_news(a, conn) == [b"* 3 FETCH (FLAGS (\\Seen))\r\n", b"n OK\r\n"]


# -- a SELECT that never went ------------------------------------------------------------


async def play_server(conn: FakeConnection) -> None:
    """Answer what comes: a SELECT as :func:`answer_select` (UIDs 1..4), a STATUS
    with UIDNEXT 5, anything else OK."""
    while True:
        tag, name, rest = await conn.read_command()
        if name in (b"SELECT", b"EXAMINE"):
            await conn.send(
                b"* 4 EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] ok\r\n"
                b"* OK [UIDNEXT 5] ok\r\n%s OK [READ-WRITE] done\r\n" % tag
            )
        elif (name, rest) == (b"UID", b"SEARCH ALL"):
            await conn.send(b"* SEARCH 1 2 3 4\r\n%s OK\r\n" % tag)
        elif name == b"STATUS":
            await conn.send(b"* STATUS INBOX (UIDNEXT 5)\r\n%s OK\r\n" % tag)
        else:
            await conn.send(tag + b" OK\r\n")


async def test_a_select_cancelled_before_its_turn_leaves_no_mailbox_behind(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake)
        b = await env.third()
        shared = env.shared()
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"s SELECT INBOX\r\n")
        await until(lambda: shared.mailbox is not None and shared._wanted == 1)
        assert env.running is not None
        (session,) = [
            s
            for s in env.running.proxy.sessions
            if isinstance(s.upstream, Lane) and s.upstream.selecting
        ]
        session._cancel()
        await trio.testing.wait_all_tasks_blocked(0.01)
        await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + status + b" OK\r\n")
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        c = await env.third()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play_server, conn)
            reply = await c.command(b"s", b"SELECT INBOX")
            nursery.cancel_scope.cancel()
        assert reply[-1].startswith(b"s OK"), reply
        assert b"* 4 EXISTS\r\n" in reply, reply


async def test_a_select_answered_after_its_session_went_is_kept_for_the_next(env: Env) -> None:
    """Regression: b's SELECT goes upstream, b goes before the answer; c's SELECT
    of the same mailbox joins what the server said."""
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake)
        b = await env.third()
        await b.send(b"s SELECT INBOX\r\n")
        tag, name, _rest = await conn.read_command()
        assert name == b"SELECT"
        assert env.running is not None
        (session,) = [
            s
            for s in env.running.proxy.sessions
            if isinstance(s.upstream, Lane) and s.upstream.selecting
        ]
        session._cancel()
        await trio.testing.wait_all_tasks_blocked(0.01)
        await conn.send(
            b"* 4 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-WRITE] done\r\n" % tag
        )
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"SEARCH ALL")
        await conn.send(b"* SEARCH 1 2 3 4\r\n%s OK\r\n" % tag)
        c = await env.third()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play_server, conn)
            reply = await c.command(b"s", b"SELECT INBOX")
            nursery.cancel_scope.cancel()
        assert b"* 4 EXISTS\r\n" in reply, reply


# -- which messages a merged UID FETCH answers for each session -------------------------------


def server_set(spans: _Spans, mailbox: list[int]) -> set[int]:
    """The messages a server takes ``spans`` to mean (RFC 9051 section 6.4.8: ``*``
    is the largest UID in use; ``n:*`` is every UID between n and it)."""
    last = max(mailbox)
    out = set()
    for uid in mailbox:
        for low, high in spans:
            top = last if high is None else high
            if min(low, top) <= uid <= max(low, top):
                out.add(uid)
    return out


def _ordered(low: int, high: int | None) -> tuple[int, int | None]:
    """A span as ``_fetch_spans`` makes it: ``low`` first (``n:*`` kept)."""
    return (low, None) if high is None else (min(low, high), max(low, high))


_span = st.builds(_ordered, st.integers(1, 30), st.one_of(st.none(), st.integers(1, 30)))
_spans = st.lists(_span, min_size=1, max_size=4).map(lambda spans: _union([], spans))
_mailbox = st.sets(st.integers(1, 30), min_size=1).map(sorted)


@given(_spans, _spans, _mailbox)
def test_a_merged_set_answers_each_as_its_own_would(
    mine: _Spans, theirs: _Spans, mailbox: list[int]
) -> None:
    """The union asks the server for at least every message of each set, and
    ``_within`` picks out of its answer exactly what the set alone would get."""
    union = _union(mine, theirs)
    answered = server_set(union, mailbox)
    assert server_set(mine, mailbox) <= answered
    assert server_set(theirs, mailbox) <= answered
    last = mailbox[-1]
    assert {uid for uid in answered if _within(mine, uid, last)} == server_set(mine, mailbox)


@pytest.mark.parametrize(
    ("items", "one"),
    [
        (b"(FLAGS)", True),
        (b"(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])", True),
        (b"(FLAGS) (PARTIAL 1:1)", False),
        (b"(FLAGS) (CHANGEDSINCE 5)", False),
        (b"FLAGS", False),
        (b'(BODY.PEEK[HEADER.FIELDS ("SUBJECT")])', False),
        (b"(FLAGS))", False),
        (b"((FLAGS)", False),
    ],
)
def test_one_list(items: bytes, one: bool) -> None:
    assert _one_list(items) is one


@pytest.mark.parametrize(
    ("raw", "spans"),
    [
        (b"A1 UID FETCH 3,1:2 (FLAGS)\r\n", [(1, 3)]),
        (b"A1 UID FETCH *:2 (FLAGS)\r\n", [(2, None)]),
        (b"A1 UID FETCH 2:* (flags)\r\n", [(2, None)]),
        (b"A1 UID FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[1.MIME])\r\n", [(1, 1)]),
        (b"A1 UID FETCH 5:* (FLAGS)\r\n", None),  # above the largest UID (4)
        (b"A1 UID FETCH * (FLAGS)\r\n", None),
        (b"A1 UID FETCH 1 (BODY.PEEK[])\r\n", None),
        (b"A1 UID FETCH 1 (BODY.PEEK[TEXT])\r\n", None),
        (b"A1 UID FETCH 1 (BODY[HEADER])\r\n", None),  # sets \Seen
        (b"A1 UID FETCH 1 (RFC822)\r\n", None),
        (b"A1 UID FETCH 1 (BINARY.PEEK[1])\r\n", None),
        (b"A1 UID FETCH 1 (FLAGS) (CHANGEDSINCE 1)\r\n", None),
    ],
)
def test_which_uid_fetches_merge(raw: bytes, spans: _Spans | None) -> None:
    found = _fetch_spans(raw, 4)
    assert (found[2] if found is not None else None) == spans


# -- what a lane's queue holds while a streamed response goes to its client --------------------


async def test_an_idle_pipelined_during_a_streamed_fetch_waits_for_its_end(env: Env) -> None:
    """Regression: b's IDLE, sent while its FETCH's literal streams, is not
    answered (``+ idling``, expunges) in the middle of the literal data."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, conn = await env.two_on_inbox()
        await b.send(b"h UID FETCH 1 (BODY.PEEK[])\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % STREAMED + b"x" * 1000)
        assert (await b.read_line()).startswith(b"* 1 FETCH")
        await b.read_exact(1000)
        await b.send(b"i IDLE\r\n")
        await trio.testing.wait_all_tasks_blocked(0.01)
        await conn.send(b"x" * (STREAMED - 1000) + b")\r\n" + tag + b" OK\r\n")
        data = await b.read_exact(STREAMED - 1000)
        assert data == b"x" * (STREAMED - 1000), data.replace(b"x", b"")
        assert await b.read_line() == b")\r\n"
        assert await b.read_line() == b"h OK\r\n"
        assert await b.read_line() == b"+ idling\r\n"


# -- moving to a dedicated connection (session.py, _reselect) --------------------------------


async def moved(env: Env, uids: tuple[int, ...]) -> tuple[RawClient, FakeConnection]:
    """Sessions a and b on INBOX (``uids``); b sends ``u UID FETCH <first> (MODSEQ)``,
    which moves it: returns b and its new connection, logged in."""
    a = await env.client()
    conn = await login(a, env.fake, caps=CAPS)
    await a.send(b"s SELECT INBOX\r\n")
    await answer_select(conn, uids)
    assert (await a.read_response(b"s"))[-1].startswith(b"s OK")
    b = await env.third()
    await b.send(b"s SELECT INBOX\r\n")
    await answer_status(conn, max(uids) + 1)
    assert (await b.read_response(b"s"))[-1].startswith(b"s OK")
    await b.send(b"u UID FETCH %d (MODSEQ)\r\n" % uids[0])
    own = await env.fake.accept()
    await own.login(caps=CAPS)
    return b, own


async def test_a_move_asks_flags_of_1_to_star_past_200_ranges(env: Env) -> None:
    """Regression: 402 messages with every other UID: the flags are asked with
    ``1:*``, and a changed one reaches b in its numbering."""
    uids = tuple(range(2, 806, 2))
    with trio.fail_after(TEST_TIMEOUT):
        b, own = await moved(env, uids)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"INBOX")
        await own.send(
            b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK done\r\n" % (len(uids), tag)
        )
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"SEARCH ALL")
        await own.send(
            b"* SEARCH " + b" ".join(b"%d" % u for u in uids) + b"\r\n" + tag + b" OK\r\n"
        )
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1:* (FLAGS)")
        lines = b"".join(
            b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (n, u, b"\\Seen" if u == 4 else b"")
            for n, u in enumerate(uids, 1)
        )
        await own.send(lines + tag + b" OK\r\n")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 2 (MODSEQ)")
        await own.send(b"* 1 FETCH (UID 2 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        reply = await b.read_response(b"u")
        assert b"* 2 FETCH (FLAGS (\\Seen))\r\n" in reply
        assert reply[-1] == b"u OK\r\n"
        assert not [line for line in reply if b"EXPUNGE" in line or b"EXISTS" in line]


async def test_a_move_to_a_mailbox_recreated_meanwhile_ends_the_session(env: Env) -> None:
    """Regression: the new connection's UIDVALIDITY is not the shared one's."""
    with trio.fail_after(TEST_TIMEOUT):
        b, own = await moved(env, (1, 2, 3, 4))
        tag, name, _rest = await own.read_command()
        assert name == b"SELECT"
        await own.send(b"* 4 EXISTS\r\n* OK [UIDVALIDITY 8] ok\r\n%s OK done\r\n" % tag)
        assert (await b.read_line()).startswith(b"* BYE")


async def test_a_move_shows_messages_that_arrive_during_its_flags_fetch(env: Env) -> None:
    """Regression: ``* 5 EXISTS`` as the flags are fetched, message 2 expunged
    during the UID SEARCH: b sees the expunge and then 4 messages (its NOOP)."""
    with trio.fail_after(TEST_TIMEOUT):
        b, own = await moved(env, (1, 2, 3, 4))
        tag, name, _rest = await own.read_command()
        assert name == b"SELECT"
        await own.send(b"* 4 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK done\r\n" % tag)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"SEARCH ALL")
        await own.send(b"* SEARCH 1 2 3 4\r\n* 2 EXPUNGE\r\n" + tag + b" OK\r\n")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1,3:4 (FLAGS)")
        await own.send(
            b"* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 3 FLAGS ())\r\n"
            b"* 3 FETCH (UID 4 FLAGS ())\r\n* 4 EXISTS\r\n" + tag + b" OK\r\n"
        )
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (MODSEQ)")
        await own.send(b"* 1 FETCH (UID 1 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        seen = await b.read_response(b"u")
        await b.send(b"n NOOP\r\n")
        tag = await hold(own, b"NOOP")
        await own.send(tag + b" OK\r\n")
        seen += await b.read_response(b"n")
        news = [line for line in seen if b"EXPUNGE" in line or b"EXISTS" in line]
        assert news == [b"* 2 EXPUNGE\r\n", b"* 4 EXISTS\r\n"], seen


# -- one session's two UID FETCHes merged into another's -----------------------------------


async def test_two_pipelined_uid_fetches_of_one_session_both_get_their_messages(
    env: Env,
) -> None:
    """Regression: b's UID FETCH 1 waits for the turn; c pipelines UID FETCH 2 and
    UID FETCH 3 of the same items. c's second waits for its first (a lane's
    commands go one after another), so a lane never has two sets in one merge."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, c, conn = await env.three_on_inbox()
        shared = env.shared()
        await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
        status = await hold(conn, b"STATUS")
        await b.send(b"f UID FETCH 1 (FLAGS)\r\n")
        await until(lambda: waiting(shared) == 1)
        await c.send(b"g UID FETCH 2 (FLAGS)\r\nh UID FETCH 3 (FLAGS)\r\n")
        await until(lambda: waiting(shared) == 2)
        await trio.testing.wait_all_tasks_blocked(0.01)
        assert waiting(shared) == 2
        await conn.send(b"* STATUS INBOX (MESSAGES 4)\r\n" + status + b" OK\r\n")
        assert (await a.read_response(b"t"))[-1] == b"t OK\r\n"
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1:2 (FLAGS)"), rest
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n" + tag + b" OK\r\n"
        )
        assert (await b.read_response(b"f"))[0] == b"* 1 FETCH (UID 1 FLAGS ())\r\n"
        assert await c.read_response(b"g") == [b"* 2 FETCH (UID 2 FLAGS ())\r\n", b"g OK\r\n"]
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 3 (FLAGS)"), rest
        await conn.send(b"* 3 FETCH (UID 3 FLAGS ())\r\n" + tag + b" OK\r\n")
        assert await c.read_response(b"h") == [b"* 3 FETCH (UID 3 FLAGS ())\r\n", b"h OK\r\n"]


@pytest.mark.parametrize(
    ("raw", "uid"),
    [
        (b"* 1 FETCH (UID 7 FLAGS ())", 7),
        (b"* 1 FETCH (X-GM-XUID 5 UID 7)", 7),  # another item ending in UID
        (b"* 1 FETCH (XUID 5)", None),
        (b"* 1 FETCH (FLAGS () uid 9)", 9),
    ],
)
def test_the_uid_item_is_a_whole_item(raw: bytes, uid: int | None) -> None:
    assert _uid_in(raw) == uid


def test_the_uid_item_is_never_read_from_literal_data() -> None:
    """A header that reads "UID 5" is message data, not the UID item after it."""
    raw = b"* 1 FETCH (BODY[HEADER] {12}\r\nX: a UID 5\r\n UID 7)"
    start = raw.index(b"\r\n") + 2
    frame = Frame(raw, (LiteralSpan(raw.index(b"{"), start, 12),))
    assert _uid_in(frame.raw, frame.literals) == 7


# -- a silent STORE and changes made elsewhere (found by tests/test_proxy_mux_stress.py) --


@pytest.mark.parametrize(
    ("answer", "told"),
    [
        (b"* 1 FETCH (UID 1 FLAGS ($b))\r\n", False),  # only b's own change: silence
        (b"* 1 FETCH (UID 1 FLAGS ($b $x))\r\n", True),  # $x came from elsewhere
    ],
)
async def test_a_silent_store_is_told_of_a_change_made_elsewhere(
    env: Env, answer: bytes, told: bool
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, _c, conn = await env.three_on_inbox()
        await flags_known(b, conn, 1)
        await b.send(b"s STORE 1 +FLAGS.SILENT ($b)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"STORE 1 +FLAGS ($b)"), (name, rest)
        await conn.send(answer + tag + b" OK\r\n")
        reply = await b.read_response(b"s")
        expected = [b"* 1 FETCH (FLAGS ($b $x))\r\n"] if told else []
        assert reply == [*expected, b"s OK\r\n"], reply
        # a hears of the change either way.
        line = await a.read_line()
        assert line.startswith(b"* 1 FETCH (FLAGS ($b"), line


async def test_another_messages_change_during_a_silent_store_reaches_the_storer(
    env: Env,
) -> None:
    """During b's silent STORE of message 1 the server reports another
    connection's change to message 2 (no UID, as Dovecot does): news for b too."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, _c, conn = await env.three_on_inbox()
        await flags_known(b, conn, 1)
        await flags_known(b, conn, 2)
        await b.send(b"s STORE 1 +FLAGS.SILENT ($b)\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS ($b))\r\n* 2 FETCH (FLAGS ($x))\r\n" + tag + b" OK\r\n"
        )
        reply = await b.read_response(b"s")
        assert b"* 2 FETCH (FLAGS ($x))\r\n" in reply, reply
        assert not any(line.startswith(b"* 1 FETCH") for line in reply), reply
        assert await a.read_line() == b"* 1 FETCH (FLAGS ($b))\r\n"
        assert await a.read_line() == b"* 2 FETCH (FLAGS ($x))\r\n"
