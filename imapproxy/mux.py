"""Concurrent sharing of upstream connections (docs/multiplex.md, "Sharing").

With ``[multiplex] max_sessions_per_connection`` above 1, client sessions of the
same user (and SASL authorization identity, and upstream) share that user's
logged-in upstream connections. The pieces:

* :class:`Multiplexer` (one per proxy) keeps a :class:`UserGroup` per user: its
  :class:`SharedConnection` objects and the keyed hash of the password the upstream
  last accepted (as :mod:`imapproxy.pool` checks it).
* :class:`SharedConnection` owns one :class:`~imapproxy.upstream.UpstreamConnection`.
  Its reader task routes what the server sends by meaning; a keeper task runs the
  proxy's own commands (learning the UIDs of new messages, IDLE). One command is on
  the connection at a time (*the turn*): results carry no tag, so only then can
  they be told apart. The connection tracks its selected mailbox with the full
  sequence-number-to-UID map, and each message's flags as last seen.
* :class:`Lane` is a session's end: it offers the session the interface of an
  :class:`~imapproxy.upstream.UpstreamConnection` (requests, writing, a reader
  loop), so the session's relay -- rules, audit, renaming -- is the same on a shared
  connection. It keeps the session's own *view* of the mailbox (its sequence
  numbers, as UIDs) and the expunges it has not been shown yet.

Correctness, as RFC 9051 asks of one server connection, per session:

* A command is buffered whole (literal data included; spooled to disk above
  :data:`SPOOL_AT`) before it goes onto the connection, so a client that stops
  mid-command never leaves the connection half-written.
* Sequence numbers are the session's: FETCH, STORE, COPY, MOVE and SEARCH go
  upstream in UID form, translated through the session's view, and FETCH and
  SEARCH results are numbered back.
* An EXPUNGE is shown to a session only while one of its commands is in progress,
  never during its sequence-number FETCH, STORE or SEARCH (section 7.5.1); until
  then its view keeps the old numbering. EXISTS is shown as soon as the UIDs of the
  new messages are known (the keeper asks), to every session on the mailbox.
* Results (LIST, STATUS, SEARCH, FETCH data asked for, ...) go only to the session
  whose command is on the connection. A changed FLAGS of a message -- whoever
  changed it, a ``.SILENT`` STORE included (sent upstream without ``.SILENT``) --
  goes to the other sessions on the mailbox as an unsolicited FETCH.
* A SELECT of a mailbox that another session of the user has open in the same mode
  joins its connection, answered from the tracked state; otherwise the mailbox is
  selected on a connection no session has a mailbox open on, or a new one (up to
  ``max_connections_per_user``; beyond that the SELECT is refused with ``[LIMIT]``).
* CLOSE of a shared read-write mailbox is sent as EXPUNGE (which is what CLOSE does
  to the mailbox) and never deselects it for the others; UNSELECT is the lane's.
* IDLE is the lane's: the client is told ``+ idling`` at once and sees the updates
  as they come; the connection itself IDLEs while a session idles and no command
  is waiting, and says DONE as soon as one is.
* What leaves state on a connection (ENABLE, CONDSTORE in any form, QRESYNC,
  SEARCHRES, NOTIFY, commands the proxy does not know) is never sent on a shared
  connection: the session moves to a dedicated connection first (the session does
  that, see ``ClientSession._go_dedicated``).
* The reader never waits for a client: each lane queues what it is sent, in memory
  up to :data:`LANE_MEMORY` and in a temporary file beyond (up to
  :data:`LANE_SPOOL_MAX`, then the session is ended as too slow).
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import math
import re
import tempfile
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Literal

import trio

from imapproxy.logs import get_logger
from imapproxy.mailbox import SelectedMailbox
from imapproxy.upstream import InFlight, Request, UpstreamConnection, UpstreamError
from imapproxy.wire import Frame, Response, SequenceSet
from imapproxy.wire.commands import (
    Command,
    CommandArgs,
    CopyArgs,
    FetchArgs,
    NoArgs,
    SearchArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
)
from imapproxy.wire.framing import FramePart, LiteralChunk, LiteralSpan
from imapproxy.wire.reader import ParseError
from imapproxy.wire.responses import EsearchData, FetchData, Kind, MailboxStatus, SearchData
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import Mailbox

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from imapproxy.config import Multiplex, Timeouts, Upstream
    from imapproxy.pool import PoolKey
    from imapproxy.upstream import Downstream

__all__ = ["Lane", "Multiplexer", "NotShared", "SharedConnection", "UserGroup"]

log = get_logger("imapproxy.mux")

#: Octets a lane keeps in memory for its client before spooling to disk.
LANE_MEMORY = 4 * 1024 * 1024
#: Octets a lane may spool for a client that does not read; beyond, it is cut.
LANE_SPOOL_MAX = 1024 * 1024 * 1024
#: A buffered command's literal data goes to a temporary file beyond this size.
SPOOL_AT = 1024 * 1024
#: The slowest rate (octets/s) at which a server may take a command's literal
#: data before its connection is given up (on top of ``upstream_response``).
_SLOWEST_WRITE = 100_000
#: How long the connection IDLEs before renewing it (RFC 9051: under 30 minutes).
IDLE_RENEW = 25 * 60.0
#: How often a connection whose server has no IDLE is polled while sessions idle.
POLL_EVERY = 30.0
#: Commands whose sequence numbers a lane translates to UIDs.
_TRANSLATED = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH"})
#: Commands that use sequence numbers but whose arguments are not parsed: sent as
#: they are while the session's numbering is the connection's.
_UNTRANSLATED = frozenset({"SORT", "THREAD"})
#: Commands during which an EXPUNGE must not be shown (RFC 9051 section 7.5.1).
_NO_EXPUNGE_DURING = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})
#: Commands valid only with a mailbox selected (never sent for a session without).
_SELECTED_ONLY = frozenset(
    {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
     "SORT", "THREAD", "ESEARCH"}
)  # fmt: skip
#: Commands one execution can answer for several lanes, when they are identical
#: (their results are the same; numbered for each lane).
_RIDABLE = frozenset(
    {"UID FETCH", "UID SEARCH", "STATUS", "LIST", "LSUB", "NAMESPACE", "GETQUOTAROOT",
     "GETQUOTA", "MYRIGHTS", "GETACL", "LISTRIGHTS", "GETMETADATA"}
)  # fmt: skip
#: Commands whose FETCH responses are the command's results.
_FETCHING = frozenset({"FETCH", "UID FETCH", "STORE", "UID STORE"})
_NUMBER = re.compile(rb"\*[ \t]+(\d+)[ \t]+")  # spaces in runs too (QUIRKS F3)
#: A FETCH item that sets \Seen (BODY[...], BINARY[...], RFC822, RFC822.TEXT).
_SETS_SEEN = re.compile(rb"(?i)[( ](?:BODY|BINARY)\[|[( ]RFC822(?:\.TEXT)?[ )\r]")
_FLAGS_ITEM = re.compile(rb"(?<=[( ])FLAGS \(([^()]*)\)", re.IGNORECASE)
#: What changes the nesting of a response's text: parentheses, quotes, escapes.
_NESTING = re.compile(rb'[()"\\]')
#: Response codes of a SELECT's answer kept for the sessions that join it.
_KEPT_CODES = frozenset({"PERMANENTFLAGS", "MAILBOXID", "UIDNOTSTICKY"})
#: SEARCH RETURN options whose results are renumbered for a session (others, such
#: as PARTIAL, are by position: the SEARCH goes as the client wrote it).
_RENUMBERED_RETURNS = frozenset({"MIN", "MAX", "COUNT", "ALL"})


class NotShared(Exception):
    """A command cannot run on the shared connection as the session's numbering
    stands; the session answers it with ``text`` (and the response ``code``)."""

    def __init__(self, status: str, code: str | None, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


_EXPUNGE_ISSUED = NotShared("NO", "EXPUNGEISSUED", "Messages were expunged; NOOP, then retry")


# -- the proxy's side ------------------------------------------------------------------


@dataclass(eq=False)
class UserGroup:
    """One user's shared connections (per upstream, authzid, and for a trusted
    upstream the client address: a :data:`~imapproxy.pool.PoolKey`)."""

    key: PoolKey
    digest: bytes
    verified_at: float
    conns: list[SharedConnection] = field(default_factory=list)
    #: Connections being logged in for the group.
    logging_in: int = 0
    #: SELECTs waiting for a new connection, by (mailbox, read-only): the same
    #: mailbox's waits for it instead of logging in another.
    opening: dict[tuple[bytes, bool], trio.Event] = field(default_factory=dict)


class Multiplexer:
    """The shared connections of all users (see the module docstring)."""

    def __init__(
        self,
        settings: Multiplex,
        timeouts: Timeouts,
        spawn: Callable[[Callable[[], Awaitable[object]]], None],
    ) -> None:
        self.settings = settings
        self.timeouts = timeouts
        self._spawn = spawn
        self.groups: dict[PoolKey, UserGroup] = {}
        self._tags = (f"M{n}".encode("ascii") for n in itertools.count(1))

    def __len__(self) -> int:
        return sum(len(group.conns) for group in self.groups.values())

    def next_tag(self) -> bytes:
        return next(self._tags)

    def join(self, key: PoolKey, digest: bytes, now: float) -> Lane | None:
        """A lane on a connection of the group for a login whose credentials hash
        to ``digest`` (checked in constant time), if the upstream checked them less
        than ``reuse_max_age`` ago and a connection has room; else None."""
        group = self.groups.get(key)
        if group is None or not hmac.compare_digest(group.digest, digest):
            return None
        if now - group.verified_at > self.settings.reuse_max_age:
            return None
        conn = self._roomiest(group)
        if conn is None:
            return None
        return Lane(conn)

    def adopt(
        self, key: PoolKey, digest: bytes, now: float, upstream: UpstreamConnection
    ) -> Lane | None:
        """Share ``upstream`` (just logged in with credentials hashing to ``digest``)
        in the user's group; None when the group or the proxy is at its limit (the
        session keeps it as a dedicated connection)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = UserGroup(key, digest, now)
        group.digest, group.verified_at = digest, now  # the upstream just checked it
        if len(group.conns) >= self.settings.max_connections_per_user or (
            len(self) >= self.settings.max_connections
        ):
            # No more connections for the user: this login only checked the
            # password; the session joins one it may share (the caller logs
            # ``upstream`` out), or keeps ``upstream`` to itself when none has room.
            if not group.conns:
                del self.groups[key]
                return None
            conn = self._roomiest(group)
            return Lane(conn) if conn is not None else None
        shared = SharedConnection(self, group, upstream)
        group.conns.append(shared)
        self._spawn(shared.run)
        return Lane(shared)

    def _roomiest(self, group: UserGroup) -> SharedConnection | None:
        best: SharedConnection | None = None
        for conn in group.conns:
            if conn.closed or len(conn.lanes) >= self.settings.max_sessions_per_connection:
                continue
            if best is None or len(conn.lanes) < len(best.lanes):
                best = conn
        return best

    def find(
        self, group: UserGroup, mailbox: Mailbox, readonly: bool, lane: Lane
    ) -> SharedConnection | None:
        """A connection of the group with ``mailbox`` selected in that mode, with
        room for ``lane`` (or ``lane`` on it already)."""
        limit = self.settings.max_sessions_per_connection
        for conn in group.conns:
            selected = conn.mailbox
            if (
                not conn.closed
                and selected is not None
                and selected.readonly == readonly
                and selected.name.raw == mailbox.raw
                and (len(conn.lanes) < limit or lane in conn.lanes)
            ):
                return conn
        return None

    def free(self, group: UserGroup, lane: Lane) -> SharedConnection | None:
        """A connection of the group on which no session (but ``lane``) has a
        mailbox open, with room: one to select another mailbox on."""
        limit = self.settings.max_sessions_per_connection
        candidates = [
            conn
            for conn in group.conns
            if conn.free_for(lane) and (len(conn.lanes) < limit or lane in conn.lanes)
        ]
        if lane.shared in candidates:
            return lane.shared
        return min(candidates, key=lambda conn: len(conn.lanes), default=None)

    def can_grow(self, group: UserGroup) -> bool:
        """Whether the user may have one more connection (counting logins under way)."""
        logging_in = sum(other.logging_in for other in self.groups.values())
        return (
            len(group.conns) + group.logging_in < self.settings.max_connections_per_user
            and len(self) + logging_in < self.settings.max_connections
        )

    def add(self, group: UserGroup, upstream: UpstreamConnection) -> SharedConnection:
        shared = SharedConnection(self, group, upstream)
        group.conns.append(shared)
        self._spawn(shared.run)
        return shared

    def forget(self, shared: SharedConnection) -> None:
        group = shared.group
        if shared in group.conns:
            group.conns.remove(shared)
        if not group.conns and self.groups.get(group.key) is group:
            del self.groups[group.key]

    def sweep(self, now: float) -> list[SharedConnection]:
        """The connections no session used for ``idle_expiry``, or whose login is
        older than ``reuse_max_age`` with no session on them: to be logged out."""
        out = []
        for group in list(self.groups.values()):
            for conn in list(group.conns):
                if conn.lanes:
                    continue
                idle = now - conn.idle_since > self.settings.idle_expiry
                stale = now - group.verified_at > self.settings.reuse_max_age
                if idle or stale or conn.closed:
                    self.forget(conn)
                    out.append(conn)
        return out

    def drain(self) -> list[SharedConnection]:
        out = [conn for group in self.groups.values() for conn in group.conns]
        self.groups.clear()
        return out


