"""Server responses: a cheap head, typed data on demand.

:meth:`Response.parse` reads only the kind (tagged, untagged, continuation), the
tag, the leading number of ``* 12 FETCH`` / ``* 3 EXISTS`` and the response name:
enough to route a response. :attr:`Response.data` parses the rest on first access
into one of the data classes below (RFC 9051 section 7 and the extensions listed
in :mod:`imapproxy.wire.commands`). Unknown responses are parsed generically.

Leniency follows QUIRKS.md: a status line without text (G1, G2), a tagless
``[CODE]`` line or ``* [CODE]`` read as an untagged OK (G7), a tagged BYE (G9),
trailing spaces (G3, C2, E1), ``(MODSEQ n)`` in ESEARCH (E4), keywords in
any case (F12), unescaped quotes (F8), BODYSTRUCTURE and ENVELOPE oddities (B1-B11,
see :mod:`imapproxy.wire.bodystructure`), a LIST name sent as a bare token with
control characters (L2).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import enum
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from imapproxy.wire.bodystructure import Body, Envelope, read_body, read_envelope
from imapproxy.wire.commands import read_id_params
from imapproxy.wire.framing import Frame
from imapproxy.wire.grammar import TAG_CHAR
from imapproxy.wire.reader import Atom, Literal, ParseError, Reader, Value
from imapproxy.wire.values import FetchItem, Mailbox, SequenceSet, parse_datetime

__all__ = [
    "CapabilityData",
    "Condition",
    "ContinuationData",
    "CountData",
    "EsearchData",
    "FetchData",
    "FlagsData",
    "GenericData",
    "IdData",
    "Kind",
    "ListData",
    "MailboxStatus",
    "NamespaceData",
    "NamespaceDescriptor",
    "Response",
    "ResponseCode",
    "ResponseData",
    "SearchData",
    "Unparsed",
    "VanishedData",
    "has_capability",
]

_UNTAGGED = re.compile(rb"\* +(?:([0-9]{1,10}) +)?([A-Za-z][A-Za-z0-9._-]*)?")
_TAGGED = re.compile(rb"(" + TAG_CHAR + rb"+) +([A-Za-z]+)")
_STATUS_NAMES = frozenset(("OK", "NO", "BAD", "BYE", "PREAUTH"))
_CODE_NAME = re.compile(rb"\[([A-Za-z0-9._-]+)")


def _count(quirks: Counter[str] | None, name: str) -> None:
    if quirks is not None:
        quirks[name] += 1


class Kind(enum.Enum):
    TAGGED = "tagged"
    UNTAGGED = "untagged"
    CONTINUATION = "continuation"


# -- data classes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """A response code, ``[NAME args]`` (RFC 9051 section 7.1).

    ``args`` is the raw text after the name; the properties parse the codes the
    proxy uses.
    """

    name: str
    args: bytes = b""

    def _reader(self) -> Reader:
        return Reader(Frame(self.args + b"\r\n"), response=True)

    @property
    def capabilities(self) -> tuple[str, ...]:
        """For ``CAPABILITY``: the capability names as sent (compare them with
        :func:`has_capability`: they are case-insensitive)."""
        return tuple(c.decode("latin-1") for c in self.args.split())

    @property
    def flags(self) -> tuple[bytes, ...]:
        """For ``PERMANENTFLAGS``: the flags."""
        return self._reader().flag_list()

    @property
    def number(self) -> int:
        """For ``UIDNEXT``, ``UIDVALIDITY``, ``UNSEEN``, ``HIGHESTMODSEQ``..."""
        reader = self._reader()
        value = reader.number64()
        reader.expect_end()
        return value

    @property
    def appenduid(self) -> tuple[int, SequenceSet]:
        """For ``APPENDUID`` (RFC 4315): UIDVALIDITY and the new UIDs."""
        reader = self._reader()
        uidvalidity = reader.nz_number()
        reader.sp()
        return uidvalidity, reader.sequence_set()

    @property
    def copyuid(self) -> tuple[int, SequenceSet, SequenceSet]:
        """For ``COPYUID`` (RFC 4315): UIDVALIDITY, source UIDs, destination UIDs."""
        reader = self._reader()
        uidvalidity = reader.nz_number()
        reader.sp()
        source = reader.sequence_set()
        reader.sp()
        return uidvalidity, source, reader.sequence_set()

    @property
    def sequence_set(self) -> SequenceSet:
        """For ``MODIFIED`` (RFC 7162)."""
        return self._reader().sequence_set()

    @property
    def charsets(self) -> tuple[bytes, ...]:
        """For ``BADCHARSET``: the supported charsets (may be empty)."""
        if not self.args.strip():
            return ()
        reader = self._reader()
        return reader.paren_list(reader.astring)

    def __bytes__(self) -> bytes:
        name = self.name.encode()
        return b"[" + name + (b" " + self.args if self.args else b"") + b"]"


@dataclass(frozen=True, slots=True)
class Condition:
    """A status response: OK, NO, BAD, BYE or PREAUTH, tagged or not."""

    status: str
    code: ResponseCode | None
    text: bytes


@dataclass(frozen=True, slots=True)
class ContinuationData:
    """``+ text`` (or ``+`` alone, QUIRKS F1)."""

    text: bytes

    def sasl_payload(self) -> bytes:
        """The text as a SASL challenge (base64, RFC 9051 section 6.2.2).

        Raises:
            ParseError: not valid base64 (QUIRKS A3: inside AUTHENTICATE only).
        """
        try:
            return base64.b64decode(self.text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ParseError("Invalid base64 in continuation request") from exc


@dataclass(frozen=True, slots=True)
class CapabilityData:
    """CAPABILITY or ENABLED: the names as sent (QUIRKS C2, C3 tolerated).

    Capability names are case-insensitive; the spelling is kept so that a list
    passed on to a client reads as the server wrote it (``IMAP4rev1``).
    """

    capabilities: tuple[str, ...]

    def has(self, name: str) -> bool:
        return has_capability(self.capabilities, name)


def has_capability(capabilities: tuple[str, ...], name: str) -> bool:
    """Whether ``name`` is in ``capabilities``, compared case-insensitively."""
    wanted = name.upper()
    return any(cap.upper() == wanted for cap in capabilities)


@dataclass(frozen=True, slots=True)
class ListData:
    """LIST / LSUB / XLIST (RFC 9051 section 7.3.1; LIST-EXTENDED RFC 5258)."""

    flags: tuple[bytes, ...]
    delimiter: bytes | None
    mailbox: Mailbox
    extended: tuple[tuple[bytes, Value], ...] = ()

    @property
    def oldname(self) -> Mailbox | None:
        """OLDNAME of LIST-EXTENDED (RFC 5465), if present."""
        for tag, value in self.extended:
            if tag.upper() == b"OLDNAME" and isinstance(value, tuple) and value:
                name = value[0]
                if isinstance(name, bytes):
                    return Mailbox(name)
                if isinstance(name, Atom):
                    return Mailbox(name.value)
        return None

    @property
    def childinfo(self) -> tuple[bytes, ...]:
        for tag, value in self.extended:
            if tag.upper() == b"CHILDINFO" and isinstance(value, tuple):
                return tuple(v for v in value if isinstance(v, bytes))
        return ()

    def has_flag(self, flag: bytes) -> bool:
        lowered = flag.lower()
        return any(f.lower() == lowered for f in self.flags)


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """``* STATUS mailbox (ITEM n ...)``; item names upper-cased."""

    mailbox: Mailbox
    items: tuple[tuple[str, int], ...]

    def get(self, name: str) -> int | None:
        for item, value in self.items:
            if item == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class SearchData:
    """``* SEARCH n ...`` (and SORT); ``modseq`` from CONDSTORE."""

    numbers: tuple[int, ...]
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class EsearchData:
    """``* ESEARCH`` (RFC 4731, RFC 9051): correlator, UID flag, results.

    The correlator's ``TAG`` names the command; ``mailbox`` and ``uidvalidity``
    come with multi-mailbox searches (RFC 7377).
    """

    tag: bytes | None
    uid: bool
    results: tuple[tuple[str, Value], ...]
    mailbox: Mailbox | None = None
    uidvalidity: int | None = None

    def _get(self, name: str) -> Value:
        for key, value in self.results:
            if key == name:
                return value
        return None

    def _int(self, name: str) -> int | None:
        value = self._get(name)
        if not isinstance(value, Atom):
            return None
        reader = Reader(Frame(value.value + b"\r\n"))
        number = reader.number64()
        reader.expect_end()
        return number

    @property
    def min(self) -> int | None:
        return self._int("MIN")

    @property
    def max(self) -> int | None:
        return self._int("MAX")

    @property
    def count(self) -> int | None:
        return self._int("COUNT")

    @property
    def modseq(self) -> int | None:
        return self._int("MODSEQ")

    @property
    def all(self) -> SequenceSet | None:
        """The ALL result. Raises ParseError if it is not a sequence set."""
        value = self._get("ALL")
        if not isinstance(value, Atom):
            return None
        reader = Reader(Frame(value.value + b"\r\n"))
        result = reader.sequence_set()
        reader.expect_end()
        return result


@dataclass(frozen=True, slots=True)
class FlagsData:
    flags: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CountData:
    """EXISTS, RECENT, EXPUNGE: the number before the name."""

    number: int


@dataclass(frozen=True, slots=True)
class VanishedData:
    """``* VANISHED [(EARLIER)] uids`` (RFC 7162 section 3.2.10)."""

    earlier: bool
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A FETCH item value that did not follow its grammar, kept generically
    (QUIRKS B8, B12) so the rest of the response still counts."""

    value: Value


