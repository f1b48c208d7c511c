"""Connections to upstream IMAP servers.

An :class:`UpstreamConnection` owns one connection to a server: its byte stream,
a framer in the client role, and its own tag space (``P1``, ``P2``, ...). Every
command -- a client's or the proxy's own -- becomes a :class:`Request` with a fresh
upstream tag; the connection remembers which request each tag belongs to and hands
the tagged response back to its owner, so client tags never reach the server and
the proxy can send CAPABILITY, NOOP or ID at any time without colliding with a
client's tags.

Life of a connection:

1. :meth:`UpstreamConnection.open` connects (timeout ``upstream_connect``), does
   implicit TLS or STARTTLS with certificate and host-name verification, reads the
   greeting (a PREAUTH greeting is refused: the proxy must log in as the client's
   user) and learns the capabilities. On STARTTLS, anything the server sent after
   its OK is discarded and CAPABILITY is asked again over TLS.
2. :meth:`~UpstreamConnection.identify` sends ID (with the client's address for
   trusted upstreams) and :meth:`~UpstreamConnection.authenticate` logs in with
   the client's credentials, preferring ``AUTHENTICATE PLAIN`` (exact bytes,
   authzid) and falling back to LOGIN.
3. :meth:`~UpstreamConnection.run` is the reader task of the relay phase. It never
   awaits anything but the server's socket and the downstream's flush: tagged
   responses go to their request's owner, continuation requests to the request
   that is sending a literal (or, for IDLE, to the client), untagged responses to
   the downstream -- except while a request of the proxy's own is the oldest in
   flight, whose untagged results it collects itself.

Writes go through :meth:`~UpstreamConnection.send_command`, which sends a command's
literals synchronizing and waits for each ``+`` (see docs/codec.md, "Relaying
commands safely"): when the server refuses the command instead, the caller learns
it and drains the client's literal rather than sending it.
"""

from __future__ import annotations

import base64
import itertools
import select
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from imapproxy.audit import CommandAudit
from imapproxy.capabilities import is_hop_by_hop
from imapproxy.config import Timeouts, Upstream
from imapproxy.logs import get_logger
from imapproxy.tls import describe
from imapproxy.tlsstream import TlsStream, start_tls
from imapproxy.wire import (
    NEED_DATA,
    EndOfStream,
    Frame,
    FramePart,
    Framer,
    LiteralChunk,
    RemoteProtocolError,
    Response,
    Role,
    build_command,
)
from imapproxy.wire.commands import AuthenticateArgs, CommandArgs, IdArgs, LoginArgs, NoArgs
from imapproxy.wire.reader import ParseError
from imapproxy.wire.responses import CapabilityData, Kind, has_capability
from imapproxy.wire.values import Secret

if TYPE_CHECKING:
    from imapproxy.naming import Listing
    from imapproxy.sessioncache import Fill, Merge

__all__ = [
    "Credentials",
    "Downstream",
    "Request",
    "UpstreamConnection",
    "UpstreamError",
]

log = get_logger("imapproxy.upstream")

RECEIVE_SIZE = 256 * 1024
#: Untagged responses that always reach the client, even while a command of the
#: proxy's own is the oldest in flight: mailbox updates (RFC 9051 section 7.4)
#: and status responses (alerts, BYE), never an answer to a command.
MAILBOX_UPDATES = frozenset(
    {"EXISTS", "EXPUNGE", "RECENT", "FETCH", "VANISHED", "FLAGS", "OK", "NO", "BAD", "BYE"}
)
COALESCE = 64 * 1024
"""Octets of a streamed literal gathered from several reads into one write to the
client while more of the literal is on its way (Dovecot's TLS records carry 4 KiB)."""


class UpstreamError(Exception):
    """The upstream cannot be used: unreachable, TLS failure, bad greeting,
    protocol violation or disconnect. ``str()`` is safe to log and to show."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client authenticated with; the proxy replays it upstream.

    ``authzid`` is the SASL authorization identity (empty: none).
    """

    user: str
    password: Secret
    authzid: str = ""
    mechanism: str = "LOGIN"  # LOGIN (the command), PLAIN, or AUTH=LOGIN

    def __repr__(self) -> str:
        return f"Credentials({self.user!r}, mechanism={self.mechanism})"


