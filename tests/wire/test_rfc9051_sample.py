"""The sample IMAP4rev2 session of RFC 9051 section 8, both directions.

Every client line is framed with a server-role framer and parsed as a command (the
two SASL response lines of the SCRAM exchange are read as plain lines, the way
the session reads them during AUTHENTICATE); every server line is framed with a
client-role framer and parsed as a response. The raw bytes of the frames, put
back together, are the transcript exactly (a byte-for-byte relay), whether the
bytes arrive all at once or one at a time.

The RFC breaks long lines "for editorial clarity"; they are joined here as the
grammar requires (one SP between tokens, no SP after "(", none between the
addresses of an address list). The STARTTLS negotiation splits each direction in
two streams, each with its own framer, as on a real connection. The SCRAM
payloads are those of RFC 7677 section 3; the ENVELOPE message-id is written
as it appears in the section 8 transcript.
"""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from codec_helpers import seq

from imapproxy.wire import (
    NEED_DATA,
    Command,
    EndOfStream,
    FetchItem,
    Frame,
    Framer,
    Literal,
    Mailbox,
    Response,
    Role,
    Secret,
    Section,
)
from imapproxy.wire.bodystructure import Address, BodyPart, Envelope
from imapproxy.wire.commands import (
    AuthenticateArgs,
    EnableArgs,
    FetchArgs,
    NoArgs,
    SelectArgs,
    StoreArgs,
)
from imapproxy.wire.responses import (
    CapabilityData,
    Condition,
    ContinuationData,
    CountData,
    FetchData,
    FlagsData,
    Kind,
    ListData,
    ResponseCode,
)

CLIENT_FIRST = b"biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8="
SERVER_FIRST = (
    b"cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBT"
    b"Tlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY="
)
CLIENT_FINAL = (
    b"Yz1iaXdzLHI9ck9wck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1k"
    b"SHpiWmFwV0lrNGpVaE4rVXRlOXl0YWc5empmTUhnc3FtbWl6N0FuZFZRPQ=="
)
SERVER_FINAL = b"dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ=="

HEADER = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev2 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
)

FULL_FETCH = (
    b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
    b'RFC822.SIZE 4286 ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" '
    b'"IMAP4rev2 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")'
    b'("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
    b'"<B27397-0100000@cac.washington.ed>") '
    b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n'
)

TERRY = Address(b"Terry Gray", None, b"gray", b"cac.washington.edu")
ENVELOPE = Envelope(
    date=b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    subject=b"IMAP4rev2 WG mtg summary and minutes",
    from_=(TERRY,),
    sender=(TERRY,),
    reply_to=(TERRY,),
    to=(Address(None, None, b"imap", b"cac.washington.edu"),),
    cc=(
        Address(None, None, b"minutes", b"CNRI.Reston.VA.US"),
        Address(b"John Klensin", None, b"KLENSIN", b"MIT.EDU"),
    ),
    bcc=None,
    in_reply_to=None,
    message_id=b"<B27397-0100000@cac.washington.ed>",
)


#: A command line: its bytes and the name and arguments it parses to.
C = tuple[bytes, str, object]
#: A SASL response line during AUTHENTICATE: its bytes and the decoded payload.
SASL = tuple[bytes, bytes]
#: A response line: its bytes, kind, tag, number, name and data.
S = tuple[bytes, Kind, bytes | None, int | None, str, object]