# -- one shared connection ---------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Turn:
    """A lane's command on the connection: the lane's request and the connection's."""

    lane: Lane | None
    request: Request | None  # the lane's (None: the proxy's own)
    upstream: Request | None = None
    name: str = ""
    silent: bool = False  # a STORE whose FETCH results the client did not ask for
    #: A silent STORE's mode and flags (lowercase): what its storer expects.
    store: tuple[str, frozenset[bytes]] | None = None
    searched: bool = False  # a SEARCH translated to UID SEARCH: results numbered back
    #: Identical commands of other lanes answered by this one (see Lane._send).
    riders: list[tuple[Lane, Request]] = field(default_factory=list)
    #: NOOPs of other lanes waiting for news that this command brings: shown
    #: updates, never its results, and answered as NOOPs.
    noops: list[tuple[Lane, Request]] = field(default_factory=list)
    #: Sent as the client wrote it, sequence numbers and all: only while the
    #: session's numbering is the connection's (checked again with the turn).
    needs_sync: bool = False
    #: Set once its writer is done with the connection: the answer can come
    #: while the writer's last send has not returned yet (the next command waits).
    written: trio.Event = field(default_factory=trio.Event)
    #: A UID FETCH's set, and those of others' UID FETCHes of the same items
    #: merged into it (see :class:`_Merge`): which messages each lane asked for
    #: (SharedConnection._askers).
    merge: _Merge | None = None
    #: The UID set of a UID FETCH or UID STORE as sent (None: not known, every
    #: FETCH response during it is a result): a response about another message
    #: is news (another connection's change), for every session.
    spans: _Spans | None = None

    def owners(self) -> list[Lane]:
        """The lanes whose command this is: its own and its riders'."""
        if self.lane is None:
            return []
        if not self.riders:
            return [self.lane]
        return [self.lane, *(lane for lane, _ in self.riders)]

    @property
    def may_expunge(self) -> bool:
        """Whether the session may be shown expunges now: during its own command,
        unless it is a FETCH, STORE or SEARCH by sequence number (RFC 9051 7.5.1)."""
        return self.request is not None and self.request.name not in _NO_EXPUNGE_DURING


#: A UID set as ascending ``(low, high)`` spans, ``high`` None for ``n:*``.
_Spans = list[tuple[int, int | None]]
#: At most this many ranges in a merged UID FETCH's set.
_MERGED_RANGES = 64
#: The sections of BODY.PEEK[...] and BINARY.PEEK[...] items.
_PEEKED = re.compile(rb"(?:BODY|BINARY)\.PEEK\[([^\]]*)\]", re.IGNORECASE)
#: Sections whose data is a header's, small whatever the message's size.
_SMALL_SECTION = re.compile(rb"(?:[0-9]+\.)*(?:HEADER(?:\.FIELDS(?:\.NOT)? .*)?|MIME)", re.I | re.S)
#: The UID set of a UID FETCH or UID STORE as sent.
_UID_SET = re.compile(rb"\S+ UID (?:FETCH|STORE) ([0-9:*,$]+) ", re.IGNORECASE)
_LARGEST_UID = 4294967295
_UID_FETCH = re.compile(rb"(\S+) UID FETCH ([0-9:*,]+) (.+)\r\n", re.IGNORECASE | re.DOTALL)


@dataclass
class _Merge:
    """UID FETCHes of the same items by several lanes, sent as one over the union
    of their UID sets; each lane is given the messages it asked for."""

    segment: _Segment  # the command as it will go (rewritten as sets are added)
    tag: bytes
    items: bytes
    lead: _Spans  # the waiting command's own set (and its identical riders')
    union: _Spans
    wanted: dict[Lane, _Spans] = field(default_factory=dict)

    def add(self, lane: Lane, spans: _Spans) -> bool:
        """Merge ``lane``'s set in (False: the set would grow too fragmented)."""
        union = _union(self.union, spans)
        if len(union) > _MERGED_RANGES:
            return False
        self.union = union
        self.wanted[lane] = spans
        wire = b",".join(map(_span_bytes, union))
        self.segment.parts = [self.tag + b" UID FETCH " + wire + b" " + self.items + b"\r\n"]
        return True


def _fetch_spans(raw: bytes, largest: int) -> tuple[bytes, bytes, _Spans] | None:
    """The tag, items and UID set of a UID FETCH that may be merged with others
    (None: another form, or a set whose ``*`` could mean a UID below its range:
    ``n:*`` with ``n`` above the largest UID known)."""
    match = _UID_FETCH.fullmatch(raw)
    if match is None or _SETS_SEEN.search(raw) or not _one_list(match.group(3)):
        return None
    if any(not _SMALL_SECTION.fullmatch(section) for section in _PEEKED.findall(raw)):
        return None  # bodies: a small fetch merged into a big one would wait for it all
    spans = _uid_spans(match.group(2))
    if spans is None or any(high is None and low > largest for low, high in spans):
        return None
    return match.group(1), match.group(3), spans


def _uid_spans(text: bytes) -> _Spans | None:
    """A UID set as spans: ``n:*`` (or ``*:n``) as ``(n, None)``, ``*`` alone as the
    largest UID there can be and up (the last message, see :func:`_within`)."""
    try:
        uids = SequenceSet.parse(text)
    except ValueError:
        return None
    if uids.saved:
        return None
    spans: _Spans = []
    for first, last in uids.ranges:
        if first is None or last is None:
            low = last if first is None else first
            spans.append((_LARGEST_UID if low is None else low, None))
        else:
            spans.append((min(first, last), max(first, last)))
    return _union([], spans)


def _changed_elsewhere(
    before: bytes | None, after: bytes, store: tuple[str, frozenset[bytes]]
) -> bool:
    """Whether a message's flags ``after`` a silent STORE are not what the STORE
    alone makes of ``before`` (None: not known, so maybe)."""
    if before is None:
        return True
    mode, flags = store
    old = {flag.lower() for flag in before[1:-1].split()}
    new = {flag.lower() for flag in after[1:-1].split()}
    if mode == "+":
        expected = old | flags
    elif mode == "-":
        expected = old - flags
    else:
        expected = set(flags) | (old & {b"\\recent"})
    return new != expected


