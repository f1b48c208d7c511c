"""Regression tests for the review findings fixed in 7007f2f ("Review fixes").

Each test plays both ends on the wire, like tests/test_proxy_faults.py: a raw
client on the proxy's listener, and a :class:`FakeUpstream` scripted by the test.
Every test runs under ``trio.fail_after``; timeouts that a test exercises are
configured small. The numbers in the section titles are the findings'. Where
the scenario is time passing on the client's side (a slow upload, a chatty
client) the test sleeps, and says so; elsewhere it waits on events.

Two tests cover gaps the first fix opened in the watchdog and a later commit
closed: the proxy's own answers to a chatty client must not hide a stalled
server, and a client that stops in the middle of a literal is still timed out.

The section "Second review" covers the findings fixed in f4f8f78 (the login
gate, LOGOUT behind a long response, TLS close_notify while gathering, IDLE's
"+", a trusted upstream without ID, commands behind IDLE), and login attempts
abandoned while waiting their turn, which a later commit skips.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import re
import ssl
import struct
import termios
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from conftest import start_proxy
from fake_upstream import (
    DEFAULT_CAPS,
    FakeConnection,
    FakeUpstream,
    RawClient,
    caps_of,
    idling,
    login,
    plain_b64,
    relayed_noop,
)
from test_proxy_faults import Env

import imapproxy.config
from imapproxy.session import ClientSession
from imapproxy.testing.proxy import ProxyTls
from imapproxy.tlsstream import TlsStream, start_tls
from imapproxy.wire.commands import NoArgs

#: The whole test, whatever it does, ends within this many seconds.
TEST_TIMEOUT = 15


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    fake = FakeUpstream()
    await nursery.start(fake.serve)
    env = Env(nursery, tmp_path, proxy_tls, fake)
    yield env
    for client in env.clients:
        await client.aclose()
    await fake.aclose()


_ID_ITEM = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|NIL)', re.IGNORECASE)


def id_pairs(line: bytes) -> list[tuple[bytes | None, bytes | None]]:
    """The (key, value) pairs of an ID command line, in order ([] for ``ID NIL``);
    strings quoted or literal, NIL as None."""
    start = line.find(b"(")
    if start < 0:
        return []
    items: list[bytes | None] = []
    pos = start + 1
    while (match := _ID_ITEM.match(line, pos)) is not None:
        pos = match.end()
        if match.group(2) is not None:
            size = int(match.group(2))
            items.append(line[pos : pos + size])
            pos += size
        else:
            items.append(match.group(1))
    assert line[pos:].strip() == b")", line
    return list(zip(items[::2], items[1::2], strict=True))


async def expect_noop(client: RawClient, tag: bytes = b"n") -> None:
    """A NOOP before login, answered by the proxy itself."""
    assert await client.command(tag, b"NOOP") == [tag + b" OK NOOP completed\r\n"]


# -- 1. a failing session never takes the proxy down ----------------------------------


async def test_sasl_line_with_bare_lf_gets_bad(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"a AUTHENTICATE PLAIN\r\n")
        assert await client.read_line() == b"+ \r\n"
        await client.send(b"AGZvbwBiYXI=\n")  # a bare LF ends the SASL response
        line = await client.read_line()
        assert line.startswith(b"a BAD "), line
        # The connection goes on, and so does the proxy.
        await expect_noop(client)
        other = await env.client(proxy)
        await login(other, env.fake)
        assert len(env.fake.connections) == 1  # the first client never reached it


async def test_an_exception_in_a_session_ends_that_session_only(env, monkeypatch) -> None:
    def broken(self: ClientSession, command: object) -> None:
        raise RuntimeError("a bug in the session")

    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        bystander = await env.client(proxy)
        conn = await login(bystander, env.fake)
        monkeypatch.setattr(ClientSession, "_answer_id", broken)
        victim = await env.client(proxy)
        await victim.send(b"a ID NIL\r\n")
        assert await victim.read_to_eof() == b"* BYE Internal error, closing the connection\r\n"
        # The logged-in session is untouched ...
        await bystander.send(b"b NOOP\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag + b" OK NOOP completed\r\n")
        assert await bystander.read_line() == b"b OK NOOP completed\r\n"
        # ... and the proxy still takes new connections.
        await expect_noop(await env.client(proxy))


# -- 2. NUL octets in credentials and ID ---------------------------------------------


async def test_id_value_with_nul_is_dropped(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b'a ID ("name" {3+}\r\na\x00b)\r\n')
        response = await client.read_response(b"a")
        assert response[-1] == b"a OK ID completed\r\n"
        conn = await login(client, env.fake)
        id_line = next(line for line in conn.commands if line.split()[1] == b"ID")
        assert id_pairs(id_line) == []
        assert b"\0" not in conn.received


async def test_auth_login_password_with_nul_without_auth_plain(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"a AUTHENTICATE LOGIN\r\n")
        assert await client.read_line() == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
        await client.send(base64.b64encode(b"user") + b"\r\n")
        assert await client.read_line() == b"+ " + base64.b64encode(b"Password:") + b"\r\n"
        await client.send(base64.b64encode(b"pa\x00ss") + b"\r\n")
        conn = await env.fake.accept()
        await conn.greet("IMAP4rev1 ID")  # LOGIN only: it cannot carry a NUL
        tag, name, _ = await conn.read_command()
        assert name == b"ID"
        await conn.send(tag + b" OK ID completed\r\n")
        line = await client.read_line()
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED] "), line
        rest = await conn.read_to_eof()  # closed without a LOGIN
        assert b"LOGIN" not in rest
        assert b"\0" not in conn.received
        # The session continues; the client may try again.
        await expect_noop(client)
        conn = await login(client, env.fake, password="pass")


# -- 3. ID forwarding ---------------------------------------------------------------------


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_id_forwards_the_proxys_fields_first_and_standard_client_fields_only(
    env, trusted
) -> None:
    client_id = (
        b'("X-Originating-IP" "6.6.6.6" "NAME" "rawclient" "x-client-transport" "insecure" '
        b'"Version" "1.0" "x-multiplex" "1" "x-foo" "bar" "unknown-key" "v" "os" "linux" '
        b'"' + b"k" * 31 + b'" "long key")'
    )
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"trusted": trusted})
        client = await env.client(proxy)
        response = await client.command(b"i", b"ID " + client_id)
        assert response[-1] == b"i OK ID completed\r\n"
        conn = await login(client, env.fake)
        assert [line.split()[1] for line in conn.commands[:2]] == [b"ID", b"AUTHENTICATE"]
        pairs = id_pairs(conn.commands[0])
        proxys = [
            (b"x-originating-ip", b"127.0.0.1"),
            (b"x-originating-port", str(client.local_port).encode()),
        ]
        clients = [(b"name", b"rawclient"), (b"version", b"1.0"), (b"os", b"linux")]
        assert pairs == (proxys if trusted else []) + clients
        for dropped in (b"6.6.6.6", b"insecure", b"x-multiplex", b"x-foo", b"unknown", b"kkk"):
            assert dropped not in conn.commands[0]


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_id_is_capped_at_30_pairs(env, trusted) -> None:
    fields = b" ".join(b'"name" "n%d"' % i for i in range(40))
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"trusted": trusted})
        client = await env.client(proxy)
        assert (await client.command(b"i", b"ID (" + fields + b")"))[-1].startswith(b"i OK ")
        conn = await login(client, env.fake)
        pairs = id_pairs(conn.commands[0])
        assert len(pairs) == 30
        assert pairs[-1] == (b"name", b"n%d" % (27 if trusted else 29))


async def test_id_value_over_1024_octets_is_dropped(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        fields = b'("name" "' + b"v" * 1025 + b'" "os" "' + b"o" * 1024 + b'")'
        assert (await client.command(b"i", b"ID " + fields))[-1].startswith(b"i OK ")
        conn = await login(client, env.fake)
        assert id_pairs(conn.commands[0]) == [(b"os", b"o" * 1024)]


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_upstream_refusing_id(env, trusted) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        # upstream_response 1 s: a proxy that went on to log in would give up soon.
        proxy = await env.proxy(upstream={"trusted": trusted}, timeouts={"upstream_response": 1})
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.greet()
        tag, name, _ = await conn.read_command()
        assert name == b"ID"
        await conn.send(tag + b" BAD Unknown ID field\r\n")
        if trusted:
            # Without the client's address the server would log in the proxy's:
            # no credentials go, the login fails closed.
            line = await client.read_line()
            assert line.startswith(b"L NO [UNAVAILABLE] "), line
            rest = await conn.read_to_eof()
            assert b"AUTHENTICATE" not in rest
            assert b"LOGIN" not in rest
            assert b"pass" not in conn.received
            await expect_noop(client)
        else:
            received = await conn.login(greet=False)
            assert received[-1].split()[1] == b"AUTHENTICATE"
            assert (await client.read_line()).startswith(b"L OK ")


# -- 4. the session's own output while a streamed literal is relayed -----------------


async def test_local_answers_wait_for_the_end_of_a_streamed_literal(env) -> None:
    size = 200_000
    body = bytes(i % 251 for i in range(size))  # no CRLF-looking runs
    head = b"* 1 FETCH (BODY[] {%d}\r\n" % size
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a FETCH 1 BODY[]\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"FETCH"
        await conn.send(head + body[:100_000])
        # The client is inside the literal ...
        assert await client.read_line() == head
        first = await client.read_exact(50_000)
        # ... when it pipelines commands the proxy answers itself (and a NOOP that
        # goes upstream: once the fake has it, the two before it were handled).
        await client.send(b"b CAPABILITY\r\nc XFOO bad (((\r\nd NOOP\r\n")
        tag2, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(body[100_000:] + b")\r\n" + tag + b" OK FETCH done\r\n")
        assert first + await client.read_exact(size - 50_000) == body
        assert await client.read_line() == b")\r\n"  # the FETCH response ends first
        await conn.send(tag2 + b" OK NOOP done\r\n")
        after = await client.read_response(b"d")
        assert after[-1] == b"d OK NOOP done\r\n"
        assert [line[:5] for line in after] == [
            b"* CAP",
            b"b OK ",
            b"c BAD",
            b"a OK ",
            b"d OK ",
        ], after


# -- 5. the watchdog times the server, not a slow client ------------------------------


@pytest.mark.parametrize("server", ["answers", "stalls"])
async def test_slow_append_upload_is_not_a_stalled_server(env, server) -> None:
    limit = 0.5
    chunk, chunks = 20_000, 5
    size = chunk * chunks
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        await client.send(b"a APPEND INBOX {%d}\r\n" % size)
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"INBOX {%d}" % size)
        await conn.send(b"+ go ahead\r\n")
        assert (await client.read_line()).startswith(b"+ ")
        start = trio.current_time()
        for i in range(chunks):
            if i:
                # A slow client is a matter of time passing while the proxy
                # waits for it; there is no event to wait for instead. Each gap
                # is under the limit, the upload as a whole well over it.
                await trio.sleep(0.6 * limit)
            await client.send(b"m" * chunk)
            assert await conn.read_exact(chunk) == b"m" * chunk  # relayed as it came
        await client.send(b"\r\n")
        assert await conn.read_line() == b"\r\n"
        assert trio.current_time() - start > 2 * limit
        if server == "answers":
            await conn.send(tag + b" OK [APPENDUID 1 9] APPEND completed\r\n")
            assert await client.read_line() == b"a OK [APPENDUID 1 9] APPEND completed\r\n"
            await relayed_noop(client, conn, b"b")
            assert b"BYE" not in client.received
        else:
            # The command is all on the wire now: the server owes the answer.
            sent = trio.current_time()
            assert await client.read_to_eof() == b"* BYE Mail server not responding\r\n"
            assert trio.current_time() - sent >= limit
            await conn.read_to_eof()


async def test_stalled_server_while_the_client_gets_local_answers(env) -> None:
    limit = 0.5
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        await client.send(b"a NOOP\r\n")
        assert (await conn.read_command())[1] == b"NOOP"
        # The fake says nothing; the client asks the proxy for CAPABILITY more
        # often than upstream_response (time passing is the scenario: sleeps).
        line = b""
        for i in range(8):
            await trio.sleep(0.6 * limit)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await client.send(b"c%d CAPABILITY\r\n" % i)
            line = await client.read_line()
            if line.startswith(b"* BYE "):
                break
            assert (await client.read_line()).startswith(b"c%d OK " % i)
        assert line == b"* BYE Mail server not responding\r\n"


async def test_client_stalled_mid_literal_is_timed_out(env, monkeypatch) -> None:
    idle = 0.5
    monkeypatch.setattr(imapproxy.config, "MIN_IDLE_TIMEOUT", idle)  # 60 s otherwise
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": idle, "idle": idle})
        await client.send(b"a APPEND INBOX {100000}\r\n")
        assert (await conn.read_command())[1] == b"APPEND"
        await conn.send(b"+ go ahead\r\n")
        assert (await client.read_line()).startswith(b"+ ")
        await client.send(b"m" * 10)  # ... and nothing more
        rest = b""
        with trio.move_on_after(4 * idle):
            rest = await client.read_to_eof()
        assert rest.startswith(b"* BYE "), rest


# -- 6. IDLE ended by the server ---------------------------------------------------------


@pytest.mark.parametrize("refused", [False, True], ids=["ended", "refused"])
async def test_idle_ended_by_the_server(env, refused) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a IDLE\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"IDLE"
        if refused:  # a tagged answer instead of "+"
            ending = b" NO IDLE not now\r\n"
        else:
            ending = b" OK IDLE terminated (server timeout)\r\n"
            await conn.send(b"+ idling\r\n")
            assert await client.read_line() == b"+ idling\r\n"
        await conn.send(tag + ending)
        assert await client.read_line() == b"a" + ending
        # Without DONE, the client's next line is a command.
        await relayed_noop(client, conn, b"b")


async def test_done_crossing_the_servers_ok_is_ignored(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        tag = await idling(client, conn)
        await conn.send(tag + b" OK IDLE terminated\r\n")
        # The client said DONE as the server's OK went by (here: the proxy has
        # relayed the OK when the DONE arrives).
        await client.send(b"DONE\r\n")
        assert await client.read_line() == b"a OK IDLE terminated\r\n"
        await client.send(b"b NOOP\r\n")
        tag2, name, _ = await conn.read_command()
        assert name == b"NOOP"  # no DONE went upstream
        await conn.send(tag2 + b" OK NOOP completed\r\n")
        assert await client.read_line() == b"b OK NOOP completed\r\n"  # and no BAD for it
        assert b"DONE" not in conn.received


# -- 7. an ID before STARTTLS is forgotten ---------------------------------------------


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
async def test_id_before_starttls_is_not_forwarded(env, trusted) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"trusted": trusted})
        client = await RawClient.connect(proxy.starttls_port, None)
        env.clients.append(client)
        await client.send(b'x ID ("name" "injected-in-plaintext")\r\ns STARTTLS\r\n')
        assert (await client.read_response(b"x"))[-1] == b"x OK ID completed\r\n"
        assert (await client.read_line()).startswith(b"s OK ")
        tls = trio.SSLStream(client.stream, proxy.ssl_context(), server_hostname="localhost")
        await tls.do_handshake()
        client.stream = tls
        conn = await login(client, env.fake)
        assert b"injected" not in conn.received
        assert [key for key, _ in id_pairs(conn.commands[0])] == (
            [b"x-originating-ip", b"x-originating-port"] if trusted else []
        )


# -- 8. user names are capped at 255 octets --------------------------------------------


@pytest.mark.parametrize("how", ["login", "authenticate"])
async def test_user_name_over_255_octets_is_refused_locally(env, how) -> None:
    user = "u" * 300
    # upstream_response 1 s: a proxy that contacted the (silent) fake would answer
    # UNAVAILABLE soon.
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(timeouts={"upstream_response": 1, "upstream_connect": 1})
        client = await env.client(proxy)
        if how == "login":
            await client.send(b"a LOGIN " + user.encode() + b" pass\r\n")
        else:
            await client.send(b"a AUTHENTICATE PLAIN " + plain_b64(user, "pass") + b"\r\n")
        line = await client.read_line()
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED] "), line
        assert env.fake.connections == []
        await expect_noop(client)


async def test_user_name_of_255_octets_is_accepted(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client = await env.client(await env.proxy())
        conn = await login(client, env.fake, user="u" * 255)
        assert plain_b64("u" * 255, "pass") in conn.received


# -- 10. upstream_connect covers TCP, TLS and the greeting ------------------------------


@pytest.mark.parametrize("tls", ["none", "implicit"], ids=["no-greeting", "no-tls-handshake"])
async def test_silent_upstream_is_unavailable_within_upstream_connect(env, tls) -> None:
    connect = 0.5
    fake = FakeUpstream(tls=tls)  # accepts TCP, then says nothing
    await env.nursery.start(fake.serve)
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await start_proxy(
            env.nursery,
            env.tmp_path / "proxy",
            env.proxy_tls,
            [fake.table(env.tmp_path)],
            timeouts={"upstream_connect": connect, "upstream_response": 5},
        )
        client = await env.client(proxy)
        start = trio.current_time()
        await client.send(b"L LOGIN user pass\r\n")
        conn = await fake.accept()
        line = await client.read_line()
        elapsed = trio.current_time() - start
        assert line.startswith(b"L NO [UNAVAILABLE] "), line
        assert connect <= elapsed < 3 * connect
        await conn.read_to_eof()  # the proxy gave up on it
        await expect_noop(client)  # a NO, not a BYE: the session goes on


# -- 11. the proxy's own commands do not swallow mailbox updates -----------------------


async def test_updates_during_the_proxys_own_command_reach_the_client(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        conn = await login(client, env.fake)
        (session,) = proxy.proxy.sessions
        upstream = session.upstream
        assert upstream is not None
        results: dict[str, list[bytes]] = {}

        async def own(name: str) -> None:
            request = await upstream.command(name, NoArgs())
            results[name] = [response.frame.raw for response in request.untagged]

        env.nursery.start_soon(own, "NOOP")
        tag, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(b"* 3 EXPUNGE\r\n* 7 EXISTS\r\n" + tag + b" OK NOOP completed\r\n")

        env.nursery.start_soon(own, "CAPABILITY")
        tag, name, _ = await conn.read_command()
        assert name == b"CAPABILITY"
        await conn.send(b"* CAPABILITY IMAP4rev1 XSECRET\r\n" + tag + b" OK done\r\n")

        await client.send(b"z NOOP\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag + b" OK NOOP completed\r\n")
        assert await client.read_response(b"z") == [
            b"* 3 EXPUNGE\r\n",
            b"* 7 EXISTS\r\n",
            b"z OK NOOP completed\r\n",
        ]
        # The answer to the proxy's own CAPABILITY is the proxy's, not the client's.
        assert results["CAPABILITY"] == [b"* CAPABILITY IMAP4rev1 XSECRET\r\n"]
        assert b"XSECRET" not in client.received


# -- 12. APPENDLIMIT is clamped to max_literal --------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "shown"),
    [("99999999999", "1000000"), ("5000", "5000")],
    ids=["clamped", "lower"],
)
async def test_appendlimit_is_clamped_to_max_literal(env, upstream, shown) -> None:
    caps = DEFAULT_CAPS + " APPENDLIMIT=" + upstream
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(limits={"max_literal": 1_000_000})
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.login(caps=caps)
        ok = await client.read_line()
        assert ok.startswith(b"L OK [CAPABILITY "), ok
        assert f"APPENDLIMIT={shown}" in caps_of(ok)
        lines = await client.command(b"c", b"CAPABILITY")
        appendlimits = [cap for cap in caps_of(lines[0]) if cap.startswith("APPENDLIMIT")]
        assert appendlimits == [f"APPENDLIMIT={shown}"]


# -- 13. the proxy's own LOGIN uses synchronizing literals ----------------------------


async def test_proxys_login_literal_is_synchronizing_despite_literal_plus(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"L LOGIN user {5+}\r\np\xc3\xa4ss\r\n")
        conn = await env.fake.accept()
        received = await conn.login(caps="IMAP4rev1 LITERAL+ ID")  # no AUTH=PLAIN
        assert (await client.read_line()).startswith(b"L OK ")
        assert re.match(rb"^P\d+ LOGIN user \{5\}\r\np\xc3\xa4ss\r\n\Z", received[-1])
        assert b"+}" not in conn.received


# -- 14. an early-forwarded command whose end does not parse --------------------------


@pytest.mark.parametrize("size", [5, 100_000], ids=["inline", "streamed"])
async def test_early_forwarded_command_with_a_bad_end(env, size) -> None:
    data = b"d" * size
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a APPEND INBOX {%d}\r\n" % size)
        _, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"INBOX {%d}" % size)
        await conn.send(b"+ go ahead\r\n")
        assert (await client.read_line()).startswith(b"+ ")
        await client.send(data + b" (((\r\n")
        line = await client.read_line()
        assert line.startswith(b"a BAD "), line
        assert await client.read_to_eof() == b"* BYE Command aborted; closing the connection\r\n"
        relayed = await conn.read_to_eof()  # the upstream connection is closed
        assert b"(((" not in relayed
        assert data.startswith(relayed)  # at most the literal, never the garbage


# == Second review ======================================================================
#
# Regression tests for the findings fixed in f4f8f78 ("Second review: ..."); the
# numbers are the findings'.


class AuthServer:
    """The fake playing the server for every connection the proxy opens, accepted
    as they come (each in its own task): greeting, ID, then AUTHENTICATE PLAIN
    (SASL-IR) -- OK for the password ``pass``, else NO followed by the LOGOUT.

    Authentications in progress are counted per user (:attr:`active`, their
    maximum in :attr:`peak`). The answers for the users in ``held`` wait for
    :attr:`release`, then ``hold`` seconds: a server taking its time to check a
    password, so that attempts the proxy let through in parallel overlap here."""

    def __init__(self, fake: FakeUpstream, *, held: tuple[str, ...] = (), hold: float = 0.0):
        self.fake = fake
        self.held = held
        self.hold = hold
        self.release = trio.Event()
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.attempts: list[tuple[str, str]] = []
        self.started: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.refused: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    conn = await self.fake.accept()
                except trio.TooSlowError:
                    continue  # no new connection for a while: keep listening
                nursery.start_soon(self._one, conn)

    async def _one(self, conn: FakeConnection) -> None:
        await conn.greet()
        tag, name, rest = await conn.read_command()
        assert name == b"ID", conn.commands
        await conn.send(tag + b" OK ID completed\r\n")
        tag, name, rest = await conn.read_command()
        assert name == b"AUTHENTICATE", conn.commands
        _, user_bytes, password_bytes = base64.b64decode(rest.split()[-1]).split(b"\0")
        user, password = user_bytes.decode(), password_bytes.decode()
        self.attempts.append((user, password))
        self.active[user] += 1
        self.peak[user] = max(self.peak[user], self.active[user])
        self.started[user].set()
        if user in self.held:
            await self.release.wait()
            await trio.sleep(self.hold)  # the server checking the password
        self.active[user] -= 1
        if password == "pass":
            await conn.send(tag + b" OK [CAPABILITY " + DEFAULT_CAPS.encode() + b"] Logged in\r\n")
            return
        await conn.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        self.refused[user].set()
        await conn.answer_logout()


# -- 1/2. one login attempt at a time per (user, client IP) ---------------------------


async def test_parallel_logins_for_one_user_and_ip_are_tried_one_at_a_time(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        server = AuthServer(env.fake, held=("user",), hold=0.1)
        env.nursery.start_soon(server.serve)
        proxy = await env.proxy()
        guessers = [await env.client(proxy) for _ in range(3)]
        other = await env.client(proxy)  # another user from the same address
        for client in guessers:  # at once: three writes, no read in between
            await client.send(b"L LOGIN user wrong\r\n")
        await server.started["user"].wait()
        # While the server checks one of user's passwords, the other user's login
        # is not held back.
        await other.send(b"L LOGIN other pass\r\n")
        line = await other.read_line()
        assert line.startswith(b"L OK "), line
        assert server.active["user"] >= 1
        server.release.set()
        for client in guessers:
            line = await client.read_line()
            assert line.startswith(b"L NO [AUTHENTICATIONFAILED] "), line
        assert server.attempts.count(("user", "wrong")) == 3
        assert server.peak["user"] == 1  # never two of user's at the server at once
        assert server.peak["other"] == 1


async def test_abandoned_login_attempts_do_not_delay_a_later_login(env) -> None:
    delay = 0.3
    with trio.fail_after(TEST_TIMEOUT):
        server = AuthServer(env.fake)
        env.nursery.start_soon(server.serve)
        proxy = await env.proxy(
            limits={"login_failure_delay": delay, "login_failure_max_delay": delay}
        )
        first = await env.client(proxy)
        abandoning = [await env.client(proxy) for _ in range(4)]
        late = await env.client(proxy)
        await first.send(b"L LOGIN user wrong\r\n")
        await server.refused["user"].wait()  # the proxy delays this NO by `delay`
        for client in abandoning:  # wait their turn, and go away
            await client.send(b"L LOGIN user wrong\r\n")
            await client.aclose()
        # Once every task is blocked, the proxy has read those LOGINs: they are
        # ahead of the late one.
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await late.send(b"L LOGIN user pass\r\n")
        line = await late.read_line()
        elapsed = trio.current_time() - start
        assert line.startswith(b"L OK "), line
        assert (await first.read_line()).startswith(b"L NO [AUTHENTICATIONFAILED] ")
        # At most the failure delay (plus a few round trips on the loopback).
        assert elapsed < delay + 0.15, (elapsed, server.attempts)


# -- 3. LOGOUT waits for a long but healthy response ------------------------------------


async def test_logout_pipelined_behind_a_long_steady_fetch(env) -> None:
    limit = 0.5
    size, pieces = 200_000, 10
    piece = size // pieces
    body = bytes(i % 251 for i in range(size))
    head = b"* 1 FETCH (BODY[] {%d}\r\n" % size
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        received: list[bytes] = []

        async def read_all() -> None:
            received.append(await client.read_to_eof())

        await client.send(b"a FETCH 1 BODY[]\r\nb LOGOUT\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"FETCH"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            # (A proxy that gave up on the FETCH closes this connection: the
            # client's bytes below tell.)
            with contextlib.suppress(trio.BrokenResourceError):
                await conn.send(head)
                for i in range(pieces):
                    # A healthy server streaming a large body: it takes twice
                    # upstream_response in all, never silent for long (time
                    # passing on the server's side is the scenario).
                    await trio.sleep(0.1)
                    await conn.send(body[i * piece : (i + 1) * piece])
                await conn.send(b")\r\n" + tag + b" OK FETCH completed\r\n")
                await conn.answer_logout()  # the proxy's own, after the client's
        (data,) = received
        end = b")\r\na OK FETCH completed\r\n* BYE Logging out\r\nb OK Logout completed\r\n"
        assert data.endswith(end), (len(data), data[-120:])
        assert data == head + body + end
        assert [line.split()[1] for line in conn.commands[-2:]] == [b"FETCH", b"LOGOUT"]


# -- 4. TLS: close_notify met while gathering records ------------------------------------


async def _tls_pair_with_early_close(payload: bytes) -> tuple[TlsStream, trio.SocketStream]:
    """A :class:`TlsStream` (server side) whose peer sent ``payload`` then
    close_notify in one TCP write, and keeps the TCP connection open; returns it
    once all of that has arrived, with the peer's TCP stream (to close later)."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        peer = await trio.open_tcp_stream("127.0.0.1", port)
        accepted = await listener.accept()
    # The peer: stdlib TLS over memory buffers, so that it controls its writes.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    tls: TlsStream | None = None

    async def serve() -> None:
        nonlocal tls
        stream = await start_tls(accepted, server_ctx, server_side=True)
        assert isinstance(stream, TlsStream)
        tls = stream

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    await peer.send_all(outgoing.read())
                incoming.write(await peer.receive_some(65536))
        await peer.send_all(outgoing.read())  # the client's Finished
    assert tls is not None
    obj.write(payload)
    with contextlib.suppress(ssl.SSLWantReadError):  # it would wait for ours
        obj.unwrap()  # close_notify
    wire = outgoing.read()
    await peer.send_all(wire)  # one write: a single segment on the loopback
    await trio.lowlevel.wait_readable(tls.socket)
    # The data and the close_notify are both there before the first read.
    (queued,) = struct.unpack("i", fcntl.ioctl(tls.socket.fileno(), termios.FIONREAD, b"\0" * 4))
    assert queued == len(wire)
    return tls, peer