#: A FETCH item's value: UID/sizes/MODSEQ as int, FLAGS as a tuple of flags,
#: INTERNALDATE as a datetime, ENVELOPE, BODY(STRUCTURE), section data as bytes or
#: a literal by reference (None for NIL), an extension item generically, and
#: :class:`Unparsed` for a known item whose value could not be read.
FetchValue = (
    int | tuple[bytes, ...] | _dt.datetime | Envelope | Body | bytes | Literal | Unparsed | Value
)


@dataclass(frozen=True, slots=True)
class FetchData:
    """``* n FETCH (...)``: the items in the order sent (QUIRKS B14: any order)."""

    number: int
    items: tuple[tuple[FetchItem, FetchValue], ...]

    def get(self, key: bytes | str) -> FetchValue:
        """The value of the item whose :attr:`FetchItem.key` is ``key``, or None."""
        if isinstance(key, str):
            key = key.encode()
        for item, value in self.items:
            if item.key == key:
                return value
        return None

    @property
    def uid(self) -> int | None:
        value = self.get(b"UID")
        return value if isinstance(value, int) else None

    @property
    def flags(self) -> tuple[bytes, ...] | None:
        for item, value in self.items:
            if item.name == "FLAGS" and isinstance(value, tuple):
                flags = [flag for flag in value if isinstance(flag, bytes)]
                return tuple(flags) if len(flags) == len(value) else None
        return None

    @property
    def modseq(self) -> int | None:
        value = self.get(b"MODSEQ")
        return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class IdData:
    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class NamespaceDescriptor:
    prefix: bytes
    delimiter: bytes | None
    extensions: tuple[tuple[bytes, tuple[bytes, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class NamespaceData:
    """``* NAMESPACE personal other shared`` (RFC 2342); each None for NIL."""

    personal: tuple[NamespaceDescriptor, ...] | None
    other: tuple[NamespaceDescriptor, ...] | None
    shared: tuple[NamespaceDescriptor, ...] | None


@dataclass(frozen=True, slots=True)
class GenericData:
    values: tuple[Value, ...]


ResponseData = (
    Condition
    | ContinuationData
    | CapabilityData
    | ListData
    | MailboxStatus
    | SearchData
    | EsearchData
    | FlagsData
    | CountData
    | VanishedData
    | FetchData
    | IdData
    | NamespaceData
    | GenericData
)


# -- the response view ----------------------------------------------------------------


class Response:
    """A parsed view of one response frame.

    ``kind``, ``tag`` (tagged only), ``number`` (``* 12 FETCH``) and ``name``
    (upper-case; ``""`` for a continuation) are read at construction; ``data`` on
    first access.
    """

    __slots__ = ("_data", "_pos", "frame", "kind", "name", "number", "quirks", "tag")

    def __init__(
        self,
        frame: Frame,
        kind: Kind,
        name: str,
        pos: int,
        tag: bytes | None = None,
        number: int | None = None,
        quirks: Counter[str] | None = None,
    ) -> None:
        self.frame = frame
        self.kind = kind
        self.name = name
        self.tag = tag
        self.number = number
        self.quirks = quirks
        self._pos = pos
        self._data: ResponseData | None = None

    @classmethod
    def parse(cls, frame: Frame, quirks: Counter[str] | None = None) -> Response:
        """Read the head of a response frame.

        Args:
            frame: a frame read in the client role.
            quirks: counts the tolerances used (head and, later, data) by
                QUIRKS.md row.

        Raises:
            ParseError: not a response (e.g. a tagged line whose status word is
                not OK, NO, BAD or BYE -- QUIRKS G8 -- or an empty line).
        """
        raw = frame.raw
        first = raw[:1]
        if first == b"*":
            match = _UNTAGGED.match(raw)
            if match is not None:
                number = match.group(1)
                word = match.group(2)
                if word is not None:
                    name = word.decode("ascii").upper()
                    count = int(number) if number is not None else None
                    return cls(frame, Kind.UNTAGGED, name, match.end(), None, count, quirks)
                if number is None and raw[match.end() : match.end() + 1] == b"[":
                    _count(quirks, "G7")  # "* [CODE] ..." read as "* OK [CODE] ..."
                    return cls(frame, Kind.UNTAGGED, "OK", match.end(), quirks=quirks)
            raise ParseError("Malformed untagged response")
        if first == b"+":
            return cls(frame, Kind.CONTINUATION, "", 1, quirks=quirks)
        if first == b"[":
            _count(quirks, "G7")  # a tagless "[CODE] ..." line
            return cls(frame, Kind.UNTAGGED, "OK", 0, quirks=quirks)
        match = _TAGGED.match(raw)
        if match is None:
            raise ParseError("Malformed response")
        name = match.group(2).decode("ascii").upper()
        if name not in _STATUS_NAMES or name == "PREAUTH":
            raise ParseError(f"Tagged response with status {name!r}")
        if name == "BYE":
            _count(quirks, "G9")
        return cls(frame, Kind.TAGGED, name, match.end(), match.group(1), quirks=quirks)

    @property
    def is_status(self) -> bool:
        """OK, NO, BAD, BYE or PREAUTH."""
        return self.name in _STATUS_NAMES and self.kind is not Kind.CONTINUATION

    @property
    def data(self) -> ResponseData:
        """The typed data (parsed once, on first access).

        Raises:
            ParseError: the data does not follow the grammar, even leniently.
        """
        if self._data is None:
            reader = Reader(self.frame, self._pos, response=True, quirks=self.quirks)
            self._data = self._parse_data(reader)
        return self._data

    def _parse_data(self, reader: Reader) -> ResponseData:
        if self.kind is Kind.CONTINUATION:
            if not reader.maybe_sp():
                reader.quirk("F1")  # "+" alone
            return ContinuationData(reader.rest())
        parser = _PARSERS.get(self.name)
        if parser is not None:
            return parser(self, reader)
        return GenericData(reader.values())

    @property
    def condition(self) -> Condition | None:
        """The data of a status response, else None."""
        if not self.is_status:
            return None
        data = self.data
        assert isinstance(data, Condition)
        return data

    def __repr__(self) -> str:
        if self.kind is Kind.TAGGED:
            return f"Response(tagged {self.tag!r} {self.name})"
        if self.kind is Kind.CONTINUATION:
            return "Response(continuation)"
        number = f"{self.number} " if self.number is not None else ""
        return f"Response(untagged {number}{self.name})"


# -- data parsers ------------------------------------------------------------------------


def _condition_rest(status: str, reader: Reader) -> Condition:
    """``[SP] ["[" code "]"] [SP text]`` after the status word (G1, G2 lenient)."""
    if not reader.maybe_sp():
        if reader.at_end():
            reader.quirk("G2")  # "a1 OK" with nothing after it
        elif reader.peek() != 0x5B:
            raise reader.error("Expected SP")
    code = None
    if reader.peek() == 0x5B:  # "["
        code = _response_code(reader)
        if code is not None and not reader.maybe_sp() and reader.at_end():
            reader.quirk("G1")  # "* OK [CODE]" without text
    return Condition(status, code, reader.rest())


def _response_code(reader: Reader) -> ResponseCode | None:
    """``"[" name [SP args] "]"`` read with the grammar, so a ``]`` inside a
    quoted string or a keyword (QUIRKS L7) does not end it; None (and nothing
    consumed) when the text merely starts with ``[`` (QUIRKS G13)."""
    start = reader.pos
    match = _CODE_NAME.match(reader.raw, start, reader.end)
    if match is None:
        return None
    reader.pos = match.end()
    name = match.group(1).upper().decode("ascii")
    if reader.maybe_char(0x5D):
        return ResponseCode(name)
    if not reader.maybe_sp():
        reader.pos = start
        return None
    args_start = reader.pos
    try:
        while reader.peek() != 0x5D:
            if reader.peek() == -1:
                raise reader.error("Expected ']'")
            if not reader.maybe_sp():
                reader.value()
    except ParseError:
        close = reader.raw.find(b"]", args_start, reader.end)
        if close < 0:
            reader.pos = start
            return None
        reader.pos = close
    args = reader.raw[args_start : reader.pos]
    reader.pos += 1
    return ResponseCode(name, args)


def _condition(response: Response, reader: Reader) -> Condition:
    return _condition_rest(response.name, reader)


def _capability(response: Response, reader: Reader) -> CapabilityData:
    del response
    text = reader.rest()
    return CapabilityData(tuple(c.decode("latin-1") for c in text.split()))


def _flags(response: Response, reader: Reader) -> FlagsData:
    del response
    reader.sp()
    flags = reader.flag_list()
    reader.expect_end()
    return FlagsData(flags)


def _list(response: Response, reader: Reader) -> ListData:
    del response
    reader.sp()
    flags = reader.flag_list()
    reader.sp()
    delimiter = None if reader.maybe_nil() else reader.quoted()
    reader.sp()
    start = reader.pos
    try:
        mailbox = reader.mailbox()
    except ParseError:
        mailbox = None
    if mailbox is None or not (reader.at_end() or reader.peek() == 0x20):
        reader.pos = start  # QUIRKS L2: a bare name with control characters
        return ListData(flags, delimiter, Mailbox(reader.rest().rstrip(b" ")))
    extended: list[tuple[bytes, Value]] = []
    if not reader.at_end():
        reader.sp()
        items = reader.paren_list(reader.value)
        for i in range(0, len(items) - 1, 2):
            tag = items[i]
            if isinstance(tag, Atom):
                tag = tag.value
            if isinstance(tag, bytes):
                extended.append((tag, items[i + 1]))
    reader.expect_end()
    return ListData(flags, delimiter, mailbox, tuple(extended))


def _status(response: Response, reader: Reader) -> MailboxStatus:
    del response
    reader.sp()
    mailbox = reader.mailbox()
    reader.sp()
    reader.char(0x28)
    items: list[tuple[str, int]] = []
    while True:
        reader.maybe_sp()
        if reader.maybe_char(0x29):
            break
        name = reader.keyword()
        reader.sp()
        items.append((name, reader.number64()))
    reader.expect_end()
    return MailboxStatus(mailbox, tuple(items))


def _search(response: Response, reader: Reader) -> SearchData:
    del response
    numbers: list[int] = []
    modseq = None
    while not reader.at_end():
        reader.sp()
        if reader.peek() == 0x28:
            reader.char(0x28)
            reader.expect_keyword("MODSEQ")
            reader.sp()
            modseq = reader.number64()
            reader.close_paren()
            continue
        numbers.append(reader.nz_number())
    reader.expect_end()
    return SearchData(tuple(numbers), modseq)


def _esearch(response: Response, reader: Reader) -> EsearchData:
    del response
    tag = None
    mailbox = None
    uidvalidity = None
    uid = False
    results: list[tuple[str, Value]] = []
    if reader.next_is_sp_item():
        reader.sp()
        if reader.peek() == 0x28:
            # search-correlator: "(" "TAG" SP tag-string [SP "MAILBOX" SP mailbox
            # SP "UIDVALIDITY" SP nz-number] ")" (RFC 9051 tag-string is an astring)
            reader.char(0x28)
            while True:
                key = reader.keyword()
                reader.sp()
                if key == "TAG":
                    tag = reader.astring()
                elif key == "MAILBOX":
                    mailbox = reader.mailbox()
                elif key == "UIDVALIDITY":
                    uidvalidity = reader.nz_number()
                else:
                    reader.value()
                if reader.at_end():
                    raise reader.error("Expected ')'")
                if reader.maybe_char(0x29):
                    break
                reader.sp()
                if reader.maybe_char(0x29):
                    reader.quirk("F4")
                    break
        else:
            reader.pos -= 1
    while not reader.at_end():
        reader.sp()
        if reader.peek() == 0x28:
            # QUIRKS E4: "(MODSEQ n)" in parentheses, as in SEARCH responses.
            group = reader.value()
            if not (
                isinstance(group, tuple)
                and len(group) == 2
                and isinstance(group[0], Atom)
                and group[0].upper() == "MODSEQ"
            ):
                raise reader.error("Unexpected list in ESEARCH")
            results.append(("MODSEQ", group[1]))
            reader.quirk("E4")
            continue
        name = reader.keyword()
        if name == "UID" and not results:
            uid = True
            continue
        reader.sp()
        results.append((name, reader.value()))
    reader.expect_end()
    return EsearchData(tag, uid, tuple(results), mailbox, uidvalidity)


def _vanished(response: Response, reader: Reader) -> VanishedData:
    del response
    reader.sp()
    earlier = False
    if reader.peek() == 0x28:
        reader.char(0x28)
        reader.expect_keyword("EARLIER")
        reader.close_paren()
        reader.sp()
        earlier = True
    uids = reader.sequence_set()
    reader.expect_end()
    return VanishedData(earlier, uids)


def _count_data(response: Response, reader: Reader) -> CountData:
    """EXISTS, RECENT, EXPUNGE: the number comes before the name."""
    if response.number is None:
        raise reader.error(f"{response.name} needs a number")
    reader.expect_end()
    return CountData(response.number)


def _id(response: Response, reader: Reader) -> IdData:
    del response
    reader.sp()
    params = read_id_params(reader)
    reader.expect_end()
    return IdData(params)


def _namespace_list(reader: Reader) -> tuple[NamespaceDescriptor, ...] | None:
    if reader.maybe_nil():
        return None
    value = reader.value()
    if not isinstance(value, tuple):
        raise reader.error("Expected namespace list")
    descriptors = []
    for entry in value:
        if not isinstance(entry, tuple) or not entry:
            raise reader.error("Expected namespace descriptor")
        prefix = entry[0]
        delimiter = entry[1] if len(entry) > 1 else None
        if isinstance(prefix, Literal):
            if prefix.streamed:
                raise reader.error("Namespace prefix too large")
            prefix = prefix.data
        if not isinstance(prefix, bytes) or not (delimiter is None or isinstance(delimiter, bytes)):
            raise reader.error("Expected namespace prefix and delimiter")
        extensions = []
        rest = entry[2:]
        for i in range(0, len(rest) - 1, 2):
            name, values = rest[i], rest[i + 1]
            if isinstance(name, bytes) and isinstance(values, tuple):
                strings = []
                for v in values:
                    if isinstance(v, Literal):
                        if v.streamed:
                            raise reader.error("Namespace extension value too large")
                        v = v.data
                    if isinstance(v, bytes):
                        strings.append(v)
                extensions.append((name, tuple(strings)))
        descriptors.append(NamespaceDescriptor(prefix, delimiter, tuple(extensions)))
    return tuple(descriptors)


def _namespace(response: Response, reader: Reader) -> NamespaceData:
    del response
    reader.sp()
    personal = _namespace_list(reader)
    reader.sp()
    other = _namespace_list(reader)
    reader.sp()
    shared = _namespace_list(reader)
    reader.expect_end()
    return NamespaceData(personal, other, shared)


_FETCH_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*")


def _fetch(response: Response, reader: Reader) -> FetchData:
    if response.number is None:
        raise reader.error("FETCH needs a message number")
    reader.sp()
    reader.char(0x28)
    items: list[tuple[FetchItem, FetchValue]] = []
    raw = reader.raw
    while True:
        while reader.peek() == 0x20:
            reader.pos += 1
        if reader.maybe_char(0x29):
            break
        match = _FETCH_NAME.match(raw, reader.pos, reader.end)
        if match is None:
            raise reader.error("Expected fetch item")
        reader.pos = match.end()
        name = match.group().decode("ascii").upper()
        item = FetchItem(name)
        read: Callable[[Reader], FetchValue] = _FETCH_VALUES.get(name, Reader.value)
        if reader.peek() == 0x5B and name in ("BODY", "BINARY", "BINARY.SIZE"):
            section = reader.section(binary=name != "BODY")
            item = FetchItem(name, section, reader.partial(response=True))
            read = Reader.number64 if name == "BINARY.SIZE" else Reader.nstring_or_literal
        elif name in ("BODY", "BODYSTRUCTURE"):
            read = read_body
        reader.sp()
        start = reader.pos
        value: FetchValue
        try:
            value = read(reader)
        except ParseError:
            # One odd item (RFC822.SIZE -1, INTERNALDATE NIL, ENVELOPE NIL:
            # QUIRKS B8, B12) must not cost the UID and FLAGS beside it.
            reader.pos = start
            unparsed = reader.value()
            reader.quirk("B12" if unparsed is None else "B8")
            value = Unparsed(unparsed)
        items.append((item, value))
    reader.expect_end()
    return FetchData(response.number, tuple(items))


_SIGNED = re.compile(rb"-?[0-9]+")


def _fetch_modseq(reader: Reader) -> int:
    """``MODSEQ (n)``; also without parentheses, and ``-1`` read as 0 (QUIRKS B8)."""
    paren = reader.maybe_char(0x28)
    match = _SIGNED.match(reader.raw, reader.pos, reader.end)
    if match is None:
        raise reader.error("Expected mod-sequence")
    if len(match.group()) > 20:
        raise reader.error("Number out of range")
    reader.pos = match.end()
    value = max(int(match.group()), 0)
    if value > (1 << 63) - 1:
        raise reader.error("Number out of range")
    if paren:
        reader.close_paren()
    return value


def _fetch_internaldate(reader: Reader) -> _dt.datetime | bytes:
    text = reader.quoted()
    try:
        return parse_datetime(text)
    except ValueError:
        return text  # relayed as is; only features that need the date suffer


_FETCH_VALUES: dict[str, Callable[[Reader], FetchValue]] = {
    "UID": Reader.nz_number,
    "RFC822.SIZE": Reader.number64,
    "FLAGS": Reader.flag_list,
    "MODSEQ": _fetch_modseq,
    "INTERNALDATE": _fetch_internaldate,
    "ENVELOPE": read_envelope,
    "RFC822": Reader.nstring_or_literal,
    "RFC822.HEADER": Reader.nstring_or_literal,
    "RFC822.TEXT": Reader.nstring_or_literal,
}


_PARSERS: dict[str, Callable[[Response, Reader], ResponseData]] = {
    "OK": _condition,
    "NO": _condition,
    "BAD": _condition,
    "BYE": _condition,
    "PREAUTH": _condition,
    "CAPABILITY": _capability,
    "ENABLED": _capability,
    "EXISTS": _count_data,
    "RECENT": _count_data,
    "EXPUNGE": _count_data,
    "FLAGS": _flags,
    "LIST": _list,
    "LSUB": _list,
    "XLIST": _list,
    "STATUS": _status,
    "SEARCH": _search,
    "SORT": _search,
    "ESEARCH": _esearch,
    "VANISHED": _vanished,
    "FETCH": _fetch,
    "ID": _id,
    "NAMESPACE": _namespace,
}