def _one_list(items: bytes) -> bool:
    """Whether a FETCH's items are one parenthesised list and nothing else: no
    modifiers (PARTIAL picks messages by their place in the set), no quoted
    strings."""
    if not items.startswith(b"(") or not items.endswith(b")") or b'"' in items:
        return False
    depth = 0
    for special in re.finditer(rb"[()]", items):
        depth += 1 if special.group() == b"(" else -1
        if depth == 0:
            return special.end() == len(items)
    return False


def _span_bytes(span: tuple[int, int | None]) -> bytes:
    low, high = span
    if high is None:
        return b"%d:*" % low
    return b"%d" % low if low == high else b"%d:%d" % (low, high)


def _union(spans: _Spans, more: _Spans) -> _Spans:
    out: _Spans = []
    for low, high in sorted([*spans, *more], key=lambda span: span[0]):
        if out:
            last_low, last_high = out[-1]
            if last_high is None or low <= last_high + 1:
                if last_high is not None and (high is None or high > last_high):
                    out[-1] = (last_low, high)
                continue
        out.append((low, high))
    return out


def _within(spans: _Spans, uid: int, last: int) -> bool:
    """Whether ``uid`` is in ``spans`` when the last message's UID is ``last``:
    ``n:*`` is ``last:n`` once no UID is ``n`` or above (RFC 9051 section 6.4.8)."""
    for low, high in spans:  # a loop, not any(): once per message and session
        if high is None:
            if uid >= low or uid == last:
                return True
        elif low <= uid <= high:
            return True
    return False


