"""Framing: split an IMAP byte stream into frames, sans-IO.

A *frame* is one protocol line plus every literal it announces: a command
(``a APPEND box {5}`` CRLF ``hello`` CRLF) or a response (``* 1 FETCH (BODY[]
{5}`` CRLF ``hello)`` CRLF). Framing knows nothing of the grammar beyond where a
line ends and where a literal (RFC 9051 section 4.3) is announced: a line whose
last octets before CRLF are ``{n}`` (synchronizing), ``{n+}`` (non-synchronizing,
RFC 7888 LITERAL+ / LITERAL-), ``~{n}`` or ``~{n+}`` (literal8, RFC 3516) is
followed by exactly ``n`` octets of literal data, after which the line continues.

Usage, after h11: feed bytes with :meth:`Framer.receive_data`, then call
:meth:`Framer.next_event` until it returns :data:`NEED_DATA`. Events:

* :class:`Frame` -- a whole frame, every literal inline. The common case.
* :class:`FramePart` and :class:`LiteralChunk` -- a frame whose literal is larger
  than ``inline_literal`` streams: a part up to the announcement, the literal's
  data as chunks (no copy when the data arrives in its own reads), then a part with
  the rest of the line, and so on. Each part also carries the frame's *skeleton*
  so far (every part, streamed data left out) so that it can be parsed.
* :class:`ContinuationRequest` -- server role only: a client announced a
  synchronizing literal and waits for ``+``. The framer stops until the caller
  calls :meth:`Framer.accept_literal` (and sends ``+``) or
  :meth:`Framer.reject_literal` (and sends a tagged ``NO``/``BAD``).
* :class:`BadFrame` -- server role only: a frame was refused but the stream is
  still in sync (oversized literal, bare LF); send ``event.error.reply``.
* :class:`EndOfStream` -- after :meth:`Framer.receive_eof`, once everything
  buffered is consumed.

Outcomes of malformed or oversized input (documented in docs/codec.md, tested in
tests/wire/test_framing.py):

* A line longer than ``max_line`` (counting every line octet of the frame,
  literal data excluded) cannot be resynchronised: :class:`RemoteProtocolError`
  with a ``BYE`` reply is raised and the framer is dead.
* A literal over ``max_literal`` (or a non-synchronizing one over
  ``max_nonsync_literal``, LITERAL-) from a client is refused with a
  :class:`BadFrame`: ``NO [TOOBIG]`` for a synchronizing literal, ``BAD [TOOBIG]``
  for a non-synchronizing one. Octets the client sends anyway are drained with the
  rest of the command, so literal data is never read as a command. From a server,
  it is fatal.
* A synchronizing literal that the caller refuses: a client that waited for ``+``
  sends nothing more, and framing resumes at its next command. If literal octets
  were already buffered when the refusal came, the client did not wait (a known
  client bug); the literal and the rest of its command, with every later literal
  of it, are drained instead.
* A bare LF ending a client's line: ``BadFrame`` (``BAD``), and a literal it
  announced is handled as refused, so its data is never read as a command.
* A client line ending in ``x{5}`` (the announcement glued to a token) or
  starting with one, or a length of more than 100 digits: fatal (``BYE``),
  because servers read ``x{5}`` as a bad atom and then the data as commands.
* More than ``max_literals`` literals in one command: ``BadFrame``
  (``[LIMIT]``), the rest drained.
* In the server role a ``{n}`` that sits inside an unterminated quoted string is
  not a literal. Responses are not checked for quote balance, because real
  servers send unescaped quotes (docs: QUIRKS F8).
"""

from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass, field

from imapproxy.wire.errors import RemoteProtocolError, Reply
from imapproxy.wire.grammar import TAG_CHAR, WORDS

