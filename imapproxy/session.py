"""A client session: one client connection, from greeting to BYE.

:class:`ClientSession` is the server side of the proxy. It reads the client's
bytes with a :class:`~imapproxy.wire.Framer` in the server role and goes through
the RFC states:

* **Not authenticated.** Answered here: CAPABILITY (per state: before TLS on a
  STARTTLS listener, ``STARTTLS LOGINDISABLED`` and no ``AUTH=``), NOOP, ID,
  LOGOUT, STARTTLS (bytes pipelined after it are discarded), LOGIN (quoted or
  literal arguments) and AUTHENTICATE PLAIN / LOGIN (with SASL-IR). A login is
  routed (:class:`~imapproxy.router.Router`) and replayed upstream on a new
  :class:`~imapproxy.upstream.UpstreamConnection`; its refusal is relayed with
  the upstream's response code (``[REFERRAL]`` removed), after a delay that grows
  with the failures of the same (user, client IP). The whole phase has a deadline.
* **Authenticated / selected.** Every command is parsed (arguments included: a
  command the codec refuses gets its ``BAD`` and never reaches the server) and
  relayed as a :class:`~imapproxy.upstream.Request` with an upstream tag. The
  client's literals go upstream synchronizing; for APPEND the client gets ``+``
  only after the server gave one, so a refusal (``NO [TRYCREATE]``) arrives
  instead of ``+`` and the client never sends the message. The session answers
  CAPABILITY, ID and LOGOUT itself (hop-by-hop), refuses STARTTLS, LOGIN,
  AUTHENTICATE and COMPRESS there, and follows IDLE (the ``DONE`` line).

The upstream connection's reader task delivers responses through the
:class:`~imapproxy.upstream.Downstream` methods: tags are mapped back, CAPABILITY
lists and ``[CAPABILITY]`` codes become the proxy's, ``[REFERRAL]`` codes are
dropped, and the :class:`~imapproxy.mailbox.SelectedMailbox` model follows the
untagged responses. Output is buffered and flushed once per batch of input, so a
FETCH of 500 headers costs a handful of writes.

Ends: the client's LOGOUT (answered after the commands in flight complete), the
client's disconnect (the upstream is closed -- never completed with made-up bytes
when the client vanished mid-literal), the upstream's BYE or disconnect (the
client gets a BYE), a timeout, or the server's shutdown.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import ipaddress
import itertools
import re
import select
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

import trio

from imapproxy import __version__
from imapproxy.audit import CommandAudit, describe_args, mailbox_text
from imapproxy.logs import bind_context, bound_context, bound_logger, enabled_for, get_logger
from imapproxy.mailbox import SelectedMailbox
from imapproxy.mux import Lane, NotShared, flags_of
from imapproxy.naming import RENAMED_RESPONSES, Names, Untranslatable
from imapproxy.pool import Pooled, PoolKey
from imapproxy.router import normalise_user
from imapproxy.rules import (
    READONLY_DENY,
    CachePolicy,
    Context,
    Decision,
    Deny,
    Limits,
    Rewrite,
    canonical,
)
from imapproxy.sessioncache import Partial, SessionCache
from imapproxy.tls import describe
from imapproxy.tlsstream import start_tls
from imapproxy.upstream import Credentials, Request, UpstreamConnection, UpstreamError
from imapproxy.wire import (
    NEED_DATA,
    BadFrame,
    Command,
    ContinuationRequest,
    EndOfStream,
    Event,
    Frame,
    FramePart,
    Framer,
    LiteralChunk,
    LocalProtocolError,
    RemoteProtocolError,
    Response,
    Role,
    SequenceSet,
    build_command,
    build_response,
)
from imapproxy.wire.commands import (
    AppendArgs,
    AuthenticateArgs,
    CommandArgs,
    FetchArgs,
    IdArgs,
    ListArgs,
    LoginArgs,
    NoArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
)
from imapproxy.wire.reader import ParseError
from imapproxy.wire.responses import (
    CapabilityData,
    EsearchData,
    IdData,
    Kind,
    ListData,
    MailboxStatus,
    SearchData,
)
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import FetchItem, Mailbox, Secret

if TYPE_CHECKING:
    from imapproxy.config import Listener, Upstream
    from imapproxy.server import Proxy

__all__ = ["ClientSession", "State"]

log = get_logger("imapproxy.session")
audit_log = get_logger("imapproxy.audit")
trace_log = get_logger("imapproxy.trace")
#: The level of audit lines until rules choose one per command.
AUDIT_LEVEL = "debug"
_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

RECEIVE_SIZE = 256 * 1024
FLUSH_AT = 256 * 1024
_session_ids = itertools.count(1)

#: Commands the session answers or refuses itself once logged in.
_LOCAL_AFTER_LOGIN = frozenset(
    {
        "CAPABILITY",
        "ID",
        "LOGOUT",
        "STARTTLS",
        "LOGIN",
        "AUTHENTICATE",
        "COMPRESS",
        "UNAUTHENTICATE",
    }
)
#: Commands with mailbox arguments the codec does not parse (GenericArgs): with
#: mailbox rules or renaming loaded they are refused, and their capabilities
#: withheld. (ACL commands and GETQUOTAROOT are parsed: AclArgs; METADATA's:
#: MetadataArgs.)
_UNJUDGED = frozenset({"REPLACE", "NOTIFY"})
_UNJUDGED_CAPABILITIES = frozenset({"REPLACE", "NOTIFY", "CATENATE", "URL-PARTIAL"})
_UNJUDGED_DENY = Deny(text="Not available through this proxy", code="CANNOT")
_UNTRANSLATABLE = Deny(text="Mailbox name not valid on this server", code="CANNOT")
_UNMAPPED_KEYWORD = Deny(text="Search by this keyword with SEARCH, not here", code="CANNOT")
_CANNOT_RENAME = Deny(text="This mailbox cannot be renamed", code="NOPERM")
_UNAVAILABLE = Deny(text="Mail server unavailable, try again later", code="UNAVAILABLE")
_EXPUNGE_PENDING = Deny(text="Messages were expunged; NOOP, then retry", code="EXPUNGEISSUED")
#: Commands that select a mailbox (leaving the one selected).
_SELECTING = frozenset({"SELECT", "EXAMINE"})
#: Above this many ranges, a UID set the proxy sends is ``1:*`` instead (a command
#: line well within the 8,000 octets servers accept, RFC 7162 section 4).
_RANGES_IN_A_COMMAND = 200
#: How a command naming a hidden mailbox is refused: as if it did not exist.
_HIDDEN = Deny(text="Mailbox doesn't exist", code="NONEXISTENT")
#: Commands that act on the selected mailbox: rules see it among their mailboxes.
_ON_SELECTED = frozenset(
    {"FETCH", "STORE", "EXPUNGE", "SEARCH", "SORT", "THREAD", "COPY", "MOVE", "CLOSE", "REPLACE"}
)
#: The client's ID fields forwarded upstream: RFC 2971's standard ones only. Any
#: ``x-`` field could be one the upstream trusts from a proxy (x-originating-ip,
#: x-session-id, Dovecot's x-client-transport or x-multiplex), so none passes.
_ID_FORWARDED = frozenset(
    {
        b"name",
        b"version",
        b"os",
        b"os-version",
        b"vendor",
        b"support-url",
        b"address",
        b"date",
        b"command",
        b"arguments",
        b"environment",
    }
)
#: RFC 2971 limits: 30 pairs, values of 1024 octets.
_ID_MAX_PAIRS = 30
_ID_MAX_VALUE = 1024
#: Commands that leave no state on the upstream connection beyond the selected
#: mailbox (which UNSELECT clears) -- unless they enable CONDSTORE implicitly
#: (:data:`_STATEFUL_WORDS`). Others keep the connection out of the pool.
_STATELESS = frozenset(
    {
        "NOOP", "CHECK", "IDLE", "SELECT", "EXAMINE", "CLOSE", "UNSELECT", "CREATE",
        "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "STATUS",
        "APPEND", "NAMESPACE", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
        "SORT", "THREAD", "GETQUOTAROOT", "GETQUOTA", "UID SEARCH", "UID FETCH",
        "UID STORE", "UID COPY", "UID MOVE", "UID EXPUNGE", "UID SORT", "UID THREAD",
        "GETACL", "SETACL", "DELETEACL", "LISTRIGHTS", "MYRIGHTS", "GETMETADATA",
        "SETMETADATA",
    }
)  # fmt: skip
#: What enables CONDSTORE for the rest of the connection (RFC 7162 section 3.1),
#: or SEARCHRES's saved result: a command that mentions one is stateful.
_STATEFUL_WORDS = re.compile(rb"(?i)MODSEQ|CONDSTORE|CHANGEDSINCE|QRESYNC|(?<![\w$])\$(?![\w$])")
#: How a session may end for its upstream connection to be kept (not a bug, a
#: timeout or the upstream's own doing).
_POOLABLE_ENDS = frozenset({"logout", "client closed the connection", "client connection lost"})
#: Decisions a session keeps (by command name, mailboxes and APPEND size).
_MAX_DECISIONS = 256
#: The longest user name accepted (the failed-login table is keyed on it).
MAX_USER = 255


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class _Closed(Exception):
    """The session must end; ``bye`` (if any) was already written."""


@dataclass(eq=False, slots=True)
class _Forward:
    """A client command being relayed whose frame spans several framer events.

    ``processed``: octets of the client's frame (skeleton offsets) already sent
    upstream. ``deferred``: the command's arguments could not be checked before
    its complete frame arrived (a string literal, e.g. ``SELECT {5}``); the proxy
    accepts its (small) literals itself and relays the whole frame at the end.
    """

    command: Command
    request: Request | None = None
    processed: int = 0
    deferred: bool = False
    #: A rule made this SELECT an EXAMINE: the frame sent upstream is rebuilt.
    examine: bool = False
    #: The arguments with mailbox names in the upstream's form (``rewrite``):
    #: a whole frame is rebuilt from them.
    args: CommandArgs | None = None
    #: For an APPEND relayed as it arrives with its mailbox renamed: the offset
    #: where the client's mailbox argument ends, and what goes upstream instead.
    head: tuple[int, bytes] | None = None
    #: Its flag lists are mapped (``rewrite.flags``) as its octets go upstream.
    flags: Names | None = None
    #: The command name sent with ``args`` (None: the client's).
    name: str | None = None


class ClientSession:
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        proxy: Proxy,
        stream: trio.abc.Stream,
        peer: tuple[str, int],
        listener: Listener,
    ) -> None:
        self.proxy = proxy
        self.id = f"{next(_session_ids):x}"
        self.peer = peer
        self._peer_ip = ipaddress.ip_address(peer[0])
        self.listener = listener
        self.state = State.NOT_AUTHENTICATED
        self.tls = False
        self.user: str | None = None
        #: For the pool: (key, digest of the credentials, when the upstream checked
        #: them); and whether the connection got per-connection state.
        self._pool_entry: tuple[PoolKey, bytes, float] | None = None
        self._stateful = False
        self._ever_selected = False
        #: The part cache's side of this session (None: no cache configured).
        self.cache_side = SessionCache(self, proxy.cache) if proxy.cache is not None else None
        #: Whose mailboxes these are: the SASL authorization identity when the
        #: client gave one, else the login name. Rules see this user.
        self.identity: str | None = None
        #: The server side: a connection of its own, or a lane of a shared one.
        self.upstream: UpstreamConnection | Lane | None = None
        self.mailbox: SelectedMailbox | None = None
        self.enabled: set[str] = set()
        self.client_id: tuple[tuple[bytes, bytes | None], ...] = ()
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = trio.current_time()
        self._stream = stream
        limits = proxy.config.limits
        self._framer = Framer(
            Role.SERVER,
            max_line=limits.max_line,
            max_literal=limits.max_preauth_literal,
            max_nonsync_literal=None if proxy.capabilities.literal_plus else 4096,
        )
        self._out: list[bytes | memoryview] = []
        self._out_size = 0
        self._write_lock = trio.Lock()
        self._last_input = self.started
        self._flush_started = self._relayed_at = self.started
        self._cmd: _Forward | None = None
        self._idle: Request | None = None
        self._selecting: dict[Request, SelectedMailbox] = {}
        self._unselecting: set[Request] = set()
        #: Expunges (then EXISTS) that bring the session's numbering to its new
        #: dedicated connection's, held while its commands may not see them.
        self._unshown: list[bytes] = []
        #: Set once a move to a dedicated connection is over (the upstream reader
        #: waits for it: see _run_upstream).
        self._moving: trio.Event | None = None
        self._slot = trio.Event()
        self._bye_sent = False
        self._mid_response = False
        self._rewrite: Rewrite | None = None
        self._decisions: dict[tuple[object, ...], Decision] = {}
        self._selected_text: tuple[object, bool, str] = (None, False, "")
        self._trace_on = False
        self._rewrite_of: object = None
        self._held: list[bytes | memoryview] = []
        self._held_size = 0
        self._response_ended = trio.Event()
        self._close_reason = "client closed the connection"
        self._scope: trio.CancelScope | None = None
        self._draining = False

    def __repr__(self) -> str:
        user = f" {self.user!r}" if self.user else ""
        return f"ClientSession({self.id}, {self.state.value}{user})"

    # -- output ---------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue the session's own output for the client (sent at the next
        :meth:`flush`). While a streamed response is being relayed it is held
        back until the response ends: written inside a literal it would be read
        as message data."""
        if self._mid_response:
            self._held.append(data)
            self._held_size += len(data)
            return
        self._out.append(data)
        self._out_size += len(data)

    def _emit(self, data: bytes | memoryview) -> None:
        """Queue what the upstream sent (the reader task's output)."""
        if self._trace_on:
            self._trace("S", data)
        self._out.append(data)
        self._out_size += len(data)
        upstream = self.upstream
        oldest = upstream.oldest if upstream is not None else None
        if oldest is not None and oldest.note is not None:
            oldest.note.bytes_down += len(data)

    async def flush(self) -> None:
        if not self._out:
            return
        # Cancelled before the buffer is taken, so that a cancelled flush leaves
        # the output for the next one (the BYE path flushes again).
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._write_lock
        try:
            lock.acquire_nowait()  # the common case, without a scheduler pass
        except trio.WouldBlock:
            await lock.acquire()
        try:
            out, self._out = self._out, []
            size, self._out_size = self._out_size, 0
            if not out:
                return
            data = out[0] if len(out) == 1 else b"".join(out)
            self._flush_started = trio.current_time()
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._close_reason = "client connection lost"
                raise _Closed from None
            self.bytes_out += size
        finally:
            lock.release()

    def _bye(self, text: str) -> None:
        if self._mid_response:  # the connection just ends: never data made up
            self._bye_sent = True
        if not self._bye_sent:
            self._bye_sent = True
            self.write(b"* BYE " + _clean(text) + b"\r\n")

    def tagged(self, tag: bytes, status: str, text: str, code: str | None = None) -> None:
        code_part = f"[{code}] ".encode() if code else b""
        self.write(tag + b" " + status.encode() + b" " + code_part + _clean(text) + b"\r\n")

    # -- input ----------------------------------------------------------------------

    async def _event(self) -> Event:
        """The next framer event, reading from the client as needed."""
        framer = self._framer
        while True:
            if self._out_size >= FLUSH_AT:  # a long batch of input: answer as we go
                await self.flush()
            event = framer.next_event()
            if event is not NEED_DATA:
                return event
            await self.flush()
            # No timeout here (a cancel scope per read costs a tenth of a round
            # trip): the pre-auth phase has its deadline, the relay its watchdog.
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            self._last_input = trio.current_time()
            if data:
                self.bytes_in += len(data)
                framer.receive_data(data)
            else:
                framer.receive_eof()

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises for the client's or
        the upstream's misbehaviour."""
        with bound_context(
            session=self.id, peer=f"{self.peer[0]}:{self.peer[1]}", listener=self.listener.name
        ):
            log.info("connection accepted")
            try:
                with trio.CancelScope() as self._scope:
                    await self._serve()
                if self._scope.cancelled_caught:
                    self._close_reason = "server shutting down"
                    self._bye("Server shutting down")
            except _Closed:
                pass
            except RemoteProtocolError as exc:  # an unrecoverable framing error
                self._close_reason = f"client protocol error: {exc.text}"
                self._bye(exc.reply.text)
            except Exception:  # a bug: it ends this session, never the proxy
                self._close_reason = "internal error"
                log.exception("session failed")
                self._bye("Internal error, closing the connection")
            finally:
                await self._finish()

    async def _serve(self) -> None:
        if self.listener.tls == "implicit":
            await self._start_tls()
        caps = self._preauth_capabilities()
        greeting = "imapproxy ready"
        if self.proxy.rules is not None:
            rewrite = self.proxy.rules.session_rewrite(self._rule_context(None))
            greeting = rewrite.greeting or greeting
        caps_text = " ".join(caps).encode()
        self.write(b"* OK [CAPABILITY " + caps_text + b"] " + _clean(greeting) + b"\r\n")
        with trio.move_on_after(self.proxy.config.timeouts.preauth) as deadline:
            while self.state is State.NOT_AUTHENTICATED:
                await self._preauth_event(await self._event())
        if deadline.cancelled_caught:
            self._close_reason = "login timeout"
            self._bye("Autologout; too long without logging in")
            return
        if self.state is State.LOGOUT:
            return
        self._framer.max_literal = self.proxy.config.limits.max_literal
        await self._relay()

    async def _finish(self) -> None:
        if self.cache_side is not None:
            self.cache_side.close()
        with trio.CancelScope(shield=True):
            if self._draining and not self._bye_sent:  # cut after the grace period
                self._close_reason = "server shutting down"
                self._bye("Server shutting down")
            with trio.move_on_after(1.0), contextlib.suppress(_Closed):
                await self.flush()
            await trio.aclose_forcefully(self._stream)
            upstream = self.upstream
            if isinstance(upstream, Lane):
                upstream.release()  # the shared connection stays for the user's others
            elif upstream is not None:  # closed too: a lost connection has its socket
                if self._cmd is not None or upstream.in_flight:
                    await upstream.aclose()  # mid-command: never complete it
                elif not await self._to_pool(upstream):
                    await upstream.logout()
            log.info(
                "connection closed",
                user=self.user,
                upstream=upstream.config.name if upstream else None,
                reason=self._close_reason,
                duration_ms=round((trio.current_time() - self.started) * 1000),
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
            )

    async def _to_pool(self, upstream: UpstreamConnection) -> bool:
        """Keep the upstream connection for the next login of this user
        (docs/multiplex.md) when it is known to be clean: nothing in flight,
        never given per-connection state (ENABLE, CONDSTORE, NOTIFY, an unknown
        command), no mailbox selected (UNSELECT, never CLOSE: it would expunge),
        and a NOOP of its own answered OK. False: log it out instead."""
        pool = self.proxy.pool
        entry = self._pool_entry
        if (
            pool is None
            or self.proxy.mux is not None  # sharing: the groups are the reuse
            or entry is None
            or self._stateful
            or self._idle is not None
            or self._draining
            or upstream.closed
            or self._close_reason not in _POOLABLE_ENDS
            or not upstream.quiet()
        ):
            return False
        caps = {cap.upper() for cap in upstream.capabilities}
        try:
            with trio.move_on_after(2.0) as scope:
                if self._ever_selected:  # also after a failed SELECT
                    if not caps & {"UNSELECT", "IMAP4REV2"}:
                        return False
                    # NO/BAD: nothing was selected any more (CLOSE, a failed SELECT).
                    done, untagged = await upstream.simple_command("UNSELECT", NoArgs())
                    if done.name not in ("OK", "NO", "BAD") or any(
                        r.name == "BYE" for r in untagged
                    ):
                        return False
                done, untagged = await upstream.simple_command("NOOP", NoArgs())
                if done.name != "OK" or any(r.name == "BYE" for r in untagged):
                    return False
        except (UpstreamError, LocalProtocolError):
            return False
        if scope.cancelled_caught:
            return False
        key, digest, verified_at = entry
        pooled = Pooled(upstream, digest, verified_at)
        upstream.downstream = None  # this session is not kept alive by it
        out = pool.give(key, pooled, trio.current_time())
        self.proxy.close_pooled(out)
        if pooled not in out:
            log.info("upstream connection kept", upstream=upstream.config.name)
        return True

    def _taint(self, command: Command) -> None:
        """Note a command that leaves per-connection state upstream (the connection
        is then not given to another login), or selects a mailbox."""
        if command.name in ("SELECT", "EXAMINE"):
            self._ever_selected = True
        if _stateful(command):
            self._stateful = True

    def shutdown(self) -> None:
        """Server shutdown: end now if idle, else once the commands in flight are done."""
        self._draining = True
        self._drain_if_quiet()

    def _drain_if_quiet(self) -> None:
        """While draining, end the session when nothing but an IDLE is in flight."""
        if not self._draining or self._cmd is not None:
            return
        upstream = self.upstream
        if upstream is None or all(r is self._idle for r in upstream.requests):
            self._cancel()

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _start_tls(self) -> None:
        ctx = self.proxy.server_ssl
        assert ctx is not None
        try:
            with trio.fail_after(self.proxy.config.timeouts.tls_handshake):
                tls = await start_tls(self._stream, ctx, server_side=True)
        except trio.TooSlowError:
            self._close_reason = "TLS handshake timeout"
            raise _Closed from None
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            cause = exc.__cause__ or exc
            self._close_reason = f"TLS handshake failed: {getattr(cause, 'reason', None) or cause}"
            raise _Closed from None
        self._stream = tls
        self.tls = True
        bind_context(**describe(tls))
        log.info("tls established")

    # -- not authenticated ----------------------------------------------------------

    def _preauth_capabilities(self) -> tuple[str, ...]:
        return self.proxy.capabilities.pre_auth(
            tls=self.tls, starttls_offered=self.listener.tls == "starttls"
        )

    async def _preauth_event(self, event: Event) -> None:
        framer = self._framer
        if isinstance(event, Frame):
            await self._preauth_command(event)
        elif isinstance(event, ContinuationRequest):
            # Literals before login are for LOGIN's arguments only (small: the
            # framer caps them at max_preauth_literal).
            tag = _tag_of(event.frame)
            if _name_of(event.frame) == "LOGIN" and self.tls:
                framer.accept_literal()
                self.write(b"+ Ready for literal data\r\n")
            else:
                framer.reject_literal()
                if _name_of(event.frame) == "LOGIN":
                    self.tagged(tag or b"*", "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
                else:
                    self.tagged(tag or b"*", "BAD", "Command not valid before login")
        elif isinstance(event, FramePart):
            if event.literal is not None:
                framer.reject_frame()
            self.tagged(_tag_of(event.frame) or b"*", "BAD", "Literal too large before login")
        elif isinstance(event, LiteralChunk):  # pragma: no cover - rejected frames do not stream
            pass
        elif isinstance(event, BadFrame):
            self.write(event.error.reply.to_bytes())
        elif isinstance(event, EndOfStream):
            raise _Closed

    async def _preauth_command(self, frame: Frame) -> None:
        try:
            command = Command.parse(frame)
        except ParseError as exc:
            self.write(exc.reply.to_bytes())
            return
        tag, name = command.tag, command.name
        if name == "CAPABILITY":
            caps = " ".join(self._preauth_capabilities()).encode()
            self.write(b"* CAPABILITY " + caps + b"\r\n")
            self.tagged(tag, "OK", "Capability completed")
        elif name == "NOOP":
            self.tagged(tag, "OK", "NOOP completed")
        elif name == "LOGOUT":
            self._logout_reply(tag)
            self.state = State.LOGOUT
            self._close_reason = "logout"
        elif name == "ID":
            self._answer_id(command)
        elif name == "STARTTLS":
            await self._starttls(tag)
        elif name in ("LOGIN", "AUTHENTICATE"):
            if not self.tls:
                self.tagged(tag, "NO", f"{name} is disabled before STARTTLS", "PRIVACYREQUIRED")
                return
            try:
                args = command.args
            except ParseError as exc:
                self.write(exc.reply.to_bytes())
                return
            if isinstance(args, LoginArgs):
                user = _decode_user(args.userid)
                if user is None:
                    self.tagged(tag, "NO", "Invalid user name", "AUTHENTICATIONFAILED")
                    return
                await self._login(tag, Credentials(user, args.password))
            else:
                assert isinstance(args, AuthenticateArgs)
                credentials = await self._sasl(tag, args)
                if credentials is not None:
                    await self._login(tag, credentials)
        elif name in ("ENABLE", "SELECT", "EXAMINE", "LIST", "IDLE", "UNAUTHENTICATE"):
            self.tagged(tag, "BAD", f"{name} is not valid before login")
        else:
            self.tagged(tag, "BAD", "Command not valid before login")

    async def _starttls(self, tag: bytes) -> None:
        if self.tls or self.listener.tls != "starttls":
            self.tagged(tag, "BAD", "TLS is already active" if self.tls else "STARTTLS not offered")
            return
        # Plaintext pipelined after STARTTLS must not count as sent over TLS, nor
        # anything said before it (an ID injected on the way).
        self.client_id = ()
        discarded = self._framer.discard_buffered()
        if discarded:
            log.warning("plaintext after STARTTLS discarded", octets=discarded)
        self.tagged(tag, "OK", "Begin TLS negotiation now")
        await self.flush()
        await self._start_tls()

    def _answer_id(self, command: Command) -> None:
        try:
            args = command.args
        except ParseError as exc:
            self.write(exc.reply.to_bytes())
            return
        assert isinstance(args, IdArgs)
        if self.state is State.NOT_AUTHENTICATED:
            self.client_id = _forwardable_id(args.params or ())
        fields = {"name": "imapproxy", "version": __version__}
        rewrite = self._session_rewrite()
        if rewrite is not None:
            fields.update(rewrite.id_fields)
        frame = build_response(
            IdData(tuple((key.encode(), value.encode()) for key, value in fields.items()))
        )
        self.write(frame.raw)
        self.tagged(command.tag, "OK", "ID completed")

    def _logout_reply(self, tag: bytes) -> None:
        self._bye("Logging out")
        self.tagged(tag, "OK", "Logout completed")

    async def _plain_line(self) -> bytes | None:
        """A SASL response line; None when the client cancelled with ``*``."""
        self._framer.expect_line()
        event = await self._event()
        if isinstance(event, EndOfStream):
            raise _Closed
        if not isinstance(event, Frame) or not event.plain:  # e.g. a bare LF
            raise ValueError("not a SASL response line")
        line = event.raw.rstrip(b"\r\n")
        return None if line == b"*" else line

    async def _sasl(self, tag: bytes, args: AuthenticateArgs) -> Credentials | None:
        mechanism = args.mechanism.upper()
        if mechanism not in self.proxy.capabilities.mechanisms:
            self.tagged(tag, "NO", "Unsupported authentication mechanism", "CANNOT")
            return None
        initial = args.initial_response.reveal() if args.initial_response is not None else None

        async def step(challenge: bytes, given: bytes | None) -> bytes | None:
            if given is not None:
                return given
            self.write(b"+ " + base64.b64encode(challenge) + b"\r\n")
            await self.flush()
            return await self._plain_line()

        try:
            if mechanism == "PLAIN":
                encoded = await step(b"", initial)
                if encoded is None:
                    self.tagged(tag, "BAD", "Authentication cancelled")
                    return None
                parts = _b64(encoded).split(b"\0")
                if len(parts) != 3:
                    self.tagged(tag, "NO", "Invalid PLAIN message", "AUTHENTICATIONFAILED")
                    return None
                authzid, authcid, password = parts
                mech = "PLAIN"
            else:
                user_b64 = await step(b"Username:", initial)
                if user_b64 is None:
                    self.tagged(tag, "BAD", "Authentication cancelled")
                    return None
                authcid = _b64(user_b64)
                password_b64 = await step(b"Password:", None)
                if password_b64 is None:
                    self.tagged(tag, "BAD", "Authentication cancelled")
                    return None
                password = _b64(password_b64)
                authzid = b""
                mech = "AUTH=LOGIN"
        except ValueError:
            self.tagged(tag, "BAD", "Invalid SASL response")
            return None
        user = _decode_user(authcid)
        authz = _decode_user(authzid) if authzid else ""
        if not user or authz is None:
            self.tagged(tag, "NO", "Invalid user name", "AUTHENTICATIONFAILED")
            return None
        return Credentials(user, Secret(password), authz, mech)

    async def _login(self, tag: bytes, credentials: Credentials) -> None:
        # One attempt at a time per (user, client IP): parallel connections get
        # no more guesses than one connection, each after the current delay.
        key = credentials.user.lower()
        async with self.proxy.login_gate.hold((key, self.peer[0])):
            await self._login_attempt(tag, credentials, key)

    def _client_gone(self) -> bool:
        """Whether the client closed its side (checked without reading: a login
        waiting its turn must not be tried for a client that left)."""
        stream = self._stream
        sock = getattr(stream, "socket", None)
        if sock is None or not hasattr(select, "POLLRDHUP"):
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLRDHUP)
            events = poller.poll(0)
        except (OSError, ValueError):
            return True
        return any(
            mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, mask in events
        )

    def _login_delay(self, key: str, limits: Limits | None, *, failed: bool) -> float:
        """Seconds before the next login answer for (user ``key``, client IP); with
        ``failed``, a failure is recorded first.

        Per (user, IP) the delay doubles with each failure from the first, or
        after ``limit.failed_logins_per_user_ip`` free ones; per client IP (any
        user) only where a rule sets ``limit.failed_logins_per_ip``."""
        proxy, ip, now = self.proxy, self.peer[0], trio.current_time()
        pair_free = (limits.failed_logins_per_user_ip or 0) if limits is not None else 0
        per_ip = limits.failed_logins_per_ip if limits is not None else None
        if failed:
            pair = proxy.throttle.failed(key, ip, now, free=pair_free)
            address = proxy.ip_throttle.failed("", ip, now, free=per_ip or 0)
        else:
            pair = proxy.throttle.delay(key, ip, now, free=pair_free)
            address = proxy.ip_throttle.delay("", ip, now, free=per_ip or 0)
        return max(pair, address) if per_ip else pair

    async def _login_attempt(self, tag: bytes, credentials: Credentials, key: str) -> None:
        proxy = self.proxy
        ip = self.peer[0]
        upstream_cfg = proxy.router.route(credentials.user)
        decision: Decision | None = None
        if proxy.rules is not None:
            # Login policy (network, listener, TLS, user, upstream): before the
            # upstream is contacted; its failed-login limits apply to this attempt.
            name = "LOGIN" if credentials.mechanism == "LOGIN" else "AUTHENTICATE"
            context = self._rule_context(
                name,
                user=credentials.authzid or credentials.user,
                upstream=upstream_cfg.name if upstream_cfg is not None else None,
            )
            decision = proxy.rules.decide(context)
        limits = decision.limits if decision is not None else None
        wait = self._login_delay(key, limits, failed=False)
        if wait:
            await trio.sleep(wait)
        if self._client_gone():
            # Abandoned while waiting its turn: trying it would only hold the next
            # attempt of the same (user, IP) back by another failure delay.
            self._close_reason = "client left during login"
            raise _Closed
        if decision is not None and not decision.allowed:
            deny = decision.deny or READONLY_DENY
            log.info("login refused by rule", user=credentials.user, rule=decision.decided_by)
            if deny.bye:
                self._close_reason = "login refused by rule"
                self._bye(deny.text)
                raise _Closed
            self.tagged(tag, "NO", deny.text, deny.code)
            return
        if upstream_cfg is None:
            log.info("login failed", user=credentials.user, reason="no route")
            await trio.sleep(self._login_delay(key, limits, failed=True))
            self.tagged(tag, "NO", "Authentication failed.", "AUTHENTICATIONFAILED")
            return
        conn: UpstreamConnection | Lane
        mux, pool, now = proxy.mux, proxy.pool, trio.current_time()
        lane = None
        if mux is not None and pool is not None:
            # Sharing (docs/multiplex.md): a connection of this user's, when the
            # password is the one the upstream accepted there.
            shared_key = pool.key(upstream_cfg, credentials, ip)
            digest = pool.digest(upstream_cfg.name, credentials)
            lane = mux.join(shared_key, digest, now)
            if lane is not None:
                log.info("upstream connection shared", upstream=upstream_cfg.name)
        # With sharing, the user's shared connections are the reuse: the pool of
        # idle connections of their own is for sessions that do not share.
        pooled = self._from_pool(upstream_cfg, credentials) if mux is None else None
        if lane is not None:
            conn, verified_at = lane, now
        elif pooled is not None:
            conn, verified_at = pooled.conn, pooled.verified_at
        else:
            fresh = await self._fresh_login(tag, credentials, key, limits, upstream_cfg)
            if fresh is None:
                return
            conn, verified_at = fresh, trio.current_time()
            if mux is not None and pool is not None:
                lane = mux.adopt(shared_key, digest, verified_at, fresh)
                if lane is not None:
                    conn = lane
                    if lane.shared.conn is not fresh:  # it only checked the password
                        await fresh.logout()
        if lane is not None:
            lane.opener = functools.partial(self._upstream_login, upstream_cfg, credentials)
        if proxy.pool is not None:
            self._pool_entry = (
                proxy.pool.key(upstream_cfg, credentials, ip),
                proxy.pool.digest(upstream_cfg.name, credentials),
                verified_at,
            )
        proxy.throttle.succeeded(key, ip)
        self.upstream = conn
        self.user = credentials.user
        self.identity = credentials.authzid or credentials.user
        self.state = State.AUTHENTICATED
        bind_context(user=self.user, upstream=upstream_cfg.name)
        if credentials.authzid and credentials.authzid != credentials.user:
            bind_context(authzid=credentials.authzid)
        log.info("login", mechanism=credentials.mechanism, **_prefixed("upstream_", conn.tls))
        caps = " ".join(self._capabilities()).encode()
        self.write(tag + b" OK [CAPABILITY " + caps + b"] Logged in\r\n")

    async def _fresh_login(
        self,
        tag: bytes,
        credentials: Credentials,
        key: str,
        limits: Limits | None,
        upstream_cfg: Upstream,
    ) -> UpstreamConnection | None:
        """Connect and log in upstream with the client's credentials; None when
        that failed (the client has its answer)."""
        proxy = self.proxy
        try:
            conn = await UpstreamConnection.open(
                upstream_cfg, proxy.upstream_ssl[upstream_cfg.name], proxy.config.timeouts
            )
        except UpstreamError as exc:
            log.warning("upstream error", upstream=upstream_cfg.name, error=str(exc))
            self.tagged(tag, "NO", "Mail server unavailable, try again later", "UNAVAILABLE")
            return None
        try:
            identified = await conn.identify(self._id_params(upstream_cfg.trusted))
            if upstream_cfg.trusted and identified is None:
                raise UpstreamError(
                    "upstream is marked trusted but does not offer ID: the client's "
                    "address cannot be forwarded (set trusted = false to log in anyway)"
                )
            if upstream_cfg.trusted and identified is not None and identified.name != "OK":
                # Without the client's address the server would see the proxy's:
                # fail closed rather than log in with the wrong one.
                raise UpstreamError("upstream refused ID with the client's address")
            result = await conn.authenticate(credentials)
        except UpstreamError as exc:
            await conn.aclose()
            log.warning("upstream error", upstream=upstream_cfg.name, error=str(exc))
            self.tagged(tag, "NO", "Mail server unavailable, try again later", "UNAVAILABLE")
            return None
        except LocalProtocolError:
            # Credentials the upstream's LOGIN cannot carry (a NUL octet).
            await conn.aclose()
            log.info("login failed", user=credentials.user, reason="credentials not sendable")
            await trio.sleep(self._login_delay(key, limits, failed=True))
            self.tagged(tag, "NO", "Authentication failed.", "AUTHENTICATIONFAILED")
            return None
        except BaseException:
            await conn.aclose()
            raise
        if result.name != "OK":
            await conn.logout()
            condition = result.condition
            code = condition.code.name if condition and condition.code else None
            log.info("login failed", user=credentials.user, upstream=upstream_cfg.name, code=code)
            await trio.sleep(self._login_delay(key, limits, failed=True))
            status = result.name if result.name in ("NO", "BAD") else "NO"
            self.write(self._status_line(tag, status, result))
            return None
        return conn

    async def _upstream_login(
        self, upstream_cfg: Upstream, credentials: Credentials
    ) -> UpstreamConnection:
        """Another upstream connection logged in as this session's user (for a
        shared mailbox, or a dedicated connection). Raises UpstreamError."""
        proxy = self.proxy
        conn = await UpstreamConnection.open(
            upstream_cfg, proxy.upstream_ssl[upstream_cfg.name], proxy.config.timeouts
        )
        try:
            identified = await conn.identify(self._id_params(upstream_cfg.trusted))
            if upstream_cfg.trusted and (identified is None or identified.name != "OK"):
                raise UpstreamError("upstream refused ID with the client's address")
            result = await conn.authenticate(credentials)
            if result.name != "OK":
                raise UpstreamError("upstream refused the login it accepted before")
        except (UpstreamError, LocalProtocolError) as exc:
            await conn.aclose()
            raise UpstreamError(str(exc)) from None
        except BaseException:
            await conn.aclose()
            raise
        return conn

    def _from_pool(self, upstream_cfg: Upstream, credentials: Credentials) -> Pooled | None:
        """A pooled connection this login may take (docs/multiplex.md), if any."""
        pool = self.proxy.pool
        if pool is None:
            return None
        key = pool.key(upstream_cfg, credentials, self.peer[0])
        digest = pool.digest(upstream_cfg.name, credentials)
        pooled, stale = pool.take(key, digest, trio.current_time())
        self.proxy.close_pooled(stale)
        if pooled is not None:
            log.info("upstream connection reused", upstream=upstream_cfg.name)
        return pooled

    def _id_params(self, trusted: bool) -> list[tuple[bytes, bytes | None]]:
        """The ID fields for the upstream: the proxy's own first (for a trusted
        upstream, the client's address), then the client's standard fields."""
        params: list[tuple[bytes, bytes | None]] = []
        if trusted:
            params += [
                (b"x-originating-ip", self.peer[0].encode()),
                (b"x-originating-port", str(self.peer[1]).encode()),
            ]
        return params + list(self.client_id[: _ID_MAX_PAIRS - len(params)])

    @property
    def utf8(self) -> bool:
        """Mailbox names travel as UTF-8 (UTF8=ACCEPT or IMAP4rev2 enabled)."""
        return bool(self.enabled & {"UTF8=ACCEPT", "IMAP4REV2"})

    def _capabilities(self) -> tuple[str, ...]:
        assert self.upstream is not None
        caps = self.proxy.capabilities.authenticated(self.upstream.capabilities)
        rules = self.proxy.rules
        if rules is not None and rules.mailbox_aware:
            caps = tuple(cap for cap in caps if cap.upper() not in _UNJUDGED_CAPABILITIES)
        rewrite = self._session_rewrite()
        if rewrite is not None and not rewrite.empty:
            caps = tuple(rewrite.capabilities(caps))
        return caps

    # -- authenticated: the relay -----------------------------------------------------

    async def _relay(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        upstream.downstream = self
        # Errors are caught inside the nursery: it would wrap them in a group.
        error: _Closed | RemoteProtocolError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_upstream, nursery.cancel_scope)
            nursery.start_soon(self._watchdog, nursery.cancel_scope)
            try:
                while self.state is not State.LOGOUT:
                    if self._held_size >= FLUSH_AT:  # stop reading until it can go out
                        self._response_ended = trio.Event()
                        await self._response_ended.wait()
                    await self._relay_event(await self._event())
                    self._drain_if_quiet()
            except (_Closed, RemoteProtocolError) as exc:
                error = exc
            except UpstreamError as exc:
                self._close_reason = str(exc)
                self._bye("Connection to the mail server lost")
                error = _Closed()
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _run_upstream(self, scope: trio.CancelScope) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            while True:
                await upstream.run()
                moving = self._moving
                if moving is not None:  # the mailbox is being selected on the new one
                    await moving.wait()
                if self.upstream is upstream:
                    break
                # The session moved from a shared connection to one of its own.
                upstream = self.upstream
                assert upstream is not None
                upstream.downstream = self
            reason = "upstream closed the connection"
        except UpstreamError as exc:
            reason = str(exc)
            log.warning("upstream error", error=reason)
        except _Closed:
            scope.cancel()
            return
        if self.state is not State.LOGOUT and not self._bye_sent:
            self._close_reason = reason
            self._bye("Connection to the mail server lost")
        await self._end_relay(scope)

    async def _end_relay(self, scope: trio.CancelScope) -> None:
        """Cancel the relay from a helper task, after the client got its BYE.

        The relay task may be in the middle of a flush that carries the BYE (it
        holds the write lock); a cancel would cut that write and lose the BYE. So
        wait for it and send what is left first -- briefly: a client that does not
        read cannot keep the session.
        """
        with trio.move_on_after(1.0), contextlib.suppress(_Closed):
            async with self._write_lock:
                pass  # the write in progress, if any, ends first
            await self.flush()
        scope.cancel()

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        """End the relay when the upstream is silent too long while a command waits
        on it (``upstream_response``), or when the client sent nothing for ``idle``
        seconds with nothing but an IDLE in flight (RFC 9051 autologout timer)."""
        timeouts = self.proxy.config.timeouts
        limit, idle = timeouts.upstream_response, timeouts.idle
        while True:
            await trio.sleep(min(limit / 4, idle / 4, 5.0))
            upstream = self.upstream
            assert upstream is not None
            now = trio.current_time()
            oldest = upstream.oldest
            if self._write_lock.locked():
                # Writing to the client: a client that does not read holds the
                # relay up, not the server. It may do so for the idle timeout.
                if now - self._flush_started > idle:
                    self._close_reason = "client not reading"
                    await self._end_relay(scope)
                    return
                continue
            if upstream.sending_since is not None and now - upstream.sending_since > limit:
                # The server stopped reading what the proxy sends it.
                self._close_reason = "upstream not reading"
                log.warning("upstream error", error="not reading")
                self._bye("Mail server not responding")
                await upstream.aclose()
                await self._end_relay(scope)
                return
            if oldest is not None and oldest.asked is not None:
                # The server owes an answer: the whole command is on the wire, or
                # a literal's announcement waits for "+".
                silent_since = max(upstream.last_receive, oldest.asked, self._relayed_at)
                if now - silent_since > limit:
                    self._close_reason = "upstream not responding"
                    log.warning("upstream error", error="not responding", command=oldest.name)
                    self._bye("Mail server not responding")
                    await upstream.aclose()
                    await self._end_relay(scope)
                    return
            elif now - self._last_input > idle:
                # The client's turn (nothing in flight, an IDLE, or the rest of a
                # literal it is uploading) and it has been silent too long.
                self._close_reason = "idle timeout"
                self._bye("Autologout; idle for too long")
                await self._end_relay(scope)
                return

    async def _relay_event(self, event: Event) -> None:
        if self.proxy.rules is not None and not isinstance(event, LiteralChunk):
            self._session_rewrite()  # the session's rules as they are now (not per chunk)
        if self._trace_on and isinstance(event, Frame | FramePart | LiteralChunk):
            self._trace("C", event.data if isinstance(event, LiteralChunk) else event.raw)
        if isinstance(event, Frame):
            if event.plain:
                await self._plain_in_idle(event)
            else:
                await self._complete_frame(event)
        elif isinstance(event, ContinuationRequest):
            await self._literal_announced(event)
        elif isinstance(event, FramePart):
            await self._frame_part(event)
        elif isinstance(event, LiteralChunk):
            forward = self._cmd
            assert forward is not None and self.upstream is not None
            await self.upstream.send_raw(event.data)
            if forward.request is not None and forward.request.note is not None:
                forward.request.note.bytes_up += len(event.data)
        elif isinstance(event, BadFrame):
            forward, self._cmd = self._cmd, None
            if forward is not None and forward.processed:
                # Part of this command already went upstream and cannot be taken back.
                self._close_reason = "client command refused mid-relay"
                self.write(event.error.reply.to_bytes())
                self._bye("Command aborted; closing the connection")
                raise _Closed
            self.write(event.error.reply.to_bytes())
        elif isinstance(event, EndOfStream):
            if event.partial or self._cmd is not None:
                self._close_reason = "client vanished mid-command"
            raise _Closed

    async def _plain_in_idle(self, frame: Frame) -> None:
        """A line read while IDLE: DONE ends it. Anything else ends it too and is
        then handled as the command it probably is (a client that did not wait)."""
        await self._end_idle()
        if frame.raw.rstrip(b"\r\n").upper() != b"DONE":
            await self._complete_frame(Frame(frame.raw))

    async def _end_idle(self) -> None:
        """Send DONE for the IDLE in progress, if any."""
        idle, self._idle = self._idle, None
        assert self.upstream is not None
        if idle is None or idle.done.is_set():
            return
        await self.upstream.send_raw(b"DONE\r\n")
        self.upstream.end_writing(idle)

    def _check(self, frame: Frame, *, args: bool = True) -> Command | None:
        """Parse a command; None (with its BAD written) when the codec refuses it."""
        try:
            command = Command.parse(frame)
            if args:
                command.args  # noqa: B018 - parsing is the check
        except ParseError as exc:
            self.write(exc.reply.to_bytes())
            if enabled_for(AUDIT_LEVEL):
                tag = exc.reply.tag or b"*"
                record = CommandAudit(tag, _name_of(frame) or "?", extra={"local": True})
                self._audit(record, exc.reply.kind, None, trio.current_time())
            return None
        return command

    async def _complete_frame(self, frame: Frame) -> None:
        forward = self._cmd
        if forward is not None and not forward.deferred:
            self._cmd = None
            await self._send_region(forward, frame)
            return
        self._cmd = None
        if frame.raw.rstrip(b"\r\n").upper() == b"DONE":
            # DONE sent with IDLE, before the server's "+" (which clients should
            # wait for; servers accept it) ends the IDLE all the same; without an
            # IDLE, the server ended it as the client said DONE: nothing to do.
            await self._end_idle()
            return
        if self._idle is not None:
            # A command pipelined behind IDLE before the "+": end the IDLE first,
            # or the command would wait behind it for good.
            await self._end_idle()
        command = self._check(frame)
        if command is None or await self._local(command):
            return
        forward = await self._start(command)
        if forward is None:  # refused by the rules
            return
        if (forward.examine or forward.args is not None) and forward.head is None:
            # A rule made this SELECT an EXAMINE, or renamed a mailbox it names.
            name = "EXAMINE" if forward.examine else forward.name or command.name
            frame = build_command(command.tag, name, forward.args or command.args, utf8=self.utf8)
        idle = command.name == "IDLE"
        if idle:  # before sending: the "+" may come at once
            self._idle = forward.request
        if idle and forward.request is not None:
            # The server owes its "+" (cleared when it comes: then the client's turn).
            forward.request.asked = trio.current_time()
        # IDLE is written in full only with its DONE.
        await self._send_region(forward, frame, final=not idle)

    async def _literal_announced(self, event: ContinuationRequest) -> None:
        framer = self._framer
        forward = self._cmd
        if forward is None:
            command = self._check(event.frame, args=False)
            if command is None:
                framer.reject_literal()
                return
            if command.name in _LOCAL_AFTER_LOGIN:
                framer.reject_literal()
                await self._local(command)
                return
            try:
                command.args  # noqa: B018
            except ParseError:
                forward = _Forward(command, deferred=True)
            else:
                forward = await self._start(command)
                if forward is None:  # refused by the rules, before any "+"
                    framer.reject_literal()
                    return
            self._cmd = forward
        elif forward.deferred:
            forward = await self._resume(forward, event.frame)
            if forward is None:  # refused by the rules, before the message's "+"
                framer.reject_literal()
                return
        if forward.deferred:
            if event.literal.size > framer.inline_literal:
                framer.reject_literal()
                self._cmd = None
                self.tagged(forward.command.tag, "NO", "Literal too large here", "TOOBIG")
                return
            framer.accept_literal()
            self.write(b"+ Ready for literal data\r\n")
            return
        if await self._send_region(forward, event.frame, final=False):
            framer.accept_literal()
            self.write(b"+ Ready for literal data\r\n")
        else:  # the server answered instead of "+": relayed by the reader
            framer.reject_literal()
            self._cmd = None

    async def _resume(self, forward: _Forward, frame: Frame) -> _Forward | None:
        """A deferred command once more of it is here: started (judged) when its
        arguments now parse -- an APPEND whose mailbox name was a literal, before
        the ``+`` for its message; None when the rules refused it. Otherwise still
        ``forward``, deferred."""
        try:
            command = Command.parse(frame)
            command.args  # noqa: B018
        except ParseError:
            return forward
        started = self._cmd = await self._start(command)
        return started

    async def _frame_part(self, part: FramePart) -> None:
        framer = self._framer
        forward = self._cmd
        if forward is None:
            command = self._check(part.frame, args=False)
            if command is not None and command.name not in _LOCAL_AFTER_LOGIN:
                try:
                    command.args  # noqa: B018
                except ParseError:
                    command = None
                    self.tagged(
                        _tag_of(part.frame) or b"*", "NO", "Literal too large here", "TOOBIG"
                    )
            elif command is not None:
                await self._local(command)
                command = None
            if command is None:
                if part.literal is not None:
                    framer.reject_frame()
                return
            forward = self._cmd = await self._start(command)
            if forward is None:  # refused by the rules: the rest is drained
                if part.literal is not None:
                    framer.reject_frame()
                return
        elif forward.deferred:
            forward = await self._resume(forward, part.frame)
            if forward is None or forward.deferred:
                self._cmd = None
                if part.literal is not None:
                    framer.reject_frame()
                if forward is not None:
                    self.tagged(forward.command.tag, "NO", "Literal too large here", "TOOBIG")
                return
        if not await self._send_region(forward, part.frame, final=part.literal is None):
            self._cmd = None
            if part.literal is not None:
                framer.reject_frame()
            return
        if part.literal is None:
            self._cmd = None

    async def _start(self, command: Command) -> _Forward | None:
        """Register ``command`` upstream (waiting while too many are in flight);
        None when the rules refuse it (the refusal is written)."""
        upstream = self.upstream
        assert upstream is not None
        if isinstance(upstream, Lane):
            # On a shared connection a session's commands go one after another:
            # each is translated with the numbering its predecessors left.
            while upstream.oldest is not None and upstream.oldest is not self._idle:
                await upstream.oldest.done.wait()
        if self.proxy.rules is not None and command.base_name in _ON_SELECTED:
            # Judged against the mailbox it will act on: let a SELECT, EXAMINE,
            # CLOSE or UNSELECT in flight finish first.
            while self._selecting or self._unselecting:
                pending = next(iter(self._selecting or self._unselecting))
                await pending.done.wait()
                self._selecting.pop(pending, None)
                self._unselecting.discard(pending)
        rules = self.proxy.rules
        try:
            args: CommandArgs | None = command.args
        except ParseError:
            args = None
        # Mailbox names in the upstream's form (rewrite.mailbox, rewrite.separator):
        # rules judge those, and they go upstream.
        upstream_args: CommandArgs | None = None
        head: tuple[int, bytes] | None = None
        names = self._names()
        if names is not None and args is not None:
            try:
                upstream_args = names.command_args(args)
                if isinstance(upstream_args, AppendArgs):  # relayed as it arrives
                    head = Names.append_head(command, upstream_args.mailbox, utf8=self.utf8)
            except Untranslatable:
                if isinstance(args, ListArgs):  # names the client cannot see: none
                    self.tagged(command.tag, "OK", f"{command.name} completed")
                    return None
                self._refuse(command, _UNTRANSLATABLE)
                return None
        if (
            names is not None
            and command.base_name in ("SORT", "THREAD")
            and names.unmapped_keywords(command.frame.raw)
        ):
            # Their search keys are not parsed, so a mapped keyword cannot be.
            self._refuse(command, _UNMAPPED_KEYWORD)
            return None
        client_args, args = args, upstream_args or args
        descendants: tuple[str, ...] = ()
        if rules is not None and rules.mailbox_aware and isinstance(args, RenameArgs):
            descendants = await self._descendants(args)
        # What the command names, read once for the rules and the audit line.
        named, sequence = (
            describe_args(args, utf8=self.utf8)
            if args is not None and (rules is not None or enabled_for(AUDIT_LEVEL))
            else ((), None)
        )
        decision = self._decide(command, named, descendants)
        if decision is not None and decision.shadowed:
            self._log_shadowed(command, decision)
        if decision is not None and not decision.allowed:
            self._refuse(command, decision.deny or READONLY_DENY, decision, named, sequence)
            return None
        rate = decision.limits.commands_per_second if decision is not None else None
        if rate:
            # A rule's rate for this user (across its sessions): wait for a token.
            key = normalise_user(self.identity or "")
            wait = self.proxy.command_rate.take(key, rate, trio.current_time())
            if wait:
                await trio.sleep(wait)
        if self.proxy.pool is not None:
            self._taint(command)
        if isinstance(upstream, Lane) and _stateful(command):
            # Per-connection state is never left on a shared connection.
            if not await self._go_dedicated(command, decision, named, sequence):
                return None
            upstream = self.upstream
            assert upstream is not None
        if self._unshown and not self._show_unshown(command, decision, named, sequence):
            return None
        cache = self._fetch_cache(command, decision)
        partial: Partial | None = None
        if cache is not None and isinstance(args, FetchArgs):
            started = trio.current_time()
            cache[0].served = 0
            outcome = await cache[0].serve(command.tag, command.name, args, cache[1])
            if outcome == "hit":
                self._audit_local(
                    command, decision, named, sequence, started, cache[0].served, cache="hit"
                )
                return None
            if isinstance(outcome, Partial):
                partial = outcome
        while upstream.in_flight >= self.proxy.config.limits.max_pipelined:
            self._slot = trio.Event()
            await self._slot.wait()
        name = command.name
        request = upstream.new_request(name, command.tag, relay_continuations=name == "IDLE")
        matched = decision.matched if decision is not None else ()
        level = (decision.log_level if decision is not None else None) or AUDIT_LEVEL
        if enabled_for(level):
            fields = decision.log_fields if decision is not None else None
            request.note = self._audit_record(command, named, sequence, matched, level, fields)
        if cache is not None:
            request.fill = cache[0].fill_for(cache[1])
            if partial is not None:
                request.merge = partial.merge
            if request.note is not None and request.fill is not None:
                merged = partial is not None and bool(partial.merge.add)
                request.note.extra["cache"] = "partial" if merged else "miss"
        examine = decision is not None and decision.examine_instead and name == "SELECT"
        if name in ("CLOSE", "UNSELECT"):
            self._unselecting.add(request)
        if name in ("SELECT", "EXAMINE"):
            assert isinstance(args, SelectArgs)
            readonly = name == "EXAMINE" or examine
            self._selecting[request] = SelectedMailbox(args.mailbox, readonly=readonly)
        forward = _Forward(command, request, examine=examine, args=upstream_args)
        if isinstance(upstream, Lane):
            # Sequence numbers are this session's own: UID forms go upstream.
            effective = "EXAMINE" if examine else name
            try:
                shared = upstream.translate(
                    request, effective, args, rebuild=not command.frame.literals
                )
            except NotShared as exc:
                upstream.refuse(request, exc)
                return None
            if shared != (effective, args):
                forward.name, forward.args = shared
        if partial is not None:  # the server is asked only what the cache lacks
            forward.args, forward.name = partial.args, partial.name
        if names is not None and isinstance(client_args, ListArgs):
            request.listing = names.listing(client_args)
        forward.head = head
        if head is not None and names is not None and names.rewrite.flags:
            forward.flags = names
        return forward

    async def _go_dedicated(
        self,
        command: Command,
        decision: Decision | None,
        named: tuple[str, ...],
        sequence: str | None,
    ) -> bool:
        """Move the session from its shared connection to one of its own, before
        ``command`` (which leaves state on a connection); with a mailbox selected,
        it is selected there too (unless ``command`` selects another) and the
        session's numbering and flags carried over. False when it could not (the
        command is refused, the session stays where it was)."""
        lane = self.upstream
        assert isinstance(lane, Lane)
        while lane.oldest is not None:  # what it sent first is answered first
            await lane.oldest.done.wait()
        try:
            if lane.opener is None:
                raise UpstreamError("no way to log in again")
            conn = await lane.opener()
        except UpstreamError as exc:
            log.warning("upstream error", error=str(exc))
            self._refuse(command, _UNAVAILABLE, decision, named, sequence)
            return False
        mailbox = lane.shared.mailbox
        view = lane.view
        reselect = view is not None and mailbox is not None and command.name not in _SELECTING
        # What the session has been shown (or is queued for it) as the lane leaves
        # the shared connection: from now on, nothing changes it.
        shown_flags = lane.shared.flags.copy() if reselect else {}
        view = list(view) if view is not None else []
        readonly = lane.readonly
        self._moving = moving = trio.Event()
        try:
            lane.migrate()
            await lane.finished.wait()  # the shared connection's last words come first
            if reselect:
                assert mailbox is not None
                limit = self.proxy.config.timeouts.upstream_response
                with trio.move_on_after(limit) as waited:
                    flags, numbering = await self._reselect(
                        conn, mailbox, readonly, view, shown_flags
                    )
                if waited.cancelled_caught:
                    raise UpstreamError("not responding")
                for line in flags:
                    self._untagged(Response.parse(Frame(line)))
                self._unshown = numbering
            self.upstream = conn
        except (UpstreamError, LocalProtocolError) as exc:
            await conn.aclose()
            log.warning("upstream error", error=str(exc))
            # Off the shared connection and without the mailbox on a new one: the
            # session cannot go on as its client sees it.
            self._close_reason = f"mailbox not selected again: {exc}"
            self._bye("Connection to the mail server lost")
            raise _Closed from None
        except BaseException:
            await conn.aclose()
            raise
        finally:
            self._moving = None
            moving.set()
        log.info("moved to a dedicated upstream connection", command=command.name)
        return True

    def _show_unshown(
        self,
        command: Command,
        decision: Decision | None,
        named: tuple[str, ...],
        sequence: str | None,
    ) -> bool:
        """Show the expunges held since the move to a dedicated connection before
        ``command``, which is then sent (True); or refuse it (False): they may not
        come during it, and its sequence numbers would be taken in the new
        numbering. A command that leaves the mailbox drops them."""
        if command.name in _SELECTING or command.name in ("CLOSE", "UNSELECT", "LOGOUT"):
            self._unshown = []
            return True
        expunges = any(line.endswith(b"EXPUNGE\r\n") for line in self._unshown)
        if expunges and _numbers_messages(command):
            self._refuse(command, _EXPUNGE_PENDING, decision, named, sequence)
            return False
        for line in self._unshown:
            self._untagged(Response.parse(Frame(line)))
        self._unshown = []
        return True

    async def _reselect(
        self,
        conn: UpstreamConnection,
        mailbox: SelectedMailbox,
        readonly: bool,
        view: list[int],
        shown: Mapping[int, bytes],
    ) -> tuple[list[bytes], list[bytes]]:
        """Select ``mailbox`` on ``conn`` as the session has it open (``view``: the
        UID of each of its sequence numbers, ``shown``: the flags it was shown).
        Returns the updates that carry the session over: flags that changed
        (numbered as it has them), and those that bring its numbering to the
        connection's (expunges in descending order, then EXISTS)."""
        verb = "EXAMINE" if readonly else "SELECT"
        done, untagged = await conn.simple_command(verb, SelectArgs(mailbox.name))
        if done.name != "OK":
            raise UpstreamError(f"{verb} on the dedicated connection failed")
        again = SelectedMailbox(mailbox.name, readonly=readonly)
        for response in [*untagged, done]:
            again.apply(response)
        if None not in (again.uidvalidity, mailbox.uidvalidity) and (
            again.uidvalidity != mailbox.uidvalidity
        ):
            # The mailbox was recreated meanwhile: the session's UIDs mean nothing.
            raise UpstreamError("UIDVALIDITY changed")
        # The new connection's numbering, followed through everything it says
        # (an EXPUNGE or EXISTS may come with any of these commands).
        done, untagged = await conn.simple_command("UID SEARCH", SearchArgs(SearchKey("ALL")))
        if done.name != "OK":
            raise UpstreamError("UID SEARCH on the dedicated connection failed")
        for response in untagged:
            try:
                data = response.data if response.name == "SEARCH" else None
            except ParseError:
                data = None
            if isinstance(data, SearchData):
                again.learn_uids(list(data.numbers))
            else:
                again.apply(response)
        present = set(again.uids or ())
        kept = [uid for uid in view if uid in present]
        flags: list[bytes] = []
        if kept:
            # Changes the shared connection had not reported: the server never
            # reports them on a connection selected after them.
            wanted = SequenceSet.from_numbers(kept)
            if len(wanted.ranges) > _RANGES_IN_A_COMMAND:
                wanted = SequenceSet.parse(b"1:*")  # a short command line
            done, untagged = await conn.simple_command(
                "UID FETCH", FetchArgs(wanted, (FetchItem("FLAGS"),))
            )
            if done.name != "OK":
                raise UpstreamError("UID FETCH on the dedicated connection failed")
            now = {}
            for response in untagged:
                again.apply(response)  # a FETCH with its UID teaches the map
                text = flags_of(response) if response.name == "FETCH" else None
                # An update for another connection's change comes without a UID
                # (Dovecot): the map says which message it is.
                uid = again.uid_for(response.number or 0) if text is not None else None
                if uid is not None and text is not None:
                    now[uid] = text
            for seq, uid in enumerate(view, 1):
                text = now.get(uid)
                if text is not None and shown.get(uid) != text:
                    flags.append(b"* %d FETCH (FLAGS %s)\r\n" % (seq, text))
        if again.uids is None:
            raise UpstreamError("the mailbox is too large to carry the session over")
        present = {uid for uid in again.uids if uid}  # 0: new, its UID not yet known
        numbering = [
            b"* %d EXPUNGE\r\n" % seq
            for seq in range(len(view), 0, -1)
            if view[seq - 1] not in present
        ]
        if len(again.uids) != sum(uid in present for uid in view):
            numbering.append(b"* %d EXISTS\r\n" % len(again.uids))
        return flags, numbering

    def _fetch_cache(
        self, command: Command, decision: Decision | None
    ) -> tuple[SessionCache, CachePolicy] | None:
        """The part cache and its policy for a FETCH on the selected mailbox (None:
        not cached: no rule says so, nothing selected, or a selection pending)."""
        side = self.cache_side
        if (
            side is None
            or isinstance(self.upstream, Lane)  # not on a shared connection (yet)
            or decision is None
            or decision.cache is None
            or command.base_name != "FETCH"
            or self.mailbox is None
            or self._selecting
        ):
            return None
        return side, decision.cache

    def _audit_local(
        self,
        command: Command,
        decision: Decision | None,
        named: tuple[str, ...],
        sequence: str | None,
        started: float,
        bytes_down: int,
        **extra: object,
    ) -> None:
        """The audit line of a command the session answered itself (OK)."""
        level = (decision.log_level if decision is not None else None) or AUDIT_LEVEL
        if enabled_for(level):
            matched = decision.matched if decision is not None else ()
            fields = {**(decision.log_fields if decision is not None else {}), **extra}
            record = self._audit_record(command, named, sequence, matched, level, fields)
            record.bytes_down = bytes_down
            self._audit(record, "OK", None, started)

    def _refuse(
        self,
        command: Command,
        deny: Deny,
        decision: Decision | None = None,
        named: tuple[str, ...] = (),
        sequence: str | None = None,
    ) -> None:
        """Answer ``command`` with ``deny`` instead of relaying it, and audit it."""
        self.tagged(command.tag, "NO", deny.text, deny.code)
        level = (decision.log_level if decision is not None else None) or AUDIT_LEVEL
        if enabled_for(level):
            matched = decision.matched if decision is not None else ()
            fields = decision.log_fields if decision is not None else None
            record = self._audit_record(command, named, sequence, matched, level, fields)
            self._audit(record, "NO", deny.code, trio.current_time())

    def _names(self) -> Names | None:
        """Mailbox name and flag translation for this session (None: neither is
        rewritten)."""
        rewrite = self._session_rewrite()
        if rewrite is None or not (rewrite.renames or rewrite.flags):
            return None
        return Names(rewrite, self.utf8)

    def _log_shadowed(self, command: Command, decision: Decision) -> None:
        """Dry-run rules (``mode = "shadow"``): what each would have done, logged."""
        for shadow in decision.shadowed:
            would = shadow.verdict or ("readonly" if shadow.readonly else "log")
            audit_log.info(
                "shadow rule",
                rule=shadow.rule,
                tag=command.tag.decode("ascii", "replace"),
                command=command.name,
                would=would,
                decisive=shadow.decisive,
                code=shadow.deny.code if shadow.deny else None,
            )

    async def _descendants(self, args: RenameArgs) -> tuple[str, ...]:
        """For RENAME (upstream names): the mailboxes under the old name, which
        move with it (asked upstream with a LIST of the proxy's own once nothing
        else is in flight)."""
        upstream = self.upstream
        assert upstream is not None
        while upstream.oldest is not None:
            await upstream.oldest.done.wait()
        rewrite = self._session_rewrite()
        separator = rewrite.upstream_separator if rewrite is not None else "/"
        pattern = args.old.raw + separator.encode() + b"*"
        request = await upstream.command("LIST", ListArgs(Mailbox(b""), (pattern,)))
        utf8 = self.utf8
        names = []
        for response in request.untagged:
            try:
                data = response.data
            except ParseError:
                continue
            if isinstance(data, ListData):
                names.append(mailbox_text(data.mailbox, utf8=utf8))
        return tuple(names)

    def _decide(
        self, command: Command, named: tuple[str, ...], descendants: tuple[str, ...] = ()
    ) -> Decision | None:
        """What the rules say about ``command``, which ``named`` these mailboxes
        (None: no rules). A command that names a hidden mailbox is refused as if it
        did not exist; a RENAME whose ``descendants`` (mailboxes under the old name)
        include a protected or hidden one is refused too."""
        rules = self.proxy.rules
        if rules is None:
            return None
        touched = named
        if command.base_name in _ON_SELECTED and self.mailbox is not None:
            touched = (self.selected_name(), *named)
        mailboxes = touched + descendants
        size = None
        try:
            args = command.args
        except ParseError:
            args = None
        if isinstance(args, AppendArgs):
            size = sum(m.data.size for m in args.messages if m.data is not None)
        if rules.mailbox_aware and (
            command.base_name in _UNJUDGED
            or (isinstance(args, AppendArgs) and any(m.catenate for m in args.messages))
        ):
            # Mailbox names the proxy does not read (ACL, METADATA, REPLACE, NOTIFY,
            # CATENATE URLs) would slip past the mailbox rules: refused.
            unjudged = rules.decide(self._rule_context(command.name, mailboxes, size))
            return replace(unjudged, verdict="deny", deny=_UNJUDGED_DENY)
        # A session repeats a few decisions: kept until its rules or user change
        # (see _session_rewrite), bounded.
        key = (command.name, mailboxes, size)
        decision = self._decisions.get(key)
        if decision is None:
            decision = rules.decide(self._rule_context(command.name, mailboxes, size))
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        rewrite = decision.rewrite
        separator = rewrite.separator
        if decision.allowed and rewrite.hide:
            # The selected mailbox too: hidden by a reload while selected.
            if any(rewrite.hidden(canonical(name, separator)) for name in touched):
                return replace(decision, verdict="deny", deny=_HIDDEN)
            if any(rewrite.hidden(canonical(name, separator)) for name in descendants):
                return replace(decision, verdict="deny", deny=_CANNOT_RENAME)
        return decision

    def rule_user(self) -> str:
        """The user whose mailboxes these are, normalised as the rules see it."""
        user = self.identity or ""
        return normalise_user(user) if self.proxy.config.rules.user_case == "lower" else user

    def relay_untagged(self, response: Response) -> None:
        """An untagged response for the client as if the upstream reader had just
        relayed it (for responses a command of the proxy's own collected)."""
        self._untagged(response)

    def selected_name(self) -> str:
        """The selected mailbox's name as text (decoded once per selection)."""
        mailbox = self.mailbox
        assert mailbox is not None
        utf8 = self.utf8
        held, held_utf8, text = self._selected_text
        if held is not mailbox or held_utf8 != utf8:
            text = mailbox_text(mailbox.name, utf8=utf8)
            self._selected_text = (mailbox, utf8, text)
        return text

    def _rule_context(
        self,
        command: str | None,
        mailboxes: tuple[str, ...] = (),
        size: int | None = None,
        *,
        user: str | None = None,
        upstream: str | None = None,
    ) -> Context:
        user = user or self.identity
        if upstream is None and self.upstream is not None:
            upstream = self.upstream.config.name
        if user is not None and self.proxy.config.rules.user_case == "lower":
            user = normalise_user(user)
        return Context(
            user=user,
            peer=self._peer_ip,
            listener=self.listener.name,
            tls=self.tls,
            upstream=upstream,
            command=command,
            mailboxes=mailboxes,
            append_size=size,
        )

    def _audit_record(
        self,
        command: Command,
        named: tuple[str, ...],
        sequence: str | None,
        rules: tuple[str, ...] = (),
        level: str = AUDIT_LEVEL,
        fields: Mapping[str, object] | None = None,
    ) -> CommandAudit:
        mailboxes = named
        if command.base_name in ("COPY", "MOVE") and self.mailbox is not None:
            mailboxes = (self.selected_name(), *mailboxes)
        return CommandAudit(
            command.tag, command.name, mailboxes, sequence, rules, level, extra=dict(fields or {})
        )

    def _audit(self, note: CommandAudit, status: str, code: str | None, started: float) -> None:
        """The command's audit line (debug level until rules set one)."""
        bound_logger("imapproxy.audit").log(
            _LEVEL_NUMBERS[note.level],
            "command",
            **note.fields(),
            status=status,
            code=code,
            duration_ms=round((trio.current_time() - started) * 1000, 1),
        )

    async def _send_region(self, forward: _Forward, frame: Frame, *, final: bool = True) -> bool:
        """Send the part of ``frame`` not yet sent upstream, literals synchronizing;
        ``final`` when ``frame`` completes the command.

        Returns False when the server refused the command at a literal (it
        completed the request instead of sending ``+``)."""
        upstream = self.upstream
        request = forward.request
        assert upstream is not None and request is not None
        raw = frame.raw
        pos = forward.processed
        if final and pos:
            # The command's start went upstream before its end was here: parse the
            # whole of it before its last octets go (docs/codec.md). A refusal now
            # cannot be taken back upstream, so the connection ends.
            try:
                Command.parse(frame).args  # noqa: B018 - parsing is the check
            except ParseError as exc:
                self._close_reason = "client command refused mid-relay"
                self.write(exc.reply.to_bytes())
                self._bye("Command aborted; closing the connection")
                raise _Closed from None
        # A renamed APPEND mailbox replaces the frame's start, a literal name included.
        replaced = forward.head[0] if pos == 0 and forward.head is not None else 0
        await upstream.begin_writing(request)
        done = False
        try:
            for lit in frame.literals:
                if (lit.stop <= pos and lit.start <= pos) or lit.start < replaced:
                    continue
                if lit.start > pos:
                    head = raw[pos : lit.start]
                    if not lit.sync:  # "{n+}" -> "{n}": always wait for the server's "+"
                        plus = head.rindex(b"+}")
                        head = head[:plus] + head[plus + 1 :]
                    if pos == 0:
                        head = self._opening(forward, head)
                    if forward.flags is not None:
                        head = forward.flags.command_flags(head)
                    pos = lit.start
                    if request.note is not None:
                        request.note.bytes_up += len(head)
                    if not await upstream.send_segment(request, head, literal=True):
                        done = True
                        return False
                if not lit.streamed:
                    await upstream.send_raw(memoryview(raw)[lit.start : lit.stop])
                    pos = lit.stop
                    if request.note is not None:
                        request.note.bytes_up += lit.size
            if pos < len(raw):
                tail = raw[pos:]
                if pos == 0:
                    tail = self._opening(forward, tail)
                if forward.flags is not None:
                    tail = forward.flags.command_flags(tail)
                await upstream.send_segment(request, tail, literal=False)
                pos = len(raw)
                if request.note is not None:
                    request.note.bytes_up += len(tail)
            done = final
            return True
        except UpstreamError as exc:
            self._close_reason = str(exc)
            self._bye("Connection to the mail server lost")
            raise _Closed from None
        finally:
            forward.processed = pos
            if done:
                upstream.end_writing(request)

    @staticmethod
    def _opening(forward: _Forward, data: bytes) -> bytes:
        """The first octets of a command as they go upstream: the proxy's tag, and
        a renamed APPEND mailbox (``data`` starts at the client's tag)."""
        assert forward.request is not None
        if forward.head is not None:
            end, head = forward.head
            data = head + data[end:]
        return forward.request.tag + data[len(forward.command.tag) :]

    async def _local(self, command: Command) -> bool:
        """Answer the commands the session keeps to itself; True when it did."""
        name, tag = command.name, command.tag
        if name not in _LOCAL_AFTER_LOGIN:
            return False
        if enabled_for(AUDIT_LEVEL):
            status = "OK" if name in ("CAPABILITY", "ID", "LOGOUT") else "BAD"
            record = CommandAudit(tag, name, extra={"local": True})
            self._audit(record, status, None, trio.current_time())
        if name == "CAPABILITY":
            self.write(b"* CAPABILITY " + " ".join(self._capabilities()).encode() + b"\r\n")
            self.tagged(tag, "OK", "Capability completed")
        elif name == "ID":
            self._answer_id(command)
        elif name == "LOGOUT":
            await self._logout(tag)
        elif name in ("LOGIN", "AUTHENTICATE", "UNAUTHENTICATE"):
            self.tagged(tag, "BAD", "Already authenticated")
        elif name == "STARTTLS":
            self.tagged(tag, "BAD", "TLS is already active" if self.tls else "Not allowed now")
        else:
            self.tagged(tag, "BAD", f"{name} is not supported by this proxy")
        return True

    async def _logout(self, tag: bytes) -> None:
        upstream = self.upstream
        assert upstream is not None
        timeout = self.proxy.config.timeouts.upstream_response
        # The commands in flight finish first, however long a healthy server takes
        # (a large FETCH); the watchdog cuts a silent one.
        while upstream.oldest is not None:
            await upstream.oldest.done.wait()
        self._logout_reply(tag)
        self.state = State.LOGOUT
        self._close_reason = "logout"
        # Send the BYE from here, after the write in progress (the upstream reader's,
        # with the last responses) has ended: the relay cancels the reader next, and a
        # cancelled write would cut those responses short and lose the BYE.
        with trio.move_on_after(timeout):
            await self.flush()

    # -- Downstream: what the upstream sends ---------------------------------------------

    def upstream_response(self, response: Response, request: Request | None) -> None:
        kind = response.kind
        if kind is Kind.UNTAGGED:
            self._untagged(response)
        elif kind is Kind.TAGGED:
            assert request is not None and request.client_tag is not None
            self._completed(request, response)
            line = self._status_line(request.client_tag, response.name, response)
            self._emit(line)
            if request.note is not None:
                self._audit(request.note, response.name, _code_of(line), request.started)
            self._slot.set()
            self._drain_if_quiet()
        else:
            self._emit(response.frame.raw)

    def upstream_continuation(self, request: Request) -> None:
        if request is self._idle:
            self._framer.expect_line()  # the client's next line is DONE
            request.asked = None  # idling: the client's turn until DONE

    def upstream_part(self, part: FramePart | LiteralChunk) -> None:
        if self.cache_side is not None and self.upstream is not None:
            oldest = self.upstream.oldest
            if oldest is not None and oldest.fill is not None:
                self.cache_side.capture_part(oldest.fill, part)
        if isinstance(part, LiteralChunk):
            self._emit(part.data)
            return
        raw = part.raw
        if part.literal is None and self.cache_side is not None and self.upstream is not None:
            oldest = self.upstream.oldest
            if oldest is not None and oldest.merge is not None:
                with contextlib.suppress(ParseError):
                    whole = Response.parse(part.frame)
                    raw = self.cache_side.merged(oldest.merge, raw, whole)
        self._emit(self._client_flags(raw))
        # Between the parts of a response the client is inside it (a literal's
        # data): the session's own output waits (see write), and a BYE there is
        # left out (it would read as message data).
        self._mid_response = part.literal is not None
        if not self._mid_response and self._held:
            self._out.extend(self._held)
            self._out_size += self._held_size
            self._held, self._held_size = [], 0
            self._response_ended.set()
        if part.literal is None and self.mailbox is not None and self.mailbox.uids is not None:
            with contextlib.suppress(ParseError):
                self.mailbox.apply(Response.parse(part.frame))

    async def upstream_flush(self) -> None:
        await self.flush()
        # The reader waited for the client, not for the server, until now.
        self._relayed_at = trio.current_time()

    def _session_rewrite(self) -> Rewrite | None:
        """The rewrite of this session's rules (recomputed after a reload)."""
        rules = self.proxy.rules
        if rules is None:
            return None
        key = (rules, self.identity, self.tls)  # before and after login, STARTTLS
        if self._rewrite_of != key:
            self._decisions.clear()
            session = rules.session_decision(self._rule_context(None))
            self._rewrite = session.rewrite
            # A protocol trace only once logged in: LOGIN is never in it.
            self._trace_on = session.trace and self.state is not State.NOT_AUTHENTICATED
            self._rewrite_of = key
        return self._rewrite

    def _trace(self, direction: str, data: bytes | memoryview) -> None:
        """One line of a session's protocol trace (a ``trace`` rule): the wire
        octets, cut at 1,000, never a credential (LOGIN and AUTHENTICATE lines of
        a logged-in client are redacted; before login nothing is traced)."""
        raw = bytes(data[:1000])
        head = raw.split(b" ", 2)
        if direction == "C" and len(head) > 1 and head[1].upper() in (b"LOGIN", b"AUTHENTICATE"):
            raw = head[0] + b" " + head[1] + b" [redacted]"
        text = raw.decode("utf-8", "backslashreplace")
        trace_log.info("trace", dir=direction, line=text, size=len(data))

    def _hidden_response(self, response: Response) -> bool:
        """A LIST, LSUB or STATUS response about a hidden mailbox (dropped)."""
        rewrite = self._session_rewrite()
        if rewrite is None or not rewrite.hide:
            return False
        try:
            data = response.data
        except ParseError:
            return False
        if not isinstance(data, ListData | MailboxStatus):
            return False
        utf8 = self.utf8
        return rewrite.hidden(canonical(mailbox_text(data.mailbox, utf8=utf8), rewrite.separator))

    def _untagged(self, response: Response) -> None:
        name = response.name
        if name in ("LIST", "LSUB", "STATUS") and self._hidden_response(response):
            return
        target = self.mailbox
        upstream = self.upstream
        if upstream is not None and self._selecting:
            oldest = upstream.oldest
            if oldest is not None and oldest in self._selecting:
                target = self._selecting[oldest]
        if target is not None:
            target.apply(response)
        if name == "FETCH" and upstream is not None and self.cache_side is not None:
            oldest = upstream.oldest
            if oldest is not None and oldest.fill is not None:
                self.cache_side.capture(oldest.fill, response)
        if name in RENAMED_RESPONSES:
            names = self._names()
            if names is not None and names.rewrite.renames:
                oldest = upstream.oldest if upstream is not None else None
                raw = names.response(response, oldest.listing if oldest is not None else None)
                if raw is not None:
                    self._emit(raw)
                return
        if name == "CAPABILITY":
            caps = " ".join(self._capabilities()).encode()
            self._emit(b"* CAPABILITY " + caps + b"\r\n")
            return
        if name == "ENABLED":
            try:
                data = response.data
            except ParseError:
                data = None
            if isinstance(data, CapabilityData):
                self.enabled.update(cap.upper() for cap in data.capabilities)
        elif name == "BYE":
            self._bye_sent = True
            self._close_reason = "upstream said BYE"
        elif name == "ESEARCH":
            self._emit(self._esearch_line(response))
            return
        if response.is_status:
            self._emit(self._client_flags(self._status_line(b"*", name, response)))
            return
        raw = response.frame.raw
        if name == "FETCH" and self.cache_side is not None and upstream is not None:
            oldest = upstream.oldest
            if oldest is not None and oldest.merge is not None:
                raw = self.cache_side.merged(oldest.merge, raw, response)
        self._emit(self._client_flags(raw))

    def client_flags(self, data: bytes) -> bytes:
        """:meth:`_client_flags`, for what the proxy writes itself (the cache)."""
        return self._client_flags(data)

    def _client_flags(self, data: bytes) -> bytes:
        """``data`` with flags and keywords in the client's form (``rewrite.flags``)."""
        rewrite = self._rewrite
        if rewrite is None or not rewrite.flags or self.proxy.rules is None:
            return data
        return Names(rewrite, self.utf8).response_flags(data)

    def _esearch_line(self, response: Response) -> bytes:
        """An ESEARCH response with the client's tag in its correlator.

        ``(TAG "P7")`` names the command that asked (RFC 4731); the upstream saw the
        proxy's tag, so it is mapped back like a tagged response's. An ESEARCH for no
        request in flight (a CONTEXT=SEARCH update, RFC 5267) is passed as it is.
        """
        raw = response.frame.raw
        try:
            data = response.data
        except ParseError:
            return raw
        if not isinstance(data, EsearchData) or data.tag is None or self.upstream is None:
            return raw
        request = self.upstream.pending(data.tag)
        match = _ESEARCH_TAG.match(raw)
        if request is None or request.client_tag is None or match is None:
            return raw
        return raw[: match.start(1)] + b'"' + request.client_tag + b'"' + raw[match.end(1) :]

    def _completed(self, request: Request, response: Response) -> None:
        name = request.name
        if request.fill is not None and self.cache_side is not None:
            self.cache_side.finish(request.fill)
        if request is self._idle:
            # IDLE ended without DONE (refused, or ended by the server): the
            # client's next line is a command again.
            self._idle = None
            self._framer.expect_command()
        pending = self._selecting.pop(request, None)
        if pending is not None:
            if response.name == "OK":
                pending.apply(response)
                self.mailbox = pending
                self.state = State.SELECTED
            elif response.name == "NO":
                self.mailbox = None
                self.state = State.AUTHENTICATED
        self._unselecting.discard(request)
        if pending is None and name in ("CLOSE", "UNSELECT") and response.name == "OK":
            self.mailbox = None
            self.state = State.AUTHENTICATED

    def _status_line(self, tag: bytes, status: str, response: Response) -> bytes:
        """A status response as the client should see it: ``tag`` in place of the
        upstream's, ``[CAPABILITY]`` rewritten, ``[REFERRAL]`` removed."""
        raw = response.frame.raw
        if response.kind is Kind.TAGGED:
            old = response.tag or b""
            raw = tag + raw[len(old) :]
        if b"[" not in raw[: len(tag) + 12]:
            return raw
        try:
            condition = response.condition
        except ParseError:
            return raw
        if condition is None or condition.code is None:
            return raw
        code = condition.code.name
        if code == "CAPABILITY" and self.upstream is not None:
            caps = " ".join(self._capabilities()).encode()
            return b"%s %s [CAPABILITY %s] %s\r\n" % (tag, status.encode(), caps, condition.text)
        if code == "REFERRAL":
            return b"%s %s %s\r\n" % (tag, status.encode(), condition.text or b"Done")
        return raw