class SharedConnection:
    """One upstream connection shared by lanes (see the module docstring)."""

    def __init__(self, mux: Multiplexer, group: UserGroup, conn: UpstreamConnection) -> None:
        self.mux = mux
        self.group = group
        self.conn = conn
        conn.downstream = self
        self.lanes: set[Lane] = set()
        #: The mailbox selected on the connection (its UIDs tracked), if any.
        self.mailbox: SelectedMailbox | None = None
        #: FLAGS and OK [PERMANENTFLAGS] of its SELECT, for the sessions that join.
        self.select_data: list[Response] = []
        #: Whether its SELECT said ``OK [UNSEEN n]`` (then so does a join).
        self.select_unseen = False
        #: Each message's FLAGS as last seen (UID -> the parenthesised list).
        self.flags: dict[int, bytes] = {}
        #: Counts what can change the mailbox's messages as seen here (EXISTS,
        #: EXPUNGE, FETCH, a lane's command): a result is reusable while it stands.
        self.changes = 0
        self._unseen: tuple[int, int | None] | None = None
        self.closed = False
        #: Set when the connection is lost or logged out (waiters give up).
        self.gone = trio.Event()
        self.idle_since = trio.current_time()
        self._turn = trio.Semaphore(1)
        self._wanted = 0  # tasks waiting for the turn
        self.current: _Turn | None = None
        self._completions: deque[tuple[_Turn, Response | None]] = deque()
        self._wake = trio.Event()
        self._grew = False  # EXISTS grew: the new UIDs must be learned
        self._idle_request: Request | None = None
        self._idle_started = trio.Event()
        #: The lanes a streamed response goes to (none: it is dropped).
        self._streaming: list[Lane] = []
        #: The streamed FETCH response being read: its UID, the lanes that asked
        #: for it, and the search for its FLAGS item.
        self._streamed: tuple[int, list[Lane], _FlagsScan] | None = None
        #: Lanes' commands waiting for the turn, by what they send: an identical
        #: one rides along (see Lane._send).
        self.waiting: dict[bytes, _Turn] = {}
        #: Lanes' UID FETCHes waiting for the turn, by the items they fetch: one
        #: of the same items is merged in (see Lane._send).
        self.merging: dict[bytes, _Turn] = {}

    def __repr__(self) -> str:
        return f"SharedConnection({self.conn!r}, {len(self.lanes)} lanes, {self.mailbox!r})"

    def free_for(self, lane: Lane) -> bool:
        """Whether ``lane`` may select a mailbox here: no other session has one
        open or is opening one."""
        return not self.closed and not any(
            other.view is not None or other.selecting for other in self.lanes if other is not lane
        )

    @property
    def on_mailbox(self) -> list[Lane]:
        return [lane for lane in self.lanes if lane.view is not None]

    # -- tasks -----------------------------------------------------------------------

    async def run(self) -> None:
        """The reader and the keeper, until the connection ends."""
        reason = "connection closed"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keeper, nursery.cancel_scope)
                nursery.start_soon(self._watchdog)
                try:
                    await self.conn.run()
                    reason = "upstream closed the connection"
                except UpstreamError as exc:
                    reason = str(exc)
                nursery.cancel_scope.cancel()
        except Exception:
            # A bug ends this connection and its sessions, never the proxy.
            log.exception("shared upstream connection failed")
            reason = "internal error"
        finally:
            self._lost(reason)
            with trio.CancelScope(shield=True):
                await self.conn.aclose()

    def _lost(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.gone.set()
        self.mux.forget(self)
        if self.lanes:
            log.warning("shared upstream connection lost", error=reason, sessions=len(self.lanes))
        for lane in list(self.lanes):
            lane.lost()
        self.lanes.clear()

    async def _watchdog(self) -> None:
        """Give the connection up when the server owes an answer and says nothing
        for ``upstream_response`` (every session on it gets its BYE): a stalled
        server must not hold the sessions that wait for the turn."""
        limit = self.mux.timeouts.upstream_response
        conn = self.conn
        while True:
            await trio.sleep(min(limit / 4, 5.0))
            turn = self.current
            request = turn.upstream if turn is not None else None
            if request is None or request.asked is None or turn is None or turn.name == "IDLE":
                continue
            if trio.current_time() - max(conn.last_receive, request.asked) > limit:
                log.warning("upstream error", error="not responding", command=turn.name)
                await conn.aclose()  # the reader ends, and with it the connection
                return

    async def logout(self) -> None:
        """Log out (an idle connection no session uses)."""
        if self.closed:
            return
        self.closed = True
        self.gone.set()
        self.mux.forget(self)
        try:
            with trio.move_on_after(2.0):
                await self._acquire()
                if not self.conn.closed:
                    await self.conn.command("LOGOUT", NoArgs())
        except UpstreamError:
            pass
        finally:
            await self.conn.aclose()

    async def _acquire(self) -> None:
        self._wanted += 1
        self._wake.set()
        try:
            await self._turn.acquire()
        finally:
            self._wanted -= 1

    async def _acquire_unless_gone(self) -> bool:
        """:meth:`_acquire`, given up when the connection is lost or logged out
        (each command ahead is bounded by the watchdog); whether the turn was taken."""
        acquired = False
        async with trio.open_nursery() as nursery:

            async def give_up() -> None:
                await self.gone.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(give_up)
            await self._acquire()
            acquired = True
            nursery.cancel_scope.cancel()
        return acquired

    def _release(self) -> None:
        self.current = None
        self._turn.release()
        self._wake.set()

    async def _keeper(self, scope: trio.CancelScope) -> None:
        """Finish commands (learning new UIDs first), and IDLE for idling lanes."""
        while True:
            poll = self._polling()
            with trio.move_on_after(POLL_EVERY if poll else math.inf) as waited:
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                if waited.cancelled_caught and self._polling() and not self._wanted:
                    async with self._turn:  # no IDLE upstream: NOOP brings the news
                        await self.own("NOOP", NoArgs())
                        if self._grew:
                            await self._learn()
                while self._completions:
                    turn, response = self._completions.popleft()
                    await self._finish(turn, response)
                    self._release()
                if self._grew and self._turn.value and not self._wanted:
                    async with self._turn:
                        await self._learn()
                if self._idle_wanted() and self._turn.value and not self._wanted:
                    async with self._turn:
                        await self._idle()
            except UpstreamError as exc:
                self._lost(str(exc))
                scope.cancel()
                return

    def _polling(self) -> bool:
        """Whether sessions idle on a server without IDLE (polled with NOOP)."""
        return (
            not self.closed
            and not self.conn.has("IDLE")
            and any(lane.idling is not None for lane in self.lanes)
        )

    def _idle_wanted(self) -> bool:
        return (
            not self.closed
            and "IDLE" in {cap.upper() for cap in self.conn.capabilities}
            and any(lane.idling is not None for lane in self.lanes)
        )

    async def _idle(self) -> None:
        """IDLE upstream until a command waits for the turn, no lane idles any more,
        new messages need their UIDs learned, or it is time to renew."""
        conn = self.conn
        request = conn.new_request("IDLE", relay_continuations=True)
        self._idle_request = request
        self._idle_started = trio.Event()
        self.current = _Turn(None, None, request, "IDLE")
        try:
            await conn.begin_writing(request)
            await conn.send_raw(request.tag + b" IDLE\r\n")
            with trio.move_on_after(self.mux.timeouts.upstream_response):
                while not self._idle_started.is_set() and not request.done.is_set():
                    await _either(self._idle_started, request.done)
            if not request.done.is_set():
                with trio.move_on_after(IDLE_RENEW):
                    while self._idle_wanted() and not self._wanted and not self._grew:
                        self._wake = trio.Event()
                        await _either(self._wake, request.done)
                        if request.done.is_set():
                            break
                if not request.done.is_set():
                    await conn.send_raw(b"DONE\r\n")
                conn.end_writing(request)
                with trio.fail_after(self.mux.timeouts.upstream_response):
                    await request.done.wait()
            else:
                conn.end_writing(request)
        except trio.TooSlowError:
            raise UpstreamError("upstream did not end IDLE") from None
        finally:
            self._idle_request = None
            self.current = None
        if request.result is None:
            raise UpstreamError("upstream connection lost")
        if self._grew:
            await self._learn()
        self._wake.set()

    async def _learn(self) -> None:
        """Learn the UIDs of messages that EXISTS announced, then show the lanes."""
        self._grew = False
        mailbox = self.mailbox
        if mailbox is None or mailbox.uids is None:
            return
        if not mailbox.complete:
            known = [uid for uid in mailbox.uids if uid]
            last = known[-1] if known else 0
            learned = False
            request = await self.own(
                "UID SEARCH",
                SearchArgs(SearchKey("UID", (SequenceSet(((last + 1, None),)),))),
                collect_fetch=True,
            )
            for response in request.untagged:  # in the order the server said them
                data = _data(response)
                if not isinstance(data, SearchData):
                    self._untagged(response)
                    continue
                found = sorted(uid for uid in data.numbers if uid > last)
                uids = mailbox.uids or []
                slots = uids.count(0)
                if slots == len(found) and all(uid == 0 for uid in uids[len(uids) - slots :]):
                    uids[len(uids) - slots :] = found
                    learned = True
            if not learned and mailbox.uids is not None and 0 in mailbox.uids:
                await self._learn_all()  # numbering moved meanwhile: ask for all of it
        if mailbox.uids and mailbox.uidnext is not None and mailbox.uids[-1] >= mailbox.uidnext:
            mailbox.uidnext = mailbox.uids[-1] + 1
        # Show the new messages to every lane on the mailbox.
        for lane in self.on_mailbox:
            lane.grow(mailbox.uids or [])

    async def _learn_all(self) -> None:
        """The whole sequence-to-UID map from the server (UID SEARCH ALL, the turn
        held). An EXPUNGE or EXISTS that comes with the answer is applied in its
        place: before the result it is already in it, after the result it is not."""
        request = await self.own("UID SEARCH", SearchArgs(SearchKey("ALL")), collect_fetch=True)
        for response in request.untagged:
            data = _data(response)
            if isinstance(data, SearchData) and self.mailbox is not None:
                self.mailbox.learn_uids(list(data.numbers))
            else:
                self._untagged(response)

    async def refresh(self) -> int | None:
        """For a session joining (the turn held): the first unseen message's
        number (None: the SELECT did not say) and UIDNEXT brought up to date --
        asked again only after the mailbox changed."""
        mailbox = self.mailbox
        if self._unseen is not None and self._unseen[0] == self.changes:
            return self._unseen[1]
        changes = self.changes
        found = await self._first_unseen() if self.select_unseen else None
        if mailbox is not None and mailbox.uidnext is not None:
            status = await self.own("STATUS", StatusArgs(mailbox.name, ("UIDNEXT",)))
            for response in status.untagged:
                data = _data(response)
                uidnext = data.get("UIDNEXT") if isinstance(data, MailboxStatus) else None
                if uidnext is not None:
                    mailbox.uidnext = uidnext
        if self.changes == changes:
            self._unseen = (changes, found)
        return found

    async def _first_unseen(self) -> int | None:
        if self.conn.has("ESEARCH"):
            args = SearchArgs(SearchKey("UNSEEN"), return_options=(("MIN", ()),))
        else:
            args = SearchArgs(SearchKey("UNSEEN"))
        request = await self.own("SEARCH", args)
        for response in request.untagged:
            data = _data(response)
            if isinstance(data, EsearchData):
                return data.min
            if isinstance(data, SearchData):
                return min(data.numbers, default=None)
        return None

    async def _finish(self, turn: _Turn, response: Response | None) -> None:
        """A lane's command is complete upstream: learn new UIDs, record a SELECT,
        show the owner the expunges it may see, then its tagged response."""
        await turn.written.wait()  # its writer is off the wire (bounded: see submit)
        lane, request = turn.lane, turn.request
        name = turn.name
        if name in ("SELECT", "EXAMINE") and lane is not None:
            if response is not None and response.name == "OK":
                assert self.mailbox is not None
                self.mailbox.apply(response)
                await self._learn_all()
                self._grew = False
                lane.attach(self, list(self.mailbox.uids or []))
            else:
                self.mailbox = None  # a failed SELECT leaves nothing selected
                self.select_data = []
                self.flags.clear()
        elif self._grew:
            await self._learn()
        if lane is not None and request is not None and response is not None:
            for each, its in [(lane, request), *turn.riders]:
                if each.view is not None and its.name not in _NO_EXPUNGE_DURING:
                    each.show_expunges()
                each.complete(its, response)
        for each, its in turn.noops:
            if each.view is not None:
                each.show_expunges()
            each.complete(its, _status(its.tag, "OK", "NOOP completed"))

    # -- Downstream: what the server sends -----------------------------------------

    def upstream_response(self, response: Response, request: Request | None) -> None:
        kind = response.kind
        if kind is Kind.TAGGED:
            turn = self.current
            if turn is None or request is None or turn.upstream is not request:
                return  # the proxy's own (collected by its caller)
            self._completions.append((turn, response))
            self._wake.set()
            return
        if kind is Kind.CONTINUATION:
            if request is not None and request is self._idle_request:
                self._idle_started.set()
            return
        self._untagged(response)

    def upstream_continuation(self, request: Request) -> None:
        if request is self._idle_request:
            self._idle_started.set()

    def _untagged(self, response: Response) -> None:
        name = response.name
        if name in ("EXISTS", "EXPUNGE", "VANISHED"):
            self.changes += 1
        mailbox = self.mailbox
        turn = self.current
        owners = turn.owners() if turn is not None else []
        owner = owners[0] if owners else None
        if turn is not None and turn.name in ("SELECT", "EXAMINE"):
            # The SELECT's own data: to its session, and kept for those that join.
            if mailbox is not None:
                mailbox.apply(response)
            if name == "FLAGS" or (name == "OK" and _code(response) in _KEPT_CODES):
                self.select_data.append(response)
            elif name == "OK" and _code(response) == "UNSEEN":
                self.select_unseen = True
            if owner is not None and _code(response) != "CLOSED":
                owner.deliver(response)
            return
        if name == "EXISTS":
            if mailbox is not None:
                before = mailbox.exists
                mailbox.apply(response)
                if mailbox.exists > before:
                    self._grew = True
                    self._wake.set()
            return
        if name == "EXPUNGE":
            number = response.number
            if mailbox is None or number is None:
                return
            uid = mailbox.uid_for(number)
            mailbox.apply(response)
            if uid is not None:
                self.flags.pop(uid, None)
                for lane in self.on_mailbox:
                    now = turn is not None and (
                        (lane in owners and turn.may_expunge)
                        or any(lane is noop for noop, _ in turn.noops)
                    )
                    lane.expunged(uid, now=now)
            return
        if name == "FETCH":
            self._fetch(response, turn)
            return
        if name == "FLAGS":
            if mailbox is not None:
                mailbox.apply(response)
                self.select_data = [r for r in self.select_data if r.name != "FLAGS"]
                self.select_data.append(response)
                for lane in self.on_mailbox:
                    lane.deliver(response)
            return
        if name in ("RECENT", "BYE"):
            return  # per connection; the end of the connection reaches every lane
        if name == "OK" and _code(response) == "PERMANENTFLAGS" and mailbox is not None:
            # A new keyword made permanent: the mailbox's news, for every session.
            mailbox.apply(response)
            self.select_data = [r for r in self.select_data if _code(r) != "PERMANENTFLAGS"]
            self.select_data.append(response)
            for lane in self.on_mailbox:
                lane.deliver(response)
            return
        if name == "OK" and _code(response) in ("UIDNEXT", "HIGHESTMODSEQ", "UIDVALIDITY"):
            if mailbox is not None:
                mailbox.apply(response)
            if _code(response) == "UIDVALIDITY":
                # The mailbox was recreated under the sessions (RFC 9051 2.3.1.1):
                # their numbers mean nothing any more, nor does what is tracked.
                for lane in self.on_mailbox:
                    lane.lost()
                self.mailbox = None
                self.select_data = []
                self.flags.clear()
            return
        if owner is None:
            return  # a result of the proxy's own, or chatter during IDLE
        searched = turn is not None and turn.searched and name in ("SEARCH", "ESEARCH")
        for each in owners:
            if searched:
                each.deliver_search(response)
            else:
                each.deliver(response)

    def _fetch(self, response: Response, turn: _Turn | None) -> None:
        """A FETCH response: the owner's result when its command fetches; a change
        of flags goes to the other sessions on the mailbox (an unsolicited one, to
        every session)."""
        mailbox = self.mailbox
        number = response.number
        if mailbox is None or number is None:
            return
        uid = mailbox.uid_for(number)
        frame = response.frame
        if uid is None:
            parsed = _data(response)
            if isinstance(parsed, FetchData) and parsed.uid is not None:
                uid = parsed.uid
                mailbox.apply(response)  # learns the UID
        if uid is None:
            return
        # The lanes whose command asked for this message (a FETCH merged from
        # several asks each for its own; one about another message is news).
        askers = self._askers(turn, uid)
        if askers and not (turn is not None and turn.silent):
            for owner in askers:
                owner.deliver_fetch(response, uid)
        text = _flags_in(frame)
        if text is None:
            return
        store = turn.store if turn is not None else None
        if askers and store is not None and _changed_elsewhere(self.flags.get(uid), text, store):
            # A silent STORE's own result says nothing new to its storer, but a
            # change another client made to the message is news to it as well
            # (RFC 9051 section 6.4.6).
            for owner in askers:
                owner.deliver_flags(uid, text)
        self._flags_seen(uid, text, turn, askers)

    def _askers(self, turn: _Turn | None, uid: int) -> list[Lane]:
        """The lanes whose command asked for the message with ``uid`` (a FETCH
        merged from several asks each for its own; one about another message is
        news, not a result)."""
        if turn is None or turn.name not in _FETCHING:
            return []
        merge = turn.merge
        own = merge.lead if merge is not None else turn.spans
        if own is None:
            return turn.owners()
        uids = self.mailbox.uids if self.mailbox is not None else None
        last = uids[-1] if uids else 0
        wanted = merge.wanted if merge is not None else {}
        return [owner for owner in turn.owners() if _within(wanted.get(owner, own), uid, last)]

    def _flags_seen(self, uid: int, text: bytes, turn: _Turn | None, askers: list[Lane]) -> None:
        """The server reported ``uid``'s flags: a change goes to every session on
        the mailbox but those that have it as their command's result."""
        storing = bool(askers) and turn is not None and turn.name in ("STORE", "UID STORE")
        before = self.flags.get(uid)
        self.flags[uid] = text
        if before is not None and before != text:
            self.changes += 1
        if before == text or (askers and not storing and before is None):
            # Unchanged, or first seen in a FETCH that asked: nobody had older flags
            # of it from this connection.
            return
        for lane in self.on_mailbox:
            if lane in askers:
                continue  # it has them as its result, or asked not to hear (.SILENT)
            lane.deliver_flags(uid, text)

    def upstream_part(self, part: FramePart | LiteralChunk) -> None:
        """A response whose literal streams: to the lanes whose command asked for
        it (a FETCH numbered for each), never through memory whole."""
        if isinstance(part, LiteralChunk):
            if self._streaming:
                data = bytes(part.data)  # the reader's buffer is reused
                for lane in self._streaming:
                    lane.deliver_chunk(data, part.remaining)
            return
        turn = self.current
        if part.first:
            self._streaming = []
            self._streamed = None
            owners = turn.owners() if turn is not None else []
            match = _NUMBER.match(part.raw)
            if match is None:  # a result with a large literal (not a FETCH)
                self._streaming = owners
                for owner in owners:
                    owner.deliver_part(part)
                return
            if part.raw[match.end() : match.end() + 5].upper() != b"FETCH":
                return
            uid = self.mailbox.uid_for(int(match.group(1))) if self.mailbox else None
            if uid is None:
                uid = _uid_in(part.raw, part.literal_spans)
            if uid is None:
                return
            askers = self._askers(turn, uid)
            self._streamed = (uid, askers, _FlagsScan())
            if turn is not None and not turn.silent:
                for owner in askers:
                    lane_seq = owner.seq_for(uid)
                    if lane_seq is not None:
                        self._streaming.append(owner)
                        owner.deliver_part(_renumbered_part(part, lane_seq))
        else:
            for lane in self._streaming:
                lane.deliver_part(part)
        streamed = self._streamed
        if streamed is not None:  # the FLAGS item may be in any part's text
            uid, askers, scan = streamed
            for piece in _text_of(part.raw, part.literal_spans):
                text = scan.feed(piece)
                if text is not None:
                    self._flags_seen(uid, text, turn, askers)
        if part.literal is None:
            self._streaming = []
            self._streamed = None

    async def upstream_flush(self) -> None:
        for lane in self.lanes:
            lane.wake()

    # -- lanes' commands -----------------------------------------------------------

    async def own(self, name: str, args: CommandArgs, *, collect_fetch: bool = False) -> Request:
        """A command of the proxy's own (the turn held), sent and answered whatever
        happens to the session that asked meanwhile; a server that does not answer
        in time loses the connection. Raises UpstreamError."""
        limit = self.mux.timeouts.upstream_response
        with trio.CancelScope(shield=True), trio.move_on_after(limit):
            return await self.conn.command(name, args, collect_fetch=collect_fetch)
        with trio.CancelScope(shield=True):
            await self.conn.aclose()
        raise UpstreamError(f"upstream did not answer {name}") from None

    def news_from(self) -> _Turn | None:
        """A lane's command whose answer is still to come (the one on the wire, or
        the first waiting), which a NOOP can wait for instead of its own turn."""
        turn = self.current
        if (
            turn is not None
            and turn.lane is not None
            and turn.upstream is not None
            and not turn.upstream.done.is_set()
        ):
            return turn
        return next(iter(self.waiting.values()), None)

    async def submit(self, turn: _Turn, segments: list[_Segment]) -> None:
        """Send a lane's buffered command (holding the turn, taken by the caller)."""
        conn = self.conn
        request = turn.request
        assert request is not None
        upstream = conn.new_request(turn.name, request.client_tag, tag=request.tag)
        turn.upstream = upstream
        self.current = turn
        if (turn.name not in _RIDABLE and turn.name != "NOOP") or (
            turn.name == "UID FETCH" and _SETS_SEEN.search(segments[0].data())
        ):
            self.changes += 1  # it may change flags (STORE, FETCH of BODY[], ...)
        # Written whole whatever happens to the session meanwhile: a command cut
        # short would leave the connection unusable for every session on it. A
        # server that does not take it in time loses the connection instead.
        size = sum(segment.size or len(segment.data()) for segment in segments)
        allowed = self.mux.timeouts.upstream_response + size / _SLOWEST_WRITE
        with trio.CancelScope(shield=True), trio.move_on_after(allowed) as scope:
            await conn.begin_writing(upstream)
            try:
                await self._write(upstream, segments)
            finally:
                conn.end_writing(upstream)
                request.asked = upstream.asked
                turn.written.set()
        if scope.cancelled_caught:
            with trio.CancelScope(shield=True):
                await conn.aclose()
            raise UpstreamError("upstream not reading")

    def unclaim(self, claim: SelectedMailbox | None) -> None:
        """A SELECT that claimed the connection's mailbox will not be sent: the
        claim is dropped (unless another took its place)."""
        if claim is not None and self.mailbox is claim:
            self.mailbox = None
            self.select_data = []
            self.flags.clear()

    async def submit_held(self, turn: _Turn, segments: list[_Segment]) -> None:
        """:meth:`submit`; the turn is released when the command cannot go."""
        try:
            await self.submit(turn, segments)
        except BaseException:
            self._release()
            raise

    async def _write(self, upstream: Request, segments: list[_Segment]) -> None:
        conn = self.conn
        for segment in segments:
            if segment.kind == "announce":
                if not await conn.send_segment(upstream, segment.data(), literal=True):
                    return  # refused instead of "+": the tagged answer completes it
            elif segment.kind == "literal":
                for chunk in segment.chunks():
                    await conn.send_raw(chunk)
            else:
                await conn.send_segment(upstream, segment.data(), literal=False)


async def _either(first: trio.Event, second: trio.Event) -> None:
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, first)
        nursery.start_soon(wait, second)


