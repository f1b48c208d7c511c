"""Second review of concurrent sharing (imapproxy/mux.py and its use in
imapproxy/session.py): moving a session to a dedicated connection, rules, audit
lines and the lifecycle of lanes, with the fake upstream playing the server so
that the order of events is the test's (see tests/test_mux_review.py)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from conftest import start_proxy
from fake_upstream import FakeConnection, FakeUpstream, RawClient, login
from mux_harness import CAPS, SHARING, Env, answer_status, hold, sessions, started, until

import imapproxy.logs
from imapproxy.mux import SharedConnection
from imapproxy.testing.proxy import ProxyTls

TEST_TIMEOUT = 20


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    async with started(nursery, tmp_path, proxy_tls) as env:
        yield env


def all_conns(env: Env) -> list[SharedConnection]:
    assert env.running is not None
    assert env.running.proxy.mux is not None
    return [c for g in env.running.proxy.mux.groups.values() for c in g.conns]


async def dedicated_login(fake: FakeUpstream, result: bytes = b"OK") -> FakeConnection:
    """The proxy logs in a connection of the session's own (``_go_dedicated``)."""
    conn = await fake.accept()
    await conn.login(caps=CAPS, result=result)
    return conn


async def finish_select(
    conn: FakeConnection,
    tag: bytes,
    uids: tuple[int, ...] = (1, 2, 3, 4),
    mode: bytes = b"READ-WRITE",
) -> None:
    """Answer a SELECT read with :func:`hold`, then the proxy's UID SEARCH ALL."""
    await conn.send(
        b"* %d EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] ok\r\n"
        b"* OK [UIDNEXT %d] ok\r\n%s OK [%s] done\r\n" % (len(uids), max(uids) + 1, tag, mode)
    )
    tag, name, rest = await conn.read_command()
    assert (name, rest) == (b"UID", b"SEARCH ALL"), (name, rest)
    await conn.send(b"* SEARCH " + b" ".join(b"%d" % u for u in uids) + b"\r\n" + tag + b" OK\r\n")


async def answer_flags(
    conn: FakeConnection, uids: Iterable[int], flags: Mapping[int, bytes] | None = None
) -> None:
    """Answer the proxy's ``UID FETCH ... (FLAGS)`` on a dedicated connection (the
    flags of the messages the session keeps; ``()`` unless ``flags`` says)."""
    tag, name, rest = await conn.read_command()
    assert name == b"UID", (name, rest)
    assert rest.startswith(b"FETCH "), rest
    assert rest.endswith(b" (FLAGS)"), rest
    lines = b"".join(
        b"* %d FETCH (UID %d FLAGS %s)\r\n" % (n, uid, (flags or {}).get(uid, b"()"))
        for n, uid in enumerate(uids, 1)
    )
    await conn.send(lines + tag + b" OK\r\n")


def flag_lines(seqs: Iterable[int]) -> list[bytes]:
    """The flags a session is shown on its move when nobody fetched them before."""
    return [b"* %d FETCH (FLAGS ())\r\n" % n for n in seqs]


# -- lifecycle: a session that ends while its SELECT is on the connection ---------------


async def test_client_gone_during_its_select_leaves_no_lane_behind(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake, caps=CAPS)
        shared = env.shared()
        await a.send(b"s SELECT INBOX\r\n")
        tag = await hold(conn, b"SELECT")
        await a.aclose()
        await until(lambda: sessions(env) == 0)
        assert not shared.lanes
        await finish_select(conn, tag)
        await until(lambda: shared.current is None and not shared._completions)
        # Nobody is left on the connection: it may be swept, and is free.
        assert not shared.lanes, shared.lanes


# -- moving to a dedicated connection -----------------------------------------------------