@dataclass(eq=False, slots=True)
class Request:
    """One command in flight on an upstream connection.

    ``client_tag`` is None for the proxy's own commands. ``relay_continuations``
    sends the server's ``+`` to the client (IDLE) instead of to the literal sender.
    """

    tag: bytes
    name: str
    client_tag: bytes | None = None
    relay_continuations: bool = False
    started: float = 0.0
    #: Since when the server owes an answer: the whole command is on the wire, or
    #: a literal's announcement waits for "+". None while the proxy is still
    #: sending (the client's literal data): a server waiting for it is not slow.
    asked: float | None = None
    untagged: list[Response] = field(default_factory=list, repr=False)
    #: What the session keeps about the command (its audit record).
    note: CommandAudit | None = field(default=None, repr=False)
    #: For a LIST/LSUB under mailbox renaming: the client's patterns, which the
    #: (translated) answers must match to be shown.
    listing: Listing | None = field(default=None, repr=False)
    #: For a FETCH under a ``cache`` rule: what its responses fill the cache with.
    fill: Fill | None = field(default=None, repr=False)
    #: A command of the proxy's own that collects FETCH responses (see command()).
    collect_fetch: bool = False
    #: For a FETCH partly answered from the cache: what its responses get added.
    merge: Merge | None = field(default=None, repr=False)
    result: Response | None = None
    done: trio.Event = field(default_factory=trio.Event, repr=False)
    _continuation: trio.Event | None = field(default=None, repr=False)

    @property
    def status(self) -> str | None:
        """OK / NO / BAD / BYE of the tagged response, once done."""
        return self.result.name if self.result is not None else None


class Downstream(Protocol):
    """Where a connection delivers what the server sends (a client session).

    The methods that take data only buffer it; :meth:`upstream_flush` writes.
    """

    def upstream_response(self, response: Response, request: Request | None) -> None:
        """A whole untagged response, a continuation (for a relaying request) or
        a tagged response (``request`` is its owner; it is already marked done)."""

    def upstream_part(self, part: FramePart | LiteralChunk) -> None:
        """A piece of a response whose literal streams (a large FETCH body)."""

    async def upstream_flush(self) -> None: ...

    def upstream_continuation(self, request: Request) -> None:
        """The server sent ``+`` for a relaying request, before it is relayed."""


class InFlight:
    """The requests in flight on a session's server side: a connection of its
    own, or its lane of a shared one (:class:`imapproxy.mux.Lane`)."""

    _pending: dict[bytes, Request]
    _order: deque[Request]

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def requests(self) -> tuple[Request, ...]:
        """The requests in flight, oldest first."""
        return tuple(self._order)

    @property
    def oldest(self) -> Request | None:
        return self._order[0] if self._order else None

    def pending(self, tag: bytes) -> Request | None:
        """The request in flight under the upstream tag ``tag`` (None: unknown or done)."""
        return self._pending.get(tag)


