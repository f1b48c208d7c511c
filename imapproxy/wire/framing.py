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
  client bug); the literal and the rest of its command are drained instead.
* In the server role a ``{n}`` that sits inside an unterminated quoted string is
  not a literal. Responses are not checked for quote balance, because real
  servers send unescaped quotes (docs: QUIRKS F8).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from imapproxy.wire.errors import RemoteProtocolError, Reply
from imapproxy.wire.grammar import TAG_CHAR

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

_LF = 0x0A
_CR = 0x0D
_RBRACE = 0x7D
_PLUS = 0x2B
_TILDE = 0x7E

# Everything before a "{" that is outside a quoted string (possessive, so no
# backtracking). Used only on command lines that end with a literal announcement.
_QUOTE_BALANCED = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_TAG = re.compile(TAG_CHAR + rb"{1,64}(?= )")


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


@dataclass(frozen=True, slots=True)
class Frame:
    """A whole frame: its exact bytes and where its literals are.

    ``raw`` is what the peer sent, byte for byte, so an unchanged frame is relayed
    by writing ``raw``. In a skeleton (see :class:`FramePart`) streamed literals'
    data is left out of ``raw``.
    """

    raw: bytes
    literals: tuple[LiteralSpan, ...] = ()

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
            plus = lit.start - 4  # "+}\r\n" precede the data
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


@dataclass(frozen=True, slots=True)
class FramePart:
    """One part of a frame whose literal data is streamed.

    ``raw`` is this part's bytes, to relay as they are; ``frame`` is the skeleton
    of the frame so far (all parts, streamed data left out), which the parser
    accepts. ``literal`` is the streamed literal announced at the end of this part,
    whose data follows as :class:`LiteralChunk` events; ``None`` when this part
    completes the frame.
    """

    raw: bytes
    frame: Frame
    literal: LiteralSpan | None
    first: bool


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
    """A refused frame after which framing is still in sync; send ``error.reply``."""

    error: RemoteProtocolError


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
        quirk_crlf_relaxed: accept a bare LF as a line end (QUIRKS F2; off).
    """

    role: Role
    max_line: int = 0
    max_literal: int = 0
    max_nonsync_literal: int | None = None
    inline_literal: int = DEFAULT_INLINE_LITERAL
    max_inline_total: int = DEFAULT_MAX_INLINE_TOTAL
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

    def __post_init__(self) -> None:
        server = self.role is Role.SERVER
        if self.max_line <= 0:
            self.max_line = DEFAULT_MAX_COMMAND_LINE if server else DEFAULT_MAX_RESPONSE_LINE
        if self.max_literal <= 0:
            self.max_literal = (
                DEFAULT_MAX_COMMAND_LITERAL if server else DEFAULT_MAX_RESPONSE_LITERAL
            )

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the peer."""
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

    def discard_buffered(self) -> int:
        """Drop everything received but not yet framed; returns the octet count.

        Used after STARTTLS: plaintext pipelined after the command must not be read
        as if it came over TLS.
        """
        count = self.buffered
        self._buf.clear()
        self._direct = None
        self._pos = self._scan = self._seg = 0
        self._reset_frame()
        self._state = _State.LINE
        return count

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
            self._pos = self._scan = self._seg = pending.start
            if pending.sync and self.role is Role.SERVER:
                self._finish_discard()  # the client waits for a "+" that never comes
            else:
                self._remaining = pending.size
                self._state = _State.DRAIN
            return None
        if pending.size > self.max_literal:
            return self._oversized(pending, "Literal too large")
        if (
            not pending.sync
            and self.role is Role.SERVER
            and self.max_nonsync_literal is not None
            and pending.size > self.max_nonsync_literal
        ):
            return self._oversized(pending, "Non-synchronizing literal too large")
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
        its data would begin at ``start``."""
        buf = self._buf
        if end - seg < 3 or buf[end - 1] != _RBRACE:
            return None
        if self.role is Role.CLIENT and seg == self._pos and not self._skel and buf[seg] == _PLUS:
            return None  # a continuation request's text is never a literal
        brace = buf.rfind(b"{", max(seg, end - 23), end - 1)
        if brace < 0:
            return None
        sync = buf[end - 2] != _PLUS
        digits = bytes(buf[brace + 1 : end - 1 if sync else end - 2])
        if not digits.isdigit() or not digits.isascii():
            return None
        binary = brace > seg and buf[brace - 1] == _TILDE
        announce = brace - 1 if binary else brace
        if self.role is Role.SERVER and _QUOTE_BALANCED.fullmatch(buf, seg, announce) is None:
            return None  # "{n}" inside an unterminated quoted string
        return _Pending(announce, start, int(digits), sync, binary)

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
        skeleton = Frame(b"".join(self._skel), tuple(self._spans))
        self._pos = self._scan = self._seg = pending.start
        self._remaining = pending.size
        self._state = _State.STREAM
        return FramePart(raw, skeleton, span, first)

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
        self._raw_line = False
        if self._state is _State.DISCARD:
            self._pos = self._scan = self._seg = stop
            self._finish_discard()
            return None
        raw = bytes(self._buf[self._pos : stop])
        self._pos = self._scan = self._seg = stop
        if self._skel:
            skeleton = Frame(b"".join([*self._skel, raw]), tuple(self._spans))
            self._reset_frame()
            return FramePart(raw, skeleton, None, False)
        spans = tuple(self._spans) if self._spans else ()
        self._reset_frame()
        return Frame(raw, spans)

    def _finish_discard(self) -> None:
        self._state = _State.LINE
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
        """Drop the frame of a refused synchronizing literal; drain if data is here."""
        early = len(self._buf) > pending.start or self._direct is not None
        self._pos = self._scan = self._seg = pending.start
        if early:
            self._remaining = pending.size
            self._state = _State.DRAIN
        else:
            self._state = _State.LINE
        self._reset_frame()
        return early

    def _oversized(self, pending: _Pending, text: str) -> Event:
        if self.role is Role.CLIENT:
            raise self._fatal(f"{text}: {pending.size} octets")
        tag = self._tag()
        reply = Reply(kind="NO" if pending.sync else "BAD", text=text, code=b"TOOBIG", tag=tag)
        error = RemoteProtocolError(text, reply=reply)
        if pending.sync:
            self._refuse(pending)
        else:
            self._pos = self._scan = self._seg = pending.start
            self._remaining = pending.size
            self._state = _State.DRAIN
            self._reset_frame()
        return BadFrame(error)

    def _bad_line_end(self, lf: int) -> Event:
        text = "Line must end with CRLF"
        if self.role is Role.CLIENT:
            raise self._fatal(text)
        tag = self._tag()
        self._pos = self._scan = self._seg = lf + 1
        self._raw_line = False
        state = self._state
        self._state = _State.LINE
        self._reset_frame()
        if state is _State.DISCARD:
            return self.next_event()
        return BadFrame(RemoteProtocolError(text, reply=Reply(kind="BAD", text=text, tag=tag)))

    def _need_await(self) -> _Pending:
        if self._state is not _State.AWAIT or self._pending is None:
            raise RuntimeError("no continuation request is pending")
        return self._pending
