"""Helpers shared by the codec tests (importable through pytest's pythonpath)."""

from __future__ import annotations

from typing import Any

from imapproxy.wire import (
    NEED_DATA,
    ContinuationRequest,
    EndOfStream,
    Frame,
    Framer,
    Literal,
    LiteralSpan,
    Role,
    SequenceSet,
)

#: Search keys by the kind of argument they take, as RFC 9051 (and the extensions
#: the codec knows) list them: the tests' own table, independent of search.py.
NO_ARG_KEYS = (
    "ALL",
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "NEW",
    "OLD",
    "RECENT",
    "SEEN",
    "UNANSWERED",
    "UNDELETED",
    "UNDRAFT",
    "UNFLAGGED",
    "UNSEEN",
    "SAVEDATESUPPORTED",
)
STRING_KEYS = ("BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "X-GM-RAW", "X-GM-LABELS")
DATE_KEYS = (
    "BEFORE",
    "ON",
    "SINCE",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SAVEDBEFORE",
    "SAVEDON",
    "SAVEDSINCE",
)
ATOM_KEYS = ("KEYWORD", "UNKEYWORD", "EMAILID", "THREADID", "FILTER")
NUMBER_KEYS = ("LARGER", "SMALLER", "X-GM-MSGID", "X-GM-THRID")


def literal(data: bytes, *, binary: bool = False) -> Literal:
    """An inline literal value carrying ``data`` (literals compare by content)."""
    span = LiteralSpan(0, 0, len(data), True, binary)
    return Literal(Frame(data, (span,)), span)


def seq(text: bytes) -> SequenceSet:
    return SequenceSet.parse(text)


def frames_of(
    role: Role, wire: bytes, *, chunk: int | None = None, **framer_args: Any
) -> list[Frame]:
    """Every frame a framer makes of ``wire``, fed whole or in ``chunk``-octet
    pieces; continuations are accepted, the stream must end between frames."""
    framer = Framer(role, **framer_args)
    pieces = [wire] if chunk is None else [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
    frames: list[Frame] = []
    for piece in [*pieces, None]:
        if piece is None:
            framer.receive_eof()
        else:
            framer.receive_data(piece)
        while (event := framer.next_event()) is not NEED_DATA:
            if isinstance(event, ContinuationRequest):
                framer.accept_literal()
                continue
            if isinstance(event, EndOfStream):
                assert not event.partial
                return frames
            assert isinstance(event, Frame), event
            frames.append(event)
    return frames


def frame_one(role: Role, wire: bytes, **framer_args: Any) -> Frame:
    """The one frame ``wire`` makes; it is the input, byte for byte (relay)."""
    frames = frames_of(role, wire, **framer_args)
    assert len(frames) == 1, frames
    assert frames[0].raw == wire
    return frames[0]
