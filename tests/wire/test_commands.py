"""Client commands: ``Command.parse`` (tag, name) and ``Command.args`` (typed arguments).

Table-driven ``C:`` transcripts: each row is the exact wire bytes a client sends,
framed with a server-role :class:`Framer` (literals accepted as a server would),
and the typed value the codec must read from them. Every command of RFC 9051 and
RFC 3501 is covered, with the extensions the codec knows (LITERAL+, SASL-IR, ID,
ENABLE, COMPRESS, CONDSTORE/QRESYNC, SPECIAL-USE, LIST-EXTENDED, LIST-STATUS,
ESEARCH, SEARCHRES, MULTIAPPEND, CATENATE, UTF8=ACCEPT, BINARY, UIDPLUS, MOVE).
Error rows check that a malformed command gives a :class:`ParseError` whose reply
is a ``BAD`` tagged with the command's tag (untagged when no tag could be read).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from codec_helpers import (
    ATOM_KEYS,
    DATE_KEYS,
    NO_ARG_KEYS,
    NUMBER_KEYS,
    STRING_KEYS,
    frame_one,
    literal,
    seq,
)

from imapproxy.wire import (
    NEED_DATA,
    Atom,
    Command,
    ContinuationRequest,
    FetchItem,
    FramePart,
    Framer,
    LiteralChunk,
    Mailbox,
    ParseError,
    Role,
    Secret,
    Section,
    SequenceSet,
)
from imapproxy.wire.build import build_command
from imapproxy.wire.commands import (
    AclArgs,
    AppendArgs,
    AppendMessage,
    AuthenticateArgs,
    CatenatePart,
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
    MetadataArgs,
    NoArgs,
    QresyncParams,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
    UidExpungeArgs,
)
from imapproxy.wire.search import SearchKey

# -- helpers ---------------------------------------------------------------------


def parse(wire: bytes) -> Command:
    return Command.parse(frame_one(Role.SERVER, wire))


def key(name: str, *args: object) -> SearchKey:
    return SearchKey(name, tuple(args))  # type: ignore[arg-type]


def body(
    part: tuple[int, ...] = (),
    text: str | None = None,
    fields: tuple[bytes, ...] = (),
    *,
    partial: tuple[int, int | None] | None = None,
    peek: bool = False,
    name: str = "BODY",
) -> FetchItem:
    return FetchItem(name, Section(part, text, fields), partial, peek)


def tz(hours: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


FLAGS = FetchItem("FLAGS")
INTERNALDATE = FetchItem("INTERNALDATE")
SIZE = FetchItem("RFC822.SIZE")
ENVELOPE = FetchItem("ENVELOPE")


# -- the head: tag and name ------------------------------------------------------

HEADS = [
    pytest.param(b"a001 CAPABILITY\r\n", b"a001", "CAPABILITY", id="plain"),
    pytest.param(b"a capability\r\n", b"a", "CAPABILITY", id="K1-lower-case"),
    pytest.param(b"A1 CaPaBiLiTy\r\n", b"A1", "CAPABILITY", id="K1-mixed-case"),
    pytest.param(b"TAG1 IDLE \r\n", b"TAG1", "IDLE", id="K2-trailing-sp"),
    pytest.param(b"a  NOOP\r\n", b"a", "NOOP", id="sp-run"),
    pytest.param(b"a]b NOOP\r\n", b"a]b", "NOOP", id="tag-with-resp-special"),
    pytest.param(b"x.y-z_1 NOOP\r\n", b"x.y-z_1", "NOOP", id="tag-punctuation"),
    pytest.param(b"a uid fetch 1 FLAGS\r\n", b"a", "UID FETCH", id="uid-fetch-lower"),
    pytest.param(b"a UID SEARCH ALL\r\n", b"a", "UID SEARCH", id="uid-search"),
    pytest.param(b"a UID STORE 1 FLAGS ()\r\n", b"a", "UID STORE", id="uid-store"),
    pytest.param(b"a UID COPY 1 x\r\n", b"a", "UID COPY", id="uid-copy"),
    pytest.param(b"a UID MOVE 1 x\r\n", b"a", "UID MOVE", id="uid-move"),
    pytest.param(b"a UID EXPUNGE 1\r\n", b"a", "UID EXPUNGE", id="uid-expunge"),
    pytest.param(b"a UID SORT (DATE) UTF-8 ALL\r\n", b"a", "UID SORT", id="uid-sort"),
    pytest.param(b"a UID THREAD REFS UTF-8 ALL\r\n", b"a", "UID THREAD", id="uid-thread"),
    pytest.param(b"a UID REPLACE 4 Drafts {3+}\r\nabc\r\n", b"a", "UID REPLACE", id="uid-replace"),
    pytest.param(b"a X-CUSTOM.cmd_1 x\r\n", b"a", "X-CUSTOM.CMD_1", id="extension-name"),
]


@pytest.mark.parametrize(("wire", "tag", "name"), HEADS)
def test_head(wire: bytes, tag: bytes, name: str) -> None:
    command = Command.parse(frame_one(Role.SERVER, wire))
    assert command.tag == tag
    assert command.name == name
    assert command.uid == name.startswith("UID ")
    assert command.base_name == name.removeprefix("UID ")


HEAD_ERRORS = [
    pytest.param(b"\r\n", None, id="empty-line"),
    pytest.param(b"a001\r\n", None, id="tag-only"),
    pytest.param(b" a NOOP\r\n", None, id="leading-sp"),
    pytest.param(b"* NOOP\r\n", None, id="star-tag"),
    pytest.param(b"+ NOOP\r\n", None, id="plus-tag"),
    pytest.param(b"a+b NOOP\r\n", None, id="plus-in-tag"),
    pytest.param(b"a(b NOOP\r\n", None, id="paren-in-tag"),
    pytest.param(b'a"b NOOP\r\n', None, id="quote-in-tag"),
    pytest.param(b"a%b NOOP\r\n", None, id="percent-in-tag"),
    pytest.param(b"a{b NOOP\r\n", None, id="brace-in-tag"),
    pytest.param(b"a\\b NOOP\r\n", None, id="backslash-in-tag"),
    pytest.param(b"DONE\r\n", None, id="K12-late-done"),
    pytest.param(b"a -X\r\n", b"a", id="bad-name"),
    pytest.param(b"a (NOOP)\r\n", b"a", id="paren-name"),
    pytest.param(b"a UID\r\n", b"a", id="uid-alone"),
    pytest.param(b"a UID BOGUS 1\r\n", b"a", id="uid-unknown"),
    pytest.param(b"a UID LOGIN x y\r\n", b"a", id="uid-login"),
]


@pytest.mark.parametrize(("wire", "tag"), HEAD_ERRORS)
def test_head_error(wire: bytes, tag: bytes | None) -> None:
    with pytest.raises(ParseError) as excinfo:
        Command.parse(frame_one(Role.SERVER, wire))
    reply = excinfo.value.reply
    assert reply.kind == "BAD"
    assert reply.tag == tag
    assert reply.code is None
    expected_start = (tag or b"*") + b" BAD "
    assert reply.to_bytes().startswith(expected_start)


# -- typed arguments -------------------------------------------------------------

ANY_STATE = [
    pytest.param(b"a CAPABILITY\r\n", "CAPABILITY", NoArgs(), id="CAPABILITY"),
    pytest.param(b"a NOOP\r\n", "NOOP", NoArgs(), id="NOOP"),
    pytest.param(b"a LOGOUT\r\n", "LOGOUT", NoArgs(), id="LOGOUT"),
    pytest.param(b"a STARTTLS\r\n", "STARTTLS", NoArgs(), id="STARTTLS"),
    pytest.param(b"a IDLE\r\n", "IDLE", NoArgs(), id="IDLE"),
    pytest.param(b"TAG1 IDLE \r\n", "IDLE", NoArgs(), id="IDLE-K2"),
    pytest.param(b"a CHECK\r\n", "CHECK", NoArgs(), id="CHECK"),
    pytest.param(b"a CLOSE\r\n", "CLOSE", NoArgs(), id="CLOSE"),
    pytest.param(b"a UNSELECT\r\n", "UNSELECT", NoArgs(), id="UNSELECT"),
    pytest.param(b"a EXPUNGE\r\n", "EXPUNGE", NoArgs(), id="EXPUNGE"),
    pytest.param(b"a NAMESPACE\r\n", "NAMESPACE", NoArgs(), id="NAMESPACE"),
    pytest.param(b"a UNAUTHENTICATE\r\n", "UNAUTHENTICATE", NoArgs(), id="UNAUTHENTICATE"),
    pytest.param(
        b"a UID EXPUNGE 3000:3002\r\n",
        "UID EXPUNGE",
        UidExpungeArgs(seq(b"3000:3002")),
        id="UID-EXPUNGE",
    ),
    pytest.param(b"a COMPRESS DEFLATE\r\n", "COMPRESS", CompressArgs("DEFLATE"), id="COMPRESS"),
    pytest.param(
        b"a compress deflate\r\n", "COMPRESS", CompressArgs("DEFLATE"), id="COMPRESS-lower"
    ),
    pytest.param(b"a ENABLE CONDSTORE\r\n", "ENABLE", EnableArgs(("CONDSTORE",)), id="ENABLE-one"),
    pytest.param(
        b"a ENABLE QRESYNC UTF8=ACCEPT IMAP4rev2\r\n",
        "ENABLE",
        EnableArgs(("QRESYNC", "UTF8=ACCEPT", "IMAP4rev2")),
        id="ENABLE-several",
    ),
    pytest.param(
        b'a ID ("name" "sodr" "version" "19.34" "vendor" NIL)\r\n',
        "ID",
        IdArgs(((b"name", b"sodr"), (b"version", b"19.34"), (b"vendor", None))),
        id="ID-list",
    ),
    pytest.param(b"a ID NIL\r\n", "ID", IdArgs(None), id="ID-NIL"),
    pytest.param(b"a ID nil\r\n", "ID", IdArgs(None), id="ID-nil-lower"),
    pytest.param(b"a ID ()\r\n", "ID", IdArgs(()), id="ID-empty-list-K6"),
    pytest.param(
        b"a ID ({4}\r\nname {3}\r\nx y)\r\n",
        "ID",
        IdArgs(((b"name", b"x y"),)),
        id="ID-literals",
    ),
]

AUTH = [
    pytest.param(
        b"a AUTHENTICATE PLAIN\r\n",
        "AUTHENTICATE",
        AuthenticateArgs("PLAIN"),
        id="AUTHENTICATE",
    ),
    pytest.param(
        b"a authenticate gssapi\r\n",
        "AUTHENTICATE",
        AuthenticateArgs("GSSAPI"),
        id="AUTHENTICATE-lower",
    ),
    pytest.param(
        b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        "AUTHENTICATE",
        AuthenticateArgs("PLAIN", Secret(b"AGFsaWNlAHNlY3JldA==")),
        id="AUTHENTICATE-SASL-IR",
    ),
    pytest.param(
        b"a AUTHENTICATE EXTERNAL =\r\n",
        "AUTHENTICATE",
        AuthenticateArgs("EXTERNAL", Secret(b"")),
        id="AUTHENTICATE-SASL-IR-empty",
    ),
    pytest.param(
        b"a AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=\r\n",
        "AUTHENTICATE",
        AuthenticateArgs("SCRAM-SHA-256", Secret(b"biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=")),
        id="AUTHENTICATE-SCRAM",
    ),
    pytest.param(
        b"a LOGIN SMITH SESAME\r\n",
        "LOGIN",
        LoginArgs(b"SMITH", Secret(b"SESAME")),
        id="LOGIN-atoms",
    ),
    pytest.param(
        b'a LOGIN "fred smith" "p\\"w\\\\d"\r\n',
        "LOGIN",
        LoginArgs(b"fred smith", Secret(b'p"w\\d')),
        id="LOGIN-quoted-escapes",
    ),
    pytest.param(
        b'a LOGIN "" ""\r\n', "LOGIN", LoginArgs(b"", Secret(b"")), id="LOGIN-empty-quoted"
    ),
    pytest.param(
        b"a LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
        "LOGIN",
        LoginArgs(b"FRED FOOBAR", Secret(b"fat man")),
        id="LOGIN-literals",
    ),
    pytest.param(
        b"a LOGIN {5+}\r\nalice {6+}\r\nse\r\nct\r\n",
        "LOGIN",
        LoginArgs(b"alice", Secret(b"se\r\nct")),
        id="LOGIN-literal-plus",
    ),
    pytest.param(
        b"a LOGIN NIL NIL\r\n",
        "LOGIN",
        LoginArgs(b"NIL", Secret(b"NIL")),
        id="LOGIN-NIL-is-an-atom",
    ),
    pytest.param(
        b"a LOGIN us]er p]w\r\n",
        "LOGIN",
        LoginArgs(b"us]er", Secret(b"p]w")),
        id="LOGIN-astring-bracket",
    ),
]

MAILBOXES = [
    pytest.param(b"A142 SELECT INBOX\r\n", "SELECT", SelectArgs(Mailbox(b"INBOX")), id="SELECT"),
    pytest.param(
        b'a select "Sent Items"\r\n',
        "SELECT",
        SelectArgs(Mailbox(b"Sent Items")),
        id="SELECT-quoted",
    ),
    pytest.param(
        b"A932 EXAMINE blurdybloop\r\n",
        "EXAMINE",
        SelectArgs(Mailbox(b"blurdybloop")),
        id="EXAMINE",
    ),
    pytest.param(
        b"a EXAMINE {4}\r\nTest\r\n", "EXAMINE", SelectArgs(Mailbox(b"Test")), id="EXAMINE-literal"
    ),
    pytest.param(
        b"a SELECT INBOX (CONDSTORE)\r\n",
        "SELECT",
        SelectArgs(Mailbox(b"INBOX"), condstore=True),
        id="SELECT-CONDSTORE",
    ),
    pytest.param(
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        "SELECT",
        SelectArgs(
            Mailbox(b"INBOX"),
            qresync=QresyncParams(67890007, 20050715194045000, seq(b"41,43:211,214:541")),
        ),
        id="SELECT-QRESYNC-known-uids",
    ),
    pytest.param(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979)))\r\n",
        "SELECT",
        SelectArgs(
            Mailbox(b"INBOX"),
            qresync=QresyncParams(
                67890007,
                90060115194045000,
                seq(b"1:29997"),
                (
                    seq(b"5000,7500,9000,9990:9999"),
                    seq(b"15000,22500,27000,29970,29973,29976,29979"),
                ),
            ),
        ),
        id="SELECT-QRESYNC-seq-match",
    ),
    pytest.param(
        b"a SELECT INBOX (QRESYNC (1 2 (1:3 4:6)))\r\n",
        "SELECT",
        SelectArgs(
            Mailbox(b"INBOX"),
            qresync=QresyncParams(1, 2, None, (seq(b"1:3"), seq(b"4:6"))),
        ),
        id="SELECT-QRESYNC-seq-match-only",
    ),
    pytest.param(
        b"a EXAMINE INBOX (QRESYNC (3857529045 20010715194032001))\r\n",
        "EXAMINE",
        SelectArgs(Mailbox(b"INBOX"), qresync=QresyncParams(3857529045, 20010715194032001)),
        id="EXAMINE-QRESYNC-minimal",
    ),
    pytest.param(
        b"a SELECT INBOX (CONDSTORE QRESYNC (1 2))\r\n",
        "SELECT",
        SelectArgs(Mailbox(b"INBOX"), condstore=True, qresync=QresyncParams(1, 2)),
        id="SELECT-CONDSTORE-QRESYNC",
    ),
    pytest.param(
        b"a SELECT INBOX (X-FOO 1 X-BAR)\r\n",
        "SELECT",
        SelectArgs(Mailbox(b"INBOX"), other=(("X-FOO", Atom(b"1")), ("X-BAR", None))),
        id="SELECT-other-params",
    ),
    pytest.param(
        b"A003 CREATE owatagusiam/\r\n", "CREATE", CreateArgs(Mailbox(b"owatagusiam/")), id="CREATE"
    ),
    pytest.param(b'a CREATE "a/b/"\r\n', "CREATE", CreateArgs(Mailbox(b"a/b/")), id="CREATE-L8"),
    pytest.param(
        b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n",
        "CREATE",
        CreateArgs(Mailbox(b"MySpecial"), (b"\\Drafts", b"\\Sent")),
        id="CREATE-USE",
    ),
    pytest.param(
        b"a CREATE Stuff (USE (\\Archive) X-P 1)\r\n",
        "CREATE",
        CreateArgs(Mailbox(b"Stuff"), (b"\\Archive",), (("X-P", Atom(b"1")),)),
        id="CREATE-USE-and-other",
    ),
    pytest.param(
        b"A683 DELETE blurdybloop\r\n", "DELETE", MailboxArgs(Mailbox(b"blurdybloop")), id="DELETE"
    ),
    pytest.param(
        b"A683 RENAME blurdybloop sarasoop\r\n",
        "RENAME",
        RenameArgs(Mailbox(b"blurdybloop"), Mailbox(b"sarasoop")),
        id="RENAME",
    ),
    pytest.param(
        b'a RENAME "a b" {3}\r\nc d\r\n',
        "RENAME",
        RenameArgs(Mailbox(b"a b"), Mailbox(b"c d")),
        id="RENAME-quoted-literal",
    ),
    pytest.param(
        b"A002 SUBSCRIBE #news.comp.mail.mime\r\n",
        "SUBSCRIBE",
        MailboxArgs(Mailbox(b"#news.comp.mail.mime")),
        id="SUBSCRIBE",
    ),
    pytest.param(
        b"A002 UNSUBSCRIBE {3+}\r\na b\r\n",
        "UNSUBSCRIBE",
        MailboxArgs(Mailbox(b"a b")),
        id="UNSUBSCRIBE-literal-plus",
    ),
    pytest.param(
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
        "STATUS",
        StatusArgs(Mailbox(b"blurdybloop"), ("UIDNEXT", "MESSAGES")),
        id="STATUS",
    ),
    pytest.param(
        b"a STATUS INBOX (messages uidnext uidvalidity unseen deleted size recent "
        b"highestmodseq appendlimit)\r\n",
        "STATUS",
        StatusArgs(
            Mailbox(b"INBOX"),
            (
                "MESSAGES",
                "UIDNEXT",
                "UIDVALIDITY",
                "UNSEEN",
                "DELETED",
                "SIZE",
                "RECENT",
                "HIGHESTMODSEQ",
                "APPENDLIMIT",
            ),
        ),
        id="STATUS-every-item",
    ),
]

LISTS = [
    pytest.param(
        b'A101 LIST "" ""\r\n', "LIST", ListArgs(Mailbox(b""), (b"",)), id="LIST-delimiter"
    ),
    pytest.param(
        b'A102 LIST #news.comp.mail.misc ""\r\n',
        "LIST",
        ListArgs(Mailbox(b"#news.comp.mail.misc"), (b"",)),
        id="LIST-reference",
    ),
    pytest.param(b'a LIST "" *\r\n', "LIST", ListArgs(Mailbox(b""), (b"*",)), id="LIST-star"),
    pytest.param(
        b'a LIST "" foo/%\r\n', "LIST", ListArgs(Mailbox(b""), (b"foo/%",)), id="LIST-percent"
    ),
    pytest.param(
        b'a LIST "" {5}\r\nfoo/*\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"foo/*",)),
        id="LIST-literal-pattern",
    ),
    pytest.param(
        b'A02 LIST (SUBSCRIBED) "" "*"\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"*",), ("SUBSCRIBED",)),
        id="LIST-EXTENDED-selection",
    ),
    pytest.param(
        b'a LIST (subscribed RECURSIVEMATCH remote) "" %\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"%",), ("SUBSCRIBED", "RECURSIVEMATCH", "REMOTE")),
        id="LIST-EXTENDED-selection-several",
    ),
    pytest.param(
        b'a LIST (SPECIAL-USE) "" *\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"*",), ("SPECIAL-USE",)),
        id="LIST-SPECIAL-USE-selection",
    ),
    pytest.param(
        b'a LIST () "" *\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"*",)),
        id="LIST-empty-selection",
    ),
    pytest.param(
        b'A05 LIST "" ("INBOX" "Drafts" Sent/%)\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"INBOX", b"Drafts", b"Sent/%")),
        id="LIST-EXTENDED-patterns",
    ),
    pytest.param(
        b'A04 LIST "" % RETURN (CHILDREN)\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"%",), (), (("CHILDREN", ()),)),
        id="LIST-RETURN-CHILDREN",
    ),
    pytest.param(
        b'A06 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))\r\n',
        "LIST",
        ListArgs(
            Mailbox(b""),
            (b"%",),
            (),
            (("STATUS", (Atom(b"MESSAGES"), Atom(b"UNSEEN"))),),
        ),
        id="LIST-STATUS",
    ),
    pytest.param(
        b'a LIST "" * RETURN (SPECIAL-USE)\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"*",), (), (("SPECIAL-USE", ()),)),
        id="LIST-RETURN-SPECIAL-USE",
    ),
    pytest.param(
        b'a LIST (SUBSCRIBED) "" ("a" "b") RETURN (SPECIAL-USE STATUS (UIDNEXT) '
        b"CHILDREN SUBSCRIBED)\r\n",
        "LIST",
        ListArgs(
            Mailbox(b""),
            (b"a", b"b"),
            ("SUBSCRIBED",),
            (
                ("SPECIAL-USE", ()),
                ("STATUS", (Atom(b"UIDNEXT"),)),
                ("CHILDREN", ()),
                ("SUBSCRIBED", ()),
            ),
        ),
        id="LIST-everything",
    ),
    pytest.param(
        b'a LIST "" * RETURN ()\r\n',
        "LIST",
        ListArgs(Mailbox(b""), (b"*",)),
        id="LIST-RETURN-empty",
    ),
    pytest.param(
        b'A002 LSUB "#news." "comp.mail.*"\r\n',
        "LSUB",
        ListArgs(Mailbox(b"#news."), (b"comp.mail.*",)),
        id="LSUB",
    ),
    pytest.param(b'a LSUB "" %\r\n', "LSUB", ListArgs(Mailbox(b""), (b"%",)), id="LSUB-percent"),
]

MESSAGES_APPEND = [
    pytest.param(
        b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello\r\n",
        "APPEND",
        AppendArgs(
            Mailbox(b"saved-messages"), (AppendMessage((b"\\Seen",), None, literal(b"hello")),)
        ),
        id="APPEND-flags",
    ),
    pytest.param(
        b"a APPEND box {5}\r\nhello\r\n",
        "APPEND",
        AppendArgs(Mailbox(b"box"), (AppendMessage(None, None, literal(b"hello")),)),
        id="APPEND-bare",
    ),
    pytest.param(
        b"a APPEND box () {5}\r\nhello\r\n",
        "APPEND",
        AppendArgs(Mailbox(b"box"), (AppendMessage((), None, literal(b"hello")),)),
        id="APPEND-empty-flags",
    ),
    pytest.param(
        b'a APPEND box (\\Seen \\Draft $Label) " 7-Feb-1994 21:52:25 -0800" {5+}\r\nhello\r\n',
        "APPEND",
        AppendArgs(
            Mailbox(b"box"),
            (
                AppendMessage(
                    (b"\\Seen", b"\\Draft", b"$Label"),
                    dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz(-8)),
                    literal(b"hello"),
                ),
            ),
        ),
        id="APPEND-date-time-literal-plus",
    ),
    pytest.param(
        b'a APPEND box "17-Jul-1996 02:44:25 +0530" {2}\r\nhi\r\n',
        "APPEND",
        AppendArgs(
            Mailbox(b"box"),
            (
                AppendMessage(
                    None,
                    dt.datetime(
                        1996,
                        7,
                        17,
                        2,
                        44,
                        25,
                        tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)),
                    ),
                    literal(b"hi"),
                ),
            ),
        ),
        id="APPEND-date-only",
    ),
    pytest.param(
        b"a APPEND box ~{3}\r\na\x00b\r\n",
        "APPEND",
        AppendArgs(Mailbox(b"box"), (AppendMessage(None, None, literal(b"a\x00b", binary=True)),)),
        id="APPEND-literal8",
    ),
    pytest.param(
        b'a APPEND box {1}\r\na (\\Seen) {2}\r\nbc "01-Jan-2000 00:00:00 +0000" {3+}\r\ndef\r\n',
        "APPEND",
        AppendArgs(
            Mailbox(b"box"),
            (
                AppendMessage(None, None, literal(b"a")),
                AppendMessage((b"\\Seen",), None, literal(b"bc")),
                AppendMessage(None, dt.datetime(2000, 1, 1, tzinfo=tz(0)), literal(b"def")),
            ),
        ),
        id="APPEND-MULTIAPPEND",
    ),
    pytest.param(
        b'34 append "Sent" (\\Seen) UTF8 (~{4}\r\nh\xc3\xa9l)\r\n',
        "APPEND",
        AppendArgs(
            Mailbox(b"Sent"),
            (AppendMessage((b"\\Seen",), None, literal(b"h\xc3\xa9l", binary=True), utf8=True),),
        ),
        id="APPEND-UTF8-K8",
    ),
    pytest.param(
        b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UIDVALIDITY=385759045'
        b'/;UID=20/;section=HEADER" TEXT {4}\r\n\r\n\r\n URL "/Drafts;UIDVALIDITY=385759045/;UID=20'
        b'/;section=1.MIME")\r\n',
        "APPEND",
        AppendArgs(
            Mailbox(b"Drafts"),
            (
                AppendMessage(
                    (b"\\Seen", b"\\Draft", b"$MDNSent"),
                    None,
                    None,
                    catenate=(
                        CatenatePart(
                            "URL", url=b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"
                        ),
                        CatenatePart("TEXT", text=literal(b"\r\n\r\n")),
                        CatenatePart(
                            "URL", url=b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"
                        ),
                    ),
                ),
            ),
        ),
        id="APPEND-CATENATE",
    ),
    pytest.param(
        b"a APPEND box CATENATE (TEXT {2+}\r\nab URL /x TEXT {3}\r\ncde) {2}\r\nzz\r\n",
        "APPEND",
        AppendArgs(
            Mailbox(b"box"),
            (
                AppendMessage(
                    None,
                    None,
                    None,
                    catenate=(
                        CatenatePart("TEXT", text=literal(b"ab")),
                        CatenatePart("URL", url=b"/x"),
                        CatenatePart("TEXT", text=literal(b"cde")),
                    ),
                ),
                AppendMessage(None, None, literal(b"zz")),
            ),
        ),
        id="APPEND-CATENATE-and-MULTIAPPEND",
    ),
]

SEARCHES = [
    pytest.param(b"a SEARCH ALL\r\n", SearchArgs(key("ALL")), id="ALL"),
    pytest.param(
        b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
        SearchArgs(
            key(
                "AND",
                key("FLAGGED"),
                key("SINCE", dt.date(1994, 2, 1)),
                key("NOT", key("FROM", b"Smith")),
            )
        ),
        id="rfc-example",
    ),
    pytest.param(
        b"a SEARCH OR (FROM a TO b) NOT (SEEN DELETED)\r\n",
        SearchArgs(
            key(
                "OR",
                key("AND", key("FROM", b"a"), key("TO", b"b")),
                key("NOT", key("AND", key("SEEN"), key("DELETED"))),
            )
        ),
        id="OR-NOT-nesting",
    ),
    pytest.param(
        b"a SEARCH OR OR SEEN DRAFT NOT NOT ANSWERED\r\n",
        SearchArgs(
            key("OR", key("OR", key("SEEN"), key("DRAFT")), key("NOT", key("NOT", key("ANSWERED"))))
        ),
        id="OR-OR-NOT-NOT",
    ),
    pytest.param(
        b"a SEARCH ((SEEN) (UNSEEN FLAGGED))\r\n",
        # a parenthesised single key is that key
        SearchArgs(key("AND", key("SEEN"), key("AND", key("UNSEEN"), key("FLAGGED")))),
        id="nested-parens",
    ),
    pytest.param(
        b"a SEARCH 1:3,5,7:*\r\n",
        SearchArgs(key("SEQSET", seq(b"1:3,5,7:*"))),
        id="sequence-set",
    ),
    pytest.param(
        b"a SEARCH $\r\n", SearchArgs(key("SEQSET", SequenceSet(saved=True))), id="SEARCHRES"
    ),
    pytest.param(
        b"a UID SEARCH UID $ SEEN\r\n",
        SearchArgs(key("AND", key("UID", SequenceSet(saved=True)), key("SEEN"))),
        id="UID-SEARCHRES",
    ),
    pytest.param(
        b"a SEARCH CHARSET UTF-8 TEXT {4}\r\n\xd0\xb6\xd0\xb6\r\n",
        SearchArgs(key("TEXT", b"\xd0\xb6\xd0\xb6"), b"UTF-8"),
        id="CHARSET-literal",
    ),
    pytest.param(
        b"a SEARCH CHARSET utf-8 ALL\r\n",
        SearchArgs(key("ALL"), b"utf-8"),
        id="CHARSET-E6-lower",
    ),
    pytest.param(
        b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994\r\n",
        SearchArgs(
            key("AND", key("FLAGGED"), key("SINCE", dt.date(1994, 2, 1))),
            None,
            (("MIN", ()), ("COUNT", ())),
        ),
        id="ESEARCH-RETURN",
    ),
    pytest.param(
        b"a SEARCH RETURN (MIN MAX COUNT ALL SAVE) UNSEEN\r\n",
        SearchArgs(
            key("UNSEEN"),
            None,
            (("MIN", ()), ("MAX", ()), ("COUNT", ()), ("ALL", ()), ("SAVE", ())),
        ),
        id="ESEARCH-every-option",
    ),
    pytest.param(
        b"a UID SEARCH RETURN () UNSEEN\r\n",
        SearchArgs(key("UNSEEN"), None, ()),
        id="ESEARCH-RETURN-empty-E3",
    ),
    pytest.param(
        b"a SEARCH RETURN (PARTIAL 1:500) ALL\r\n",
        SearchArgs(key("ALL"), None, (("PARTIAL", (Atom(b"1:500"),)),)),
        id="ESEARCH-PARTIAL",
    ),
    pytest.param(
        b"a UID SEARCH RETURN (MIN) CHARSET UTF-8 ALL\r\n",
        SearchArgs(key("ALL"), b"UTF-8", (("MIN", ()),)),
        id="ESEARCH-RETURN-CHARSET",
    ),
    pytest.param(
        b"a SEARCH MODSEQ 620162338\r\n",
        SearchArgs(key("MODSEQ", 620162338)),
        id="MODSEQ",
    ),
    pytest.param(
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338\r\n',
        SearchArgs(key("MODSEQ", b"/flags/\\draft", b"all", 620162338)),
        id="MODSEQ-entry",
    ),
    pytest.param(
        b'a SEARCH MODSEQ "/flags/$x" PRIV 5\r\n',
        SearchArgs(key("MODSEQ", b"/flags/$x", b"priv", 5)),
        id="MODSEQ-entry-priv",
    ),
    pytest.param(
        b'a SEARCH MODSEQ "/flags/$x" shared 5\r\n',
        SearchArgs(key("MODSEQ", b"/flags/$x", b"shared", 5)),
        id="MODSEQ-entry-shared",
    ),
]

SEARCH_KEYS = [
    *(pytest.param(name.lower().encode(), key(name), id=name) for name in NO_ARG_KEYS),
    *(pytest.param(name.encode() + b' "a b"', key(name, b"a b"), id=name) for name in STRING_KEYS),
    *(
        pytest.param(name.encode() + b" 29-Feb-2024", key(name, dt.date(2024, 2, 29)), id=name)
        for name in DATE_KEYS
    ),
    *(pytest.param(name.encode() + b" $Junk", key(name, b"$Junk"), id=name) for name in ATOM_KEYS),
    *(
        pytest.param(name.encode() + b" 9223372036854775807", key(name, 2**63 - 1), id=name)
        for name in NUMBER_KEYS
    ),
    pytest.param(b"OLDER 3600", key("OLDER", 3600), id="OLDER"),
    pytest.param(b"YOUNGER 60", key("YOUNGER", 60), id="YOUNGER"),
    pytest.param(b"HEADER Message-ID <x@y>", key("HEADER", b"Message-ID", b"<x@y>"), id="HEADER"),
    pytest.param(b'HEADER X-Spam ""', key("HEADER", b"X-Spam", b""), id="HEADER-empty"),
    pytest.param(b"UID 1:100,200", key("UID", seq(b"1:100,200")), id="UID"),
    pytest.param(b"NOT SEEN", key("NOT", key("SEEN")), id="NOT"),
    pytest.param(b"FUZZY SUBJECT x", key("FUZZY", key("SUBJECT", b"x")), id="FUZZY"),
    pytest.param(b"OR SEEN 5", key("OR", key("SEEN"), key("SEQSET", seq(b"5"))), id="OR"),
    pytest.param(b'ON "2-Mar-2024"', key("ON", dt.date(2024, 3, 2)), id="quoted-date"),
]


@pytest.mark.parametrize(("wire", "name", "expected"), ANY_STATE + AUTH + MAILBOXES + LISTS)
def test_args(wire: bytes, name: str, expected: object) -> None:
    command = parse(wire)
    assert command.name == name
    assert command.args == expected
    assert command.args is command.args  # parsed once


@pytest.mark.parametrize(("wire", "name", "expected"), MESSAGES_APPEND)
def test_append(wire: bytes, name: str, expected: AppendArgs) -> None:
    command = parse(wire)
    assert command.name == name
    args = command.args
    assert args == expected
    assert isinstance(args, AppendArgs)
    for got, want in zip(args.messages, expected.messages, strict=True):
        if want.data is not None:
            assert got.data is not None
            assert got.data.data == want.data.data
            assert got.data.binary == want.data.binary
            assert not got.data.streamed
        assert got.size == want.size


def test_append_sizes() -> None:
    args = parse(
        b"a APPEND box {3}\r\nabc CATENATE (TEXT {2}\r\nde URL /u TEXT {4}\r\nfghi)\r\n"
    ).args
    assert isinstance(args, AppendArgs)
    assert [m.size for m in args.messages] == [3, 6]


@pytest.mark.parametrize(("wire", "expected"), SEARCHES)
def test_search(wire: bytes, expected: SearchArgs) -> None:
    command = parse(wire)
    assert command.base_name == "SEARCH"
    assert command.args == expected


@pytest.mark.parametrize(("program", "expected"), SEARCH_KEYS)
def test_search_key(program: bytes, expected: SearchKey) -> None:
    for uid in (b"", b"UID "):
        args = parse(b"a " + uid + b"SEARCH " + program + b"\r\n").args
        assert args == SearchArgs(expected)


def test_search_walk() -> None:
    args = parse(b"a SEARCH OR (FROM a SEEN) NOT UID 5\r\n").args
    assert isinstance(args, SearchArgs)
    assert [k.name for k in args.key.walk()] == ["OR", "AND", "FROM", "SEEN", "NOT", "UID"]


FETCHES = [
    pytest.param(
        b"a FETCH 1 ALL\r\n",
        FetchArgs(seq(b"1"), (FLAGS, INTERNALDATE, SIZE, ENVELOPE), "ALL"),
        id="macro-ALL",
    ),
    pytest.param(
        b"a FETCH 1:* fast\r\n",
        FetchArgs(seq(b"1:*"), (FLAGS, INTERNALDATE, SIZE), "FAST"),
        id="macro-FAST",
    ),
    pytest.param(
        b"a003 fetch 12 full\r\n",
        FetchArgs(seq(b"12"), (FLAGS, INTERNALDATE, SIZE, ENVELOPE, FetchItem("BODY")), "FULL"),
        id="macro-FULL",
    ),
    pytest.param(
        b"a FETCH 2:4 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 "
        b"RFC822.HEADER RFC822.TEXT MODSEQ EMAILID X-GM-LABELS)\r\n",
        FetchArgs(
            seq(b"2:4"),
            tuple(
                FetchItem(n)
                for n in (
                    "UID",
                    "FLAGS",
                    "INTERNALDATE",
                    "RFC822.SIZE",
                    "ENVELOPE",
                    "BODY",
                    "BODYSTRUCTURE",
                    "RFC822",
                    "RFC822.HEADER",
                    "RFC822.TEXT",
                    "MODSEQ",
                    "EMAILID",
                    "X-GM-LABELS",
                )
            ),
        ),
        id="every-simple-item",
    ),
    pytest.param(b"a FETCH 1 FLAGS\r\n", FetchArgs(seq(b"1"), (FLAGS,)), id="single-item"),
    pytest.param(b"a FETCH 1 BODY[]\r\n", FetchArgs(seq(b"1"), (body(),)), id="BODY[]"),
    pytest.param(
        b"a fetch 1 body.peek[]\r\n", FetchArgs(seq(b"1"), (body(peek=True),)), id="BODY.PEEK[]"
    ),
    pytest.param(
        b"a FETCH 1 BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100>\r\n",
        FetchArgs(
            seq(b"1"),
            (body((1, 2), "HEADER.FIELDS", (b"From", b"To"), partial=(0, 100), peek=True),),
        ),
        id="BODY.PEEK-section-partial",
    ),
    pytest.param(
        b'a FETCH 1 (BODY[HEADER.FIELDS.NOT ("Subject" Received)] BODY[1.MIME] BODY[TEXT] '
        b"BODY[2.TEXT] BODY[HEADER] BODY[3] BODY[4.1.HEADER])\r\n",
        FetchArgs(
            seq(b"1"),
            (
                body((), "HEADER.FIELDS.NOT", (b"Subject", b"Received")),
                body((1,), "MIME"),
                body((), "TEXT"),
                body((2,), "TEXT"),
                body((), "HEADER"),
                body((3,)),
                body((4, 1), "HEADER"),
            ),
        ),
        id="sections",
    ),
    pytest.param(
        b"a FETCH 1 BODY[]<4294967296.1>\r\n",
        FetchArgs(seq(b"1"), (body(partial=(4294967296, 1)),)),
        id="partial-64-bit-offset",
    ),
    pytest.param(
        b"a FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<5.10> BINARY.SIZE[1] BINARY[])\r\n",
        FetchArgs(
            seq(b"1"),
            (
                body((1,), name="BINARY"),
                body((1, 2), partial=(5, 10), peek=True, name="BINARY"),
                body((1,), name="BINARY.SIZE"),
                body(name="BINARY"),
            ),
        ),
        id="BINARY",
    ),
    pytest.param(
        b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
        FetchArgs(seq(b"1:*"), (FLAGS,), changedsince=12345),
        id="CHANGEDSINCE",
    ),
    pytest.param(
        b"A02 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
        FetchArgs(seq(b"1:*"), (FLAGS,), changedsince=12345, vanished=True),
        id="CHANGEDSINCE-VANISHED",
    ),
    pytest.param(
        b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 0)\r\n",
        FetchArgs(seq(b"1:*"), (FLAGS,), changedsince=0),
        id="CHANGEDSINCE-0-K3",
    ),
    pytest.param(
        b"a FETCH 1 (FLAGS) (X-FOO 3 X-BAR)\r\n",
        FetchArgs(seq(b"1"), (FLAGS,), other_modifiers=(("X-FOO", Atom(b"3")), ("X-BAR", None))),
        id="other-modifiers",
    ),
    pytest.param(
        b"a FETCH 1,2,3:5,7:* FLAGS\r\n",
        FetchArgs(seq(b"1,2,3:5,7:*"), (FLAGS,)),
        id="sequence-set",
    ),
    pytest.param(
        b"a FETCH $ FLAGS\r\n", FetchArgs(SequenceSet(saved=True), (FLAGS,)), id="SEARCHRES"
    ),
    pytest.param(
        b"a UID FETCH 5:1 (FLAGS)\r\n",
        FetchArgs(SequenceSet(((5, 1),)), (FLAGS,)),
        id="descending-E6",
    ),
    pytest.param(
        b"a FETCH 4294967295 FLAGS\r\n",
        FetchArgs(seq(b"4294967295"), (FLAGS,)),
        id="max-number",
    ),
]


@pytest.mark.parametrize(("wire", "expected"), FETCHES)
def test_fetch(wire: bytes, expected: FetchArgs) -> None:
    command = parse(wire)
    assert command.base_name == "FETCH"
    assert command.args == expected


def test_fetch_macro_is_expanded_and_recorded() -> None:
    args = parse(b"a FETCH 1 FULL\r\n").args
    assert isinstance(args, FetchArgs)
    assert args.macro == "FULL"
    assert [bytes(i) for i in args.items] == [
        b"FLAGS",
        b"INTERNALDATE",
        b"RFC822.SIZE",
        b"ENVELOPE",
        b"BODY",
    ]


STORES = [
    pytest.param(
        b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
        StoreArgs(seq(b"2:4"), "+", "FLAGS", False, (b"\\Deleted",)),
        id="plus",
    ),
    pytest.param(
        b"a STORE 2:4 -flags.silent (\\Seen $Junk)\r\n",
        StoreArgs(seq(b"2:4"), "-", "FLAGS", True, (b"\\Seen", b"$Junk")),
        id="minus-silent",
    ),
    pytest.param(
        b"a STORE 1 FLAGS ()\r\n",
        StoreArgs(seq(b"1"), "", "FLAGS", False, ()),
        id="replace-empty",
    ),
    pytest.param(
        b"a STORE 1 FLAGS.SILENT \\Seen \\Flagged\r\n",
        StoreArgs(seq(b"1"), "", "FLAGS", True, (b"\\Seen", b"\\Flagged")),
        id="replace-silent-bare-flags",
    ),
    pytest.param(
        b"a005 store 12 +flags \\deleted\r\n",
        StoreArgs(seq(b"12"), "+", "FLAGS", False, (b"\\deleted",)),
        id="bare-flag",
    ),
    pytest.param(
        b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
        StoreArgs(seq(b"7,5,9"), "+", "FLAGS", True, (b"\\Deleted",), 320162338),
        id="UNCHANGEDSINCE",
    ),
    pytest.param(
        b"a STORE 5 (UNCHANGEDSINCE 0) FLAGS (\\Seen)\r\n",
        StoreArgs(seq(b"5"), "", "FLAGS", False, (b"\\Seen",), 0),
        id="UNCHANGEDSINCE-0",
    ),
    pytest.param(
        b"a STORE 1 +X-GM-LABELS (foo)\r\n",
        StoreArgs(seq(b"1"), "+", "X-GM-LABELS", False, (b"foo",)),
        id="other-item",
    ),
]


@pytest.mark.parametrize(("wire", "expected"), STORES)
def test_store(wire: bytes, expected: StoreArgs) -> None:
    for prefix in (b"", b"UID "):
        tag, rest = wire.split(b" ", 1)
        command = parse(tag + b" " + prefix + rest)
        assert command.base_name == "STORE"
        assert command.args == expected


COPIES = [
    pytest.param(b"A003 COPY 2:4 MEETING\r\n", "COPY", id="COPY"),
    pytest.param(b"a MOVE 2:4 MEETING\r\n", "MOVE", id="MOVE"),
    pytest.param(b"a UID COPY 2:4 MEETING\r\n", "UID COPY", id="UID-COPY"),
    pytest.param(b"a UID MOVE 2:4 {7}\r\nMEETING\r\n", "UID MOVE", id="UID-MOVE-literal"),
    pytest.param(b'a uid move 2:4 "MEETING"\r\n', "UID MOVE", id="UID-MOVE-quoted"),
]


@pytest.mark.parametrize(("wire", "name"), COPIES)
def test_copy_move(wire: bytes, name: str) -> None:
    command = parse(wire)
    assert command.name == name
    assert command.args == CopyArgs(seq(b"2:4"), Mailbox(b"MEETING"))


def test_mailbox_raw_is_kept() -> None:
    """INBOX compares case-insensitively (RFC 9051 section 5.1), but the bytes are kept."""
    args = parse(b"a002 select inbox\r\n").args
    assert isinstance(args, SelectArgs)
    assert args.mailbox.raw == b"inbox"
    assert args.mailbox.is_inbox
    args = parse(b"a SELECT &AMk-t&AOk-\r\n").args
    assert isinstance(args, SelectArgs)
    assert args.mailbox.raw == b"&AMk-t&AOk-"
    assert args.mailbox.decode() == "\u00c9t\u00e9"


def test_list_status_items() -> None:
    args = parse(b'a LIST "" % RETURN (CHILDREN STATUS (messages UIDNEXT))\r\n').args
    assert isinstance(args, ListArgs)
    assert args.status_items == ("MESSAGES", "UIDNEXT")
    plain = parse(b'a LIST "" % RETURN (CHILDREN)\r\n').args
    assert isinstance(plain, ListArgs)
    assert plain.status_items == ()


def test_repr_is_a_summary() -> None:
    command = parse(b"a7 uid fetch 1:* (FLAGS)\r\n")
    assert repr(command) == "Command(b'a7', 'UID FETCH')"


def test_login_secret_is_redacted() -> None:
    args = parse(b"a LOGIN alice hunter2\r\n").args
    assert isinstance(args, LoginArgs)
    assert args.password.reveal() == b"hunter2"
    assert "hunter2" not in repr(args)


@pytest.mark.parametrize(
    ("line", "mailbox", "strings"),
    [
        (b"a SETACL INBOX bob lrswi\r\n", b"INBOX", (b"bob", b"lrswi")),
        (b'a DELETEACL "Sent Items" "bob smith"\r\n', b"Sent Items", (b"bob smith",)),
        (b"a GETACL Shared/Team\r\n", b"Shared/Team", ()),
        (b"a LISTRIGHTS INBOX anyone\r\n", b"INBOX", (b"anyone",)),
        (b"a MYRIGHTS {5}\r\nINBOX\r\n", b"INBOX", ()),
        (b"a GETQUOTAROOT INBOX\r\n", b"INBOX", ()),
    ],
)
def test_acl_and_quotaroot_name_a_mailbox(
    line: bytes, mailbox: bytes, strings: tuple[bytes, ...]
) -> None:
    args = parse(line).args
    assert args == AclArgs(Mailbox(mailbox), strings)
    name = parse(line).name
    assert parse(build_command(b"a", name, args).raw).args == args  # round trip


@pytest.mark.parametrize("line", [b"a SETACL INBOX bob\r\n", b"a GETACL INBOX extra\r\n"])
def test_acl_arguments_are_counted(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse(line).args  # noqa: B018


# -- unknown commands: generic arguments, frame intact ---------------------------

GENERIC = [
    pytest.param(b"a GETQUOTA root\r\n", "GETQUOTA", (Atom(b"root"),), id="GETQUOTA"),
    pytest.param(b'a XLIST "" *\r\n', "XLIST", (b"", Atom(b"*")), id="XLIST"),
    pytest.param(
        b"a UID SORT (DATE) UTF-8 ALL\r\n",
        "UID SORT",
        ((Atom(b"DATE"),), Atom(b"UTF-8"), Atom(b"ALL")),
        id="UID-SORT",
    ),
    pytest.param(
        b'a X-UNKNOWN foo "bar" (1 2 (3)) NIL {3}\r\nabc BODY[HEADER.FIELDS (A B)]<0>\r\n',
        "X-UNKNOWN",
        (
            Atom(b"foo"),
            b"bar",
            (Atom(b"1"), Atom(b"2"), (Atom(b"3"),)),
            None,
            literal(b"abc"),
            Atom(b"BODY[HEADER.FIELDS (A B)]<0>"),
        ),
        id="every-value-kind",
    ),
    pytest.param(b"a X-NOTHING\r\n", "X-NOTHING", (), id="no-args"),
]


@pytest.mark.parametrize(("wire", "name", "values"), GENERIC)
def test_generic(wire: bytes, name: str, values: tuple[object, ...]) -> None:
    frame = frame_one(Role.SERVER, wire)
    command = Command.parse(frame)
    assert command.name == name
    assert command.args == GenericArgs(values)  # type: ignore[arg-type]
    assert command.frame is frame
    assert command.frame.raw == wire


# -- malformed arguments: a BAD tagged with the command's tag -------------------

ARG_ERRORS = [
    pytest.param(b"a1 NOOP x\r\n", id="NOOP-extra"),
    pytest.param(b"a1 IDLE x\r\n", id="IDLE-extra"),
    pytest.param(b"a1 EXPUNGE 1\r\n", id="EXPUNGE-extra"),
    pytest.param(b"a1 UID EXPUNGE\r\n", id="UID-EXPUNGE-missing"),
    pytest.param(b"a1 AUTHENTICATE\r\n", id="AUTHENTICATE-missing"),
    pytest.param(b'a1 AUTHENTICATE "PLAIN"\r\n', id="AUTHENTICATE-quoted"),
    pytest.param(b"a1 LOGIN\r\n", id="LOGIN-missing"),
    pytest.param(b"a1 LOGIN alice\r\n", id="LOGIN-one-arg"),
    pytest.param(b"a1 LOGIN alice secret extra\r\n", id="LOGIN-extra"),
    pytest.param(b"a1 LOGIN user@host pa(ss\r\n", id="LOGIN-unquoted-special-K13"),
    pytest.param(b"a1 ENABLE\r\n", id="ENABLE-empty"),
    pytest.param(b'a1 ID ("name")\r\n', id="ID-odd-pairs"),
    pytest.param(b'a1 ID ("a" "b" "c")\r\n', id="ID-odd-pairs-3"),
    pytest.param(b'a1 ID (NIL "x")\r\n', id="ID-NIL-key"),
    pytest.param(b'a1 ID "NIL"\r\n', id="ID-quoted-NIL-K6"),
    pytest.param(b"a1 ID\r\n", id="ID-missing"),
    pytest.param(b"a1 COMPRESS\r\n", id="COMPRESS-missing"),
    pytest.param(b"a1 SELECT\r\n", id="SELECT-missing"),
    pytest.param(b"a1 SELECT INBOX extra\r\n", id="SELECT-extra"),
    pytest.param(b"a1 SELECT INBOX ()\r\n", id="SELECT-empty-params"),
    pytest.param(b"a1 SELECT INBOX (CONDSTORE\r\n", id="SELECT-unbalanced"),
    pytest.param(b"a1 SELECT INBOX (QRESYNC)\r\n", id="QRESYNC-no-params"),
    pytest.param(b"a1 SELECT INBOX (QRESYNC (0 2))\r\n", id="QRESYNC-uidvalidity-0"),
    pytest.param(b"a1 SELECT INBOX (QRESYNC (1 2 (1:3)))\r\n", id="QRESYNC-half-seq-match"),
    pytest.param(b"a1 CREATE\r\n", id="CREATE-missing"),
    pytest.param(b"a1 CREATE x (USE \\Sent)\r\n", id="CREATE-USE-not-list"),
    pytest.param(b"a1 DELETE\r\n", id="DELETE-missing"),
    pytest.param(b"a1 RENAME old\r\n", id="RENAME-one-arg"),
    pytest.param(b"a1 SUBSCRIBE\r\n", id="SUBSCRIBE-missing"),
    pytest.param(b'a1 LIST ""\r\n', id="LIST-one-arg"),
    pytest.param(b'a1 LIST "" ()\r\n', id="LIST-empty-patterns"),
    pytest.param(b'a1 LIST "" * RETURN\r\n', id="LIST-RETURN-missing"),
    pytest.param(b'a1 LIST "" * FOO (X)\r\n', id="LIST-not-RETURN"),
    pytest.param(b'a1 LIST "" * RETURN (CHILDREN\r\n', id="LIST-RETURN-unbalanced"),
    pytest.param(b'a1 LSUB ""\r\n', id="LSUB-one-arg"),
    pytest.param(b"a1 STATUS INBOX\r\n", id="STATUS-missing-items"),
    pytest.param(b"a1 STATUS INBOX ()\r\n", id="STATUS-empty-items"),
    pytest.param(b"a1 STATUS INBOX messages\r\n", id="STATUS-not-list"),
    pytest.param(b"a1 APPEND box\r\n", id="APPEND-no-message"),
    pytest.param(b"a1 APPEND box (\\Seen)\r\n", id="APPEND-flags-only"),
    pytest.param(b"a1 APPEND box hello\r\n", id="APPEND-atom-message"),
    pytest.param(b'a1 APPEND box "bad date" {1}\r\nx\r\n', id="APPEND-bad-date"),
    pytest.param(b"a1 APPEND box (\\Seen {1}\r\nx\r\n", id="APPEND-unbalanced-flags"),
    pytest.param(b"a1 APPEND box UTF8 ({5}\r\nhello)\r\n", id="APPEND-UTF8-not-literal8"),
    pytest.param(b"a1 APPEND box CATENATE ()\r\n", id="CATENATE-empty"),
    pytest.param(b"a1 APPEND box CATENATE (FOO x)\r\n", id="CATENATE-bad-part"),
    pytest.param(b"a1 APPEND box {1}\r\nx extra\r\n", id="APPEND-trailing-garbage"),
    pytest.param(b"a1 SEARCH\r\n", id="SEARCH-missing"),
    pytest.param(b"a1 SEARCH BOGUS\r\n", id="SEARCH-unknown-key"),
    pytest.param(b"a1 SEARCH BOGUS 5\r\n", id="SEARCH-unknown-key-with-arg"),
    pytest.param(b"a1 SEARCH (\r\n", id="SEARCH-open-paren"),
    pytest.param(b"a1 SEARCH (SEEN\r\n", id="SEARCH-unbalanced"),
    pytest.param(b"a1 SEARCH SEEN)\r\n", id="SEARCH-extra-paren"),
    pytest.param(b"a1 SEARCH ()\r\n", id="SEARCH-empty-parens"),
    pytest.param(b"a1 SEARCH OR SEEN\r\n", id="SEARCH-OR-one"),
    pytest.param(b"a1 SEARCH NOT\r\n", id="SEARCH-NOT-none"),
    pytest.param(b"a1 SEARCH SINCE 31-Foo-2020\r\n", id="SEARCH-bad-month"),
    pytest.param(b"a1 SEARCH SINCE yesterday\r\n", id="SEARCH-bad-date"),
    pytest.param(b"a1 SEARCH 0\r\n", id="SEARCH-seq-0"),
    pytest.param(b"a1 SEARCH 1:3,$\r\n", id="SEARCH-dollar-in-set"),
    pytest.param(b"a1 SEARCH OLDER 0\r\n", id="SEARCH-OLDER-0"),
    pytest.param(b"a1 SEARCH LARGER x\r\n", id="SEARCH-LARGER-atom"),
    pytest.param(b"a1 SEARCH HEADER Subject\r\n", id="SEARCH-HEADER-one-arg"),
    pytest.param(b'a1 SEARCH MODSEQ "/flags/x" bogus 1\r\n', id="SEARCH-MODSEQ-entry-type"),
    pytest.param(b"a1 SEARCH RETURN (MIN\r\n", id="SEARCH-RETURN-unbalanced"),
    pytest.param(b"a1 FETCH\r\n", id="FETCH-missing"),
    pytest.param(b"a1 FETCH 1\r\n", id="FETCH-no-items"),
    pytest.param(b"a1 FETCH 0 FLAGS\r\n", id="FETCH-0"),
    pytest.param(b"a1 FETCH -1:5 FLAGS\r\n", id="FETCH-negative-K9"),
    pytest.param(b"a1 FETCH 4294967296 FLAGS\r\n", id="FETCH-number-too-big"),
    pytest.param(b"a1 FETCH 1 BODY[0]\r\n", id="FETCH-BODY[0]-K9"),
    pytest.param(b"a1 FETCH 1 BODY[1.0]\r\n", id="FETCH-BODY[1.0]"),
    pytest.param(b"a1 FETCH 1 BODY[MIME]\r\n", id="FETCH-MIME-without-part"),
    pytest.param(b"a1 FETCH 1 BODY[FOO]\r\n", id="FETCH-unknown-section"),
    pytest.param(b"a1 FETCH 1 BODY[1.2\r\n", id="FETCH-unclosed-section"),
    pytest.param(b"a1 FETCH 1 BODY[HEADER.FIELDS ()]\r\n", id="FETCH-empty-fields"),
    pytest.param(b"a1 FETCH 1 BODY[HEADER.FIELDS]\r\n", id="FETCH-fields-missing"),
    pytest.param(b"a1 FETCH 1 BODY[]<0>\r\n", id="FETCH-partial-without-length"),
    pytest.param(b"a1 FETCH 1 BODY[]<0.0>\r\n", id="FETCH-partial-length-0"),
    pytest.param(b"a1 FETCH 1 BINARY[TEXT]\r\n", id="FETCH-BINARY-text"),
    pytest.param(b"a1 FETCH 1 BINARY\r\n", id="FETCH-BINARY-no-section"),
    pytest.param(b"a1 FETCH 1 BINARY.SIZE[1]<0.5>\r\n", id="FETCH-BINARY.SIZE-partial"),
    pytest.param(b"a1 FETCH 1 BODY.PEEK\r\n", id="FETCH-PEEK-no-section"),
    pytest.param(b"a1 FETCH 1 UID[1]\r\n", id="FETCH-section-on-UID"),
    pytest.param(b"a1 FETCH 1 (FLAGS\r\n", id="FETCH-unbalanced"),
    pytest.param(b"a1 FETCH 1 FLAGS)\r\n", id="FETCH-extra-paren"),
    pytest.param(b"a1 FETCH 1 ()\r\n", id="FETCH-empty-list"),
    pytest.param(b"a1 FETCH 1 FLAGS UID\r\n", id="FETCH-two-bare-items"),
    pytest.param(b"a1 FETCH 1 (FLAGS) (CHANGEDSINCE)\r\n", id="CHANGEDSINCE-missing"),
    pytest.param(b"a1 FETCH 1 (FLAGS) (CHANGEDSINCE -1)\r\n", id="CHANGEDSINCE-negative"),
    pytest.param(b"a1 UID FETCH -1,6 (FLAGS)\r\n", id="UID-FETCH-negative-K9"),
    pytest.param(b"a1 STORE 1\r\n", id="STORE-missing"),
    pytest.param(b"a1 STORE 0 FLAGS (\\Seen)\r\n", id="STORE-0"),
    pytest.param(b"a1 STORE 1 *FLAGS (\\Seen)\r\n", id="STORE-bad-mode"),
    pytest.param(b"a1 STORE 1 +FLAGS\r\n", id="STORE-no-flags"),
    pytest.param(b"a1 STORE 1 FLAGS (\\Seen\r\n", id="STORE-unbalanced"),
    pytest.param(b"a1 STORE 1 (UNCHANGEDSINCE) FLAGS (\\Seen)\r\n", id="UNCHANGEDSINCE-missing"),
    pytest.param(b"a1 STORE 1 (FOO 1) FLAGS (\\Seen)\r\n", id="STORE-unknown-modifier"),
    pytest.param(b"a1 STORE 1 +FLAGS (\\Seen) extra\r\n", id="STORE-extra"),
    pytest.param(b"a1 COPY 1\r\n", id="COPY-no-mailbox"),
    pytest.param(b"a1 COPY MEETING\r\n", id="COPY-no-set"),
    pytest.param(b"a1 MOVE -1 x\r\n", id="MOVE-negative"),
    pytest.param(b"a1 UID COPY 1:0 x\r\n", id="UID-COPY-0"),
]


@pytest.mark.parametrize("wire", ARG_ERRORS)
def test_arg_error(wire: bytes) -> None:
    command = parse(wire)
    assert command.tag == b"a1"
    with pytest.raises(ParseError) as excinfo:
        _ = command.args
    reply = excinfo.value.reply
    assert (reply.kind, reply.tag, reply.code) == ("BAD", b"a1", None)
    assert reply.to_bytes().startswith(b"a1 BAD ")
    assert reply.to_bytes().endswith(b"\r\n")
    assert b"\r" not in reply.to_bytes()[:-2]


BAD_INITIAL_RESPONSES = [
    pytest.param(b"a1 AUTHENTICATE PLAIN a b\r\n", id="SP-in-initial-response"),
    pytest.param(b"a1 AUTHENTICATE PLAIN !!bad!!\r\n", id="not-base64"),
]


@pytest.mark.parametrize("wire", BAD_INITIAL_RESPONSES)
def test_authenticate_initial_response_must_be_base64(wire: bytes) -> None:
    command = parse(wire)
    with pytest.raises(ParseError) as excinfo:
        _ = command.args
    assert (excinfo.value.reply.kind, excinfo.value.reply.tag) == ("BAD", b"a1")


TILDE_ATOMS = [
    pytest.param(
        b"A202 LIST ~/Mail/ %\r\n",
        ListArgs(Mailbox(b"~/Mail/"), (b"%",)),
        id="LIST-reference",
    ),
    pytest.param(b"a SELECT ~archive\r\n", SelectArgs(Mailbox(b"~archive")), id="SELECT"),
]


@pytest.mark.parametrize(("wire", "expected"), TILDE_ATOMS)
def test_astring_atom_starting_with_tilde(wire: bytes, expected: object) -> None:
    # RFC 3501 section 6.3.8 uses exactly this LIST as an example; "~" is an ATOM-CHAR.
    assert parse(wire).args == expected


# -- literals that stream: the skeleton parses --------------------------------


def stream_events(wire: bytes, **framer_args: Any) -> list[object]:
    framer = Framer(Role.SERVER, **framer_args)
    framer.receive_data(wire)
    events: list[object] = []
    while True:
        event = framer.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, ContinuationRequest):
            framer.accept_literal()


def test_streamed_append_literal_parses_from_skeleton() -> None:
    wire = b"A1 APPEND Sent (\\Seen) {10}\r\n0123456789 {3}\r\nabc\r\n"
    events = stream_events(wire, inline_literal=4)

    # The continuation preview already parses: the first message is streamed.
    request = events[0]
    assert isinstance(request, ContinuationRequest)
    preview = Command.parse(request.frame).args
    assert isinstance(preview, AppendArgs)
    assert preview.mailbox == Mailbox(b"Sent")
    first = preview.messages[0].data
    assert first is not None
    assert (first.streamed, first.size, first.binary) == (True, 10, False)

    parts = [e for e in events if isinstance(e, FramePart)]
    chunks = [e for e in events if isinstance(e, LiteralChunk)]
    assert bytes(b"".join(bytes(c.data) for c in chunks)) == b"0123456789"
    # relay: the parts plus the streamed data are the input, byte for byte
    relayed = b""
    for event in events:
        if isinstance(event, FramePart):
            relayed += event.raw
        elif isinstance(event, LiteralChunk):
            relayed += bytes(event.data)
    assert relayed == wire

    last = parts[-1]
    assert last.literal is None
    command = Command.parse(last.frame)
    assert (command.tag, command.name) == (b"A1", "APPEND")
    args = command.args
    assert isinstance(args, AppendArgs)
    assert [m.flags for m in args.messages] == [(b"\\Seen",), None]
    big, small = (m.data for m in args.messages)
    assert big is not None
    assert small is not None
    assert (big.streamed, big.size) == (True, 10)
    assert (small.streamed, small.size, small.data) == (False, 3, b"abc")
    assert [m.size for m in args.messages] == [10, 3]
    with pytest.raises(ValueError, match="streamed"):
        _ = big.data


def test_streamed_literal8_utf8_append() -> None:
    wire = b"a APPEND Sent UTF8 (~{20+}\r\n" + b"x" * 20 + b")\r\n"
    events = stream_events(wire, inline_literal=8)
    part = next(e for e in events if isinstance(e, FramePart) and e.literal is None)
    args = Command.parse(part.frame).args
    assert isinstance(args, AppendArgs)
    (message,) = args.messages
    assert message.utf8
    assert message.data is not None
    assert (message.data.streamed, message.data.binary, message.data.size) == (True, True, 20)


def test_streamed_login_literal_cannot_be_copied() -> None:
    """A credential too large to keep inline is a parse error, not a crash."""
    wire = b"a1 LOGIN {10}\r\n0123456789 pw\r\n"
    events = stream_events(wire, inline_literal=4)
    part = next(e for e in events if isinstance(e, FramePart) and e.literal is None)
    command = Command.parse(part.frame)
    with pytest.raises(ParseError) as excinfo:
        _ = command.args
    assert (excinfo.value.reply.kind, excinfo.value.reply.tag) == ("BAD", b"a1")


@pytest.mark.parametrize(
    "line",
    [
        b"a GETMETADATA (MAXSIZE 1024 DEPTH 1) INBOX (/private/comment /shared/comment)\r\n",
        b'a GETMETADATA "" /shared/admin\r\n',
        b'a SETMETADATA Junk (/private/comment "x y")\r\n',
        b"a SETMETADATA INBOX (/private/comment NIL)\r\n",
        b"a SETMETADATA INBOX (/private/comment {3}\r\nabc)\r\n",
    ],
)
def test_metadata_names_a_mailbox(line: bytes) -> None:
    command = parse(line)
    args = command.args
    assert isinstance(args, MetadataArgs)
    again = parse(build_command(b"a", command.name, args).raw).args
    assert again == args


def test_metadata_needs_entries() -> None:
    with pytest.raises(ParseError):
        parse(b"a GETMETADATA INBOX\r\n").args  # noqa: B018
