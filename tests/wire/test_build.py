"""FrameBuilder, build_command, build_response, continuation: strict output.

* The form a value goes out in: atom, quoted string or literal (``{n}``, ``{n+}``
  under LITERAL+ or LITERAL- up to 4096 octets, ``~{n}`` for data with NUL), and
  the literal spans recorded, exactly as a framer would record them.
* Strict output: single SPs, no trailing SP, ``ID NIL`` never ``ID ()`` (QUIRKS K6),
  ``+ `` and text for continuations (QUIRKS F1), text after every status word.
* ``LocalProtocolError`` for values the wire cannot carry.
* Golden outputs of ``build_command`` and ``build_response``; each parses back to
  the value it was built from.
* Relay: the ``raw`` of every frame the framer makes is the input, exactly, for any
  split of the input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from codec_helpers import frames_of, literal, seq

from imapproxy.wire import (
    Atom,
    Command,
    FetchItem,
    Frame,
    FrameBuilder,
    LiteralSpan,
    LocalProtocolError,
    Mailbox,
    Response,
    Role,
    Secret,
    Section,
    build_command,
    build_response,
    continuation,
)
from imapproxy.wire.bodystructure import Address, BodyPart, Envelope, Multipart
from imapproxy.wire.commands import (
    AppendArgs,
    AppendMessage,
    AuthenticateArgs,
    CatenatePart,
    CommandArgs,
    CompressArgs,
    CopyArgs,
    CreateArgs,
    EnableArgs,
    FetchArgs,
    GenericArgs,
    IdArgs,
    ListArgs,
    LoginArgs,
    MailboxArgs,
    NoArgs,
    QresyncParams,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
    UidExpungeArgs,
)
from imapproxy.wire.responses import (
    CapabilityData,
    Condition,
    ContinuationData,
    CountData,
    EsearchData,
    FetchData,
    FlagsData,
    GenericData,
    IdData,
    ListData,
    MailboxStatus,
    NamespaceData,
    NamespaceDescriptor,
    ResponseCode,
    ResponseData,
    SearchData,
    VanishedData,
)
from imapproxy.wire.search import SearchKey

# -- helpers ---------------------------------------------------------------------


def built(write: Callable[[FrameBuilder], object], **options: bool) -> Frame:
    builder = FrameBuilder(**options)
    write(builder)
    return builder.build()


def assert_strict(raw: bytes) -> None:
    """One line per CRLF outside literals, single SPs, no SP before CRLF."""
    assert raw.endswith(b"\r\n")
    assert b" \r\n" not in raw
    assert b"  " not in raw


# -- atom, quoted string or literal -------------------------------------------------

X4096 = b"\r" * 4096
CHOICES = [
    pytest.param("astring", b"INBOX", {}, b"INBOX", (), id="atom"),
    pytest.param("astring", b"a]b", {}, b"a]b", (), id="astring-bracket-atom"),
    pytest.param("astring", b"", {}, b'""', (), id="empty-quoted"),
    pytest.param("astring", b"NIL", {}, b'"NIL"', (), id="NIL-quoted"),
    pytest.param("astring", b"nil", {}, b'"nil"', (), id="nil-quoted"),
    pytest.param("astring", b"a b", {}, b'"a b"', (), id="space-quoted"),
    pytest.param("astring", b"%", {}, b'"%"', (), id="wildcard-quoted"),
    pytest.param("astring", b"a(b", {}, b'"a(b"', (), id="paren-quoted"),
    pytest.param("astring", b"{5}", {}, b'"{5}"', (), id="brace-quoted"),
    pytest.param("astring", b'a"b\\c', {}, b'"a\\"b\\\\c"', (), id="escapes"),
    pytest.param("astring", b"\x7f", {}, b'"\x7f"', (), id="DEL-quoted"),
    pytest.param(
        "astring",
        "Grüße".encode(),
        {},
        b"{7}\r\nGr\xc3\xbc\xc3\x9fe",
        (LiteralSpan(0, 5, 7),),
        id="8-bit-literal",
    ),
    pytest.param(
        "astring", "Grüße".encode(), {"utf8": True}, b'"Gr\xc3\xbc\xc3\x9fe"', (), id="8-bit-utf8"
    ),
    pytest.param(
        "astring",
        b"\xff\xfe",
        {"utf8": True},
        b"{2}\r\n\xff\xfe",
        (LiteralSpan(0, 5, 2),),
        id="invalid-utf8-literal",
    ),
    pytest.param(
        "astring", b"a\r\nb", {}, b"{4}\r\na\r\nb", (LiteralSpan(0, 5, 4),), id="CRLF-literal"
    ),
    pytest.param(
        "string", b"a\nb", {"utf8": True}, b"{3}\r\na\nb", (LiteralSpan(0, 5, 3),), id="LF-literal"
    ),
    pytest.param("string", b"a\rb", {}, b"{3}\r\na\rb", (LiteralSpan(0, 5, 3),), id="CR-literal"),
    pytest.param("string", b"x" * 1024, {}, b'"' + b"x" * 1024 + b'"', (), id="1024-quoted"),
    pytest.param(
        "string",
        b"x" * 1025,
        {},
        b"{1025}\r\n" + b"x" * 1025,
        (LiteralSpan(0, 8, 1025),),
        id="1025-literal",
    ),
    pytest.param(
        "string",
        b"a\r\nb",
        {"literal_plus": True},
        b"{4+}\r\na\r\nb",
        (LiteralSpan(0, 6, 4, sync=False),),
        id="literal-plus",
    ),
    pytest.param(
        "string",
        X4096,
        {"literal_minus": True},
        b"{4096+}\r\n" + X4096,
        (LiteralSpan(0, 9, 4096, sync=False),),
        id="literal-minus-4096",
    ),
    pytest.param(
        "string",
        X4096 + b"\r",
        {"literal_minus": True},
        b"{4097}\r\n" + X4096 + b"\r",
        (LiteralSpan(0, 8, 4097),),
        id="literal-minus-4097",
    ),
    pytest.param(
        "string",
        b"\r" * 4097,
        {"literal_minus": True, "literal_plus": True},
        b"{4097+}\r\n" + b"\r" * 4097,
        (LiteralSpan(0, 9, 4097, sync=False),),
        id="literal-plus-over-4096",
    ),
    pytest.param("string", b"", {}, b'""', (), id="string-empty"),
    pytest.param("nstring", None, {}, b"NIL", (), id="nstring-NIL"),
    pytest.param("nstring", b"NIL", {}, b'"NIL"', (), id="nstring-string-NIL"),
    pytest.param("list_mailbox", b"foo/%", {}, b"foo/%", (), id="list-wildcards"),
    pytest.param("list_mailbox", b"*", {}, b"*", (), id="list-star"),
    pytest.param("list_mailbox", b"", {}, b'""', (), id="list-empty"),
    pytest.param("list_mailbox", b"a b/%", {}, b'"a b/%"', (), id="list-space"),
    pytest.param("atom", b"FLAGS", {}, b"FLAGS", (), id="atom-atom"),
    pytest.param("flag", b"\\Seen", {}, b"\\Seen", (), id="flag-system"),
    pytest.param("flag", b"$Forwarded", {}, b"$Forwarded", (), id="flag-keyword"),
    pytest.param("flag", b"\\*", {}, b"\\*", (), id="flag-star"),
]


@pytest.mark.parametrize(("method", "value", "options", "expected", "spans"), CHOICES)
def test_value_form(
    method: str,
    value: bytes | None,
    options: dict[str, bool],
    expected: bytes,
    spans: tuple[LiteralSpan, ...],
) -> None:
    frame = built(lambda b: getattr(b, method)(value), **options)
    assert frame.raw == expected + b"\r\n"
    assert frame.literals == spans
    for span in spans:
        assert bytes(frame.literal_data(span)) == value


@pytest.mark.parametrize(("method", "value", "options", "expected", "spans"), CHOICES)
def test_value_form_frames_identically(
    method: str,
    value: bytes | None,
    options: dict[str, bool],
    expected: bytes,
    spans: tuple[LiteralSpan, ...],
) -> None:
    """A built command frame is exactly the frame a server-role framer reads."""
    del expected, spans
    frame = built(
        lambda b: getattr(b.tag(b"a").sp().atom(b"X-TEST").sp(), method)(value), **options
    )
    (framed,) = frames_of(Role.SERVER, frame.raw)
    assert framed == frame


def test_literal_plus_frame_to_sync() -> None:
    """A {n+} frame written for a peer without LITERAL+ becomes the {n} frame."""
    args = LoginArgs(b"a\r\nb", Secret(b"p w"))
    plus = build_command(b"a1", "LOGIN", args, literal_plus=True)
    sync = build_command(b"a1", "LOGIN", args)
    assert plus.raw == b'a1 LOGIN {4+}\r\na\r\nb "p w"\r\n'
    assert sync.raw == b'a1 LOGIN {4}\r\na\r\nb "p w"\r\n'
    assert plus.to_sync() == sync
    assert sync.sync_segments() == [b"a1 LOGIN {4}\r\n", b'a\r\nb "p w"\r\n']
    assert plus.sync_segments() == [plus.raw]


def test_paren_and_value() -> None:
    frame = built(lambda b: b.paren([b"a", b"b c"], b.astring).sp().paren([], b.astring))
    assert frame.raw == b'(a "b c") ()\r\n'
    frame = built(lambda b: b.value((Atom(b"A"), b"x y", None, (b"",), literal(b"z\r\n"))))
    assert frame.raw == b'(A "x y" NIL ("") {3}\r\nz\r\n)\r\n'


def test_continuation() -> None:
    assert continuation() == b"+ Ready for literal data\r\n"
    assert continuation(b"") == b"+ \r\n"  # empty SASL challenge: "+ " never bare "+"
    assert continuation(b"idling") == b"+ idling\r\n"
    assert build_response(ContinuationData(b"")).raw == b"+ \r\n"
    assert build_response(ContinuationData(b"dGVzdA==")).raw == b"+ dGVzdA==\r\n"


# -- impossible values ------------------------------------------------------------

IMPOSSIBLE = [
    pytest.param(lambda b: b.raw(b"a\rb"), id="raw-CR"),
    pytest.param(lambda b: b.raw(b"a\nb"), id="raw-LF"),
    pytest.param(lambda b: b.tag(b""), id="tag-empty"),
    pytest.param(lambda b: b.tag(b"*"), id="tag-star"),
    pytest.param(lambda b: b.tag(b"a+"), id="tag-plus"),
    pytest.param(lambda b: b.tag(b"a b"), id="tag-space"),
    pytest.param(lambda b: b.tag(b"a{"), id="tag-brace"),
    pytest.param(lambda b: b.atom(b""), id="atom-empty"),
    pytest.param(lambda b: b.atom(b"a(b"), id="atom-paren"),
    pytest.param(lambda b: b.atom(b"a b"), id="atom-space"),
    pytest.param(lambda b: b.atom(b"a]b"), id="atom-bracket"),
    pytest.param(lambda b: b.atom(b"\xe9"), id="atom-8-bit"),
    pytest.param(lambda b: b.flag(b""), id="flag-empty"),
    pytest.param(lambda b: b.flag(b"a b"), id="flag-space"),
    pytest.param(lambda b: b.flag(b"a]"), id="flag-bracket"),
    pytest.param(lambda b: b.flag(b"\\"), id="flag-backslash-only"),
    pytest.param(lambda b: b.flag(b"\\Seen\\x"), id="flag-two-backslashes"),
    pytest.param(lambda b: b.number(-1), id="number-negative"),
    pytest.param(lambda b: b.quoted(b"a\rb"), id="quoted-CR"),
    pytest.param(lambda b: b.quoted(b"a\x00"), id="quoted-NUL"),
    pytest.param(lambda b: b.quoted("é".encode()), id="quoted-8-bit"),
]


@pytest.mark.parametrize("write", IMPOSSIBLE)
def test_impossible_value(write: Callable[[FrameBuilder], object]) -> None:
    with pytest.raises(LocalProtocolError):
        write(FrameBuilder())


IMPOSSIBLE_FRAMES = [
    pytest.param(lambda: continuation(b"a\r\nb"), id="continuation-CRLF"),
    pytest.param(lambda: build_command(b"a 1", "NOOP", NoArgs()), id="command-bad-tag"),
    pytest.param(lambda: build_command(b"a", "N\r\nX", NoArgs()), id="command-name-CRLF"),
    pytest.param(lambda: build_command(b"a", "NOOP", object()), id="command-unknown-args"),  # type: ignore[arg-type]
    pytest.param(
        lambda: build_command(
            b"a", "APPEND", AppendArgs(Mailbox(b"x"), (AppendMessage(None, None, None),))
        ),
        id="append-without-data",
    ),
    pytest.param(lambda: build_command(b"a", "ENABLE", EnableArgs(("A B",))), id="enable-space"),
    pytest.param(
        lambda: build_command(b"a", "STORE", StoreArgs(seq(b"1"), "+", "FLAGS", False, (b"a b",))),
        id="store-bad-flag",
    ),
    pytest.param(lambda: build_response(Condition("OK", None, b"a\r\nb")), id="text-CRLF"),
    pytest.param(lambda: build_response(CountData(5)), id="count-without-name"),
    pytest.param(lambda: build_response(CountData(-1), name="EXISTS"), id="count-negative"),
    pytest.param(lambda: build_response(GenericData(())), id="generic-without-name"),
    pytest.param(lambda: build_response(GenericData(()), name="X Y"), id="generic-bad-name"),
    pytest.param(lambda: build_response(FlagsData((b"a b",))), id="flags-bad-flag"),
    pytest.param(lambda: build_response(CapabilityData(("A B",))), id="capability-space"),
    pytest.param(lambda: build_response(object()), id="response-unknown-data"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("make", IMPOSSIBLE_FRAMES)
def test_impossible_frame(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


IMPOSSIBLE_VALUES = [
    # NUL needs a literal8, which the grammar has only for message data
    pytest.param(lambda: FrameBuilder().astring(b"a\x00b"), id="astring-NUL"),
    pytest.param(lambda: FrameBuilder().string(b"\x00"), id="string-NUL"),
    # CR/LF smuggled through a generic atom would end the line
    pytest.param(
        lambda: FrameBuilder().value(Atom(b"x\r\nb DELETE INBOX")), id="generic-atom-CRLF"
    ),
    pytest.param(
        lambda: build_command(b"a", "XFOO", GenericArgs((Atom(b"x\nz"),))), id="generic-args-LF"
    ),
    pytest.param(
        lambda: FrameBuilder().atom("é"),
        id="atom-non-ascii-str",
    ),
    pytest.param(
        lambda: build_command(b"a", "NÖÖP", NoArgs()),
        id="command-non-ascii-name",
    ),
    pytest.param(
        lambda: build_command(b"a", "", NoArgs()),
        id="command-empty-name",
    ),
    pytest.param(
        lambda: build_command(b"a", "FOO(", NoArgs()),
        id="command-paren-name",
    ),
    pytest.param(
        lambda: build_response(Condition("OK", None, b"x"), tag=b"a b"),
        id="response-bad-tag",
    ),
    pytest.param(
        lambda: FrameBuilder(utf8=True).quoted(b"\xff"),
        id="quoted-utf8-invalid",
    ),
]


@pytest.mark.parametrize("make", IMPOSSIBLE_VALUES)
def test_impossible_value_is_a_local_protocol_error(make: Callable[[], object]) -> None:
    """Foreign exceptions are translated (STYLE.md): only LocalProtocolError comes out."""
    with pytest.raises(LocalProtocolError):
        make()


# -- build_command golden outputs ----------------------------------------------------

UTC_PLUS_1 = dt.timezone(dt.timedelta(hours=1))
COMMANDS = [
    pytest.param(b"a1", "NOOP", NoArgs(), {}, b"a1 NOOP\r\n", id="NOOP"),
    pytest.param(b"a1", "noop", NoArgs(), {}, b"a1 NOOP\r\n", id="name-upper-cased"),
    pytest.param(
        b"a1",
        "LOGIN",
        LoginArgs(b"alice", Secret(b"p w")),
        {},
        b'a1 LOGIN alice "p w"\r\n',
        id="LOGIN",
    ),
    pytest.param(
        b"a1", "LOGIN", LoginArgs(b"NIL", Secret(b"")), {}, b'a1 LOGIN "NIL" ""\r\n', id="LOGIN-NIL"
    ),
    pytest.param(
        b"a1",
        "AUTHENTICATE",
        AuthenticateArgs("PLAIN"),
        {},
        b"a1 AUTHENTICATE PLAIN\r\n",
        id="AUTH",
    ),
    pytest.param(
        b"a1",
        "AUTHENTICATE",
        AuthenticateArgs("PLAIN", Secret(b"AGFAYgBj")),
        {},
        b"a1 AUTHENTICATE PLAIN AGFAYgBj\r\n",
        id="AUTH-SASL-IR",
    ),
    pytest.param(
        b"a1",
        "AUTHENTICATE",
        AuthenticateArgs("EXTERNAL", Secret(b"")),
        {},
        b"a1 AUTHENTICATE EXTERNAL =\r\n",
        id="AUTH-SASL-IR-empty",
    ),
    pytest.param(
        b"a1",
        "ENABLE",
        EnableArgs(("CONDSTORE", "QRESYNC")),
        {},
        b"a1 ENABLE CONDSTORE QRESYNC\r\n",
        id="ENABLE",
    ),
    pytest.param(b"a1", "ID", IdArgs(None), {}, b"a1 ID NIL\r\n", id="ID-NIL"),
    pytest.param(
        b"a1",
        "ID",
        IdArgs(((b"name", b"imapproxy"), (b"version", None))),
        {},
        b'a1 ID ("name" "imapproxy" "version" NIL)\r\n',
        id="ID",
    ),
    pytest.param(
        b"a1", "COMPRESS", CompressArgs("DEFLATE"), {}, b"a1 COMPRESS DEFLATE\r\n", id="COMPRESS"
    ),
    pytest.param(
        b"a1", "SELECT", SelectArgs(Mailbox(b"a b")), {}, b'a1 SELECT "a b"\r\n', id="SELECT"
    ),
    pytest.param(
        b"a1",
        "SELECT",
        SelectArgs(
            Mailbox(b"INBOX"),
            True,
            QresyncParams(1, 2, seq(b"1:5"), (seq(b"1,3"), seq(b"2,4"))),
        ),
        {},
        b"a1 SELECT INBOX (CONDSTORE QRESYNC (1 2 1:5 (1,3 2,4)))\r\n",
        id="SELECT-QRESYNC",
    ),
    pytest.param(
        b"a1",
        "EXAMINE",
        SelectArgs(Mailbox(b"INBOX"), other=(("X-FOO", Atom(b"1")), ("X-BAR", None))),
        {},
        b"a1 EXAMINE INBOX (X-FOO 1 X-BAR)\r\n",
        id="EXAMINE-other",
    ),
    pytest.param(
        b"a1",
        "CREATE",
        CreateArgs(Mailbox(b"Sent"), (b"\\Sent",)),
        {},
        b"a1 CREATE Sent (USE (\\Sent))\r\n",
        id="CREATE-USE",
    ),
    pytest.param(
        b"a1",
        "DELETE",
        MailboxArgs(Mailbox("Grüße".encode())),
        {"utf8": True},
        b'a1 DELETE "Gr\xc3\xbc\xc3\x9fe"\r\n',
        id="DELETE-utf8",
    ),
    pytest.param(
        b"a1",
        "RENAME",
        RenameArgs(Mailbox(b"a"), Mailbox(b"NIL")),
        {},
        b'a1 RENAME a "NIL"\r\n',
        id="RENAME",
    ),
    pytest.param(
        b"a1", "LIST", ListArgs(Mailbox(b""), (b"%",)), {}, b'a1 LIST "" %\r\n', id="LIST"
    ),
    pytest.param(
        b"a1",
        "LIST",
        ListArgs(Mailbox(b""), (b"INBOX", b"Sent")),
        {},
        b'a1 LIST "" (INBOX Sent)\r\n',
        id="LIST-patterns",
    ),
    pytest.param(
        b"a1",
        "LIST",
        ListArgs(
            Mailbox(b""),
            (b"*",),
            ("SUBSCRIBED",),
            (("STATUS", (Atom(b"MESSAGES"), Atom(b"UNSEEN"))), ("CHILDREN", ())),
        ),
        {},
        b'a1 LIST (SUBSCRIBED) "" (*) RETURN (STATUS (MESSAGES UNSEEN) CHILDREN)\r\n',
        id="LIST-EXTENDED",
    ),
    pytest.param(
        b"a1",
        "LSUB",
        ListArgs(Mailbox(b"#news."), (b"comp.mail.*",)),
        {},
        b"a1 LSUB #news. comp.mail.*\r\n",
        id="LSUB",
    ),
    pytest.param(
        b"a1",
        "STATUS",
        StatusArgs(Mailbox(b"INBOX"), ("MESSAGES", "UIDNEXT")),
        {},
        b"a1 STATUS INBOX (MESSAGES UIDNEXT)\r\n",
        id="STATUS",
    ),
    pytest.param(
        b"a1",
        "APPEND",
        AppendArgs(
            Mailbox(b"Sent"),
            (
                AppendMessage(
                    (b"\\Seen",),
                    dt.datetime(2024, 2, 1, 10, 0, 0, tzinfo=UTC_PLUS_1),
                    literal(b"hello"),
                ),
            ),
        ),
        {"literal_plus": True},
        b'a1 APPEND Sent (\\Seen) "01-Feb-2024 10:00:00 +0100" {5+}\r\nhello\r\n',
        id="APPEND",
    ),
    pytest.param(
        b"a1",
        "APPEND",
        AppendArgs(
            Mailbox(b"Sent"),
            (
                AppendMessage(None, None, literal(b"a")),
                AppendMessage((), None, literal(b"b\x00", binary=True), utf8=True),
                AppendMessage(
                    None,
                    None,
                    None,
                    catenate=(
                        CatenatePart("URL", url=b"/INBOX;UID=2"),
                        CatenatePart("TEXT", text=literal(b"cd")),
                    ),
                ),
            ),
        ),
        {},
        b"a1 APPEND Sent {1}\r\na () UTF8 (~{2}\r\nb\x00) "
        b"CATENATE (URL /INBOX;UID=2 TEXT {2}\r\ncd)\r\n",
        id="APPEND-multi-utf8-catenate",
    ),
    pytest.param(
        b"a1",
        "SEARCH",
        SearchArgs(
            SearchKey(
                "AND",
                (
                    SearchKey("UNSEEN"),
                    SearchKey("SINCE", (dt.date(2024, 2, 1),)),
                    SearchKey(
                        "OR",
                        (
                            SearchKey("FROM", (b"a b",)),
                            SearchKey("NOT", (SearchKey("SEQSET", (seq(b"1:*"),)),)),
                        ),
                    ),
                    SearchKey("AND", (SearchKey("SEEN"), SearchKey("LARGER", (5,)))),
                ),
            ),
            b"UTF-8",
            (("MIN", ()), ("COUNT", ())),
        ),
        {},
        b'a1 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 UNSEEN SINCE 1-Feb-2024 OR FROM "a b" '
        b"NOT 1:* (SEEN LARGER 5)\r\n",
        id="SEARCH",
    ),
    pytest.param(
        b"a1",
        "UID SEARCH",
        SearchArgs(SearchKey("MODSEQ", (b"/flags/\\draft", b"all", 5))),
        {},
        b'a1 UID SEARCH MODSEQ "/flags/\\\\draft" all 5\r\n',
        id="SEARCH-MODSEQ",
    ),
    pytest.param(
        b"a1",
        "UID FETCH",
        FetchArgs(
            seq(b"1:*"),
            (
                FetchItem("FLAGS"),
                FetchItem(
                    "BODY", Section((1, 2), "HEADER.FIELDS", (b"From", b"To")), (0, 100), True
                ),
                FetchItem("BINARY.SIZE", Section((1,))),
            ),
            None,
            5,
            True,
        ),
        {},
        b"a1 UID FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BINARY.SIZE[1]) "
        b"(CHANGEDSINCE 5 VANISHED)\r\n",
        id="FETCH",
    ),
    pytest.param(
        b"a1",
        "FETCH",
        FetchArgs(
            seq(b"1"),
            (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE")),
            "FAST",
        ),
        {},
        b"a1 FETCH 1 FAST\r\n",
        id="FETCH-macro",
    ),
    pytest.param(
        b"a1",
        "STORE",
        StoreArgs(seq(b"1:3"), "+", "FLAGS", True, (b"\\Deleted",), 7),
        {},
        b"a1 STORE 1:3 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Deleted)\r\n",
        id="STORE",
    ),
    pytest.param(
        b"a1",
        "STORE",
        StoreArgs(seq(b"4"), "", "FLAGS", False, ()),
        {},
        b"a1 STORE 4 FLAGS ()\r\n",
        id="STORE-replace",
    ),
    pytest.param(
        b"a1",
        "UID MOVE",
        CopyArgs(seq(b"4,5"), Mailbox(b"Trash")),
        {},
        b"a1 UID MOVE 4,5 Trash\r\n",
        id="UID-MOVE",
    ),
    pytest.param(
        b"a1",
        "COPY",
        CopyArgs(seq(b"2:4"), Mailbox(b"MEETING")),
        {},
        b"a1 COPY 2:4 MEETING\r\n",
        id="COPY",
    ),
    pytest.param(
        b"a1",
        "UID EXPUNGE",
        UidExpungeArgs(seq(b"4:5")),
        {},
        b"a1 UID EXPUNGE 4:5\r\n",
        id="UID-EXPUNGE",
    ),
    pytest.param(
        b"a1",
        "X-FOO",
        GenericArgs((Atom(b"A"), b"", None, (b"x",), literal(b"y\r\n"))),
        {},
        b'a1 X-FOO A "" NIL ("x") {3}\r\ny\r\n\r\n',
        id="generic",
    ),
]


@pytest.mark.parametrize(("tag", "name", "args", "options", "expected"), COMMANDS)
def test_build_command(
    tag: bytes, name: str, args: CommandArgs, options: dict[str, bool], expected: bytes
) -> None:
    frame = build_command(tag, name, args, **options)
    assert frame.raw == expected
    if not frame.literals:
        assert_strict(frame.raw)
    (framed,) = frames_of(Role.SERVER, frame.raw)
    assert framed == frame  # same bytes, same literal spans
    command = Command.parse(framed)
    assert (command.tag, command.name) == (tag, name.upper())
    assert command.args == args  # it parses back to the value it was built from


# -- build_response golden outputs ----------------------------------------------------

ADDR = Address(b"A", None, b"a", b"x.com")
TEXT = BodyPart("TEXT", "PLAIN", ((b"CHARSET", b"US-ASCII"),), None, None, b"7BIT", 3028, 92)
RESPONSES = [
    pytest.param(
        Condition("OK", None, b"LOGIN completed"),
        b"a1",
        None,
        b"a1 OK LOGIN completed\r\n",
        id="tagged-OK",
    ),
    pytest.param(Condition("OK", None, b""), b"a1", None, b"a1 OK Done\r\n", id="empty-text-G2"),
    pytest.param(
        Condition("NO", ResponseCode("TRYCREATE"), b"No such mailbox"),
        b"a1",
        None,
        b"a1 NO [TRYCREATE] No such mailbox\r\n",
        id="tagged-NO-code",
    ),
    pytest.param(
        Condition("OK", ResponseCode("UIDVALIDITY", b"3857529045"), b"UIDs valid"),
        None,
        None,
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        id="untagged-code",
    ),
    pytest.param(
        Condition("OK", ResponseCode("HIGHESTMODSEQ", b"715"), b""),
        None,
        None,
        b"* OK [HIGHESTMODSEQ 715] Done\r\n",
        id="code-no-text-G1",
    ),
    pytest.param(
        Condition("BYE", None, b"Logging out"), None, None, b"* BYE Logging out\r\n", id="BYE"
    ),
    pytest.param(
        Condition("PREAUTH", None, b"Logged in"),
        None,
        None,
        b"* PREAUTH Logged in\r\n",
        id="PREAUTH",
    ),
    pytest.param(
        CapabilityData(("IMAP4rev2", "IDLE")),
        None,
        None,
        b"* CAPABILITY IMAP4rev2 IDLE\r\n",
        id="CAPABILITY",
    ),
    pytest.param(
        CapabilityData(("CONDSTORE",)), None, "ENABLED", b"* ENABLED CONDSTORE\r\n", id="ENABLED"
    ),
    pytest.param(
        ListData((b"\\HasNoChildren",), b"/", Mailbox(b"Sent Items")),
        None,
        None,
        b'* LIST (\\HasNoChildren) "/" "Sent Items"\r\n',
        id="LIST",
    ),
    pytest.param(
        ListData((), None, Mailbox(b"INBOX")), None, None, b"* LIST () NIL INBOX\r\n", id="LIST-NIL"
    ),
    pytest.param(
        ListData((), b"/", Mailbox(b"INBOX"), ((b"OLDNAME", (b"inbox",)),)),
        None,
        "LSUB",
        b'* LSUB () "/" INBOX ("OLDNAME" ("inbox"))\r\n',
        id="LSUB-extended",
    ),
    pytest.param(
        MailboxStatus(Mailbox(b"INBOX"), (("MESSAGES", 3), ("UIDNEXT", 7))),
        None,
        None,
        b"* STATUS INBOX (MESSAGES 3 UIDNEXT 7)\r\n",
        id="STATUS",
    ),
    pytest.param(
        SearchData((2, 3, 6), 917162500),
        None,
        None,
        b"* SEARCH 2 3 6 (MODSEQ 917162500)\r\n",
        id="SEARCH",
    ),
    pytest.param(SearchData(()), None, None, b"* SEARCH\r\n", id="SEARCH-empty-E1"),
    pytest.param(SearchData((1,)), None, "SORT", b"* SORT 1\r\n", id="SORT"),
    pytest.param(
        EsearchData(b"A1", True, (("MIN", Atom(b"2")), ("ALL", Atom(b"2:5")))),
        None,
        None,
        b'* ESEARCH (TAG "A1") UID MIN 2 ALL 2:5\r\n',
        id="ESEARCH",
    ),
    pytest.param(
        FlagsData((b"\\Seen", b"$Forwarded")),
        None,
        None,
        b"* FLAGS (\\Seen $Forwarded)\r\n",
        id="FLAGS",
    ),
    pytest.param(CountData(5), None, "EXISTS", b"* 5 EXISTS\r\n", id="EXISTS"),
    pytest.param(CountData(0), None, "RECENT", b"* 0 RECENT\r\n", id="RECENT"),
    pytest.param(CountData(9), None, "EXPUNGE", b"* 9 EXPUNGE\r\n", id="EXPUNGE"),
    pytest.param(
        VanishedData(True, seq(b"1:3")), None, None, b"* VANISHED (EARLIER) 1:3\r\n", id="VANISHED"
    ),
    pytest.param(IdData(()), None, None, b"* ID NIL\r\n", id="ID-empty-K6"),
    pytest.param(IdData(((b"name", b"x"),)), None, None, b'* ID ("name" "x")\r\n', id="ID"),
    pytest.param(
        NamespaceData(
            (NamespaceDescriptor(b"", b"/"),),
            None,
            (NamespaceDescriptor(b"#shared/", b"/", ((b"X-PARAM", (b"A",)),)),),
        ),
        None,
        None,
        b'* NAMESPACE (("" "/")) NIL (("#shared/" "/" "X-PARAM" ("A")))\r\n',
        id="NAMESPACE",
    ),
    pytest.param(GenericData((Atom(b"1"), b"x")), None, "XFOO", b'* XFOO 1 "x"\r\n', id="generic"),
    pytest.param(
        FetchData(
            12,
            (
                (FetchItem("UID"), 7),
                (FetchItem("FLAGS"), (b"\\Seen",)),
                (FetchItem("MODSEQ"), 5),
                (FetchItem("RFC822.SIZE"), 44),
                (
                    FetchItem("INTERNALDATE"),
                    dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7))),
                ),
                (FetchItem("BODY", Section(), (0, None)), literal(b"abc")),
                (FetchItem("BINARY.SIZE", Section((1,))), 9),
            ),
        ),
        None,
        None,
        b'* 12 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (5) RFC822.SIZE 44 INTERNALDATE "17-Jul-1996 '
        b'02:44:25 -0700" BODY[]<0> {3}\r\nabc BINARY.SIZE[1] 9)\r\n',
        id="FETCH",
    ),
    pytest.param(
        FetchData(
            1,
            (
                (
                    FetchItem("ENVELOPE"),
                    Envelope(b"d", b"s", (ADDR, ADDR), None, None, None, None, None, None, b"<m>"),
                ),
            ),
        ),
        None,
        None,
        b'* 1 FETCH (ENVELOPE ("d" "s" (("A" NIL "a" "x.com")("A" NIL "a" "x.com")) NIL NIL NIL '
        b'NIL NIL NIL "<m>"))\r\n',
        id="FETCH-ENVELOPE",
    ),
    pytest.param(
        FetchData(
            1,
            (
                (FetchItem("BODY"), TEXT),
                (
                    FetchItem("BODYSTRUCTURE"),
                    Multipart((TEXT, TEXT), "ALTERNATIVE", ((b"BOUNDARY", b"x"),)),
                ),
            ),
        ),
        None,
        None,
        b'* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) '
        b'BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL '
        b'NIL NIL)("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL) '
        b'"ALTERNATIVE" ("BOUNDARY" "x") NIL NIL NIL))\r\n',
        id="FETCH-BODYSTRUCTURE",
    ),
]


@pytest.mark.parametrize(("data", "tag", "name", "expected"), RESPONSES)
def test_build_response(
    data: ResponseData, tag: bytes | None, name: str | None, expected: bytes
) -> None:
    frame = build_response(data, tag=tag, name=name)
    assert frame.raw == expected
    if not frame.literals:
        assert_strict(frame.raw)
    (framed,) = frames_of(Role.CLIENT, frame.raw)
    assert framed == frame
    response = Response.parse(framed)
    assert response.tag == tag
    if isinstance(data, Condition) and not data.text:
        # never written without text (QUIRKS G1, G2): "Done" is added
        assert response.data == Condition(data.status, data.code, b"Done")
    elif isinstance(data, IdData) and not data.params:
        assert response.data == IdData(None)  # never written as "()" (QUIRKS K6)
    else:
        assert response.data == data  # parses back to the value


def test_empty_id_is_written_as_nil() -> None:
    """QUIRKS K6: the proxy never writes ``ID ()``; an empty list goes out as ``NIL``."""
    frame = build_command(b"a1", "ID", IdArgs(()))
    assert frame.raw == b"a1 ID NIL\r\n"
    assert Command.parse(frame).args == IdArgs(None)


# -- relay: a frame's raw is its input -------------------------------------------

STREAMS = [
    pytest.param(
        Role.SERVER,
        b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\na2 APPEND box (\\Seen) ~{3}\r\na\x00b\r\n"
        b"a3 SELECT INBOX\r\na4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])\r\n"
        b"a5 X-ODD  extra   spaces \r\nA6 idle \r\n",
        6,
        id="commands",
    ),
    pytest.param(
        Role.CLIENT,
        b"* OK [CAPABILITY IMAP4rev2] ready\r\n+ \r\n+\r\n* 1 FETCH (BODY[] {5}\r\nh\r\n\r\n "
        b"BODY[1] {0}\r\n FLAGS (\\Seen))\r\n*  522 EXISTS\r\n[COPYUID 9 10 233]\r\n"
        b'* LIST () "/" Tab\tName\r\na1 OK\r\n',
        8,
        id="responses",
    ),
]


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 64])
@pytest.mark.parametrize(("role", "wire", "count"), STREAMS)
def test_relay_raw_is_input(role: Role, wire: bytes, count: int, chunk: int | None) -> None:
    frames = frames_of(role, wire, chunk=chunk)
    assert len(frames) == count
    assert b"".join(f.raw for f in frames) == wire
    parse = Command.parse if role is Role.SERVER else Response.parse
    for frame in frames:
        assert parse(frame).frame.raw == frame.raw