__all__ = [
    "NEED_DATA",
    "BadFrame",
    "ContinuationRequest",
    "EndOfStream",
    "Event",
    "Frame",
    "FramePart",
    "Framer",
    "LiteralChunk",
    "LiteralSpan",
    "NeedData",
    "Role",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Default caps by role. Commands follow Dovecot's ``imap_max_line_length`` (64 KiB);
#: responses can carry long SEARCH or ESEARCH lines, so their cap is larger.
DEFAULT_MAX_COMMAND_LINE = 64 * KiB
DEFAULT_MAX_RESPONSE_LINE = 8 * MiB
DEFAULT_MAX_COMMAND_LITERAL = 256 * MiB
DEFAULT_MAX_RESPONSE_LITERAL = 4 * GiB
DEFAULT_INLINE_LITERAL = 64 * KiB
DEFAULT_MAX_INLINE_TOTAL = 1 * MiB
DEFAULT_MAX_COMMAND_LITERALS = 1024

_CR = 0x0D
_LBRACE = 0x7B
_BEFORE_LITERAL = frozenset(b" (")
_RBRACE = 0x7D
_PLUS = 0x2B
_TILDE = 0x7E

# Everything before a "{" that is outside a quoted string (possessive, so no
# backtracking). Used only on command lines that end with a literal announcement.
_QUOTE_BALANCED = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_TAG = re.compile(TAG_CHAR + rb"{1,64}(?= )")
_HEAD = re.compile(
    rb"(?:\*(?: [0-9]{1,10})?|" + TAG_CHAR + rb"{1,64}) ([A-Za-z]{1,20})(?=[ \r\n]|$)"
)
_MAX_ANNOUNCE_DIGITS = 100


class Role(enum.Enum):
    """Which side of the conversation the framer reads."""

    #: The framer reads client commands (the proxy is the server on this leg).
    SERVER = "server"
    #: The framer reads server responses (the proxy is the client on this leg).
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class LiteralSpan:
    """Where a literal sits in a frame's bytes.

    ``announce`` is the offset of ``{`` (or ``~``), ``start`` the offset of the
    first data octet, ``size`` the announced length. A *streamed* literal's data is
    not in the frame: the frame continues at ``start`` (see :attr:`stop`).
    """

    announce: int
    start: int
    size: int
    sync: bool = True
    binary: bool = False
    streamed: bool = False

    @property
    def stop(self) -> int:
        """Offset in the frame where the line continues after the literal."""
        return self.start if self.streamed else self.start + self.size

    def moved(self, delta: int) -> LiteralSpan:
        return LiteralSpan(
            self.announce + delta,
            self.start + delta,
            self.size,
            self.sync,
            self.binary,
            self.streamed,
        )


def _summary(raw: bytes) -> str:
    """A frame's head for reprs: ``tag NAME`` when NAME is a command or response
    name, else nothing -- never arguments, which may be credentials (LOGIN
    arguments, SASL lines, a refused literal's data)."""
    match = _HEAD.match(raw)
    if match is None or match.group(1).upper() not in WORDS:
        return ""
    return f", {match.group().decode('ascii')!r}"


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """A whole frame: its exact bytes and where its literals are.

    ``raw`` is what the peer sent, byte for byte, so an unchanged frame is relayed
    by writing ``raw``. In a skeleton (see :class:`FramePart`) streamed literals'
    data is left out of ``raw``. The repr shows sizes and the head only.
    """

    raw: bytes
    literals: tuple[LiteralSpan, ...] = ()
    #: Read with :meth:`Framer.expect_line` (a SASL response, ``DONE``): not a
    #: command, and its repr shows nothing of it.
    plain: bool = field(default=False, compare=False)

    def __repr__(self) -> str:
        count = len(self.literals)
        literals = f", {count} literal{'s' if count != 1 else ''}" if count else ""
        head = "" if self.plain else _summary(self.raw)
        return f"Frame({len(self.raw)} octets{literals}{head})"

    @property
    def complete(self) -> bool:
        """True when every literal's data is in :attr:`raw` (nothing was streamed)."""
        return not any(lit.streamed for lit in self.literals)

    def literal_data(self, span: LiteralSpan) -> memoryview:
        """The data of an inline literal, as a view (no copy)."""
        if span.streamed:
            raise ValueError("a streamed literal's data is not in the frame")
        return memoryview(self.raw)[span.start : span.start + span.size]

    def with_tag(self, tag: bytes) -> Frame:
        """The frame with its first token (the tag) replaced, literals moved along."""
        old_end = self.raw.find(b" ")
        if old_end <= 0:
            raise ValueError("frame has no tag")
        delta = len(tag) - old_end
        raw = tag + self.raw[old_end:]
        if not self.literals or delta == 0:
            return Frame(raw, self.literals)
        return Frame(raw, tuple(lit.moved(delta) for lit in self.literals))

    def to_sync(self) -> Frame:
        """The frame with every ``{n+}`` written as ``{n}``, for a peer without LITERAL+."""
        if all(lit.sync for lit in self.literals):
            return self
        out: list[bytes] = []
        spans: list[LiteralSpan] = []
        pos = 0
        delta = 0
        for lit in self.literals:
            if lit.sync:
                spans.append(lit.moved(delta))
                continue
            plus = self.raw.rindex(b"+}", lit.announce, lit.start)
            out.append(self.raw[pos:plus])
            pos = plus + 1
            delta -= 1
            spans.append(
                LiteralSpan(
                    lit.announce + delta + 1,
                    lit.start + delta,
                    lit.size,
                    True,
                    lit.binary,
                    lit.streamed,
                )
            )
        out.append(self.raw[pos:])
        return Frame(b"".join(out), tuple(spans))

    def sync_segments(self) -> list[bytes]:
        """``raw`` split after each synchronizing literal's announcement.

        A sender writes the first segment, then waits for the peer's ``+`` before
        each further one (RFC 9051 section 7.5).
        """
        cuts = [lit.start for lit in self.literals if lit.sync]
        if not cuts:
            return [self.raw]
        segments = []
        prev = 0
        for cut in cuts:
            segments.append(self.raw[prev:cut])
            prev = cut
        segments.append(self.raw[prev:])
        return segments


class FramePart:
    """One part of a frame whose literal data is streamed.

    ``raw`` is this part's bytes, to relay as they are; ``frame`` is the skeleton
    of the frame so far (all parts, streamed data left out), which the parser
    accepts; it is built when first asked for. ``literal`` is the streamed literal
    announced at the end of this part, whose data follows as
    :class:`LiteralChunk` events; ``None`` when this part completes the frame.
    ``first`` marks the part that starts the frame (and holds its tag).
    """

    __slots__ = ("_frame", "_nparts", "_nspans", "_parts", "_spans", "first", "literal", "raw")

    def __init__(
        self,
        raw: bytes,
        frame: Frame | tuple[list[bytes], list[LiteralSpan]],
        literal: LiteralSpan | None,
        first: bool,
    ) -> None:
        self.raw = raw
        self.literal = literal
        self.first = first
        if isinstance(frame, Frame):
            self._frame: Frame | None = frame
            self._parts: list[bytes] = []
            self._spans: list[LiteralSpan] = []
        else:
            # The framer's lists of this frame, and how much of them is this part's
            # skeleton: they only grow while the frame lasts (and are replaced,
            # not cleared, after it), so the skeleton can be joined on demand and a
            # frame of many streamed parts costs linear time.
            self._frame = None
            self._parts, self._spans = frame
        self._nparts = len(self._parts)
        self._nspans = len(self._spans)

    @property
    def frame(self) -> Frame:
        if self._frame is None:
            parts = self._parts[: self._nparts]
            self._frame = Frame(b"".join(parts), tuple(self._spans[: self._nspans]))
        return self._frame

    def with_tag(self, tag: bytes) -> FramePart:
        """The first part with its tag replaced (later parts carry no tag)."""
        if not self.first:
            raise ValueError("only the first part of a frame has a tag")
        frame = self.frame.with_tag(tag)
        delta = len(frame.raw) - len(self.frame.raw)
        literal = self.literal.moved(delta) if self.literal is not None else None
        return FramePart(frame.raw[: len(self.raw) + delta], frame, literal, True)

    def to_sync(self) -> FramePart:
        """The part with every ``{n+}`` in it written as ``{n}`` (see
        :meth:`Frame.to_sync`); the skeleton follows along."""
        frame = self.frame.to_sync()
        if frame is self.frame:
            return self
        raw = Frame(self.raw, self._own_spans()).to_sync().raw
        literal = frame.literals[-1] if self.literal is not None else None
        return FramePart(raw, frame, literal, self.first)

    @property
    def literal_spans(self) -> tuple[LiteralSpan, ...]:
        """The literals announced in this part, in the part's own offsets (the data
        of the last, when streamed, is not in :attr:`raw`)."""
        return self._own_spans()

    def _own_spans(self) -> tuple[LiteralSpan, ...]:
        """The literal spans inside this part, in the part's own offsets."""
        base = len(self.frame.raw) - len(self.raw)
        return tuple(
            lit.moved(-base)
            for lit in self.frame.literals
            if base <= lit.announce < base + len(self.raw)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FramePart):
            return NotImplemented
        return (self.raw, self.frame, self.literal, self.first) == (
            other.raw,
            other.frame,
            other.literal,
            other.first,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        literal = f", then {self.literal.size} streamed octets" if self.literal else ", end"
        head = _summary(self.raw) if self.first else ""
        return f"FramePart({len(self.raw)} octets{literal}{head})"


@dataclass(frozen=True, slots=True)
class LiteralChunk:
    """Data of a streamed literal; ``remaining`` octets of it are still to come."""

    data: memoryview
    remaining: int

    @property
    def last(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """A client announced a synchronizing literal and waits for ``+`` (server role).

    ``frame`` is the skeleton so far, ending with the announcement, so the caller
    can parse the command (e.g. the APPEND target) before deciding.
    """

    frame: Frame
    literal: LiteralSpan


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A refused frame after which framing is still in sync; send ``error.reply``.

    ``partial`` is True when earlier parts of the frame were already delivered as
    :class:`FramePart` events: whoever relayed them must abandon that command
    (for the upstream leg, that means closing it: it is in mid-command).
    """

    error: RemoteProtocolError
    partial: bool = False


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer closed its side; ``partial`` if it did so in the middle of a frame."""

    partial: bool


class NeedData:
    """Sentinel type: more bytes are needed before the next event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

Event = Frame | FramePart | LiteralChunk | ContinuationRequest | BadFrame | EndOfStream | NeedData


class _State(enum.Enum):
    LINE = "line"  # reading a line segment
    INLINE = "inline"  # waiting for an inline literal's octets
    AWAIT = "await"  # ContinuationRequest issued, waiting for the caller
    STREAM = "stream"  # emitting a streamed literal's chunks
    DRAIN = "drain"  # discarding a refused literal's octets
    DISCARD = "discard"  # discarding the rest of a refused command
    DEAD = "dead"


@dataclass(slots=True)
class _Pending:
    """The literal announced at the end of the segment just read."""

    announce: int  # buffer index
    start: int  # buffer index of the first data octet
    size: int
    sync: bool
    binary: bool


@dataclass(slots=True)
class Framer:
    """Incremental framer for one direction of one connection.

    Args:
        role: :attr:`Role.SERVER` to read client commands, :attr:`Role.CLIENT` to
            read server responses.
        max_line: cap on the line octets of one frame (literal data excluded).
        max_literal: cap on one literal's size.
        max_nonsync_literal: cap on a non-synchronizing literal (4096 under
            LITERAL-, ``None`` under LITERAL+); server role only.
        inline_literal: literals up to this size are delivered inside the frame;
            larger ones stream.
        max_inline_total: cap on the inline literal octets buffered for one frame;
            further literals stream even if small.
        max_literals: cap on the literals of one command (default 1024, enough
            for MULTIAPPEND batches); responses have none by default.
        quirk_crlf_relaxed: accept a bare LF as a line end (QUIRKS F2; off). The
            frames keep the bare LF; whoever relays them writes CRLF.
    """

    role: Role
    max_line: int = 0
    max_literal: int = 0
    max_nonsync_literal: int | None = None
    inline_literal: int = DEFAULT_INLINE_LITERAL
    max_inline_total: int = DEFAULT_MAX_INLINE_TOTAL
    max_literals: int = 0
    quirk_crlf_relaxed: bool = False

    _buf: bytearray = field(default_factory=bytearray, init=False, repr=False)
    _pos: int = field(default=0, init=False, repr=False)  # start of unconsumed bytes
    _scan: int = field(default=0, init=False, repr=False)  # where to look for LF
    _seg: int = field(default=0, init=False, repr=False)  # start of the current segment
    _state: _State = field(default=_State.LINE, init=False)
    _eof: bool = field(default=False, init=False, repr=False)
    _direct: memoryview | None = field(default=None, init=False, repr=False)
    _remaining: int = field(default=0, init=False, repr=False)
    _pending: _Pending | None = field(default=None, init=False, repr=False)
    _raw_line: bool = field(default=False, init=False, repr=False)
    # The frame in progress: the current part starts at _pos; earlier (streamed)
    # parts are kept as skeleton pieces.
    _spans: list[LiteralSpan] = field(default_factory=list, init=False, repr=False)
    _skel: list[bytes] = field(default_factory=list, init=False, repr=False)
    _skel_len: int = field(default=0, init=False, repr=False)
    _line_bytes: int = field(default=0, init=False, repr=False)
    _inline_bytes: int = field(default=0, init=False, repr=False)
    _queued: Event | None = field(default=None, init=False, repr=False)
    _impatient: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        server = self.role is Role.SERVER
        if self.max_line <= 0:
            self.max_line = DEFAULT_MAX_COMMAND_LINE if server else DEFAULT_MAX_RESPONSE_LINE
        if self.max_literal <= 0:
            self.max_literal = (
                DEFAULT_MAX_COMMAND_LITERAL if server else DEFAULT_MAX_RESPONSE_LITERAL
            )
        if self.max_literals <= 0:
            # Responses carry many literals legitimately (an ENVELOPE of 1,000
            # 8-bit display names); their size is bounded by max_line anyway.
            self.max_literals = DEFAULT_MAX_COMMAND_LITERALS if server else sys.maxsize

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the peer.

        Streamed literal data that arrives in its own read is handed out as views
        of ``data`` (no copy): a ``memoryview`` passed here must stay unchanged
        until the :class:`LiteralChunk` events made from it are consumed. A
        ``bytearray`` is always copied.
        """
        if self._eof:
            raise RuntimeError("receive_data after receive_eof")
        if not data:
            return
        if (
            self._state is _State.STREAM
            and self._direct is None
            and self._pos == len(self._buf)
            and isinstance(data, bytes | memoryview)
        ):
            # A streamed literal's data straight from the read, without a copy.
            view = memoryview(data)
            take = min(self._remaining, len(view))
            self._direct = view[:take]
            data = view[take:]
            if not data:
                return
        if self._pos:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._seg -= self._pos
            if self._pending is not None:
                self._pending.announce -= self._pos
                self._pending.start -= self._pos
            self._pos = 0
        self._buf += data

    def receive_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    @property
    def buffered(self) -> int:
        """Octets received but not yet delivered as events."""
        direct = len(self._direct) if self._direct is not None else 0
        return len(self._buf) - self._pos + direct

    # -- decisions ------------------------------------------------------------

    def accept_literal(self) -> None:
        """Continue after a :class:`ContinuationRequest`; the caller sends ``+``."""
        pending = self._need_await()
        self._pending = None
        self._state = _State.LINE
        self._queued = self._begin_literal(pending)

    def reject_literal(self) -> bool:
        """Refuse the literal of a :class:`ContinuationRequest`.

        The caller sends a tagged ``NO`` or ``BAD`` instead of ``+``. Returns True
        when the client did not wait for ``+`` (its literal octets are already
        here): the literal and the rest of the command are then drained.
        """
        pending = self._need_await()
        self._pending = None
        return self._refuse(pending)

    def reject_frame(self) -> None:
        """Discard the rest of a frame that is streaming (after a :class:`FramePart`
        announcing a literal, or between :class:`LiteralChunk` events)."""
        if self._state is not _State.STREAM:
            raise RuntimeError("no streamed frame to reject")
        if self._direct is not None:  # received but not yet delivered: drop it now
            self._remaining -= len(self._direct)
            self._direct = None
        self._state = _State.DRAIN
        self._reset_frame()

    def expect_line(self) -> None:
        """Read the next frame as one plain line, with no literal announcement.

        For lines that are not commands: SASL responses during AUTHENTICATE and
        ``DONE`` after IDLE.
        """
        self._raw_line = True

    def expect_command(self) -> None:
        """Undo :meth:`expect_line` when the line will not come (the server ended
        IDLE by itself): the next frame is a command again."""
        self._raw_line = False

    def take_buffered(self) -> bytes:
        """Everything received but not yet framed, removed from the framer.

        For a change of layer under the stream: after COMPRESS (the bytes are
        compressed and go through the decompressor first) or STARTTLS.
        """
        direct = bytes(self._direct) if self._direct is not None else b""
        taken = direct + bytes(self._buf[self._pos :])
        self._buf.clear()
        self._direct = None
        self._pos = self._scan = self._seg = 0
        self._queued = None
        self._pending = None
        self._remaining = 0
        self._raw_line = False
        self._impatient = False
        self._reset_frame()
        self._state = _State.LINE
        return taken

    def discard_buffered(self) -> int:
        """Drop everything received but not yet framed; returns the octet count.

        Used after STARTTLS: plaintext pipelined after the command must not be read
        as if it came over TLS.
        """
        return len(self.take_buffered())

    # -- output ---------------------------------------------------------------

    def next_event(self) -> Event:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the stream cannot be framed any further (its
                ``reply`` is a ``BYE``); the framer is dead afterwards.
        """
        queued = self._queued
        if queued is not None:
            self._queued = None
            return queued
        event: Event | None
        while True:
            state = self._state
            if state is _State.LINE:
                event = self._read_line()
            elif state is _State.INLINE:
                event = self._read_inline()
            elif state is _State.STREAM:
                return self._read_stream()
            elif state is _State.DRAIN:
                event = self._drain()
            elif state is _State.DISCARD:
                event = self._read_line()
            elif state is _State.AWAIT:
                raise RuntimeError("accept_literal() or reject_literal() must be called first")
            else:
                raise RuntimeError("framer is dead after a fatal protocol error")
            if event is not None:
                return event

    # -- internals ------------------------------------------------------------

    def _fatal(self, text: str) -> RemoteProtocolError:
        self._state = _State.DEAD
        return RemoteProtocolError(text, reply=Reply(kind="BYE", text=text))

    def _end_of_input(self) -> Event:
        if not self._eof:
            return NEED_DATA
        partial = self._state is not _State.LINE or self.buffered > 0 or bool(self._skel)
        return EndOfStream(partial=partial)

    def _read_line(self) -> Event | None:
        buf = self._buf
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            self._scan = len(buf)
            if self._line_bytes + len(buf) - self._seg > self.max_line:
                raise self._fatal("Line too long")
            return self._end_of_input()
        seg = self._seg
        self._line_bytes += lf + 1 - seg
        if self._line_bytes > self.max_line:
            raise self._fatal("Line too long")
        if lf > seg and buf[lf - 1] == _CR:
            end = lf - 1
        elif self.quirk_crlf_relaxed:
            end = lf
        else:
            return self._bad_line_end(lf)
        pending = None if self._raw_line else self._find_literal(seg, end, lf + 1)
        if pending is None:
            return self._finish_frame(lf + 1)
        if self._state is _State.DISCARD:
            waits = (
                pending.sync
                and self.role is Role.SERVER
                and not self._impatient
                and len(buf) == pending.start
                and self._direct is None
            )
            self._pos = self._scan = self._seg = pending.start
            if waits:
                self._finish_discard()  # the client waits for a "+" that never comes
            else:
                self._impatient = True  # it sends literals without waiting: drain them
                self._remaining = pending.size
                self._state = _State.DRAIN
            return None
        if pending.size > self.max_literal:
            return self._refused(pending, "Literal too large", b"TOOBIG")
        if len(self._spans) >= self.max_literals:
            return self._refused(pending, "Too many literals in one command", b"LIMIT")
        if (
            not pending.sync
            and self.role is Role.SERVER
            and self.max_nonsync_literal is not None
            and pending.size > self.max_nonsync_literal
        ):
            return self._refused(pending, "Non-synchronizing literal too large", b"TOOBIG")
        if pending.sync and self.role is Role.SERVER:
            self._pending = pending
            self._state = _State.AWAIT
            preview_span = self._span(pending, streamed=True)
            preview = Frame(
                b"".join([*self._skel, bytes(buf[self._pos : pending.start])]),
                (*self._spans, preview_span),
            )
            return ContinuationRequest(preview, preview_span)
        return self._begin_literal(pending)

    def _find_literal(self, seg: int, end: int, start: int) -> _Pending | None:
        """The literal announced just before ``end`` (the line end), if any;
        its data would begin at ``start``.

        The announcement is ``{digits}`` or ``{digits+}``, optionally after ``~``
        (leading zeros allowed). In the server role it must follow SP or ``(``:
        a client line ending in ``x{5}`` is ambiguous (servers read it as a bad
        atom and then the data as commands), so it is a fatal error rather than a
        guess.
        """
        buf = self._buf
        if end - seg < 3 or buf[end - 1] != _RBRACE:
            return None
        if self.role is Role.CLIENT and seg == self._pos and not self._skel and buf[seg] == _PLUS:
            return None  # a continuation request's text is never a literal
        sync = buf[end - 2] != _PLUS
        last_digit = end - 2 if sync else end - 3
        first_digit = last_digit
        while first_digit >= seg and 0x30 <= buf[first_digit] <= 0x39:
            first_digit -= 1
        brace = first_digit
        if brace == last_digit or brace < seg or buf[brace] != _LBRACE:
            return None
        if last_digit - brace > _MAX_ANNOUNCE_DIGITS:
            raise self._fatal("Literal length has too many digits")
        binary = brace > seg and buf[brace - 1] == _TILDE
        announce = brace - 1 if binary else brace
        if self.role is Role.SERVER:
            if _QUOTE_BALANCED.fullmatch(buf, seg, announce) is None:
                return None  # "{n}" inside an unterminated quoted string
            if announce == seg or buf[announce - 1] not in _BEFORE_LITERAL:
                raise self._fatal("Ambiguous literal announcement")
        return _Pending(announce, start, int(buf[brace + 1 : last_digit + 1]), sync, binary)

    def _span(self, pending: _Pending, *, streamed: bool) -> LiteralSpan:
        base = self._skel_len - self._pos
        return LiteralSpan(
            pending.announce + base,
            pending.start + base,
            pending.size,
            pending.sync,
            pending.binary,
            streamed,
        )

    def _begin_literal(self, pending: _Pending) -> Event | None:
        inline = (
            pending.size <= self.inline_literal
            and self._inline_bytes + pending.size <= self.max_inline_total
        )
        if inline:
            self._spans.append(self._span(pending, streamed=False))
            self._inline_bytes += pending.size
            self._scan = self._seg = pending.start + pending.size
            self._state = _State.INLINE
            return None
        span = self._span(pending, streamed=True)
        self._spans.append(span)
        first = not self._skel
        raw = bytes(self._buf[self._pos : pending.start])
        self._skel.append(raw)
        self._skel_len += len(raw)
        self._pos = self._scan = self._seg = pending.start
        self._remaining = pending.size
        self._state = _State.STREAM
        return FramePart(raw, (self._skel, self._spans), span, first)

    def _read_inline(self) -> Event | None:
        if len(self._buf) < self._seg:
            return self._end_of_input()
        self._state = _State.LINE
        return None

    def _read_stream(self) -> Event:
        if self._direct is not None:
            chunk = self._direct
            self._direct = None
        else:
            available = len(self._buf) - self._pos
            if not available:
                return self._end_of_input()
            take = min(available, self._remaining)
            chunk = memoryview(bytes(self._buf[self._pos : self._pos + take]))
            self._pos += take
            self._scan = self._seg = self._pos
        self._remaining -= len(chunk)
        if not self._remaining:
            self._state = _State.LINE
        return LiteralChunk(chunk, self._remaining)

    def _drain(self) -> Event | None:
        if self._direct is not None:
            self._remaining -= len(self._direct)
            self._direct = None
        take = min(len(self._buf) - self._pos, self._remaining)
        self._pos += take
        self._remaining -= take
        self._scan = self._seg = self._pos
        if self._remaining:
            return self._end_of_input()
        self._state = _State.DISCARD
        self._line_bytes = 0
        return None

    def _finish_frame(self, stop: int) -> Event | None:
        """The line segment ending at ``stop`` completes the frame."""
        plain = self._raw_line
        self._raw_line = False
        if self._state is _State.DISCARD:
            self._pos = self._scan = self._seg = stop
            self._finish_discard()
            return None
        raw = bytes(self._buf[self._pos : stop])
        self._pos = self._scan = self._seg = stop
        if plain:
            return Frame(raw, plain=True)
        if self._skel:
            self._skel.append(raw)
            part = FramePart(raw, (self._skel, self._spans), None, False)
            self._reset_frame()
            return part
        spans = tuple(self._spans) if self._spans else ()
        self._reset_frame()
        return Frame(raw, spans)

    def _finish_discard(self) -> None:
        self._state = _State.LINE
        self._impatient = False
        self._reset_frame()

    def _reset_frame(self) -> None:
        if self._spans:
            self._spans = []
        if self._skel:
            self._skel = []
            self._skel_len = 0
        self._line_bytes = 0
        self._inline_bytes = 0

    def _tag(self) -> bytes | None:
        """The tag of the frame in progress, for a reply (``None`` if it has none)."""
        first = bytes(self._buf[self._pos : self._pos + 65]) if not self._skel else self._skel[0]
        match = _TAG.match(first)
        return match.group() if match else None

    def _refuse(self, pending: _Pending) -> bool:
        """Drop the frame of a refused synchronizing literal; drain if data is here.

        A client whose literal octets came without waiting for ``+`` (QUIRKS K7)
        does not wait for later ones of the same command either: they are all
        drained, until the command ends.
        """
        early = len(self._buf) > pending.start or self._direct is not None
        self._pos = self._scan = self._seg = pending.start
        self._reset_frame()
        if early:
            self._impatient = True
            self._remaining = pending.size
            self._state = _State.DRAIN
        else:
            self._state = _State.LINE
        return early

    def _refused(self, pending: _Pending, text: str, code: bytes) -> Event:
        """A client's literal refused by a cap: ``NO`` for a synchronizing one
        (the client waits), ``BAD`` for a non-synchronizing one, whose octets are
        drained with the rest of the command. From a server it is fatal."""
        if self.role is Role.CLIENT:
            raise self._fatal(f"{text}: {pending.size} octets")
        tag = self._tag()
        partial = bool(self._skel)
        reply = Reply(kind="NO" if pending.sync else "BAD", text=text, code=code, tag=tag)
        self._drop_literal(pending)
        return BadFrame(RemoteProtocolError(text, reply=reply), partial)

    def _drop_literal(self, pending: _Pending) -> None:
        """Abandon the frame at ``pending``: a synchronizing literal is refused
        (drained only if its octets came without waiting), a non-synchronizing
        one is drained; then the rest of the command is discarded."""
        if pending.sync:
            self._refuse(pending)
            return
        self._pos = self._scan = self._seg = pending.start
        self._remaining = pending.size
        self._state = _State.DRAIN
        self._reset_frame()

    def _bad_line_end(self, lf: int) -> Event | None:
        """A bare LF from a client: the command is refused, and a literal it
        announces is handled as refused too, so its data is never read as a
        command. From a server it is fatal."""
        text = "Line must end with CRLF"
        if self.role is Role.CLIENT:
            raise self._fatal(text)
        discarding = self._state is _State.DISCARD
        tag = None if discarding else self._tag()
        partial = bool(self._skel)
        pending = None if self._raw_line else self._find_literal(self._seg, lf, lf + 1)
        self._raw_line = False
        if pending is not None:
            self._drop_literal(pending)
        else:
            self._pos = self._scan = self._seg = lf + 1
            self._state = _State.LINE
            self._reset_frame()
        if discarding:
            return None
        reply = Reply(kind="BAD", text=text, tag=tag)
        return BadFrame(RemoteProtocolError(text, reply=reply), partial)

    def _need_await(self) -> _Pending:
        if self._state is not _State.AWAIT or self._pending is None:
            raise RuntimeError("no continuation request is pending")
        return self._pending