async def test_go_dedicated_keeps_examine_and_carries_the_numbering(env: Env) -> None:
    """b has INBOX open read-only (EXAMINE), and has not been shown a's expunge of
    message 2: its FETCH ... (MODSEQ) moves it to a connection of its own, where
    INBOX is EXAMINEd again and the expunge is shown before the FETCH (not during)."""
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        conn = await login(a, env.fake, caps=CAPS)
        b = await env.client()
        await b.send(b"L LOGIN user pass\r\n")
        assert (await b.read_line()).startswith(b"L OK")
        await a.send(b"s EXAMINE INBOX\r\n")
        await finish_select(conn, await hold(conn, b"EXAMINE"), mode=b"READ-ONLY")
        await a.read_response(b"s")
        await b.send(b"s EXAMINE INBOX\r\n")
        await answer_status(conn)
        reply = await b.read_response(b"s")
        assert reply[-1].startswith(b"s OK [READ-ONLY]"), reply
        await expunge_of_2_shown_to(a, conn)
        # b sends a command that needs a connection of its own.
        await b.send(b"u UID FETCH 1 (MODSEQ)\r\n")
        own = await to_dedicated(env.fake, b"EXAMINE", uids=(1, 3, 4))
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (MODSEQ)"), (name, rest)
        await own.send(b"* 1 FETCH (UID 1 MODSEQ (5))\r\n" + tag + b" OK done\r\n")
        reply = await b.read_response(b"u")
        assert reply == [
            *flag_lines((1, 3, 4)),  # numbered as b has them: before the expunge
            b"* 2 EXPUNGE\r\n",
            b"* 1 FETCH (UID 1 MODSEQ (5))\r\n",
            b"u OK done\r\n",
        ], reply
        assert len(env.shared().lanes) == 1  # a's only


def audit_lines(logs: Iterable[Mapping[str, Any]], tag: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry.get("event") == "command" and entry["tag"] == tag]


