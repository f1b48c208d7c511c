"""A scripted fake IMAP server and a raw client, for the proxy's fault tests.

Real Dovecot answers the ordinary traffic; this fake is for what Dovecot will
not do on demand: a garbage or PREAUTH greeting, a NO instead of ``+``, a stall,
a disconnect in the middle of a literal, bytes injected after STARTTLS.

:class:`FakeUpstream` listens on 127.0.0.1:0 in the test's nursery
(``fake = FakeUpstream(); await nursery.start(fake.serve)``) and hands each
connection the proxy opens to the test (``conn = await fake.accept()``). The test
is the script: it says exactly what the server sends (:meth:`Peer.send`) and
reads what it received (:meth:`Peer.read_line`, :meth:`Peer.read_exact`,
:meth:`Peer.expect_eof`); every byte received is also kept in
:attr:`Peer.received`. A fake can speak implicit TLS or switch to TLS on demand
(:meth:`FakeConnection.start_tls`, for STARTTLS) with a trustme certificate for
``localhost``; :meth:`FakeUpstream.table` gives the ``[[upstream]]`` table that
trusts it.

:class:`RawClient` is the client side: a raw TLS (or plain) stream to the proxy
with the same reading helpers, so tests assert on wire bytes.

Every read has a timeout (:data:`IO_TIMEOUT`) so that a test that waits for
bytes that never come fails instead of hanging.
"""

from __future__ import annotations

import base64
import re
import ssl
from pathlib import Path
from typing import Any

import trio
import trustme

__all__ = [
    "DEFAULT_CAPS",
    "IO_TIMEOUT",
    "FakeConnection",
    "FakeUpstream",
    "Peer",
    "RawClient",
    "caps_of",
    "idling",
    "login",
    "plain_b64",
    "relayed_noop",
]

#: Seconds any single read may take before the test fails.
IO_TIMEOUT = 10.0

#: What the fake advertises unless a test says otherwise: no LITERAL+.
DEFAULT_CAPS = "IMAP4rev1 SASL-IR AUTH=PLAIN ID IDLE"

_COMMAND = re.compile(rb"^(\S+) (\S+)(?: (.*))?\r\n\Z", re.DOTALL)


def plain_b64(user: str, password: str, authzid: str = "") -> bytes:
    """The base64 of a SASL PLAIN message (RFC 4616)."""
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


