"""A lean TLS stream for Trio: a non-blocking :class:`ssl.SSLSocket` awaited with
:func:`trio.lowlevel.wait_readable` / :func:`~trio.lowlevel.wait_writable`.

:class:`trio.SSLStream` runs OpenSSL over memory BIOs and moves every record
through Python, with locks and several scheduler passes per read and write: on
the proxy's round trip (two TLS legs) that alone costs more than all of the IMAP
work, and it reads a 4 KiB record at a time. Here OpenSSL reads and writes the
socket itself; a read or write that can complete at once costs one system call
and one scheduler pass, and :meth:`TlsStream.receive_some` gathers the records that
are already there into one chunk.

Semantics, as the rest of the proxy needs them:

* one task may send while another receives (the session's reader and the upstream
  reader); the callers serialise their own sends;
* :meth:`~TlsStream.receive_some` returns ``b""`` at the peer's close, with or
  without close_notify (IMAP frames itself; a truncated frame is detected there);
* errors are :class:`trio.BrokenResourceError` with the :mod:`ssl` or OS error as
  ``__cause__``; a send cancelled half-way leaves the stream broken, as
  :class:`trio.SSLStream` does;
* :meth:`~TlsStream.aclose` sends close_notify if the socket takes it at once, and
  never waits.

:func:`start_tls` wraps a connected :class:`trio.SocketStream` (implicit TLS, or
after STARTTLS) and does the handshake; any other stream gets a
:class:`trio.SSLStream`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

__all__ = ["TlsStream", "start_tls"]

_T = TypeVar("_T")

#: A first read of at least this many octets is followed by reads of whatever
#: else is already there (bulk data); smaller ones (a status line) return at once.
_GATHER_FROM = 4096
_DEFAULT_RECEIVE = 64 * 1024


class TlsStream(trio.abc.Stream):
    """A TLS connection over a non-blocking socket (see the module docstring)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._closed = False
        self._broken: BaseException | None = None
        self._drained = False  # the last read returned less than asked
        self._eof = False  # the peer's close was seen while gathering
        self._pending_error: BaseException | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "broken" if self._broken else "open"
        return f"TlsStream({self._sock.version()}, {state})"

    # -- information ---------------------------------------------------------------------

    @property
    def socket(self) -> ssl.SSLSocket:
        return self._sock

    def version(self) -> str | None:
        return self._sock.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._sock.cipher()

    def getpeercert(self) -> dict[str, object] | None:
        return self._sock.getpeercert()  # type: ignore[return-value]

    # -- handshake -----------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the TLS handshake.

        Raises:
            trio.BrokenResourceError: it failed (``__cause__``: the :mod:`ssl` error,
                e.g. :class:`ssl.SSLCertVerificationError`).
        """
        await self._io(self._sock.do_handshake)

    # -- trio.abc.Stream -------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        size = _DEFAULT_RECEIVE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            self._broken = error
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError(str(error)) from error
        waited = False
        if self._drained and not self._sock.pending():
            # The last read emptied the socket: wait before trying (a read now
            # would almost always fail, one system call for nothing).
            self._drained = False
            await self._wait(trio.lowlevel.wait_readable)
            waited = True
        data = await self._io(self._recv, size, yield_after=not waited)
        self._drained = 0 < len(data) < size
        if len(data) >= _GATHER_FROM and len(data) < size:
            parts = [data]
            total = len(data)
            while total < size:
                try:
                    more = self._sock.recv(size - total)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break  # nothing more now
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    self._eof = True  # reported by the next call
                    break
                except (ssl.SSLError, OSError) as exc:
                    self._pending_error = exc  # raised by the next call
                    break
                if not more:
                    self._eof = True
                    break
                parts.append(more)
                total += len(more)
            if len(parts) > 1:
                data = b"".join(parts)
            self._drained = total < size
        return data

    def _recv(self, size: int) -> bytes:
        try:
            return self._sock.recv(size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""  # close_notify, or a close without it

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        view = memoryview(data).cast("B")
        total = len(view)
        if not total:
            await trio.lowlevel.checkpoint()
            return
        sent = 0

        def send() -> int:
            # Without partial writes, OpenSSL writes all of it or asks to be called
            # again with the same octets (which this does, from ``sent``).
            return self._sock.send(view[sent:])

        await trio.lowlevel.checkpoint_if_cancelled()  # before anything is written
        while sent < total:
            try:
                sent += await self._io(send, yield_after=False, check=False)
            except trio.Cancelled as exc:
                self._broken = exc  # cancelled while OpenSSL held part of a record
                raise

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self._sock)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._sock)
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._sock.unwrap()  # close_notify, if the socket takes it now
        self._sock.close()
        await trio.lowlevel.checkpoint()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("the TLS stream is broken") from self._broken

    async def _io(
        self,
        operation: Callable[..., _T],
        *args: int,
        yield_after: bool = True,
        check: bool = True,
    ) -> _T:
        """Run a non-blocking SSL operation, waiting for the socket as OpenSSL asks.

        Cancellation is checked first. When the operation completes at once it
        takes one scheduler pass (as trio's sockets do), except for writes
        (``yield_after=False``): the proxy always follows a write with a read, which
        yields, and a pass per write was a tenth of a round trip's cost."""
        if check:
            await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                await self._wait(trio.lowlevel.wait_readable)
            except ssl.SSLWantWriteError:
                await self._wait(trio.lowlevel.wait_writable)
            except (ssl.SSLError, OSError) as exc:
                if self._closed:
                    raise trio.ClosedResourceError("the TLS stream was closed") from None
                self._broken = exc
                raise trio.BrokenResourceError(str(exc)) from exc
            else:
                if not waited and yield_after:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return result
            waited = True

    async def _wait(self, wait: Callable[[ssl.SSLSocket], Awaitable[None]]) -> None:
        try:
            await wait(self._sock)
        except trio.BusyResourceError:
            # The other direction's task waits on the same readiness (OpenSSL asked
            # a write to read, e.g. a TLS 1.3 key update): poll briefly instead.
            await trio.sleep(0.001)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the TLS stream was closed") from None


async def start_tls(
    stream: trio.abc.Stream,
    ctx: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
) -> TlsStream | trio.SSLStream[trio.abc.Stream]:
    """Wrap a connected stream in TLS and run the handshake.

    A :class:`trio.SocketStream` becomes a :class:`TlsStream` (its socket is taken
    over); other streams get a :class:`trio.SSLStream`. On failure the connection
    is closed.

    Raises:
        trio.BrokenResourceError: the handshake failed (``__cause__`` tells why).
    """
    if not isinstance(stream, trio.SocketStream):
        tls_stream = trio.SSLStream(
            stream, ctx, server_side=server_side, server_hostname=server_hostname
        )
        try:
            await tls_stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls_stream
    raw = socket.socket(fileno=stream.socket.detach())
    raw.setblocking(False)
    try:
        sock = ctx.wrap_socket(
            raw,
            server_side=server_side,
            server_hostname=server_hostname,
            do_handshake_on_connect=False,
        )
    except BaseException:
        raw.close()
        raise
    tls = TlsStream(sock)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls
