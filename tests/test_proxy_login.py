"""Logging in through the proxy in front of the real Dovecot (issue #3).

Credentials in every form a client may use -- quoted strings with quotes,
backslashes and UTF-8, synchronizing literals, LITERAL+, AUTHENTICATE PLAIN with
SASL-IR or a continuation, with and without an authzid -- from imaplib, IMAPClient
and a raw client; refusals relayed from Dovecot; STARTTLS (injection, and the
plaintext refusals before it); CAPABILITY before and after login, and ID.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from imap_endpoints import Endpoint, quote, scrub
from imap_raw import RawImap, caps_of, plain, tagged_status

from imapproxy.capabilities import is_relayable
from imapproxy.testing import DovecotServer, User

#: Every test here ends within this many seconds.
TEST_TIMEOUT = 20

#: Hop-by-hop capabilities a logged-in client must not see from the proxy.
NEVER_AFTER_LOGIN = ("STARTTLS", "LOGINDISABLED", "LOGIN-REFERRALS", "SASL-IR")


async def in_thread(fn: Any) -> Any:
    with trio.fail_after(TEST_TIMEOUT):
        return await trio.to_thread.run_sync(fn)


# -- credentials ---------------------------------------------------------------------------

#: Passwords that break naive quoting; the ASCII ones also go through imaplib's LOGIN.
PASSWORDS = {
    "quote": 'say "hello"',
    "backslash": "back\\slash\\",
    "both": 'a\\"b" \\\\',
    "utf8": "Grüße, naïve 日本 ✓",
    "utf8-quote-backslash": 'pä"ss\\wörd',
}


@pytest.fixture(scope="module")
def tricky_users(dovecot: DovecotServer) -> Iterator[dict[str, User]]:
    users = {key: dovecot.add_user(password=pw, with_corpus=False) for key, pw in PASSWORDS.items()}
    try:
        yield users
    finally:
        for user in users.values():
            dovecot.remove_user(user)


def imaplib_login(endpoint: Endpoint, user: User, method: str) -> tuple[str, Any]:
    """Log in with imaplib in one of its ways; then STATUS INBOX (the upstream
    session really belongs to ``user``)."""
    result: tuple[str, Any]
    with endpoint.imaplib() as imap:
        if method == "login":
            result = imap.login(user.name, user.password)
        elif method == "login-literal":
            # The password as a synchronizing literal: imaplib waits for "+".
            imap.literal = user.password.encode()  # type: ignore[assignment]
            result = imap._simple_command("LOGIN", imap._quote(user.name))
            imap.state = "AUTH"
        elif method == "authenticate":
            result = imap.authenticate(
                "PLAIN", lambda _: f"\0{user.name}\0{user.password}".encode()
            )
        elif method == "authenticate-authzid":
            result = imap.authenticate(
                "PLAIN", lambda _: f"{user.name}\0{user.name}\0{user.password}".encode()
            )
        else:
            raise AssertionError(method)
        return result[0], imap.status("INBOX", "(MESSAGES)")


IMAPLIB_METHODS = ("login", "login-literal", "authenticate", "authenticate-authzid")


@pytest.mark.parametrize(
    ("key", "method"),
    [
        (key, method)
        for key, password in PASSWORDS.items()
        for method in IMAPLIB_METHODS
        # imaplib sends LOGIN's arguments as quoted strings, which it encodes as ASCII.
        if method != "login" or password.isascii()
    ],
)
async def test_password_imaplib(proxy, tricky_users, key, method) -> None:
    user = tricky_users[key]
    status, inbox = await in_thread(
        lambda: imaplib_login(Endpoint.via(proxy, "implicit"), user, method)
    )
    assert status == "OK"
    assert inbox == ("OK", [b"INBOX (MESSAGES 0)"])


@pytest.mark.parametrize("listener", ["implicit", "starttls"])
@pytest.mark.parametrize("key", PASSWORDS)
async def test_password_imapclient(proxy, tricky_users, key, listener) -> None:
    """IMAPClient's LOGIN (ASCII passwords: it quotes them) and AUTHENTICATE PLAIN
    with the authzid set to the same user."""
    user = tricky_users[key]

    def run() -> list[Any]:
        results = []
        endpoint = Endpoint.via(proxy, listener)
        if user.password.isascii():  # IMAPClient's LOGIN encodes its arguments as ASCII
            with endpoint.imapclient() as client:
                results.append(client.login(user.name, user.password))
                results.append(client.folder_status("INBOX", ["MESSAGES"]))
        with endpoint.imapclient() as client:
            results.append(client.plain_login(user.name, user.password, user.name))
            results.append(client.folder_status("INBOX", ["MESSAGES"]))
        return results

    results = await in_thread(run)
    for logged_in, inbox in zip(results[::2], results[1::2], strict=True):
        assert logged_in.endswith(b"Logged in")
        assert inbox == {b"MESSAGES": 0}


async def raw_login_variant(client: RawImap, user: User, variant: str) -> list[bytes]:
    name, password = user.name.encode(), user.password.encode()
    if variant == "literals":  # LOGIN {n} ... {m}: wait for "+" before each literal
        await client.send(b"a LOGIN {%d}\r\n" % len(name))
        assert (await client.read_line()).startswith(b"+")
        await client.send(name + b" {%d}\r\n" % len(password))
        assert (await client.read_line()).startswith(b"+")
        await client.send(password + b"\r\n")
    elif variant == "literal-plus":  # both literals in one write, no waiting
        await client.send(
            b"a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(name), name, len(password), password)
        )
    elif variant == "quoted-8bit":  # a quoted string with the UTF-8 bytes as they are
        escaped = password.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        await client.send(b'a LOGIN %s "%s"\r\n' % (name, escaped))
    elif variant == "sasl-ir":
        await client.send(b"a AUTHENTICATE PLAIN " + plain(user.name, user.password) + b"\r\n")
    elif variant == "sasl-continuation":
        await client.send(b"a AUTHENTICATE PLAIN\r\n")
        assert (await client.read_line()).startswith(b"+")
        await client.send(plain(user.name, user.password, user.name) + b"\r\n")
    else:
        raise AssertionError(variant)
    return await client.read_until_tagged(b"a")


RAW_VARIANTS = ("literals", "literal-plus", "quoted-8bit", "sasl-ir", "sasl-continuation")


@pytest.mark.parametrize("variant", RAW_VARIANTS)
@pytest.mark.parametrize("key", PASSWORDS)
async def test_password_raw(proxy, dovecot, tricky_users, key, variant) -> None:
    """Every credential form the proxy accepts logs in, and the proxy agrees with
    Dovecot's own answer to the same bytes."""
    user = tricky_users[key]
    with trio.fail_after(TEST_TIMEOUT):
        async with await Endpoint.direct(dovecot, "implicit").raw() as direct:
            expected = tagged_status(await raw_login_variant(direct, user, variant))
        async with await Endpoint.via(proxy, "implicit").raw() as client:
            reply = await raw_login_variant(client, user, variant)
            assert tagged_status(reply) == expected == b"OK [CAPABILITY]"
            status = await client.command(b"s", b"STATUS INBOX (MESSAGES)")
            assert status == [b"* STATUS INBOX (MESSAGES 0)\r\n", status[-1]]
            assert status[-1].startswith(b"s OK")