#: The tag-string of an ESEARCH response's correlator (quoted, or an atom).
_ESEARCH_TAG = re.compile(rb'\* ESEARCH \(TAG ("[^"\\]*"|[^ ()"]+)', re.IGNORECASE)


_CODE = re.compile(rb"\S+ [A-Za-z]+ \[([A-Za-z0-9.-]+)")


def _stateful(command: Command) -> bool:
    """Whether ``command`` leaves state on the upstream connection beyond the
    selected mailbox: ENABLE, CONDSTORE or QRESYNC in any form, SEARCHRES (``$``,
    ``RETURN (SAVE)``), NOTIFY, or a command the proxy does not list as stateless."""
    if command.name not in _STATELESS or _STATEFUL_WORDS.search(command.frame.raw):
        return True
    if command.base_name == "SEARCH":
        with contextlib.suppress(ParseError):
            args = command.args
            options = args.return_options if isinstance(args, SearchArgs) else None
            return any(name.upper() == "SAVE" for name, _ in options or ())
    return False


def _numbers_messages(command: Command) -> bool:
    """Whether ``command`` names messages by sequence number (or is one during
    which no expunge may be shown, RFC 9051 section 7.5.1)."""
    name = command.name
    if name in ("FETCH", "STORE", "SEARCH", "SORT", "THREAD", "COPY", "MOVE"):
        return True
    if name not in ("UID SEARCH", "UID SORT", "UID THREAD"):
        return False
    try:
        args = command.args
    except ParseError:
        return True
    key = getattr(args, "key", None)
    return not isinstance(key, SearchKey) or _has_seqset(key)


