"""A small raw IMAP client for tests that need exact bytes on the wire.

:class:`RawImap` is a trio stream plus a receive buffer. It sends whatever bytes a
test gives it (pipelined commands, literals, injection attempts) and reads the
server's output back as lines or as whole responses: a response line that ends
with a literal announcement (``{n}``) continues after the literal's octets, so a
FETCH body arrives as one item. It never interprets anything else.

Every read waits for the server; wrap tests in ``trio.fail_after``. EOF while a
read needs more data raises :class:`EOFError`; a TLS connection closed without
close_notify (what the proxy does) counts as EOF.

    client = await RawImap.connect("localhost", port, ssl_context=ctx)
    greeting = await client.read_line()
    await client.send(b"a NOOP\\r\\n")
    responses = await client.read_until_tagged(b"a")  # [..., b"a OK NOOP completed\\r\\n"]
"""

from __future__ import annotations

import base64
import re
import ssl
from types import TracebackType
from typing import Self

import trio

__all__ = ["RawImap", "caps_of", "plain", "tagged_status"]

_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}\r\n\Z")
_RECEIVE = 256 * 1024


class RawImap:
    """A raw IMAP client connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self.eof = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> RawImap:
        """TCP, and TLS at once when ``ssl_context`` is given (implicit TLS)."""
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        client = cls(stream)
        if ssl_context is not None:
            await client.start_tls(ssl_context, server_hostname or host)
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    # -- sending ----------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write ``data`` in one go (one TLS record or TCP write when it fits)."""
        await self.stream.send_all(data)

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        """TLS handshake over the current stream (after ``STARTTLS``'s OK).

        Bytes the server sent before the handshake and the client has not read
        would be a STARTTLS injection; they fail the test here.
        """
        assert not self._buf, f"plaintext after STARTTLS's OK: {bytes(self._buf)!r}"
        tls = trio.SSLStream(self.stream, ctx, server_hostname=server_hostname)
        await tls.do_handshake()
        self.stream = tls

    # -- receiving --------------------------------------------------------------------

    async def _fill(self, size: int = _RECEIVE) -> bool:
        """Read more (at most ``size`` octets) into the buffer; False at EOF."""
        if self.eof:
            return False
        try:
            data = await self.stream.receive_some(size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True

    async def read_line(self) -> bytes:
        """The next line, CRLF included."""
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[: end + 2])
                del self._buf[: end + 2]
                return line
            if not await self._fill():
                raise EOFError(f"EOF before a line ended; buffered: {bytes(self._buf)[:200]!r}")

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not await self._fill():
                raise EOFError(f"EOF after {len(self._buf)} of {size} literal octets")
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def read_response(self) -> bytes:
        """One whole response: a line, plus literal octets and continuation lines."""
        parts = [await self.read_line()]
        while True:
            match = _LITERAL_AT_END.search(parts[-1])
            if match is None:
                return b"".join(parts)
            parts.append(await self.read_exactly(int(match.group(1))))
            parts.append(await self.read_line())

    async def read_until_tagged(self, tag: bytes) -> list[bytes]:
        """Responses up to and including the tagged one for ``tag``.

        Raises AssertionError at a ``+`` continuation request: a test that expects
        one reads it with :meth:`read_response`.
        """
        responses: list[bytes] = []
        prefix = tag + b" "
        while True:
            response = await self.read_response()
            responses.append(response)
            if response.startswith(prefix):
                return responses
            assert not response.startswith(b"+"), f"unexpected continuation: {responses!r}"

    async def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send ``TAG TEXT\\r\\n`` and read until its tagged response."""
        await self.send(tag + b" " + text + b"\r\n")
        return await self.read_until_tagged(tag)

    async def read_to_eof(self, chunk: int = _RECEIVE) -> bytes:
        """Everything until the server closes the connection, read ``chunk`` octets
        at a time (small chunks make a slow reader: the server's sends block)."""
        while await self._fill(chunk):
            pass
        data = bytes(self._buf)
        self._buf.clear()
        return data


def tagged_status(responses: list[bytes]) -> bytes:
    """``OK`` / ``NO`` / ``BAD`` of the last response, plus the name of its response
    code if it has one: ``b"NO [TRYCREATE]"``, ``b"OK [CAPABILITY]"``."""
    _, _, rest = responses[-1].partition(b" ")
    status, _, text = rest.partition(b" ")
    if text.startswith(b"["):
        code = re.match(rb"\[([^\] ]*)", text)
        assert code is not None
        return status + b" [" + code.group(1) + b"]"
    return status


def caps_of(line: bytes) -> list[str]:
    """The capability names of ``* CAPABILITY ...`` or of a ``[CAPABILITY ...]`` code."""
    text = line.decode().strip()
    if "[CAPABILITY " in text:
        return text.split("[CAPABILITY ", 1)[1].split("]", 1)[0].split()
    assert text.startswith("* CAPABILITY "), text
    return text.split()[2:]


def plain(user: str, password: str, authzid: str = "") -> bytes:
    """The base64 SASL PLAIN message (RFC 4616) for AUTHENTICATE."""
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())
