"""Hostile and odd input: smuggling shapes, resource caps, quirk accounting.

Each test pins a way a client or server could make the proxy and the upstream read
the byte stream differently, or make the codec work too hard, and the codec's
answer to it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from imapproxy.wire import (
    NEED_DATA,
    BadFrame,
    Command,
    ContinuationRequest,
    Frame,
    FramePart,
    Framer,
    LiteralChunk,
    Mailbox,
    ParseError,
    RemoteProtocolError,
    Response,
    Role,
    Section,
)
from imapproxy.wire.bodystructure import Envelope
from imapproxy.wire.build import build_response
from imapproxy.wire.commands import AppendArgs, FetchArgs, SearchArgs
from imapproxy.wire.errors import LocalProtocolError
from imapproxy.wire.reader import Atom, Reader
from imapproxy.wire.responses import Condition, EsearchData, FlagsData
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import FetchItem, SequenceSet

SMUGGLED = b"z DELETE INBOX\r\n"


def events(role: Role, data: bytes, **options: Any) -> list[Any]:
    """Every event for ``data`` fed at once; continuations accepted."""
    framer = Framer(role, **options)
    framer.receive_data(data)
    out: list[Any] = []
    while (event := framer.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, ContinuationRequest):
            framer.accept_literal()
    return out


def command_frames(data: bytes, **options: Any) -> list[bytes]:
    return [e.raw for e in events(Role.SERVER, data, **options) if isinstance(e, Frame)]


# -- literal data is never read as a command -----------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"a SEARCH TEXT ~{16+}\r\n" + SMUGGLED + b"\r\n",
        b"a LOGIN bob ~{16+}\r\n" + SMUGGLED + b"\r\n",
        b"a SELECT ~{16+}\r\n" + SMUGGLED + b"\r\n",
        b"a RENAME x ~{16+}\r\n" + SMUGGLED + b"\r\n",
        b"a APPEND x CATENATE (TEXT ~{16+}\r\n" + SMUGGLED + b")\r\n",
        b"a XFOO ~{16+}\r\n" + SMUGGLED + b"\r\n",
    ],
)
def test_literal8_outside_message_data_is_refused(wire: bytes) -> None:
    """Servers refuse ``~{n}`` where the grammar has no literal8 and then read
    its data as commands (RFC 3516); the codec refuses the command instead."""
    (frame,) = command_frames(wire)
    assert SMUGGLED in frame  # the data stayed inside the frame
    with pytest.raises(ParseError, match="literal8 not allowed"):
        _ = Command.parse(Frame(frame, events(Role.SERVER, wire)[-1].literals)).args


def test_literal8_is_accepted_for_message_data() -> None:
    (event,) = events(Role.SERVER, b"a APPEND x ~{3+}\r\na\x00b UTF8 (~{2+}\r\nxy)\r\n")
    args = Command.parse(event).args
    assert isinstance(args, AppendArgs)
    assert [(m.data.binary, m.data.data, m.utf8) for m in args.messages if m.data] == [
        (True, b"a\x00b", False),
        (True, b"xy", True),
    ]


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (b"a APPEND INBOX {16+}\n" + SMUGGLED + b"\r\na2 NOOP\r\n", "BAD"),
        (b"a APPEND INBOX {16}\n" + SMUGGLED + b"\r\na2 NOOP\r\n", "BAD"),
    ],
)
def test_bare_lf_after_a_literal_announcement(wire: bytes, kind: str) -> None:
    """A command ending in a bare LF is refused, and the literal it announced is
    handled as refused: drained (non-sync, or sync sent without waiting)."""
    out = events(Role.SERVER, wire)
    assert isinstance(out[0], BadFrame)
    assert out[0].error.reply.kind == kind
    assert out[0].error.reply.tag == b"a"
    assert [e.raw for e in out[1:]] == [b"a2 NOOP\r\n"]


def test_bare_lf_sync_literal_from_a_waiting_client_resumes_at_next_command() -> None:
    framer = Framer(Role.SERVER)
    framer.receive_data(b"a APPEND INBOX {16}\n")
    assert isinstance(framer.next_event(), BadFrame)
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"a2 NOOP\r\n")
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


@pytest.mark.parametrize(
    "wire",
    [
        b"a SELECT INBOX{16+}\r\n" + SMUGGLED,
        b"a LOGIN bob pass{3}\r\n",
        b"{16+}\r\n" + SMUGGLED,
        b'a LOGIN "bob"{3}\r\n',
    ],
)
def test_announcement_glued_to_a_token_is_fatal(wire: bytes) -> None:
    """``x{n}`` is read by servers as a bad atom followed by commands; the codec
    cannot know what the client meant, so it stops instead of guessing."""
    with pytest.raises(RemoteProtocolError) as excinfo:
        events(Role.SERVER, wire)
    assert excinfo.value.reply.kind == "BYE"


def test_zero_padded_announcement_is_a_literal() -> None:
    """Servers accept leading zeros in a literal's length (Dovecot does)."""
    wire = b"a SELECT {" + b"0" * 40 + b"5+}\r\nINBOX\r\n"
    (frame,) = events(Role.SERVER, wire)
    assert Command.parse(frame).args.mailbox == Mailbox(b"INBOX")  # type: ignore[union-attr]