def _has_seqset(key: SearchKey) -> bool:
    if key.name == "SEQSET":
        return True
    return any(isinstance(arg, SearchKey) and _has_seqset(arg) for arg in key.args)


def _code_of(line: bytes) -> str | None:
    """The response code of a status line (``NOPERM`` of ``a NO [NOPERM] ...``)."""
    match = _CODE.match(line)
    return match.group(1).decode("ascii") if match else None


def _clean(text: str) -> bytes:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text).encode("ascii")


def _tag_of(frame: Frame) -> bytes | None:
    end = frame.raw.find(b" ")
    return frame.raw[:end] if 0 < end <= 64 else None


def _name_of(frame: Frame) -> str:
    try:
        return Command.parse(frame).name
    except ParseError:
        return ""


def _forwardable_id(
    params: tuple[tuple[bytes, bytes | None], ...],
) -> tuple[tuple[bytes, bytes | None], ...]:
    """The client's ID fields that may go upstream (see :data:`_ID_FORWARDED`)."""
    kept = []
    for key, value in params:
        if key.lower() not in _ID_FORWARDED:
            continue
        if value is not None and (len(value) > _ID_MAX_VALUE or b"\0" in value):
            continue
        kept.append((key.lower(), value))
    return tuple(kept[:_ID_MAX_PAIRS])


def _decode_user(raw: bytes) -> str | None:
    if len(raw) > MAX_USER:
        return None
    try:
        user = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not user or any(ch in user for ch in "\0\r\n"):
        return None
    return user


def _b64(data: bytes) -> bytes:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc


def _prefixed(prefix: str, values: dict[str, str]) -> dict[str, str]:
    return {prefix + key: value for key, value in values.items()}