async def test_a_command_that_cannot_move_to_a_dedicated_connection_is_audited(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    with structlog.testing.capture_logs() as logs, trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        await login(a, env.fake, caps=CAPS)
        await a.send(b"e ENABLE CONDSTORE\r\n")
        # The upstream refuses the login it accepted before (password changed).
        await dedicated_login(env.fake, result=b"NO [AUTHENTICATIONFAILED] no")
        reply = await a.read_response(b"e")
        assert reply[-1].startswith(b"e NO [UNAVAILABLE]"), reply
    lines = audit_lines(logs, "e")
    assert len(lines) == 1, lines
    assert lines[0]["status"] == "NO"


async def test_select_condstore_of_another_mailbox_does_not_need_the_old_one(
    env: Env,
) -> None:
    """b has a mailbox open that was deleted meanwhile; its SELECT Other (CONDSTORE)
    needs a connection of its own -- and has nothing to do with the old mailbox."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"s SELECT Other (CONDSTORE)\r\n")
        own = await dedicated_login(env.fake)
        tag, name, rest = await own.read_command()
        if name == b"SELECT" and rest == b"INBOX":  # the old one again: gone
            await own.send(tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n")
            tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"Other (CONDSTORE)"), (name, rest)
        await own.send(
            b"* 2 EXISTS\r\n* OK [HIGHESTMODSEQ 9] ok\r\n" + tag + b" OK [READ-WRITE] done\r\n"
        )
        reply = await b.read_response(b"s")
        assert reply[-1].startswith(b"s OK"), reply


async def expunge_of_2_shown_to(a: RawClient, conn: FakeConnection) -> None:
    """a's NOOP brings the expunge of message 2 (the other sessions are not shown it)."""
    await a.send(b"n NOOP\r\n")
    tag = await hold(conn, b"NOOP")
    await conn.send(b"* 2 EXPUNGE\r\n" + tag + b" OK done\r\n")
    assert b"* 2 EXPUNGE\r\n" in await a.read_response(b"n")


async def to_dedicated(
    fake: FakeUpstream,
    verb: bytes = b"SELECT",
    uids: tuple[int, ...] = (1, 2, 3, 4),
    flags: Mapping[int, bytes] | None = None,
) -> FakeConnection:
    """Play the dedicated connection's login and its SELECT (or EXAMINE) of INBOX
    again, with ``uids`` in it, and the flags of the session's messages."""
    own = await dedicated_login(fake)
    tag, name, rest = await own.read_command()
    assert (name, rest) == (verb, b"INBOX"), (name, rest)
    await own.send(b"* %d EXISTS\r\n%s OK done\r\n" % (len(uids), tag))
    tag, name, rest = await own.read_command()
    assert (name, rest) == (b"UID", b"SEARCH ALL"), (name, rest)
    await own.send(b"* SEARCH " + b" ".join(b"%d" % u for u in uids) + b"\r\n" + tag + b" OK\r\n")
    await answer_flags(own, (u for u in uids if u <= 4), flags)  # the session has 1..4
    return own


async def test_new_messages_alone_do_not_refuse_a_fetch_moving_to_its_own_connection(
    env: Env,
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"f FETCH 2 (MODSEQ)\r\n")
        own = await to_dedicated(env.fake, uids=(1, 2, 3, 4, 5))
        tag, name, rest = await own.read_command()
        assert name == b"FETCH", (name, rest)
        await own.send(b"* 2 FETCH (MODSEQ (7))\r\n" + tag + b" OK done\r\n")
        reply = await b.read_response(b"f")
        assert reply == [
            *flag_lines((1, 2, 3, 4)),
            b"* 5 EXISTS\r\n",
            b"* 2 FETCH (MODSEQ (7))\r\n",
            b"f OK done\r\n",
        ], reply


async def test_a_message_learned_during_the_move_is_not_shown_expunged(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        shared = env.shared()
        await b.send(b"u UID FETCH 1 (MODSEQ)\r\n")
        own = await dedicated_login(env.fake)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"INBOX"), (name, rest)
        await own.send(b"* 4 EXISTS\r\n%s OK done\r\n" % tag)
        search, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"SEARCH ALL"), (name, rest)
        # Meanwhile message 5 arrives; the shared connection learns its UID and
        # shows it to its sessions, b among them.
        await conn.send(b"* 5 EXISTS\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"SEARCH UID 5:*"), (name, rest)
        await conn.send(b"* SEARCH 5\r\n" + tag + b" OK\r\n")
        await until(lambda: all(len(lane.view or ()) == 5 for lane in shared.lanes))
        assert await a.read_line() == b"* 5 EXISTS\r\n"
        # The new connection was selected just before: it has not heard of it yet.
        await own.send(b"* SEARCH 1 2 3 4\r\n" + search + b" OK\r\n")
        await answer_flags(own, (1, 2, 3, 4))
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (MODSEQ)"), (name, rest)
        await own.send(b"* 5 EXISTS\r\n* 1 FETCH (UID 1 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        reply = await b.read_response(b"u")
        assert not any(line.endswith(b"EXPUNGE\r\n") for line in reply), reply


async def test_flags_changed_elsewhere_before_the_move_reach_the_session(env: Env) -> None:
    """Another client flagged message 1 while no command ran on the shared
    connection: the server would report it there with the next command. b moves to a
    connection of its own, selected after the change: the server never reports it
    there, so the proxy must find it out (FETCH FLAGS) for b's sake."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"u UID FETCH 2 (MODSEQ)\r\n")
        own = await to_dedicated(env.fake, flags={1: b"(\\Flagged)"})
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 2 (MODSEQ)"), (name, rest)
        await own.send(b"* 2 FETCH (UID 2 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        seen = b"".join(await b.read_response(b"u"))
        await b.send(b"n NOOP\r\n")
        tag, name, _ = await own.read_command()
        assert name == b"NOOP"
        await own.send(tag + b" OK\r\n")
        seen += b"".join(await b.read_response(b"n"))
        assert b"* 1 FETCH (" in seen, seen
        assert b"\\Flagged" in seen, seen


async def test_only_flags_that_changed_since_the_session_saw_them_are_shown(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, conn = await env.two_on_inbox()
        await b.send(b"f FETCH 1:4 (FLAGS)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1:4 (FLAGS)"), (name, rest)
        await conn.send(
            b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 2 FLAGS ())\r\n"
            b"* 3 FETCH (UID 3 FLAGS ())\r\n* 4 FETCH (UID 4 FLAGS ())\r\n" + tag + b" OK\r\n"
        )
        assert len(await b.read_response(b"f")) == 5
        await b.send(b"u UID FETCH 1 (MODSEQ)\r\n")
        own = await to_dedicated(env.fake, flags={1: b"(\\Seen)", 2: b"(\\Flagged)"})
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (MODSEQ)"), (name, rest)
        await own.send(b"* 1 FETCH (UID 1 MODSEQ (3))\r\n" + tag + b" OK\r\n")
        reply = await b.read_response(b"u")
        assert reply == [
            b"* 2 FETCH (FLAGS (\\Flagged))\r\n",
            b"* 1 FETCH (UID 1 MODSEQ (3))\r\n",
            b"u OK\r\n",
        ], reply


async def test_a_fetch_by_number_that_moves_waits_for_the_expunges_to_be_shown(
    env: Env,
) -> None:
    """b has not been shown a's expunge of message 2 when its FETCH 3 (MODSEQ)
    moves it: the expunge may not come during a FETCH, and 3 means b's message 3.
    The FETCH is refused EXPUNGEISSUED; the NOOP after it shows the expunge; then
    the numbering is the new connection's."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await expunge_of_2_shown_to(a, conn)
        await b.send(b"f FETCH 3 (MODSEQ)\r\n")
        own = await to_dedicated(env.fake, uids=(1, 3, 4))
        reply = await b.read_response(b"f")
        assert reply == [*flag_lines((1, 3, 4)), reply[-1]], reply
        assert reply[-1].startswith(b"f NO [EXPUNGEISSUED]"), reply
        # Still refused until it is shown.
        again = await b.command(b"g", b"UID SEARCH 3")
        assert again[-1].startswith(b"g NO [EXPUNGEISSUED]"), again
        await b.send(b"n NOOP\r\n")
        tag, name, _ = await own.read_command()
        assert name == b"NOOP"
        await own.send(tag + b" OK done\r\n")
        assert await b.read_response(b"n") == [b"* 2 EXPUNGE\r\n", b"n OK done\r\n"]
        await b.send(b"f FETCH 2 (MODSEQ)\r\n")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"FETCH", b"2 (MODSEQ)"), (name, rest)
        await own.send(b"* 2 FETCH (MODSEQ (4))\r\n" + tag + b" OK\r\n")
        assert (await b.read_response(b"f"))[-1] == b"f OK\r\n"


async def test_a_mailbox_that_cannot_be_selected_again_ends_only_that_session(
    env: Env,
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await b.send(b"e ENABLE CONDSTORE\r\n")
        own = await dedicated_login(env.fake)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"INBOX"), (name, rest)
        await own.send(tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n")
        assert (await b.read_line()).startswith(b"* BYE")
        await b.expect_eof()
        await own.expect_eof()
        await a.send(b"n NOOP\r\n")
        tag = await hold(conn, b"NOOP")
        await conn.send(tag + b" OK done\r\n")
        assert (await a.read_response(b"n"))[-1].startswith(b"n OK")


async def test_a_mailbox_recreated_before_the_move_ends_the_session(env: Env) -> None:
    """The mailbox selected again has another UIDVALIDITY (it was deleted and
    created again): the session's UIDs mean nothing there, so it ends."""
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"u UID FETCH 1 (MODSEQ)\r\n")
        own = await dedicated_login(env.fake)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"INBOX"), (name, rest)
        await own.send(b"* 4 EXISTS\r\n* OK [UIDVALIDITY 8] ok\r\n" + tag + b" OK done\r\n")
        assert (await b.read_line()).startswith(b"* BYE")
        await b.expect_eof()