def test_announcement_with_too_many_digits_is_fatal() -> None:
    with pytest.raises(RemoteProtocolError, match="too many digits"):
        events(Role.SERVER, b"a SELECT {" + b"0" * 200 + b"5}\r\n")


def test_response_literal_may_follow_any_token() -> None:
    """From servers the announcement is trusted wherever it is (QUIRKS F9)."""
    (frame,) = events(Role.CLIENT, b"* OK text{3}\r\nabc\r\n")
    assert frame.literals[0].size == 3


# -- resource caps ----------------------------------------------------------------------


def test_bracket_nesting_is_capped() -> None:
    with pytest.raises(ParseError, match="Nesting too deep"):
        _ = Command.parse(Frame(b"a XFOO " + b"[" * 400 + b"\r\n")).args
    with pytest.raises(ParseError, match="Nesting too deep"):
        _ = Response.parse(Frame(b"* 1 FETCH (X " + b"[" * 400 + b")\r\n")).data


def test_many_odd_quotes_are_read_in_one_pass() -> None:
    """QUIRKS F8 probing remembers a failed probe: every quote after it fails too."""
    line = b"* XFOO (" + b'"a"() ' * 3000 + b")\r\n"
    data = Response.parse(Frame(line)).data
    assert len(data.values[0]) == 6000  # type: ignore[union-attr, arg-type]


def test_too_many_literals_in_one_command() -> None:
    wire = b"a APPEND x" + b" {1+}\r\nm" * 5 + b"\r\na2 NOOP\r\n"
    out = events(Role.SERVER, wire, max_literals=3)
    assert isinstance(out[0], BadFrame)
    assert out[0].error.reply.code == b"LIMIT"
    assert [e.raw for e in out[1:]] == [b"a2 NOOP\r\n"]


def test_too_many_literals_from_a_server_is_fatal() -> None:
    with pytest.raises(RemoteProtocolError):
        events(Role.CLIENT, b"* XFOO" + b" {1}\r\nm" * 5 + b"\r\n", max_literals=3)


def test_many_streamed_parts_keep_every_part() -> None:
    """After max_inline_total every literal streams; skeletons are joined lazily."""
    wire = b"a APPEND x" + b" {2+}\r\nmm" * 200 + b"\r\n"
    out = events(Role.SERVER, wire, max_inline_total=0)
    parts = [e for e in out if isinstance(e, FramePart)]
    chunks = [e for e in out if isinstance(e, LiteralChunk)]
    assert len(parts) == 201
    assert len(chunks) == 200
    # each part's skeleton is its own, though built after later parts arrived
    assert parts[0].frame.raw == b"a APPEND x {2+}\r\n"
    assert len(parts[0].frame.literals) == 1
    assert parts[1].frame.raw == b"a APPEND x {2+}\r\n {2+}\r\n"
    args = Command.parse(parts[-1].frame).args
    assert isinstance(args, AppendArgs)
    assert len(args.messages) == 200
    assert all(m.data is not None and m.data.streamed for m in args.messages)


