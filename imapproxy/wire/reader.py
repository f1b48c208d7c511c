"""Grammar primitives: a cursor over one frame's bytes.

:class:`Reader` walks a :class:`~imapproxy.wire.framing.Frame` with the token
rules of RFC 9051 section 9 (atom, number, quoted, literal, astring, nstring,
mailbox, flag, sequence-set, section, ...). The command and response parsers are
written with it. Literals are found through the frame's literal spans, never by
looking at the data, and a literal's data is not copied unless asked for
(:class:`Literal` is a view).

Leniency (QUIRKS.md, "parse leniently"): runs of SP count as one (F3), a SP
before CRLF or before ``)`` is accepted (F4), 8-bit octets are accepted in quoted
strings and text, and in responses also in atoms (F7), and in responses a quote
that is not followed by a delimiter does not end a quoted string (F8). The
tolerances of the rows named in docs/codec.md are counted in ``quirks`` (a
:class:`collections.Counter` keyed by the QUIRKS.md row) when the caller passes
one, so a session can log which quirks its peer relied on.

Strictness where leniency would let the proxy and a server read a command
differently: a literal8 (``~{n}``) is accepted in a command only where the
grammar has one (APPEND data, ``UTF8 (~{n})``); elsewhere servers refuse it and
would then read its data as commands (RFC 3516 section 4.2).

Every failure raises :class:`ParseError`, a
:class:`~imapproxy.wire.errors.RemoteProtocolError` whose reply is a ``BAD``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from imapproxy.wire.errors import RemoteProtocolError, Reply
from imapproxy.wire.framing import Frame, LiteralSpan
from imapproxy.wire.grammar import (
    ASTRING_READ,
    ASTRING_WRITE,
    ATOM_READ,
    ATOM_WRITE,
    FLAG_READ,
    FLAG_WRITE,
    LIST_READ,
    LIST_WRITE,
)
from imapproxy.wire.values import (
    FetchItem,
    Mailbox,
    Section,
    SequenceSet,
    parse_date,
    parse_datetime,
)

__all__ = ["Atom", "Literal", "ParseError", "Reader", "Value"]

T = TypeVar("T")

_SP = 0x20
_LPAREN = 0x28
_RPAREN = 0x29
_DQUOTE = 0x22
_LBRACE = 0x7B
_TILDE = 0x7E
_LBRACKET = 0x5B
_RBRACKET = 0x5D
_BACKSLASH = 0x5C
_CR = 0x0D

_NUMBER = re.compile(rb"[0-9]+")
_MAX_DIGITS = 20  # number64 has at most 19; longer runs are refused before int()
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\[^\r\n\x00])*)"')
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_SEQ_CHARS = re.compile(rb"[0-9*:,$]+")
_SPACES = re.compile(rb" +")
# Generic tokens of unknown commands and responses: an atom, possibly with a
# bracketed part and a partial, e.g. BODY[HEADER.FIELDS (A B)]<0.10>.
_GENERIC_READ = re.compile(rb'[^\x00-\x20\x7f(){"\\\[\]]+|\\\*|\\')
_GENERIC_WRITE = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\\[\]]+|\\\*|\\')
_SECTION_TEXT = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME", re.I)
_QUOTED_END = frozenset(b" )]\r")
_MAX_NUMBER64 = (1 << 63) - 1
_MAX_DEPTH = 64


class ParseError(RemoteProtocolError):
    """The bytes do not follow the grammar; the implied reply is ``BAD``."""

    def __init__(self, text: str, *, position: int = -1) -> None:
        super().__init__(text, reply=Reply(kind="BAD", text=text))
        self.position = position


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    """A literal inside a frame, by reference: its data is read on demand.

    Two literals are equal when they carry the same octets in the same form
    (literal or literal8), wherever they sit; streamed ones compare by size.
    """

    frame: Frame
    span: LiteralSpan

    @property
    def size(self) -> int:
        return self.span.size

    @property
    def binary(self) -> bool:
        """``~{n}`` (literal8, RFC 3516)."""
        return self.span.binary

    @property
    def streamed(self) -> bool:
        """The data streamed past in chunks and is not in the frame."""
        return self.span.streamed

    def view(self) -> memoryview:
        return self.frame.literal_data(self.span)

    @property
    def data(self) -> bytes:
        """A copy of the data (raises ValueError for a streamed literal)."""
        return bytes(self.view())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Literal):
            return NotImplemented
        if self.binary != other.binary or self.size != other.size:
            return False
        if self.streamed or other.streamed:
            return self.streamed == other.streamed
        return self.view() == other.view()

    def __hash__(self) -> int:
        return hash((self.binary, self.size))

    def __repr__(self) -> str:
        kind = "literal8" if self.binary else "literal"
        return f"Literal({kind}, {self.size} octets{', streamed' if self.streamed else ''})"


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom in generic parsing (unknown commands, response data, extensions)."""

    value: bytes

    def upper(self) -> str:
        return self.value.decode("latin-1").upper()


