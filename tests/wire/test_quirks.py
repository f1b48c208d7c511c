"""One row per QUIRKS.md item that is a wire shape the codec sees.

Each row feeds the documented shape (our own illustrative bytes, as in QUIRKS.md)
through the framer of the right role and then the parser, and checks:

* it frames into the expected number of frames, and the frames' raw bytes put
  back together are the input (the relay forwards it unchanged);
* each frame either parses leniently into the documented reading, or fails with
  exactly the documented error (a ``ParseError`` whose reply is a ``BAD``;
  tagged with the command's tag when the command has one).

Test ids are the QUIRKS rows (``G1``, ``B5-alternative``...). Rows about
behaviour rather than wire shapes (G6, C4-C7, B16, I6, A6) are left out. Framing
outcomes that are not a parse (F2 bare LF, K7 unsolicited literal
octets, K10 over-long line, A4/A5 SASL lines) have their own tests, same ids.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from codec_helpers import frames_of, literal, seq

from imapproxy.wire import (
    NEED_DATA,
    Atom,
    BadFrame,
    Command,
    ContinuationRequest,
    FetchItem,
    Frame,
    Framer,
    Literal,
    Mailbox,
    ParseError,
    RemoteProtocolError,
    Response,
    Role,
    Section,
    build_command,
    build_response,
)
from imapproxy.wire.bodystructure import Address, BodyPart, Envelope, Multipart
from imapproxy.wire.commands import (
    AppendArgs,
    AppendMessage,
    CreateArgs,
    FetchArgs,
    IdArgs,
    NoArgs,
    SearchArgs,
    SelectArgs,
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
    Kind,
    ListData,
    MailboxStatus,
    NamespaceData,
    NamespaceDescriptor,
    ResponseCode,
    SearchData,
    VanishedData,
)
from imapproxy.wire.search import SearchKey

S, C = Role.SERVER, Role.CLIENT  # S frames what clients send, C what servers send

# -- helpers ---------------------------------------------------------------------


class Bad:
    """Expected outcome: the frame does not parse; the reply is a BAD."""

    def __repr__(self) -> str:
        return "BAD"


BAD = Bad()
Check = Callable[[Command | Response], None]


def head(role: Role, frame: Frame) -> Command | Response | None:
    """The parsed head of a frame, or None when not even the head parses."""
    try:
        return Command.parse(frame) if role is S else Response.parse(frame)
    except ParseError:
        return None


def parse_fully(role: Role, frame: Frame) -> object:
    parsed = Command.parse(frame) if role is S else Response.parse(frame)
    return parsed.args if isinstance(parsed, Command) else parsed.data


def check_frame(role: Role, frame: Frame, expected: object) -> None:
    if expected is BAD:
        with pytest.raises(ParseError) as excinfo:
            parse_fully(role, frame)
        assert excinfo.value.reply.kind == "BAD"
        parsed = head(role, frame)
        if isinstance(parsed, Command):  # a command with a tag gets a tagged BAD
            assert excinfo.value.reply.tag == parsed.tag
        return
    parsed = Command.parse(frame) if role is S else Response.parse(frame)
    if callable(expected):
        expected(parsed)
    elif isinstance(parsed, Command):
        assert parsed.args == expected
    else:
        assert parsed.data == expected


def fetch_value(parsed: Command | Response) -> object:
    """The value of the only item of a FETCH response."""
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    ((_, value),) = data.items
    return value


def part(
    type_: str, subtype: str, encoding: bytes, size: int, lines: int | None = None, **kw: object
) -> BodyPart:
    return BodyPart(type_, subtype, (), None, None, encoding, size, lines, **kw)  # type: ignore[arg-type]


# -- row checks (named after the row) --------------------------------------------


def g5_zero(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    condition = parsed.condition
    assert condition is not None
    assert condition.code is not None
    assert condition.code.number == 0


def g9_tagged_bye(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    assert (parsed.kind, parsed.tag, parsed.name) == (Kind.TAGGED, b"a4", "BYE")
    assert parsed.data == Condition("BYE", None, b"IMAP4rev1 Server logging out")


def g12_copyuid_untrusted(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    condition = parsed.condition
    assert condition == Condition("OK", ResponseCode("COPYUID", b"14  "), b"x")
    assert condition.code is not None
    with pytest.raises(ParseError):
        _ = condition.code.copyuid


def g12_appenduid_swapped(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    condition = parsed.condition
    assert condition is not None
    assert condition.code is not None
    assert condition.code.appenduid == (7064, seq(b"1"))  # read as sent: not detectable


def c3_literal_space_plus(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert data == CapabilityData(("IMAP4rev1", "LITERAL", "+", "IDLE"))
    assert isinstance(data, CapabilityData)
    assert not data.has("LITERAL+")
    assert data.has("IDLE")


def f3_exists(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    assert (parsed.number, parsed.name, parsed.data) == (522, "EXISTS", CountData(522))


def f9_text_literal(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    assert len(parsed.frame.literals) == 1
    assert parsed.frame.literals[0].size == 1
    assert parsed.data == Condition("OK", None, b"text ending {1}\r\nX")


def f11_long_uid_set(parsed: Command | Response) -> None:
    assert isinstance(parsed, Command)
    args = parsed.args
    assert isinstance(args, FetchArgs)
    assert len(args.sequence_set.ranges) == 8000
    assert args.sequence_set.ranges[-1] == (15999, 15999)


def f12_recent(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    assert (parsed.number, parsed.name, parsed.data) == (2, "RECENT", CountData(2))


def b8_modseq_rectified(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    assert data.modseq == 0


def b12_absent(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    assert data.uid == 5
    assert data.get("RFC822") is None  # absent: unknown, never empty
    assert data.get("BODY[]") is None


def b13_partial_echo(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    value = data.get(b"BODY[TEXT]<0>")
    assert isinstance(value, Literal)
    assert value.data == b"abc"


def b13_header_case(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    requested = FetchItem("BODY", Section((), "HEADER.FIELDS", (b"From", b"To")), peek=True)
    value = data.get(requested.key)
    assert isinstance(value, Literal)
    assert value.data == b"abc"


def b13_rfc822_header(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    value = data.get(FetchItem("RFC822.HEADER").key)
    assert isinstance(value, Literal)
    assert value.data == b"abc"


def b14_any_order(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    assert (data.uid, data.flags) == (7, (b"\\Seen",))
    assert [item.name for item, _ in data.items] == ["FLAGS", "X-GM-THRID", "UID"]


def b15_uid_and_number(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, FetchData)
    assert (parsed.number, data.number, data.uid) == (9, 9, 7)


def l3_raw_kept(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, ListData)
    assert data.mailbox.raw == b"&BBAEMQQyACYEMwQ0BDU-"
    with pytest.raises(ValueError, match="printable ASCII"):
        data.mailbox.decode()


def l6_inbox_response(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, ListData)
    assert (data.mailbox.raw, data.mailbox.is_inbox) == (b"Inbox", True)
    assert data.mailbox == Mailbox(b"INBOX")


def l6_inbox_command(parsed: Command | Response) -> None:
    assert isinstance(parsed, Command)
    args = parsed.args
    assert isinstance(args, SelectArgs)
    assert (args.mailbox.raw, args.mailbox.is_inbox) == (b"inbox", True)


def e3_no_all(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert data == EsearchData(b"A8", True, ())
    assert isinstance(data, EsearchData)
    assert (data.all, data.count) == (None, None)


def e4_parenthesised_modseq(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, EsearchData)
    assert (data.tag, data.uid, data.all, data.modseq) == (b"x", True, seq(b"1:3"), 284535)


def e5_min_zero(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, EsearchData)
    assert (data.tag, data.min, data.count) == (b"d", 0, 1)


def e6_descending(parsed: Command | Response) -> None:
    assert isinstance(parsed, Command)
    args = parsed.args
    assert isinstance(args, FetchArgs)
    assert args.sequence_set.ranges == ((5, 1),)  # as sent
    assert bytes(args.sequence_set.normalised()) == b"1:5"  # what the proxy writes


def a3_base64(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert data == ContinuationData(b"Rm9vbw==")  # text outside AUTHENTICATE
    assert isinstance(data, ContinuationData)
    assert data.sasl_payload() == b"Fooo"  # base64 inside AUTHENTICATE


def a2_empty_challenge(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, ContinuationData)
    assert data.sasl_payload() == b""


def a4_json_challenge(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    data = parsed.data
    assert isinstance(data, ContinuationData)
    assert data.sasl_payload() == b'{"status":"400","schemes":"Bearer"}'


def i7_numbered_vanished(parsed: Command | Response) -> None:
    assert isinstance(parsed, Response)
    assert (parsed.number, parsed.name) == (5, "VANISHED")
    assert parsed.data == VanishedData(False, seq(b"1:3"))


def k1_lower_case(parsed: Command | Response) -> None:
    assert isinstance(parsed, Command)
    assert (parsed.tag, parsed.name) == (b"34", "APPEND")
    assert parsed.args == AppendArgs(
        Mailbox(b"Sent"), (AppendMessage((b"\\Seen",), None, literal(b"abc")),)
    )


# -- the table -------------------------------------------------------------------

ENV = b"(NIL NIL %s NIL NIL NIL NIL NIL NIL NIL)"
A = Address(b"A", None, b"a", b"x.com")
B = Address(b"B", None, b"b", b"x.com")

ROWS = [
    # 1. greetings and status responses
    pytest.param(
        C,
        b"* OK [HIGHESTMODSEQ 715]\r\n",
        [Condition("OK", ResponseCode("HIGHESTMODSEQ", b"715"), b"")],
        id="G1",
    ),
    pytest.param(
        C,
        b"A7 OK\r\n* BYE\r\n",
        [Condition("OK", None, b""), Condition("BYE", None, b"")],
        id="G2",
    ),
    pytest.param(
        C,
        b"* STATUS INBOX (MESSAGES 0) \r\n",
        [MailboxStatus(Mailbox(b"INBOX"), (("MESSAGES", 0),))],
        id="G3",
    ),
    pytest.param(C, b"* STATUS INBOX ()\r\n", [MailboxStatus(Mailbox(b"INBOX"), ())], id="G4"),
    pytest.param(
        C,
        b"* OK [UIDVALIDITY 0]\r\n* OK [UIDNEXT 0]\r\n* OK [UNSEEN 0]\r\n",
        [g5_zero, g5_zero, g5_zero],
        id="G5",
    ),
    pytest.param(
        C,
        b"[COPYUID 9 10 233]\r\n* [COPYUID 9 10 233]\r\n",
        [Condition("OK", ResponseCode("COPYUID", b"9 10 233"), b"")] * 2,
        id="G7",
    ),
    pytest.param(
        C,
        b"1 OK CAPABILITY completed.\r\nCAPABILITY completed.\r\n",
        [Condition("OK", None, b"CAPABILITY completed."), BAD],
        id="G8",
    ),
    pytest.param(C, b"a4 BYE IMAP4rev1 Server logging out\r\n", [g9_tagged_bye], id="G9"),
    pytest.param(
        C,
        b"* BYE Logging out\r\n* BYE Logging out\r\n",
        [Condition("BYE", None, b"Logging out")] * 2,
        id="G10",
    ),
    pytest.param(
        C,
        b"* BAD [ALERT] enable IMAP first\r\n* NO [AUTHENTICATIONFAILED]\r\n",
        [
            Condition("BAD", ResponseCode("ALERT"), b"enable IMAP first"),
            Condition("NO", ResponseCode("AUTHENTICATIONFAILED"), b""),
        ],
        id="G11",
    ),
    pytest.param(C, b"* OK [COPYUID 14  ] x\r\n", [g12_copyuid_untrusted], id="G12-copyuid"),
    pytest.param(C, b"A1 OK [APPENDUID 7064 1] x\r\n", [g12_appenduid_swapped], id="G12-appenduid"),
    pytest.param(
        C,
        b"* OK Coremail System Mail Server Ready(163com[8db7a1b2c3])\r\n",
        [Condition("OK", None, b"Coremail System Mail Server Ready(163com[8db7a1b2c3])")],
        id="G13",
    ),
    # 2. capabilities
    pytest.param(
        C,
        b"* CAPABILITY IMAP4rev1 IDLE\r\nT2 OK LOGIN completed\r\n",
        [CapabilityData(("IMAP4rev1", "IDLE")), Condition("OK", None, b"LOGIN completed")],
        id="C1",
    ),
    pytest.param(
        C, b"* CAPABILITY IMAP4 IMAP4rev1 \r\n", [CapabilityData(("IMAP4", "IMAP4rev1"))], id="C2"
    ),
    pytest.param(C, b"* CAPABILITY IMAP4rev1 LITERAL + IDLE\r\n", [c3_literal_space_plus], id="C3"),
    # 3. literals and framing
    pytest.param(C, b"+\r\n", [ContinuationData(b"")], id="F1"),
    pytest.param(C, b"*  522 EXISTS\r\n", [f3_exists], id="F3-exists"),
    pytest.param(
        C,
        b"* 1 FETCH (FLAGS (\\Seen)  RFC822.HEADER {3}\r\nabc)\r\n",
        [
            FetchData(
                1,
                ((FetchItem("FLAGS"), (b"\\Seen",)), (FetchItem("RFC822.HEADER"), literal(b"abc"))),
            )
        ],
        id="F3-fetch",
    ),
    pytest.param(
        C,
        b'* QUOTA "" (STORAGE 54  111)\r\n',
        [GenericData((b"", (Atom(b"STORAGE"), Atom(b"54"), Atom(b"111"))))],
        id="F3-quota",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (FLAGS (\\Seen ) UID 5 )\r\n* SEARCH 1 \r\n",
        [
            FetchData(1, ((FetchItem("FLAGS"), (b"\\Seen",)), (FetchItem("UID"), 5))),
            SearchData((1,)),
        ],
        id="F4",
    ),
    pytest.param(
        C,
        b'* ESEARCH (TAG "a" ) MIN 1\r\n',
        [EsearchData(b"a", False, (("MIN", Atom(b"1")),))],
        id="F4-esearch-correlator",
    ),
    pytest.param(
        C,
        b"* OK [PERMANENTFLAGS (\\Seen )] x\r\n* STATUS x (MESSAGES 1 )\r\n"
        b"* VANISHED (EARLIER ) 1\r\n* SEARCH 1 (MODSEQ 3 ) \r\n",
        [
            Condition("OK", ResponseCode("PERMANENTFLAGS", b"(\\Seen )"), b"x"),
            MailboxStatus(Mailbox(b"x"), (("MESSAGES", 1),)),
            VanishedData(True, seq(b"1")),
            SearchData((1,), 3),
        ],
        id="F4-before-paren",
    ),
    pytest.param(
        # The literal is trusted: it swallows the tagged response; the deep parse fails.
        C,
        b"* 2 FETCH (BODY[] {20}\r\n0123456789012)\r\na1 OK done\r\n",
        [BAD],
        id="F5",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (BODY[] {5}\r\nabc\r\n)\r\n",
        [FetchData(1, ((FetchItem("BODY", Section()), literal(b"abc\r\n")),))],
        id="F6",
    ),
    pytest.param(C, b"* 1 FETCH (BODY[] {3}\r\n\xc3\xa9ab)\r\n", [BAD], id="F6-characters"),
    pytest.param(
        C,
        b'* 1 FETCH (ENVELOPE ("d" "Cl\xc3\xa9ment" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n',
        [FetchData(1, ((FetchItem("ENVELOPE"), Envelope(b"d", b"Cl\xc3\xa9ment", *[None] * 8)),))],
        id="F7-quoted",
    ),
    pytest.param(
        C,
        b'* LIST () "/" Cl\xe9ment\r\n* OK Caf\xe9\r\n',
        [ListData((), b"/", Mailbox(b"Cl\xe9ment")), Condition("OK", None, b"Caf\xe9")],
        id="F7-atom-and-text",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (ENVELOPE ("d" "s" NIL NIL NIL NIL NIL NIL NIL "<a"b@x>"))\r\n',
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("ENVELOPE"),
                        Envelope(b"d", b"s", None, None, None, None, None, None, None, b'<a"b@x>'),
                    ),
                ),
            )
        ],
        id="F8",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (ENVELOPE (NIL "<a"b@x>" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b"BODY[] {3}\r\nabc)\r\n",
        [
            FetchData(
                1,
                (
                    (FetchItem("ENVELOPE"), Envelope(None, b'<a"b@x>', *[None] * 8)),
                    (FetchItem("BODY", Section()), literal(b"abc")),
                ),
            )
        ],
        id="F8-literal-after-odd-quotes",
    ),
    pytest.param(C, b"* OK text ending {1}\r\nX\r\n", [f9_text_literal], id="F9"),
    pytest.param(
        C,
        b"* 1 FETCH (UID 5 BODY[] {3}\r\nabc)\r\nFLAGS (\\Seen) RFC822.SIZE 3)\r\n",
        [
            FetchData(1, ((FetchItem("UID"), 5), (FetchItem("BODY", Section()), literal(b"abc")))),
            BAD,
        ],
        id="F10",
    ),
    pytest.param(
        S,
        b"a UID FETCH " + b",".join(b"%d" % n for n in range(1, 16000, 2)) + b" (FLAGS)\r\n",
        [f11_long_uid_set],
        id="F11",
    ),
    pytest.param(C, b"* 2 Recent\r\n", [f12_recent], id="F12-recent"),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("text" "plain" NIL NIL NIL "base64" 4 1))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("TEXT", "PLAIN", b"base64", 4, 1)),))],
        id="F12-base64",
    ),
    pytest.param(
        C,
        b'* ESEARCH (TAG "x") min 1 count 2\r\n',
        [EsearchData(b"x", False, (("MIN", Atom(b"1")), ("COUNT", Atom(b"2"))))],
        id="F12-esearch",
    ),
    # 4. FETCH / BODYSTRUCTURE / ENVELOPE
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL NIL 120 3))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("TEXT", "PLAIN", b"", 120, 3)),))],
        id="B1",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("name" NIL) NIL NIL "7BIT" 1 1) '
        b'"mixed" ("boundary" NIL)))\r\n',
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("BODYSTRUCTURE"),
                        Multipart(
                            (
                                BodyPart(
                                    "TEXT", "PLAIN", ((b"name", b""),), None, None, b"7BIT", 1, 1
                                ),
                            ),
                            "MIXED",
                            ((b"boundary", b""),),
                        ),
                    ),
                ),
            )
        ],
        id="B2",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("message" "delivery-status" () NIL NIL "7BIT" 10 NIL '
        b'NIL NIL NIL) ENVELOPE (NIL "s" () NIL NIL NIL NIL NIL NIL NIL))\r\n',
        [
            FetchData(
                1,
                (
                    (FetchItem("BODYSTRUCTURE"), part("MESSAGE", "DELIVERY-STATUS", b"7BIT", 10)),
                    (FetchItem("ENVELOPE"), Envelope(None, b"s", *[None] * 8)),
                ),
            )
        ],
        id="B3",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("message" "rfc822" () NIL NIL "7bit" 23925))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("MESSAGE", "RFC822", b"7bit", 23925)),))],
        id="B4",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE (NIL "alternative" ("boundary" "b") NIL NIL))\r\n',
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("BODYSTRUCTURE"),
                        Multipart((), "ALTERNATIVE", ((b"boundary", b"b"),)),
                    ),
                ),
            )
        ],
        id="B5-nil-type",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("ALTERNATIVE"))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), Multipart((), "ALTERNATIVE")),))],
        id="B5-subtype-only",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("RELATED" NIL ("ATTACHMENT" NIL) NIL))\r\n',
        [
            FetchData(
                1,
                ((FetchItem("BODYSTRUCTURE"), Multipart((), "RELATED", (), (b"ATTACHMENT", ()))),),
            )
        ],
        id="B5-disposition",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE (NIL NIL NIL NIL NIL "7BIT" 0 NIL NIL NIL NIL))\r\n',
        [
            FetchData(
                1, ((FetchItem("BODYSTRUCTURE"), part("APPLICATION", "OCTET-STREAM", b"7BIT", 0)),)
            )
        ],
        id="B6-nil-type",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("X-ZIP" NIL NIL NIL NIL "BASE64" 10 NIL NIL NIL NIL))\r\n',
        [lambda parsed: _mime_type(parsed, "application/octet-stream")],
        id="B6-one-type-string",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" NIL 0))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("TEXT", "PLAIN", b"7BIT", 0, 0)),))],
        id="B7-nil-size",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7bit" 1234 NIL))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("TEXT", "PLAIN", b"7bit", 1234, 0)),))],
        id="B7-nil-lines",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" -1 -1))\r\n',
        [FetchData(1, ((FetchItem("BODYSTRUCTURE"), part("TEXT", "PLAIN", b"7BIT", 0, 0)),))],
        id="B8-negative",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE ("APPLICATION" "PDF" NIL NIL NIL "BASE64" 9.3736e+06))\r\n',
        [
            FetchData(
                1, ((FetchItem("BODYSTRUCTURE"), part("APPLICATION", "PDF", b"BASE64", 9373600)),)
            )
        ],
        id="B8-float",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (MODSEQ (-1))\r\n",
        [b8_modseq_rectified],
        id="B8-modseq",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1 1) '
        b'("TEXT" "HTML" NIL NIL NIL "7BIT" 2 1) "alternative"))\r\n',
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("BODYSTRUCTURE"),
                        Multipart(
                            (
                                part("TEXT", "PLAIN", b"7BIT", 1, 1),
                                part("TEXT", "HTML", b"7BIT", 2, 1),
                            ),
                            "ALTERNATIVE",
                        ),
                    ),
                ),
            )
        ],
        id="B9",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (ENVELOPE " + ENV % b'(("A" NIL "a" "x.com") ("B" NIL "b" "x.com"))' + b")\r\n",
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("ENVELOPE"),
                        Envelope(None, None, (A, B), None, None, None, None, None, None, None),
                    ),
                ),
            )
        ],
        id="B10",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (ENVELOPE "
        + ENV % b'(("A" NIL "a" "x.com") NIL ("B" NIL "b" "x.com"))'
        + b")\r\n",
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("ENVELOPE"),
                        Envelope(None, None, (A, B), None, None, None, None, None, None, None),
                    ),
                ),
            )
        ],
        id="B11-nil-in-list",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (ENVELOPE (("d" "s" NIL NIL NIL NIL NIL NIL NIL "<m>")))\r\n',
        [
            FetchData(
                1,
                (
                    (
                        FetchItem("ENVELOPE"),
                        Envelope(b"d", b"s", None, None, None, None, None, None, None, b"<m>"),
                    ),
                ),
            )
        ],
        id="B11-wrapped",
    ),
    pytest.param(
        C,
        b'* 1 FETCH (ENVELOPE ("d" "s" NIL NIL NIL NIL NIL NIL))\r\n',
        [FetchData(1, ((FetchItem("ENVELOPE"), Envelope(b"d", b"s", *[None] * 8)),))],
        id="B11-missing-fields",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (UID 5)\r\na1 OK FETCH completed\r\n",
        [b12_absent, Condition("OK", None, b"FETCH completed")],
        id="B12-absent",
    ),
    pytest.param(C, b"* 1 FETCH (UID 5 BODY[1])\r\n", [BAD], id="B12-no-value"),
    pytest.param(
        C,
        b"* 1 FETCH (BODY[TEXT]<0.28> {3}\r\nabc)\r\n",
        [b13_partial_echo],
        id="B13-partial",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (BODY[HEADER.FIELDS (FROM TO)] {3}\r\nabc)\r\n",
        [b13_header_case],
        id="B13-header-case",
    ),
    pytest.param(
        C, b"* 1 FETCH (BODY[HEADER] {3}\r\nabc)\r\n", [b13_rfc822_header], id="B13-rfc822-header"
    ),
    pytest.param(
        C, b"* 1 FETCH (FLAGS (\\Seen) X-GM-THRID 5 UID 7)\r\n", [b14_any_order], id="B14-order"
    ),
    pytest.param(
        C,
        b"* 1 FETCH (BODY[1] {1}\r\na BODY[2] {1}\r\nb)\r\n* 1 FETCH (UID 3)\r\n",
        [
            FetchData(
                1,
                (
                    (FetchItem("BODY", Section((1,))), literal(b"a")),
                    (FetchItem("BODY", Section((2,))), literal(b"b")),
                ),
            ),
            FetchData(1, ((FetchItem("UID"), 3),)),
        ],
        id="B14-split",
    ),
    pytest.param(
        C,
        b"* 3 FETCH (FLAGS (\\Seen \\Deleted))\r\n",
        [FetchData(3, ((FetchItem("FLAGS"), (b"\\Seen", b"\\Deleted")),))],
        id="B14-silent",
    ),
    pytest.param(C, b"* 9 FETCH (UID 7 FLAGS ())\r\n", [b15_uid_and_number], id="B15"),
    # 5. LIST, names, flags
    pytest.param(
        C,
        b'* LIST (\\NoInferiors) NIL "INBOX"\r\n* NAMESPACE (("" NIL)) NIL NIL\r\n',
        [
            ListData((b"\\NoInferiors",), None, Mailbox(b"INBOX")),
            NamespaceData((NamespaceDescriptor(b"", None),), None, None),
        ],
        id="L1",
    ),
    pytest.param(
        C,
        b'* LIST () "/" Tab\tName\r\n',
        [ListData((), b"/", Mailbox(b"Tab\tName"))],
        id="L2",
    ),
    pytest.param(
        C,
        b'* LIST () "/" \tName\r\n',
        [ListData((), b"/", Mailbox(b"\tName"))],
        id="L2-leading-control",
    ),
    pytest.param(C, b'* LIST () "/" "&BBAEMQQyACYEMwQ0BDU-"\r\n', [l3_raw_kept], id="L3"),
    pytest.param(
        C,
        b'* LIST () "." "foo"\r\n* LIST () "." "bar"\r\n'
        b'* STATUS "foo" (MESSAGES 1)\r\n* STATUS "bar" (MESSAGES 2)\r\n',
        [
            ListData((), b".", Mailbox(b"foo")),
            ListData((), b".", Mailbox(b"bar")),
            MailboxStatus(Mailbox(b"foo"), (("MESSAGES", 1),)),
            MailboxStatus(Mailbox(b"bar"), (("MESSAGES", 2),)),
        ],
        id="L4",
    ),
    pytest.param(
        C,
        b'* LIST () "." "INBOX.foo.lock"\r\n',
        [ListData((), b".", Mailbox(b"INBOX.foo.lock"))],
        id="L5",
    ),
    pytest.param(C, b'* LIST () "/" "Inbox"\r\n', [l6_inbox_response], id="L6-response"),
    pytest.param(S, b"a SELECT inbox\r\n", [l6_inbox_command], id="L6-command"),
    pytest.param(
        C,
        b"* FLAGS (\\Answered OIB-Seen-[Gmail]/All Mail $Forwarded )\r\n",
        [FlagsData((b"\\Answered", b"OIB-Seen-[Gmail]/All", b"Mail", b"$Forwarded"))],
        id="L7-brackets",
    ),
    pytest.param(
        C,
        b"* FLAGS (\\Answered \\*)\r\n* FLAGS (\\Seen $Forwarded )\r\n* FLAGS (\\MyKeyword)\r\n",
        [
            FlagsData((b"\\Answered", b"\\*")),
            FlagsData((b"\\Seen", b"$Forwarded")),
            FlagsData((b"\\MyKeyword",)),
        ],
        id="L7-flags",
    ),
    pytest.param(
        C,
        b"* 1 FETCH (X-GM-LABELS (NIL))\r\n",
        [FetchData(1, ((FetchItem("X-GM-LABELS"), (None,)),))],
        id="L7-labels",
    ),
    pytest.param(S, b'a CREATE "a/b/"\r\n', [CreateArgs(Mailbox(b"a/b/"))], id="L8"),
    # 6. SEARCH / ESEARCH
    pytest.param(
        C,
        b"* SEARCH 61 62 63 \r\n* SEARCH \r\n",
        [SearchData((61, 62, 63)), SearchData(())],
        id="E1",
    ),
    pytest.param(
        C,
        b"* SEARCH 1 2\r\nA9 OK done\r\n",
        [SearchData((1, 2)), Condition("OK", None, b"done")],
        id="E2",
    ),
    pytest.param(C, b'* ESEARCH (TAG "A8") UID\r\n', [e3_no_all], id="E3"),
    pytest.param(
        S,
        b"A8 UID SEARCH RETURN () UNSEEN\r\n",
        [SearchArgs(SearchKey("UNSEEN"), None, ())],
        id="E3-command",
    ),
    pytest.param(
        C,
        b'* ESEARCH (TAG "x") UID ALL 1:3 (MODSEQ 284535)\r\n',
        [e4_parenthesised_modseq],
        id="E4",
    ),
    pytest.param(C, b'* ESEARCH (TAG "d") MIN 0 COUNT 1\r\n', [e5_min_zero], id="E5"),
    pytest.param(S, b"a UID FETCH 5:1 (FLAGS)\r\n", [e6_descending], id="E6-descending"),
    pytest.param(
        S,
        b'a FETCH 1 BODY[HEADER.FIELDS ("From")]\r\n',
        [FetchArgs(seq(b"1"), (FetchItem("BODY", Section((), "HEADER.FIELDS", (b"From",))),))],
        id="E6-quoted-header",
    ),
    pytest.param(
        S,
        b"a SEARCH CHARSET utf-8 ALL\r\n",
        [SearchArgs(SearchKey("ALL"), b"utf-8")],
        id="E6-charset",
    ),
    pytest.param(
        C,
        b"* SEARCH 2 3\r\n* 28 FETCH (FLAGS (\\Seen))\r\na OK done\r\n",
        [
            SearchData((2, 3)),
            FetchData(28, ((FetchItem("FLAGS"), (b"\\Seen",)),)),
            Condition("OK", None, b"done"),
        ],
        id="E7",
    ),
    # 7. IDLE and untagged updates
    pytest.param(
        C,
        b"* 11 FETCH (UID 7 FLAGS (\\Seen))\r\n+ idling\r\n* 1521 EXISTS\r\n"
        b"+ IDLE accepted, awaiting DONE command.\r\n",
        [
            FetchData(11, ((FetchItem("UID"), 7), (FetchItem("FLAGS"), (b"\\Seen",)))),
            ContinuationData(b"idling"),
            CountData(1521),
            ContinuationData(b"IDLE accepted, awaiting DONE command."),
        ],
        id="I1",
    ),
    pytest.param(
        C,
        b"* 1 RECENT\r\nt OK Idle completed\r\n",
        [CountData(1), Condition("OK", None, b"Idle completed")],
        id="I2",
    ),
    pytest.param(
        C,
        b"+ entering idle mode\r\n+ idling\r\n",
        [ContinuationData(b"entering idle mode"), ContinuationData(b"idling")],
        id="I3",
    ),
    pytest.param(
        C,
        b"* OK Still here\r\n* OK\r\n",
        [Condition("OK", None, b"Still here"), Condition("OK", None, b"")],
        id="I4",
    ),
    pytest.param(
        C,
        b"* 3 FETCH (FLAGS (\\Seen))\r\na OK STORE completed\r\n",
        [
            FetchData(3, ((FetchItem("FLAGS"), (b"\\Seen",)),)),
            Condition("OK", None, b"STORE completed"),
        ],
        id="I5",
    ),
    pytest.param(C, b"* 5 VANISHED 1:3\r\n", [i7_numbered_vanished], id="I7"),
    # 8. authentication
    pytest.param(
        C,
        b"* OK Gimap ready for requests from 192.0.2.1 x\r\n+ \r\n"
        b"* CAPABILITY IMAP4rev1 X-GM-EXT-1\r\n",
        [
            Condition("OK", None, b"Gimap ready for requests from 192.0.2.1 x"),
            ContinuationData(b""),
            CapabilityData(("IMAP4rev1", "X-GM-EXT-1")),
        ],
        id="A1",
    ),
    pytest.param(C, b"+\r\n", [a2_empty_challenge], id="A2"),
    pytest.param(C, b"+ Rm9vbw==\r\n", [a3_base64], id="A3"),
    pytest.param(
        C, b"+ eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=\r\n", [a4_json_challenge], id="A4"
    ),
    # 9. client-side deviations
    pytest.param(S, b'34 append "Sent" (\\Seen) {3}\r\nabc\r\n', [k1_lower_case], id="K1"),
    pytest.param(S, b"a capability\r\n", [NoArgs()], id="K1-capability"),
    pytest.param(S, b"TAG1 IDLE \r\n", [NoArgs()], id="K2"),
    pytest.param(
        S,
        b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 0)\r\n",
        [FetchArgs(seq(b"1:*"), (FetchItem("FLAGS"),), changedsince=0)],
        id="K3",
    ),
    pytest.param(S, b'a SELECT "Folder/"\r\n', [SelectArgs(Mailbox(b"Folder/"))], id="K4"),
    pytest.param(S, b"a CAPABILITY\r\n", [NoArgs()], id="K5"),
    pytest.param(S, b'A0 ID "NIL"\r\nA1 ID ()\r\n', [BAD, IdArgs(())], id="K6"),
    pytest.param(
        S,
        b'a APPEND "Sent" (\\Seen) UTF8 (~{5}\r\nhello)\r\n',
        [
            AppendArgs(
                Mailbox(b"Sent"),
                (AppendMessage((b"\\Seen",), None, literal(b"hello", binary=True), utf8=True),),
            )
        ],
        id="K8",
    ),
    pytest.param(
        S,
        b"a UID fetch -1,6 (FLAGS)\r\nb FETCH -23:7 (FLAGS)\r\nc FETCH 25 (BODY[0])\r\n",
        [BAD, BAD, BAD],
        id="K9",
    ),
    pytest.param(S, b"a IDLE\r\n", [NoArgs()], id="K11"),
    pytest.param(S, b"DONE\r\n", [BAD], id="K12"),
    pytest.param(S, b"a LOGIN user@host pa(ss\r\n", [BAD], id="K13"),
]


def _mime_type(parsed: Command | Response, expected: str) -> None:
    body = fetch_value(parsed)
    assert isinstance(body, BodyPart | Multipart)
    assert body.mime_type == expected


@pytest.mark.parametrize(("role", "wire", "expected"), ROWS)
def test_quirk(role: Role, wire: bytes, expected: list[object]) -> None:
    frames = frames_of(role, wire)
    assert len(frames) == len(expected), frames
    assert b"".join(f.raw for f in frames) == wire  # relayed unchanged
    for frame, outcome in zip(frames, expected, strict=True):
        check_frame(role, frame, outcome)


# -- framing outcomes -----------------------------------------------------------


@pytest.mark.parametrize("quirk", ["F2"])
def test_bare_lf(quirk: str) -> None:
    del quirk
    # Server leg, default: the command is refused with a BAD tagged with its tag.
    framer = Framer(S)
    framer.receive_data(b"a1 NOOP\na2 NOOP\r\n")
    event = framer.next_event()
    assert isinstance(event, BadFrame)
    assert (event.error.reply.kind, event.error.reply.tag) == ("BAD", b"a1")
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")  # still in sync
    # Server leg with quirk_crlf_relaxed: accepted and relayed as sent.
    frames = frames_of(S, b"a1 NOOP\na2 NOOP\r\n", quirk_crlf_relaxed=True)
    assert [f.raw for f in frames] == [b"a1 NOOP\n", b"a2 NOOP\r\n"]
    assert [Command.parse(f).args for f in frames] == [NoArgs(), NoArgs()]
    # Client leg: a server that sends bare LF cannot be framed safely.
    framer = Framer(C)
    framer.receive_data(b"* OK hi\n")
    with pytest.raises(RemoteProtocolError) as excinfo:
        framer.next_event()
    assert excinfo.value.reply.kind == "BYE"


@pytest.mark.parametrize("quirk", ["K7"])
def test_unsolicited_literal_octets(quirk: str) -> None:
    del quirk
    framer = Framer(S)
    framer.receive_data(b"A1 APPEND box {22}\r\n" + b"x" * 22 + b"\r\nA2 NOOP\r\n")
    event = framer.next_event()
    assert isinstance(event, ContinuationRequest)
    args = Command.parse(event.frame).args
    assert isinstance(args, AppendArgs)
    assert args.messages[0].size == 22
    assert framer.reject_literal() is True  # the client did not wait: octets drained
    assert framer.next_event() == Frame(b"A2 NOOP\r\n")  # never run as a command
    assert framer.next_event() is NEED_DATA


@pytest.mark.parametrize("quirk", ["K10"])
def test_over_long_command_line(quirk: str) -> None:
    del quirk
    framer = Framer(S, max_line=1024)
    framer.receive_data(b"a UID FETCH " + b"1," * 600 + b"1 (FLAGS)\r\n")
    with pytest.raises(RemoteProtocolError) as excinfo:
        framer.next_event()
    assert excinfo.value.reply.kind == "BYE"  # the stream cannot be resynchronised


@pytest.mark.parametrize(
    ("quirk", "line"),
    [
        pytest.param("A4", b"\r\n", id="A4-empty-response"),
        pytest.param("A5", b"=\r\n", id="A5-equals"),
        pytest.param("K12", b"DONE\r\n", id="K12-done"),
    ],
)
def test_plain_lines_after_continuation(quirk: str, line: bytes) -> None:
    """SASL responses and DONE are read as plain lines and relayed as sent."""
    del quirk
    framer = Framer(S)
    framer.receive_data(b"a1 AUTHENTICATE XOAUTH2\r\n")
    assert framer.next_event() == Frame(b"a1 AUTHENTICATE XOAUTH2\r\n")
    framer.expect_line()
    framer.receive_data(line + b"a2 NOOP\r\n")
    assert framer.next_event() == Frame(line)
    assert framer.next_event() == Frame(b"a2 NOOP\r\n")


# -- what the proxy writes itself (the "normalise" half of the rows) ------------


@pytest.mark.parametrize("quirk", ["K6"])
def test_id_is_never_written_as_empty_list(quirk: str) -> None:
    del quirk
    assert build_command(b"A0", "ID", IdArgs(())).raw == b"A0 ID NIL\r\n"
    assert build_response(IdData(())).raw == b"* ID NIL\r\n"


@pytest.mark.parametrize("quirk", ["K13"])
def test_no_space_between_body_and_bracket(quirk: str) -> None:
    del quirk
    item = FetchItem("BODY", Section((1,), "MIME"), (0, None))
    frame = build_response(FetchData(3, ((item, b"x"),)))
    assert frame.raw == b"* 3 FETCH (BODY[1.MIME]<0> {1}\r\nx)\r\n"


@pytest.mark.parametrize("quirk", ["G1", "G2", "I4"])
def test_status_lines_are_written_with_text(quirk: str) -> None:
    del quirk
    assert build_response(Condition("OK", None, b""), tag=b"A7").raw == b"A7 OK Done\r\n"
    assert build_response(Condition("OK", ResponseCode("HIGHESTMODSEQ", b"715"), b"")).raw == (
        b"* OK [HIGHESTMODSEQ 715] Done\r\n"
    )
