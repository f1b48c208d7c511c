"""The proxy against a scripted upstream: faults and protocol edges (issue #3).

Each test runs imapproxy in its nursery in front of a :class:`FakeUpstream`
(tests/fake_upstream.py) and plays both ends on the wire: a raw client on the
proxy's implicit-TLS listener, and the fake server's script. Assertions are on
the bytes each end sees. Timeouts that the tests exercise are configured small
(``upstream_response``); nothing sleeps to wait for an event.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import RunningProxy, start_proxy
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

from imapproxy.testing.proxy import ProxyTls

#: The whole test, whatever it does, ends within this many seconds.
TEST_TIMEOUT = 20

UPSTREAM_TAG = re.compile(rb"^P\d+$")


class Env:
    """What a test needs: the fake upstream, and proxies and clients that the
    test's teardown closes."""

    def __init__(
        self, nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls, fake: FakeUpstream
    ) -> None:
        self.nursery = nursery
        self.tmp_path = tmp_path
        self.proxy_tls = proxy_tls
        self.fake = fake
        self.clients: list[RawClient] = []

    async def proxy(
        self, *, upstream: dict[str, Any] | None = None, **options: Any
    ) -> RunningProxy:
        """imapproxy in front of the fake (upstream_response 5 s unless given)."""
        timeouts = {"upstream_response": 5, **options.pop("timeouts", {})}
        table = self.fake.table(self.tmp_path, **(upstream or {}))
        return await start_proxy(
            self.nursery,
            self.tmp_path / "proxy",
            self.proxy_tls,
            [table],
            timeouts=timeouts,
            **options,
        )

    def rules(self, text: str) -> dict[str, str]:
        """A ``[rules]`` table whose directory holds one file with ``text``."""
        directory = self.tmp_path / "rules.d"
        directory.mkdir()
        (directory / "rules.toml").write_text(text)
        return {"dir": str(directory)}

    async def client(self, proxy: RunningProxy, *, greeting: bool = True) -> RawClient:
        client = await RawClient.connect(
            proxy.implicit_port, proxy.ssl_context(), greeting=greeting
        )
        self.clients.append(client)
        return client

    def send_soon(self, client: RawClient, data: bytes) -> trio.Event:
        """Send ``data`` from another task (the proxy may read it only later);
        the event is set once it is all sent."""
        sent = trio.Event()

        async def send() -> None:
            await client.send(data)
            sent.set()

        self.nursery.start_soon(send)
        return sent

    async def logged_in(
        self, caps: str = DEFAULT_CAPS, **options: Any
    ) -> tuple[RawClient, FakeConnection]:
        """A proxy, a client on it, logged in with the fake playing the server."""
        client = await self.client(await self.proxy(**options))
        conn = await login(client, self.fake, caps=caps)
        return client, conn


@pytest.fixture
async def env(nursery: trio.Nursery, tmp_path: Path, proxy_tls: ProxyTls) -> AsyncIterator[Env]:
    fake = FakeUpstream()
    await nursery.start(fake.serve)
    env = Env(nursery, tmp_path, proxy_tls, fake)
    yield env
    for client in env.clients:
        await client.aclose()
    await fake.aclose()


# -- 1. literals go upstream synchronizing ------------------------------------------