def test_refusal_after_streamed_parts_is_marked_partial() -> None:
    """The upstream leg has relayed part 1 already: BadFrame says so."""
    wire = b"a APPEND x {5+}\r\nhello {9+}\r\n123456789\r\na2 NOOP\r\n"
    out = events(Role.SERVER, wire, inline_literal=1, max_literal=8)
    bad = next(e for e in out if isinstance(e, BadFrame))
    assert bad.partial
    assert bad.error.reply.tag == b"a"
    assert out[-1] == Frame(b"a2 NOOP\r\n")
    (fresh,) = events(Role.SERVER, b"a APPEND x {9+}\r\n123456789\r\n", max_literal=8)
    assert not fresh.partial


# -- framer helpers for the relay ---------------------------------------------------


def test_frame_part_with_tag_and_to_sync() -> None:
    wire = b"a1 APPEND x (\\Seen) {5+}\r\nhello\r\n"
    first, chunk, last = events(Role.SERVER, wire, inline_literal=1)
    assert isinstance(first, FramePart)
    assert isinstance(chunk, LiteralChunk)
    assert isinstance(last, FramePart)
    tagged = first.with_tag(b"p99")
    assert tagged.raw == b"p99 APPEND x (\\Seen) {5+}\r\n"
    assert tagged.literal is not None
    assert tagged.raw[tagged.literal.announce : tagged.literal.start] == b"{5+}\r\n"
    assert Command.parse(tagged.frame).tag == b"p99"
    synced = tagged.to_sync()
    assert synced.raw == b"p99 APPEND x (\\Seen) {5}\r\n"
    assert synced.literal is not None
    assert synced.literal.sync
    assert synced.literal.start == len(synced.raw)
    tail = last.to_sync()
    assert tail.raw == last.raw  # nothing to rewrite in the tail itself
    assert tail.frame.raw == b"a1 APPEND x (\\Seen) {5}\r\n\r\n"  # but its skeleton agrees
    assert tail.frame.literals[0].sync
    with pytest.raises(ValueError, match="first part"):
        last.with_tag(b"x")


def test_to_sync_with_bare_lf_frames() -> None:
    (frame,) = events(Role.SERVER, b"a LOGIN {3+}\nbob x\n", quirk_crlf_relaxed=True)
    synced = frame.to_sync()
    assert synced.raw == b"a LOGIN {3}\nbob x\n"
    assert bytes(synced.literal_data(synced.literals[0])) == b"bob"


def test_take_buffered_returns_the_unread_bytes() -> None:
    framer = Framer(Role.CLIENT)
    framer.receive_data(b"a1 OK [COMPRESSIONACTIVE] on\r\n\x78\x9c\x01\x02")
    assert framer.next_event() == Frame(b"a1 OK [COMPRESSIONACTIVE] on\r\n")
    assert framer.take_buffered() == b"\x78\x9c\x01\x02"
    assert framer.buffered == 0
    assert framer.next_event() is NEED_DATA


# -- no credentials in reprs ----------------------------------------------------------------


def test_event_reprs_never_show_arguments() -> None:
    framer = Framer(Role.SERVER)
    framer.receive_data(b"a LOGIN bob {11}\r\n")
    request = framer.next_event()
    framer.accept_literal()
    framer.receive_data(b"hunter2-Zq9\r\n")
    frame = framer.next_event()
    framer.expect_line()
    framer.receive_data(b"AGFsaWNlAGh1bnRlcjItWnE5\r\n")
    sasl = framer.next_event()
    for event in (request, frame, sasl):
        text = repr(event)
        assert "hunter2" not in text
        assert "AGFsaWNl" not in text
        assert "bob" not in text
    assert repr(frame) == "Frame(31 octets, 1 literal, 'a LOGIN')"
    assert repr(sasl) == "Frame(26 octets)"
    # a plain line that looks like "tag NAME", and a refused literal's data
    framer.expect_line()
    framer.receive_data(b"bob NOOP\r\n")
    assert repr(framer.next_event()) == "Frame(10 octets)"
    assert repr(Frame(b"bob hunter2\r\n")) == "Frame(13 octets)"
    assert repr(Frame(b"* 3 EXISTS\r\n")) == "Frame(12 octets, '* 3 EXISTS')"


# -- grammar corners -------------------------------------------------------------------------