class UpstreamConnection(InFlight):
    """One connection to an upstream server (see the module docstring)."""

    def __init__(
        self,
        config: Upstream,
        stream: trio.abc.Stream,
        timeouts: Timeouts,
        *,
        tag_prefix: str = "P",
    ) -> None:
        self.config = config
        self.timeouts = timeouts
        self._stream = stream
        self._framer = Framer(Role.CLIENT)
        self._tags = (f"{tag_prefix}{n}".encode("ascii") for n in itertools.count(1))
        self._pending: dict[bytes, Request] = {}
        self._order: deque[Request] = deque()
        self._sending_literal: Request | None = None
        # The request whose command is partly written: a command of the proxy's
        # own waits until it is whole, so commands never interleave on the wire.
        self._writing: Request | None = None
        self._written = trio.Event()
        self.capabilities: tuple[str, ...] = ()
        self.greeting: Response | None = None
        self.downstream: Downstream | None = None
        self.closed = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_receive = trio.current_time()
        #: Since when a write to the server has been blocked (None: not writing).
        self.sending_since: float | None = None
        self.tls: dict[str, str] = {}

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._pending)} in flight"
        return f"UpstreamConnection({self.config.name!r}, {state})"

    # -- opening ------------------------------------------------------------------

    @classmethod
    async def open(
        cls, config: Upstream, ctx: ssl.SSLContext | None, timeouts: Timeouts
    ) -> UpstreamConnection:
        """Connect, secure the connection as configured and read the greeting.

        Raises:
            UpstreamError: any failure, with a reason fit for the log.
        """
        try:
            with trio.fail_after(timeouts.upstream_connect):
                return await cls._open(config, ctx, timeouts)
        except trio.TooSlowError:
            raise UpstreamError(
                f"{config.address} did not get ready in time (connect, TLS, greeting: "
                f"{timeouts.upstream_connect:g} s)"
            ) from None

    @classmethod
    async def _open(
        cls, config: Upstream, ctx: ssl.SSLContext | None, timeouts: Timeouts
    ) -> UpstreamConnection:
        host, port = config.address.host, config.address.port
        server_name = config.server_name or host
        try:
            tcp: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise UpstreamError(
                f"connect to {config.address} failed: {exc.strerror or exc}"
            ) from None
        stream = tcp
        if config.tls == "implicit":
            assert ctx is not None
            stream = await _handshake(tcp, ctx, server_name, timeouts)
        conn = cls(config, stream, timeouts)
        conn._record_tls()
        try:
            await conn._greeting()
            if config.tls == "starttls":
                assert ctx is not None
                await conn._starttls(ctx, server_name)
            if not conn.capabilities:
                await conn.refresh_capabilities()
        except BaseException:
            await conn.aclose()
            raise
        return conn

    def _record_tls(self) -> None:
        if isinstance(self._stream, TlsStream | trio.SSLStream):
            self.tls = describe(self._stream)

    async def _greeting(self) -> None:
        greeting = await self._read_response()
        self.greeting = greeting
        if greeting.kind is not Kind.UNTAGGED or greeting.name not in ("OK", "PREAUTH", "BYE"):
            raise UpstreamError("upstream sent no greeting")
        if greeting.name == "BYE":
            text = greeting.condition.text if greeting.condition else b""
            raise UpstreamError(f"upstream refused the connection: {_text(text)}")
        if greeting.name == "PREAUTH":
            raise UpstreamError(
                "upstream greeted with PREAUTH; the proxy must log in as the client's user"
            )
        self._capabilities_from(greeting)

    async def _starttls(self, ctx: ssl.SSLContext, server_name: str) -> None:
        if not self.capabilities:
            await self.refresh_capabilities()
        if not has_capability(self.capabilities, "STARTTLS"):
            raise UpstreamError("upstream does not offer STARTTLS")
        result, _ = await self.simple_command("STARTTLS", NoArgs())
        if result.name != "OK":
            raise UpstreamError("upstream refused STARTTLS")
        # Nothing the server sent before the handshake may count (RFC 9051 s. 11.1).
        self._framer.discard_buffered()
        self.capabilities = ()
        self._stream = await _handshake(self._stream, ctx, server_name, self.timeouts)
        self._record_tls()
        await self.refresh_capabilities()

    def _capabilities_from(self, response: Response) -> bool:
        """Take capabilities from a ``[CAPABILITY ...]`` code, if there is one."""
        if not response.is_status or b"[" not in response.frame.raw[:64]:
            return False
        try:
            condition = response.condition
        except ParseError:
            return False
        code = condition.code if condition is not None else None
        if code is not None and code.name == "CAPABILITY":
            self.capabilities = code.capabilities
            return True
        return False

    async def refresh_capabilities(self) -> None:
        result, untagged = await self.simple_command("CAPABILITY", NoArgs())
        if result.name != "OK":
            raise UpstreamError("upstream refused CAPABILITY")
        for response in untagged:
            if response.name == "CAPABILITY":
                try:
                    data = response.data
                except ParseError as exc:
                    raise UpstreamError(f"upstream sent a bad CAPABILITY: {exc.text}") from None
                if isinstance(data, CapabilityData):
                    self.capabilities = data.capabilities
        if not self._capabilities_from(result) and not self.capabilities:
            raise UpstreamError("upstream sent no capabilities")

    def has(self, capability: str) -> bool:
        return has_capability(self.capabilities, capability)

    @property
    def end_to_end_capabilities(self) -> tuple[str, ...]:
        return tuple(cap for cap in self.capabilities if not is_hop_by_hop(cap))

    # -- login phase: one command at a time, before the reader task runs ------------

    async def simple_command(
        self, name: str, args: object, *, literal_plus: bool = False
    ) -> tuple[Response, list[Response]]:
        """Send a command of the proxy's own and read until its tagged response.

        Only before :meth:`run` starts. Returns the tagged response and the
        untagged ones that came before it.
        """
        tag = next(self._tags)
        frame = build_command(tag, name, args, literal_plus=literal_plus)  # type: ignore[arg-type]
        segments = frame.sync_segments()
        untagged: list[Response] = []
        await self._send(segments[0])
        for segment in segments[1:]:
            while True:
                response = await self._read_response()
                if response.kind is Kind.CONTINUATION:
                    break
                if response.kind is Kind.TAGGED and response.tag == tag:
                    return response, untagged
                untagged.append(response)
            await self._send(segment)
        while True:
            response = await self._read_response()
            if response.kind is Kind.TAGGED and response.tag == tag:
                return response, untagged
            if response.kind is Kind.CONTINUATION:
                raise UpstreamError(f"upstream asked for a continuation of {name}")
            if response.kind is Kind.UNTAGGED and response.name == "BYE":
                text = response.condition.text if response.condition else b""
                raise UpstreamError(f"upstream closed the connection: {_text(text)}")
            untagged.append(response)

    async def identify(self, params: Iterable[tuple[bytes, bytes | None]]) -> Response | None:
        """Send ID (RFC 2971) when the server has it; its tagged response (None:
        not sent)."""
        if not self.has("ID"):
            return None
        items = tuple(params)
        result, _ = await self.simple_command("ID", IdArgs(items or None))
        return result

    async def authenticate(self, credentials: Credentials) -> Response:
        """Log in; returns the server's tagged response (OK or the refusal)."""
        user = credentials.user.encode("utf-8")
        password = credentials.password.reveal()
        if self.has("AUTH=PLAIN") or credentials.authzid:
            message = credentials.authzid.encode("utf-8") + b"\0" + user + b"\0" + password
            encoded = base64.b64encode(message)
            if self.has("SASL-IR"):
                result, _ = await self.simple_command(
                    "AUTHENTICATE", AuthenticateArgs("PLAIN", Secret(encoded))
                )
            else:
                result = await self._authenticate_plain(encoded)
        else:
            # Synchronizing literals even where LITERAL+ is offered: the proxy
            # sends nothing a server could read as a command after a refusal.
            result, _ = await self.simple_command("LOGIN", LoginArgs(user, Secret(password)))
        if result.name == "OK" and not self._capabilities_from(result):
            await self.refresh_capabilities()
        return result

    async def _authenticate_plain(self, encoded: bytes) -> Response:
        tag = next(self._tags)
        await self._send(tag + b" AUTHENTICATE PLAIN\r\n")
        sent = False
        while True:
            response = await self._read_response()
            if response.kind is Kind.TAGGED and response.tag == tag:
                return response
            if response.kind is Kind.CONTINUATION:
                # A second challenge after the response: cancel (RFC 9051 s. 6.2.2).
                await self._send(b"*\r\n" if sent else encoded + b"\r\n")
                sent = True

    async def _read_response(self) -> Response:
        """The next whole response (login phase), with the response timeout."""
        with trio.move_on_after(self.timeouts.upstream_response) as scope:
            while True:
                try:
                    event = self._framer.next_event()
                except RemoteProtocolError as exc:
                    raise UpstreamError(f"upstream protocol error: {exc.text}") from None
                if event is NEED_DATA:
                    await self._receive()
                    continue
                if isinstance(event, Frame):
                    try:
                        return Response.parse(event)
                    except ParseError as exc:
                        raise UpstreamError(f"upstream sent garbage: {exc.text}") from None
                if isinstance(event, EndOfStream):
                    raise UpstreamError("upstream closed the connection")
                raise UpstreamError("upstream sent an unexpected literal before login")
        assert scope.cancelled_caught
        raise UpstreamError("upstream did not answer in time")

    async def _receive(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamError(f"upstream connection lost: {exc}") from None
        except RemoteProtocolError as exc:
            raise UpstreamError(f"upstream protocol error: {exc.text}") from None
        if not data:
            self._framer.receive_eof()
            return
        self.last_receive = trio.current_time()
        self.bytes_in += len(data)
        try:
            self._framer.receive_data(data)
        except RemoteProtocolError as exc:  # pragma: no cover - receive_data does not raise
            raise UpstreamError(f"upstream protocol error: {exc.text}") from None

    async def _send(self, data: bytes | memoryview) -> None:
        self.sending_since = trio.current_time()
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamError(f"upstream connection lost: {exc}") from None
        finally:
            self.sending_since = None
        self.bytes_out += len(data)

    # -- relay phase ----------------------------------------------------------------

    def new_request(
        self,
        name: str,
        client_tag: bytes | None = None,
        *,
        relay_continuations: bool = False,
        tag: bytes | None = None,
    ) -> Request:
        """Register a request with a fresh upstream tag, or ``tag`` (one the
        multiplexer chose), in flight from now on."""
        request = Request(
            tag or next(self._tags),
            name,
            client_tag,
            relay_continuations=relay_continuations,
            started=trio.current_time(),
        )
        self._pending[request.tag] = request
        self._order.append(request)
        return request

    async def begin_writing(self, request: Request) -> None:
        """Claim the wire for ``request``'s command (written across several awaits,
        until :meth:`end_writing`); waits while another command is half-written."""
        while self._writing is not None and self._writing is not request:
            await self._written.wait()
        self._writing = request

    def end_writing(self, request: Request) -> None:
        """``request``'s command is written in full (or was refused part-way)."""
        request.asked = trio.current_time()
        if self._writing is request:
            self._writing = None
            self._written.set()
            self._written = trio.Event()

    async def command(
        self, name: str, args: CommandArgs, *, collect_fetch: bool = False
    ) -> Request:
        """Send a command of the proxy's own during the relay phase and wait for
        its completion (e.g. NOOP, CAPABILITY, ID). It waits until no client command
        is half-written. Its untagged responses are collected in
        ``request.untagged`` while it is the oldest request in flight; updates that
        arrive while a client command is older go to the client, as they should.
        ``collect_fetch``: mailbox updates (FETCH, EXPUNGE, EXISTS, ...) are
        collected too, in order (the caller passes on, in that order, those that
        are not its answers).

        Raises:
            UpstreamError: the connection failed.
        """
        while self._writing is not None:
            await self._written.wait()
        request = self.new_request(name)
        request.collect_fetch = collect_fetch
        frame = build_command(request.tag, name, args)
        if frame.literals:
            raise ValueError("commands of the proxy's own carry no literals")
        self._writing = request
        try:
            await self._send(frame.raw)
        finally:
            self.end_writing(request)
        await request.done.wait()
        if request.result is None:
            raise UpstreamError("upstream connection lost")
        return request

    async def send_raw(self, data: bytes | memoryview) -> None:
        """Write bytes that belong to the command being sent (literal data, DONE)."""
        await self._send(data)

    async def send_segment(self, request: Request, data: bytes, *, literal: bool) -> bool:
        """Write part of ``request``'s command. With ``literal``, the part ends with
        a synchronizing literal's announcement: wait for the server's ``+``.

        Returns False when the server completed the request instead (a refusal):
        the caller must not send the literal.
        """
        if request.done.is_set():
            return False
        if not literal:
            await self._send(data)
            return True
        event = trio.Event()
        request._continuation = event
        self._sending_literal = request
        try:
            await self._send(data)
            request.asked = trio.current_time()
            await event.wait()  # set by the reader on "+" and on the tagged response
        finally:
            self._sending_literal = None
            request._continuation = None
            request.asked = None  # the literal's data comes from the client now
        return not request.done.is_set()

    def fail_pending(self) -> None:
        """Mark every request done without a result (connection gone)."""
        for request in self._order:
            request.done.set()
            if request._continuation is not None:
                request._continuation.set()
        self._pending.clear()
        self._order.clear()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and route responses until the server closes the connection.

        Raises:
            UpstreamError: the connection failed or the server violated the protocol.
        """
        downstream = self.downstream
        assert downstream is not None
        framer = self._framer
        mid_literal = False  # more of a streamed literal is on its way
        unflushed = 0  # literal octets handed downstream since the last flush
        task_status.started()
        try:
            while True:
                event = framer.next_event()
                if event is NEED_DATA:
                    if not mid_literal:
                        await downstream.upstream_flush()
                        unflushed = 0
                    await self._receive()
                    continue
                if isinstance(event, Frame):
                    self._route(Response.parse(event), downstream)
                elif isinstance(event, FramePart | LiteralChunk):
                    downstream.upstream_part(event)
                    if isinstance(event, LiteralChunk):
                        mid_literal = event.remaining > 0
                        unflushed += len(event.data)
                        if unflushed >= COALESCE:
                            await downstream.upstream_flush()
                            unflushed = 0
                elif isinstance(event, EndOfStream):
                    await downstream.upstream_flush()
                    self._lost()
                    return
                else:  # pragma: no cover - server-role events never come in the client role
                    raise UpstreamError(f"unexpected framing event {event!r}")
        except (ParseError, RemoteProtocolError) as exc:
            self._lost()
            raise UpstreamError(f"upstream protocol error: {exc.text}") from None
        except UpstreamError:
            self._lost()
            raise

    def _lost(self) -> None:
        self.closed = True
        self.fail_pending()

    def _route(self, response: Response, downstream: Downstream) -> None:
        kind = response.kind
        if kind is Kind.TAGGED:
            request = self._pending.pop(response.tag or b"", None)
            if request is None:
                if (response.tag or b"").upper() == b"DONE":
                    # The client's DONE crossed the server's end of IDLE and was
                    # read as a command named DONE; the proxy never uses that tag.
                    return
                raise UpstreamError("upstream sent a response with an unknown tag")
            self._order.remove(request)
            request.result = response
            request.done.set()
            self.end_writing(request)
            if request._continuation is not None:  # refused instead of "+"
                request._continuation.set()
            if request.client_tag is not None:
                downstream.upstream_response(response, request)
            return
        if kind is Kind.CONTINUATION:
            sending = self._sending_literal
            if sending is not None and sending._continuation is not None:
                sending._continuation.set()
                return
            oldest = self.oldest
            if oldest is not None and oldest.relay_continuations:
                downstream.upstream_continuation(oldest)
                downstream.upstream_response(response, oldest)
                return
            raise UpstreamError("upstream sent an unexpected continuation request")
        oldest = self.oldest
        if (
            oldest is not None
            and oldest.client_tag is None
            and (
                response.name not in MAILBOX_UPDATES
                or (oldest.collect_fetch and response.name != "BYE")
            )
        ):
            oldest.untagged.append(response)
            return
        downstream.upstream_response(response, None)

    # -- closing ----------------------------------------------------------------------

    async def logout(self) -> None:
        """Say LOGOUT (best effort, briefly) and close. For a connection whose
        reader task is not running."""
        if self.closed:
            await self.aclose()
            return
        try:
            with trio.move_on_after(min(2.0, self.timeouts.upstream_response)):
                tag = next(self._tags)
                await self._send(tag + b" LOGOUT\r\n")
                while True:
                    response = await self._read_response()
                    if response.kind is Kind.TAGGED and response.tag == tag:
                        break
        except UpstreamError:
            pass
        finally:
            await self.aclose()

    def quiet(self) -> bool:
        """Whether an idle connection has nothing to read: no BYE, no end of the
        connection, no data buffered (checked without reading; for the pool)."""
        if self.closed or self._framer.buffered:
            return False
        sock = getattr(self._stream, "socket", None)
        if sock is None or not hasattr(select, "POLLRDHUP"):
            return True  # cannot tell
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    async def aclose(self) -> None:
        self.closed = True
        self.fail_pending()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)


async def _handshake(
    stream: trio.abc.Stream, ctx: ssl.SSLContext, server_name: str, timeouts: Timeouts
) -> trio.abc.Stream:
    try:
        with trio.fail_after(timeouts.tls_handshake):
            tls = await start_tls(stream, ctx, server_side=False, server_hostname=server_name)
    except trio.TooSlowError:
        raise UpstreamError("TLS handshake with upstream timed out") from None
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        raise UpstreamError(f"TLS handshake with upstream failed: {_reason(cause)}") from None
    return tls


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) if exc is not None else "connection closed"


def _text(text: bytes) -> str:
    return text.decode("utf-8", "replace")[:200]