async def test_wrong_password_relayed_then_retry(proxy, dovecot, shared_user) -> None:
    """Dovecot's refusal comes through as it is; the same connection can log in next."""
    bad = b"LOGIN " + quote(shared_user.name) + b' "wrong"'
    with trio.fail_after(TEST_TIMEOUT):
        async with await Endpoint.direct(dovecot, "implicit").raw() as direct:
            expected = await direct.command(b"a", bad)
        async with await Endpoint.via(proxy, "implicit").raw() as client:
            refused = await client.command(b"a", bad)
            assert scrub(refused) == scrub(expected)
            assert tagged_status(refused) == b"NO [AUTHENTICATIONFAILED]"
            refused = await client.command(
                b"b", b"AUTHENTICATE PLAIN " + plain(shared_user.name, "wrong")
            )
            assert tagged_status(refused) == b"NO [AUTHENTICATIONFAILED]"
            ok = await client.command(
                b"c", b"LOGIN " + quote(shared_user.name) + b" " + quote(shared_user.password)
            )
            assert tagged_status(ok) == b"OK [CAPABILITY]"
            examined = await client.command(b"d", b"EXAMINE INBOX")
            assert b"* 50 EXISTS\r\n" in examined


# -- STARTTLS ------------------------------------------------------------------------------


@pytest.mark.parametrize("injected", ["capability", "login"])
async def test_starttls_injection_is_never_answered(proxy, shared_user, injected) -> None:
    """A command pipelined behind STARTTLS in plaintext is discarded: not answered
    before TLS (the handshake would fail on those bytes), not after, not executed."""
    if injected == "login":
        line = b"b LOGIN " + quote(shared_user.name) + b" " + quote(shared_user.password)
    else:
        line = b"b CAPABILITY"
    with trio.fail_after(TEST_TIMEOUT):
        async with await RawImap.connect("localhost", proxy.starttls_port) as client:
            assert (await client.read_line()).startswith(b"* OK")
            await client.send(b"a STARTTLS\r\n" + line + b"\r\n")
            assert (await client.read_line()).startswith(b"a OK")
            await client.start_tls(proxy.ssl_context())  # fails on unread plaintext
            after = await client.command(b"c", b"CAPABILITY")
            assert not [response for response in after if response.startswith(b"b ")]
            caps = caps_of(after[0])
            assert "AUTH=PLAIN" in caps  # still not logged in
            refused = await client.command(b"d", b"SELECT INBOX")
            assert tagged_status(refused) == b"BAD"
            assert not [response for response in refused if response.startswith(b"b ")]