async def test_idle_then_enable_pipelined_moves_after_the_idle_ends(env: Env) -> None:
    """b idles (the shared connection IDLEs upstream for it), then ends its IDLE and
    pipelines ENABLE: the IDLE is answered first, the shared connection stops
    idling, and ENABLE goes on b's own connection."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await b.send(b"i IDLE\r\n")
        assert (await b.read_line()).startswith(b"+ ")
        idle = await hold(conn, b"IDLE")
        await conn.send(b"+ idling\r\n")
        await b.send(b"DONE\r\ne ENABLE CONDSTORE\r\n")
        assert await b.read_line() == b"i OK IDLE terminated\r\n"
        assert (await conn.read_line()) == b"DONE\r\n"
        await conn.send(idle + b" OK IDLE done\r\n")
        own = await to_dedicated(env.fake)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"ENABLE", b"CONDSTORE"), (name, rest)
        await own.send(b"* ENABLED CONDSTORE\r\n" + tag + b" OK enabled\r\n")
        reply = await b.read_response(b"e")
        assert reply == [
            *flag_lines((1, 2, 3, 4)),
            b"* ENABLED CONDSTORE\r\n",
            b"e OK enabled\r\n",
        ], reply
        # a is still served by the shared connection.
        await a.send(b"n NOOP\r\n")
        tag = await hold(conn, b"NOOP")
        await conn.send(tag + b" OK done\r\n")
        assert (await a.read_response(b"n"))[-1].startswith(b"n OK")


async def test_an_unknown_command_with_a_literal_moves_and_is_relayed_whole(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a = await env.client()
        await login(a, env.fake, caps=CAPS)
        b = await env.client()
        await b.send(b"L LOGIN user pass\r\n")
        assert (await b.read_line()).startswith(b"L OK")
        await b.send(b"x XFOO {3}\r\n")
        own = await dedicated_login(env.fake)
        line = await own.read_line()
        assert line.endswith(b" XFOO {3}\r\n"), line
        await own.send(b"+ go on\r\n")
        assert (await b.read_line()).startswith(b"+ ")
        await b.send(b"abc\r\n")
        assert await own.read_exact(5) == b"abc\r\n"
        await own.send(line.split(b" ")[0] + b" OK done\r\n")
        assert await b.read_line() == b"x OK done\r\n"


async def test_a_server_bye_ends_every_session_on_the_connection(env: Env) -> None:
    """The server says BYE and closes with a's command on the wire and b's NOOP
    waiting for its news: both get BYE; the user's next login gets a new connection."""
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        shared = env.shared()
        await a.send(b"f FETCH 1 (FLAGS)\r\n")
        await hold(conn, b"UID")
        await b.send(b"n NOOP\r\n")
        await until(lambda: shared.current is not None and bool(shared.current.noops))
        await conn.send(b"* BYE shutting down\r\n")
        await conn.aclose()
        assert (await a.read_line()).startswith(b"* BYE")
        assert (await b.read_line()).startswith(b"* BYE")
        await a.expect_eof()
        await b.expect_eof()
        await until(lambda: sessions(env) == 0)
        assert all_conns(env) == []
        c = await env.client()
        await login(c, env.fake, caps=CAPS)
        assert len(all_conns(env)) == 1