# -- a session's end ------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Segment:
    """Part of a buffered command: a piece ending with a literal's announcement, a
    literal's data (in memory or spooled), or the final piece."""

    kind: Literal["announce", "literal", "tail"]
    parts: list[bytes] = field(default_factory=list)
    spool: IO[bytes] | None = None
    size: int = 0

    def data(self) -> bytes:
        return b"".join(self.parts)

    def add(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.spool is None and self.size > SPOOL_AT:
            self.spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            for part in self.parts:
                self.spool.write(part)
            self.parts = []
        if self.spool is not None:
            self.spool.write(data)
        else:
            self.parts.append(bytes(data))

    def chunks(self) -> list[bytes] | _SpoolReader:
        if self.spool is None:
            return self.parts
        self.spool.seek(0)
        return _SpoolReader(self.spool)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class _SpoolReader:
    def __init__(self, spool: IO[bytes]) -> None:
        self._spool = spool

    def __iter__(self) -> _SpoolReader:
        return self

    def __next__(self) -> bytes:
        data = self._spool.read(256 * 1024)
        if not data:
            raise StopIteration
        return data


#: What a lane queues for its session.
_Item = tuple[str, object, object]


class Lane(InFlight):
    """A session's end of a shared connection, in the shape of an
    :class:`~imapproxy.upstream.UpstreamConnection` (see the module docstring)."""

    def __init__(self, shared: SharedConnection) -> None:
        self.shared = shared
        self.mux = shared.mux
        self.group = shared.group
        shared.lanes.add(self)
        self.downstream: Downstream | None = None
        #: Logs in another connection for this session's user (set by the session).
        self.opener: Callable[[], Awaitable[UpstreamConnection]] | None = None
        #: The session's message numbering: UID of each sequence number (None: no
        #: mailbox selected through this lane).
        self.view: list[int] | None = None
        self.readonly = False
        #: A SELECT of this session's is on its way (the connection is taken).
        self.selecting = False
        self._expunged: set[int] = set()  # in the view, not yet shown as expunged
        self.idling: Request | None = None
        self.closed = False
        self.migrated = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.sending_since: float | None = None
        self._order: deque[Request] = deque()
        self._pending: dict[bytes, Request] = {}
        self._buffers: dict[Request, list[_Segment]] = {}
        self._turns: dict[Request, _Turn] = {}
        self._queue: deque[_Item] = deque()
        self._queued = 0  # octets in memory in the queue
        self._spool: IO[bytes] | None = None
        self._spool_write = 0
        self._spool_read = 0
        self._wakeup = trio.Event()
        self._error: str | None = None
        #: Set when the reader returned after :meth:`migrate`.
        self.finished = trio.Event()

    def __repr__(self) -> str:
        state = f"{len(self.view)} messages" if self.view is not None else "no mailbox"
        return f"Lane({state}, {self.in_flight} in flight)"

    # -- what the session reads of a connection ------------------------------------

    @property
    def config(self) -> Upstream:
        return self.shared.conn.config

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.shared.conn.capabilities

    @property
    def tls(self) -> dict[str, str]:
        return self.shared.conn.tls

    @property
    def last_receive(self) -> float:
        return self.shared.conn.last_receive

    def has(self, capability: str) -> bool:
        return self.shared.conn.has(capability)

    @property
    def end_to_end_capabilities(self) -> tuple[str, ...]:
        return self.shared.conn.end_to_end_capabilities

    @property
    def synced(self) -> bool:
        """Whether the session's numbering is the connection's (no expunge unseen)."""
        mailbox = self.shared.mailbox
        return (
            self.view is not None
            and not self._expunged
            and mailbox is not None
            and mailbox.uids is not None
            and len(mailbox.uids) == len(self.view)
        )

    # -- commands --------------------------------------------------------------------

    def new_request(
        self, name: str, client_tag: bytes | None = None, *, relay_continuations: bool = False
    ) -> Request:
        request = Request(
            self.mux.next_tag(),
            name,
            client_tag,
            relay_continuations=relay_continuations,
            started=trio.current_time(),
        )
        self._pending[request.tag] = request
        self._order.append(request)
        self._buffers[request] = []
        self._turns[request] = _Turn(self, request, name=name)
        return request

    def translate(
        self, request: Request, name: str, args: CommandArgs | None, *, rebuild: bool
    ) -> tuple[str, CommandArgs | None]:
        """The form of a command for the shared connection: the UID form of FETCH,
        STORE, COPY, MOVE and SEARCH through the session's view; a STORE without
        ``.SILENT`` (the others must hear of the change). Without ``rebuild`` (the
        command is relayed as it came) only while the session's numbering is the
        connection's. Raises :class:`NotShared` for what cannot be sent as the
        numbering stands."""
        turn = self._turns[request]
        turn.name = name
        base = name.removeprefix("UID ")
        uid = name.startswith("UID ")
        if self.view is None or args is None or not rebuild:
            seqs = self.view is not None and base in _TRANSLATED | _UNTRANSLATED and not uid
            if seqs and not self.synced:
                raise _EXPUNGE_ISSUED
            turn.needs_sync = seqs
            return name, args
        if isinstance(args, StoreArgs) and args.silent:
            turn.silent = True
            turn.store = (args.mode, frozenset(flag.lower() for flag in args.flags))
            args = replace(args, silent=False)
        if base in _UNTRANSLATED and not uid:
            if not self.synced:
                raise _EXPUNGE_ISSUED
            turn.needs_sync = True
        if uid or base not in _TRANSLATED:
            return name, args
        if isinstance(args, FetchArgs | StoreArgs | CopyArgs):
            uids = self._uids(args.sequence_set)
            turn.name = "UID " + base
            return "UID " + base, replace(args, sequence_set=uids)
        if isinstance(args, SearchArgs):
            options = args.return_options or ()
            if any(option.upper() not in _RENUMBERED_RETURNS for option, _ in options):
                if not self.synced:
                    raise _EXPUNGE_ISSUED
                turn.needs_sync = True
                return name, args
            turn.name = "UID SEARCH"
            turn.searched = True
            return "UID SEARCH", replace(args, key=self._search_key(args.key))
        return name, args

    def _uids(self, numbers: SequenceSet) -> SequenceSet:
        view = self.view
        assert view is not None
        if not view:
            raise NotShared("BAD", None, "No messages in the mailbox")
        uids: list[int] = []
        for low, high in numbers.bounds(len(view)):
            if high > len(view):
                raise NotShared("BAD", None, "Invalid message sequence number")
            uids.extend(view[low - 1 : high])
        return SequenceSet.from_numbers(uids)

    def _search_key(self, key: SearchKey) -> SearchKey:
        if key.name == "SEQSET" and key.args and isinstance(key.args[0], SequenceSet):
            view = self.view or []
            wanted = [
                uid
                for low, high in key.args[0].bounds(max(len(view), 1))
                for uid in view[low - 1 : high]
            ]
            # No message at all matches: a UID no message has (UIDs are below 2^32).
            return SearchKey("UID", (SequenceSet.from_numbers(wanted or [4294967295]),))
        if not any(isinstance(arg, SearchKey) for arg in key.args):
            return key
        return SearchKey(
            key.name,
            tuple(self._search_key(arg) if isinstance(arg, SearchKey) else arg for arg in key.args),
        )

    async def begin_writing(self, request: Request) -> None:
        return None

    def end_writing(self, request: Request) -> None:
        return None

    async def send_segment(self, request: Request, data: bytes, *, literal: bool) -> bool:
        if request.done.is_set():
            return False
        if request.name == "IDLE" and not literal:
            self._start_idle(request)
            return True
        segments = self._buffers.get(request)
        if segments is None:
            return False
        segments.append(_Segment("announce" if literal else "tail", [bytes(data)]))
        if literal:
            segments.append(_Segment("literal"))
            return True
        del self._buffers[request]
        await self._send(request, segments)
        return True

    async def send_raw(self, data: bytes | memoryview) -> None:
        idle = self.idling
        if idle is not None and bytes(data).upper().startswith(b"DONE"):
            self._end_idle(idle)
            return
        for request in reversed(self._order):
            segments = self._buffers.get(request)
            if segments and segments[-1].kind == "literal":
                segments[-1].add(data)
                return

    async def _send(self, request: Request, segments: list[_Segment]) -> None:
        turn = self._turns[request]
        try:
            if turn.name in ("SELECT", "EXAMINE"):
                await self._select(request, turn, segments)
                return
            if self.view is None and turn.name.removeprefix("UID ") in _SELECTED_ONLY:
                # The connection may have another session's mailbox selected.
                self.complete(request, _status(request.tag, "BAD", "No mailbox selected"))
                return
            if turn.name in ("CLOSE", "UNSELECT"):
                if turn.name == "UNSELECT" or self.readonly:
                    self._detach()
                    self.complete(request, _status(request.tag, "OK", f"{turn.name} completed"))
                    return
                # CLOSE expunges what is \Deleted and deselects: the expunge is the
                # mailbox's, the deselection only this session's.
                self._detach()
                turn.name = "EXPUNGE"
                segments = [_Segment("tail", [request.tag + b" EXPUNGE\r\n"])]
            shared = self.shared
            key = _ride_key(turn, segments)
            if key is not None:
                lead = shared.waiting.get(key)
                if lead is None and key == b"NOOP":
                    # A NOOP asks only for news: any command answered from now on
                    # brings them -- the one on the wire, or the next to go.
                    lead = shared.news_from()
                if lead is not None and lead.lane is not None and not lead.lane.closed:
                    if key == b"NOOP" and lead.name != "NOOP":
                        lead.noops.append((self, request))
                    else:
                        lead.riders.append((self, request))
                    return
            if turn.name in ("UID FETCH", "UID STORE") and len(segments) == 1:
                found = _UID_SET.match(segments[0].data())
                turn.spans = _uid_spans(found.group(1)) if found is not None else None
            merging = self._merging(turn, segments)
            if merging is False:
                return  # merged into a waiting UID FETCH of the same items
            if key is not None:
                shared.waiting[key] = turn
            acquired = orphaned = False
            try:
                try:
                    await shared._acquire()
                except trio.Cancelled:
                    if not turn.riders or shared.closed:
                        raise
                    # The session goes, but others' commands ride on (or were
                    # merged into) this one: it is sent for them all the same.
                    orphaned = True
                    with trio.CancelScope(shield=True):
                        acquired = await shared._acquire_unless_gone()
                    if not acquired:
                        raise
                acquired = True
            finally:
                if key is not None and shared.waiting.get(key) is turn:
                    del shared.waiting[key]  # on the wire now: nobody rides any more
                if merging is not None and shared.merging.get(merging) is turn:
                    del shared.merging[merging]
                if not acquired:
                    _abandon(turn)
            if orphaned:
                with trio.CancelScope(shield=True):
                    await self._send_orphan(turn, segments)
                await trio.lowlevel.checkpoint()  # the session's cancellation
            if self.closed or shared.closed:
                shared._release()
                _abandon(turn)
                raise UpstreamError("upstream connection lost")
            if turn.needs_sync and not self.synced:
                # Another session's expunge came first: the numbers the client
                # used are no longer the connection's.
                shared._release()
                self.refuse(request, _EXPUNGE_ISSUED)
                _abandon(turn)
                return
            await shared.submit_held(turn, segments)
        finally:
            for segment in segments:
                segment.close()

    async def _send_orphan(self, turn: _Turn, segments: list[_Segment]) -> None:
        """Send a command whose session has gone for those riding on it (the turn
        held): answered to them; its own answer goes nowhere."""
        shared = self.shared
        if shared.closed or (turn.needs_sync and not self.synced):
            shared._release()
            _abandon(turn)
            return
        await shared.submit_held(turn, segments)

    def _merging(self, turn: _Turn, segments: list[_Segment]) -> bytes | Literal[False] | None:
        """Merge a UID FETCH into a waiting one of the same items (False), or make
        it the one others merge into (its key), or neither (None)."""
        shared = self.shared
        mailbox = shared.mailbox
        request = turn.request
        if (
            turn.name != "UID FETCH"
            or len(segments) != 1
            or request is None
            or mailbox is None
            or mailbox.uids is None
        ):
            return None
        largest = next((uid for uid in reversed(mailbox.uids) if uid), 0)
        found = _fetch_spans(segments[0].data(), largest)
        if found is None:
            return None
        tag, items, spans = found
        # The client's command name too: when an EXPUNGE may be shown depends on it.
        key = request.name.encode() + b"\x00" + items
        lead = shared.merging.get(key)
        if lead is not None and lead.lane is not None and not lead.lane.closed:
            merge = lead.merge
            if merge is not None and merge.add(self, spans):
                lead.riders.append((self, request))
                return False
        if key in shared.merging:
            return None
        turn.merge = _Merge(segments[0], tag, items, lead=spans, union=list(spans))
        shared.merging[key] = turn
        return key

    async def _select(self, request: Request, turn: _Turn, segments: list[_Segment]) -> None:
        """SELECT or EXAMINE: join a connection that has the mailbox open in that
        mode, or select it on one where no other session has a mailbox open (a new
        one if the user may have another)."""
        args = _parsed(segments)
        self._detach()
        readonly = turn.name == "EXAMINE"
        mailbox = args.mailbox if isinstance(args, SelectArgs) else None
        # A name that cannot be parsed here never matches another's SELECT.
        name = mailbox if mailbox is not None else Mailbox(b"\x00unparsed")
        key = (name.raw, readonly)
        group = self.group
        self.selecting = True
        for _attempt in range(8):
            found = self.mux.find(group, name, readonly, self)
            if found is not None:
                if await self._join(found, request, readonly):
                    return
                continue
            opening = group.opening.get(key)
            if opening is not None:  # another session is logging in one for it
                await opening.wait()
                continue
            target = self.mux.free(group, self)
            if target is None:
                opening = group.opening[key] = trio.Event()
                try:
                    target = await self._another(request)
                finally:
                    if target is None:
                        del group.opening[key]
                        opening.set()
                if target is None:
                    return
            # Claimed at once: a SELECT of the same mailbox from now on joins.
            self._move(target)
            target.mailbox = SelectedMailbox(name, readonly=readonly)
            target.mailbox.track_uids()
            target.select_data = []
            target.select_unseen = False
            target.flags.clear()
            self.readonly = readonly
            if group.opening.get(key) is opening and opening is not None:
                del group.opening[key]
                opening.set()
            claim = target.mailbox
            try:
                await target._acquire()
            except BaseException:
                target.unclaim(claim)  # never sent: nobody may join it
                raise
            if self.closed or target.closed:
                target.unclaim(claim)
                target._release()
                raise UpstreamError("upstream connection lost")
            await target.submit_held(turn, segments)
            return
        self.complete(request, _status(request.tag, "NO", "Mailbox busy, try again", "INUSE"))

    async def _another(self, request: Request) -> SharedConnection | None:
        """Log in one more connection for the user; None when that may not or did
        not work (the session has its answer)."""
        group = self.group
        if not self.mux.can_grow(group) or self.opener is None:
            text = "Too many mailboxes open at once for this user"
            self.complete(request, _status(request.tag, "NO", text, "LIMIT"))
            return None
        group.logging_in += 1
        try:
            upstream = await self.opener()
        except UpstreamError as exc:
            log.warning("upstream error", error=str(exc))
            text = "Mail server unavailable, try again later"
            self.complete(request, _status(request.tag, "NO", text, "UNAVAILABLE"))
            return None
        finally:
            group.logging_in -= 1
        return self.mux.add(group, upstream)

    async def _join(self, target: SharedConnection, request: Request, readonly: bool) -> bool:
        """SELECT a mailbox another session has open: answered from the state the
        connection tracks, as the server would answer it. False when the mailbox
        is no longer open there (its SELECT failed meanwhile)."""
        name = target.mailbox.name if target.mailbox is not None else None
        self._move(target)
        await target._acquire()  # a consistent state: nothing in progress
        try:
            mailbox = target.mailbox
            if target.closed:
                raise UpstreamError("upstream connection lost")
            if mailbox is None or mailbox.uids is None or mailbox.name != name:
                return False
            if target._grew or not mailbox.complete:
                await target._learn()
            unseen = await target.refresh()
            if mailbox.uids is None:
                raise UpstreamError("upstream connection lost")
            self.readonly = readonly
            self.attach(target, list(mailbox.uids))
            for response in target.select_data:
                self.deliver(response)
            self.deliver(_line(b"* %d EXISTS" % len(self.view or ())))
            self.deliver(_line(b"* 0 RECENT"))
            if unseen is not None:
                self.deliver(_line(b"* OK [UNSEEN %d] First unseen." % unseen))
            if mailbox.uidvalidity is not None:
                self.deliver(_line(b"* OK [UIDVALIDITY %d] UIDs valid" % mailbox.uidvalidity))
            if mailbox.uidnext is not None:
                self.deliver(_line(b"* OK [UIDNEXT %d] Predicted next UID" % mailbox.uidnext))
            mode = b"READ-ONLY" if readonly else b"READ-WRITE"
            verb = b"EXAMINE" if readonly else b"SELECT"
            self.complete(request, _line(b"%s OK [%s] %s completed" % (request.tag, mode, verb)))
            return True
        finally:
            target._release()

    def _move(self, target: SharedConnection) -> None:
        if target is self.shared:
            return
        self.shared.lanes.discard(self)
        if not self.shared.lanes:
            self.shared.idle_since = trio.current_time()
        self.shared = target
        target.lanes.add(self)

    def attach(self, shared: SharedConnection, uids: list[int]) -> None:
        """The session has ``shared``'s mailbox open: its view is the messages
        whose UIDs are known (those whose UIDs are being learned come with EXISTS)."""
        self._move(shared)
        self.view = [uid for uid in uids if uid]
        self.selecting = False
        self._expunged.clear()

    def _detach(self) -> None:
        self.view = None
        self._expunged.clear()

    async def command(
        self, name: str, args: CommandArgs, *, collect_fetch: bool = False
    ) -> Request:
        """A command of the proxy's own for this session (e.g. LIST for the rules)."""
        shared = self.shared
        await shared._acquire()
        try:
            shared.current = _Turn(None, None, name=name)
            return await shared.own(name, args, collect_fetch=collect_fetch)
        finally:
            shared._release()

    def migrate(self) -> None:
        """The session moves to a dedicated connection: the reader hands over what
        is queued and returns; the lane leaves the shared connection."""
        self.migrated = True
        self.release(closing=False)

    # -- IDLE ------------------------------------------------------------------------

    def _start_idle(self, request: Request) -> None:
        self.idling = request
        request.asked = None
        if self.view is not None:
            self.show_expunges()
        self._put(("continuation", request, None))
        self.shared._wake.set()

    def _end_idle(self, request: Request) -> None:
        self.idling = None
        self.complete(request, _status(request.tag, "OK", "IDLE terminated"))

    # -- what the connection gives the lane -----------------------------------------

    def deliver(self, response: Response) -> None:
        frame = response.frame
        if self._spool is not None or self._queued + len(frame.raw) > LANE_MEMORY:
            # A client that does not keep up: what waits for it goes to disk.
            if self._spool_bytes(frame.raw):
                self._put(("spooled-response", len(frame.raw), frame.literals))
            return
        self._put(("response", response, None), len(frame.raw))

    def deliver_fetch(self, response: Response, uid: int) -> None:
        seq = self.seq_for(uid)
        if seq is None:
            return  # a message the session has not been shown (yet)
        if response.number != seq:
            response = _renumbered(response, seq)
        self.deliver(response)

    def deliver_flags(self, uid: int, flags: bytes) -> None:
        seq = self.seq_for(uid)
        if seq is not None:
            self.deliver(_line(b"* %d FETCH (FLAGS %s)" % (seq, flags)))

    def deliver_search(self, response: Response) -> None:
        """A UID SEARCH result for the session's SEARCH, in its sequence numbers."""
        data = _data(response)
        if isinstance(data, SearchData):
            seqs = sorted(s for s in map(self.seq_for, data.numbers) if s is not None)
            self.deliver(_line(b"* SEARCH" + b"".join(b" %d" % s for s in seqs)))
        elif isinstance(data, EsearchData):
            self.deliver(_line(self._esearch(data)))

    def _esearch(self, data: EsearchData) -> bytes:
        out = b"* ESEARCH"
        if data.tag is not None:
            out += b' (TAG "' + data.tag + b'")'
        try:
            found = data.all
        except ParseError:
            found = None
        largest = max(self.view or [0])
        uids = (
            [uid for low, high in found.bounds(largest) for uid in range(low, high + 1)]
            if found
            else []
        )
        seqs = sorted(s for s in map(self.seq_for, uids) if s is not None)
        for key, _ in data.results:
            if key == "MIN" and data.min is not None:
                seq = self.seq_for(data.min)
                out += b" MIN %d" % seq if seq else b""
            elif key == "MAX" and data.max is not None:
                seq = self.seq_for(data.max)
                out += b" MAX %d" % seq if seq else b""
            elif key == "COUNT" and data.count is not None:
                out += b" COUNT %d" % data.count
            elif key == "ALL" and seqs:
                out += b" ALL " + bytes(SequenceSet.from_numbers(seqs))
        return out

    def deliver_part(self, part: FramePart) -> None:
        self._put(("part", part, None), len(part.raw))

    def deliver_chunk(self, data: bytes, remaining: int) -> None:
        if self._spool is not None or self._queued + len(data) > LANE_MEMORY:
            self._spill(data, remaining)
            return
        self._put(("chunk", data, remaining), len(data))

    def _spill(self, data: bytes, remaining: int) -> None:
        if self._spool_bytes(data):
            self._put(("spooled", len(data), remaining))

    def _spool_bytes(self, data: bytes) -> bool:
        """Append to the lane's spool; False (and the session is cut) past
        :data:`LANE_SPOOL_MAX`, or when the session is gone."""
        if self.closed and not self.migrated:
            return False
        if self._spool is None:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _unspool/release
            self._spool_write = self._spool_read = 0
        if self._spool_write - self._spool_read + len(data) > LANE_SPOOL_MAX:
            self._error = "client not reading"
            self.lost()
            return False
        self._spool.seek(self._spool_write)
        self._spool.write(data)
        self._spool_write += len(data)
        return True

    def grow(self, uids: list[int]) -> None:
        """The connection learned new messages: append them to the view (EXISTS)."""
        view = self.view
        if view is None:
            return
        last = view[-1] if view else 0
        known = [uid for uid in uids if uid]  # ascending: UIDs grow with numbers
        new = known[bisect_left(known, last + 1) :]
        if new:
            view.extend(new)
            self.deliver(_line(b"* %d EXISTS" % len(view)))

    def expunged(self, uid: int, *, now: bool) -> None:
        if self.view is None or self.seq_for(uid) is None:
            return
        self._expunged.add(uid)
        if now or self.idling is not None:
            self.show_expunges()

    def show_expunges(self) -> None:
        """Show the session the expunges it has not seen (its command is in
        progress and allows them)."""
        view = self.view
        if view is None or not self._expunged:
            return
        for uid in sorted(self._expunged, reverse=True):
            seq = self.seq_for(uid)
            if seq is not None:
                del view[seq - 1]
                self.deliver(_line(b"* %d EXPUNGE" % seq))
        self._expunged.clear()

    def seq_for(self, uid: int) -> int | None:
        view = self.view
        if view is None:
            return None
        index = bisect_left(view, uid)
        return index + 1 if index < len(view) and view[index] == uid else None

    def complete(self, request: Request, response: Response) -> None:
        self._put(("tagged", response, request))

    def refuse(self, request: Request, refusal: NotShared) -> None:
        """Answer a command the lane will not send (see :class:`NotShared`)."""
        self._buffers.pop(request, None)
        self.complete(request, _status(request.tag, refusal.status, refusal.text, refusal.code))

    def lost(self) -> None:
        """The connection is gone (or cannot serve this session): the session's
        reader raises once it has what was queued."""
        self.closed = True
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    def _put(self, item: _Item, size: int = 0) -> None:
        if self.closed and not self.migrated:
            return  # the session is gone: nobody reads what would be queued
        self._queue.append(item)
        self._queued += size
        self._wakeup.set()

    # -- the session's reader --------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hand the session what its connection sent it, until the lane closes
        (raises :class:`~imapproxy.upstream.UpstreamError`) or migrates (returns)."""
        downstream = self.downstream
        assert downstream is not None
        task_status.started()
        while True:
            while self._queue:
                kind, first, second = self._queue.popleft()
                if kind == "response":
                    assert isinstance(first, Response)
                    self._queued -= len(first.frame.raw)
                    downstream.upstream_response(first, None)
                elif kind == "spooled-response":
                    assert isinstance(first, int) and isinstance(second, tuple)
                    frame = Frame(self._unspool(first), second)
                    downstream.upstream_response(Response.parse(frame), None)
                elif kind == "tagged":
                    assert isinstance(first, Response) and isinstance(second, Request)
                    self._done(second, first)
                    if second.client_tag is not None:
                        downstream.upstream_response(first, second)
                elif kind == "continuation":
                    assert isinstance(first, Request)
                    downstream.upstream_continuation(first)
                    downstream.upstream_response(_line(b"+ idling"), first)
                elif kind == "part":
                    assert isinstance(first, FramePart)
                    self._queued -= len(first.raw)
                    downstream.upstream_part(first)
                elif kind == "chunk":
                    assert isinstance(first, bytes) and isinstance(second, int)
                    self._queued -= len(first)
                    downstream.upstream_part(LiteralChunk(memoryview(first), second))
                    await downstream.upstream_flush()
                elif kind == "spooled":
                    assert isinstance(first, int) and isinstance(second, int)
                    downstream.upstream_part(LiteralChunk(memoryview(self._unspool(first)), second))
                    await downstream.upstream_flush()
            await downstream.upstream_flush()
            if self.migrated and not self._queue:
                self.finished.set()
                return
            if self.closed:
                raise UpstreamError(self._error or "upstream connection lost")
            self._wakeup = trio.Event()
            if not self._queue:
                await self._wakeup.wait()

    def _unspool(self, size: int) -> bytes:
        spool = self._spool
        assert spool is not None
        spool.seek(self._spool_read)
        data = spool.read(size)
        self._spool_read += size
        if self._spool_read == self._spool_write:
            spool.close()
            self._spool = None
        return data

    def _done(self, request: Request, response: Response) -> None:
        self._pending.pop(request.tag, None)
        with contextlib.suppress(ValueError):
            self._order.remove(request)
        self._buffers.pop(request, None)
        self._turns.pop(request, None)
        request.result = response
        request.done.set()
        if self.idling is request:
            self.idling = None
        if request.name in ("SELECT", "EXAMINE"):
            self.selecting = False

    # -- the end ---------------------------------------------------------------------

    def fail_pending(self) -> None:
        for request in self._order:
            request.done.set()
        self._pending.clear()
        self._order.clear()

    def release(self, *, closing: bool = True) -> None:
        """The session is done with the lane (it logged out, went away, or moved to
        a dedicated connection): the connection stays for the user's others."""
        if closing:
            self.closed = True
        self.view = None
        self._wakeup.set()
        for segments in self._buffers.values():
            for segment in segments:
                segment.close()
        self._buffers.clear()
        self.fail_pending()
        self.idling = None
        shared = self.shared
        shared.lanes.discard(self)
        if not shared.lanes:
            shared.idle_since = trio.current_time()
        shared._wake.set()
        if closing:  # nobody reads what was queued
            self._queue.clear()
            self._queued = 0
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    async def aclose(self) -> None:
        self.release()

    async def logout(self) -> None:
        self.release()

    def quiet(self) -> bool:
        return False


def _abandon(turn: _Turn) -> None:
    """A command that will not be sent: those riding on it are answered (a NOOP
    as done; an identical command as unavailable, to be tried again)."""
    for lane, request in turn.riders:
        text = "Not done, try again"
        lane.complete(request, _status(request.tag, "NO", text, "UNAVAILABLE"))
    for lane, request in turn.noops:
        lane.complete(request, _status(request.tag, "OK", "NOOP completed"))
    turn.riders, turn.noops = [], []


def _ride_key(turn: _Turn, segments: list[_Segment]) -> bytes | None:
    """What makes two lanes' commands the same, for those whose one execution can
    answer both (None: this one must run on its own)."""
    if len(segments) != 1 or turn.request is None:
        return None  # literals: APPEND and the like
    name = turn.name
    if name == "NOOP":
        return b"NOOP"
    if name not in _RIDABLE or (turn.searched and name != "UID SEARCH"):
        return None
    raw = segments[0].data()
    tag = turn.request.tag
    if b"RETURN" in raw.upper():
        return None  # ESEARCH answers name their command's tag
    # The client's command name too: when an EXPUNGE may be shown depends on it.
    return turn.request.name.encode() + b"\x00" + raw[len(tag) :]


def _parsed(segments: list[_Segment]) -> CommandArgs | None:
    """The arguments of a buffered command (literals in memory only)."""
    raw = bytearray()
    spans: list[LiteralSpan] = []
    for segment in segments:
        if segment.kind == "literal":
            if segment.spool is not None:
                return None
            start = len(raw)
            raw += segment.data()
            announce = raw.rfind(b"{", 0, start)
            spans.append(LiteralSpan(announce, start, segment.size))
        else:
            raw += segment.data()
    try:
        return Command.parse(Frame(bytes(raw), tuple(spans))).args
    except ParseError:
        return None


def _data(response: Response) -> object:
    try:
        return response.data
    except ParseError:
        return None


def _code(response: Response) -> str | None:
    try:
        condition = response.condition
    except ParseError:
        return None
    if condition is None or condition.code is None:
        return None
    return condition.code.name


def _line(raw: bytes) -> Response:
    return Response.parse(Frame(raw + b"\r\n"))


def _status(tag: bytes, status: str, text: str, code: str | None = None) -> Response:
    coded = f"[{code}] " if code else ""
    return _line(tag + f" {status} {coded}{text}".encode())


def _renumbered(response: Response, number: int) -> Response:
    frame = response.frame
    match = _NUMBER.match(frame.raw)
    if match is None:
        return response
    head = b"* %d " % number
    delta = len(head) - match.end()
    raw = head + frame.raw[match.end() :]
    return Response.parse(Frame(raw, tuple(lit.moved(delta) for lit in frame.literals)))


def _renumbered_part(part: FramePart, number: int) -> FramePart:
    match = _NUMBER.match(part.raw)
    if match is None:
        return part
    head = b"* %d " % number
    delta = len(head) - match.end()
    raw = head + part.raw[match.end() :]
    frame = part.frame
    skeleton = Frame(
        head + frame.raw[match.end() :], tuple(lit.moved(delta) for lit in frame.literals)
    )
    literal = part.literal.moved(delta) if part.literal is not None else None
    return FramePart(raw, skeleton, literal, True)


_UID_ITEM = re.compile(rb"(?<=[( ])UID (\d+)", re.IGNORECASE)


def flags_of(response: Response) -> bytes | None:
    """The FLAGS item of a FETCH response (as ``(...)``, spaced once), if it has one."""
    return _flags_in(response.frame)


def _flags_in(frame: Frame) -> bytes | None:
    """The FLAGS item of a FETCH response, wherever it is among its items."""
    if _FLAGS_ITEM.search(frame.raw) is None:
        return None
    scan = _FlagsScan()
    for text in _text_of(frame.raw, frame.literals):
        found = scan.feed(text)
        if found is not None:
            return found
    return None


def _text_of(raw: bytes, literals: Iterable[LiteralSpan]) -> Iterator[bytes]:
    """``raw`` without the data of its ``literals`` (message data is never read
    for protocol items: a header is not a FLAGS item)."""
    pos = 0
    for literal in literals:
        yield raw[pos : literal.start]
        pos = literal.stop
    yield raw[pos:]


class _FlagsScan:
    """Finds the FLAGS item of a FETCH response in its text, fed part by part
    (literal data left out): only at the top level of the FETCH list, so that a
    quoted string (a Subject of "FLAGS (\\Deleted)") or a nested list is never
    taken for it."""

    __slots__ = ("depth", "quoted")

    def __init__(self) -> None:
        self.depth = 0
        self.quoted = False

    def feed(self, text: bytes) -> bytes | None:
        """The FLAGS item (as ``(...)``, spaced once) if it is in ``text``."""
        found = None
        candidates = list(_FLAGS_ITEM.finditer(text))
        at = 0  # the next candidate
        skip = -1  # the position of an escaped character
        for special in _NESTING.finditer(text):
            pos = special.start()
            while at < len(candidates) and candidates[at].start() < pos:
                if found is None and self.depth == 1 and not self.quoted:
                    found = candidates[at]
                at += 1
            if pos == skip:
                continue
            char = text[pos]
            if self.quoted:
                if char == 0x5C:  # backslash
                    skip = pos + 1
                elif char == 0x22:
                    self.quoted = False
            elif char == 0x22:
                self.quoted = True
            elif char == 0x28:
                self.depth += 1
            elif char == 0x29:
                self.depth -= 1
        if found is None and at < len(candidates) and self.depth == 1 and not self.quoted:
            found = candidates[at]
        if found is None:
            return None
        return b"(" + b" ".join(found.group(1).split()) + b")"


def _uid_in(raw: bytes, literals: Iterable[LiteralSpan] = ()) -> int | None:
    """The UID item of a FETCH response's text (literal data left out)."""
    for text in _text_of(raw, literals):
        match = _UID_ITEM.search(text)
        if match is not None:
            return int(match.group(1))
    return None
