"""Server responses: ``Response.parse`` (kind, tag, number, name) and ``Response.data``.

Table-driven ``S:`` transcripts: each row is the exact wire bytes a server sends,
framed with a client-role :class:`Framer`, and the typed value the codec must read.
Covers the status responses with every response code of RFC 9051 section 7.1 and
the extensions (UIDPLUS, CONDSTORE/QRESYNC, RFC 5530 codes, LOGIN-REFERRALS), the
typed accessors of :class:`ResponseCode`, continuation requests, every untagged
data response of RFC 9051 and the extensions, every FETCH item, and
:func:`bodystructure.walk` part numbering.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from codec_helpers import frame_one, literal, seq

from imapproxy.wire import (
    Atom,
    FetchItem,
    Frame,
    Literal,
    Mailbox,
    ParseError,
    Response,
    Role,
    Section,
)
from imapproxy.wire.bodystructure import Address, BodyPart, Envelope, Multipart, walk
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
    Unparsed,
    VanishedData,
)

# -- helpers ---------------------------------------------------------------------


def parse(wire: bytes) -> Response:
    return Response.parse(frame_one(Role.CLIENT, wire))


def data(wire: bytes) -> object:
    return parse(wire).data


def tz(hours: int, minutes: int = 0) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


def code(name: str, args: bytes = b"") -> ResponseCode:
    return ResponseCode(name, args)


def code_of(wire: bytes) -> ResponseCode:
    condition = data(wire)
    assert isinstance(condition, Condition)
    assert condition.code is not None
    return condition.code


# -- status responses --------------------------------------------------------------

STATUS = [
    pytest.param(
        b"* OK IMAP4rev2 server ready\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", None, b"IMAP4rev2 server ready"),
        id="greeting",
    ),
    pytest.param(
        b"* PREAUTH IMAP4rev2 server logged in as Smith\r\n",
        Kind.UNTAGGED,
        None,
        Condition("PREAUTH", None, b"IMAP4rev2 server logged in as Smith"),
        id="PREAUTH",
    ),
    pytest.param(
        b"* BYE Autologout; idle for too long\r\n",
        Kind.UNTAGGED,
        None,
        Condition("BYE", None, b"Autologout; idle for too long"),
        id="BYE",
    ),
    pytest.param(
        b"* NO Disk is 98% full, please delete unnecessary data\r\n",
        Kind.UNTAGGED,
        None,
        Condition("NO", None, b"Disk is 98% full, please delete unnecessary data"),
        id="untagged-NO",
    ),
    pytest.param(
        b"* BAD Command line too long\r\n",
        Kind.UNTAGGED,
        None,
        Condition("BAD", None, b"Command line too long"),
        id="untagged-BAD",
    ),
    pytest.param(
        b"A001 OK LOGIN completed\r\n",
        Kind.TAGGED,
        b"A001",
        Condition("OK", None, b"LOGIN completed"),
        id="tagged-OK",
    ),
    pytest.param(
        b"A222 NO COPY failed: disk is full\r\n",
        Kind.TAGGED,
        b"A222",
        Condition("NO", None, b"COPY failed: disk is full"),
        id="tagged-NO",
    ),
    pytest.param(
        b"A443 BAD No mailbox selected\r\n",
        Kind.TAGGED,
        b"A443",
        Condition("BAD", None, b"No mailbox selected"),
        id="tagged-BAD",
    ),
    pytest.param(
        b"a4 BYE IMAP4rev1 Server logging out\r\n",
        Kind.TAGGED,
        b"a4",
        Condition("BYE", None, b"IMAP4rev1 Server logging out"),
        id="tagged-BYE-G9",
    ),
    pytest.param(
        b"a2 ok done\r\n", Kind.TAGGED, b"a2", Condition("OK", None, b"done"), id="lower-case"
    ),
    pytest.param(b"a OK\r\n", Kind.TAGGED, b"a", Condition("OK", None, b""), id="no-text-G2"),
    pytest.param(b"* BYE\r\n", Kind.UNTAGGED, None, Condition("BYE", None, b""), id="bare-BYE-G2"),
    pytest.param(
        b"* OK [HIGHESTMODSEQ 715]\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", code("HIGHESTMODSEQ", b"715"), b""),
        id="code-no-text-G1",
    ),
    pytest.param(
        b"* ok [uidnext 5] Predicted\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", code("UIDNEXT", b"5"), b"Predicted"),
        id="lower-case-code",
    ),
    pytest.param(
        b"* OK Coremail Ready(163com[8db7])\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", None, b"Coremail Ready(163com[8db7])"),
        id="bracket-in-text-G13",
    ),
    pytest.param(
        b"* OK [UNCLOSED text\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", None, b"[UNCLOSED text"),
        id="unclosed-bracket-is-text",
    ),
    pytest.param(
        b"* [COPYUID 9 10 233] done\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", code("COPYUID", b"9 10 233"), b"done"),
        id="star-code-G7",
    ),
    pytest.param(
        b"[COPYUID 9 10 233]\r\n",
        Kind.UNTAGGED,
        None,
        Condition("OK", code("COPYUID", b"9 10 233"), b""),
        id="tagless-code-G7",
    ),
]


@pytest.mark.parametrize(("wire", "kind", "tag", "expected"), STATUS)
def test_status_response(wire: bytes, kind: Kind, tag: bytes | None, expected: Condition) -> None:
    response = parse(wire)
    assert (response.kind, response.tag, response.number) == (kind, tag, None)
    assert response.name == expected.status
    assert response.is_status
    assert response.data == expected
    assert response.condition == expected
    assert response.data is response.data  # parsed once


CODES = [
    pytest.param(b"* OK [ALERT] System shutdown in 10 minutes\r\n", "ALERT", b"", id="ALERT"),
    pytest.param(
        b'A1 NO [BADCHARSET (UTF-8 "US-ASCII")] charset\r\n',
        "BADCHARSET",
        b'(UTF-8 "US-ASCII")',
        id="BADCHARSET-list",
    ),
    pytest.param(b"A1 NO [BADCHARSET] charset\r\n", "BADCHARSET", b"", id="BADCHARSET"),
    pytest.param(
        b"* OK [CAPABILITY IMAP4rev2 STARTTLS AUTH=PLAIN] ready\r\n",
        "CAPABILITY",
        b"IMAP4rev2 STARTTLS AUTH=PLAIN",
        id="CAPABILITY",
    ),
    pytest.param(b"* NO [PARSE] Bad header\r\n", "PARSE", b"", id="PARSE"),
    pytest.param(
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        "PERMANENTFLAGS",
        b"(\\Deleted \\Seen \\*)",
        id="PERMANENTFLAGS",
    ),
    pytest.param(b"A1 OK [READ-ONLY] EXAMINE completed\r\n", "READ-ONLY", b"", id="READ-ONLY"),
    pytest.param(b"A1 OK [READ-WRITE] SELECT completed\r\n", "READ-WRITE", b"", id="READ-WRITE"),
    pytest.param(b"A1 NO [TRYCREATE] No such mailbox\r\n", "TRYCREATE", b"", id="TRYCREATE"),
    pytest.param(b"* OK [UIDNEXT 4392] Predicted next UID\r\n", "UIDNEXT", b"4392", id="UIDNEXT"),
    pytest.param(
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        "UIDVALIDITY",
        b"3857529045",
        id="UIDVALIDITY",
    ),
    pytest.param(b"* OK [UNSEEN 12] Message 12 is first unseen\r\n", "UNSEEN", b"12", id="UNSEEN"),
    pytest.param(
        b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
        "APPENDUID",
        b"38505 3955",
        id="APPENDUID",
    ),
    pytest.param(
        b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
        "COPYUID",
        b"38505 304,319:320 3956:3958",
        id="COPYUID",
    ),
    pytest.param(
        b"A1 OK [UIDNOTSTICKY] Non-persistent UIDs\r\n", "UIDNOTSTICKY", b"", id="UIDNOTSTICKY"
    ),
    pytest.param(
        b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
        "HIGHESTMODSEQ",
        b"715194045007",
        id="HIGHESTMODSEQ",
    ),
    pytest.param(b"* OK [NOMODSEQ] Sorry, no modseqs\r\n", "NOMODSEQ", b"", id="NOMODSEQ"),
    pytest.param(
        b"d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n", "MODIFIED", b"7,9", id="MODIFIED"
    ),
    pytest.param(b"* OK [CLOSED] Previous mailbox closed.\r\n", "CLOSED", b"", id="CLOSED"),
    pytest.param(
        b"A1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
        "AUTHENTICATIONFAILED",
        b"",
        id="AUTHENTICATIONFAILED",
    ),
    pytest.param(
        b"A1 NO [NONEXISTENT] Unknown Mailbox: foo\r\n", "NONEXISTENT", b"", id="NONEXISTENT"
    ),
    pytest.param(b"A1 NO [NOPERM] Access denied\r\n", "NOPERM", b"", id="NOPERM"),
    pytest.param(b"A1 NO [TOOBIG] Message too large\r\n", "TOOBIG", b"", id="TOOBIG"),
    pytest.param(
        b"A1 NO [REFERRAL IMAP://user;AUTH=*@SERVER2/SHARED/FOO] Remote mailbox\r\n",
        "REFERRAL",
        b"IMAP://user;AUTH=*@SERVER2/SHARED/FOO",
        id="REFERRAL",
    ),
    pytest.param(b"* OK [X-Y.Z_1-a] t\r\n", "X-Y.Z_1-A", b"", id="extension-code"),
]


@pytest.mark.parametrize(("wire", "name", "args"), CODES)
def test_response_code(wire: bytes, name: str, args: bytes) -> None:
    parsed = code_of(wire)
    assert parsed == ResponseCode(name, args)
    inner = wire[wire.index(b"[") : wire.index(b"]") + 1]
    if inner[1 : 1 + len(name)] == name.encode():
        assert bytes(parsed) == inner


NUMBERS = [
    pytest.param(b"UIDNEXT 4392", 4392, id="UIDNEXT"),
    pytest.param(b"UIDVALIDITY 3857529045", 3857529045, id="UIDVALIDITY"),
    pytest.param(b"UNSEEN 12", 12, id="UNSEEN"),
    pytest.param(b"HIGHESTMODSEQ 715194045007", 715194045007, id="HIGHESTMODSEQ"),
    pytest.param(b"HIGHESTMODSEQ 9223372036854775807", 2**63 - 1, id="HIGHESTMODSEQ-max"),
    pytest.param(b"UIDVALIDITY 0", 0, id="UIDVALIDITY-0-G5"),
]


@pytest.mark.parametrize(("text", "number"), NUMBERS)
def test_code_number(text: bytes, number: int) -> None:
    assert code_of(b"* OK [" + text + b"] x\r\n").number == number


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"UIDNEXT x", id="atom"),
        pytest.param(b"UIDNEXT 1 2", id="two-numbers"),
        pytest.param(b"UIDNEXT", id="missing"),
        pytest.param(b"HIGHESTMODSEQ 9223372036854775808", id="over-63-bits"),
    ],
)
def test_code_number_error(text: bytes) -> None:
    with pytest.raises(ParseError):
        _ = code_of(b"* OK [" + text + b"] x\r\n").number


def test_code_accessors() -> None:
    assert code_of(b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] L\r\n").flags == (
        b"\\Deleted",
        b"\\Seen",
        b"\\*",
    )
    assert code_of(b"* OK [PERMANENTFLAGS ()] No permanent flags\r\n").flags == ()
    assert code_of(b"* OK [CAPABILITY IMAP4rev2 starttls AUTH=PLAIN] x\r\n").capabilities == (
        "IMAP4rev2",
        "starttls",
        "AUTH=PLAIN",
    )
    assert code_of(b'A1 NO [BADCHARSET (UTF-8 "US-ASCII")] x\r\n').charsets == (
        b"UTF-8",
        b"US-ASCII",
    )
    assert code_of(b"A1 NO [BADCHARSET] x\r\n").charsets == ()
    assert code_of(b"A1 OK [APPENDUID 38505 3955] x\r\n").appenduid == (38505, seq(b"3955"))
    assert code_of(b"A1 OK [APPENDUID 38505 3955:3957] x\r\n").appenduid == (
        38505,
        seq(b"3955:3957"),
    )
    assert code_of(b"A1 OK [COPYUID 38505 304,319:320 3956:3958] x\r\n").copyuid == (
        38505,
        seq(b"304,319:320"),
        seq(b"3956:3958"),
    )
    assert code_of(b"d105 OK [MODIFIED 7,9] x\r\n").sequence_set == seq(b"7,9")


@pytest.mark.parametrize(
    ("wire", "accessor"),
    [
        pytest.param(b"* OK [COPYUID 14  ] x\r\n", "copyuid", id="COPYUID-no-sets-G12"),
        pytest.param(b"* OK [COPYUID 0 1 2] x\r\n", "copyuid", id="COPYUID-uidvalidity-0"),
        pytest.param(b"* OK [APPENDUID 38505] x\r\n", "appenduid", id="APPENDUID-no-uid"),
        pytest.param(b"* OK [MODIFIED x] x\r\n", "sequence_set", id="MODIFIED-atom"),
        pytest.param(b"* OK [PERMANENTFLAGS \\Seen] x\r\n", "flags", id="PERMANENTFLAGS-no-list"),
    ],
)
def test_code_accessor_error(wire: bytes, accessor: str) -> None:
    response_code = code_of(wire)
    with pytest.raises(ParseError):
        getattr(response_code, accessor)


# -- continuation requests -------------------------------------------------------

CONTINUATIONS = [
    pytest.param(b"+ Ready for literal data\r\n", b"Ready for literal data", id="text"),
    pytest.param(b"+ idling\r\n", b"idling", id="idling"),
    pytest.param(b"+ \r\n", b"", id="empty"),
    pytest.param(b"+\r\n", b"", id="bare-F1"),
    pytest.param(
        b"+ YGgGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzBeBiVHeceP2CWY0SR0fAQAgAAQEBAQ=\r\n",
        b"YGgGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzBeBiVHeceP2CWY0SR0fAQAgAAQEBAQ=",
        id="base64",
    ),
]


@pytest.mark.parametrize(("wire", "text"), CONTINUATIONS)
def test_continuation(wire: bytes, text: bytes) -> None:
    response = parse(wire)
    assert (response.kind, response.tag, response.number, response.name) == (
        Kind.CONTINUATION,
        None,
        None,
        "",
    )
    assert not response.is_status
    assert response.condition is None
    assert response.data == ContinuationData(text)


SASL = [
    pytest.param(b"+ \r\n", b"", id="empty-challenge"),
    pytest.param(b"+\r\n", b"", id="bare-plus-A2"),
    pytest.param(b"+ Rm9vbw==\r\n", b"Fooo", id="base64-A3"),
    pytest.param(b"+ eyJzdGF0dXMiOiI0MDAifQ==\r\n", b'{"status":"400"}', id="json-A4"),
    pytest.param(
        b"+ cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcy"
        b"MlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\r\n",
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        id="scram-server-first",
    ),
]


@pytest.mark.parametrize(("wire", "payload"), SASL)
def test_sasl_payload(wire: bytes, payload: bytes) -> None:
    continuation = data(wire)
    assert isinstance(continuation, ContinuationData)
    assert continuation.sasl_payload() == payload


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"+ Ready for literal data\r\n", id="text"),
        pytest.param(b"+ not base64!\r\n", id="punctuation"),
        pytest.param(b"+ YWJj ZGVm\r\n", id="inner-space"),
        pytest.param(b"+ YWJ\r\n", id="truncated"),
    ],
)
def test_sasl_payload_invalid(wire: bytes) -> None:
    continuation = data(wire)
    assert isinstance(continuation, ContinuationData)
    with pytest.raises(ParseError) as excinfo:
        continuation.sasl_payload()
    assert excinfo.value.reply.kind == "BAD"


# -- untagged data -----------------------------------------------------------------

UNTAGGED = [
    pytest.param(
        b"* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n",
        "CAPABILITY",
        None,
        CapabilityData(("IMAP4rev2", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED")),
        id="CAPABILITY",
    ),
    pytest.param(
        b"* CAPABILITY IMAP4 IMAP4rev1 \r\n",
        "CAPABILITY",
        None,
        CapabilityData(("IMAP4", "IMAP4rev1")),
        id="CAPABILITY-trailing-sp-C2",
    ),
    pytest.param(
        b"* ENABLED CONDSTORE QRESYNC\r\n",
        "ENABLED",
        None,
        CapabilityData(("CONDSTORE", "QRESYNC")),
        id="ENABLED",
    ),
    pytest.param(b"* ENABLED\r\n", "ENABLED", None, CapabilityData(()), id="ENABLED-none"),
    pytest.param(
        b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n',
        "LIST",
        None,
        ListData((b"\\Noselect",), b"/", Mailbox(b"~/Mail/foo")),
        id="LIST-atom-name",
    ),
    pytest.param(
        b'* LIST (\\Marked \\HasChildren \\Sent) "." "Sent Items"\r\n',
        "LIST",
        None,
        ListData((b"\\Marked", b"\\HasChildren", b"\\Sent"), b".", Mailbox(b"Sent Items")),
        id="LIST-quoted-name",
    ),
    pytest.param(
        b'* LIST (\\HasNoChildren) "/" {8}\r\nSent/Old\r\n',
        "LIST",
        None,
        ListData((b"\\HasNoChildren",), b"/", Mailbox(b"Sent/Old")),
        id="LIST-literal-name",
    ),
    pytest.param(
        b'* LIST (\\NoInferiors) NIL "INBOX"\r\n',
        "LIST",
        None,
        ListData((b"\\NoInferiors",), None, Mailbox(b"INBOX")),
        id="LIST-NIL-delimiter",
    ),
    pytest.param(
        b'* LIST () "\\\\" "a\\\\b"\r\n',
        "LIST",
        None,
        ListData((), b"\\", Mailbox(b"a\\b")),
        id="LIST-escaped-delimiter",
    ),
    pytest.param(
        b'* LIST (\\Subscribed) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        "LIST",
        None,
        ListData((b"\\Subscribed",), b"/", Mailbox(b"Foo"), ((b"CHILDINFO", (b"SUBSCRIBED",)),)),
        id="LIST-EXTENDED-CHILDINFO",
    ),
    pytest.param(
        b'* LIST () "/" "NewName" ("OLDNAME" ("OldName"))\r\n',
        "LIST",
        None,
        ListData((), b"/", Mailbox(b"NewName"), ((b"OLDNAME", (b"OldName",)),)),
        id="LIST-EXTENDED-OLDNAME",
    ),
    pytest.param(
        b'* LSUB () "." #news.comp.mail.misc\r\n',
        "LSUB",
        None,
        ListData((), b".", Mailbox(b"#news.comp.mail.misc")),
        id="LSUB",
    ),
    pytest.param(
        b'* XLIST (\\HasNoChildren \\Inbox) "/" "Inbox"\r\n',
        "XLIST",
        None,
        ListData((b"\\HasNoChildren", b"\\Inbox"), b"/", Mailbox(b"Inbox")),
        id="XLIST",
    ),
    pytest.param(
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        "STATUS",
        None,
        MailboxStatus(Mailbox(b"blurdybloop"), (("MESSAGES", 231), ("UIDNEXT", 44292))),
        id="STATUS",
    ),
    pytest.param(
        b'* STATUS "a b" (messages 1 size 9999999999 highestmodseq 7 uidvalidity 3 unseen 0 '
        b"deleted 2 recent 0 appendlimit 10)\r\n",
        "STATUS",
        None,
        MailboxStatus(
            Mailbox(b"a b"),
            (
                ("MESSAGES", 1),
                ("SIZE", 9999999999),
                ("HIGHESTMODSEQ", 7),
                ("UIDVALIDITY", 3),
                ("UNSEEN", 0),
                ("DELETED", 2),
                ("RECENT", 0),
                ("APPENDLIMIT", 10),
            ),
        ),
        id="STATUS-every-item",
    ),
    pytest.param(
        b"* STATUS INBOX ()\r\n",
        "STATUS",
        None,
        MailboxStatus(Mailbox(b"INBOX"), ()),
        id="STATUS-empty",
    ),
    pytest.param(b"* SEARCH 2 84 882\r\n", "SEARCH", None, SearchData((2, 84, 882)), id="SEARCH"),
    pytest.param(b"* SEARCH\r\n", "SEARCH", None, SearchData(()), id="SEARCH-empty"),
    pytest.param(
        b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n",
        "SEARCH",
        None,
        SearchData((2, 5, 6, 7, 11, 12, 18, 19, 20, 23), 917162500),
        id="SEARCH-MODSEQ",
    ),
    pytest.param(b"* SORT 2 3 6\r\n", "SORT", None, SearchData((2, 3, 6)), id="SORT"),
    pytest.param(
        b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n',
        "ESEARCH",
        None,
        EsearchData(b"A282", False, (("MIN", Atom(b"2")), ("COUNT", Atom(b"3")))),
        id="ESEARCH-MIN-COUNT",
    ),
    pytest.param(
        b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n',
        "ESEARCH",
        None,
        EsearchData(b"A285", True, (("MIN", Atom(b"7")), ("MAX", Atom(b"3800")))),
        id="ESEARCH-UID",
    ),
    pytest.param(
        b'* ESEARCH (TAG "a") UID ALL 1:3,5 MODSEQ 284535\r\n',
        "ESEARCH",
        None,
        EsearchData(b"a", True, (("ALL", Atom(b"1:3,5")), ("MODSEQ", Atom(b"284535")))),
        id="ESEARCH-ALL-MODSEQ",
    ),
    pytest.param(
        b"* ESEARCH UID COUNT 5\r\n",
        "ESEARCH",
        None,
        EsearchData(None, True, (("COUNT", Atom(b"5")),)),
        id="ESEARCH-no-correlator",
    ),
    pytest.param(
        b"* ESEARCH\r\n", "ESEARCH", None, EsearchData(None, False, ()), id="ESEARCH-bare"
    ),
    pytest.param(
        b"* ESEARCH (TAG {2}\r\nA9) COUNT 1\r\n",
        "ESEARCH",
        None,
        EsearchData(b"A9", False, (("COUNT", Atom(b"1")),)),
        id="ESEARCH-literal-tag",
    ),
    pytest.param(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        "FLAGS",
        None,
        FlagsData((b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft")),
        id="FLAGS",
    ),
    pytest.param(b"* FLAGS ()\r\n", "FLAGS", None, FlagsData(()), id="FLAGS-empty"),
    pytest.param(b"* 23 EXISTS\r\n", "EXISTS", 23, CountData(23), id="EXISTS"),
    pytest.param(b"* 0 EXISTS\r\n", "EXISTS", 0, CountData(0), id="EXISTS-0"),
    pytest.param(b"* 5 RECENT\r\n", "RECENT", 5, CountData(5), id="RECENT"),
    pytest.param(b"* 2 Recent\r\n", "RECENT", 2, CountData(2), id="RECENT-mixed-case-F12"),
    pytest.param(b"* 44 EXPUNGE\r\n", "EXPUNGE", 44, CountData(44), id="EXPUNGE"),
    pytest.param(
        b"* 4294967295 EXISTS\r\n", "EXISTS", 4294967295, CountData(4294967295), id="EXISTS-max"
    ),
    pytest.param(
        b"* VANISHED 300:310,405,411\r\n",
        "VANISHED",
        None,
        VanishedData(False, seq(b"300:310,405,411")),
        id="VANISHED",
    ),
    pytest.param(
        b"* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n",
        "VANISHED",
        None,
        VanishedData(True, seq(b"41,43:116,118,120:211,214:540")),
        id="VANISHED-EARLIER",
    ),
    pytest.param(
        b"* VANISHED (earlier) 1\r\n",
        "VANISHED",
        None,
        VanishedData(True, seq(b"1")),
        id="VANISHED-earlier-lower",
    ),
    pytest.param(
        b'* ID ("name" "Cyrus" "version" "1.5" "os" "sunos" "os-version" "5.5" '
        b'"support-url" "mailto:cyrus-bugs+@andrew.cmu.edu")\r\n',
        "ID",
        None,
        IdData(
            (
                (b"name", b"Cyrus"),
                (b"version", b"1.5"),
                (b"os", b"sunos"),
                (b"os-version", b"5.5"),
                (b"support-url", b"mailto:cyrus-bugs+@andrew.cmu.edu"),
            )
        ),
        id="ID",
    ),
    pytest.param(b"* ID NIL\r\n", "ID", None, IdData(None), id="ID-NIL"),
    pytest.param(
        b'* ID ("name" NIL)\r\n', "ID", None, IdData(((b"name", None),)), id="ID-NIL-value"
    ),
    pytest.param(
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/"))\r\n',
        "NAMESPACE",
        None,
        NamespaceData(
            (NamespaceDescriptor(b"", b"/"),),
            (NamespaceDescriptor(b"~", b"/"),),
            (NamespaceDescriptor(b"#shared/", b"/"), NamespaceDescriptor(b"#public/", b"/")),
        ),
        id="NAMESPACE",
    ),
    pytest.param(
        b'* NAMESPACE (("" NIL)) NIL NIL\r\n',
        "NAMESPACE",
        None,
        NamespaceData((NamespaceDescriptor(b"", None),), None, None),
        id="NAMESPACE-NIL-L1",
    ),
    pytest.param(
        b"* NAMESPACE NIL NIL NIL\r\n",
        "NAMESPACE",
        None,
        NamespaceData(None, None, None),
        id="NAMESPACE-all-NIL",
    ),
    pytest.param(
        b'* NAMESPACE (("" "/" "X-PARAM" ("FLAG1" "FLAG2"))) NIL (("Other/" "/"))\r\n',
        "NAMESPACE",
        None,
        NamespaceData(
            (NamespaceDescriptor(b"", b"/", ((b"X-PARAM", (b"FLAG1", b"FLAG2")),)),),
            None,
            (NamespaceDescriptor(b"Other/", b"/"),),
        ),
        id="NAMESPACE-extension",
    ),
    pytest.param(
        b'* QUOTA "" (STORAGE 10 512)\r\n',
        "QUOTA",
        None,
        GenericData((b"", (Atom(b"STORAGE"), Atom(b"10"), Atom(b"512")))),
        id="generic-QUOTA",
    ),
    pytest.param(
        b'* XFOO 1 "two" (3 NIL) {2}\r\nab\r\n',
        "XFOO",
        None,
        GenericData((Atom(b"1"), b"two", (Atom(b"3"), None), literal(b"ab"))),
        id="generic-every-value",
    ),
    pytest.param(
        b"* 3 XFOO bar\r\n", "XFOO", 3, GenericData((Atom(b"bar"),)), id="generic-numbered"
    ),
    pytest.param(b"* XNOTHING\r\n", "XNOTHING", None, GenericData(()), id="generic-empty"),
]


@pytest.mark.parametrize(("wire", "name", "number", "expected"), UNTAGGED)
def test_untagged(wire: bytes, name: str, number: int | None, expected: object) -> None:
    response = parse(wire)
    assert (response.kind, response.tag, response.number, response.name) == (
        Kind.UNTAGGED,
        None,
        number,
        name,
    )
    assert not response.is_status
    assert response.condition is None
    assert response.data == expected


def test_capability_has() -> None:
    capabilities = data(b"* CAPABILITY IMAP4rev1 literal+ IDLE\r\n")
    assert isinstance(capabilities, CapabilityData)
    assert capabilities.has("LITERAL+")
    assert capabilities.has("imap4REV1")
    assert not capabilities.has("LITERAL-")


def test_list_accessors() -> None:
    listed = data(b'* LIST (\\Subscribed \\NonExistent) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n')
    assert isinstance(listed, ListData)
    assert listed.childinfo == (b"SUBSCRIBED",)
    assert listed.oldname is None
    assert listed.has_flag(b"\\nonexistent")
    assert not listed.has_flag(b"\\Noselect")
    renamed = data(b'* LIST () "/" INBOX ("OLDNAME" ("inbox"))\r\n')
    assert isinstance(renamed, ListData)
    assert renamed.oldname is not None
    assert renamed.oldname.raw == b"inbox"
    assert renamed.childinfo == ()


def test_list_status_pair() -> None:
    """LIST-STATUS (RFC 5819): a LIST line, then a STATUS line for the same mailbox."""
    listed = data(b'* LIST () "." "foo"\r\n')
    status = data(b'* STATUS "foo" (MESSAGES 30 UNSEEN 29)\r\n')
    assert isinstance(listed, ListData)
    assert isinstance(status, MailboxStatus)
    assert listed.mailbox == status.mailbox
    assert (status.get("MESSAGES"), status.get("UNSEEN"), status.get("UIDNEXT")) == (30, 29, None)


ESEARCH_ACCESSORS = [
    pytest.param(
        b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n', 2, None, 3, None, None, id="min-count"
    ),
    pytest.param(
        b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n', None, None, None, None, b"2,10:11", id="all"
    ),
    pytest.param(
        b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n', 7, 3800, None, None, None, id="min-max"
    ),
    pytest.param(
        b'* ESEARCH (TAG "a") UID ALL 1:3 MODSEQ 284535\r\n',
        None,
        None,
        None,
        284535,
        b"1:3",
        id="modseq",
    ),
    pytest.param(b'* ESEARCH (TAG "d") min 2 count 1\r\n', 2, None, 1, None, None, id="lower-F12"),
]


@pytest.mark.parametrize(("wire", "min_", "max_", "count", "modseq", "all_"), ESEARCH_ACCESSORS)
def test_esearch_accessors(
    wire: bytes,
    min_: int | None,
    max_: int | None,
    count: int | None,
    modseq: int | None,
    all_: bytes | None,
) -> None:
    result = data(wire)
    assert isinstance(result, EsearchData)
    assert (result.min, result.max, result.count, result.modseq) == (min_, max_, count, modseq)
    assert result.all == (None if all_ is None else seq(all_))


# -- FETCH -----------------------------------------------------------------------------

TERRY = Address(b"Terry Gray", None, b"gray", b"cac.washington.edu")
ENVELOPE_WIRE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
    b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
)
ENVELOPE = Envelope(
    date=b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    subject=b"IMAP4rev1 WG mtg summary and minutes",
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
    message_id=b"<B27397-0100000@cac.washington.edu>",
)


SIMPLE_TEXT = BodyPart("TEXT", "PLAIN", ((b"CHARSET", b"US-ASCII"),), None, None, b"7BIT", 3028, 92)
MIXED = Multipart(
    (
        BodyPart("TEXT", "PLAIN", ((b"CHARSET", b"US-ASCII"),), None, None, b"7BIT", 1152, 23),
        BodyPart(
            "TEXT",
            "PLAIN",
            ((b"CHARSET", b"US-ASCII"), (b"NAME", b"cc.diff")),
            b"<960723163407.20117h@cac.washington.edu>",
            b"Compiler diff",
            b"BASE64",
            4554,
            73,
        ),
    ),
    "MIXED",
)
ALTERNATIVE = Multipart(
    (
        BodyPart(
            "TEXT",
            "PLAIN",
            ((b"charset", b"utf-8"),),
            None,
            None,
            b"quoted-printable",
            120,
            4,
            md5=None,
            disposition=None,
            language=None,
            location=None,
        ),
        BodyPart(
            "TEXT",
            "HTML",
            ((b"charset", b"utf-8"),),
            None,
            None,
            b"base64",
            2400,
            31,
            md5=b"Q2hlY2sgSW50ZWdyaXR5IQ==",
            disposition=(b"inline", ()),
            language=(b"en",),
            location=b"part2.html",
            extensions=(Atom(b"X-EXT"), (Atom(b"1"), b"two")),
        ),
    ),
    "ALTERNATIVE",
    ((b"boundary", b"b1"),),
    (b"inline", ((b"a", b"b"),)),
    (b"en", b"de"),
    b"http://example.org/",
    (Atom(b"99"),),
)
NESTED_MESSAGE = BodyPart(
    "MESSAGE",
    "RFC822",
    (),
    None,
    None,
    b"7bit",
    500,
    20,
    ENVELOPE,
    Multipart(
        (
            BodyPart("TEXT", "PLAIN", (), None, None, b"7bit", 10, 1),
            BodyPart("IMAGE", "PNG", ((b"name", b"a.png"),), None, None, b"base64", 200),
        ),
        "MIXED",
    ),
)

FETCHES = [
    pytest.param(
        b"* 12 FETCH (UID 4827313 FLAGS (\\Seen) RFC822.SIZE 44827 INTERNALDATE "
        b'"17-Jul-1996 02:44:25 -0700" MODSEQ (12121231000))\r\n',
        (
            (FetchItem("UID"), 4827313),
            (FetchItem("FLAGS"), (b"\\Seen",)),
            (FetchItem("RFC822.SIZE"), 44827),
            (FetchItem("INTERNALDATE"), dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz(-7))),
            (FetchItem("MODSEQ"), 12121231000),
        ),
        id="simple-items",
    ),
    pytest.param(
        b'* 1 FETCH (INTERNALDATE " 7-Feb-1994 21:52:25 +0530")\r\n',
        ((FetchItem("INTERNALDATE"), dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz(5, 30))),),
        id="INTERNALDATE-space-day",
    ),
    pytest.param(
        b'* 1 FETCH (INTERNALDATE "garbage")\r\n',
        ((FetchItem("INTERNALDATE"), b"garbage"),),
        id="INTERNALDATE-unparsable-kept",
    ),
    pytest.param(b"* 1 FETCH (FLAGS ())\r\n", ((FetchItem("FLAGS"), ()),), id="FLAGS-empty"),
    pytest.param(b"* 1 FETCH (MODSEQ 5)\r\n", ((FetchItem("MODSEQ"), 5),), id="MODSEQ-bare"),
    pytest.param(
        b"* 12 FETCH (ENVELOPE " + ENVELOPE_WIRE + b")\r\n",
        ((FetchItem("ENVELOPE"), ENVELOPE),),
        id="ENVELOPE",
    ),
    pytest.param(
        b"* 1 FETCH (ENVELOPE (NIL {5}\r\nhello NIL NIL NIL NIL NIL NIL NIL NIL))\r\n",
        ((FetchItem("ENVELOPE"), Envelope(None, b"hello", *([None] * 8))),),
        id="ENVELOPE-literal-subject",
    ),
    pytest.param(
        b'* 12 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n',
        ((FetchItem("BODY"), SIMPLE_TEXT),),
        id="BODY",
    ),
    pytest.param(
        b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 '
        b'23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        b'"MIXED"))\r\n',
        ((FetchItem("BODYSTRUCTURE"), MIXED),),
        id="BODYSTRUCTURE-multipart",
    ),
    pytest.param(
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL '
        b'"quoted-printable" 120 4 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL '
        b'"base64" 2400 31 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" NIL) "en" "part2.html" X-EXT '
        b'(1 "two")) "alternative" ("boundary" "b1") ("inline" ("a" "b")) ("en" "de") '
        b'"http://example.org/" 99))\r\n',
        ((FetchItem("BODYSTRUCTURE"), ALTERNATIVE),),
        id="BODYSTRUCTURE-alternative-extension-data",
    ),
    pytest.param(
        b'* 1 FETCH (BODYSTRUCTURE ("message" "rfc822" NIL NIL NIL "7bit" 500 '
        + ENVELOPE_WIRE
        + b' (("text" "plain" NIL NIL NIL "7bit" 10 1)("image" "png" ("name" "a.png") NIL NIL '
        b'"base64" 200) "mixed") 20))\r\n',
        ((FetchItem("BODYSTRUCTURE"), NESTED_MESSAGE),),
        id="BODYSTRUCTURE-nested-message",
    ),
    pytest.param(
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1 NIL '
        b'("attachment" ("filename" "a.txt")) ("en" "fr") "loc"))\r\n',
        (
            (
                FetchItem("BODYSTRUCTURE"),
                BodyPart(
                    "TEXT",
                    "PLAIN",
                    (),
                    None,
                    None,
                    b"7BIT",
                    3,
                    1,
                    disposition=(b"attachment", ((b"filename", b"a.txt"),)),
                    language=(b"en", b"fr"),
                    location=b"loc",
                ),
            ),
        ),
        id="BODYSTRUCTURE-single-extension-data",
    ),
    pytest.param(
        b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n",
        ((FetchItem("BODY", Section()), literal(b"hello")),),
        id="BODY[]-literal",
    ),
    pytest.param(
        b'* 1 FETCH (BODY[TEXT]<0> "abc")\r\n',
        ((FetchItem("BODY", Section((), "TEXT"), (0, None)), b"abc"),),
        id="BODY[TEXT]<origin>-quoted",
    ),
    pytest.param(
        b"* 1 FETCH (BODY[1.2.HEADER.FIELDS (FROM TO)] NIL)\r\n",
        ((FetchItem("BODY", Section((1, 2), "HEADER.FIELDS", (b"FROM", b"TO"))), None),),
        id="BODY[section]-NIL",
    ),
    pytest.param(
        b"* 1 FETCH (BODY[1] {1}\r\na BODY[2.MIME] {1}\r\nb)\r\n",
        (
            (FetchItem("BODY", Section((1,))), literal(b"a")),
            (FetchItem("BODY", Section((2,), "MIME")), literal(b"b")),
        ),
        id="two-sections",
    ),
    pytest.param(
        b"* 1 FETCH (BINARY[1] ~{3}\r\na\x00b)\r\n",
        ((FetchItem("BINARY", Section((1,))), literal(b"a\x00b", binary=True)),),
        id="BINARY-literal8",
    ),
    pytest.param(
        b"* 1 FETCH (BINARY.SIZE[1] 2456)\r\n",
        ((FetchItem("BINARY.SIZE", Section((1,))), 2456),),
        id="BINARY.SIZE",
    ),
    pytest.param(
        b'* 1 FETCH (RFC822 {3}\r\nabc RFC822.HEADER "h" RFC822.TEXT NIL)\r\n',
        (
            (FetchItem("RFC822"), literal(b"abc")),
            (FetchItem("RFC822.HEADER"), b"h"),
            (FetchItem("RFC822.TEXT"), None),
        ),
        id="RFC822-items",
    ),
    pytest.param(
        b'* 1 FETCH (X-GM-LABELS (\\Inbox "Foo Bar") X-GM-MSGID 1278455344230334865)\r\n',
        (
            (FetchItem("X-GM-LABELS"), (Atom(b"\\Inbox"), b"Foo Bar")),
            (FetchItem("X-GM-MSGID"), Atom(b"1278455344230334865")),
        ),
        id="extension-items",
    ),
    pytest.param(
        b"* 1 FETCH (EMAILID (M6d99ac3275bb4e) THREADID NIL)\r\n",
        (
            (FetchItem("EMAILID"), (Atom(b"M6d99ac3275bb4e"),)),
            (FetchItem("THREADID"), None),
        ),
        id="OBJECTID-items",
    ),
    pytest.param(
        b"* 1 FETCH (FLAGS (\\Seen ) UID 5 )\r\n",
        ((FetchItem("FLAGS"), (b"\\Seen",)), (FetchItem("UID"), 5)),
        id="trailing-spaces-F4",
    ),
    pytest.param(b"* 1 FETCH ()\r\n", (), id="empty"),
]


@pytest.mark.parametrize(("wire", "items"), FETCHES)
def test_fetch(wire: bytes, items: tuple[tuple[FetchItem, object], ...]) -> None:
    response = parse(wire)
    assert (response.kind, response.name) == (Kind.UNTAGGED, "FETCH")
    assert response.number == int(wire.split(b" ")[1])
    fetched = response.data
    assert fetched == FetchData(response.number, items)  # type: ignore[arg-type]
    assert isinstance(fetched, FetchData)
    for (_, got), (_, want) in zip(fetched.items, items, strict=True):
        if isinstance(want, Literal):
            assert isinstance(got, Literal)
            assert (got.data, got.binary) == (want.data, want.binary)


def test_fetch_accessors() -> None:
    fetched = data(
        b"* 12 FETCH (FLAGS (\\Seen) UID 7 MODSEQ (9) BODY[HEADER.FIELDS (from)]<0> {2}\r\nab "
        b"RFC822.SIZE 44)\r\n"
    )
    assert isinstance(fetched, FetchData)
    assert (fetched.uid, fetched.flags, fetched.modseq) == (7, (b"\\Seen",), 9)
    assert fetched.get("RFC822.SIZE") == 44
    section = fetched.get(b"BODY[HEADER.FIELDS (FROM)]<0>")  # QUIRKS B13: normalised key
    assert isinstance(section, Literal)
    assert section.data == b"ab"
    assert fetched.get("BODY[]") is None
    assert fetched.get("ENVELOPE") is None
    rfc822 = data(b"* 1 FETCH (RFC822.HEADER {2}\r\nhi)\r\n")
    assert isinstance(rfc822, FetchData)
    header = rfc822.get("BODY[HEADER]")  # RFC822.HEADER is BODY[HEADER]
    assert isinstance(header, Literal)
    assert header.data == b"hi"
    assert (rfc822.uid, rfc822.flags, rfc822.modseq) == (None, None, None)


def test_envelope_addresses() -> None:
    fetched = data(
        b'* 1 FETCH (ENVELOPE (NIL NIL (("A" NIL "a" "x.org")) NIL NIL '
        b'((NIL NIL "team" NIL)("B" NIL "b" "y.org")(NIL NIL NIL NIL)) NIL NIL NIL NIL))\r\n'
    )
    assert isinstance(fetched, FetchData)
    envelope = fetched.get("ENVELOPE")
    assert isinstance(envelope, Envelope)
    assert envelope.from_ is not None
    assert [a.email for a in envelope.from_] == ["a@x.org"]
    assert envelope.to is not None
    # RFC 5322 group syntax: a NIL host opens a group, all-NIL closes it
    assert [a.email for a in envelope.to] == [None, "b@y.org", None]
    assert envelope.to[0] == Address(None, None, b"team", None)


def test_body_numbers_that_are_not_numbers_read_as_zero() -> None:
    fetched = data(b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" abc "x"))\r\n')
    assert isinstance(fetched, FetchData)
    body = fetched.get("BODYSTRUCTURE")
    assert isinstance(body, BodyPart)
    assert (body.size, body.lines) == (0, 0)


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        pytest.param(b"a1 OK done\r\n", "Response(tagged b'a1' OK)", id="tagged"),
        pytest.param(b"* 3 EXISTS\r\n", "Response(untagged 3 EXISTS)", id="numbered"),
        pytest.param(b"* FLAGS ()\r\n", "Response(untagged FLAGS)", id="untagged"),
        pytest.param(b"+ go\r\n", "Response(continuation)", id="continuation"),
    ],
)
def test_repr_is_a_summary(wire: bytes, text: str) -> None:
    assert repr(parse(wire)) == text


# -- malformed responses ------------------------------------------------------------

HEAD_ERRORS = [
    pytest.param(b"\r\n", id="empty"),
    pytest.param(b"*\r\n", id="star-only"),
    pytest.param(b"* 5\r\n", id="number-only"),
    pytest.param(b"a FOO bar\r\n", id="tagged-non-status"),
    pytest.param(b"a PREAUTH x\r\n", id="tagged-PREAUTH"),
    pytest.param(b"CAPABILITY completed.\r\n", id="bare-text-G8"),
    pytest.param(b"FLAGS (\\Seen) RFC822.SIZE 3)\r\n", id="unframed-continuation-F10"),
]


@pytest.mark.parametrize("wire", HEAD_ERRORS)
def test_head_error(wire: bytes) -> None:
    with pytest.raises(ParseError) as excinfo:
        parse(wire)
    assert excinfo.value.reply.kind == "BAD"


DATA_ERRORS = [
    pytest.param(b"* EXISTS\r\n", id="EXISTS-no-number"),
    pytest.param(b"* 5 EXISTS x\r\n", id="EXISTS-extra"),
    pytest.param(b"* FLAGS \\Seen\r\n", id="FLAGS-not-list"),
    pytest.param(b"* FLAGS (\\Seen\r\n", id="FLAGS-unbalanced"),
    pytest.param(b'* LIST () "/"\r\n', id="LIST-no-name"),
    pytest.param(b'* LIST "/" INBOX\r\n', id="LIST-no-flags"),
    pytest.param(b"* STATUS INBOX (MESSAGES x)\r\n", id="STATUS-atom-value"),
    pytest.param(b"* STATUS INBOX MESSAGES 1\r\n", id="STATUS-not-list"),
    pytest.param(b"* SEARCH 0\r\n", id="SEARCH-zero"),
    pytest.param(b"* SEARCH x\r\n", id="SEARCH-atom"),
    pytest.param(b"* SEARCH 1 (FOO 2)\r\n", id="SEARCH-bad-modseq"),
    pytest.param(b"* VANISHED\r\n", id="VANISHED-empty"),
    pytest.param(b"* VANISHED (LATER) 1\r\n", id="VANISHED-bad-tag"),
    pytest.param(b'* ID ("name")\r\n', id="ID-odd-pairs"),
    pytest.param(b'* NAMESPACE (("" "/")) NIL\r\n', id="NAMESPACE-two-groups"),
    pytest.param(b"* NAMESPACE x NIL NIL\r\n", id="NAMESPACE-atom"),
    pytest.param(b"* FETCH (UID 1)\r\n", id="FETCH-no-number"),
    pytest.param(b"* 1 FETCH UID 5\r\n", id="FETCH-not-list"),
    pytest.param(b"* 1 FETCH (UID 5\r\n", id="FETCH-unbalanced"),
    pytest.param(b"* 1 FETCH (UID)\r\n", id="FETCH-UID-no-value"),
    pytest.param(b"* 1 FETCH (BODY[0] NIL)\r\n", id="FETCH-BODY[0]"),
]


@pytest.mark.parametrize("wire", DATA_ERRORS)
def test_data_error(wire: bytes) -> None:
    response = parse(wire)  # the head is always readable: the relay never fails
    with pytest.raises(ParseError) as excinfo:
        _ = response.data
    assert excinfo.value.reply.kind == "BAD"


@pytest.mark.parametrize(
    ("wire", "item", "value", "quirk"),
    [
        pytest.param(b"* 1 FETCH (UID 0 FLAGS ())\r\n", "UID", Atom(b"0"), "B8", id="UID-zero"),
        pytest.param(
            b"* 1 FETCH (RFC822.SIZE x FLAGS ())\r\n",
            "RFC822.SIZE",
            Atom(b"x"),
            "B8",
            id="SIZE-atom",
        ),
        pytest.param(
            b"* 1 FETCH (FLAGS \\Seen UID 9)\r\n", "FLAGS", Atom(b"\\Seen"), "B8", id="FLAGS-bare"
        ),
        pytest.param(
            b"* 1 FETCH (BODYSTRUCTURE NIL FLAGS ())\r\n", "BODYSTRUCTURE", None, "B12", id="BS-NIL"
        ),
        pytest.param(
            b"* 1 FETCH (ENVELOPE NIL FLAGS ())\r\n", "ENVELOPE", None, "B12", id="ENV-NIL"
        ),
        pytest.param(
            b"* 1 FETCH (BINARY[1] x FLAGS ())\r\n",
            "BINARY[1]",
            Atom(b"x"),
            "B8",
            id="BINARY-atom",
        ),
    ],
)
def test_odd_fetch_item_is_kept_generically(
    wire: bytes, item: str, value: object, quirk: str
) -> None:
    """QUIRKS B8/B12: one unreadable item value does not cost the whole FETCH; it
    is kept as Unparsed, which no typed accessor mistakes for a typed value."""
    quirks: Counter[str] = Counter()
    data = Response.parse(Frame(wire), quirks).data
    assert isinstance(data, FetchData)
    assert data.get(item) == Unparsed(value)  # type: ignore[arg-type]
    assert quirks == Counter({quirk: 1})
    assert data.flags == () or data.uid == 9


def test_typed_accessors_ignore_values_of_the_wrong_type() -> None:
    data = Response.parse(Frame(b'* 1 FETCH (UID 4 FLAGS (\\Seen "x"))\r\n')).data
    assert isinstance(data, FetchData)
    assert data.uid == 4
    assert data.flags is None  # a quoted string is not a flag


def test_list_name_with_leading_control_character() -> None:
    """QUIRKS L2: a bare name that is not an atom is read up to the end of the line."""
    assert data(b'* LIST () "/" \tName\r\n') == ListData((), b"/", Mailbox(b"\tName"))


def test_list_name_with_inner_control_character() -> None:
    assert data(b'* LIST () "/" Tab\tName\r\n') == ListData((), b"/", Mailbox(b"Tab\tName"))


# -- bodystructure.walk: part numbers (RFC 9051 section 6.4.5) -------------------------

WALKS = [
    pytest.param(
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)',
        [((1,), "text/plain")],
        id="single-part",
    ),
    pytest.param(
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1 1)("IMAGE" "GIF" NIL NIL NIL "BASE64" 9) "MIXED")',
        [((), "multipart/mixed"), ((1,), "text/plain"), ((2,), "image/gif")],
        id="multipart",
    ),
    pytest.param(
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1)(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1)'
        b'("TEXT" "HTML" NIL NIL NIL "7BIT" 3 1) "ALTERNATIVE")("MESSAGE" "RFC822" NIL NIL NIL '
        b'"7BIT" 30 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" NIL NIL NIL '
        b'"7BIT" 3 1) 2)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 90 (NIL "t" NIL NIL NIL NIL NIL '
        b'NIL NIL NIL) (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1)("APPLICATION" "PDF" NIL NIL NIL '
        b'"BASE64" 40) "MIXED") 6) "MIXED")',
        [
            ((), "multipart/mixed"),
            ((1,), "text/plain"),
            ((2,), "multipart/alternative"),
            ((2, 1), "text/plain"),
            ((2, 2), "text/html"),
            ((3,), "message/rfc822"),
            ((3, 1), "text/plain"),
            ((4,), "message/rfc822"),
            ((4, 1), "text/plain"),
            ((4, 2), "application/pdf"),
        ],
        id="nested-messages",
    ),
    pytest.param(
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 30 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 20 (NIL "u" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1) 1) 2)',
        [((1,), "message/rfc822"), ((1, 1), "message/rfc822"), ((1, 1, 1), "text/plain")],
        id="message-in-message",
    ),
]


@pytest.mark.parametrize(("structure", "numbers"), WALKS)
def test_walk(structure: bytes, numbers: list[tuple[tuple[int, ...], str]]) -> None:
    fetched = data(b"* 1 FETCH (BODYSTRUCTURE " + structure + b")\r\n")
    assert isinstance(fetched, FetchData)
    ((_, root),) = fetched.items
    assert isinstance(root, BodyPart | Multipart)
    assert [(number, part.mime_type) for number, part in walk(root)] == numbers