@pytest.mark.parametrize("size", [10_000, 100], ids=["gathered", "single-record"])
async def test_tls_data_then_close_notify_with_tcp_open_ends_the_stream(size) -> None:
    payload = bytes(i % 251 for i in range(size))
    with trio.fail_after(TEST_TIMEOUT):
        tls, peer = await _tls_pair_with_early_close(payload)
        try:
            # A read that waited for more bytes would wait for good: the peer
            # keeps the TCP connection open and sends nothing more.
            with trio.fail_after(2):
                data = b""
                while len(data) < size:
                    chunk = await tls.receive_some()
                    assert chunk, data
                    data += chunk
                assert data == payload
                assert await tls.receive_some() == b""
        finally:
            await tls.aclose()
            await peer.aclose()


# -- 5. IDLE: the server owes its "+" ----------------------------------------------------


async def test_idle_without_continuation_is_a_silent_server(env) -> None:
    limit = 0.5
    with trio.fail_after(TEST_TIMEOUT):
        # idle stays at its default (30 min): only upstream_response can end this.
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        await client.send(b"a IDLE\r\n")
        assert (await conn.read_command())[1] == b"IDLE"
        sent = trio.current_time()  # ... and the fake says nothing
        rest = b""
        with trio.move_on_after(4 * limit):
            rest = await client.read_to_eof()
        assert rest == b"* BYE Mail server not responding\r\n"
        assert trio.current_time() - sent >= limit
        await conn.read_to_eof()