async def test_plaintext_login_refused_before_starttls(proxy, shared_user) -> None:
    """On the STARTTLS listener nothing reveals credentials before TLS, even from
    loopback (where Dovecot itself would accept a plaintext LOGIN)."""
    name, password = shared_user.name, shared_user.password
    with trio.fail_after(TEST_TIMEOUT):
        async with await RawImap.connect("localhost", proxy.starttls_port) as client:
            greeting = await client.read_line()
            for caps in (
                caps_of(greeting),
                caps_of((await client.command(b"a", b"CAPABILITY"))[0]),
            ):
                assert "STARTTLS" in caps
                assert "LOGINDISABLED" in caps
                assert not [cap for cap in caps if cap.startswith("AUTH=")]
            login = await client.command(b"b", b"LOGIN " + quote(name) + b" " + quote(password))
            assert tagged_status(login) == b"NO [PRIVACYREQUIRED]"
            ir = await client.command(b"c", b"AUTHENTICATE PLAIN " + plain(name, password))
            assert tagged_status(ir) == b"NO [PRIVACYREQUIRED]"
            assert tagged_status(await client.command(b"d", b"AUTHENTICATE PLAIN")) == (
                b"NO [PRIVACYREQUIRED]"
            )
            # A literal for LOGIN is refused instead of "+": the password never leaves.
            literal = await client.command(b"e", b"LOGIN {%d}" % len(name))
            assert tagged_status(literal) == b"NO [PRIVACYREQUIRED]"
            # The connection is still in sync and can upgrade and log in.
            assert (await client.command(b"f", b"STARTTLS"))[-1].startswith(b"f OK")
            await client.start_tls(proxy.ssl_context())
            caps = caps_of((await client.command(b"g", b"CAPABILITY"))[0])
            assert "AUTH=PLAIN" in caps
            assert "STARTTLS" not in caps
            assert "LOGINDISABLED" not in caps
            login = await client.command(b"h", b"LOGIN " + quote(name) + b" " + quote(password))
            assert tagged_status(login) == b"OK [CAPABILITY]"


async def test_imaplib_login_without_starttls_refused(proxy, shared_user) -> None:
    def run() -> str:
        with imaplib.IMAP4("localhost", proxy.starttls_port, timeout=10) as imap:
            try:
                imap.login(shared_user.name, shared_user.password)
            except imaplib.IMAP4.error as exc:
                return str(exc)
            return "logged in"

    assert "PRIVACYREQUIRED" in await in_thread(run)


# -- capabilities and ID -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["LOGIN", "AUTHENTICATE"])
async def test_capabilities_after_login(proxy, dovecot, shared_user, how) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with await Endpoint.direct(dovecot, "implicit").raw_login(
            shared_user.name, shared_user.password
        ) as direct:
            upstream = caps_of((await direct.command(b"a", b"CAPABILITY"))[0])
        async with await Endpoint.via(proxy, "implicit").raw() as client:
            before = caps_of((await client.command(b"a", b"CAPABILITY"))[0])
            assert {"IMAP4rev1", "AUTH=PLAIN", "SASL-IR", "ID"} <= set(before)
            assert "STARTTLS" not in before
            assert "LOGINDISABLED" not in before
            if how == "LOGIN":
                text = b"LOGIN " + quote(shared_user.name) + b" " + quote(shared_user.password)
            else:
                text = b"AUTHENTICATE PLAIN " + plain(shared_user.name, shared_user.password)
            ok = await client.command(b"b", text)
            assert ok[:-1] == []  # no untagged CAPABILITY besides the code
            in_ok = caps_of(ok[-1])
            after = await client.command(b"c", b"CAPABILITY")
            assert caps_of(after[0]) == in_ok
    upper = [cap.upper() for cap in in_ok]
    for name in NEVER_AFTER_LOGIN:
        assert name not in upper
    assert not [cap for cap in upper if cap.startswith(("AUTH=", "COMPRESS"))]
    assert {"MOVE", "UIDPLUS", "IDLE", "NAMESPACE", "SPECIAL-USE"} <= set(upper)
    # Withheld: they name command tags after completion, past the tag mapping.
    assert "CONTEXT=SEARCH" in upstream
    assert not {"CONTEXT=SEARCH", "CONTEXT=SORT"} & set(upper)
    # Exactly Dovecot's relayable capabilities, in Dovecot's order, plus the proxy's own.
    assert in_ok == [*[cap for cap in upstream if is_relayable(cap)], "LITERAL+", "ID"]


async def test_id_is_answered_by_the_proxy(proxy, dovecot, shared_user) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with await Endpoint.direct(dovecot, "implicit").raw() as direct:
            dovecot_id = (await direct.command(b"a", b'ID ("name" "raw")'))[0]
        assert b'"Dovecot"' in dovecot_id
        async with await Endpoint.via(proxy, "implicit").raw() as client:
            before = await client.command(b"a", b'ID ("name" "raw" "version" "1")')
            assert before[0].startswith(b'* ID ("name" "imapproxy" "version" ')
            assert tagged_status(before) == b"OK"
            login = b"LOGIN " + quote(shared_user.name) + b" " + quote(shared_user.password)
            assert tagged_status(await client.command(b"b", login)) == b"OK [CAPABILITY]"
            after = await client.command(b"c", b"ID NIL")
            assert after[0] == before[0]
            assert tagged_status(after) == b"OK"
