"""Typed IMAP values: secrets, mailbox names, sequence sets, sections, fetch items.

Wire data stays ``bytes`` (IMAP traffic is not guaranteed to be UTF-8); these
types decode only where a feature needs text:

* :class:`Secret` -- a password or SASL payload; its repr never shows the value.
* :class:`Mailbox` -- a mailbox name as on the wire, with modified UTF-7
  (RFC 3501 section 5.1.3) and UTF-8 (RFC 6855, UTF8=ACCEPT) decoding. Decoding
  refuses non-canonical modified UTF-7, so two different byte strings can never
  decode to the same name (a rule on "Archive" cannot be dodged by spelling it
  differently). ``INBOX`` compares case-insensitively (RFC 9051 section 5.1).
* :class:`SequenceSet` -- message sets with ``*``, ranges and SEARCHRES ``$``
  (RFC 5182).
* :class:`Section` and :class:`FetchItem` -- ``BODY[1.2.HEADER.FIELDS (To)]<0.100>``
  and friends (RFC 9051 section 6.4.5, RFC 3516 BINARY).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imapproxy.wire.errors import LocalProtocolError
from imapproxy.wire.grammar import astring_form

__all__ = [
    "STAR",
    "FetchItem",
    "Mailbox",
    "Secret",
    "Section",
    "SequenceSet",
    "format_date",
    "format_datetime",
    "mutf7_decode",
    "mutf7_encode",
    "parse_date",
    "parse_datetime",
]


class Secret:
    """A credential (password, SASL response). ``repr`` and ``str`` are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        """The secret's bytes, for the one place that must send them."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret cannot be pickled")


# -- modified UTF-7 (RFC 3501 section 5.1.3) ------------------------------------

_MUTF7_RUN = re.compile(rb"&([A-Za-z0-9+,]*)-")
_DIRECT = re.compile(rb"[\x20-\x25\x27-\x7e]*")


def mutf7_encode(name: str) -> bytes:
    """Encode a mailbox name in modified UTF-7."""
    out: list[bytes] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append(b"&" + base64.b64encode(data).rstrip(b"=").replace(b"/", b",") + b"-")
            run.clear()

    for ch in name:
        if "\x20" <= ch <= "\x7e":
            flush()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            run.append(ch)
    flush()
    return b"".join(out)


def mutf7_decode(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name, refusing non-canonical encodings.

    Raises:
        ValueError: the bytes are not the canonical modified UTF-7 form of any
            name: 8-bit or control octets, a bare ``&``, bad base64, padding or
            non-zero leftover bits, an encoded printable ASCII character, two
            adjacent encoded runs, or broken UTF-16.
    """
    out: list[str] = []
    pos = 0
    size = len(data)
    prev_run_end = -1
    while pos < size:
        direct = _DIRECT.match(data, pos)
        assert direct is not None  # the pattern matches the empty string
        if direct.end() > pos:
            out.append(direct.group().decode("ascii"))
            pos = direct.end()
            continue
        if data[pos] != 0x26:  # "&"
            raise ValueError(f"octet {data[pos]:#04x} is not allowed in modified UTF-7")
        run = _MUTF7_RUN.match(data, pos)
        if run is None:
            raise ValueError("unterminated or malformed '&' sequence in modified UTF-7")
        encoded = run.group(1)
        if not encoded:
            out.append("&")
        else:
            if prev_run_end == pos:
                raise ValueError("adjacent encoded runs in modified UTF-7")
            out.append(_decode_run(encoded))
            prev_run_end = run.end()
        pos = run.end()
    return "".join(out)


