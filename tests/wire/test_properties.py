"""Hypothesis properties of the codec.

a. Framing does not depend on how the bytes are split into reads.
b. Arbitrary (and mutated valid) bytes make the framer and the parsers raise
   nothing but RemoteProtocolError.
c. Serializing typed command arguments and response data, framing the result and
   parsing it gives the same values back (and LITERAL+ frames become the sync ones).
d. Modified UTF-7 round trips, and decoding accepts only canonical encodings.

The settings are derandomized (the same examples every run) so the suite is
deterministic; raise max_examples locally to hunt. Bugs the properties led to are
pinned by focused regression tests at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import string
from typing import Any

import pytest
from codec_helpers import DATE_KEYS, NO_ARG_KEYS, STRING_KEYS, literal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapproxy.wire import (
    NEED_DATA,
    Atom,
    BadFrame,
    Command,
    ContinuationRequest,
    EndOfStream,
    Frame,
    FramePart,
    Framer,
    Literal,
    LiteralChunk,
    Mailbox,
    RemoteProtocolError,
    Response,
    Role,
    Secret,
    build_command,
    build_response,
)
from imapproxy.wire.bodystructure import Address, Body, BodyPart, Envelope, Multipart
from imapproxy.wire.commands import (
    AppendArgs,
    AppendMessage,
    CatenatePart,
    CopyArgs,
    EnableArgs,
    FetchArgs,
    IdArgs,
    ListArgs,
    LoginArgs,
    MailboxArgs,
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
    IdData,
    ListData,
    MailboxStatus,
    NamespaceData,
    NamespaceDescriptor,
    ResponseCode,
    SearchData,
    Unparsed,
    VanishedData,
)
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import FetchItem, Section, SequenceSet, mutf7_decode, mutf7_encode

# Derandomized: every run tries the same examples, so the suite is deterministic (a
# failure is reproducible, not a one-off). Raise max_examples locally to hunt for bugs.
FAST = settings(
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
MEDIUM = settings(
    deadline=None,
    max_examples=120,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

U32 = 2**32 - 1
U63 = 2**63 - 1


def lit(data: bytes, *, plus: bool = False, binary: bool = False) -> bytes:
    return b"%s{%d%s}\r\n%s" % (b"~" if binary else b"", len(data), b"+" if plus else b"", data)


# -- driving a framer ------------------------------------------------------------------


def run_framer(
    framer: Framer, chunks: list[bytes], *, eof: bool = False, accept: bool = True
) -> list[Any]:
    """Every event of ``chunks``, normalised (chunks as bytes, errors as replies)."""
    out: list[Any] = []

    def pump() -> bool:
        while True:
            try:
                event = framer.next_event()
            except RemoteProtocolError as exc:
                out.append(("fatal", exc.reply))
                return False
            if event is NEED_DATA:
                return True
            if isinstance(event, LiteralChunk):
                out.append(("chunk", bytes(event.data), event.remaining))
            elif isinstance(event, BadFrame):
                out.append(("bad", event.error.reply))
            elif isinstance(event, ContinuationRequest):
                out.append(("continue", event.frame, event.literal))
                if accept:
                    framer.accept_literal()
                else:
                    out.append(("rejected", framer.reject_literal()))
            else:
                out.append(event)
                if isinstance(event, EndOfStream):
                    return False

    for chunk in chunks:
        framer.receive_data(chunk)
        if not pump():
            return out
    if eof:
        framer.receive_eof()
        pump()
    return out


def merge_chunks(events: list[Any]) -> list[Any]:
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


def frame_one(role: Role, raw: bytes) -> Frame:
    """Frame ``raw`` (accepting continuations); it must be exactly one frame."""
    framer = Framer(role)
    events = [
        e for e in run_framer(framer, [raw]) if not (isinstance(e, tuple) and e[0] == "continue")
    ]
    assert len(events) == 1, events
    assert isinstance(events[0], Frame), events
    assert framer.buffered == 0
    return events[0]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# -- basic strategies -------------------------------------------------------------------

ATOM_CHARS = string.ascii_letters + string.digits + "-._+="
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def not_nil(value: bytes) -> bool:
    return value.upper() != b"NIL"


atom_bytes = st.text(ATOM_CHARS, min_size=1, max_size=8).map(str.encode).filter(not_nil)
upper_names = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_uppercase),
    st.text(string.ascii_uppercase + string.digits + "-", max_size=7),
).filter(lambda s: s != "NIL")
quotable = st.text(PRINTABLE, max_size=12).map(str.encode)
interesting_bytes = st.sampled_from(
    [
        b"",
        b"INBOX",
        b"inbox",
        b"NIL",
        b"nil",
        b"Sent Items",
        b'a"b\\c',
        b"\\",
        b'"',
        b"\r\n",
        b"a\rb",
        b"x\x00y",
        b"\x00",
        "Entwürfe".encode(),
        b"Entw&APw-rfe",
        b"%*",
        b"a{3}",
        b"{5}",
        b"]",
        b"(",
        b"~{1}",
        b"a1 DELETE INBOX\r\n",
        b"x" * 1100,
        b"~peter/mail/&U,BTFw-",
    ]
)
# NUL cannot travel in a string at all (only in literal8, which the grammar has for
# message data alone): the builder refuses it (tests/wire/test_build.py).
any_bytes = st.one_of(interesting_bytes, st.binary(max_size=16), quotable).filter(
    lambda b: b"\x00" not in b
)
# Where the grammar allows an atom (astring, list-mailbox): "~peter" is an atom, not
# literal8 (see test_astring_starting_with_tilde).
astrings = any_bytes
numbers32 = st.one_of(st.integers(1, 20), st.integers(1, U32))
numbers64 = st.one_of(st.integers(0, 20), st.integers(0, U63))
seq_number = st.one_of(numbers32, st.none())
seq_ranges = st.one_of(seq_number.map(lambda n: (n, n)), st.tuples(seq_number, seq_number))
sequence_sets = st.one_of(
    st.just(SequenceSet(saved=True)),
    st.lists(seq_ranges, min_size=1, max_size=4).map(lambda r: SequenceSet(tuple(r))),
)
plain_sequence_sets = st.lists(seq_ranges, min_size=1, max_size=4).map(
    lambda r: SequenceSet(tuple(r))
)
mailboxes = astrings.map(Mailbox)
flags = st.one_of(
    st.sampled_from([b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Draft", b"\\*"]),
    atom_bytes,
    atom_bytes.map(lambda a: b"\\" + a),
)
flag_lists = st.lists(flags, max_size=4).map(tuple)
literals = st.builds(literal, st.binary(max_size=40))
datetimes = st.builds(
    lambda d, off: d.replace(microsecond=0, tzinfo=dt.timezone(dt.timedelta(minutes=off))),
    st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))

# Generic values (unknown parameters, extension data): what the reader gives back.
generic_leaves = st.one_of(
    st.none(),
    atom_bytes.map(Atom),
    quotable,
    st.builds(literal, st.binary(max_size=12).filter(lambda b: b"\x00" not in b)),
)
generic_values = st.recursive(
    generic_leaves, lambda children: st.lists(children, max_size=3).map(tuple), max_leaves=6
)

# -- command strategies ---------------------------------------------------------------------

qresync_params = st.builds(
    QresyncParams,
    numbers32,
    numbers64,
    st.none() | sequence_sets,
    st.none() | st.tuples(sequence_sets, sequence_sets),
)


def parameters(exclude: tuple[str, ...]) -> st.SearchStrategy[tuple[tuple[str, Any], ...]]:
    """SELECT/FETCH parameters: values are RFC 4466 tagged-ext-vals (a number, a
    sequence set or a parenthesised list), or absent."""
    named = upper_names.filter(lambda n: n not in exclude)
    ext_values = st.one_of(
        st.none(),
        numbers64.map(lambda n: Atom(b"%d" % n)),
        plain_sequence_sets.map(lambda s: Atom(bytes(s))),
        st.lists(generic_values, max_size=3).map(tuple),
    )
    return st.lists(st.tuples(named, ext_values), max_size=3).map(tuple)


select_other = parameters(("CONDSTORE", "QRESYNC"))
options = st.lists(
    st.tuples(
        upper_names.filter(lambda n: n != "PARTIAL"),
        st.lists(generic_values, max_size=3).map(tuple),
    ),
    max_size=3,
).map(tuple)
list_patterns = st.one_of(astrings, st.sampled_from([b"*", b"%", b"INBOX/%", b"a*b%"]))

section_parts = st.lists(st.integers(1, 30), max_size=3).map(tuple)
header_fields = st.lists(atom_bytes, min_size=1, max_size=3).map(tuple)


@st.composite
def sections(draw: st.DrawFn, *, binary: bool = False) -> Section:
    part = draw(section_parts)
    if binary:
        return Section(part)
    choices = [None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    if part:
        choices.append("MIME")
    text = draw(st.sampled_from(choices))
    fields = draw(header_fields) if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") else ()
    return Section(part, text, fields)


request_partials = st.none() | st.tuples(numbers64, numbers32)


@st.composite
def request_fetch_items(draw: st.DrawFn) -> FetchItem:
    kind = draw(st.sampled_from(["simple", "BODY", "BINARY", "BINARY.SIZE"]))
    if kind == "simple":
        name = draw(
            st.sampled_from(
                [
                    "UID",
                    "FLAGS",
                    "ENVELOPE",
                    "INTERNALDATE",
                    "RFC822.SIZE",
                    "RFC822",
                    "RFC822.HEADER",
                    "RFC822.TEXT",
                    "BODY",
                    "BODYSTRUCTURE",
                    "MODSEQ",
                    "X-GM-MSGID",
                    "EMAILID",
                ]
            )
        )
        return FetchItem(name)
    if kind == "BINARY.SIZE":
        return FetchItem(kind, draw(sections(binary=True)))
    section = draw(sections(binary=kind == "BINARY"))
    return FetchItem(kind, section, draw(request_partials), draw(st.booleans()))


@st.composite
def fetch_args(draw: st.DrawFn) -> FetchArgs:
    macro = draw(st.sampled_from([None, None, "ALL", "FAST", "FULL"]))
    macros = {
        "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
        "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
        "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
    }
    if macro is None:
        items = tuple(draw(st.lists(request_fetch_items(), min_size=1, max_size=4)))
    else:
        items = tuple(FetchItem(n) for n in macros[macro])
    other = draw(parameters(("CHANGEDSINCE", "VANISHED")))
    return FetchArgs(
        draw(sequence_sets),
        items,
        macro,
        draw(st.none() | numbers64),
        draw(st.booleans()),
        other,
    )


@st.composite
def append_messages(draw: st.DrawFn) -> AppendMessage:
    msg_flags = draw(st.none() | flag_lists)
    date = draw(st.none() | datetimes)
    kind = draw(st.sampled_from(["literal", "literal", "utf8", "catenate"]))
    if kind == "utf8":
        return AppendMessage(
            msg_flags, date, literal(draw(st.binary(max_size=30)), binary=True), True
        )
    if kind == "catenate":
        parts = draw(
            st.lists(
                st.one_of(
                    st.builds(lambda lt: CatenatePart("TEXT", text=lt), literals),
                    st.builds(lambda u: CatenatePart("URL", url=u), astrings),
                ),
                min_size=1,
                max_size=3,
            )
        )
        return AppendMessage(msg_flags, date, None, catenate=tuple(parts))
    data = literal(draw(st.binary(max_size=40)), binary=draw(st.booleans()))
    return AppendMessage(msg_flags, date, data)


search_leaves = st.one_of(
    st.sampled_from(NO_ARG_KEYS).map(SearchKey),
    st.builds(lambda n, v: SearchKey(n, (v,)), st.sampled_from(STRING_KEYS), astrings),
    st.builds(lambda n, v: SearchKey(n, (v,)), st.sampled_from(DATE_KEYS), dates),
    st.builds(
        lambda n, v: SearchKey(n, (v,)),
        st.sampled_from(["KEYWORD", "UNKEYWORD", "EMAILID", "THREADID", "FILTER"]),
        atom_bytes,
    ),
    st.builds(
        lambda n, v: SearchKey(n, (v,)),
        st.sampled_from(["LARGER", "SMALLER", "X-GM-MSGID", "X-GM-THRID"]),
        numbers64,
    ),
    st.builds(lambda n, v: SearchKey(n, (v,)), st.sampled_from(["OLDER", "YOUNGER"]), numbers32),
    st.builds(lambda f, v: SearchKey("HEADER", (f, v)), astrings, astrings),
    st.builds(lambda s: SearchKey("UID", (s,)), sequence_sets),
    st.builds(lambda s: SearchKey("SEQSET", (s,)), sequence_sets),
    st.builds(lambda n: SearchKey("MODSEQ", (n,)), numbers64),
    st.builds(
        lambda e, t, n: SearchKey("MODSEQ", (b"/flags/" + e, t, n)),
        atom_bytes,
        st.sampled_from([b"priv", b"shared", b"all"]),
        numbers64,
    ),
)


def _search_node(children: st.SearchStrategy[SearchKey]) -> st.SearchStrategy[SearchKey]:
    return st.one_of(
        st.builds(lambda k: SearchKey("NOT", (k,)), children),
        st.builds(lambda k: SearchKey("FUZZY", (k,)), children),
        st.builds(lambda a, b: SearchKey("OR", (a, b)), children, children),
        st.lists(children, min_size=2, max_size=3).map(lambda ks: SearchKey("AND", tuple(ks))),
    )


search_keys = st.recursive(search_leaves, _search_node, max_leaves=8)
# The top level is one key, or an implicit AND of several (written without parentheses).
search_programs = st.one_of(
    search_keys.filter(lambda k: k.name != "AND" or len(k.args) >= 2),
    st.lists(search_keys, min_size=2, max_size=3).map(lambda ks: SearchKey("AND", tuple(ks))),
)

id_params = st.none() | st.lists(
    st.tuples(any_bytes, st.none() | any_bytes), min_size=1, max_size=3
).map(tuple)


def _cmd(name: str | list[str], args: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    names = st.sampled_from(name if isinstance(name, list) else [name])
    return st.tuples(names, args)


commands = st.one_of(
    _cmd("LOGIN", st.builds(LoginArgs, astrings, astrings.map(Secret))),
    _cmd(
        ["SELECT", "EXAMINE"],
        st.builds(SelectArgs, mailboxes, st.booleans(), st.none() | qresync_params, select_other),
    ),
    _cmd(["DELETE", "SUBSCRIBE", "UNSUBSCRIBE"], st.builds(MailboxArgs, mailboxes)),
    _cmd("RENAME", st.builds(RenameArgs, mailboxes, mailboxes)),
    _cmd(
        "LIST",
        st.builds(
            ListArgs,
            mailboxes,
            st.lists(list_patterns, min_size=1, max_size=3).map(tuple),
            st.lists(upper_names, max_size=2).map(tuple),
            options,
        ),
    ),
    _cmd("LSUB", st.builds(lambda r, p: ListArgs(r, (p,)), mailboxes, list_patterns)),
    _cmd(
        "STATUS",
        st.builds(StatusArgs, mailboxes, st.lists(upper_names, min_size=1, max_size=4).map(tuple)),
    ),
    _cmd(["COPY", "MOVE", "UID COPY", "UID MOVE"], st.builds(CopyArgs, sequence_sets, mailboxes)),
    _cmd(["FETCH", "UID FETCH"], fetch_args()),
    _cmd(
        ["STORE", "UID STORE"],
        st.builds(
            StoreArgs,
            sequence_sets,
            st.sampled_from(["", "+", "-"]),
            st.sampled_from(["FLAGS", "X-GM-LABELS"]),
            st.booleans(),
            flag_lists,
            st.none() | numbers64,
        ),
    ),
    _cmd(
        "APPEND",
        st.builds(
            AppendArgs, mailboxes, st.lists(append_messages(), min_size=1, max_size=3).map(tuple)
        ),
    ),
    _cmd(
        ["SEARCH", "UID SEARCH"],
        st.builds(SearchArgs, search_programs, st.none() | astrings, st.none() | options),
    ),
    _cmd("ID", st.builds(IdArgs, id_params)),
    _cmd(
        "ENABLE",
        st.lists(
            st.text(string.ascii_letters + string.digits + "=+-", min_size=1, max_size=12).filter(
                lambda s: s.upper() != "NIL"
            ),
            min_size=1,
            max_size=3,
        ).map(lambda caps: EnableArgs(tuple(caps))),
    ),
    _cmd("UID EXPUNGE", st.builds(UidExpungeArgs, sequence_sets)),
)


# -- response strategies ----------------------------------------------------------------

status_text = st.text(PRINTABLE.replace("{", "").replace("[", ""), min_size=1, max_size=20).filter(
    lambda t: not t.startswith(" ")
)
response_codes = st.builds(
    ResponseCode,
    st.text(string.ascii_uppercase + string.digits + "-.", min_size=1, max_size=12),
    st.one_of(
        st.just(b""),
        st.text(PRINTABLE.replace("]", ""), min_size=1, max_size=20)
        .filter(lambda t: not t.startswith(" "))
        .map(str.encode),
    ),
)


@st.composite
def conditions(draw: st.DrawFn) -> tuple[Condition, dict[str, Any]]:
    tagged = draw(st.booleans())
    statuses = ["OK", "NO", "BAD", "BYE"] + ([] if tagged else ["PREAUTH"])
    text = draw(st.one_of(status_text.map(str.encode), st.just("Entwürfe ok".encode())))
    condition = Condition(draw(st.sampled_from(statuses)), draw(st.none() | response_codes), text)
    return condition, {"tag": b"a1"} if tagged else {}


delimiters = st.none() | st.sampled_from([b"/", b".", b"\\", b'"', b"|"])
descriptors = st.builds(
    NamespaceDescriptor,
    any_bytes,
    delimiters,
    st.lists(st.tuples(quotable, st.lists(quotable, max_size=3).map(tuple)), max_size=2).map(tuple),
)
namespace_groups = st.none() | st.lists(descriptors, max_size=2).map(tuple)
nstrings = st.none() | any_bytes
addresses = st.builds(Address, nstrings, nstrings, nstrings, nstrings)
address_lists = st.none() | st.lists(addresses, min_size=1, max_size=3).map(tuple)
envelopes = st.builds(
    Envelope,
    nstrings,
    nstrings,
    address_lists,
    address_lists,
    address_lists,
    address_lists,
    address_lists,
    address_lists,
    nstrings,
    nstrings,
)
mime_tokens = st.text(string.ascii_uppercase + string.digits + "-", min_size=1, max_size=10)
body_params = st.lists(st.tuples(any_bytes, any_bytes), max_size=2).map(tuple)
dispositions = st.none() | st.tuples(any_bytes, body_params)
languages = st.none() | st.lists(any_bytes, max_size=3).map(tuple)
extension_values = st.lists(st.one_of(atom_bytes.map(Atom), quotable, st.none()), max_size=2).map(
    tuple
)


def body_parts(extensible: bool, children: st.SearchStrategy[Body]) -> st.SearchStrategy[BodyPart]:
    @st.composite
    def build(draw: st.DrawFn) -> BodyPart:
        kind = draw(st.sampled_from(["TEXT", "OTHER", "MESSAGE"]))
        if kind == "TEXT":
            type_, subtype = "TEXT", draw(st.sampled_from(["PLAIN", "HTML", "X-CSV"]))
        elif kind == "MESSAGE":
            type_, subtype = "MESSAGE", draw(st.sampled_from(["RFC822", "GLOBAL"]))
        else:
            type_ = draw(mime_tokens.filter(lambda t: t not in ("TEXT", "MESSAGE")))
            subtype = draw(mime_tokens)
        lines = draw(st.integers(0, U32)) if kind in ("TEXT", "MESSAGE") else None
        envelope = draw(envelopes) if kind == "MESSAGE" else None
        inner = draw(children) if kind == "MESSAGE" else None
        ext: dict[str, Any] = {}
        if extensible:
            ext = {
                "md5": draw(nstrings),
                "disposition": draw(dispositions),
                "language": draw(languages),
                "location": draw(nstrings),
                "extensions": draw(extension_values),
            }
        return BodyPart(
            type_,
            subtype,
            draw(body_params),
            draw(nstrings),
            draw(nstrings),
            draw(any_bytes),
            draw(st.integers(0, U32)),
            lines,
            envelope,
            inner,
            **ext,
        )

    return build()


def multiparts(extensible: bool, children: st.SearchStrategy[Body]) -> st.SearchStrategy[Multipart]:
    @st.composite
    def build(draw: st.DrawFn) -> Multipart:
        parts = tuple(draw(st.lists(children, min_size=1, max_size=3)))
        subtype = draw(mime_tokens)
        if not extensible:
            return Multipart(parts, subtype)
        return Multipart(
            parts,
            subtype,
            draw(body_params),
            draw(dispositions),
            draw(languages),
            draw(nstrings),
            draw(extension_values),
        )

    return build()


def bodies(extensible: bool) -> st.SearchStrategy[Body]:
    leaf: st.SearchStrategy[Body] = body_parts(extensible, st.nothing())
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            body_parts(extensible, children), multiparts(extensible, children)
        ),
        max_leaves=4,
    )


response_partials = st.none() | st.tuples(st.integers(0, U32), st.none())
fetch_values = st.one_of(
    st.tuples(st.just(FetchItem("UID")), numbers32),
    st.tuples(st.just(FetchItem("RFC822.SIZE")), numbers64),
    st.tuples(st.just(FetchItem("FLAGS")), flag_lists),
    st.tuples(st.just(FetchItem("MODSEQ")), numbers64),
    st.tuples(st.just(FetchItem("INTERNALDATE")), datetimes),
    st.tuples(
        st.builds(lambda s, p: FetchItem("BODY", s, p), sections(), response_partials),
        st.none() | st.builds(literal, st.binary(max_size=40), binary=st.booleans()),
    ),
    st.tuples(
        st.builds(lambda s: FetchItem("BINARY", s), sections(binary=True)),
        st.builds(literal, st.binary(max_size=40).filter(lambda b: b"\x00" not in b)),
    ),
    st.tuples(st.builds(lambda s: FetchItem("BINARY.SIZE", s), sections(binary=True)), numbers64),
    st.tuples(
        st.sampled_from(
            [FetchItem("RFC822"), FetchItem("RFC822.HEADER"), FetchItem("RFC822.TEXT")]
        ),
        st.one_of(st.none(), quotable, literals),
    ),
    st.tuples(st.just(FetchItem("ENVELOPE")), envelopes),
    st.tuples(st.just(FetchItem("BODYSTRUCTURE")), bodies(True)),
    st.tuples(st.just(FetchItem("BODY")), bodies(False)),
)

responses_without_namespace = st.one_of(
    conditions(),
    st.tuples(
        st.builds(
            ContinuationData,
            st.text(PRINTABLE, max_size=20).filter(lambda t: not t.startswith(" ")).map(str.encode),
        ),
        st.just({}),
    ),
    st.tuples(
        st.builds(
            CapabilityData,
            st.lists(
                st.sampled_from(
                    ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "AUTH=PLAIN", "idle", "X-Y"]
                ),
                max_size=4,
            ).map(tuple),
        ),
        st.sampled_from([{}, {"name": "CAPABILITY"}, {"name": "ENABLED"}]),
    ),
    st.tuples(
        st.builds(
            ListData,
            flag_lists,
            delimiters,
            mailboxes,
            st.lists(st.tuples(quotable, generic_values), max_size=2).map(tuple),
        ),
        st.sampled_from([{}, {"name": "LSUB"}, {"name": "XLIST"}]),
    ),
    st.tuples(
        st.builds(
            MailboxStatus,
            mailboxes,
            st.lists(st.tuples(upper_names, numbers64), max_size=4).map(tuple),
        ),
        st.just({}),
    ),
    st.tuples(
        st.builds(SearchData, st.lists(numbers32, max_size=5).map(tuple), st.none() | numbers64),
        st.sampled_from([{}, {"name": "SORT"}]),
    ),
    st.tuples(st.builds(FlagsData, flag_lists), st.just({})),
    st.tuples(
        st.builds(CountData, st.integers(0, U32)),
        st.sampled_from([{"name": "EXISTS"}, {"name": "RECENT"}, {"name": "EXPUNGE"}]),
    ),
    st.tuples(st.builds(VanishedData, st.booleans(), plain_sequence_sets), st.just({})),
    st.tuples(st.builds(IdData, id_params), st.just({})),
    st.tuples(
        st.builds(FetchData, numbers32, st.lists(fetch_values, min_size=1, max_size=4).map(tuple)),
        st.just({}),
    ),
    st.tuples(
        st.builds(
            EsearchData,
            st.none() | quotable,
            st.booleans(),
            st.lists(
                st.tuples(
                    st.sampled_from(["MIN", "MAX", "COUNT", "ALL", "MODSEQ"]),
                    st.one_of(
                        numbers32.map(lambda n: Atom(b"%d" % n)),
                        plain_sequence_sets.map(lambda s: Atom(bytes(s))),
                    ),
                ),
                max_size=3,
            ).map(tuple),
        ),
        st.just({}),
    ),
)
responses: st.SearchStrategy[Any] = st.one_of(
    responses_without_namespace,
    st.tuples(
        st.builds(NamespaceData, namespace_groups, namespace_groups, namespace_groups),
        st.just({}),
    ),
)


# -- c. serializer round trips --------------------------------------------------------


@MEDIUM
@given(commands, st.booleans())
def test_command_round_trip(command: tuple[str, Any], utf8: bool) -> None:
    name, args = command
    built = build_command(b"t1", name, args, utf8=utf8)
    framed = frame_one(Role.SERVER, built.raw)
    assert framed == built  # the builder's literal spans are the framer's
    parsed = Command.parse(framed)
    assert (parsed.tag, parsed.name) == (b"t1", name)
    assert parsed.args == args


@FAST
@given(commands)
def test_command_literal_plus_to_sync(command: tuple[str, Any]) -> None:
    name, args = command
    sync = build_command(b"t1", name, args)
    plus = build_command(b"t1", name, args, literal_plus=True)
    assert all(not span.sync for span in plus.literals)
    assert plus.to_sync() == sync
    framed = frame_one(Role.SERVER, plus.raw)
    assert framed == plus
    assert Command.parse(framed).args == args
    assert b"".join(sync.sync_segments()) == sync.raw
    assert len(sync.sync_segments()) == len(sync.literals) + 1


@FAST
@given(commands)
def test_command_literal_minus(command: tuple[str, Any]) -> None:
    name, args = command
    minus = build_command(b"t1", name, args, literal_minus=True)
    assert all(span.sync == (span.size > 4096) for span in minus.literals)
    framer = Framer(Role.SERVER, max_nonsync_literal=4096)
    events = [
        e
        for e in run_framer(framer, [minus.raw])
        if not (isinstance(e, tuple) and e[0] == "continue")
    ]
    assert events == [minus]
    assert Command.parse(minus).args == args


@MEDIUM
@given(responses, st.booleans())
def test_response_round_trip(response: tuple[Any, dict[str, Any]], utf8: bool) -> None:
    data, options = response
    built = build_response(data, **options, utf8=utf8)
    framed = frame_one(Role.CLIENT, built.raw)
    assert framed == built
    parsed = Response.parse(framed)
    if "tag" in options:
        assert parsed.tag == options["tag"]
    assert parsed.data == data


# -- a. any-split invariance ----------------------------------------------------------------

command_pieces = st.one_of(
    commands.map(lambda c: build_command(b"a1", c[0], c[1]).raw),
    commands.map(lambda c: build_command(b"a2", c[0], c[1], literal_plus=True).raw),
    st.sampled_from(
        [
            b"a3 NOOP\r\n",
            b"a4 LOGIN {3}\r\nbob {4+}\r\npass\r\n",
            b'a5 LOGIN "x{3}" y\r\n',
            b"a6 UID FETCH 1:* (FLAGS BODY.PEEK[])\r\n",
        ]
    ),
    st.builds(
        lambda data, plus, binary: (
            b"a7 APPEND Drafts " + lit(data, plus=plus, binary=binary) + b"\r\n"
        ),
        st.binary(max_size=60),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda a, b: b"a8 APPEND Sent " + lit(a) + b" (\\Seen) " + lit(b, plus=True) + b"\r\n",
        st.binary(max_size=30),
        st.binary(max_size=30),
    ),
)

response_pieces = st.one_of(
    st.sampled_from(
        [
            b"* OK [CAPABILITY IMAP4rev1] ready\r\n",
            b"* 3 EXISTS\r\n",
            b"+ go ahead {5}\r\n",
            b"+ \r\n",
            b"a1 OK [READ-WRITE] done\r\n",
            b'* 1 FETCH (ENVELOPE ("d" "s" NIL NIL NIL NIL NIL NIL NIL "<a"b@x>"))\r\n',
        ]
    ),
    responses.map(lambda r: build_response(r[0], **r[1]).raw),
    st.builds(
        lambda n, data: b"* %d FETCH (UID %d BODY[] " % (n, n) + lit(data) + b")\r\n",
        numbers32,
        st.binary(max_size=80),
    ),
    st.builds(
        lambda a, b, c: (
            b"* 2 FETCH (BODY[1] "
            + lit(a)
            + b" BINARY[2] "
            + lit(b, binary=True)
            + b" BODY[3] "
            + lit(c)
            + b")\r\n"
        ),
        st.binary(max_size=30),
        st.binary(max_size=30),
        st.binary(max_size=30),
    ),
    st.builds(lambda name: b'* LIST () "/" ' + lit(name) + b"\r\n", st.binary(max_size=20)),
)

framer_options = st.fixed_dictionaries(
    {
        "inline_literal": st.sampled_from([0, 4, 16, 64 * 1024]),
        "max_inline_total": st.sampled_from([8, 40, 1024 * 1024]),
    }
)


def _check_split_invariance(
    role: Role, stream: bytes, options: dict[str, Any], cuts: list[int]
) -> None:
    whole = run_framer(Framer(role, **options), [stream], eof=True)
    split = run_framer(Framer(role, **options), split_at(stream, cuts), eof=True)
    octet = run_framer(
        Framer(role, **options), [stream[i : i + 1] for i in range(len(stream))], eof=True
    )
    assert merge_chunks(split) == merge_chunks(whole)
    assert merge_chunks(octet) == merge_chunks(whole)
    assert whole[-1] == EndOfStream(partial=False)
    # unchanged frames relay byte for byte
    relayed = b"".join(
        e.raw if isinstance(e, Frame | FramePart) else e[1]
        for e in whole
        if isinstance(e, Frame | FramePart) or (isinstance(e, tuple) and e[0] == "chunk")
    )
    assert relayed == stream


@MEDIUM
@given(
    st.lists(command_pieces, min_size=1, max_size=5).map(b"".join),
    framer_options,
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_split_invariance_commands(stream: bytes, options: dict[str, int], cuts: list[int]) -> None:
    _check_split_invariance(Role.SERVER, stream, options, cuts)


@MEDIUM
@given(
    st.lists(response_pieces, min_size=1, max_size=5).map(b"".join),
    framer_options,
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_split_invariance_responses(
    stream: bytes, options: dict[str, int], cuts: list[int]
) -> None:
    _check_split_invariance(Role.CLIENT, stream, options, cuts)


# -- b. arbitrary bytes raise only RemoteProtocolError ----------------------------------------


def _touch(value: Any, seen: list[object], depth: int = 0) -> None:
    """Read every typed accessor of parsed data (they parse lazily too)."""
    if depth > 80:
        return
    if isinstance(value, Condition) and value.code is not None:
        code = value.code
        seen.append(bytes(code))
        for accessor in (
            "capabilities",
            "flags",
            "number",
            "appenduid",
            "copyuid",
            "sequence_set",
            "charsets",
        ):
            with contextlib.suppress(RemoteProtocolError):
                seen.append(getattr(code, accessor))
    elif isinstance(value, ContinuationData):
        with contextlib.suppress(RemoteProtocolError):
            seen.append(value.sasl_payload())
    elif isinstance(value, EsearchData):
        seen.extend([value.min, value.max, value.count, value.modseq, value.all])
    elif isinstance(value, ListData):
        seen.extend([value.oldname, value.childinfo, value.has_flag(b"\\Noselect")])
    elif isinstance(value, MailboxStatus):
        seen.append(value.get("MESSAGES"))
    elif isinstance(value, FetchData):
        seen.extend([value.uid, value.flags, value.modseq, value.get("BODY[]")])
        for item, item_value in value.items:
            seen.extend([item.key, item.sets_seen])
            _touch(item_value, seen, depth + 1)
    elif isinstance(value, BodyPart):
        seen.append(value.mime_type)
        if value.body is not None:
            _touch(value.body, seen, depth + 1)
    elif isinstance(value, Multipart):
        seen.append(value.mime_type)
        for part in value.parts:
            _touch(part, seen, depth + 1)
    elif isinstance(value, Literal):
        seen.append(repr(value))
        if not value.streamed:
            seen.append(value.data)
    elif isinstance(value, Address):
        seen.append(value.email)


def _parse_all(role: Role, frame: Frame) -> list[object]:
    seen: list[object] = []
    try:
        if role is Role.SERVER:
            command = Command.parse(frame)
            seen.extend([command.uid, command.base_name, repr(command)])
            args = command.args
            seen.append(args)
            if isinstance(args, ListArgs):
                seen.append(args.status_items)
            if isinstance(args, AppendArgs):
                seen.extend(m.size for m in args.messages)
            if isinstance(args, SearchArgs):
                seen.append(args.key.walk())
        else:
            response = Response.parse(frame)
            seen.extend([response.is_status, repr(response)])
            _touch(response.data, seen)
            seen.append(response.condition)
    except RemoteProtocolError:
        pass
    return seen


def _feed_and_parse(role: Role, chunks: list[bytes], options: dict[str, Any], accept: bool) -> None:
    framer = Framer(role, **options)
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            try:
                event = framer.next_event()
            except RemoteProtocolError:
                return
            if event is NEED_DATA:
                break
            if isinstance(event, Frame):
                _parse_all(role, event)
            elif isinstance(event, FramePart):
                _parse_all(role, event.frame)
            elif isinstance(event, ContinuationRequest):
                _parse_all(role, event.frame)
                if accept:
                    framer.accept_literal()
                else:
                    framer.reject_literal()
            elif isinstance(event, BadFrame):
                assert event.error.reply.kind in ("BAD", "NO")
    framer.receive_eof()
    while True:
        try:
            event = framer.next_event()
        except RemoteProtocolError:
            return
        if isinstance(event, EndOfStream):
            return
        if isinstance(event, Frame):
            _parse_all(role, event)
        elif isinstance(event, FramePart):
            _parse_all(role, event.frame)
        elif isinstance(event, ContinuationRequest):
            framer.accept_literal()


small_framer_options = st.fixed_dictionaries(
    {
        "inline_literal": st.sampled_from([0, 8, 64 * 1024]),
        "max_line": st.sampled_from([0, 64]),
        "max_literal": st.sampled_from([0, 50]),
    }
)


@MEDIUM
@given(
    st.sampled_from([Role.SERVER, Role.CLIENT]),
    st.binary(max_size=300),
    small_framer_options,
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=4),
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    role: Role, data: bytes, options: dict[str, int], accept: bool, cuts: list[int]
) -> None:
    _feed_and_parse(role, split_at(data, cuts), options, accept)


@st.composite
def mutated(draw: st.DrawFn, pieces: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(st.lists(pieces, min_size=1, max_size=3).map(b"".join)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(
                st.sampled_from(b'(){}[]<>"\\ \r\n*+~0189%NIL.:,$') | st.integers(0, 255)
            )
        elif op == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [b"(", b")", b"{3}\r\n", b"~{2+}\r\n", b'"', b" ", b"NIL", b"\r\n", b"\\"]
                )
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 5))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@MEDIUM
@given(mutated(command_pieces), small_framer_options, st.booleans())
def test_mutated_commands_raise_only_protocol_errors(
    data: bytes, options: dict[str, int], accept: bool
) -> None:
    _feed_and_parse(Role.SERVER, [data], options, accept)


@MEDIUM
@given(mutated(response_pieces), small_framer_options)
def test_mutated_responses_raise_only_protocol_errors(data: bytes, options: dict[str, int]) -> None:
    _feed_and_parse(Role.CLIENT, [data], options, True)


TOKENS = [
    b"(",
    b")",
    b"((",
    b"))",
    b" ",
    b"  ",
    b"NIL",
    b"nil",
    b'"x"',
    b'""',
    b'"a\\"b"',
    b'"',
    b"0",
    b"1",
    b"7",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"-1",
    b"1.5",
    b"*",
    b"1:*",
    b"$",
    b"1,3:5",
    b":",
    b",",
    b"[",
    b"]",
    b"<",
    b">",
    b"<0>",
    b"<0.10>",
    b"BODY",
    b"BODY[]",
    b"BODY[HEADER.FIELDS (FROM)]",
    b"BODY.PEEK[1.MIME]",
    b"BINARY[1]",
    b"BINARY.SIZE[2]",
    b"UID",
    b"FLAGS",
    b"\\Seen",
    b"\\*",
    b"MODSEQ",
    b"ENVELOPE",
    b"BODYSTRUCTURE",
    b"INTERNALDATE",
    b'"01-Jan-2024 00:00:00 +0000"',
    b"RFC822.SIZE",
    b"{3}\r\nabc",
    b"{0}\r\n",
    b"~{2}\r\n\x00\x01",
    b"{2+}\r\nab",
    b"OR",
    b"NOT",
    b"ALL",
    b"SINCE",
    b"1-Jan-2024",
    b"HEADER",
    b"CHARSET",
    b"RETURN",
    b"EARLIER",
    b"TAG",
    b"MIN",
    b"CHANGEDSINCE",
    b"UNCHANGEDSINCE",
    b"QRESYNC",
    b"CONDSTORE",
    b"+FLAGS.SILENT",
    b"USE",
    b"UTF8",
    b"CATENATE",
    b"TEXT",
    b"URL",
    b"\xff",
    b"\x00",
    b"=",
    b"AGJvYg==",
    b"~",
]
COMMAND_HEADS = [
    b"a1 FETCH ",
    b"a1 UID FETCH ",
    b"a1 SEARCH ",
    b"a1 UID SEARCH ",
    b"a1 STORE ",
    b"a1 SELECT ",
    b"a1 EXAMINE ",
    b"a1 LIST ",
    b"a1 LSUB ",
    b"a1 STATUS ",
    b"a1 APPEND ",
    b"a1 LOGIN ",
    b"a1 AUTHENTICATE ",
    b"a1 ENABLE ",
    b"a1 ID ",
    b"a1 CREATE ",
    b"a1 RENAME ",
    b"a1 COPY ",
    b"a1 UID EXPUNGE ",
    b"a1 COMPRESS ",
    b"a1 XUNKNOWN ",
    b"a1 UID ",
]
RESPONSE_HEADS = [
    b"* 1 FETCH ",
    b"* 1 FETCH (",
    b"* SEARCH ",
    b"* SORT ",
    b"* ESEARCH ",
    b"* LIST ",
    b"* LSUB ",
    b"* STATUS ",
    b"* FLAGS ",
    b"* CAPABILITY ",
    b"* ENABLED ",
    b"* VANISHED ",
    b"* ID ",
    b"* NAMESPACE ",
    b"* OK ",
    b"a1 OK ",
    b"a1 NO ",
    b"* BYE ",
    b"* 3 EXISTS",
    b"+ ",
    b"* [",
    b"[",
    b"* OK [",
    b"* XUNKNOWN ",
    b"* 1 FETCH (BODYSTRUCTURE ",
    b"* 1 FETCH (ENVELOPE ",
]


def token_soup(heads: list[bytes]) -> st.SearchStrategy[bytes]:
    line = st.tuples(st.sampled_from(heads), st.lists(st.sampled_from(TOKENS), max_size=25)).map(
        lambda t: t[0] + b"".join(t[1]) + b"\r\n"
    )
    return st.lists(line, min_size=1, max_size=4).map(b"".join)


@MEDIUM
@given(token_soup(COMMAND_HEADS), small_framer_options)
def test_command_token_soup_raises_only_protocol_errors(
    data: bytes, options: dict[str, int]
) -> None:
    _feed_and_parse(Role.SERVER, [data], options, True)


@MEDIUM
@given(token_soup(RESPONSE_HEADS), small_framer_options)
def test_response_token_soup_raises_only_protocol_errors(
    data: bytes, options: dict[str, int]
) -> None:
    _feed_and_parse(Role.CLIENT, [data], options, True)


# -- d. modified UTF-7 ---------------------------------------------------------------------


@settings(deadline=None, max_examples=300, derandomize=True)
@given(st.text())
def test_mutf7_round_trip(text: str) -> None:
    encoded = mutf7_encode(text)
    assert encoded.isascii()
    assert mutf7_decode(encoded) == text


@settings(deadline=None, max_examples=300, derandomize=True)
@given(
    st.one_of(
        st.binary(max_size=24),
        st.text(string.ascii_letters + "&-+,/=" + string.digits, max_size=24).map(str.encode),
        st.text()
        .map(mutf7_encode)
        .flatmap(
            lambda b: st.tuples(
                st.just(b), st.integers(0, len(b)), st.sampled_from(b"&-+,A=/a0\x80")
            )
        )
        .map(lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]),
    )
)
def test_mutf7_decode_is_canonical_only(data: bytes) -> None:
    try:
        text = mutf7_decode(data)
    except ValueError:
        return
    assert mutf7_encode(text) == data


# -- bugs found along the way ------------------------------------------------------------------


def _response_data(raw: bytes) -> Any:
    return Response.parse(frame_one(Role.CLIENT, raw)).data


def _command_args(raw: bytes) -> Any:
    return Command.parse(frame_one(Role.SERVER, raw)).args


def test_namespace_extension_literal_values_round_trip() -> None:
    data = NamespaceData(
        (NamespaceDescriptor(b"", b"/", ((b"X-PARAM", ("fr\u00e9".encode(), b"b")),)),), None, None
    )
    built = build_response(data)
    assert built.raw == b'* NAMESPACE (("" "/" "X-PARAM" ({4}\r\nfr\xc3\xa9 "b"))) NIL NIL\r\n'
    assert _response_data(built.raw) == data


def test_binary_literal_with_nul_is_written_as_literal8() -> None:
    value = literal(b"he\x00llo")
    built = build_response(FetchData(1, ((FetchItem("BINARY", Section((1,))), value),)))
    assert built.raw == b"* 1 FETCH (BINARY[1] ~{6}\r\nhe\x00llo)\r\n"


def test_binary_bytes_with_nul_is_written_as_literal8() -> None:
    built = build_response(FetchData(1, ((FetchItem("BINARY", Section((1,))), b"he\x00llo"),)))
    assert built.raw == b"* 1 FETCH (BINARY[1] ~{6}\r\nhe\x00llo)\r\n"


@pytest.mark.parametrize(
    "size",
    [
        b"inf",
        b"1e999",
        b"-inf",
        b"9" * 5000,
        b"9" * 25,
    ],
)
def test_bodystructure_unrepresentable_size_reads_as_zero(size: bytes) -> None:
    # bodystructure.py: odd sizes are rectified rather than refused.
    raw = b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" ' + size + b" 1))\r\n"
    body = _response_data(raw).get("BODYSTRUCTURE")
    assert isinstance(body, BodyPart)
    assert (body.size, body.lines) == (0, 1)


def test_bodystructure_odd_sizes_are_rectified() -> None:
    raw = b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 12.7 NIL))\r\n'
    body = _response_data(raw).get("BODYSTRUCTURE")
    assert isinstance(body, BodyPart)
    assert (body.size, body.lines) == (12, 0)
    raw = b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" -5 nan))\r\n'
    body = _response_data(raw).get("BODYSTRUCTURE")
    assert isinstance(body, BodyPart)
    assert (body.size, body.lines) == (0, 0)


def test_deep_bodystructure_is_generic_then_refused() -> None:
    """Past the structure's nesting cap the value is kept generically (the rest of
    the FETCH survives); past the generic cap the response is refused."""
    leaf = b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1 1)'
    deep = leaf
    for _ in range(50):
        deep = b"(" + deep + b' "MIXED")'
    data = _response_data(b"* 1 FETCH (BODYSTRUCTURE " + deep + b" UID 4)\r\n")
    assert isinstance(data.get("BODYSTRUCTURE"), Unparsed)
    assert data.uid == 4
    for _ in range(20):
        deep = b"(" + deep + b' "MIXED")'
    with pytest.raises(RemoteProtocolError):
        _response_data(b"* 1 FETCH (BODYSTRUCTURE " + deep + b")\r\n")


HUGE = b"1" * 5000  # over Python's 4300-digit int() limit


@pytest.mark.parametrize(
    ("role", "raw"),
    [
        (Role.CLIENT, b"* STATUS x (MESSAGES " + HUGE + b")\r\n"),
        (Role.CLIENT, b"* 1 FETCH (BODY[1]<" + HUGE + b"> NIL)\r\n"),
        (Role.CLIENT, b"* SEARCH " + HUGE + b"\r\n"),
        (Role.SERVER, b"a1 FETCH 1 (UID) (CHANGEDSINCE " + HUGE + b")\r\n"),
        (Role.SERVER, b"a1 SEARCH OLDER " + HUGE + b"\r\n"),
        (Role.SERVER, b"a1 STORE 1 (UNCHANGEDSINCE " + HUGE + b") FLAGS ()\r\n"),
    ],
)
def test_huge_numbers_raise_protocol_error(role: Role, raw: bytes) -> None:
    parse = _response_data if role is Role.CLIENT else _command_args
    with pytest.raises(RemoteProtocolError):
        parse(raw)


def test_huge_fetch_uid_is_kept_generically() -> None:
    """An unreadable item does not cost the rest of the FETCH (QUIRKS B8)."""
    data = _response_data(b"* 1 FETCH (UID " + HUGE + b" FLAGS (\\Seen))\r\n")
    assert data.uid is None
    assert data.flags == (b"\\Seen",)
    assert data.get("UID") == Unparsed(Atom(HUGE))


def test_huge_sequence_numbers_raise_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        _command_args(b"a1 FETCH " + HUGE + b" (UID)\r\n")


@pytest.mark.parametrize(
    ("raw", "accessor"),
    [
        (b"* ESEARCH ALL 0\r\n", "all"),
        (b"* ESEARCH ALL 1:\r\n", "all"),
        (b"* ESEARCH MIN " + HUGE + b"\r\n", "min"),
        (b"* ESEARCH COUNT " + HUGE + b"\r\n", "count"),
    ],
)
def test_esearch_accessors_raise_only_protocol_errors(raw: bytes, accessor: str) -> None:
    data = _response_data(raw)
    assert isinstance(data, EsearchData)
    with contextlib.suppress(RemoteProtocolError):
        getattr(data, accessor)


def test_response_code_number_huge() -> None:
    data = _response_data(b"a1 OK [UIDNEXT " + HUGE + b"] x\r\n")
    assert isinstance(data, Condition)
    assert data.code is not None
    with pytest.raises(RemoteProtocolError):
        _ = data.code.number


def test_esearch_accessors_on_good_data() -> None:
    data = _response_data(b'* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5:9 MODSEQ 7\r\n')
    assert isinstance(data, EsearchData)
    assert (data.tag, data.uid, data.min, data.max, data.count, data.modseq) == (
        b"a1",
        True,
        2,
        9,
        3,
        7,
    )
    assert data.all == SequenceSet(((2, 2), (5, 9)))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("SELECT", SelectArgs(Mailbox(b"box"), other=(("FOO", None), ("BAR", None)))),
        ("SELECT", SelectArgs(Mailbox(b"box"), other=(("FOO", None), ("BAR", Atom(b"1"))))),
        (
            "FETCH",
            FetchArgs(
                SequenceSet.parse(b"1"),
                (FetchItem("UID"),),
                other_modifiers=(("FOO", None), ("BAR", None)),
            ),
        ),
    ],
)
def test_parameter_without_value_then_another(name: str, args: Any) -> None:
    built = build_command(b"t1", name, args)
    assert Command.parse(built).args == args


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("SELECT", SelectArgs(Mailbox(b"~peter/mail/&U,BTFw-"))),  # RFC 3501 5.1.3 example
        ("LOGIN", LoginArgs(b"bob", Secret(b"~secret"))),
        ("LIST", ListArgs(Mailbox(b""), (b"~peter/%",))),
        ("SEARCH", SearchArgs(SearchKey("SUBJECT", (b"~x",)))),
    ],
)
def test_astring_starting_with_tilde(name: str, args: Any) -> None:
    built = build_command(b"t1", name, args)
    assert b" ~" in built.raw  # written as an atom, which the grammar allows
    assert Command.parse(built).args == args


def test_namespace_skeleton_with_streamed_prefix() -> None:
    framer = Framer(Role.CLIENT, inline_literal=1)
    framer.receive_data(b'* NAMESPACE NIL NIL (({2}\r\nab "/"))\r\n')
    events = []
    while (event := framer.next_event()) is not NEED_DATA:
        events.append(event)
    assert [type(e).__name__ for e in events] == ["FramePart", "LiteralChunk", "FramePart"]
    last = events[-1]
    assert isinstance(last, FramePart)
    assert last.frame.raw == b'* NAMESPACE NIL NIL (({2}\r\n "/"))\r\n'
    try:
        data = Response.parse(last.frame).data
    except RemoteProtocolError:
        return
    assert isinstance(data, NamespaceData)