async def test_nonsync_literal_goes_upstream_synchronizing(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a APPEND INBOX {5+}\r\nhello\r\n")
        tag, name, rest = await conn.read_command()
        assert UPSTREAM_TAG.match(tag)
        assert (name, rest) == (b"APPEND", b"INBOX {5}")
        # An untagged response before the "+" is relayed; the "+" is not.
        await conn.send(b"* 5 EXISTS\r\n+ go ahead\r\n")
        assert await conn.read_exact(7) == b"hello\r\n"
        await conn.send(tag + b" OK [APPENDUID 1 7] APPEND completed\r\n")
        assert await client.read_response(b"a") == [
            b"* 5 EXISTS\r\n",
            b"a OK [APPENDUID 1 7] APPEND completed\r\n",
        ]


async def test_every_literal_of_a_command_waits_for_the_server(env) -> None:
    caps = DEFAULT_CAPS + " MULTIAPPEND"
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(caps)
        # MULTIAPPEND: two literals, both non-synchronizing from the client.
        await client.send(b"a APPEND INBOX {5+}\r\nhello (\\Seen) {3+}\r\nbye\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"INBOX {5}")
        await conn.send(b"+ first\r\n")
        assert await conn.read_line() == b"hello (\\Seen) {3}\r\n"
        await conn.send(b"+ second\r\n")
        assert await conn.read_line() == b"bye\r\n"
        await conn.send(tag + b" OK APPEND completed\r\n")
        assert await client.read_line() == b"a OK APPEND completed\r\n"
        # An 8-bit search string as a literal.
        await client.send(b"b SEARCH CHARSET UTF-8 TEXT {4+}\r\nt\xc3\xa4t\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"SEARCH", b"CHARSET UTF-8 TEXT {4}")
        await conn.send(b"+ \r\n")
        assert await conn.read_line() == b"t\xc3\xa4t\r\n"
        await conn.send(b"* SEARCH 2 3\r\n" + tag + b" OK SEARCH completed\r\n")
        assert await client.read_response(b"b") == [
            b"* SEARCH 2 3\r\n",
            b"b OK SEARCH completed\r\n",
        ]
        assert b"+}" not in conn.received


async def test_unknown_extension_command_is_relayed_intact(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a XFOO bar (baz) {3+}\r\nabc {2+}\r\nde\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"XFOO", b"bar (baz) {3}")
        await conn.send(b"+ \r\n")
        assert await conn.read_line() == b"abc {2}\r\n"
        await conn.send(b"+ \r\n")
        assert await conn.read_line() == b"de\r\n"
        await conn.send(b"* XFOO result (1 2)\r\n" + tag + b" OK XFOO done\r\n")
        assert await client.read_response(b"a") == [
            b"* XFOO result (1 2)\r\n",
            b"a OK XFOO done\r\n",
        ]
        # Without literals, byte for byte.
        await client.send(b"b XBAR  odd   spacing\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"XBAR", b" odd   spacing")
        await conn.send(tag + b" NO [CANNOT] no\r\n")
        assert await client.read_line() == b"b NO [CANNOT] no\r\n"


# -- 2. the server refuses a literal ----------------------------------------------------


async def test_refused_synchronizing_literal(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a APPEND Nope {5}\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"Nope {5}")
        await conn.send(tag + b" NO [TRYCREATE] No such mailbox\r\n")
        # The client waited for "+" and gets the refusal instead.
        assert await client.read_line() == b"a NO [TRYCREATE] No such mailbox\r\n"
        await relayed_noop(client, conn, b"b")


async def test_refused_literal_with_commands_pipelined_behind(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(
            b"a APPEND Nope {11+}\r\nb NOOP\r\nxyz\r\n"
            b"c NOOP\r\n"
            b"d APPEND Nope (\\Seen) {1+}\r\n.\r\n"
        )
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"Nope {11}")
        await conn.send(tag + b" NO [TRYCREATE] No such mailbox\r\n")
        # The literal's data ("b NOOP ...") is never taken for a command.
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"NOOP", b"")
        await conn.send(tag + b" OK NOOP completed\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"Nope (\\Seen) {1}")
        await conn.send(tag + b" NO [OVERQUOTA] Quota exceeded\r\n")
        assert [await client.read_line() for _ in range(3)] == [
            b"a NO [TRYCREATE] No such mailbox\r\n",
            b"c OK NOOP completed\r\n",
            b"d NO [OVERQUOTA] Quota exceeded\r\n",
        ]
        await relayed_noop(client, conn, b"e")


@pytest.mark.parametrize("size", [5, 200_000], ids=["inline", "streamed"])
async def test_refused_literal_is_drained(env, size) -> None:
    data = b"x" * (size - 5) + b"hello"
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        before = len(conn.received)
        # Sent by another task: the proxy reads no more than it relays.
        sent = env.send_soon(client, b"a APPEND Nope {%d+}\r\n" % size + data + b"\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"Nope {%d}" % size)
        await conn.send(tag + b" NO [TRYCREATE] No such mailbox\r\n")
        assert await client.read_line() == b"a NO [TRYCREATE] No such mailbox\r\n"
        await sent.wait()
        # The literal was drained: the next command works, and the fake got
        # nothing of the message.
        await relayed_noop(client, conn, b"b")
        after = bytes(conn.received[before:])
        append = tag + b" APPEND Nope {%d}\r\n" % size
        assert after.startswith(append)
        assert re.fullmatch(rb"\S+ NOOP\r\n", after[len(append) :])


# -- 3. greetings the proxy cannot use ------------------------------------------------


@pytest.mark.parametrize(
    "greeting",
    [
        b"* PREAUTH [CAPABILITY IMAP4rev1] already logged in\r\n",
        b"* BYE Too many connections\r\n",
        b"HTTP/1.1 400 Bad Request\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n",
    ],
    ids=["preauth", "bye", "http", "binary"],
)
async def test_unusable_greeting(env, greeting) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"a LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.send(greeting)
        line = await client.read_line()
        assert line.startswith(b"a NO [UNAVAILABLE] "), line
        await conn.expect_eof()  # no credentials were sent
        # The session goes on: the client may try again.
        await client.send(b"b NOOP\r\n")
        assert await client.read_line() == b"b OK NOOP completed\r\n"


# -- 4. garbage after login -------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"@@@ this is not IMAP @@@\r\n", b"P999 OK unknown tag\r\n", b"+ unasked continuation\r\n"],
    ids=["garbage", "unknown-tag", "continuation"],
)
async def test_garbage_after_login_ends_the_session(env, garbage) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await conn.send(garbage)
        rest = await client.read_to_eof()
        assert rest == b"* BYE Connection to the mail server lost\r\n"
        await conn.read_to_eof()  # the proxy closed the upstream too


# -- 5. stalls --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "name"),
    [(b"a NOOP\r\n", b"NOOP"), (b"a APPEND INBOX {5+}\r\nhello\r\n", b"APPEND")],
    ids=["command", "literal"],
)
async def test_stalled_upstream_gets_a_bye(env, command, name) -> None:
    limit = 0.5
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        start = trio.current_time()
        await client.send(command)
        assert (await conn.read_command())[1] == name
        # ... and the fake says nothing.
        rest = await client.read_to_eof()
        elapsed = trio.current_time() - start
        assert rest == b"* BYE Mail server not responding\r\n"
        assert elapsed >= limit
        await conn.read_to_eof()


async def test_silence_during_idle_is_not_a_stall(env) -> None:
    limit = 0.3
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(timeouts={"upstream_response": limit})
        await client.send(b"i IDLE\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"IDLE"
        await conn.send(b"+ idling\r\n")
        assert await client.read_line() == b"+ idling\r\n"
        # Several times the response timeout without a word from the server.
        with trio.move_on_after(4 * limit) as quiet:
            unexpected = await client.read_line()
        assert quiet.cancelled_caught, unexpected
        await conn.send(b"* 4 EXISTS\r\n")
        assert await client.read_line() == b"* 4 EXISTS\r\n"
        await client.send(b"DONE\r\n")
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(tag + b" OK IDLE terminated\r\n")
        assert await client.read_line() == b"i OK IDLE terminated\r\n"


# -- 6. the upstream vanishes in the middle of a literal ------------------------------


@pytest.mark.parametrize(
    ("announced", "sent"), [(100_000, 30_000), (500, 100)], ids=["streamed", "inline"]
)
async def test_upstream_drop_mid_literal(env, announced, sent) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"f FETCH 1 BODY[]\r\n")
        _, name, _ = await conn.read_command()
        assert name == b"FETCH"
        partial = b"y" * sent
        await conn.send(b"* 1 FETCH (BODY[] {%d}\r\n" % announced + partial)
        conn.close()
        rest = await client.read_to_eof()
        # A streamed literal may have been relayed in part; then the connection
        # just ends (a BYE there would read as message data). An inline literal
        # is never relayed in part: the client gets a BYE. Never the rest of the
        # literal, never a completion.
        bye = b"* BYE Connection to the mail server lost\r\n"
        head = b"* 1 FETCH (BODY[] {%d}\r\n" % announced
        if rest.startswith(head):
            assert partial.startswith(rest.removeprefix(head))
            assert bye not in rest
        else:
            assert rest == bye
        assert len(rest) < announced


# -- 7. BYE or disconnect mid-session -----------------------------------------------


async def test_upstream_bye_is_relayed(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a NOOP\r\n")
        await conn.read_command()
        await conn.send(b"* BYE [UNAVAILABLE] Server shutting down\r\n")
        await conn.aclose()
        # Exactly the server's BYE, no second one, and no completion of "a".
        assert await client.read_to_eof() == b"* BYE [UNAVAILABLE] Server shutting down\r\n"


async def test_upstream_bye_during_idle(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"i IDLE\r\n")
        assert (await conn.read_command())[1] == b"IDLE"
        await conn.send(b"+ idling\r\n")
        assert await client.read_line() == b"+ idling\r\n"
        await conn.send(b"* BYE Autologout\r\n")
        await conn.aclose()
        assert await client.read_to_eof() == b"* BYE Autologout\r\n"


async def test_upstream_disconnect_without_bye(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        conn.close()
        assert await client.read_to_eof() == b"* BYE Connection to the mail server lost\r\n"


# -- 8. referrals and capabilities ----------------------------------------------------


async def test_referral_removed_from_login_refusal(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"a LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.login(result=b"NO [REFERRAL imap://user@other.example/] Try elsewhere")
        await conn.answer_logout()
        assert await client.read_line() == b"a NO Try elsewhere\r\n"


async def test_capabilities_and_referrals_after_login(env) -> None:
    upstream_caps = (
        "IMAP4rev1 IMAP4rev2 LOGIN-REFERRALS XFOO COMPRESS=DEFLATE STARTTLS AUTH=PLAIN "
        "AUTH=XOAUTH2 SASL-IR ID IDLE UTF8=ACCEPT MOVE"
    )
    expected = {"IMAP4rev1", "IMAP4rev2", "IDLE", "UTF8=ACCEPT", "MOVE", "LITERAL+", "ID"}
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.login(caps=upstream_caps)
        ok = await client.read_line()
        assert ok.startswith(b"L OK [CAPABILITY ")
        assert caps_of(ok) == expected

        lines = await client.command(b"c", b"CAPABILITY")
        assert len(lines) == 2
        assert caps_of(lines[0]) == expected
        assert conn.commands[-1].split()[1] != b"CAPABILITY"  # answered by the proxy

        # A referral in a tagged NO after login.
        await client.send(b"s STATUS Shared (MESSAGES)\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"STATUS"
        await conn.send(tag + b" NO [REFERRAL imap://user@other.example/Shared] Not here\r\n")
        assert await client.read_line() == b"s NO Not here\r\n"
        await conn.send(b"* NO [REFERRAL imap://user@other.example/] Moving soon\r\n")
        assert await client.read_line() == b"* NO Moving soon\r\n"

        # Unsolicited CAPABILITY, untagged [CAPABILITY] and a tagged one: all the proxy's.
        await conn.send(
            b"* CAPABILITY IMAP4rev1 XFOO AUTH=PLAIN LOGIN-REFERRALS\r\n"
            b"* OK [CAPABILITY IMAP4rev1 XFOO STARTTLS] changed\r\n"
        )
        line = await client.read_line()
        assert line.startswith(b"* CAPABILITY ")
        assert caps_of(line) == expected
        line = await client.read_line()
        assert line.startswith(b"* OK [CAPABILITY ")
        assert line.endswith(b"] changed\r\n")
        assert caps_of(line) == expected
        await client.send(b"n NOOP\r\n")
        tag, _, _ = await conn.read_command()
        await conn.send(tag + b" OK [CAPABILITY IMAP4rev1 XFOO SASL-IR] NOOP done\r\n")
        line = await client.read_line()
        assert line.startswith(b"n OK [CAPABILITY ")
        assert line.endswith(b"] NOOP done\r\n")
        assert caps_of(line) == expected
        everything = bytes(client.received)
        for hidden in (b"LOGIN-REFERRALS", b"XFOO", b"COMPRESS", b"AUTH=XOAUTH2", b"REFERRAL"):
            assert hidden not in everything


# -- 9. STARTTLS to the upstream ------------------------------------------------------


async def test_upstream_starttls_discards_injected_bytes(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"tls": "starttls"})
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.greet("IMAP4rev1 STARTTLS LOGINDISABLED")
        tag, name, _ = await conn.read_command()
        assert name == b"STARTTLS"
        # The OK and, in the same write, a forged capability list.
        await conn.send(
            tag + b" OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"
        )
        await conn.start_tls()
        tag, name, _ = await conn.read_command()
        assert name == b"CAPABILITY"  # asked again, over TLS
        assert conn.tls
        await conn.send(b"* CAPABILITY " + DEFAULT_CAPS.encode() + b"\r\n" + tag + b" OK\r\n")
        received = await conn.login(greet=False)
        assert received[-1].split()[1:] == [b"AUTHENTICATE", b"PLAIN", plain_b64("user", "pass")]
        assert (await client.read_line()).startswith(b"L OK ")


@pytest.mark.parametrize("trusted_ca", [True, False], ids=["verified", "untrusted-ca"])
async def test_upstream_implicit_tls(env, trusted_ca) -> None:
    fake = FakeUpstream(tls="implicit")
    await env.nursery.start(fake.serve)
    table = fake.table(env.tmp_path)
    if not trusted_ca:  # a CA that did not issue the fake's certificate
        table["ca"] = env.fake.table(env.tmp_path, name="other", tls="implicit")["ca"]
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await start_proxy(
            env.nursery,
            env.tmp_path / "proxy",
            env.proxy_tls,
            [table],
            timeouts={"upstream_response": 5},
        )
        client = await env.client(proxy)
        if not trusted_ca:
            await client.send(b"L LOGIN user pass\r\n")
            conn = await fake.accept()
            # The fake's side of the handshake; the proxy refuses the certificate.
            assert await conn.read_to_eof() == b""
            assert (await client.read_line()).startswith(b"L NO [UNAVAILABLE] ")
            return
        conn = await login(client, fake)
        assert conn.tls
        await relayed_noop(client, conn, b"c")


@pytest.mark.parametrize(
    "greeting",
    [
        b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hello\r\n",
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no tls here\r\n",
    ],
    ids=["preauth", "no-starttls"],
)
async def test_upstream_starttls_refusals(env, greeting) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"tls": "starttls"})
        client = await env.client(proxy)
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        await conn.send(greeting)
        line = await client.read_line()
        assert line.startswith(b"L NO [UNAVAILABLE] "), line
        await conn.expect_eof()  # nothing at all, credentials least of all


# -- 10. ID ------------------------------------------------------------------------------


def id_params(line: bytes) -> dict[bytes, bytes]:
    items = re.findall(rb'"((?:[^"\\]|\\.)*)"', line)
    return {k.lower(): v for k, v in zip(items[::2], items[1::2], strict=True)}


@pytest.mark.parametrize("trusted", [True, False])
async def test_id_forwarding(env, trusted) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(upstream={"trusted": trusted})
        client = await env.client(proxy)
        await client.command(
            b"i",
            b'ID ("name" "rawclient" "x-originating-ip" "6.6.6.6" "X-Originating-Port" "1")',
        )
        await client.send(b"L LOGIN user pass\r\n")
        conn = await env.fake.accept()
        received = await conn.login()
        assert (await client.read_line()).startswith(b"L OK ")
        names = [line.split()[1] for line in received[:2]]
        assert names == [b"ID", b"AUTHENTICATE"]
        params = id_params(received[0])
        assert params[b"name"] == b"rawclient"
        assert b"6.6.6.6" not in received[0]
        if trusted:
            assert params[b"x-originating-ip"] == b"127.0.0.1"
            assert params[b"x-originating-port"] == str(client.local_port).encode()
        else:
            assert not [key for key in params if key.startswith(b"x-")]


# -- 11. authentication relay ----------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "client_says", "upstream_gets"),
    [
        (DEFAULT_CAPS, b"LOGIN user pass", [b"AUTHENTICATE PLAIN " + plain_b64("user", "pass")]),
        (
            "IMAP4rev1 AUTH=PLAIN",
            b'LOGIN "user" {4+}\r\npass',
            [b"AUTHENTICATE PLAIN", plain_b64("user", "pass")],
        ),
        (
            DEFAULT_CAPS,
            b"AUTHENTICATE PLAIN " + plain_b64("user", "pass", "boss"),
            [b"AUTHENTICATE PLAIN " + plain_b64("user", "pass", "boss")],
        ),
        ("IMAP4rev1 AUTH=CRAM-MD5", b"LOGIN user pass", [b"LOGIN user pass"]),
        ("IMAP4rev1", b'LOGIN user "p a\\"ss"', [b'LOGIN user "p a\\"ss"']),
        ("IMAP4rev1", b"LOGIN user {5+}\r\np\xc3\xa4ss", [b"LOGIN user {5}\r\np\xc3\xa4ss"]),
    ],
    ids=["sasl-ir", "continuation", "authzid", "login", "login-quoted", "login-literal"],
)
async def test_credentials_replayed_upstream(env, caps, client_says, upstream_gets) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"L " + client_says + b"\r\n")
        conn = await env.fake.accept()
        received = await conn.login(caps=caps)
        assert (await client.read_line()).startswith(b"L OK ")
        login_lines = [line.rstrip(b"\r\n") for line in received if b" ID " not in line]
        assert [re.sub(rb"^P\d+ ", b"", line) for line in login_lines] == upstream_gets


async def test_authentication_failure_relayed(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy()
        client = await env.client(proxy)
        await client.send(b"zz9 LOGIN user wrong\r\n")
        conn = await env.fake.accept()
        await conn.login(result=b"NO [AUTHENTICATIONFAILED] Invalid credentials")
        await conn.answer_logout()
        assert await client.read_line() == b"zz9 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
        assert b"zz9" not in conn.received


# -- 12. tags ------------------------------------------------------------------------


async def test_tags_are_mapped_both_ways(env) -> None:
    count = 150
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        # Client tags that look like the proxy's own upstream tags, and others.
        tags = [(b"P%d" % i if i % 2 else b"client.%d" % i) for i in range(count)]
        await client.send(b"".join(tag + b" NOOP\r\n" for tag in tags))
        upstream_tags = []
        for _ in range(count):
            tag, name, rest = await conn.read_command()
            assert (name, rest) == (b"NOOP", b"")
            upstream_tags.append(tag)
        assert all(UPSTREAM_TAG.match(tag) for tag in upstream_tags)
        assert len(set(upstream_tags)) == count
        assert b"client." not in conn.received
        # All answers in one write, in reverse order.
        await conn.send(
            b"".join(tag + b" OK NOOP " + tag + b"\r\n" for tag in reversed(upstream_tags))
        )
        answers = [await client.read_line() for _ in range(count)]
        got = {}
        for line in answers:
            tag, status, _, upstream = line.split()
            assert status == b"OK"
            assert tag not in got
            got[tag] = upstream
        assert sorted(got) == sorted(tags)
        # Each client tag got the answer to its own command.
        assert [got[tag] for tag in tags] == upstream_tags


# -- 13. the client vanishes mid-literal ----------------------------------------------


async def test_client_vanishes_mid_literal(env) -> None:
    size = 200_000
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a APPEND INBOX {%d}\r\n" % size)
        _tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"APPEND", b"INBOX {%d}" % size)
        await conn.send(b"+ go\r\n")
        assert (await client.read_line()).startswith(b"+ ")
        half = b"z" * (size // 2)
        await client.send(half)
        client.close()
        relayed = await conn.read_to_eof()
        assert half.startswith(relayed)  # a part of the data, then the end


# -- 14. limits ------------------------------------------------------------------------


async def test_connections_per_ip(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(limits={"max_connections_per_ip": 2})
        first = await env.client(proxy)
        second = await env.client(proxy)
        third = await env.client(proxy, greeting=False)
        assert await third.read_to_eof() == b"* BYE Too many connections from your address\r\n"
        # The refusal came over TLS (the listener is implicit-TLS); the first two
        # sessions go on as if nothing happened.
        assert isinstance(third.stream, trio.SSLStream)
        for client in (first, second):
            assert await client.command(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]


async def test_failed_logins_are_delayed_per_user_and_ip(env) -> None:
    base = 0.2
    with trio.fail_after(TEST_TIMEOUT):
        proxy = await env.proxy(
            limits={"login_failure_delay": base, "login_failure_max_delay": 1.0},
        )
        client = await env.client(proxy)

        async def attempt(user: bytes, result: bytes) -> tuple[float, bytes]:
            start = trio.current_time()
            await client.send(b"L LOGIN " + user + b" pass\r\n")
            conn = await env.fake.accept()
            await conn.login(result=result)
            if result != b"OK":
                await conn.answer_logout()
            line = await client.read_line()
            return trio.current_time() - start, line

        refusal = b"NO [AUTHENTICATIONFAILED] Invalid credentials"
        first, line = await attempt(b"alice", refusal)
        assert line.startswith(b"L NO [AUTHENTICATIONFAILED]")
        second, _ = await attempt(b"alice", refusal)
        assert first >= base
        assert second >= 2 * base
        # Another user from the same address is not held back by alice's failures.
        other, line = await attempt(b"bob", b"OK")
        assert line.startswith(b"L OK ")
        assert other < 2 * base


async def test_failed_login_limits_from_a_rule(env) -> None:
    # limit.failed_logins_per_user_ip = 1: one free failure per (user, IP);
    # limit.failed_logins_per_ip = 2: two free failures per IP across users, then
    # every attempt from it waits, the delay doubling.
    base = 0.4
    rules = env.rules(
        '[[rule]]\nname = "office"\n'
        "limit = { failed_logins_per_ip = 2, failed_logins_per_user_ip = 1 }\n"
    )
    with trio.fail_after(TEST_TIMEOUT):
        running = await env.proxy(
            limits={"login_failure_delay": base, "login_failure_max_delay": 5.0},
            rules=rules,
        )
        client = await env.client(running)

        async def attempt(user: bytes) -> float:
            start = trio.current_time()
            await client.send(b"L LOGIN " + user + b" pass\r\n")
            conn = await env.fake.accept()
            await conn.login(result=b"NO [AUTHENTICATIONFAILED] Invalid credentials")
            await conn.answer_logout()
            assert (await client.read_line()).startswith(b"L NO [AUTHENTICATIONFAILED]")
            return trio.current_time() - start

        proxy = running.proxy
        await attempt(b"alice")
        await attempt(b"bob")
        # Both failures were free: nothing is owed by alice's pair or the address.
        now = trio.current_time()
        assert proxy.throttle.delay("alice", "127.0.0.1", now, free=1) == 0.0
        assert proxy.ip_throttle.delay("", "127.0.0.1", now, free=2) == 0.0
        # The third failure from the address (a new user) is the first delayed one.
        assert await attempt(b"carol") >= base
        # alice's second failure: her pair's first delay, the address's second.
        assert await attempt(b"alice") >= 2 * base


async def test_done_pipelined_with_idle_ends_it(env) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        await client.send(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"IDLE"
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(b"+ idling\r\n" + tag + b" OK IDLE terminated\r\n")
        tag2, name, _ = await conn.read_command()
        assert name == b"NOOP"  # read as a command, not as a DONE line
        await conn.send(tag2 + b" OK NOOP completed\r\n")
        assert await client.read_response(b"b") == [
            b"+ idling\r\n",
            b"a OK IDLE terminated\r\n",
            b"b OK NOOP completed\r\n",
        ]


async def test_server_bad_for_a_crossing_done_is_ignored(env) -> None:
    # The server ended IDLE by itself as the client said DONE: it reads the DONE
    # as a command and answers "DONE BAD ...", a tag the proxy never uses.
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in()
        tag = await idling(client, conn)
        await client.send(b"DONE\r\n")
        assert await conn.read_line() == b"DONE\r\n"
        await conn.send(
            tag + b" OK IDLE terminated (timeout)\r\n"
            b"DONE BAD Error in IMAP command: Invalid command name\r\n"
        )
        assert await client.read_line() == b"a OK IDLE terminated (timeout)\r\n"
        await relayed_noop(client, conn, b"b")


async def test_rules_see_the_sasl_authorization_identity(env) -> None:
    # "admin" logs in for "bob" (AUTHENTICATE PLAIN with an authzid): the mailboxes
    # are bob's, so bob's rules apply.
    rules = env.rules(
        '[[rule]]\nname = "bob reads only"\nwhen.user = "bob"\nwhen.command = "DELETE"\n'
        'deny = "not for bob"\n'
    )
    with trio.fail_after(TEST_TIMEOUT):
        client = await env.client(await env.proxy(rules=rules))
        await client.send(
            b"L AUTHENTICATE PLAIN " + base64.b64encode(b"bob\0admin\0secret-pw") + b"\r\n"
        )
        conn = await env.fake.accept()
        await conn.login()
        assert (await client.read_line()).startswith(b"L OK ")
        await client.send(b"d DELETE Old\r\n")
        assert (await client.read_line()).startswith(b"d NO [NOPERM] not for bob")


async def test_pipelined_fetches_under_a_cache_rule_stay_pipelined(env) -> None:
    # Nothing cached yet: the second FETCH goes upstream before the first is
    # answered (the cache does not make the session wait for it).
    rules = env.rules('[[rule]]\nname = "cache"\ncache = { admit_after = 1 }\n')
    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(rules=rules)
        await client.send(b"s SELECT INBOX\r\n")
        tag, name, _ = await conn.read_command()
        assert name == b"SELECT"
        await conn.send(
            b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 4] x\r\n"
            + tag
            + b" OK [READ-WRITE] Selected\r\n"
        )
        await client.read_response(b"s")
        await client.send(b"a UID FETCH 1 (ENVELOPE)\r\nb UID FETCH 2 (ENVELOPE)\r\n")
        first, _, _ = await conn.read_command()
        second, name, _ = await conn.read_command()  # both before any answer
        assert name == b"UID"
        envelope = b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)'
        await conn.send(b"* 1 FETCH (UID 1 ENVELOPE " + envelope + b")\r\n" + first + b" OK\r\n")
        await conn.send(b"* 2 FETCH (UID 2 ENVELOPE " + envelope + b")\r\n" + second + b" OK\r\n")
        assert (await client.read_response(b"a"))[-1] == b"a OK\r\n"
        assert (await client.read_response(b"b"))[-1] == b"b OK\r\n"


async def test_updates_during_the_caches_own_command_keep_their_order(env) -> None:
    # The server answers the proxy's own UID FETCH (UID FLAGS) with a FETCH about
    # another message, an EXPUNGE, then its answer: the client must see them in
    # that order (the numbers of a FETCH depend on the EXPUNGEs before it), and a
    # later FETCH from the cache must name the right message.
    rules = env.rules('[[rule]]\nname = "cache"\ncache = { admit_after = 1 }\n')

    def envelope(uid: int) -> bytes:
        return b'(NIL "subject-of-uid-%d" NIL NIL NIL NIL NIL NIL NIL NIL)' % uid

    with trio.fail_after(TEST_TIMEOUT):
        client, conn = await env.logged_in(rules=rules)
        await client.send(b"s SELECT INBOX\r\n")
        tag, _, _ = await conn.read_command()
        await conn.send(
            b"* 5 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 6] x\r\n"
            + tag
            + b" OK [READ-WRITE] Selected\r\n"
        )
        await client.read_response(b"s")
        await client.send(b"a FETCH 1:5 (UID ENVELOPE)\r\n")  # fills, teaches the map
        tag, _, _ = await conn.read_command()
        answers = b"".join(
            b"* %d FETCH (UID %d ENVELOPE " % (n, n) + envelope(n) + b")\r\n" for n in range(1, 6)
        )
        await conn.send(answers + tag + b" OK\r\n")
        await client.read_response(b"a")
        await client.send(b"b UID FETCH 3 (FLAGS ENVELOPE)\r\n")
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 3 (UID FLAGS)")  # the envelope: cached
        await conn.send(
            b"* 4 FETCH (UID 4 FLAGS (\\Flagged))\r\n* 2 EXPUNGE\r\n"
            b"* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n" + tag + b" OK\r\n"
        )
        # A message went meanwhile: the server answers the client's command.
        tag, name, rest = await conn.read_command()
        assert (name, rest) == (b"UID", b"FETCH 3 (FLAGS ENVELOPE)")
        await conn.send(b"* 2 FETCH (UID 3 FLAGS (\\Seen) ENVELOPE " + envelope(3) + b")\r\n")
        await conn.send(tag + b" OK\r\n")
        got = await client.read_response(b"b")
        assert got[:3] == [
            b"* 4 FETCH (UID 4 FLAGS (\\Flagged))\r\n",
            b"* 2 EXPUNGE\r\n",
            b"* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n",
        ]
        assert got[3].startswith(b"* 2 FETCH (UID 3 FLAGS (\\Seen) ENVELOPE ")
        await client.send(b"c FETCH 4 (ENVELOPE)\r\n")  # now UID 5
        done = await client.read_response(b"c")
        assert b"subject-of-uid-5" in done[0], done