def test_response_code_with_brackets_inside() -> None:
    """QUIRKS L7 keywords and quoted strings inside a code do not end it."""
    data = Response.parse(
        Frame(b"* OK [PERMANENTFLAGS (\\Seen OIB-Seen-[Gmail]/Sent \\*)] Limited\r\n")
    ).data
    assert isinstance(data, Condition)
    assert data.code is not None
    assert data.code.flags == (b"\\Seen", b"OIB-Seen-[Gmail]/Sent", b"\\*")
    assert data.text == b"Limited"
    data = Response.parse(Frame(b'a NO [BADCHARSET ("a]b" UTF-8)] no\r\n')).data
    assert isinstance(data, Condition)
    assert data.code is not None
    assert data.code.charsets == (b"a]b", b"UTF-8")


def test_text_starting_with_a_bracket_is_not_a_code() -> None:
    data = Response.parse(Frame(b"* OK [not a code\r\n")).data
    assert data == Condition("OK", None, b"[not a code")


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"* ESEARCH (TAG a1) UID COUNT 3\r\n", EsearchData(b"a1", True, (("COUNT", Atom(b"3")),))),
        (
            b'* ESEARCH (TAG "x" MAILBOX "INBOX" UIDVALIDITY 5) UID ALL 1:2\r\n',
            EsearchData(b"x", True, (("ALL", Atom(b"1:2")),), Mailbox(b"INBOX"), 5),
        ),
    ],
)
def test_esearch_correlators(wire: bytes, expected: EsearchData) -> None:
    assert Response.parse(Frame(wire)).data == expected


def test_keywords_fold_ascii_only() -> None:
    """``ME\\xdfAGES`` is not MESSAGES (Unicode would fold the sharp s to SS); in a
    response it is an unknown item, in a command it is refused (8-bit atom)."""
    data = Response.parse(Frame(b"* STATUS x (ME\xdfAGES 1 messages 2)\r\n")).data
    assert data.items == (("ME\xdfAGES", 1), ("MESSAGES", 2))  # type: ignore[union-attr]
    with pytest.raises(ParseError):
        _ = Command.parse(Frame(b"a STATUS x (ME\xdfAGES)\r\n")).args


def test_preview_and_snippet_modifiers() -> None:
    args = Command.parse(Frame(b"a FETCH 1 (UID PREVIEW (LAZY) SNIPPET (FUZZY))\r\n")).args
    assert isinstance(args, FetchArgs)
    assert args.items == (
        FetchItem("UID"),
        FetchItem("PREVIEW", modifiers=(b"LAZY",)),
        FetchItem("SNIPPET", modifiers=(b"FUZZY",)),
    )
    assert bytes(args.items[1]) == b"PREVIEW (LAZY)"
    # FETCH modifiers after a single item are not the item's
    args = Command.parse(Frame(b"a FETCH 1 FLAGS (CHANGEDSINCE 5)\r\n")).args
    assert isinstance(args, FetchArgs)
    assert args.items == (FetchItem("FLAGS"),)
    assert args.changedsince == 5


def test_one_key_in_parentheses_is_that_key() -> None:
    args = Command.parse(Frame(b"a SEARCH (SEEN)\r\n")).args
    assert args == SearchArgs(SearchKey("SEEN"))


def test_header_names_that_need_quotes_keep_them() -> None:
    args = Command.parse(Frame(b'a FETCH 1 BODY.PEEK[HEADER.FIELDS ("X Y" Z "")]\r\n')).args
    assert isinstance(args, FetchArgs)
    (item,) = args.items
    assert item.section == Section(text="HEADER.FIELDS", fields=(b"X Y", b"Z", b""))
    assert bytes(item) == b'BODY.PEEK[HEADER.FIELDS ("X Y" Z "")]'
    plain = FetchItem("BODY", Section(text="HEADER.FIELDS", fields=(b"X", b"Y")))
    assert item.key != plain.key  # ("X Y") is one header name, (X Y) two
    with pytest.raises(LocalProtocolError):
        bytes(Section(text="HEADER.FIELDS", fields=(b"a\r\nb",)))


