"""The incremental framer (imapproxy.wire.framing), both roles.

A table of byte streams and the exact events they produce (checked when fed all at
once and one octet at a time), then focused tests for the outcomes documented in the
framing module: continuation decisions, refused and oversized literals, caps, bare LF,
quote balance, streaming, STARTTLS, end of stream and the Frame helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from imapproxy.wire import (
    NEED_DATA,
    BadFrame,
    Command,
    ContinuationRequest,
    EndOfStream,
    Frame,
    FramePart,
    Framer,
    LiteralChunk,
    LiteralSpan,
    Mailbox,
    RemoteProtocolError,
    Reply,
    Response,
    Role,
)
from imapproxy.wire.commands import AppendArgs, LoginArgs
from imapproxy.wire.responses import FetchData
from imapproxy.wire.values import Secret

SERVER = Role.SERVER
CLIENT = Role.CLIENT


def span(
    announce: int,
    start: int,
    size: int,
    *,
    sync: bool = True,
    binary: bool = False,
    streamed: bool = False,
) -> LiteralSpan:
    return LiteralSpan(announce, start, size, sync, binary, streamed)


# -- driving a framer ------------------------------------------------------------


def normalise(event: Any) -> Any:
    """Events as comparable values (BadFrame carries an exception; chunks a view)."""
    if isinstance(event, LiteralChunk):
        return ("chunk", bytes(event.data), event.remaining)
    if isinstance(event, BadFrame):
        return ("bad", event.error.reply)
    if isinstance(event, ContinuationRequest):
        return ("continue", event.frame, event.literal)
    return event


def merge_chunks(events: list[Any]) -> list[Any]:
    """Consecutive chunks merged into one (chunk boundaries depend on reads)."""
    out: list[Any] = []
    for event in events:
        if (
            isinstance(event, tuple)
            and event[0] == "chunk"
            and out
            and isinstance(out[-1], tuple)
            and out[-1][0] == "chunk"
        ):
            out[-1] = ("chunk", out[-1][1] + event[1], event[2])
        else:
            out.append(event)
    return out


def pump(framer: Framer, out: list[Any], decisions: list[str]) -> None:
    """Take events until NEED_DATA; answer continuation requests from ``decisions``."""
    while True:
        event = framer.next_event()
        if event is NEED_DATA:
            return
        out.append(normalise(event))
        if isinstance(event, ContinuationRequest):
            decision = decisions.pop(0) if decisions else "accept"
            if decision == "accept":
                framer.accept_literal()
            else:
                out.append(("rejected", framer.reject_literal()))
        if isinstance(event, EndOfStream):
            return


def feed(
    framer: Framer,
    chunks: Iterable[bytes],
    *,
    decisions: Iterable[str] = (),
    eof: bool = False,
) -> list[Any]:
    """Feed ``chunks`` one receive_data call each, collecting normalised events.

    A fatal RemoteProtocolError is recorded as ``("fatal", reply)`` and ends the run.
    """
    out: list[Any] = []
    todo = list(decisions)
    try:
        for chunk in chunks:
            framer.receive_data(chunk)
            pump(framer, out, todo)
        if eof:
            framer.receive_eof()
            pump(framer, out, todo)
    except RemoteProtocolError as exc:
        out.append(("fatal", exc.reply))
    return out


def octets(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    role: Role
    #: the stream, or a list of receive_data calls where reads matter
    data: bytes | list[bytes]
    expected: list[Any]
    options: dict[str, Any] = field(default_factory=dict)
    decisions: tuple[str, ...] = ()
    eof: bool = False
    #: False where the outcome depends on what is buffered when a decision is made.
    split_invariant: bool = True

    @property
    def chunks(self) -> list[bytes]:
        return [self.data] if isinstance(self.data, bytes) else self.data

    @property
    def stream(self) -> bytes:
        return b"".join(self.chunks)


def _bye(text: str) -> tuple[str, Reply]:
    return ("fatal", Reply(kind="BYE", text=text))


CASES = [
    Case(
        "server-lines",
        SERVER,
        b"a1 NOOP\r\na2 CAPABILITY\r\n",
        [Frame(b"a1 NOOP\r\n"), Frame(b"a2 CAPABILITY\r\n")],
    ),
    Case(
        "client-lines",
        CLIENT,
        b"* OK [CAPABILITY IMAP4rev1] ready\r\n* 3 EXISTS\r\na1 OK done\r\n",
        [
            Frame(b"* OK [CAPABILITY IMAP4rev1] ready\r\n"),
            Frame(b"* 3 EXISTS\r\n"),
            Frame(b"a1 OK done\r\n"),
        ],
    ),
    Case(
        "server-sync-literal-accepted",
        SERVER,
        b"a1 APPEND box {5}\r\nhello\r\na2 NOOP\r\n",
        [
            (
                "continue",
                Frame(b"a1 APPEND box {5}\r\n", (span(14, 19, 5, streamed=True),)),
                span(14, 19, 5, streamed=True),
            ),
            Frame(b"a1 APPEND box {5}\r\nhello\r\n", (span(14, 19, 5),)),
            Frame(b"a2 NOOP\r\n"),
        ],
    ),
    Case(
        "server-nonsync-literal",
        SERVER,
        b"a1 APPEND box {5+}\r\nhello\r\n",
        [Frame(b"a1 APPEND box {5+}\r\nhello\r\n", (span(14, 20, 5, sync=False),))],
    ),
    Case(
        "server-literal8",
        SERVER,
        b"a1 APPEND box ~{3}\r\na\x00b\r\n",
        [
            (
                "continue",
                Frame(b"a1 APPEND box ~{3}\r\n", (span(14, 20, 3, binary=True, streamed=True),)),
                span(14, 20, 3, binary=True, streamed=True),
            ),
            Frame(b"a1 APPEND box ~{3}\r\na\x00b\r\n", (span(14, 20, 3, binary=True),)),
        ],
    ),
    Case(
        "server-literal8-nonsync",
        SERVER,
        b"a1 APPEND box UTF8 (~{3+}\r\na\x00b)\r\n",
        [
            Frame(
                b"a1 APPEND box UTF8 (~{3+}\r\na\x00b)\r\n",
                (span(20, 27, 3, sync=False, binary=True),),
            )
        ],
    ),
    Case(
        "client-literal",
        CLIENT,
        b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n",
        [Frame(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n", (span(18, 23, 5),))],
    ),
    Case(
        "client-literal8",
        CLIENT,
        b"* 1 FETCH (BINARY[] ~{3}\r\na\x00b)\r\n",
        [Frame(b"* 1 FETCH (BINARY[] ~{3}\r\na\x00b)\r\n", (span(20, 26, 3, binary=True),))],
    ),
    Case(
        "client-literal-containing-crlf-and-lines",
        CLIENT,
        b"* 1 FETCH (BODY[] {11}\r\na1 OK x\r\n\r\n)\r\n",
        [Frame(b"* 1 FETCH (BODY[] {11}\r\na1 OK x\r\n\r\n)\r\n", (span(18, 24, 11),))],
    ),
    Case(
        "server-login-two-sync-literals",
        SERVER,
        b"a1 LOGIN {3}\r\nbob {4}\r\npass\r\n",
        [
            (
                "continue",
                Frame(b"a1 LOGIN {3}\r\n", (span(9, 14, 3, streamed=True),)),
                span(9, 14, 3, streamed=True),
            ),
            (
                "continue",
                Frame(
                    b"a1 LOGIN {3}\r\nbob {4}\r\n",
                    (span(9, 14, 3), span(18, 23, 4, streamed=True)),
                ),
                span(18, 23, 4, streamed=True),
            ),
            Frame(b"a1 LOGIN {3}\r\nbob {4}\r\npass\r\n", (span(9, 14, 3), span(18, 23, 4))),
        ],
    ),
    Case(
        "server-multiappend-nonsync",
        SERVER,
        b"a1 APPEND box (\\Seen) {3+}\r\nabc (\\Draft) {2+}\r\nde\r\n",
        [
            Frame(
                b"a1 APPEND box (\\Seen) {3+}\r\nabc (\\Draft) {2+}\r\nde\r\n",
                (span(22, 28, 3, sync=False), span(41, 47, 2, sync=False)),
            )
        ],
    ),
    Case(
        "server-literal-size-zero",
        SERVER,
        b"a1 LOGIN {0+}\r\n {0+}\r\n\r\n",
        [
            Frame(
                b"a1 LOGIN {0+}\r\n {0+}\r\n\r\n",
                (span(9, 15, 0, sync=False), span(16, 22, 0, sync=False)),
            )
        ],
    ),
    Case(
        "server-brace-not-at-line-end",
        SERVER,
        b"a1 SEARCH SUBJECT {3} ALL\r\n",
        [Frame(b"a1 SEARCH SUBJECT {3} ALL\r\n")],
    ),
    Case(
        "server-brace-not-digits",
        SERVER,
        b"a1 X {3a}\r\na2 X {}\r\na3 X {-1}\r\n",
        [Frame(b"a1 X {3a}\r\n"), Frame(b"a2 X {}\r\n"), Frame(b"a3 X {-1}\r\n")],
    ),
    Case(
        "server-literal-in-unterminated-quote-is-text",
        SERVER,
        b'a1 LOGIN "bob {3}\r\na2 NOOP\r\n',
        [Frame(b'a1 LOGIN "bob {3}\r\n'), Frame(b"a2 NOOP\r\n")],
    ),
    Case(
        "server-literal-after-closed-quote",
        SERVER,
        b'a1 LOGIN "b\\"o{1}b" {3+}\r\nabc\r\n',
        [Frame(b'a1 LOGIN "b\\"o{1}b" {3+}\r\nabc\r\n', (span(20, 26, 3, sync=False),))],
    ),
    Case(
        "server-escaped-quote-keeps-string-open",
        SERVER,
        b'a1 LOGIN "bob\\" {3}\r\na2 NOOP\r\n',
        [Frame(b'a1 LOGIN "bob\\" {3}\r\n'), Frame(b"a2 NOOP\r\n")],
    ),
    Case(
        "client-unbalanced-quote-still-literal",
        CLIENT,
        b'* 1 FETCH (ENVELOPE ("<a"b@x>" {3}\r\nabc))\r\n',
        [Frame(b'* 1 FETCH (ENVELOPE ("<a"b@x>" {3}\r\nabc))\r\n', (span(31, 36, 3),))],
    ),
    Case(
        "client-continuation-text-not-literal",
        CLIENT,
        b"+ send {5}\r\n* 2 EXISTS\r\n",
        [Frame(b"+ send {5}\r\n"), Frame(b"* 2 EXISTS\r\n")],
    ),
    Case(
        "client-status-text-ending-in-literal-is-framed-F9",
        CLIENT,
        b"* OK text ending {1}\r\nX\r\n",
        [Frame(b"* OK text ending {1}\r\nX\r\n", (span(17, 22, 1),))],
    ),
    Case(
        "server-bare-lf-bad-frame",
        SERVER,
        b"a1 NOOP\na2 NOOP\r\n",
        [
            ("bad", Reply(kind="BAD", text="Line must end with CRLF", tag=b"a1")),
            Frame(b"a2 NOOP\r\n"),
        ],
    ),
    Case(
        "server-bare-lf-untagged-bad",
        SERVER,
        b"\na2 NOOP\r\n",
        [("bad", Reply(kind="BAD", text="Line must end with CRLF")), Frame(b"a2 NOOP\r\n")],
    ),
    Case(
        "server-bare-lf-relaxed",
        SERVER,
        b"a1 NOOP\na2 NOOP\r\n",
        [Frame(b"a1 NOOP\n"), Frame(b"a2 NOOP\r\n")],
        options={"quirk_crlf_relaxed": True},
    ),
    Case(
        "client-bare-lf-fatal",
        CLIENT,
        b"* OK hi\r\n* 1 EXISTS\n* 2 EXISTS\r\n",
        [Frame(b"* OK hi\r\n"), _bye("Line must end with CRLF")],
    ),
    Case(
        "client-bare-lf-relaxed",
        CLIENT,
        b"* 1 EXISTS\n",
        [Frame(b"* 1 EXISTS\n")],
        options={"quirk_crlf_relaxed": True},
    ),
    Case(
        "server-line-too-long",
        SERVER,
        b"a1 NOOPX\r\na2 NOOP\r\n",
        [_bye("Line too long")],
        options={"max_line": 9},
    ),
    Case(
        "server-line-at-cap",
        SERVER,
        b"a1 NOOP\r\n",
        [Frame(b"a1 NOOP\r\n")],
        options={"max_line": 9},
    ),
    Case(
        "client-line-too-long",
        CLIENT,
        b"* 1 EXISTS\r\n",
        [_bye("Line too long")],
        options={"max_line": 11},
    ),
    Case(
        "server-line-too-long-across-segments",
        SERVER,
        b"a1 X {1+}\r\nZ123\r\n",
        [_bye("Line too long")],
        options={"max_line": 15},
    ),
    Case(
        "server-literal-data-not-counted-as-line",
        SERVER,
        b"a1 X {20+}\r\n" + b"L" * 20 + b"\r\n",
        [Frame(b"a1 X {20+}\r\n" + b"L" * 20 + b"\r\n", (span(5, 12, 20, sync=False),))],
        options={"max_line": 14},
    ),
    Case(
        "server-oversized-sync-literal-client-waited",
        SERVER,
        [b"a1 APPEND box {11}\r\n", b"a2 NOOP\r\n"],
        [
            ("bad", Reply(kind="NO", text="Literal too large", code=b"TOOBIG", tag=b"a1")),
            Frame(b"a2 NOOP\r\n"),
        ],
        options={"max_literal": 10},
        split_invariant=False,
    ),
    Case(
        "server-oversized-nonsync-literal-drained",
        SERVER,
        b"a1 APPEND box {11+}\r\na9 DELETE\r\n\r\na2 NOOP\r\n",
        [
            ("bad", Reply(kind="BAD", text="Literal too large", code=b"TOOBIG", tag=b"a1")),
            Frame(b"a2 NOOP\r\n"),
        ],
        options={"max_literal": 10},
    ),
    Case(
        "server-literal-minus-over-4096",
        SERVER,
        b"a1 APPEND box {4097+}\r\n" + b"x" * 4097 + b"\r\na2 NOOP\r\n",
        [
            (
                "bad",
                Reply(
                    kind="BAD",
                    text="Non-synchronizing literal too large",
                    code=b"TOOBIG",
                    tag=b"a1",
                ),
            ),
            Frame(b"a2 NOOP\r\n"),
        ],
        options={"max_nonsync_literal": 4096},
    ),
    Case(
        "server-literal-minus-sync-over-4096-is-fine",
        SERVER,
        b"a1 APPEND box {4097}\r\n" + b"x" * 4097 + b"\r\n",
        [
            (
                "continue",
                Frame(b"a1 APPEND box {4097}\r\n", (span(14, 22, 4097, streamed=True),)),
                span(14, 22, 4097, streamed=True),
            ),
            Frame(b"a1 APPEND box {4097}\r\n" + b"x" * 4097 + b"\r\n", (span(14, 22, 4097),)),
        ],
        options={"max_nonsync_literal": 4096},
    ),
    Case(
        "client-oversized-literal-fatal",
        CLIENT,
        b"* 1 FETCH (BODY[] {11}\r\n" + b"x" * 11 + b")\r\n",
        [_bye("Literal too large: 11 octets")],
        options={"max_literal": 10},
    ),
    Case(
        "client-literal-minus-cap-ignored",
        CLIENT,
        b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n",
        [Frame(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n", (span(18, 23, 5),))],
        options={"max_nonsync_literal": 1},
    ),
    Case(
        "client-streamed-literal",
        CLIENT,
        b"* 1 FETCH (UID 7 BODY[] {10}\r\n0123456789)\r\n* 2 EXISTS\r\n",
        [
            FramePart(
                b"* 1 FETCH (UID 7 BODY[] {10}\r\n",
                Frame(b"* 1 FETCH (UID 7 BODY[] {10}\r\n", (span(24, 30, 10, streamed=True),)),
                span(24, 30, 10, streamed=True),
                True,
            ),
            ("chunk", b"0123456789", 0),
            FramePart(
                b")\r\n",
                Frame(b"* 1 FETCH (UID 7 BODY[] {10}\r\n)\r\n", (span(24, 30, 10, streamed=True),)),
                None,
                False,
            ),
            Frame(b"* 2 EXISTS\r\n"),
        ],
        options={"inline_literal": 4},
    ),
    Case(
        "client-inline-then-streamed-then-inline",
        CLIENT,
        b"* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {6}\r\nabcdef BODY[3] {1}\r\nz)\r\n",
        [
            FramePart(
                b"* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {6}\r\n",
                Frame(
                    b"* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {6}\r\n",
                    (span(19, 24, 2), span(35, 40, 6, streamed=True)),
                ),
                span(35, 40, 6, streamed=True),
                True,
            ),
            ("chunk", b"abcdef", 0),
            FramePart(
                b" BODY[3] {1}\r\nz)\r\n",
                Frame(
                    b"* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {6}\r\n BODY[3] {1}\r\nz)\r\n",
                    (span(19, 24, 2), span(35, 40, 6, streamed=True), span(49, 54, 1)),
                ),
                None,
                False,
            ),
        ],
        options={"inline_literal": 4},
    ),
    Case(
        "client-max-inline-total",
        CLIENT,
        b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {3}\r\ndef)\r\n",
        [
            FramePart(
                b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {3}\r\n",
                Frame(
                    b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {3}\r\n",
                    (span(19, 24, 3), span(36, 41, 3, streamed=True)),
                ),
                span(36, 41, 3, streamed=True),
                True,
            ),
            ("chunk", b"def", 0),
            FramePart(
                b")\r\n",
                Frame(
                    b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {3}\r\n)\r\n",
                    (span(19, 24, 3), span(36, 41, 3, streamed=True)),
                ),
                None,
                False,
            ),
        ],
        options={"max_inline_total": 5},
    ),
    Case(
        "eof-clean",
        SERVER,
        b"a1 NOOP\r\n",
        [Frame(b"a1 NOOP\r\n"), EndOfStream(partial=False)],
        eof=True,
    ),
    Case(
        "eof-mid-line",
        CLIENT,
        b"* 1 EXISTS\r\n* 2 EXI",
        [Frame(b"* 1 EXISTS\r\n"), EndOfStream(partial=True)],
        eof=True,
    ),
    Case(
        "eof-mid-literal",
        SERVER,
        b"a1 APPEND box {5+}\r\nhel",
        [EndOfStream(partial=True)],
        eof=True,
    ),
    Case(
        "eof-mid-streamed-literal",
        CLIENT,
        b"* 1 FETCH (BODY[] {10}\r\n01234",
        [
            FramePart(
                b"* 1 FETCH (BODY[] {10}\r\n",
                Frame(b"* 1 FETCH (BODY[] {10}\r\n", (span(18, 24, 10, streamed=True),)),
                span(18, 24, 10, streamed=True),
                True,
            ),
            ("chunk", b"01234", 5),
            EndOfStream(partial=True),
        ],
        options={"inline_literal": 4},
        eof=True,
    ),
    Case(
        "eof-after-streamed-frame-part",
        CLIENT,
        b"* 1 FETCH (BODY[] {5}\r\n01234 UID",
        [
            FramePart(
                b"* 1 FETCH (BODY[] {5}\r\n",
                Frame(b"* 1 FETCH (BODY[] {5}\r\n", (span(18, 23, 5, streamed=True),)),
                span(18, 23, 5, streamed=True),
                True,
            ),
            ("chunk", b"01234", 0),
            EndOfStream(partial=True),
        ],
        options={"inline_literal": 4},
        eof=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_as_read(case: Case) -> None:
    framer = Framer(case.role, **case.options)
    events = feed(framer, case.chunks, decisions=case.decisions, eof=case.eof)
    assert events == case.expected


@pytest.mark.parametrize("case", [c for c in CASES if c.split_invariant], ids=lambda c: c.id)
def test_table_one_octet_at_a_time(case: Case) -> None:
    framer = Framer(case.role, **case.options)
    events = feed(framer, octets(case.stream), decisions=case.decisions, eof=case.eof)
    assert merge_chunks(events) == merge_chunks(case.expected)


def test_table_covers_every_event_type() -> None:
    kinds = {
        type(e).__name__ if not isinstance(e, tuple) else e[0] for c in CASES for e in c.expected
    }
    assert kinds == {
        "Frame",
        "FramePart",
        "chunk",
        "continue",
        "bad",
        "fatal",
        "EndOfStream",
    }


# -- continuation requests ---------------------------------------------------------


def test_continuation_preview_parses_to_append_target() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b'a7 APPEND "Sent Items" (\\Seen) {310}\r\n')
    event = framer.next_event()
    assert isinstance(event, ContinuationRequest)
    command = Command.parse(event.frame)
    assert (command.tag, command.name) == (b"a7", "APPEND")
    args = command.args
    assert isinstance(args, AppendArgs)
    assert args.mailbox == Mailbox(b"Sent Items")
    assert len(args.messages) == 1
    message = args.messages[0]
    assert message.flags == (b"\\Seen",)
    assert message.data is not None
    assert (message.data.size, message.data.streamed) == (310, True)
    assert event.literal == span(31, 38, 310, streamed=True)
    # nothing more happens until a decision is made
    with pytest.raises(RuntimeError, match="accept_literal"):
        framer.next_event()


def test_accept_literal_then_data_arrives_later() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND box {5}\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    framer.accept_literal()
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"hel")
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"lo\r\n")
    assert framer.next_event() == Frame(b"a1 APPEND box {5}\r\nhello\r\n", (span(14, 19, 5),))
    assert framer.next_event() is NEED_DATA


def test_accept_literal_that_streams() -> None:
    framer = Framer(SERVER, inline_literal=4)
    framer.receive_data(b"a1 APPEND box {10}\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    framer.accept_literal()
    part = framer.next_event()
    assert part == FramePart(
        b"a1 APPEND box {10}\r\n",
        Frame(b"a1 APPEND box {10}\r\n", (span(14, 20, 10, streamed=True),)),
        span(14, 20, 10, streamed=True),
        True,
    )
    data = b"0123456789"
    framer.receive_data(data)
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert chunk.data.obj is data
    assert (bytes(chunk.data), chunk.remaining, chunk.last) == (data, 0, True)
    framer.receive_data(b"\r\n")
    last = framer.next_event()
    assert isinstance(last, FramePart)
    assert (last.raw, last.literal, last.first) == (b"\r\n", None, False)


def test_reject_literal_when_client_waited() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND box {5}\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is False
    assert framer.next_event() is NEED_DATA
    assert framer.buffered == 0
    framer.receive_data(b"a2 NOOP\r\n")
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_reject_literal_when_octets_already_buffered_drains_command() -> None:
    # K7: the client sent the literal without waiting; its data looks like a command.
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND box {17}\r\na1 DELETE INBOX\r\n (\\Seen)\r\na2 NOOP\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")
    assert framer.next_event() is NEED_DATA


def test_reject_literal_early_octets_arriving_in_pieces() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND box {17}\r\na1 DEL")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    events = feed(framer, octets(b"ETE INBOX\r\n\r\na2 NOOP\r\n"))
    assert events == [Frame(b"a2 NOOP\r\n")]


@pytest.mark.parametrize("chunking", ["whole", "octets"])
def test_reject_literal_early_drains_further_nonsync_literals(chunking: str) -> None:
    tail = b"hello\r\nZ CLOSE"  # its last octets hold a line end, then a "command"
    stream = (
        b"a1 APPEND box {17}\r\na1 DELETE INBOX\r\n"
        + b" {%d+}\r\n" % len(tail)
        + tail
        + b" {17+}\r\na9 DELETE INBOX\r\n\r\n"
        + b"a2 NOOP\r\n"
    )
    framer = Framer(SERVER)
    framer.receive_data(stream[:40])
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    rest = stream[40:]
    events = feed(framer, [rest] if chunking == "whole" else octets(rest))
    assert events == [Frame(b"a2 NOOP\r\n")]


def test_reject_literal_early_then_sync_literal_in_drained_command() -> None:
    # A client that sent one literal without waiting for "+" (QUIRKS K7) does not
    # wait for the next either: its octets are drained too, whatever they hold.
    framer = Framer(SERVER)
    framer.receive_data(b"a1 LOGIN {3}\r\nbob {16}\r\nz DELETE INBOX\r\n\r\na2 NOOP\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_reject_literal_then_a_later_sync_literal_arriving_alone() -> None:
    # The same client's later literal announcement arriving on its own: still drained,
    # because this command has shown that its client does not wait.
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND x {5}\r\nhello")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    for piece in (b" {16}\r\n", b"z DELETE INBOX\r\n", b"\r\n", b"a2 NOOP\r\n"):
        framer.receive_data(piece)
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_reject_second_literal_of_login() -> None:
    framer = Framer(SERVER)
    events = feed(
        framer,
        [b"a1 LOGIN {3}\r\n", b"bob {4}\r\n", b"a2 NOOP\r\n"],
        decisions=["accept", "reject"],
    )
    assert events[-2:] == [("rejected", False), Frame(b"a2 NOOP\r\n")]
    assert len(events) == 4


def test_decision_without_request_is_an_error() -> None:
    framer = Framer(SERVER)
    with pytest.raises(RuntimeError, match="no continuation request"):
        framer.accept_literal()
    with pytest.raises(RuntimeError, match="no continuation request"):
        framer.reject_literal()


def test_client_role_never_asks_for_continuation() -> None:
    framer = Framer(CLIENT)
    framer.receive_data(b"* 1 FETCH (BODY[] {3}\r\n")
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"abc)\r\n")
    assert framer.next_event() == Frame(b"* 1 FETCH (BODY[] {3}\r\nabc)\r\n", (span(18, 23, 3),))


# -- oversized literals from a client ------------------------------------------------


def test_oversized_sync_literal_early_data_is_drained() -> None:
    framer = Framer(SERVER, max_literal=10)
    framer.receive_data(b"a1 APPEND box {11}\r\na9 DELETE\r\n\r\na2 NOOP\r\n")
    event = framer.next_event()
    assert isinstance(event, BadFrame)
    assert event.error.reply == Reply(
        kind="NO", text="Literal too large", code=b"TOOBIG", tag=b"a1"
    )
    assert event.error.reply.to_bytes() == b"a1 NO [TOOBIG] Literal too large\r\n"
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_oversized_nonsync_literal_drains_announced_octets_in_pieces() -> None:
    framer = Framer(SERVER, max_literal=10)
    events = feed(
        framer,
        [b"a1 APPEND box {11+}\r\n", b"a9 DEL", b"ETE X", b" (\\Seen)\r\n", b"a2 NOOP\r\n"],
    )
    assert events == [
        ("bad", Reply(kind="BAD", text="Literal too large", code=b"TOOBIG", tag=b"a1")),
        Frame(b"a2 NOOP\r\n"),
    ]


def test_oversized_literal_drains_further_nonsync_literal() -> None:
    framer = Framer(SERVER, max_literal=10)
    tail = b"hello\r\nZ CLOSE"
    stream = (
        b"a1 APPEND box {11+}\r\n"
        + b"x" * 11
        + b" {%d+}\r\n" % len(tail)
        + tail
        + b"\r\na2 NOOP\r\n"
    )
    events = feed(framer, [stream])
    assert events == [
        ("bad", Reply(kind="BAD", text="Literal too large", code=b"TOOBIG", tag=b"a1")),
        Frame(b"a2 NOOP\r\n"),
    ]


def test_literal_at_line_start_is_ambiguous() -> None:
    """A line that is only a literal announcement has no tag: no server reads it
    the same way, so the framer stops rather than guess where commands resume."""
    framer = Framer(SERVER, max_literal=1)
    events = feed(framer, [b"{2+}\r\nab\r\na2 NOOP\r\n"])
    assert events == [("fatal", Reply(kind="BYE", text="Ambiguous literal announcement"))]


def test_oversized_literal_in_second_segment_uses_frame_tag() -> None:
    framer = Framer(SERVER, max_literal=5)
    events = feed(framer, [b"t7 LOGIN {3+}\r\nbob {6+}\r\nsecret\r\nt8 NOOP\r\n"])
    assert events == [
        ("bad", Reply(kind="BAD", text="Literal too large", code=b"TOOBIG", tag=b"t7")),
        Frame(b"t8 NOOP\r\n"),
    ]


def test_literal_minus_at_4096_is_accepted() -> None:
    framer = Framer(SERVER, max_nonsync_literal=4096)
    body = b"x" * 4096
    events = feed(framer, [b"a1 APPEND box {4096+}\r\n" + body + b"\r\n"])
    assert len(events) == 1
    frame = events[0]
    assert isinstance(frame, Frame)
    assert frame.literals == (span(14, 23, 4096, sync=False),)
    assert bytes(frame.literal_data(frame.literals[0])) == body


def test_max_literal_boundary_is_inclusive() -> None:
    framer = Framer(SERVER, max_literal=10)
    events = feed(framer, [b"a1 X {10+}\r\n0123456789\r\n"])
    assert events == [Frame(b"a1 X {10+}\r\n0123456789\r\n", (span(5, 12, 10, sync=False),))]


def test_oversized_literal_from_server_kills_framer() -> None:
    framer = Framer(CLIENT, max_literal=10)
    framer.receive_data(b"* 1 FETCH (BODY[] {11+}\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_event()
    assert info.value.reply == Reply(kind="BYE", text="Literal too large: 11 octets")
    assert info.value.reply.closes
    with pytest.raises(RuntimeError, match="dead"):
        framer.next_event()


# -- line caps -----------------------------------------------------------------------


def test_over_long_line_is_fatal_and_framer_dead() -> None:
    framer = Framer(SERVER, max_line=20)
    framer.receive_data(b"a1 " + b"X" * 30)
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_event()
    assert info.value.reply.kind == "BYE"
    assert info.value.reply.to_bytes() == b"* BYE Line too long\r\n"
    with pytest.raises(RuntimeError, match="dead"):
        framer.next_event()


def test_line_cap_detected_before_line_end_arrives() -> None:
    framer = Framer(SERVER, max_line=9)
    framer.receive_data(b"a1 NOOPXX")  # 9 octets, no line end yet: not over the cap
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"\r")
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_event()
    assert info.value.reply.kind == "BYE"


def test_line_cap_counts_all_segments_of_a_frame() -> None:
    # Each segment is short, the frame's line octets together are not.
    segment = b"a1 X {1+}\r\n"  # 11 octets
    ok = Framer(SERVER, max_line=16)
    assert feed(ok, [segment + b"Z123\r\n"]) == [
        Frame(segment + b"Z123\r\n", (span(5, 11, 1, sync=False),))
    ]
    bad = Framer(SERVER, max_line=16)
    assert feed(bad, [segment + b"Z1234\r\n"]) == [_bye("Line too long")]
    # and the count starts again with the next frame
    again = Framer(SERVER, max_line=16)
    assert feed(again, [segment + b"Z123\r\n", b"a2 NOOP 1234\r\n"]) == [
        Frame(segment + b"Z123\r\n", (span(5, 11, 1, sync=False),)),
        Frame(b"a2 NOOP 1234\r\n"),
    ]


def test_line_cap_counts_segments_around_streamed_literal() -> None:
    framer = Framer(CLIENT, max_line=30, inline_literal=2)
    events = feed(framer, [b"* 1 FETCH (BODY[] {3}\r\n", b"abc", b" UID 12345)\r\n"])
    assert events[:2] == [
        FramePart(
            b"* 1 FETCH (BODY[] {3}\r\n",
            Frame(b"* 1 FETCH (BODY[] {3}\r\n", (span(18, 23, 3, streamed=True),)),
            span(18, 23, 3, streamed=True),
            True,
        ),
        ("chunk", b"abc", 0),
    ]
    assert events[2] == _bye("Line too long")


def test_default_caps_by_role() -> None:
    server = Framer(SERVER)
    client = Framer(CLIENT)
    assert (server.max_line, server.max_literal) == (64 * 1024, 256 * 1024 * 1024)
    assert (client.max_line, client.max_literal) == (8 * 1024 * 1024, 4 * 1024**3)


# -- bare LF ---------------------------------------------------------------------------


def test_bare_lf_inside_literal_is_data() -> None:
    framer = Framer(SERVER)
    events = feed(framer, [b"a1 X {3+}\r\na\nb\r\n"])
    assert events == [Frame(b"a1 X {3+}\r\na\nb\r\n", (span(5, 11, 3, sync=False),))]


def test_cr_ending_a_literal_does_not_end_the_line() -> None:
    framer = Framer(SERVER)
    events = feed(framer, [b"a1 X {3+}\r\nab\r\na2 NOOP\r\n"])
    assert events == [
        ("bad", Reply(kind="BAD", text="Line must end with CRLF", tag=b"a1")),
        Frame(b"a2 NOOP\r\n"),
    ]


def test_bare_lf_after_literal_bad_frame_then_resync() -> None:
    framer = Framer(SERVER)
    events = feed(framer, [b"a1 LOGIN {3+}\r\nbob pass\na2 NOOP\r\n"])
    assert events == [
        ("bad", Reply(kind="BAD", text="Line must end with CRLF", tag=b"a1")),
        Frame(b"a2 NOOP\r\n"),
    ]


def test_bare_lf_relaxed_literal_offset() -> None:
    framer = Framer(SERVER, quirk_crlf_relaxed=True)
    events = feed(framer, [b"a1 LOGIN {3+}\nbob pass\n"])
    assert events == [Frame(b"a1 LOGIN {3+}\nbob pass\n", (span(9, 14, 3, sync=False),))]


def test_bare_lf_during_discard_is_swallowed() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 LOGIN {3}\r\nbob pass\na2 NOOP\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


# -- quote balance -------------------------------------------------------------------


def test_unterminated_quote_in_continuation_segment() -> None:
    framer = Framer(SERVER)
    events = feed(framer, [b'a1 LOGIN {3+}\r\nbob "pa {4}\r\na2 NOOP\r\n'])
    assert events == [
        Frame(b'a1 LOGIN {3+}\r\nbob "pa {4}\r\n', (span(9, 15, 3, sync=False),)),
        Frame(b"a2 NOOP\r\n"),
    ]


def test_quote_balance_not_checked_in_responses() -> None:
    framer = Framer(CLIENT)
    events = feed(framer, [b'* 2 FETCH (X "a {3}\r\nabc)\r\n'])
    assert events == [Frame(b'* 2 FETCH (X "a {3}\r\nabc)\r\n', (span(16, 21, 3),))]


# -- streaming -------------------------------------------------------------------------


def test_streamed_literal_chunks_count_down() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {10}\r\n")
    first = framer.next_event()
    assert isinstance(first, FramePart)
    assert first.first is True
    assert first.literal == span(18, 24, 10, streamed=True)
    assert not first.frame.complete
    seen = []
    for piece in (b"012", b"3456", b"789"):
        framer.receive_data(piece)
        chunk = framer.next_event()
        assert isinstance(chunk, LiteralChunk)
        seen.append((bytes(chunk.data), chunk.remaining, chunk.last))
        assert chunk.data.obj is piece  # straight from the read, no copy
    assert seen == [(b"012", 7, False), (b"3456", 3, False), (b"789", 0, True)]
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b")\r\n")
    last = framer.next_event()
    assert last == FramePart(
        b")\r\n",
        Frame(b"* 1 FETCH (BODY[] {10}\r\n)\r\n", (span(18, 24, 10, streamed=True),)),
        None,
        False,
    )


def test_streamed_skeletons_parse() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 3 FETCH (UID 9 BODY[TEXT] {10}\r\n0123456789 FLAGS (\\Seen))\r\n")
    first = framer.next_event()
    assert isinstance(first, FramePart)
    head = Response.parse(first.frame)
    assert (head.name, head.number) == ("FETCH", 3)
    framer.next_event()  # the chunk
    last = framer.next_event()
    assert isinstance(last, FramePart)
    data = Response.parse(last.frame).data
    assert isinstance(data, FetchData)
    assert data.uid == 9
    assert data.flags == (b"\\Seen",)
    body = data.get("BODY[TEXT]")
    assert body is not None
    assert repr(body) == "Literal(literal, 10 octets, streamed)"
    with pytest.raises(ValueError, match="streamed"):
        last.frame.literal_data(last.frame.literals[0])


def test_streamed_command_skeleton_parses() -> None:
    framer = Framer(SERVER, inline_literal=4)
    framer.receive_data(b"a1 APPEND box (\\Seen) {10+}\r\n0123456789\r\n")
    first = framer.next_event()
    assert isinstance(first, FramePart)
    args = Command.parse(first.frame).args
    assert isinstance(args, AppendArgs)
    assert args.mailbox == Mailbox(b"box")
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert (bytes(chunk.data), chunk.remaining) == (b"0123456789", 0)
    last = framer.next_event()
    assert isinstance(last, FramePart)
    assert Command.parse(last.frame).args == args


def test_chunk_data_copied_when_buffered_with_other_bytes() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    data = b"* 1 FETCH (BODY[] {6}\r\nabcdef)\r\n"
    framer.receive_data(data)
    assert isinstance(framer.next_event(), FramePart)
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert bytes(chunk.data) == b"abcdef"
    assert chunk.data.obj is not data


def test_direct_chunk_bounded_by_literal_and_rest_buffered() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {6}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    data = b"abcdef)\r\n* 2 EXISTS\r\n"
    framer.receive_data(data)
    assert framer.buffered == len(data)
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert chunk.data.obj is data
    assert (bytes(chunk.data), chunk.remaining) == (b"abcdef", 0)
    last = framer.next_event()
    assert isinstance(last, FramePart)
    assert last.raw == b")\r\n"
    assert framer.next_event() == Frame(b"* 2 EXISTS\r\n")


def test_bytearray_input_is_copied() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {6}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    data = bytearray(b"abcdef")
    framer.receive_data(data)
    data[:] = b"XXXXXX"
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert bytes(chunk.data) == b"abcdef"


def test_memoryview_input_is_passed_through() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {6}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    backing = b"abcdef)\r\n"
    framer.receive_data(memoryview(backing))
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert chunk.data.obj is backing
    assert bytes(chunk.data) == b"abcdef"


def test_max_inline_total_makes_later_small_literals_stream() -> None:
    framer = Framer(CLIENT, inline_literal=100, max_inline_total=8)
    stream = b"* 1 FETCH (BODY[1] {4}\r\naaaa BODY[2] {4}\r\nbbbb BODY[3] {1}\r\nc)\r\n"
    events = feed(framer, [stream])
    assert [type(e).__name__ if not isinstance(e, tuple) else e[0] for e in events] == [
        "FramePart",
        "chunk",
        "FramePart",
    ]
    first, chunk, last = events
    spans = (span(19, 24, 4), span(37, 42, 4), span(55, 60, 1, streamed=True))
    assert first == FramePart(
        b"* 1 FETCH (BODY[1] {4}\r\naaaa BODY[2] {4}\r\nbbbb BODY[3] {1}\r\n",
        Frame(b"* 1 FETCH (BODY[1] {4}\r\naaaa BODY[2] {4}\r\nbbbb BODY[3] {1}\r\n", spans),
        spans[2],
        True,
    )
    assert chunk == ("chunk", b"c", 0)
    assert isinstance(last, FramePart)
    assert last.frame.literals == spans
    assert last.raw == b")\r\n"
    # and the total resets for the next frame
    again = feed(framer, [b"* 2 FETCH (BODY[1] {4}\r\naaaa BODY[2] {4}\r\nbbbb)\r\n"])
    assert len(again) == 1
    assert isinstance(again[0], Frame)


def test_reject_frame_during_streaming_drains_the_rest() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {10}\r\n01234")
    assert isinstance(framer.next_event(), FramePart)
    chunk = framer.next_event()
    assert isinstance(chunk, LiteralChunk)
    assert chunk.remaining == 5
    framer.reject_frame()
    events = feed(framer, [b"567", b"89 UID 5)\r\n* 2 EXISTS\r\n"])
    assert events == [Frame(b"* 2 EXISTS\r\n")]


def test_reject_frame_drains_later_literal_of_response() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[1] {10}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    framer.reject_frame()
    events = feed(framer, [b"0123456789 BODY[2] {12}\r\na1 OK fake\r\n)\r\n* 2 EXISTS\r\n"])
    assert events == [Frame(b"* 2 EXISTS\r\n")]


def test_reject_frame_right_after_frame_part() -> None:
    framer = Framer(SERVER, inline_literal=4)
    framer.receive_data(b"a1 APPEND box {20+}\r\na9 DELETE INBOX\r\n12\r\na2 NOOP\r\n")
    assert isinstance(framer.next_event(), FramePart)
    framer.reject_frame()
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_reject_frame_with_unread_direct_chunk() -> None:
    framer = Framer(CLIENT, inline_literal=4)
    framer.receive_data(b"* 1 FETCH (BODY[] {10}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    framer.receive_data(b"0123456789")  # held as a direct chunk, not yet delivered
    framer.reject_frame()
    events = feed(framer, [b")\r\n* 2 EXISTS\r\n"])
    assert events == [Frame(b"* 2 EXISTS\r\n")]


def test_response_framing_does_not_depend_on_inline_literal() -> None:
    stream = b"* 1 FETCH (BODY[1] {3}\r\nabc+X BODY[2] {2}\r\nxy)\r\n* 2 EXISTS\r\n"
    inline = feed(Framer(CLIENT), [stream])
    assert inline == [
        Frame(stream[:-12], (span(19, 24, 3), span(38, 43, 2))),
        Frame(b"* 2 EXISTS\r\n"),
    ]
    streamed = feed(Framer(CLIENT, inline_literal=0), [stream])
    relayed = [e.raw if isinstance(e, Frame | FramePart) else e[1] for e in streamed]
    assert relayed == [
        b"* 1 FETCH (BODY[1] {3}\r\n",
        b"abc",
        b"+X BODY[2] {2}\r\n",
        b"xy",
        b")\r\n",
        b"* 2 EXISTS\r\n",
    ]


def test_reject_frame_when_not_streaming() -> None:
    framer = Framer(CLIENT)
    with pytest.raises(RuntimeError, match="no streamed frame"):
        framer.reject_frame()


# -- expect_line, STARTTLS, end of stream ------------------------------------------------


def test_expect_line_reads_announcement_as_text() -> None:
    framer = Framer(SERVER)
    framer.expect_line()
    events = feed(framer, [b"dXNlcgBwYXNz{5}\r\na1 X {3+}\r\nabc\r\n"])
    assert events == [
        Frame(b"dXNlcgBwYXNz{5}\r\n"),
        Frame(b"a1 X {3+}\r\nabc\r\n", (span(5, 11, 3, sync=False),)),
    ]


def test_expect_line_done_after_idle() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 IDLE\r\n")
    assert framer.next_event() == Frame(b"a1 IDLE\r\n")
    framer.expect_line()
    framer.receive_data(b"DONE {1}\r\n")
    assert framer.next_event() == Frame(b"DONE {1}\r\n")


def test_discard_buffered_for_starttls() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 STARTTLS\r\na2 LOGIN bob pass\r\na3 NO")
    assert framer.next_event() == Frame(b"a1 STARTTLS\r\n")
    assert framer.buffered == 24
    assert framer.discard_buffered() == 24
    assert framer.buffered == 0
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"a4 CAPABILITY\r\n")
    assert framer.next_event() == Frame(b"a4 CAPABILITY\r\n")


def test_discard_buffered_in_the_middle_of_a_literal() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 X {10+}\r\nabc")
    assert framer.next_event() is NEED_DATA
    assert framer.discard_buffered() == 15
    framer.receive_data(b"a2 NOOP\r\n")
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


def test_discard_buffered_counts_direct_chunk() -> None:
    framer = Framer(CLIENT, inline_literal=2)
    framer.receive_data(b"* 1 FETCH (BODY[] {5}\r\n")
    assert isinstance(framer.next_event(), FramePart)
    framer.receive_data(b"abcde)\r\n")
    assert framer.discard_buffered() == 8
    framer.receive_data(b"* 2 EXISTS\r\n")
    assert framer.next_event() == Frame(b"* 2 EXISTS\r\n")


def test_end_of_stream_repeats_and_blocks_more_data() -> None:
    framer = Framer(CLIENT)
    framer.receive_eof()
    assert framer.next_event() == EndOfStream(partial=False)
    assert framer.next_event() == EndOfStream(partial=False)
    with pytest.raises(RuntimeError, match="after receive_eof"):
        framer.receive_data(b"* OK\r\n")


def test_end_of_stream_while_waiting_for_rejected_literal() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"a1 APPEND box {5}\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    framer.reject_literal()
    framer.receive_eof()
    assert framer.next_event() == EndOfStream(partial=False)


def test_empty_receive_is_ignored() -> None:
    framer = Framer(SERVER)
    framer.receive_data(b"")
    assert framer.buffered == 0
    assert framer.next_event() is NEED_DATA


# -- Frame helpers -------------------------------------------------------------------


APPEND_PLUS = Frame(
    b"a1 APPEND {3+}\r\nbox ~{4+}\r\npa\x00s\r\n",
    (span(10, 16, 3, sync=False), span(20, 27, 4, sync=False, binary=True)),
)


def test_frame_from_framer_matches_helper_fixture() -> None:
    framer = Framer(SERVER)
    assert feed(framer, [APPEND_PLUS.raw]) == [APPEND_PLUS]


@pytest.mark.parametrize(
    ("tag", "announces"),
    [(b"proxy1", (14, 24)), (b"b", (9, 19)), (b"a9", (10, 20))],
)
def test_with_tag_moves_literals(tag: bytes, announces: tuple[int, int]) -> None:
    frame = APPEND_PLUS.with_tag(tag)
    assert frame.raw == tag + b" APPEND {3+}\r\nbox ~{4+}\r\npa\x00s\r\n"
    assert tuple(lit.announce for lit in frame.literals) == announces
    assert [bytes(frame.literal_data(lit)) for lit in frame.literals] == [b"box", b"pa\x00s"]
    assert frame.raw[frame.literals[0].announce : frame.literals[0].start] == b"{3+}\r\n"
    assert frame.raw[frame.literals[1].announce : frame.literals[1].start] == b"~{4+}\r\n"
    args = Command.parse(frame).args
    assert isinstance(args, AppendArgs)
    assert args.mailbox == Mailbox(b"box")
    (message,) = args.messages
    assert message.data is not None
    assert (message.data.binary, message.data.data) == (True, b"pa\x00s")


def test_with_tag_without_literals_and_without_tag() -> None:
    assert Frame(b"a1 NOOP\r\n").with_tag(b"zz") == Frame(b"zz NOOP\r\n")
    with pytest.raises(ValueError, match="no tag"):
        Frame(b" NOOP\r\n").with_tag(b"x")
    with pytest.raises(ValueError, match="no tag"):
        Frame(b"NOOP\r\n").with_tag(b"x")


def test_to_sync_rewrites_nonsync_announcements() -> None:
    frame = APPEND_PLUS.to_sync()
    assert frame == Frame(
        b"a1 APPEND {3}\r\nbox ~{4}\r\npa\x00s\r\n",
        (span(10, 15, 3), span(19, 25, 4, binary=True)),
    )
    assert [bytes(frame.literal_data(lit)) for lit in frame.literals] == [b"box", b"pa\x00s"]
    assert frame.sync_segments() == [b"a1 APPEND {3}\r\n", b"box ~{4}\r\n", b"pa\x00s\r\n"]
    # the rewritten frame frames the same way
    framer = Framer(SERVER)
    events = feed(framer, [frame.raw])
    assert events[-1] == frame


def test_to_sync_mixed_literals() -> None:
    raw = b"a1 APPEND b {2}\r\nxy {3+}\r\nabc ~{1+}\r\n\x00 {1}\r\nq\r\n"
    framer = Framer(SERVER)
    events = feed(framer, [raw])
    frame = events[-1]
    assert isinstance(frame, Frame)
    assert [lit.sync for lit in frame.literals] == [True, False, False, True]
    sync = frame.to_sync()
    assert sync.raw == b"a1 APPEND b {2}\r\nxy {3}\r\nabc ~{1}\r\n\x00 {1}\r\nq\r\n"
    assert all(lit.sync for lit in sync.literals)
    assert [lit.binary for lit in sync.literals] == [False, False, True, False]
    assert [bytes(sync.literal_data(lit)) for lit in sync.literals] == [
        b"xy",
        b"abc",
        b"\x00",
        b"q",
    ]
    assert [sync.raw[lit.announce : lit.start] for lit in sync.literals] == [
        b"{2}\r\n",
        b"{3}\r\n",
        b"~{1}\r\n",
        b"{1}\r\n",
    ]
    assert feed(Framer(SERVER), [sync.raw])[-1] == sync


def test_to_sync_of_all_sync_frame_is_identity() -> None:
    frame = Frame(b"a1 X {1}\r\nz\r\n", (span(5, 10, 1),))
    assert frame.to_sync() is frame
    plain = Frame(b"a1 NOOP\r\n")
    assert plain.to_sync() is plain


def test_sync_segments() -> None:
    assert Frame(b"a1 NOOP\r\n").sync_segments() == [b"a1 NOOP\r\n"]
    assert APPEND_PLUS.sync_segments() == [APPEND_PLUS.raw]
    frame = Frame(
        b"a1 LOGIN {3}\r\nbob {4+}\r\npass\r\n", (span(9, 14, 3), span(18, 24, 4, sync=False))
    )
    assert frame.sync_segments() == [b"a1 LOGIN {3}\r\n", b"bob {4+}\r\npass\r\n"]
    assert b"".join(frame.sync_segments()) == frame.raw


def test_frame_complete_and_literal_data_is_a_view() -> None:
    frame = APPEND_PLUS
    assert frame.complete
    view = frame.literal_data(frame.literals[0])
    assert isinstance(view, memoryview)
    assert view.obj is frame.raw
    skeleton = Frame(b"a1 X {3}\r\n\r\n", (span(5, 10, 3, streamed=True),))
    assert not skeleton.complete
    assert skeleton.literals[0].stop == 10
    assert frame.literals[0].stop == 19


# -- unchanged frames relay byte for byte ------------------------------------------------


def relay_bytes(role: Role, chunks: Iterable[bytes], **options: Any) -> bytes:
    framer = Framer(role, **options)
    out: list[bytes] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            event = framer.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ContinuationRequest):
                framer.accept_literal()
            elif isinstance(event, Frame | FramePart):
                out.append(event.raw)
            elif isinstance(event, LiteralChunk):
                out.append(bytes(event.data))
            else:
                raise AssertionError(f"unexpected event {event!r}")
    assert framer.buffered == 0
    return b"".join(out)


def lit(data: bytes, *, plus: bool = False, binary: bool = False) -> bytes:
    """A literal announcement and its data, counted for us."""
    return b"%s{%d%s}\r\n%s" % (b"~" if binary else b"", len(data), b"+" if plus else b"", data)


MESSAGE = b"Subject: x\r\n\r\nbody line one\r\n.\r\na9 DELETE INBOX\r\n\r\n"

COMMAND_STREAM = b"".join(
    [
        b"a1 CAPABILITY\r\n",
        b"a2 LOGIN " + lit(b"bob") + b" " + lit(b'p"a ss\r\n', plus=True) + b"\r\n",
        b'a3 SELECT "INBOX" (CONDSTORE)\r\n',
        b'a4 APPEND Drafts (\\Seen \\Draft) " 1-Feb-2024 10:00:00 +0100" ' + lit(MESSAGE) + b"\r\n",
        b"a5 APPEND Sent "
        + lit(b"hello", plus=True)
        + b" "
        + lit(b"a\x00b", plus=True, binary=True)
        + b" UTF8 ("
        + lit(b"\xe2\x82\xac\x00\r\n", binary=True)
        + b")\r\n",
        b"a6 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100> FLAGS)\r\n",
        b'a7 LOGIN "x{3}" ' + lit(b"") + b"\r\n",
        b"a8 LOGOUT\r\n",
    ]
)

RESPONSE_STREAM = b"".join(
    [
        b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
        b"+ go ahead {5}\r\n",
        b'* LIST (\\HasNoChildren) "/" ' + lit(b'A "b"\\c') + b"\r\n",
        b"* 12 FETCH (UID 40 RFC822.SIZE 300 BODY[] " + lit(MESSAGE * 3) + b")\r\n",
        b"* 13 FETCH (BODY[1] "
        + lit(b"abc")
        + b" BODY[2] "
        + lit(b"0123456789" * 2)
        + b" BINARY[3] "
        + lit(b"\x00\x01", binary=True)
        + b")\r\n",
        b'* 14 FETCH (ENVELOPE ("d" "s \\"q\\"" NIL NIL NIL NIL NIL NIL NIL "<a"b@x>"))\r\n',
        b"* OK text ending " + lit(b"!") + b"\r\n",
        b"a1 OK done\r\n",
    ]
)


def test_literal_helper() -> None:
    assert lit(b"abc") == b"{3}\r\nabc"
    assert lit(b"", plus=True, binary=True) == b"~{0+}\r\n"


@pytest.mark.parametrize("chunking", ["whole", "octets", "sevens"])
@pytest.mark.parametrize("inline", [64 * 1024, 16, 0])
def test_commands_relay_unchanged(chunking: str, inline: int) -> None:
    chunks = {
        "whole": [COMMAND_STREAM],
        "octets": octets(COMMAND_STREAM),
        "sevens": [COMMAND_STREAM[i : i + 7] for i in range(0, len(COMMAND_STREAM), 7)],
    }[chunking]
    assert relay_bytes(SERVER, chunks, inline_literal=inline) == COMMAND_STREAM


@pytest.mark.parametrize("chunking", ["whole", "octets", "sevens"])
@pytest.mark.parametrize("inline", [64 * 1024, 16, 0])
def test_responses_relay_unchanged(chunking: str, inline: int) -> None:
    chunks = {
        "whole": [RESPONSE_STREAM],
        "octets": octets(RESPONSE_STREAM),
        "sevens": [RESPONSE_STREAM[i : i + 7] for i in range(0, len(RESPONSE_STREAM), 7)],
    }[chunking]
    assert relay_bytes(CLIENT, chunks, inline_literal=inline) == RESPONSE_STREAM


def test_command_stream_frames_and_parses() -> None:
    framer = Framer(SERVER)
    events = feed(framer, [COMMAND_STREAM])
    frames = [e for e in events if isinstance(e, Frame)]
    assert [Command.parse(f).name for f in frames] == [
        "CAPABILITY",
        "LOGIN",
        "SELECT",
        "APPEND",
        "APPEND",
        "UID FETCH",
        "LOGIN",
        "LOGOUT",
    ]
    assert sum(isinstance(e, tuple) and e[0] == "continue" for e in events) == 4
    login = Command.parse(frames[1]).args
    assert login == LoginArgs(b"bob", Secret(b'p"a ss\r\n'))
    multi = Command.parse(frames[4]).args
    assert isinstance(multi, AppendArgs)
    assert [(m.utf8, m.data.data if m.data else None) for m in multi.messages] == [
        (False, b"hello"),
        (False, b"a\x00b"),
        (True, b"\xe2\x82\xac\x00\r\n"),
    ]
    quoted_login = Command.parse(frames[6]).args
    assert quoted_login == LoginArgs(b"x{3}", Secret(b""))


def test_response_stream_frames_and_parses() -> None:
    framer = Framer(CLIENT)
    events = feed(framer, [RESPONSE_STREAM])
    assert all(isinstance(e, Frame) for e in events)
    heads = [Response.parse(e) for e in events]
    assert [(r.kind.value, r.name, r.number) for r in heads] == [
        ("untagged", "OK", None),
        ("continuation", "", None),
        ("untagged", "LIST", None),
        ("untagged", "FETCH", 12),
        ("untagged", "FETCH", 13),
        ("untagged", "FETCH", 14),
        ("untagged", "OK", None),
        ("tagged", "OK", None),
    ]
    assert events[1].literals == ()
    assert len(events[6].literals) == 1