#: The transcript in order, split at the TLS negotiation: (plaintext, after TLS).
SESSION: tuple[list[C | SASL | S], list[C | SASL | S]] = (
    [
        (
            b"* OK [CAPABILITY STARTTLS AUTH=SCRAM-SHA-256 LOGINDISABLED IMAP4rev2] "
            b"IMAP4rev2 Service Ready\r\n",
            Kind.UNTAGGED,
            None,
            None,
            "OK",
            Condition(
                "OK",
                ResponseCode("CAPABILITY", b"STARTTLS AUTH=SCRAM-SHA-256 LOGINDISABLED IMAP4rev2"),
                b"IMAP4rev2 Service Ready",
            ),
        ),
        (b"a000 starttls\r\n", "STARTTLS", NoArgs()),
        (
            b"a000 OK Proceed with TLS negotiation\r\n",
            Kind.TAGGED,
            b"a000",
            None,
            "OK",
            Condition("OK", None, b"Proceed with TLS negotiation"),
        ),
    ],
    [
        (
            b"A001 AUTHENTICATE SCRAM-SHA-256 " + CLIENT_FIRST + b"\r\n",
            "AUTHENTICATE",
            AuthenticateArgs("SCRAM-SHA-256", Secret(CLIENT_FIRST)),
        ),
        (
            b"+ " + SERVER_FIRST + b"\r\n",
            Kind.CONTINUATION,
            None,
            None,
            "",
            ContinuationData(SERVER_FIRST),
        ),
        (
            CLIENT_FINAL + b"\r\n",
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        ),
        (
            b"+ " + SERVER_FINAL + b"\r\n",
            Kind.CONTINUATION,
            None,
            None,
            "",
            ContinuationData(SERVER_FINAL),
        ),
        (b"\r\n", b""),
        (
            b"A001 OK SCRAM-SHA-256 authentication successful\r\n",
            Kind.TAGGED,
            b"A001",
            None,
            "OK",
            Condition("OK", None, b"SCRAM-SHA-256 authentication successful"),
        ),
        (b"babc ENABLE IMAP4rev2\r\n", "ENABLE", EnableArgs(("IMAP4rev2",))),
        (
            b"* ENABLED IMAP4rev2\r\n",
            Kind.UNTAGGED,
            None,
            None,
            "ENABLED",
            CapabilityData(("IMAP4rev2",)),
        ),
        (
            b"babc OK Some capabilities enabled\r\n",
            Kind.TAGGED,
            b"babc",
            None,
            "OK",
            Condition("OK", None, b"Some capabilities enabled"),
        ),
        (b"a002 select inbox\r\n", "SELECT", SelectArgs(Mailbox(b"inbox"))),
        (b"* 18 EXISTS\r\n", Kind.UNTAGGED, None, 18, "EXISTS", CountData(18)),
        (
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            Kind.UNTAGGED,
            None,
            None,
            "FLAGS",
            FlagsData((b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft")),
        ),
        (
            b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
            Kind.UNTAGGED,
            None,
            None,
            "OK",
            Condition("OK", ResponseCode("UIDVALIDITY", b"3857529045"), b"UIDs valid"),
        ),
        (
            b'* LIST () "/" INBOX ("OLDNAME" ("inbox"))\r\n',
            Kind.UNTAGGED,
            None,
            None,
            "LIST",
            ListData((), b"/", Mailbox(b"INBOX"), ((b"OLDNAME", (b"inbox",)),)),
        ),
        (
            b"a002 OK [READ-WRITE] SELECT completed\r\n",
            Kind.TAGGED,
            b"a002",
            None,
            "OK",
            Condition("OK", ResponseCode("READ-WRITE"), b"SELECT completed"),
        ),
        (
            b"a003 fetch 12 full\r\n",
            "FETCH",
            FetchArgs(
                seq(b"12"),
                tuple(
                    FetchItem(name)
                    for name in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
                ),
                "FULL",
            ),
        ),
        (
            FULL_FETCH,
            Kind.UNTAGGED,
            None,
            12,
            "FETCH",
            FetchData(
                12,
                (
                    (FetchItem("FLAGS"), (b"\\Seen",)),
                    (
                        FetchItem("INTERNALDATE"),
                        dt.datetime(
                            1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(dt.timedelta(hours=-7))
                        ),
                    ),
                    (FetchItem("RFC822.SIZE"), 4286),
                    (FetchItem("ENVELOPE"), ENVELOPE),
                    (
                        FetchItem("BODY"),
                        BodyPart(
                            "TEXT",
                            "PLAIN",
                            ((b"CHARSET", b"US-ASCII"),),
                            None,
                            None,
                            b"7BIT",
                            3028,
                            92,
                        ),
                    ),
                ),
            ),
        ),
        (
            b"a003 OK FETCH completed\r\n",
            Kind.TAGGED,
            b"a003",
            None,
            "OK",
            Condition("OK", None, b"FETCH completed"),
        ),
        (
            b"a004 fetch 12 body[header]\r\n",
            "FETCH",
            FetchArgs(seq(b"12"), (FetchItem("BODY", Section((), "HEADER")),)),
        ),
        (
            b"* 12 FETCH (BODY[HEADER] {342}\r\n" + HEADER + b")\r\n",
            Kind.UNTAGGED,
            None,
            12,
            "FETCH",
            None,  # checked separately: the literal's data is the header
        ),
        (
            b"a004 OK FETCH completed\r\n",
            Kind.TAGGED,
            b"a004",
            None,
            "OK",
            Condition("OK", None, b"FETCH completed"),
        ),
        (
            b"a005 store 12 +flags \\deleted\r\n",
            "STORE",
            StoreArgs(seq(b"12"), "+", "FLAGS", False, (b"\\deleted",)),
        ),
        (
            b"* 12 FETCH (FLAGS (\\Seen \\Deleted))\r\n",
            Kind.UNTAGGED,
            None,
            12,
            "FETCH",
            FetchData(12, ((FetchItem("FLAGS"), (b"\\Seen", b"\\Deleted")),)),
        ),
        (
            b"a005 OK +FLAGS completed\r\n",
            Kind.TAGGED,
            b"a005",
            None,
            "OK",
            Condition("OK", None, b"+FLAGS completed"),
        ),
        (b"a006 logout\r\n", "LOGOUT", NoArgs()),
        (
            b"* BYE IMAP4rev2 server terminating connection\r\n",
            Kind.UNTAGGED,
            None,
            None,
            "BYE",
            Condition("BYE", None, b"IMAP4rev2 server terminating connection"),
        ),
        (
            b"a006 OK LOGOUT completed\r\n",
            Kind.TAGGED,
            b"a006",
            None,
            "OK",
            Condition("OK", None, b"LOGOUT completed"),
        ),
    ],
)


def client_lines(segment: list[C | SASL | S]) -> list[C | SASL]:
    return [step for step in segment if len(step) in (2, 3)]  # type: ignore[misc]


def server_lines(segment: list[C | SASL | S]) -> list[S]:
    return [step for step in segment if len(step) == 6]


def frame_stream(
    role: Role, data: bytes, raw_lines: set[int], *, chunk: int | None = None
) -> list[Frame]:
    """Frame one direction; frame numbers in ``raw_lines`` are read as plain lines."""
    framer = Framer(role)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    frames: list[Frame] = []
    for piece in pieces:
        framer.receive_data(piece)
        while True:
            if len(frames) in raw_lines:
                framer.expect_line()
            event = framer.next_event()
            if event is NEED_DATA:
                break
            assert isinstance(event, Frame), event
            frames.append(event)
    framer.receive_eof()
    assert framer.next_event() == EndOfStream(partial=False)
    return frames


def check_client(segment: list[C | SASL | S], chunk: int | None) -> list[Frame]:
    lines = client_lines(segment)
    wire = b"".join(line[0] for line in lines)
    sasl = {i for i, line in enumerate(lines) if len(line) == 2}
    frames = frame_stream(Role.SERVER, wire, sasl, chunk=chunk)
    assert [f.raw for f in frames] == [line[0] for line in lines]
    assert b"".join(f.raw for f in frames) == wire
    return frames


def check_server(segment: list[C | SASL | S], chunk: int | None) -> list[Frame]:
    lines = server_lines(segment)
    wire = b"".join(line[0] for line in lines)
    frames = frame_stream(Role.CLIENT, wire, set(), chunk=chunk)
    assert [f.raw for f in frames] == [line[0] for line in lines]
    assert b"".join(f.raw for f in frames) == wire
    return frames


@pytest.mark.parametrize("chunk", [None, 1, 7], ids=["whole", "bytewise", "chunks-of-7"])
@pytest.mark.parametrize("part", [0, 1], ids=["plaintext", "after-starttls"])
def test_frames_relay_byte_for_byte(part: int, chunk: int | None) -> None:
    segment = SESSION[part]
    client = check_client(segment, chunk)
    server = check_server(segment, chunk)
    # Both directions, interleaved in transcript order, are the transcript.
    client_raws = iter(f.raw for f in client)
    server_raws = iter(f.raw for f in server)
    rebuilt = b"".join(
        next(server_raws) if len(step) == 6 else next(client_raws) for step in segment
    )
    assert rebuilt == b"".join(step[0] for step in segment)


def test_whole_transcript_relays_unchanged() -> None:
    to_server = b"".join(line[0] for part in SESSION for line in client_lines(part))
    to_client = b"".join(line[0] for part in SESSION for line in server_lines(part))
    relayed_to_server = b"".join(f.raw for part in SESSION for f in check_client(part, None))
    relayed_to_client = b"".join(f.raw for part in SESSION for f in check_server(part, None))
    assert relayed_to_server == to_server
    assert relayed_to_client == to_client


CLIENT_ROWS = [
    pytest.param(line, id=line[0].split(b" ")[0].decode() + "-" + str(line[1]))
    for part in SESSION
    for line in client_lines(part)
    if len(line) == 3
]


@pytest.mark.parametrize("line", CLIENT_ROWS)
def test_client_command(line: C) -> None:
    wire, name, args = line
    frames = frame_stream(Role.SERVER, wire, set())
    assert [f.raw for f in frames] == [wire]
    command = Command.parse(frames[0])
    assert command.tag == wire.split(b" ")[0]
    assert command.name == name
    assert command.args == args


def test_client_sasl_lines() -> None:
    """The SCRAM client-final message, then the empty response to the server-final."""
    lines = [line for part in SESSION for line in client_lines(part) if len(line) == 2]
    assert len(lines) == 2
    frames = frame_stream(Role.SERVER, b"".join(line[0] for line in lines), {0, 1})
    for frame, (wire, payload) in zip(frames, lines, strict=True):
        assert frame.raw == wire
        assert frame.literals == ()
        assert base64.b64decode(wire.rstrip(b"\r\n"), validate=True) == payload


def test_select_keeps_mailbox_spelling() -> None:
    command = Command.parse(frame_stream(Role.SERVER, b"a002 select inbox\r\n", set())[0])
    args = command.args
    assert isinstance(args, SelectArgs)
    assert (args.mailbox.raw, args.mailbox.is_inbox) == (b"inbox", True)


SERVER_ROWS = [
    pytest.param(
        line, id=f"{i:02d}-" + line[0].split(b" ")[0].decode() + "-" + (line[4] or "continuation")
    )
    for i, line in enumerate(line for part in SESSION for line in server_lines(part))
]


@pytest.mark.parametrize("line", SERVER_ROWS)
def test_server_response(line: S) -> None:
    wire, kind, tag, number, name, expected = line
    frames = frame_stream(Role.CLIENT, wire, set())
    assert [f.raw for f in frames] == [wire]
    response = Response.parse(frames[0])
    assert (response.kind, response.tag, response.number, response.name) == (
        kind,
        tag,
        number,
        name,
    )
    if expected is not None:
        assert response.data == expected


def test_header_literal() -> None:
    wire = b"* 12 FETCH (BODY[HEADER] {342}\r\n" + HEADER + b")\r\n"
    (frame,) = frame_stream(Role.CLIENT, wire, set())
    assert len(HEADER) == 342
    (span,) = frame.literals
    assert (span.size, span.sync, span.binary, span.streamed) == (342, True, False, False)
    assert frame.literal_data(span) == HEADER
    fetched = Response.parse(frame).data
    assert isinstance(fetched, FetchData)
    ((item, value),) = fetched.items
    assert item == FetchItem("BODY", Section((), "HEADER"))
    assert isinstance(value, Literal)
    assert value.data == HEADER
    assert fetched.get("RFC822.HEADER") is None
    assert fetched.get("BODY[HEADER]") is value


def test_scram_challenges() -> None:
    payloads = [
        Response.parse(frame_stream(Role.CLIENT, b"+ " + challenge + b"\r\n", set())[0]).data
        for challenge in (SERVER_FIRST, SERVER_FINAL)
    ]
    assert all(isinstance(p, ContinuationData) for p in payloads)
    first, final = (p.sasl_payload() for p in payloads)  # type: ignore[union-attr]
    assert first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_greeting_capabilities() -> None:
    greeting = Response.parse(frame_stream(Role.CLIENT, SESSION[0][0][0], set())[0])
    condition = greeting.condition
    assert condition is not None
    assert condition.code is not None
    assert condition.code.capabilities == (
        "STARTTLS",
        "AUTH=SCRAM-SHA-256",
        "LOGINDISABLED",
        "IMAP4rev2",
    )