# -- 7. a trusted upstream without ID --------------------------------------------------------


async def test_trusted_upstream_without_id_fails_the_login_closed(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        # upstream_response 1 s: a proxy that sent the credentials would give up soon.
        proxy = await env.proxy(upstream={"trusted": True}, timeouts={"upstream_response": 1})
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.greet("IMAP4rev1 SASL-IR AUTH=PLAIN IDLE")  # no ID
        line = await client.read_line()
        assert line.startswith(b"L NO [UNAVAILABLE] "), line
        rest = await conn.read_to_eof()  # closed without a login
        assert b"AUTHENTICATE" not in rest
        assert b"LOGIN" not in rest
        assert b"pass" not in conn.received
        assert plain_b64("user", "pass") not in conn.received
        await expect_noop(client)


# -- 8/9. a command behind IDLE, or instead of DONE ------------------------------------------


async def test_command_pipelined_behind_idle_ends_it(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a IDLE\r\nb NOOP\r\n")  # one write: the NOOP does not wait for "+"
        tag, name, _ = await conn.read_command()
        assert name == b"IDLE"
        await conn.send(b"+ idling\r\n")
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(tag + b" OK IDLE terminated\r\n")
        tag2, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag2 + b" OK NOOP completed\r\n")
        lines = await client.read_response(b"b")
        assert b"a OK IDLE terminated\r\n" in lines, lines
        assert lines[-1] == b"b OK NOOP completed\r\n"
        assert not any(b" BAD " in line for line in lines), lines


async def test_command_sent_instead_of_done_ends_the_idle(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        tag = await idling(client, conn)
        await client.send(b"b NOOP\r\n")  # instead of DONE
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(tag + b" OK IDLE terminated\r\n")
        tag2, name, _ = await conn.read_command()
        assert name == b"NOOP"
        await conn.send(tag2 + b" OK NOOP completed\r\n")
        assert await client.read_response(b"b") == [
            b"a OK IDLE terminated\r\n",
            b"b OK NOOP completed\r\n",
        ]
