"""The harness of the fake-upstream tests of concurrent sharing (imapproxy/mux.py):
a proxy sharing upstream connections in front of :class:`FakeUpstream`, raw
client sessions of one user, and the server's side of their usual exchanges, so
that the order of events is each test's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio
import trio.testing
from conftest import RunningProxy, start_proxy
from fake_upstream import FakeConnection, FakeUpstream, RawClient, login

from imapproxy.mux import SharedConnection
from imapproxy.testing.proxy import ProxyTls

SHARING = {"enabled": True, "max_sessions_per_connection": 10, "max_connections_per_user": 3}
CAPS = "IMAP4rev1 SASL-IR AUTH=PLAIN ID IDLE UIDPLUS MOVE LITERAL+"


@contextlib.asynccontextmanager
async def started(
    nursery: trio.Nursery, tmp_path: Path, tls: ProxyTls, upstream_response: float = 10
) -> AsyncIterator[Env]:
    """An :class:`Env` started, its clients and fake upstream closed after."""
    env = Env(nursery, tmp_path, tls)
    await env.start(upstream_response)
    try:
        yield env
    finally:
        for client in env.clients:
            await client.aclose()
        await env.fake.aclose()


class Env:
    def __init__(self, nursery: trio.Nursery, tmp_path: Path, tls: ProxyTls) -> None:
        self.nursery, self.tmp_path, self.tls = nursery, tmp_path, tls
        self.fake = FakeUpstream()
        self.clients: list[RawClient] = []
        self.running: RunningProxy | None = None

    async def start(self, upstream_response: float = 10) -> None:
        await self.nursery.start(self.fake.serve)
        self.running = await start_proxy(
            self.nursery,
            self.tmp_path / "proxy",
            self.tls,
            [self.fake.table(self.tmp_path)],
            multiplex=SHARING,
            timeouts={"upstream_response": upstream_response},
        )

    async def client(self) -> RawClient:
        assert self.running is not None
        client = await RawClient.connect(self.running.implicit_port, self.running.ssl_context())
        self.clients.append(client)
        return client

    def shared(self) -> SharedConnection:
        assert self.running is not None
        assert self.running.proxy.mux is not None
        conns = [c for g in self.running.proxy.mux.groups.values() for c in g.conns]
        assert len(conns) == 1, conns
        return conns[0]

    async def two_on_inbox(self) -> tuple[RawClient, RawClient, FakeConnection]:
        """Sessions a and b logged in as one user, both with INBOX (UIDs 1..4)
        selected on the one shared connection."""
        a = await self.client()
        conn = await login(a, self.fake, caps=CAPS)
        b = await self.client()
        await b.send(b"L LOGIN user pass\r\n")
        assert (await b.read_line()).startswith(b"L OK")
        await a.send(b"s SELECT INBOX\r\n")
        await answer_select(conn)
        await a.read_response(b"s")
        await b.send(b"s SELECT INBOX\r\n")
        await answer_status(conn)  # a session joins: UIDNEXT brought up to date
        reply = await b.read_response(b"s")
        assert reply[-1].startswith(b"s OK"), reply
        return a, b, conn

    async def third(self, select: bool = False) -> RawClient:
        """Another session of the user (on the shared connection), INBOX joined."""
        c = await self.client()
        await c.send(b"L LOGIN user pass\r\n")
        assert (await c.read_line()).startswith(b"L OK")
        if select:
            reply = await c.command(b"s", b"SELECT INBOX")
            assert reply[-1].startswith(b"s OK"), reply
        return c

    async def three_on_inbox(
        self, caps: str = CAPS
    ) -> tuple[RawClient, RawClient, RawClient, FakeConnection]:
        """Sessions a, b and c of one user, INBOX (UIDs 1..4) selected by each on the
        one shared connection (the upstream advertising ``caps``)."""
        a = await self.client()
        conn = await login(a, self.fake, caps=caps)
        await a.send(b"s SELECT INBOX\r\n")
        await answer_select(conn)
        assert (await a.read_response(b"s"))[-1].startswith(b"s OK")
        others = []
        for first in (True, False):
            client = await self.client()
            await client.send(b"L LOGIN user pass\r\n")
            assert (await client.read_line()).startswith(b"L OK")
            await client.send(b"s SELECT INBOX\r\n")
            if first:  # UIDNEXT asked again only after a change
                await answer_status(conn)
            reply = await client.read_response(b"s")
            assert reply[-1].startswith(b"s OK"), reply
            others.append(client)
        b, c = others
        return a, b, c, conn


async def answer_select(conn: FakeConnection, uids: tuple[int, ...] = (1, 2, 3, 4)) -> None:
    tag, name, rest = await conn.read_command()
    assert name in (b"SELECT", b"EXAMINE"), (name, rest)
    await conn.send(
        b"* %d EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] ok\r\n"
        b"* OK [UIDNEXT %d] ok\r\n%s OK [READ-WRITE] done\r\n" % (len(uids), max(uids) + 1, tag)
    )
    tag, name, rest = await conn.read_command()
    assert (name, rest) == (b"UID", b"SEARCH ALL"), (name, rest)
    await conn.send(b"* SEARCH " + b" ".join(b"%d" % u for u in uids) + b"\r\n" + tag + b" OK\r\n")


async def answer_status(conn: FakeConnection, uidnext: int = 5) -> None:
    tag, name, rest = await conn.read_command()
    assert (name, rest) == (b"STATUS", b"INBOX (UIDNEXT)"), (name, rest)
    await conn.send(b"* STATUS INBOX (UIDNEXT %d)\r\n%s OK done\r\n" % (uidnext, tag))


async def until(condition: Callable[[], bool]) -> None:
    """Wait (under the test's deadline) until the proxy's state says ``condition``."""
    while not condition():
        await trio.testing.wait_all_tasks_blocked(0.01)


async def hold(conn: FakeConnection, name: bytes) -> bytes:
    """The next command upstream is ``name``: left unanswered (the turn is held)."""
    tag, got, rest = await conn.read_command()
    assert got == name, (got, rest)
    return tag


def waiting(shared: SharedConnection) -> int:
    """Lanes' commands waiting for the turn: the leads and what merged or rides."""
    leads = {id(turn): turn for turn in [*shared.merging.values(), *shared.waiting.values()]}
    return sum(1 + len(turn.riders) for turn in leads.values())


def sessions(env: Env) -> int:
    assert env.running is not None
    return len(env.running.proxy.sessions)


async def lead_cancelled(env: Env) -> tuple[RawClient, RawClient, FakeConnection, bytes]:
    """Sessions a, b and c on INBOX; a's STATUS holds the turn, b's UID FETCH 1
    (FLAGS) waits for it with c's UID FETCH 3 (FLAGS) merged in, and then b's
    session is cancelled (by hand, as the proxy's watchdog or shutdown would).
    Returns a, c, the shared connection's server side and the STATUS's tag."""
    a, b, c, conn = await env.three_on_inbox()
    shared = env.shared()
    await a.send(b"t STATUS INBOX (MESSAGES)\r\n")
    status = await hold(conn, b"STATUS")
    await b.send(b"f UID FETCH 1 (FLAGS)\r\n")
    await until(lambda: len(shared.merging) == 1)
    await c.send(b"g UID FETCH 3 (FLAGS)\r\n")
    (lead,) = shared.merging.values()
    await until(lambda: len(lead.riders) == 1)
    assert env.running is not None
    (session,) = [s for s in env.running.proxy.sessions if s.upstream is lead.lane]
    session._cancel()
    await trio.testing.wait_all_tasks_blocked(0.01)
    return a, c, conn, status