def _decode_run(encoded: bytes) -> str:
    if len(encoded) % 4 == 1:
        raise ValueError("truncated base64 in modified UTF-7")
    padded = encoded.replace(b",", b"/") + b"=" * (-len(encoded) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError("bad base64 in modified UTF-7") from exc
    if len(raw) % 2:
        raise ValueError("odd number of octets in a modified UTF-7 run")
    # The canonical encoding leaves the unused low bits zero: re-encode and compare.
    if base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") != encoded:
        raise ValueError("non-zero padding bits in modified UTF-7")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ValueError("invalid UTF-16 in modified UTF-7") from exc
    if any("\x20" <= ch <= "\x7e" for ch in text):
        raise ValueError("printable ASCII encoded in modified UTF-7")
    return text


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox name as it travels on the wire (quoting or literal removed).

    ``raw`` is kept as received so a name is relayed unchanged (QUIRKS L3);
    :meth:`decode` gives the text. Equality and hashing treat ``INBOX`` in any
    case as the same mailbox and compare everything else byte for byte.
    """

    raw: bytes

    @classmethod
    def from_str(cls, name: str, *, utf8: bool = False) -> Mailbox:
        """The wire form of ``name``: modified UTF-7, or UTF-8 under UTF8=ACCEPT."""
        if name.isascii() and name.upper() == "INBOX":
            return cls(b"INBOX")
        return cls(name.encode("utf-8") if utf8 else mutf7_encode(name))

    @property
    def is_inbox(self) -> bool:
        return len(self.raw) == 5 and self.raw.upper() == b"INBOX"

    @property
    def key(self) -> bytes:
        """The comparison key: ``INBOX`` upper-cased, other names as they are."""
        return b"INBOX" if self.is_inbox else self.raw

    def canonical(self, delimiter: bytes | None) -> bytes:
        """The key with an ``INBOX`` prefix upper-cased too: ``inbox/Sub`` is
        ``INBOX/Sub`` where ``/`` is the hierarchy delimiter (servers resolve it so;
        RFC 9051 section 5.1). For rules and views, not for relaying."""
        if self.is_inbox:
            return b"INBOX"
        raw = self.raw
        if delimiter and raw[:5].upper() == b"INBOX" and raw[5 : 5 + len(delimiter)] == delimiter:
            return b"INBOX" + raw[5:]
        return raw

    def decode(self, *, utf8: bool = False) -> str:
        """The name as text.

        Args:
            utf8: the connection enabled UTF8=ACCEPT (or IMAP4rev2), so names are
                UTF-8 rather than modified UTF-7.

        Raises:
            ValueError: the name is not valid (canonical) in that encoding.
        """
        if self.is_inbox:
            return "INBOX"
        if utf8:
            try:
                return self.raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError("mailbox name is not valid UTF-8") from exc
        return mutf7_decode(self.raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mailbox):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Mailbox({self.raw!r})"


# -- sequence sets (RFC 9051 section 9, "sequence-set"; RFC 5182 "$") -----------

#: Stands for ``*`` (the largest number in use) in a :class:`SequenceSet` range.
STAR = None

_SEQ_SET = re.compile(
    rb"(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?(?:,(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?)*"
)
_MAX_NUMBER = 0xFFFFFFFF


def _seq_number(token: bytes) -> int | None:
    if token == b"*":
        return STAR
    value = int(token)
    if value > _MAX_NUMBER:
        raise ValueError(f"number {value} exceeds 32 bits")
    return value


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A set of message sequence numbers or UIDs.

    ``ranges`` holds ``(first, last)`` pairs as written (``last == first`` for a
    single number, :data:`STAR` for ``*``); ``saved`` is SEARCHRES ``$``, the result
    of the last ``SEARCH ... RETURN (SAVE)``.
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, data: bytes) -> SequenceSet:
        """Parse ``1:3,5,7:*`` or ``$``.

        Raises:
            ValueError: not a sequence set (e.g. ``0``, ``-1``, ``5:``, empty).
        """
        if data == b"$":
            return cls(saved=True)
        if _SEQ_SET.fullmatch(data) is None:
            raise ValueError(f"invalid sequence set {data[:40]!r}")
        ranges = []
        for item in data.split(b","):
            first, _, last = item.partition(b":")
            a = _seq_number(first)
            ranges.append((a, _seq_number(last) if last else a))
        return cls(tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The most compact set holding exactly ``numbers``."""
        ordered = sorted(set(numbers))
        ranges: list[tuple[int | None, int | None]] = []
        for n in ordered:
            if not 1 <= n <= _MAX_NUMBER:
                raise ValueError("sequence numbers and UIDs are 32-bit numbers from 1")
            if ranges:
                first, last = ranges[-1]
                if last is not None and n == last + 1:
                    ranges[-1] = (first, n)
                    continue
            ranges.append((n, n))
        return cls(tuple(ranges))

    def __bytes__(self) -> bytes:
        if self.saved:
            return b"$"
        if not self.ranges:
            raise ValueError("an empty sequence set has no wire form")
        parts = []
        for first, last in self.ranges:
            a = b"*" if first is STAR else str(first).encode()
            if first == last:
                parts.append(a)
            else:
                parts.append(a + b":" + (b"*" if last is STAR else str(last).encode()))
        return b",".join(parts)

    def __str__(self) -> str:
        return bytes(self).decode("ascii")

    def bounds(self, largest: int) -> list[tuple[int, int]]:
        """Ranges as ascending ``(low, high)`` pairs, ``*`` resolved to ``largest``,
        sorted and merged (QUIRKS E6: what the proxy writes is ascending)."""
        if self.saved:
            raise ValueError("'$' must be resolved by the session first")
        spans = []
        for first, last in self.ranges:
            a = largest if first is None else first
            b = largest if last is None else last
            if a > b:
                a, b = b, a
            spans.append((a, b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def normalised(self, largest: int | None = None) -> SequenceSet:
        """Ascending, merged, de-duplicated ranges (QUIRKS E6).

        With ``largest`` unknown, ranges that involve ``*`` are kept as they are
        (after the finite ones): ``5:*`` means ``3:5`` when the largest number is 3,
        so it cannot be merged with anything safely.
        """
        if largest is not None:
            return SequenceSet(tuple(self.bounds(largest)))
        if self.saved:
            return self
        finite = tuple(r for r in self.ranges if STAR not in r)
        starred: list[tuple[int | None, int | None]] = []
        for r in self.ranges:
            if STAR in r and r not in starred:
                starred.append(r)
        merged = SequenceSet(finite).bounds(0) if finite else []
        return SequenceSet((*merged, *starred))

    def contains(self, number: int, largest: int) -> bool:
        """Whether ``number`` is in the set and exists: ``*`` is ``largest``, the
        largest number in use, and nothing above it exists (``5:*`` with 3 in use
        is ``3:5``, which holds only 3)."""
        return number <= largest and any(a <= number <= b for a, b in self.bounds(largest))

    def iter(self, largest: int) -> Iterator[int]:
        """Every existing number in the set, ascending (none above ``largest``)."""
        for a, b in self.bounds(largest):
            yield from range(a, min(b, largest) + 1)


# -- dates (RFC 9051 section 9: date, date-time) --------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.upper().encode(): i + 1 for i, m in enumerate(_MONTHS)}
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATETIME = re.compile(
    rb"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


def parse_date(data: bytes) -> _dt.date:
    """``1-Feb-2024`` (search keys). Raises ValueError."""
    match = _DATE.fullmatch(data)
    if match is None or match.group(2).upper() not in _MONTH_NUMBER:
        raise ValueError(f"invalid date {data[:30]!r}")
    return _dt.date(int(match.group(3)), _MONTH_NUMBER[match.group(2).upper()], int(match.group(1)))


def parse_datetime(data: bytes) -> _dt.datetime:
    """`` 1-Feb-2024 10:00:00 +0100`` (INTERNALDATE, APPEND). Raises ValueError."""
    match = _DATETIME.fullmatch(data)
    if match is None or match.group(2).upper() not in _MONTH_NUMBER:
        raise ValueError(f"invalid date-time {data[:40]!r}")
    day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    offset = _dt.timedelta(hours=int(zh), minutes=int(zm))
    tz = _dt.timezone(-offset if sign == b"-" else offset)
    return _dt.datetime(
        int(year),
        _MONTH_NUMBER[month.upper()],
        int(day),
        int(hh),
        int(mm),
        int(ss),
        tzinfo=tz,
    )


def format_date(value: _dt.date) -> bytes:
    return f"{value.day}-{_MONTHS[value.month - 1]}-{value.year:04d}".encode("ascii")


def format_datetime(value: _dt.datetime) -> bytes:
    """The quoted-string content of an INTERNALDATE (``dd-Mon-yyyy hh:mm:ss +zzzz``)."""
    offset = value.utcoffset() or _dt.timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    ).encode("ascii")


# -- sections and fetch items (RFC 9051 section 6.4.5, RFC 3516) ----------------

_SECTION_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")


def _field_form(name: bytes) -> bytes:
    try:
        return astring_form(name)
    except ValueError as exc:
        raise LocalProtocolError(f"header name {name[:40]!r} cannot be written") from exc


def _field_key(name: bytes) -> bytes:
    """A header name's form in a comparison key: never fails (8-bit names from a
    server have no strict written form, but must still be matched)."""
    try:
        return astring_form(name).upper()
    except ValueError:
        return b'"' + name.upper().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@dataclass(frozen=True, slots=True)
class Section:
    """The ``[...]`` of ``BODY[...]`` / ``BINARY[...]``.

    ``part`` is the part number path (``()`` for the whole message), ``text`` one
    of ``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME`` or
    ``None``, ``fields`` the header names of ``HEADER.FIELDS[.NOT]`` as sent.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.text is not None and self.text not in _SECTION_TEXTS:
            raise ValueError(f"unknown section text {self.text!r}")
        if self.text == "MIME" and not self.part:
            raise ValueError("MIME needs a part number")
        if bool(self.fields) != (self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")):
            raise ValueError("header fields go with HEADER.FIELDS[.NOT] only")

    def _spec(self, fields: Iterable[bytes]) -> bytes:
        parts = [str(n).encode() for n in self.part]
        if self.text is not None:
            parts.append(self.text.encode())
        spec = b".".join(parts)
        if self.fields:
            spec += b" (" + b" ".join(fields) + b")"
        return spec

    def __bytes__(self) -> bytes:
        """The section spec as written in a command: header names as astrings.

        Raises:
            LocalProtocolError: a header name that no astring can carry (CR, LF).
        """
        return self._spec(_field_form(f) for f in self.fields)

    @property
    def key(self) -> bytes:
        """Comparison key: header names upper-cased (they are case-insensitive)."""
        return self._spec(_field_key(f) for f in self.fields)


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One FETCH data item, in a request or a response.

    ``name`` is upper-case (``UID``, ``BODY``, ``BINARY``, ``BINARY.SIZE``,
    ``RFC822.HEADER``, an extension's name, ...); ``peek`` marks ``BODY.PEEK`` /
    ``BINARY.PEEK``; ``section`` is set for ``BODY[...]``, ``BINARY[...]`` and
    ``BINARY.SIZE[...]``; ``partial`` is ``(offset, length)`` of ``<o.l>`` in a
    request, ``(origin, None)`` of ``<o>`` in a response; ``modifiers`` are the
    atoms of ``PREVIEW (LAZY)`` (RFC 8970) and Dovecot's ``SNIPPET (FUZZY)``.
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int | None] | None = None
    peek: bool = False
    modifiers: tuple[bytes, ...] = ()

    def __bytes__(self) -> bytes:
        name = self.name.encode()
        if self.peek:
            name += b".PEEK"
        if self.modifiers:
            return name + b" (" + b" ".join(self.modifiers) + b")"
        if self.section is None:
            return name
        out = name + b"[" + bytes(self.section) + b"]"
        if self.partial is not None:
            offset, length = self.partial
            out += b"<%d>" % offset if length is None else b"<%d.%d>" % (offset, length)
        return out

    @property
    def key(self) -> bytes:
        """What a response to this item is matched on (QUIRKS B13).

        No ``.PEEK``, header names upper-cased, only the partial origin kept, and
        ``RFC822``/``RFC822.HEADER``/``RFC822.TEXT`` as the ``BODY[...]`` they equal.
        """
        name = self.name
        section = self.section
        if name == "RFC822":
            name, section = "BODY", Section()
        elif name == "RFC822.HEADER":
            name, section = "BODY", Section(text="HEADER")
        elif name == "RFC822.TEXT":
            name, section = "BODY", Section(text="TEXT")
        if section is None:
            return name.encode()
        key = name.encode() + b"[" + section.key + b"]"
        if self.partial is not None:
            key += b"<%d>" % self.partial[0]
        return key

    @property
    def sets_seen(self) -> bool:
        """Whether fetching this item sets ``\\Seen`` (RFC 9051 section 6.4.5)."""
        if self.peek:
            return False
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None