async def test_shutdown_ends_idling_sessions_and_logs_the_shared_connection_out(
    env: Env,
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await env.two_on_inbox()
        await b.send(b"i IDLE\r\n")
        assert (await b.read_line()).startswith(b"+ ")
        idle = await hold(conn, b"IDLE")
        await conn.send(b"+ idling\r\n")
        assert env.running is not None
        env.running.proxy.shutdown()
        assert (await a.read_line()).startswith(b"* BYE")
        assert (await b.read_line()).startswith(b"* BYE")
        # No session idles any more: the connection ends its IDLE, then logs out.
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(idle + b" OK IDLE done\r\n")
        await conn.answer_logout()


# -- rules ----------------------------------------------------------------------------


RULES = """
[[rule]]
name = "archive read-only"
when.mailbox = "INBOX"
readonly = true

[[rule]]
name = "no status"
when.command = "STATUS"
deny = "Not now"

[[rule]]
name = "names"
rewrite.mailbox = { "Sent Items" = "Sent" }
"""


@pytest.fixture
async def ruled(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    env = Env(nursery, tmp_path, proxy_tls)
    await nursery.start(env.fake.serve)
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "10-review.toml").write_text(RULES)
    env.running = await start_proxy(
        nursery,
        tmp_path / "proxy",
        proxy_tls,
        [env.fake.table(tmp_path)],
        multiplex=SHARING,
        rules={"dir": str(rules)},
    )
    yield env
    for client in env.clients:
        await client.aclose()
    await env.fake.aclose()


async def two_logged_in(env: Env) -> tuple[RawClient, RawClient, FakeConnection]:
    a = await env.client()
    conn = await login(a, env.fake, caps=CAPS)
    b = await env.client()
    await b.send(b"L LOGIN user pass\r\n")
    assert (await b.read_line()).startswith(b"L OK")
    return a, b, conn


async def test_rules_on_shared_sessions_readonly_deny_and_audit(
    ruled: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A readonly rule's EXAMINE is shared and kept on the move to a dedicated
    connection; a denied command leaves nothing in the lane; every command has
    exactly one audit line."""
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    with structlog.testing.capture_logs() as logs, trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await two_logged_in(ruled)
        await a.send(b"s SELECT INBOX\r\n")
        await finish_select(conn, await hold(conn, b"EXAMINE"), mode=b"READ-ONLY")
        assert (await a.read_response(b"s"))[-1].startswith(b"s OK [READ-ONLY]")
        await b.send(b"s SELECT INBOX\r\n")
        await answer_status(conn)
        assert (await b.read_response(b"s"))[-1].startswith(b"s OK [READ-ONLY]")
        assert len(ruled.shared().lanes) == 2
        denied = await b.command(b"t", b"STATUS INBOX (MESSAGES)")
        assert denied[-1].startswith(b"t NO"), denied
        stored = await b.command(b"w", b"STORE 1 +FLAGS (\\Seen)")
        assert stored[-1].startswith(b"w NO [NOPERM]"), stored
        await b.send(b"f FETCH 1 (FLAGS)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 1 (FLAGS)"), (name, rest)
        await conn.send(b"* 1 FETCH (UID 1 FLAGS ())\r\n" + tag + b" OK done\r\n")
        assert (await b.read_response(b"f"))[-1].startswith(b"f OK")
        await b.send(b"m FETCH 1 (MODSEQ)\r\n")
        own = await to_dedicated(ruled.fake, verb=b"EXAMINE")
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"FETCH", b"1 (MODSEQ)"), (name, rest)
        await own.send(b"* 1 FETCH (MODSEQ (4))\r\n" + tag + b" OK done\r\n")
        assert (await b.read_response(b"m"))[-1].startswith(b"m OK")
    tags = [entry["tag"] for entry in logs if entry.get("event") == "command"]
    assert sorted(tags) == ["f", "m", "s", "s", "t", "w"], tags


async def test_a_renamed_mailbox_is_joined_and_selected_again_by_its_server_name(
    ruled: Env,
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await two_logged_in(ruled)
        await a.send(b's SELECT "Sent Items"\r\n')
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"SELECT", b"Sent"), (name, rest)
        await finish_select(conn, tag)
        assert (await a.read_response(b"s"))[-1].startswith(b"s OK")
        await b.send(b's SELECT "Sent Items"\r\n')
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"STATUS", b"Sent (UIDNEXT)"), (name, rest)
        await conn.send(b"* STATUS Sent (UIDNEXT 5)\r\n" + tag + b" OK\r\n")
        assert (await b.read_response(b"s"))[-1].startswith(b"s OK")
        await b.send(b"e ENABLE CONDSTORE\r\n")
        own = await dedicated_login(ruled.fake)
        tag, name, rest = await own.read_command()
        assert (name, rest) == (b"SELECT", b"Sent"), (name, rest)


# -- lifecycle ------------------------------------------------------------------------


async def test_a_session_gone_mid_fetch_gets_nothing_more_queued(env: Env) -> None:
    size = 6 * 1024 * 1024  # past LANE_MEMORY: the lane would spool to disk
    with trio.fail_after(TEST_TIMEOUT):
        a, _b, conn = await env.two_on_inbox()
        shared = env.shared()
        before = set(shared.lanes)
        await a.send(b"f FETCH 1 (BODY[])\r\n")
        tag = await hold(conn, b"UID")
        await conn.send(b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % size + b"x" * 65536)
        assert (await a.read_line()).startswith(b"* 1 FETCH")
        a.close()
        await until(lambda: sessions(env) == 1)
        (gone,) = before - shared.lanes
        try:
            await conn.send(b"x" * (size - 65536) + b")\r\n" + tag + b" OK done\r\n")
            await until(lambda: shared.current is None)
            spooled = gone._spool_write if gone._spool is not None else 0
            assert spooled == 0, spooled
            assert not gone._queue, len(gone._queue)
        finally:
            if gone._spool is not None:  # the test's cleanup: nobody else closes it
                gone._spool.close()


async def test_a_login_beyond_the_users_connections_gets_one_of_its_own(
    nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls
) -> None:
    """max_sessions_per_connection 2, max_connections_per_user 1: a third session
    logs in upstream and keeps that connection to itself (not shared); once a
    shared session leaves, the next login joins the shared connection."""
    env = Env(nursery, tmp_path, proxy_tls)
    await nursery.start(env.fake.serve)
    env.running = await start_proxy(
        nursery,
        tmp_path / "proxy",
        proxy_tls,
        [env.fake.table(tmp_path)],
        multiplex={
            "enabled": True,
            "max_sessions_per_connection": 2,
            "max_connections_per_user": 1,
        },
    )
    try:
        with trio.fail_after(TEST_TIMEOUT):
            _a, b, _conn = await two_logged_in(env)
            c = await env.client()
            own = await login(c, env.fake, caps=CAPS)
            assert len(all_conns(env)) == 1
            assert len(env.shared().lanes) == 2
            await c.send(b"n NOOP\r\n")
            tag, name, _ = await own.read_command()
            assert name == b"NOOP"
            await own.send(tag + b" OK done\r\n")
            assert (await c.read_line()).startswith(b"n OK")
            await b.send(b"z LOGOUT\r\n")
            assert (await b.read_response(b"z"))[-1].startswith(b"z OK")
            await until(lambda: len(env.shared().lanes) == 1)
            d = await env.client()
            await d.send(b"L LOGIN user pass\r\n")
            assert (await d.read_line()).startswith(b"L OK")
            assert len(env.shared().lanes) == 2
            assert len(env.fake.connections) == 2
    finally:
        for client in env.clients:
            await client.aclose()
        await env.fake.aclose()


# -- results and answers on a shared connection ------------------------------------------


async def test_search_return_partial_keeps_its_results(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _a, b, conn = await env.two_on_inbox()
        await b.send(b"p SEARCH RETURN (PARTIAL 1:2) ALL\r\n")
        tag, name, rest = await conn.read_command()
        # PARTIAL's results are by position: relayed as the connection numbers
        # them (b's numbering is the connection's), not through UIDs.
        assert (name, rest) == (b"SEARCH", b"RETURN (PARTIAL 1:2) ALL"), (name, rest)
        await conn.send(b'* ESEARCH (TAG "%s") PARTIAL (1:2 1:2)\r\n%s OK\r\n' % (tag, tag))
        reply = await b.read_response(b"p")
        assert reply[0] == b'* ESEARCH (TAG "p") PARTIAL (1:2 1:2)\r\n', reply


async def test_a_joined_select_has_the_mailboxid(env: Env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        a, b, conn = await two_logged_in(env)
        await a.send(b"s SELECT INBOX\r\n")
        tag = await hold(conn, b"SELECT")
        await conn.send(b"* OK [MAILBOXID (F2212ea87)] Ok\r\n")
        await finish_select(conn, tag)
        direct = await a.read_response(b"s")
        assert b"* OK [MAILBOXID (F2212ea87)] Ok\r\n" in direct, direct
        await b.send(b"s SELECT INBOX\r\n")
        await answer_status(conn)
        joined = await b.read_response(b"s")
        assert any(b"[MAILBOXID (F2212ea87)]" in line for line in joined), joined


async def test_a_session_ended_while_moving_closes_its_new_connection(env: Env) -> None:
    with warnings.catch_warnings(record=True) as caught, trio.fail_after(TEST_TIMEOUT):
        warnings.simplefilter("always", ResourceWarning)
        _a, b, _conn = await env.two_on_inbox()
        await b.send(b"e ENABLE CONDSTORE\r\n")
        own = await dedicated_login(env.fake)
        await hold(own, b"SELECT")  # b's mailbox selected again: unanswered
        assert isinstance(own.stream, trio.SocketStream)
        port = own.stream.socket.getpeername()[1]  # the proxy's end
        assert env.running is not None
        env.running.proxy.shutdown()  # b's session is cancelled mid-move
        assert (await b.read_line()).startswith(b"* BYE")
        await until(lambda: sessions(env) == 0)
        gc.collect()
        unclosed = [
            str(w.message)
            for w in caught
            if issubclass(w.category, ResourceWarning) and f"'127.0.0.1', {port})" in str(w.message)
        ]
        assert not unclosed, unclosed