#: A generically parsed value: atom, string (bytes), literal, NIL (None) or list.
Value = Atom | bytes | Literal | None | tuple["Value", ...]


class Reader:
    """A cursor over a frame. ``pos`` advances as tokens are read.

    Args:
        frame: the frame (or skeleton) to read.
        pos: where to start.
        response: reading a server response: unescaped quotes are tolerated
            (QUIRKS F8) and literal8 is accepted wherever a string is.
        redact: error texts quote no input (LOGIN, AUTHENTICATE).
        quirks: counts the tolerances used, by QUIRKS.md row.
    """

    __slots__ = (
        "_astring",
        "_atom",
        "_flag",
        "_generic",
        "_list",
        "_lits",
        "_probe_failed",
        "end",
        "frame",
        "pos",
        "quirks",
        "raw",
        "redact",
        "response",
    )

    def __init__(
        self,
        frame: Frame,
        pos: int = 0,
        *,
        response: bool = False,
        redact: bool = False,
        quirks: Counter[str] | None = None,
    ) -> None:
        raw = frame.raw
        self.frame = frame
        self.raw = raw
        self.pos = pos
        end = len(raw)
        if raw.endswith(b"\r\n"):
            end -= 2
        elif raw.endswith(b"\n"):
            end -= 1
        self.end = end
        self._lits = {lit.announce: lit for lit in frame.literals} if frame.literals else None
        self.response = response
        # Responses are read leniently (8-bit in atoms, QUIRKS F7); commands with
        # the grammar's 7-bit classes, as servers read them (see grammar.py).
        if response:
            self._atom, self._astring, self._list = ATOM_READ, ASTRING_READ, LIST_READ
            self._flag, self._generic = FLAG_READ, _GENERIC_READ
        else:
            self._atom, self._astring, self._list = ATOM_WRITE, ASTRING_WRITE, LIST_WRITE
            self._flag, self._generic = FLAG_WRITE, _GENERIC_WRITE
        self.redact = redact
        self.quirks = quirks
        self._probe_failed = -1  # see _probe_close()

    def quirk(self, name: str) -> None:
        """Record that the tolerance for QUIRKS.md row ``name`` was used."""
        if self.quirks is not None:
            self.quirks[name] += 1

    def error(self, what: str) -> ParseError:
        """A parse error at the current position.

        Its text quotes a little of the input, except when ``redact`` is set (the
        arguments of LOGIN and AUTHENTICATE carry secrets, and reply texts end up
        in logs).
        """
        if self.redact:
            return ParseError(what, position=self.pos)
        near = self.raw[self.pos : self.pos + 20]
        if self._lits or b"\r" in near or b"\n" in near:
            near = near.split(b"\r")[0].split(b"\n")[0]
        shown = near.decode("ascii", "replace") if near else "end of line"
        return ParseError(f"{what} at '{shown}'", position=self.pos)

    # -- position ---------------------------------------------------------------

    def peek(self) -> int:
        """The next octet, or -1 at the end of the line."""
        return self.raw[self.pos] if self.pos < self.end else -1

    def at_end(self) -> bool:
        """At CRLF, after any trailing SP (QUIRKS F4)."""
        pos = self.pos
        while pos < self.end and self.raw[pos] == _SP:
            pos += 1
        return pos >= self.end

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.error("Unexpected data")
        if self.pos != self.end:
            self.quirk("F4")
        self.pos = self.end

    def sp(self) -> None:
        """One SP (or a run of them, QUIRKS F3)."""
        if not self.maybe_sp():
            raise self.error("Expected SP")

    def maybe_sp(self) -> bool:
        match = _SPACES.match(self.raw, self.pos, self.end)
        if match is None:
            return False
        if match.end() - self.pos > 1:
            self.quirk("F3")
        self.pos = match.end()
        return True

    def next_is_sp_item(self) -> bool:
        """A SP follows, and after it something other than CRLF or ``)``."""
        pos = self.pos
        if pos >= self.end or self.raw[pos] != _SP:
            return False
        while pos < self.end and self.raw[pos] == _SP:
            pos += 1
        return pos < self.end and self.raw[pos] != _RPAREN

    def char(self, octet: int) -> None:
        if self.pos >= self.end or self.raw[self.pos] != octet:
            raise self.error(f"Expected '{chr(octet)}'")
        self.pos += 1

    def maybe_char(self, octet: int) -> bool:
        if self.pos < self.end and self.raw[self.pos] == octet:
            self.pos += 1
            return True
        return False

    def maybe_ext_value(self) -> Value | None:
        """A ``tagged-ext-val`` after SP, if one follows (RFC 4466).

        Parameters of SELECT, CREATE, FETCH modifiers and the like have optional
        values that are numbers, sequence sets or parenthesised lists, never
        atoms; so a following atom is the next parameter, not a value.
        """
        pos = self.pos
        while pos < self.end and self.raw[pos] == _SP:
            pos += 1
        if pos == self.pos or pos >= self.end:
            return None
        octet = self.raw[pos]
        if not (octet == _LPAREN or octet in b"0123456789*$"):
            return None
        self.pos = pos
        if octet == _LPAREN:
            return self.value()
        return Atom(self._match(_SEQ_CHARS, "value"))

    def close_paren(self) -> None:
        """``)``, accepting SP before it (QUIRKS F4)."""
        if self._skip_sp_before_paren():
            self.quirk("F4")
        self.char(_RPAREN)

    def _skip_sp_before_paren(self) -> bool:
        """Skip SPs if a ``)`` follows them; True if there were any."""
        pos = self.pos
        while pos < self.end and self.raw[pos] == _SP:
            pos += 1
        if pos == self.pos or pos >= self.end or self.raw[pos] != _RPAREN:
            return False
        self.pos = pos
        return True

    def rest(self) -> bytes:
        """Everything up to CRLF (``text`` of a response), consumed."""
        text = self.raw[self.pos : self.end]
        self.pos = self.end
        return text

    # -- atoms and numbers --------------------------------------------------------

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        match = pattern.match(self.raw, self.pos, self.end)
        if match is None:
            raise self.error(f"Expected {what}")
        self.pos = match.end()
        return match.group()

    def atom(self) -> bytes:
        return self._match(self._atom, "atom")

    def keyword(self) -> str:
        """An atom, upper-cased as text (command and item names, QUIRKS F12).

        Only ASCII letters are case-folded: ``ß`` never becomes ``SS``.
        """
        return self._match(self._atom, "keyword").upper().decode("latin-1")

    def maybe_keyword(self, *words: str) -> str | None:
        """Consume the atom if it is one of ``words`` (case-insensitive)."""
        match = self._atom.match(self.raw, self.pos, self.end)
        if match is None:
            return None
        word = match.group().upper().decode("latin-1")
        if word in words:
            self.pos = match.end()
            return word
        return None

    def expect_keyword(self, word: str) -> None:
        if self.maybe_keyword(word) is None:
            raise self.error(f"Expected {word}")

    def _digits(self) -> int:
        token = self._match(_NUMBER, "number")
        if len(token) > _MAX_DIGITS:
            self.pos -= len(token)
            raise self.error("Number out of range")
        return int(token)

    def number(self) -> int:
        """``number`` (32 bits) -- 64-bit values use :meth:`number64`."""
        value = self._digits()
        if value > 0xFFFFFFFF:
            raise self.error("Number out of range")
        return value

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise self.error("Expected a non-zero number")
        return value

    def number64(self) -> int:
        """``number64`` (RFC 9051; mod-sequence values, sizes)."""
        value = self._digits()
        if value > _MAX_NUMBER64:
            raise self.error("Number out of range")
        return value

    def maybe_nil(self) -> bool:
        raw = self.raw
        pos = self.pos
        if raw[pos : pos + 3].upper() == b"NIL" and not self._atom.match(raw, pos + 3, self.end):
            self.pos = pos + 3
            return True
        return False

    # -- strings ------------------------------------------------------------------

    def _literal_here(self) -> LiteralSpan | None:
        lits = self._lits
        if lits is None:
            return None
        return lits.get(self.pos)

    def literal(self, *, binary_ok: bool = False) -> Literal:
        """A literal; a literal8 only where ``binary_ok`` (or in a response)."""
        span = self._literal_here()
        if span is None:
            raise self.error("Expected literal")
        if span.binary and not (binary_ok or self.response):
            raise self.error("literal8 not allowed here")
        self.pos = span.stop
        return Literal(self.frame, span)

    def quoted(self) -> bytes:
        raw = self.raw
        match = _QUOTED.match(raw, self.pos, self.end)
        if match is None:
            raise self.error("Expected quoted string")
        stop = match.end()
        if self.response and stop < self.end and raw[stop] not in _QUOTED_END:
            # An unescaped quote inside a quoted string (QUIRKS F8): the string
            # ends at the first quote that is followed by a delimiter.
            close = self._probe_close(stop)
            if close >= 0:
                self.quirk("F8")
                body = raw[self.pos + 1 : close]
                self.pos = close + 1
                return _unescape(body)
        self.pos = stop
        return _unescape(match.group(1))

    def _probe_close(self, start: int) -> int:
        """The first quote at or after ``start`` that a delimiter follows, or -1.

        A probe that found none up to the end of the line is remembered, so that
        a line of many odd quotes costs linear, not quadratic, time.
        """
        if 0 <= self._probe_failed <= start:
            return -1
        raw = self.raw
        probe = start
        while True:
            nxt = raw.find(b'"', probe, self.end)
            if nxt < 0:
                self._probe_failed = start
                return -1
            if nxt + 1 >= self.end or raw[nxt + 1] in _QUOTED_END:
                return nxt
            probe = nxt + 1

    def string_or_literal(self) -> bytes | Literal:
        """``string``: quoted as bytes, a literal by reference (no copy)."""
        octet = self.peek()
        if octet == _DQUOTE:
            return self.quoted()
        if octet in (_LBRACE, _TILDE):
            return self.literal()
        raise self.error("Expected string")

    def _at_string(self) -> bool:
        """A quoted string or a literal starts here (``~`` alone is an atom char)."""
        octet = self.peek()
        return octet in (_DQUOTE, _LBRACE) or (octet == _TILDE and self._literal_here() is not None)

    def string(self) -> bytes:
        """``string`` as bytes (a literal's data is copied)."""
        value = self.string_or_literal()
        return value if isinstance(value, bytes) else self._literal_bytes(value)

    def _literal_bytes(self, literal: Literal) -> bytes:
        if literal.streamed:
            raise self.error("Literal too large here")
        return literal.data

    def astring(self) -> bytes:
        """``astring``: an atom (``]`` allowed) or a string."""
        if self._at_string():
            return self.string()
        return self._match(self._astring, "astring")

    def nstring_or_literal(self) -> bytes | Literal | None:
        if self.maybe_nil():
            return None
        return self.string_or_literal()

    def nstring(self) -> bytes | None:
        if self.maybe_nil():
            return None
        return self.string()

    def mailbox(self) -> Mailbox:
        return Mailbox(self.astring())

    def list_mailbox(self) -> bytes:
        """``list-mailbox``: a LIST pattern (``%`` and ``*`` allowed unquoted)."""
        if self._at_string():
            return self.string()
        return self._match(self._list, "mailbox pattern")

    # -- structures -----------------------------------------------------------------

    def paren_list(self, item: Callable[[], T], *, allow_empty: bool = True) -> tuple[T, ...]:
        """``"(" [item *(SP item)] ")"``."""
        self.char(_LPAREN)
        items: list[T] = []
        while True:
            if self._skip_sp_before_paren():
                self.quirk("F4")
            if self.maybe_char(_RPAREN):
                break
            if items:
                if not self.maybe_sp():
                    if not self._item_boundary():
                        raise self.error("Expected SP or ')'")
                    self.quirk("B10")
            elif self.maybe_sp():
                self.quirk("F4")  # "( item"
            items.append(item())
        if not items and not allow_empty:
            raise self.error("Empty list")
        return tuple(items)

    def _item_boundary(self) -> bool:
        """A new list item may start here without a SP (QUIRKS B10): right after
        a ``)`` or before a ``(``, as in ``(("A" ...)("B" ...))``."""
        return self.raw[self.pos - 1] == _RPAREN or self.peek() == _LPAREN

    def flag(self) -> bytes:
        """A flag: ``\\Seen``, a keyword, ``\\*`` (lenient about odd keywords, L7)."""
        return self._match(self._flag, "flag")

    def flag_list(self) -> tuple[bytes, ...]:
        return self.paren_list(self.flag)

    def sequence_set(self) -> SequenceSet:
        token = self._match(_SEQ_CHARS, "sequence set")
        try:
            return SequenceSet.parse(token)
        except ValueError as exc:
            self.pos -= len(token)
            raise self.error("Invalid sequence set") from exc

    def date(self) -> _dt.date:
        """``date``: ``d-Mon-yyyy``, optionally quoted; a :class:`datetime.date`."""
        start = self.pos
        token = self.quoted() if self.peek() == _DQUOTE else self.atom()
        try:
            return parse_date(token)
        except ValueError as exc:
            self.pos = start
            raise self.error("Invalid date") from exc

    def date_time(self) -> _dt.datetime:
        """``date-time`` (quoted); a timezone-aware :class:`datetime.datetime`."""
        start = self.pos
        token = self.quoted()
        try:
            return parse_datetime(token)
        except ValueError as exc:
            self.pos = start
            raise self.error("Invalid date-time") from exc

    # -- sections and fetch items ---------------------------------------------------------

    def section(self, *, binary: bool = False) -> Section:
        """``"[" [section-spec] "]"`` (or section-binary: part numbers only)."""
        self.char(_LBRACKET)
        part: list[int] = []
        text: str | None = None
        fields: tuple[bytes, ...] = ()
        if not self.maybe_char(_RBRACKET):
            while True:
                if self.peek() in range(0x30, 0x3A):
                    part.append(self.nz_number())
                    if self.maybe_char(0x2E):  # "."
                        continue
                    break
                if binary:
                    raise self.error("Expected part number")
                text = self._section_text(bool(part))
                if text.startswith("HEADER.FIELDS"):
                    self.sp()
                    fields = self.paren_list(self._header_name, allow_empty=False)
                break
            self.char(_RBRACKET)
        try:
            return Section(tuple(part), text, fields)
        except ValueError as exc:
            raise self.error(str(exc)) from exc

    def _header_name(self) -> bytes:
        """A HEADER.FIELDS name: an astring without CR, LF or NUL (RFC 5322 field
        names are printable ASCII)."""
        start = self.pos
        name = self.astring()
        if any(octet in name for octet in b"\r\n\x00"):
            self.pos = start
            raise self.error("Invalid header name")
        return name

    def _section_text(self, has_part: bool) -> str:
        match = _SECTION_TEXT.match(self.raw, self.pos, self.end)
        if match is None:
            raise self.error("Expected section text")
        text = match.group().decode().upper()
        if text == "MIME" and not has_part:
            raise self.error("MIME needs a part number")
        self.pos = match.end()
        return text

    def partial(self, *, response: bool) -> tuple[int, int | None] | None:
        """``<offset.length>`` in a request, ``<origin>`` in a response.

        A response that echoes the length too (QUIRKS B13) is read as its origin.
        """
        if not self.maybe_char(0x3C):  # "<"
            return None
        offset = self.number64() if not response else self.number()
        length: int | None = None
        if not response:
            self.char(0x2E)
            length = self.nz_number()
        elif self.maybe_char(0x2E):
            self.number()
        self.char(0x3E)
        return (offset, length)

    # -- generic values ---------------------------------------------------------------

    def value(self, depth: int = 0) -> Value:
        """One generically parsed value (unknown commands and extensions)."""
        octet = self.peek()
        if octet == _LPAREN:
            if depth >= _MAX_DEPTH:
                raise self.error("Nesting too deep")
            return self.paren_list(lambda: self.value(depth + 1))
        if octet == _DQUOTE:
            return self.quoted()
        if octet in (_LBRACE, _TILDE) and self._literal_here() is not None:
            return self.literal()
        if self.maybe_nil():
            return None
        return Atom(self.generic_atom(depth))

    def generic_atom(self, depth: int = 0) -> bytes:
        """An atom that may carry ``[...]`` (with lists inside) and ``<...>``."""
        raw = self.raw
        start = self.pos
        while self.pos < self.end:
            match = self._generic.match(raw, self.pos, self.end)
            if match is not None:
                self.pos = match.end()
                continue
            octet = raw[self.pos]
            if octet == _LBRACKET:
                self._skip_brackets(depth)
                continue
            break
        if self.pos == start:
            raise self.error("Expected a value")
        return raw[start : self.pos]

    def _skip_brackets(self, depth: int) -> None:
        if depth >= _MAX_DEPTH:
            raise self.error("Nesting too deep")
        self.char(_LBRACKET)
        while True:
            octet = self.peek()
            if octet == _RBRACKET:
                self.pos += 1
                return
            if octet == -1:
                raise self.error("Expected ']'")
            if octet == _SP:
                self.pos += 1
                continue
            self.value(depth + 1)

    def values(self) -> tuple[Value, ...]:
        """Every remaining value on the line, each after a SP."""
        items: list[Value] = []
        while not self.at_end():
            self.sp()
            items.append(self.value())
        self.pos = self.end
        return tuple(items)

    def fetch_item(self) -> FetchItem:
        """One ``fetch-att`` of a FETCH command (RFC 9051, RFC 3516, RFC 7162)."""
        name = self._match(_FETCH_NAME, "fetch item").decode("latin-1").upper()
        peek = False
        if name.endswith(".PEEK") and name in ("BODY.PEEK", "BINARY.PEEK"):
            name = name[:-5]
            peek = True
        if self.peek() == _LBRACKET:
            if name not in ("BODY", "BINARY", "BINARY.SIZE"):
                raise self.error("Unexpected section")
            section = self.section(binary=name != "BODY")
            partial = self.partial(response=False) if name != "BINARY.SIZE" else None
            return FetchItem(name, section, partial, peek)
        if peek or name in ("BINARY", "BINARY.SIZE"):
            raise self.error("Expected section")
        if name in _ITEMS_WITH_MODIFIERS and self.next_is_sp_item():
            save = self.pos
            self.sp()
            if self.peek() == _LPAREN:
                return FetchItem(name, modifiers=self.paren_list(self.atom, allow_empty=False))
            self.pos = save
        return FetchItem(name)


_FETCH_NAME = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]\[<]+')
# Fetch items that take a list of modifiers: PREVIEW (RFC 8970), SNIPPET (Dovecot).
_ITEMS_WITH_MODIFIERS = frozenset(("PREVIEW", "SNIPPET"))


def _unescape(body: bytes) -> bytes:
    if b"\\" not in body:
        return body
    return _ESCAPE.sub(rb"\1", body)