def test_inbox_prefix_canonical_form() -> None:
    assert Mailbox(b"inbox/Secret").canonical(b"/") == b"INBOX/Secret"
    assert Mailbox(b"Inbox").canonical(b"/") == b"INBOX"
    assert Mailbox(b"inboxes/x").canonical(b"/") == b"inboxes/x"
    assert Mailbox(b"inbox.x").canonical(b"/") == b"inbox.x"
    assert Mailbox(b"inbox.x").canonical(b".") == b"INBOX.x"
    assert Mailbox.from_str("\u0131nbox") != Mailbox(b"INBOX")  # dotless i is not I


def test_sequence_set_iter_stops_at_largest() -> None:
    assert list(SequenceSet.parse(b"5:*").iter(3)) == [3]


# -- quirk accounting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "quirk"),
    [
        (b"* OK [HIGHESTMODSEQ 715]\r\n", "G1"),
        (b"a7 OK\r\n", "G2"),
        (b"* [COPYUID 9 10 233] done\r\n", "G7"),
        (b"[COPYUID 9 10 233]\r\n", "G7"),
        (b"a4 BYE logging out\r\n", "G9"),
        (b"* STATUS INBOX (MESSAGES 0) \r\n", "F4"),
        (b"*  522 EXISTS\r\n", None),  # the head tolerates the SP run without counting
        (b"* FLAGS (\\Seen  $Junk)\r\n", "F3"),
        (b'* 1 FETCH (ENVELOPE (NIL "s" NIL NIL NIL NIL NIL NIL NIL "<a"b@x>"))\r\n', "F8"),
        (b'* ESEARCH (TAG "x") UID ALL 1:3 (MODSEQ 28)\r\n', "E4"),
        (b"* 1 FETCH (RFC822.SIZE -1 UID 3)\r\n", "B8"),
        (b"+\r\n", "F1"),
    ],
)
def test_tolerances_are_counted(wire: bytes, quirk: str | None) -> None:
    quirks: Counter[str] = Counter()
    data = Response.parse(Frame(wire), quirks).data
    assert data is not None
    if quirk is None:
        assert not quirks
    else:
        assert quirks[quirk] >= 1, quirks


def test_strict_input_counts_nothing() -> None:
    quirks: Counter[str] = Counter()
    for wire in (
        b"* OK [UIDVALIDITY 3] UIDs valid\r\n",
        b"* FLAGS (\\Seen $Junk)\r\n",
        b"a1 OK [READ-WRITE] done\r\n",
        b"* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (9))\r\n",
    ):
        assert Response.parse(Frame(wire), quirks).data is not None
    command = Command.parse(Frame(b"a SEARCH (SEEN) UNSEEN\r\n"), quirks)
    assert command.args is not None
    assert not quirks
    assert isinstance(Response.parse(Frame(b"* FLAGS (\\A)\r\n")).data, FlagsData)


# -- second review: more ways to disagree with a server --------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"t1 APPEND Drafts (\\Seen \xe9) {16+}\r\n" + SMUGGLED + b"\r\n",
        b"t1 RENAME a\xe9 {16+}\r\n" + SMUGGLED + b"\r\n",
        b"t1 SEARCH KEYWORD a\xe9 TEXT {16+}\r\n" + SMUGGLED + b"\r\n",
        b"t1 SEARCH HEADER Subject\xe9 x TEXT {16+}\r\n" + SMUGGLED + b"\r\n",
        b"t1 APPEND Dr\xe9fts {16+}\r\n" + SMUGGLED + b"\r\n",
        b"t1 XFOO a\xe9 {16+}\r\n" + SMUGGLED + b"\r\n",
    ],
)
def test_8bit_atoms_in_commands_are_refused(wire: bytes) -> None:
    """Dovecot answers "8bit data in atom" part way through such a command and
    runs the literal's data as a command; the codec refuses the command."""
    (frame,) = events(Role.SERVER, wire)
    with pytest.raises(ParseError):
        _ = Command.parse(frame).args


def test_8bit_in_quoted_strings_of_commands_is_accepted() -> None:
    args = Command.parse(Frame(b'a SELECT "Entw\xc3\xbcrfe"\r\n')).args
    assert args.mailbox == Mailbox("Entwürfe".encode())  # type: ignore[union-attr]


def test_8bit_atoms_in_responses_are_accepted() -> None:
    data = Response.parse(Frame(b'* LIST () "/" Entw\xc3\xbcrfe\r\n')).data
    assert data.mailbox == Mailbox("Entwürfe".encode())  # type: ignore[union-attr]