class Peer:
    """One side of a byte stream with buffered reads (every read under a timeout)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.received = bytearray()
        self._buf = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._eof = True
            return False
        self.received += data
        self._buf += data
        return True

    async def send(self, data: bytes) -> None:
        with trio.fail_after(IO_TIMEOUT):
            await self.stream.send_all(data)

    async def read_line(self) -> bytes:
        """The next line, CRLF included; AssertionError at EOF."""
        with trio.fail_after(IO_TIMEOUT):
            while True:
                end = self._buf.find(b"\n")
                if end >= 0:
                    line = bytes(self._buf[: end + 1])
                    del self._buf[: end + 1]
                    return line
                if not await self._fill():
                    raise AssertionError(f"EOF while reading a line; partial: {bytes(self._buf)!r}")

    async def read_exact(self, size: int) -> bytes:
        with trio.fail_after(IO_TIMEOUT):
            while len(self._buf) < size:
                if not await self._fill():
                    raise AssertionError(
                        f"EOF after {len(self._buf)} of {size} octets: {bytes(self._buf[:80])!r}"
                    )
            data = bytes(self._buf[:size])
            del self._buf[:size]
            return data

    async def read_to_eof(self) -> bytes:
        """Everything until the peer closes."""
        with trio.fail_after(IO_TIMEOUT):
            while await self._fill():
                pass
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def expect_eof(self) -> None:
        """The peer closes without sending anything more."""
        rest = await self.read_to_eof()
        assert rest == b"", f"expected EOF, got {rest!r}"

    async def read_response(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the one tagged ``tag`` (literals read whole
        and appended to the line that announced them)."""
        lines: list[bytes] = []
        while True:
            line = await self.read_line()
            while (match := re.search(rb"\{(\d+)\}\r\n\Z", line)) is not None:
                line += await self.read_exact(int(match.group(1)))
                line += await self.read_line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def close(self) -> None:
        """Close at once (no LOGOUT, no TLS close_notify wait)."""
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        stream.socket.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class FakeConnection(Peer):
    """A connection the proxy opened to the fake server; the test scripts it."""

    def __init__(self, stream: trio.abc.Stream, server: FakeUpstream) -> None:
        super().__init__(stream)
        self.server = server
        self.commands: list[bytes] = []

    async def read_command(self) -> tuple[bytes, bytes, bytes]:
        """The next command line as (tag, NAME, rest without CRLF)."""
        line = await self.read_line()
        self.commands.append(line)
        match = _COMMAND.match(line)
        assert match is not None, f"not a command line: {line!r}"
        return match.group(1), match.group(2).upper(), match.group(3) or b""

    async def start_tls(self) -> None:
        """Switch to TLS (after the OK for STARTTLS); the proxy verifies ``localhost``."""
        assert not self._buf, f"bytes pipelined before the TLS handshake: {bytes(self._buf)!r}"
        tls = trio.SSLStream(self.stream, self.server.server_ssl, server_side=True)
        with trio.fail_after(IO_TIMEOUT):
            await tls.do_handshake()
        self.stream = tls

    @property
    def tls(self) -> bool:
        return isinstance(self.stream, trio.SSLStream)

    async def greet(self, caps: str | None = DEFAULT_CAPS) -> None:
        code = f"[CAPABILITY {caps}] " if caps is not None else ""
        await self.send(f"* OK {code}fake ready\r\n".encode())

    async def login(
        self,
        caps: str = DEFAULT_CAPS,
        *,
        greet: bool = True,
        result: bytes = b"OK",
        after_login_caps: str | None = None,
    ) -> list[bytes]:
        """Play a server through the proxy's login: greeting, ID (answered), then
        AUTHENTICATE PLAIN (SASL-IR or a continuation round) or LOGIN, answered
        with ``result`` (``OK`` gets ``[CAPABILITY after_login_caps or caps]``).
        Returns the command lines received (SASL response lines included)."""
        start = len(self.commands)
        if greet:
            await self.greet(caps)
        while True:
            tag, name, rest = await self.read_command()
            while (literal := re.search(rb"\{(\d+)\}\Z", rest)) is not None:
                await self.send(b"+ go on\r\n")
                rest += b"\r\n" + await self.read_exact(int(literal.group(1)))
                rest += (await self.read_line()).removesuffix(b"\r\n")
                self.commands[-1] = tag + b" " + name + b" " + rest + b"\r\n"
            if name == b"CAPABILITY":
                await self.send(b"* CAPABILITY " + caps.encode() + b"\r\n" + tag + b" OK done\r\n")
            elif name == b"ID":
                await self.send(b'* ID ("name" "fake")\r\n' + tag + b" OK ID completed\r\n")
            elif name in (b"AUTHENTICATE", b"LOGIN"):
                if name == b"AUTHENTICATE" and b" " not in rest:
                    await self.send(b"+ \r\n")
                    self.commands.append(await self.read_line())
                if result == b"OK":
                    final = (after_login_caps or caps).encode()
                    await self.send(tag + b" OK [CAPABILITY " + final + b"] Logged in\r\n")
                else:
                    await self.send(tag + b" " + result + b"\r\n")
                return self.commands[start:]
            else:
                raise AssertionError(f"unexpected command before login: {self.commands[-1]!r}")

    async def answer_logout(self) -> None:
        """Read the proxy's LOGOUT, answer it and close."""
        tag, name, _ = await self.read_command()
        assert name == b"LOGOUT", self.commands[-1]
        await self.send(b"* BYE fake logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
        await self.aclose()


class FakeUpstream:
    """A scripted IMAP server on 127.0.0.1 (see the module docstring).

    Args:
        tls: ``"none"`` (plain, also for STARTTLS: the test calls
            :meth:`FakeConnection.start_tls`) or ``"implicit"``.
        ca: the trustme CA that issues the fake's certificate (a new one if None).
    """

    def __init__(self, *, tls: str = "none", ca: trustme.CA | None = None) -> None:
        assert tls in ("none", "implicit")
        self.tls = tls
        self.ca = ca or trustme.CA(organization_name="fake upstream CA")
        cert = self.ca.issue_cert("localhost")
        self.server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.server_ssl)
        self.port = 0
        self.connections: list[FakeConnection] = []
        self._send, self._receive = trio.open_memory_channel[FakeConnection](16)

    def __repr__(self) -> str:
        return f"FakeUpstream(127.0.0.1:{self.port}, {self.tls}, {len(self.connections)} accepted)"

    def table(
        self, directory: Path, *, name: str = "fake", tls: str | None = None, **extra: object
    ) -> dict[str, object]:
        """An ``[[upstream]]`` table for this fake; TLS modes trust its CA (written
        to ``directory``) and verify ``localhost``."""
        mode = tls or self.tls
        table: dict[str, object] = {
            "name": name,
            "address": f"127.0.0.1:{self.port}",
            "tls": mode,
        }
        if mode != "none":
            ca_path = directory / f"{name}-ca.pem"
            self.ca.cert_pem.write_to_path(ca_path)
            table["ca"] = ca_path
            table["server_name"] = "localhost"
        table.update(extra)
        return table

    async def serve(
        self, task_status: trio.TaskStatus[FakeUpstream] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        listener = listeners[0]
        self.port = listener.socket.getsockname()[1]
        try:
            async with listener:
                task_status.started(self)
                while True:
                    tcp = await listener.accept()
                    stream: trio.abc.Stream = tcp
                    if self.tls == "implicit":
                        stream = trio.SSLStream(tcp, self.server_ssl, server_side=True)
                    conn = FakeConnection(stream, self)
                    self.connections.append(conn)
                    await self._send.send(conn)
        finally:
            with trio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """Close every connection accepted so far."""
        for conn in self.connections:
            await conn.aclose()

    async def accept(self) -> FakeConnection:
        """The next connection the proxy opens."""
        with trio.fail_after(IO_TIMEOUT):
            return await self._receive.receive()


class RawClient(Peer):
    """A raw client connection to the proxy."""

    @classmethod
    async def connect(
        cls, port: int, ctx: ssl.SSLContext | None, *, greeting: bool = True
    ) -> RawClient:
        """Connect to 127.0.0.1:``port`` (TLS verifying ``localhost`` when ``ctx``);
        reads the greeting unless told not to."""
        with trio.fail_after(IO_TIMEOUT):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream: trio.abc.Stream = tcp
        if ctx is not None:
            stream = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        client = cls(stream)
        if greeting:
            line = await client.read_line()
            assert line.startswith(b"* OK "), line
        return client

    @property
    def local_port(self) -> int:
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        return int(stream.socket.getsockname()[1])

    async def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send ``tag text`` CRLF and read until the tagged response."""
        await self.send(tag + b" " + text + b"\r\n")
        return await self.read_response(tag)


async def login(
    client: RawClient,
    fake: FakeUpstream,
    user: str = "user",
    password: str = "pass",  # noqa: S107 - the fake accepts anything
    **script: Any,
) -> FakeConnection:
    """Log ``client`` in through the proxy with the fake playing the server
    (:meth:`FakeConnection.login` with ``script``); returns the fake's connection."""
    await client.send(f"L LOGIN {user} {password}\r\n".encode())
    conn = await fake.accept()
    await conn.login(**script)
    reply = await client.read_line()
    assert reply.startswith(b"L OK "), reply
    return conn


async def idling(client: RawClient, conn: FakeConnection) -> bytes:
    """The client's ``a IDLE`` reaches the fake, whose ``+ idling`` reaches the
    client; returns the upstream tag of the IDLE."""
    await client.send(b"a IDLE\r\n")
    tag, name, _ = await conn.read_command()
    assert name == b"IDLE"
    await conn.send(b"+ idling\r\n")
    assert await client.read_line() == b"+ idling\r\n"
    return tag


async def relayed_noop(client: RawClient, conn: FakeConnection, tag: bytes = b"b") -> None:
    """A NOOP from the client reaches the fake, and its answer the client: the
    session is still in step after whatever the test did before."""
    await client.send(tag + b" NOOP\r\n")
    upstream_tag, name, _ = await conn.read_command()
    assert name == b"NOOP"
    await conn.send(upstream_tag + b" OK NOOP completed\r\n")
    assert await client.read_line() == tag + b" OK NOOP completed\r\n"


def caps_of(line: bytes) -> set[str]:
    """The capability names of a ``* CAPABILITY`` line or a ``[CAPABILITY]`` code."""
    match = re.search(rb"CAPABILITY ([^\]\r]*)", line)
    assert match is not None, line
    return set(match.group(1).decode().split())
