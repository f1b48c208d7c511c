"""What the session keeps from the traffic it relays, and the proxy's own commands.

Against the real Dovecot: the selected-mailbox model agrees with what a direct
connection reports (UIDVALIDITY, UIDNEXT, EXISTS, read-only, the sequence-to-UID
map through EXISTS and EXPUNGE), and the proxy can send commands of its own on a
client's upstream connection without colliding with the client's tags.
"""

from __future__ import annotations

import re

import trio
from imap_raw import RawImap

from imapproxy.session import ClientSession, State
from imapproxy.testing import DovecotServer, User
from imapproxy.wire.commands import NoArgs


async def _login(proxy, user: User) -> RawImap:
    client = await RawImap.connect(
        "localhost", proxy.implicit_port, ssl_context=proxy.ssl_context()
    )
    await client.read_line()
    login = f'a LOGIN "{user.name}" "{user.password}"\r\n'.encode()
    await client.send(login)
    responses = await client.read_until_tagged(b"a")
    assert responses[-1].startswith(b"a OK"), responses
    return client


def _session(proxy) -> ClientSession:
    sessions: set[ClientSession] = proxy.proxy.sessions
    (session,) = [s for s in sessions if s.state is not State.NOT_AUTHENTICATED]
    return session


async def _direct(dovecot: DovecotServer, user: User) -> RawImap:
    client = await RawImap.connect(
        "localhost", dovecot.imaps_port, ssl_context=dovecot.client_ssl_context()
    )
    await client.read_line()
    await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
    return client


def _code(responses: list[bytes], name: bytes) -> int:
    for line in responses:
        match = re.search(rb"\[" + name + rb" (\d+)\]", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no {name!r} in {responses!r}")


def _exists(responses: list[bytes]) -> int:
    for line in responses:
        match = re.match(rb"\* (\d+) EXISTS", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no EXISTS in {responses!r}")


async def test_select_and_examine_fill_the_model(
    proxy, dovecot: DovecotServer, shared_user: User
) -> None:
    with trio.fail_after(30):
        direct = await _direct(dovecot, shared_user)
        expected = await direct.command(b"s", b"EXAMINE Archive")
        await direct.aclose()
        client = await _login(proxy, shared_user)
        session = _session(proxy)
        assert session.mailbox is None
        assert session.state is State.AUTHENTICATED

        await client.command(b"b", b"EXAMINE Archive")
        mailbox = session.mailbox
        assert mailbox is not None
        assert session.state is State.SELECTED
        assert mailbox.name.raw == b"Archive"
        assert mailbox.readonly
        assert mailbox.uidvalidity == _code(expected, b"UIDVALIDITY")
        assert mailbox.uidnext == _code(expected, b"UIDNEXT")
        assert mailbox.exists == _exists(expected)
        assert mailbox.flags
        assert "read-only" in repr(mailbox)

        await client.command(b"c", b"SELECT INBOX")
        assert session.mailbox is not None
        assert session.mailbox.name.is_inbox
        assert not session.mailbox.readonly

        failed = await client.command(b"d", b"SELECT NoSuchFolder")
        assert failed[-1].startswith(b"d NO")
        assert session.mailbox is None  # a failed SELECT leaves nothing selected
        assert session.state is State.AUTHENTICATED

        await client.command(b"e", b"EXAMINE INBOX")
        await client.command(b"f", b"UNSELECT")
        assert session.mailbox is None
        await client.aclose()


async def test_uid_map_follows_exists_and_expunge(
    proxy, dovecot: DovecotServer, mail_user: User
) -> None:
    with trio.fail_after(30):
        client = await _login(proxy, mail_user)
        session = _session(proxy)
        await client.command(b"a", b"SELECT INBOX")
        mailbox = session.mailbox
        assert mailbox is not None
        mailbox.track_uids()
        assert not mailbox.complete
        await client.command(b"b", b"FETCH 1:* (UID)")
        assert mailbox.complete
        uids = list(mailbox.uids or [])
        assert len(uids) == mailbox.exists > 3

        # Another connection appends: the next NOOP brings EXISTS, the map grows
        # with an unknown UID, which a FETCH then fills in.
        other = await _direct(dovecot, mail_user)
        appended = await other.command(b"x", b"APPEND INBOX {17+}\r\nSubject: new\r\n\r\n")
        new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", appended[-1]).group(1))
        await client.command(b"c", b"NOOP")
        assert mailbox.exists == len(uids) + 1
        assert mailbox.uid_for(mailbox.exists) is None
        await client.command(b"d", f"FETCH {mailbox.exists} (UID)".encode())
        assert mailbox.uid_for(mailbox.exists) == new_uid
        assert mailbox.seq_for(new_uid) == mailbox.exists

        # Expunge the second message (and any the corpus already marked \Deleted):
        # later sequence numbers shift down, as the server's own UID list says.
        await client.command(b"e", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
        expunged = await client.command(b"f", b"EXPUNGE")
        assert sum(line.endswith(b" EXPUNGE\r\n") for line in expunged) >= 1
        await other.command(b"w", b"EXAMINE INBOX")
        found = await other.command(b"y", b"UID SEARCH ALL")
        remaining = [int(n) for n in found[0].split()[2:]]
        assert mailbox.uids == remaining
        assert mailbox.exists == len(remaining)
        assert mailbox.seq_for(uids[1]) is None
        assert mailbox.uid_for(1) == uids[0]
        await other.aclose()
        await client.aclose()


async def test_proxy_commands_do_not_collide_with_the_clients(proxy, shared_user: User) -> None:
    with trio.fail_after(30):
        client = await _login(proxy, shared_user)
        session = _session(proxy)
        upstream = session.upstream
        assert upstream is not None
        # The client uses the tags the proxy's own tag space is made of.
        await client.send(b"P1 NOOP\r\nP2 SELECT INBOX\r\nP3 NOOP\r\n")
        request = await upstream.command("CAPABILITY", NoArgs())
        responses = await client.read_until_tagged(b"P3")
        assert request.status == "OK"
        tags = [line.split(b" ")[0] for line in responses if not line.startswith(b"*")]
        assert tags == [b"P1", b"P2", b"P3"]
        # Same spelling, separate spaces: the upstream tag may equal a client tag.
        assert request.tag.startswith(b"P")

        # With nothing of the client's in flight, the answer's untagged CAPABILITY
        # is the proxy's and the client never sees it.
        request = await upstream.command("CAPABILITY", NoArgs())
        assert [r.name for r in request.untagged] == ["CAPABILITY"]
        after = await client.command(b"z", b"NOOP")
        assert not any(line.startswith(b"* CAPABILITY") for line in after)
        assert upstream.in_flight == 0
        await client.aclose()
