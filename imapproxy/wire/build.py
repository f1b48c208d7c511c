"""Serializing: build frames strictly, choosing atom, quoted string or literal.

Relaying never comes here: an unchanged frame is written back as its ``raw``
bytes. This module is for frames the proxy makes itself (its own upstream
commands, rewritten commands, synthesized responses, cache hits) and it always
emits the strict RFC form (QUIRKS "emit strictly"): single SPs, no trailing SP,
``+ text`` for continuations, upper-case keywords, ascending sequence sets where
the caller normalises them.

:class:`FrameBuilder` appends tokens and records literal spans, so the result is
a :class:`~imapproxy.wire.framing.Frame` exactly like one the framer produces.
A value goes out as the lightest form that can carry it:

* an atom when the grammar allows an atom there and every octet is an atom char;
* a quoted string when it is 7-bit text without CR, LF or NUL (UTF-8 allowed
  when the peer enabled UTF8=ACCEPT);
* otherwise a literal: ``{n+}`` when the peer has LITERAL+ (or LITERAL- and
  ``n <= 4096``), ``{n}`` otherwise. A literal8 (``~{n}``) is written only where
  the grammar has one (APPEND message data, ``BINARY[]`` data); a string holding
  NUL cannot be written anywhere else and raises :class:`LocalProtocolError`.

:func:`build_command` and :func:`build_response` turn the typed arguments and
data of :mod:`~imapproxy.wire.commands` and :mod:`~imapproxy.wire.responses`
back into frames; parsing their output gives the same values again (a tested
property).
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from imapproxy.wire.bodystructure import Address, Body, BodyPart, Envelope, Multipart, Params
from imapproxy.wire.commands import (
    AclArgs,
    AppendArgs,
    AuthenticateArgs,
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
    MetadataArgs,
    NoArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    StatusArgs,
    StoreArgs,
    UidExpungeArgs,
)
from imapproxy.wire.errors import LocalProtocolError
from imapproxy.wire.framing import Frame, LiteralSpan
from imapproxy.wire.grammar import (
    ASTRING_WRITE,
    ATOM_WRITE,
    FLAG_WRITE,
    LIST_WRITE,
    QUOTABLE,
    TAG,
)
from imapproxy.wire.reader import Atom, Literal, Value
from imapproxy.wire.responses import (
    CapabilityData,
    Condition,
    ContinuationData,
    CountData,
    EsearchData,
    FetchData,
    FetchValue,
    FlagsData,
    GenericData,
    IdData,
    ListData,
    MailboxStatus,
    NamespaceData,
    NamespaceDescriptor,
    ResponseData,
    SearchData,
    Unparsed,
    VanishedData,
)
from imapproxy.wire.search import SearchKey
from imapproxy.wire.values import FetchItem, Mailbox, SequenceSet, format_date, format_datetime

__all__ = ["FrameBuilder", "build_command", "build_response", "continuation", "fetch_value"]

_QUOTABLE_UTF8 = re.compile(rb"[^\x00\r\n]*")
# What a generic atom may hold: no CTL except inside brackets, where SP may appear
# (BODY[HEADER.FIELDS (A B)]); never CR, LF or NUL.
_GENERIC_ATOM = re.compile(rb"[^\x00-\x20\x7f(){\"]+(?:\[[^\x00\r\n]*\][^\x00-\x20\x7f(){\"]*)*")
T = TypeVar("T")
_MAX_QUOTED = 1024
_COMMAND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?: [A-Za-z]+)?", re.ASCII)
_LITERAL_MINUS_MAX = 4096


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"not ASCII: {text[:40]!r}") from exc


def _utf8_ok(data: bytes) -> bool:
    """7-bit, or valid UTF-8 (quoted strings may carry UTF-8 only under UTF8=ACCEPT)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class FrameBuilder:
    """Builds one frame token by token.

    Args:
        literal_plus: the peer accepts ``{n+}`` (LITERAL+).
        literal_minus: the peer accepts ``{n+}`` up to 4096 octets (LITERAL-).
        utf8: UTF-8 may go in quoted strings (UTF8=ACCEPT enabled).
    """

    __slots__ = ("_length", "_parts", "_spans", "literal_minus", "literal_plus", "utf8")

    def __init__(
        self, *, literal_plus: bool = False, literal_minus: bool = False, utf8: bool = False
    ) -> None:
        self.literal_plus = literal_plus
        self.literal_minus = literal_minus
        self.utf8 = utf8
        self._parts: list[bytes] = []
        self._spans: list[LiteralSpan] = []
        self._length = 0

    def _add(self, data: bytes) -> FrameBuilder:
        self._parts.append(data)
        self._length += len(data)
        return self

    def raw(self, data: bytes) -> FrameBuilder:
        """Verbatim bytes (already valid syntax; no CR or LF)."""
        if b"\r" in data or b"\n" in data:
            raise LocalProtocolError("CR or LF in a line")
        return self._add(data)

    def sp(self) -> FrameBuilder:
        return self._add(b" ")

    def tag(self, tag: bytes) -> FrameBuilder:
        if TAG.fullmatch(tag) is None:
            raise LocalProtocolError(f"invalid tag {tag!r}")
        return self._add(tag)

    def atom(self, data: bytes | str) -> FrameBuilder:
        if isinstance(data, str):
            data = _ascii(data)
        if ATOM_WRITE.fullmatch(data) is None:
            raise LocalProtocolError(f"not an atom: {data[:40]!r}")
        return self._add(data)

    def number(self, value: int) -> FrameBuilder:
        if value < 0:
            raise LocalProtocolError("numbers are unsigned")
        return self._add(str(value).encode("ascii"))

    def nil(self) -> FrameBuilder:
        return self._add(b"NIL")

    def quoted(self, data: bytes) -> FrameBuilder:
        pattern = _QUOTABLE_UTF8 if self.utf8 else QUOTABLE
        if pattern.fullmatch(data) is None or not _utf8_ok(data):
            raise LocalProtocolError("value cannot be a quoted string")
        return self._add(b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')

    def literal(self, data: bytes | memoryview, *, binary: bool = False) -> FrameBuilder:
        size = len(data)
        nonsync = self.literal_plus or (self.literal_minus and size <= _LITERAL_MINUS_MAX)
        head = b"%s{%d%s}\r\n" % (b"~" if binary else b"", size, b"+" if nonsync else b"")
        announce = self._length
        self._add(head)
        self._spans.append(LiteralSpan(announce, self._length, size, not nonsync, binary))
        return self._add(bytes(data))

    def _quotable(self, data: bytes) -> bool:
        if len(data) > _MAX_QUOTED:
            return False
        pattern = _QUOTABLE_UTF8 if self.utf8 else QUOTABLE
        return pattern.fullmatch(data) is not None and _utf8_ok(data)

    def string(self, data: bytes) -> FrameBuilder:
        """``string``: quoted if possible, else a literal.

        Raises:
            LocalProtocolError: the value holds NUL, which only a literal8 can
                carry, and the grammar has none where a string goes.
        """
        if self._quotable(data):
            return self.quoted(data)
        if b"\x00" in data:
            raise LocalProtocolError("NUL cannot be sent in a string")
        return self.literal(data)

    def astring(self, data: bytes) -> FrameBuilder:
        """``astring``: an atom when every octet allows it (``NIL`` is quoted)."""
        if ASTRING_WRITE.fullmatch(data) is not None and data.upper() != b"NIL":
            return self._add(data)
        return self.string(data)

    def nstring(self, data: bytes | None) -> FrameBuilder:
        return self.nil() if data is None else self.string(data)

    def mailbox(self, mailbox: Mailbox) -> FrameBuilder:
        return self.astring(mailbox.raw)

    def list_mailbox(self, pattern: bytes) -> FrameBuilder:
        if LIST_WRITE.fullmatch(pattern) is not None:
            return self._add(pattern)
        return self.string(pattern)

    def flag(self, flag: bytes) -> FrameBuilder:
        if FLAG_WRITE.fullmatch(flag) is None:
            raise LocalProtocolError(f"not a flag: {flag[:40]!r}")
        return self._add(flag)

    def sequence_set(self, value: SequenceSet) -> FrameBuilder:
        return self._add(bytes(value))

    def paren(self, items: Iterable[T], each: Callable[[T], object]) -> FrameBuilder:
        """``"(" item *(SP item) ")"``, writing each item with ``each``."""
        self._add(b"(")
        first = True
        for item in items:
            if not first:
                self.sp()
            first = False
            each(item)
        return self._add(b")")

    def value(self, value: Value) -> FrameBuilder:
        """A generic value (atom, string, literal, NIL, list)."""
        if value is None:
            return self.nil()
        if isinstance(value, Atom):
            if _GENERIC_ATOM.fullmatch(value.value) is None:
                raise LocalProtocolError(f"not an atom: {value.value[:40]!r}")
            return self._add(value.value)
        if isinstance(value, bytes):
            return self.string(value)
        if isinstance(value, Literal):
            return self.literal(value.view(), binary=value.binary)
        return self.paren(value, self.value)

    def build(self) -> Frame:
        """The frame, CRLF appended."""
        self._add(b"\r\n")
        return Frame(b"".join(self._parts), tuple(self._spans))


def continuation(text: bytes = b"Ready for literal data") -> bytes:
    """A continuation request, always with text (QUIRKS F1: ``+ `` then text).

    Pass ``b""`` for an empty SASL challenge, which is sent as ``+ `` CRLF.
    """
    if b"\r" in text or b"\n" in text:
        raise LocalProtocolError("CR or LF in continuation text")
    return b"+ " + text + b"\r\n"


# -- commands ----------------------------------------------------------------------


def build_command(
    tag: bytes,
    name: str,
    args: CommandArgs,
    *,
    literal_plus: bool = False,
    literal_minus: bool = False,
    utf8: bool = False,
) -> Frame:
    """A command frame from typed arguments (``name`` may be ``"UID FETCH"``)."""
    if _COMMAND_NAME.fullmatch(name) is None:
        raise LocalProtocolError(f"invalid command name {name[:40]!r}")
    b = FrameBuilder(literal_plus=literal_plus, literal_minus=literal_minus, utf8=utf8)
    b.tag(tag).sp().raw(name.upper().encode("ascii"))
    writer = _COMMAND_WRITERS.get(type(args))
    if writer is None:
        raise LocalProtocolError(f"cannot serialize {type(args).__name__}")
    writer(b, args)
    return b.build()


def _call(write: Callable[[], object]) -> None:
    write()


def _w_none(b: FrameBuilder, args: object) -> None:
    del b, args


def _w_login(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, LoginArgs)
    b.sp().astring(args.userid).sp().astring(args.password.reveal())


def _w_authenticate(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, AuthenticateArgs)
    b.sp().atom(args.mechanism)
    if args.initial_response is not None:
        payload = args.initial_response.reveal()
        b.sp().raw(payload if payload else b"=")


def _w_enable(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, EnableArgs)
    for cap in args.capabilities:
        b.sp().atom(cap)


def _id_params(b: FrameBuilder, params: tuple[tuple[bytes, bytes | None], ...] | None) -> None:
    if not params:
        b.nil()  # never "()" (QUIRKS K6)
        return
    b.raw(b"(")
    for i, (key, value) in enumerate(params):
        if i:
            b.sp()
        b.string(key).sp().nstring(value)
    b.raw(b")")


def _w_id(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, IdArgs)
    b.sp()
    _id_params(b, args.params)


def _w_compress(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, CompressArgs)
    b.sp().atom(args.mechanism)


def _params(b: FrameBuilder, params: Iterable[tuple[str, Value]]) -> None:
    for name, value in params:
        b.atom(name)
        if value is not None:
            b.sp().value(value)


def _w_select(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, SelectArgs)
    b.sp().mailbox(args.mailbox)
    items: list[Callable[[], object]] = []
    if args.condstore:
        items.append(lambda: b.atom("CONDSTORE"))
    if args.qresync is not None:
        q = args.qresync

        def qresync() -> None:
            b.raw(b"QRESYNC (").number(q.uidvalidity).sp().number(q.modseq)
            if q.known_uids is not None:
                b.sp().sequence_set(q.known_uids)
            if q.seq_match is not None:
                b.raw(b" (").sequence_set(q.seq_match[0]).sp().sequence_set(q.seq_match[1])
                b.raw(b")")
            b.raw(b")")

        items.append(qresync)
    for name, value in args.other:
        items.append(functools.partial(_params, b, [(name, value)]))
    if items:
        b.sp().paren(items, _call)


def _w_mailbox(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, MailboxArgs)
    b.sp().mailbox(args.mailbox)


def _w_acl(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, AclArgs)
    b.sp().mailbox(args.mailbox)
    for value in args.strings:
        b.sp().astring(value)


def _w_metadata(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, MetadataArgs)
    if args.options:
        b.sp().paren(args.options, b.value)
    b.sp().mailbox(args.mailbox)
    for value in args.rest:
        b.sp().value(value)


def _w_create(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, CreateArgs)
    b.sp().mailbox(args.mailbox)
    if args.special_use or args.other:
        b.raw(b" (")
        if args.special_use:
            b.raw(b"USE ").paren(args.special_use, b.flag)
            if args.other:
                b.sp()
        for i, param in enumerate(args.other):
            if i:
                b.sp()
            _params(b, [param])
        b.raw(b")")


def _w_rename(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, RenameArgs)
    b.sp().mailbox(args.old).sp().mailbox(args.new)


def _options(b: FrameBuilder, options: tuple[tuple[str, tuple[Value, ...]], ...]) -> None:
    b.raw(b"(")
    for i, (name, values) in enumerate(options):
        if i:
            b.sp()
        b.atom(name)
        if values:
            b.sp()
            if name == "PARTIAL" and len(values) == 1:
                b.value(values[0])
            else:
                b.value(values)
    b.raw(b")")


def _w_list(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, ListArgs)
    b.sp()
    if args.selection:
        b.paren(args.selection, b.atom).sp()
    b.mailbox(args.reference).sp()
    if len(args.patterns) == 1 and not args.selection:
        b.list_mailbox(args.patterns[0])
    else:
        b.paren(args.patterns, b.list_mailbox)
    if args.return_options:
        b.raw(b" RETURN ")
        _options(b, args.return_options)


def _w_status(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, StatusArgs)
    b.sp().mailbox(args.mailbox).sp().paren(args.items, b.atom)


def _w_append(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, AppendArgs)
    b.sp().mailbox(args.mailbox)
    for message in args.messages:
        if message.flags is not None:
            b.sp().paren(message.flags, b.flag)
        if message.date is not None:
            b.sp().quoted(format_datetime(message.date))
        b.sp()
        if message.catenate is not None:
            b.raw(b"CATENATE (")
            for i, part in enumerate(message.catenate):
                if i:
                    b.sp()
                if part.kind == "TEXT":
                    assert part.text is not None
                    b.raw(b"TEXT ").literal(part.text.view())
                else:
                    assert part.url is not None
                    b.raw(b"URL ").astring(part.url)
            b.raw(b")")
            continue
        if message.data is None:
            raise LocalProtocolError("APPEND message without data")
        if message.utf8:
            b.raw(b"UTF8 (").literal(message.data.view(), binary=True).raw(b")")
        else:
            b.literal(message.data.view(), binary=message.data.binary)


def _search_key(b: FrameBuilder, key: SearchKey) -> None:
    name = key.name
    if name == "AND":
        b.paren([k for k in key.args if isinstance(k, SearchKey)], lambda k: _search_key(b, k))
        return
    if name == "SEQSET":
        arg = key.args[0]
        assert isinstance(arg, SequenceSet)
        b.sequence_set(arg)
        return
    b.atom(name)
    for arg in key.args:
        b.sp()
        if isinstance(arg, SearchKey):
            _search_key(b, arg)
        elif isinstance(arg, SequenceSet):
            b.sequence_set(arg)
        elif isinstance(arg, int):
            b.number(arg)
        elif isinstance(arg, _dt.date):
            b.raw(format_date(arg))
        elif name == "MODSEQ" and arg.startswith(b"/"):
            b.quoted(arg)
        elif name in ("KEYWORD", "UNKEYWORD", "EMAILID", "THREADID", "FILTER", "MODSEQ"):
            b.atom(arg)
        else:
            b.astring(arg)


def _w_search(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, SearchArgs)
    if args.return_options is not None:
        b.raw(b" RETURN ")
        _options(b, args.return_options)
    if args.charset is not None:
        b.raw(b" CHARSET ").astring(args.charset)
    b.sp()
    key = args.key
    if key.name == "AND":  # the top-level conjunction is written without parentheses
        for i, sub in enumerate(key.args):
            if i:
                b.sp()
            assert isinstance(sub, SearchKey)
            _search_key(b, sub)
    else:
        _search_key(b, key)


def _fetch_item(b: FrameBuilder, item: object) -> None:
    assert isinstance(item, FetchItem)
    b.raw(bytes(item))


def _w_fetch(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, FetchArgs)
    b.sp().sequence_set(args.sequence_set).sp()
    if args.macro is not None:
        b.atom(args.macro)
    else:
        b.paren(args.items, lambda item: _fetch_item(b, item))
    modifiers: list[Callable[[], object]] = []
    if args.changedsince is not None:
        since = args.changedsince
        modifiers.append(lambda: b.raw(b"CHANGEDSINCE ").number(since))
    if args.vanished:
        modifiers.append(lambda: b.atom("VANISHED"))
    for name, value in args.other_modifiers:
        modifiers.append(functools.partial(_params, b, [(name, value)]))
    if modifiers:
        b.sp().paren(modifiers, _call)


def _w_store(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, StoreArgs)
    b.sp().sequence_set(args.sequence_set).sp()
    if args.unchangedsince is not None:
        b.raw(b"(UNCHANGEDSINCE ").number(args.unchangedsince).raw(b") ")
    b.raw(args.mode.encode("ascii")).atom(args.item)
    if args.silent:
        b.raw(b".SILENT")
    b.sp().paren(args.flags, b.flag)


def _w_copy(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, CopyArgs)
    b.sp().sequence_set(args.sequence_set).sp().mailbox(args.mailbox)


def _w_uid_expunge(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, UidExpungeArgs)
    b.sp().sequence_set(args.sequence_set)


def _w_generic(b: FrameBuilder, args: object) -> None:
    assert isinstance(args, GenericArgs)
    for value in args.values:
        b.sp().value(value)


_COMMAND_WRITERS: dict[type, Callable[[FrameBuilder, object], None]] = {
    NoArgs: _w_none,
    AclArgs: _w_acl,
    MetadataArgs: _w_metadata,
    LoginArgs: _w_login,
    AuthenticateArgs: _w_authenticate,
    EnableArgs: _w_enable,
    IdArgs: _w_id,
    CompressArgs: _w_compress,
    SelectArgs: _w_select,
    MailboxArgs: _w_mailbox,
    CreateArgs: _w_create,
    RenameArgs: _w_rename,
    ListArgs: _w_list,
    StatusArgs: _w_status,
    AppendArgs: _w_append,
    SearchArgs: _w_search,
    FetchArgs: _w_fetch,
    StoreArgs: _w_store,
    CopyArgs: _w_copy,
    UidExpungeArgs: _w_uid_expunge,
    GenericArgs: _w_generic,
}


# -- responses ---------------------------------------------------------------------


def build_response(
    data: ResponseData,
    *,
    tag: bytes | None = None,
    name: str | None = None,
    utf8: bool = False,
) -> Frame:
    """A response frame from typed data.

    ``tag`` makes a status response tagged. ``name`` is needed where the data
    class serves several responses: LSUB (default LIST), ENABLED (default
    CAPABILITY), SORT (default SEARCH), EXISTS/RECENT/EXPUNGE for
    :class:`CountData`, and the name of a :class:`GenericData` response.
    """
    b = FrameBuilder(utf8=utf8)
    if isinstance(data, ContinuationData):
        return Frame(continuation(data.text))
    if isinstance(data, Condition):
        if tag is None:
            b.raw(b"*")
        else:
            b.tag(tag)
        b.sp().atom(data.status)
        if data.code is not None:
            b.sp().raw(bytes(data.code))
        b.sp().raw(data.text or b"Done")
        return b.build()
    b.raw(b"*")
    writer = _RESPONSE_WRITERS.get(type(data))
    if writer is None:
        raise LocalProtocolError(f"cannot serialize {type(data).__name__}")
    writer(b, data, name)
    return b.build()


def _r_capability(b: FrameBuilder, data: object, name: str | None) -> None:
    assert isinstance(data, CapabilityData)
    b.sp().atom(name or "CAPABILITY")
    for cap in data.capabilities:
        b.sp().atom(cap)


def _r_list(b: FrameBuilder, data: object, name: str | None) -> None:
    assert isinstance(data, ListData)
    b.sp().atom(name or "LIST").sp().paren(data.flags, b.flag).sp()
    if data.delimiter is None:
        b.nil()
    else:
        b.quoted(data.delimiter)
    b.sp().mailbox(data.mailbox)
    if data.extended:
        b.raw(b" (")
        for i, (tag, value) in enumerate(data.extended):
            if i:
                b.sp()
            b.string(tag).sp().value(value)
        b.raw(b")")


def _r_status(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, MailboxStatus)
    b.raw(b" STATUS ").mailbox(data.mailbox).raw(b" (")
    for i, (item, value) in enumerate(data.items):
        if i:
            b.sp()
        b.atom(item).sp().number(value)
    b.raw(b")")


def _r_search(b: FrameBuilder, data: object, name: str | None) -> None:
    assert isinstance(data, SearchData)
    b.sp().atom(name or "SEARCH")
    for n in data.numbers:
        b.sp().number(n)
    if data.modseq is not None:
        b.raw(b" (MODSEQ ").number(data.modseq).raw(b")")


def _r_esearch(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, EsearchData)
    b.raw(b" ESEARCH")
    if data.tag is not None:
        b.raw(b" (TAG ").string(data.tag)
        if data.mailbox is not None:
            b.raw(b" MAILBOX ").mailbox(data.mailbox)
        if data.uidvalidity is not None:
            b.raw(b" UIDVALIDITY ").number(data.uidvalidity)
        b.raw(b")")
    if data.uid:
        b.raw(b" UID")
    for key, value in data.results:
        b.sp().atom(key).sp().value(value)


def _r_flags(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, FlagsData)
    b.raw(b" FLAGS ").paren(data.flags, b.flag)


def _r_count(b: FrameBuilder, data: object, name: str | None) -> None:
    assert isinstance(data, CountData)
    if name not in ("EXISTS", "RECENT", "EXPUNGE"):
        raise LocalProtocolError("CountData needs name EXISTS, RECENT or EXPUNGE")
    b.sp().number(data.number).sp().atom(name)


def _r_vanished(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, VanishedData)
    b.raw(b" VANISHED ")
    if data.earlier:
        b.raw(b"(EARLIER) ")
    b.sequence_set(data.uids)


def _r_id(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, IdData)
    b.raw(b" ID ")
    _id_params(b, data.params)


def _namespaces(b: FrameBuilder, group: tuple[NamespaceDescriptor, ...] | None) -> None:
    if group is None:
        b.nil()
        return
    b.raw(b"(")
    for desc in group:
        b.raw(b"(").string(desc.prefix).sp()
        if desc.delimiter is None:
            b.nil()
        else:
            b.quoted(desc.delimiter)
        for ext_name, values in desc.extensions:
            b.sp().string(ext_name).sp().paren(values, b.string)
        b.raw(b")")
    b.raw(b")")


def _r_namespace(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, NamespaceData)
    b.raw(b" NAMESPACE ")
    _namespaces(b, data.personal)
    b.sp()
    _namespaces(b, data.other)
    b.sp()
    _namespaces(b, data.shared)


def _r_generic(b: FrameBuilder, data: object, name: str | None) -> None:
    assert isinstance(data, GenericData)
    if name is None:
        raise LocalProtocolError("GenericData needs a response name")
    b.sp().atom(name)
    for value in data.values:
        b.sp().value(value)


def _address(b: FrameBuilder, address: Address) -> None:
    b.raw(b"(").nstring(address.name).sp().nstring(address.adl).sp()
    b.nstring(address.mailbox).sp().nstring(address.host).raw(b")")


def _addresses(b: FrameBuilder, addresses: tuple[Address, ...] | None) -> None:
    if addresses is None:
        b.nil()
        return
    b.raw(b"(")
    for address in addresses:
        _address(b, address)
    b.raw(b")")


def write_envelope(b: FrameBuilder, env: Envelope) -> None:
    b.raw(b"(").nstring(env.date).sp().nstring(env.subject)
    for group in (env.from_, env.sender, env.reply_to, env.to, env.cc, env.bcc):
        b.sp()
        _addresses(b, group)
    b.sp().nstring(env.in_reply_to).sp().nstring(env.message_id).raw(b")")


def _body_params(b: FrameBuilder, params: Params | None) -> None:
    if not params:
        b.nil()
        return
    b.raw(b"(")
    for i, (key, value) in enumerate(params):
        if i:
            b.sp()
        b.string(key).sp().string(value)
    b.raw(b")")


def _body_ext(
    b: FrameBuilder,
    disposition: tuple[bytes, Params] | None,
    language: tuple[bytes, ...] | None,
    location: bytes | None,
    extensions: tuple[Value, ...],
) -> None:
    b.sp()
    if disposition is None:
        b.nil()
    else:
        b.raw(b"(").string(disposition[0]).sp()
        _body_params(b, disposition[1])
        b.raw(b")")
    b.sp()
    if language is None:
        b.nil()
    elif len(language) == 1:
        b.string(language[0])
    else:
        b.paren(language, b.string)
    b.sp().nstring(location)
    for ext in extensions:
        b.sp().value(ext)


def write_body(b: FrameBuilder, body: Body, *, extensible: bool = True) -> None:
    """BODYSTRUCTURE (``extensible``) or BODY."""
    b.raw(b"(")
    if isinstance(body, Multipart):
        for part in body.parts:
            write_body(b, part, extensible=extensible)
        b.sp().string(body.subtype.encode("latin-1"))
        if extensible:
            b.sp()
            _body_params(b, body.params)
            _body_ext(b, body.disposition, body.language, body.location, body.extensions)
        b.raw(b")")
        return
    assert isinstance(body, BodyPart)
    b.string(body.type.encode("latin-1")).sp().string(body.subtype.encode("latin-1")).sp()
    _body_params(b, body.params)
    b.sp().nstring(body.id).sp().nstring(body.description).sp().string(body.encoding)
    b.sp().number(body.size)
    if body.envelope is not None and body.body is not None:
        b.sp()
        write_envelope(b, body.envelope)
        b.sp()
        write_body(b, body.body, extensible=extensible)
        b.sp().number(body.lines or 0)
    elif body.lines is not None:
        b.sp().number(body.lines)
    if extensible:
        b.sp().nstring(body.md5)
        _body_ext(b, body.disposition, body.language, body.location, body.extensions)
    b.raw(b")")


def _fetch_value(b: FrameBuilder, item: FetchItem, value: FetchValue) -> None:
    name = item.name
    if isinstance(value, Unparsed):
        b.value(value.value)
    elif name in ("UID", "RFC822.SIZE", "BINARY.SIZE") and isinstance(value, int):
        b.number(value)
    elif name == "MODSEQ" and isinstance(value, int):
        b.raw(b"(").number(value).raw(b")")
    elif name == "FLAGS" and isinstance(value, tuple):
        b.paren([f for f in value if isinstance(f, bytes)], b.flag)
    elif name == "INTERNALDATE" and isinstance(value, _dt.datetime):
        b.quoted(format_datetime(value))
    elif name == "ENVELOPE" and isinstance(value, Envelope):
        write_envelope(b, value)
    elif name in ("BODYSTRUCTURE", "BODY") and isinstance(value, BodyPart | Multipart):
        write_body(b, value, extensible=name == "BODYSTRUCTURE")
    elif name == "BINARY" and isinstance(value, bytes | Literal):
        data = value.data if isinstance(value, Literal) else value
        b.literal(data, binary=b"\x00" in data)
    elif isinstance(value, bytes) and item.section is not None:
        b.literal(value)  # section data: always a literal, as servers do
    elif isinstance(value, Literal):
        b.literal(value.view(), binary=value.binary)
    else:
        b.value(value)  # type: ignore[arg-type]


def fetch_value(item: FetchItem, value: FetchValue, *, utf8: bool = False) -> bytes:
    """The wire form of one FETCH response item's value (what follows its name),
    as :func:`build_response` writes it: a literal keeps its ``{n}`` CRLF."""
    b = FrameBuilder(utf8=utf8)
    _fetch_value(b, item, value)
    return b"".join(b._parts)


def _r_fetch(b: FrameBuilder, data: object, name: str | None) -> None:
    del name
    assert isinstance(data, FetchData)
    b.sp().number(data.number).raw(b" FETCH (")
    for i, (item, value) in enumerate(data.items):
        if i:
            b.sp()
        b.raw(bytes(item)).sp()
        _fetch_value(b, item, value)
    b.raw(b")")


_RESPONSE_WRITERS: dict[type, Callable[[FrameBuilder, object, str | None], None]] = {
    CapabilityData: _r_capability,
    ListData: _r_list,
    MailboxStatus: _r_status,
    SearchData: _r_search,
    EsearchData: _r_esearch,
    FlagsData: _r_flags,
    CountData: _r_count,
    VanishedData: _r_vanished,
    IdData: _r_id,
    NamespaceData: _r_namespace,
    GenericData: _r_generic,
    FetchData: _r_fetch,
}