def test_later_literals_of_a_client_that_did_not_wait_are_drained() -> None:
    """MULTIAPPEND from a client that sends literals without waiting (QUIRKS K7),
    refused at its first literal: the second literal's data is drained too."""
    framer = Framer(Role.SERVER)
    framer.receive_data(b"a APPEND Forbidden {5}\r\nhello {16}\r\n" + SMUGGLED + b"\r\nb NOOP\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    assert framer.reject_literal() is True
    assert framer.next_event() == Frame(b"b NOOP\r\n")
    assert framer.next_event() is NEED_DATA


def test_oversized_early_literal_drains_later_ones_too() -> None:
    wire = b"a APPEND x {9}\r\n123456789 {16}\r\n" + SMUGGLED + b"\r\nb NOOP\r\n"
    out = events(Role.SERVER, wire, max_literal=8)
    assert isinstance(out[0], BadFrame)
    assert out[1:] == [Frame(b"b NOOP\r\n")]


def test_responses_may_carry_many_literals() -> None:
    """An ENVELOPE with 1,100 8-bit display names comes as 1,100 literals."""
    names = b" ".join(b'({6}\r\nJ\xc3\xb6rg1 NIL "u" "example.com")' for _ in range(1100))
    wire = b"* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL (" + names + b") NIL NIL NIL NIL))\r\n"
    (frame,) = events(Role.CLIENT, wire)
    assert len(frame.literals) == 1100
    envelope = Response.parse(frame).data.get("ENVELOPE")  # type: ignore[union-attr]
    assert isinstance(envelope, Envelope)
    assert envelope.to is not None
    assert len(envelope.to) == 1100


def test_a_digit_run_without_brace_is_not_an_announcement() -> None:
    wire = b"a SELECT " + b"1" * 150 + b"}\r\n"
    (frame,) = events(Role.SERVER, wire)
    assert frame.literals == ()
    (frame,) = events(Role.CLIENT, b"* OK " + b"7" * 150 + b"}\r\n")
    assert frame.literals == ()


def test_take_buffered_forgets_the_frame_in_progress() -> None:
    framer = Framer(Role.SERVER, inline_literal=1)
    framer.receive_data(b"a APPEND x {5}\r\n")
    assert isinstance(framer.next_event(), ContinuationRequest)
    framer.accept_literal()  # a FramePart is now queued
    assert framer.take_buffered() == b""
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"b NOOP\r\n")
    assert framer.next_event() == Frame(b"b NOOP\r\n")


def test_header_names_with_line_ends_are_refused() -> None:
    with pytest.raises(ParseError, match="Invalid header name"):
        _ = Command.parse(
            events(Role.SERVER, b"a FETCH 1 BODY[HEADER.FIELDS ({3+}\r\na\r\n)]\r\n")[0]
        ).args


def test_8bit_header_name_from_a_server_still_has_a_key() -> None:
    (frame,) = events(Role.CLIENT, b"* 1 FETCH (BODY[HEADER.FIELDS (X-\xe9)] {0}\r\n UID 7)\r\n")
    data = Response.parse(frame).data
    assert data.uid == 7  # type: ignore[union-attr]
    assert data.items[0][0].key == b'BODY[HEADER.FIELDS ("X-\xe9")]'  # type: ignore[union-attr]


def test_8bit_body_type_can_be_rebuilt() -> None:
    data = Response.parse(
        Frame(b'* 1 FETCH (BODYSTRUCTURE ("t\xe9xt" "plain" NIL NIL NIL "7bit" 3 1))\r\n')
    ).data
    rebuilt = build_response(data)
    assert Response.parse(events(Role.CLIENT, rebuilt.raw)[0]).data == data


def test_quote_probe_failure_is_remembered() -> None:
    """QUIRKS F8 probing: once no closing quote is found from a point, later
    probes from beyond it stop at once (linear time on hostile lines)."""
    reader = Reader(Frame(b'* X "a"b "c"d\r\n'), 4, response=True)
    assert reader.quoted() == b"a"  # no quote followed by a delimiter: plain reading
    assert reader._probe_failed == 7
    assert reader._probe_close(10) == -1
