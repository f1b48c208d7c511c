"""FETCH against the part cache: which items it can answer, in what form entries
are stored, and how cached responses are written (docs/cache.md, "Serving").

Pure: the session does the I/O (:mod:`imapproxy.session`) and the stores live in
:mod:`imapproxy.cache`.

* :func:`category` says whether a FETCH item is immutable message data a ``cache``
  rule may name (``BODY`` for every body section including ``RFC822``,
  ``RFC822.HEADER`` and ``RFC822.TEXT``; ``BINARY``; ``ENVELOPE``;
  ``BODYSTRUCTURE`` for both structures; ``RFC822.SIZE``; ``INTERNALDATE``). FLAGS,
  MODSEQ and everything else are never cached.
* An entry holds a whole item: a partial fetch ``<o.l>`` is cut from the cached
  whole section (:func:`item_bytes`), and a partial response is never stored.
  :func:`entry_item` is the entry's item key (``RFC822`` and ``BODY[]`` share one).
* :func:`stored_form` turns a parsed response item into the entry's octets;
  :func:`item_bytes` writes a response item from them.
* :func:`plan` decides whether a FETCH command can be answered from the cache at
  all (:class:`Plan`); :class:`StreamCapture` rebuilds a response whose literal
  streamed, so its items can be stored too.
"""

from __future__ import annotations

from dataclasses import dataclass

from imapproxy.rules import CachePolicy
from imapproxy.wire import Frame, FramePart, Framer, LiteralChunk, Response, Role
from imapproxy.wire.build import fetch_value
from imapproxy.wire.commands import FetchArgs
from imapproxy.wire.reader import Literal, ParseError
from imapproxy.wire.responses import FetchValue
from imapproxy.wire.values import FetchItem

__all__ = [
    "CaptureBudget",
    "Plan",
    "StreamCapture",
    "category",
    "entry_item",
    "item_bytes",
    "plan",
    "response_name",
    "stored_form",
]

_SECTION_NAMES = frozenset({"BODY", "BINARY"})
_RFC822_SECTIONS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_PLAIN_ITEMS = frozenset({"ENVELOPE", "RFC822.SIZE", "INTERNALDATE"})

# Stored forms: one type octet, then the data.
_DATA = b"D"  # section data (written as a literal)
_NIL = b"N"  # a section the server answered NIL
_VALUE = b"V"  # any other value, as written on the wire


def category(item: FetchItem) -> str | None:
    """The ``cache.items`` name covering ``item``; None: never cached."""
    name = item.name
    if item.modifiers:
        return None
    if name in _SECTION_NAMES and item.section is not None:
        return name
    if name in _RFC822_SECTIONS:
        return "BODY"
    if name == "BODYSTRUCTURE" or (name == "BODY" and item.section is None):
        return "BODYSTRUCTURE"
    if name in _PLAIN_ITEMS:
        return name
    return None


def is_section(item: FetchItem) -> bool:
    return (item.name in _SECTION_NAMES and item.section is not None) or (
        item.name in _RFC822_SECTIONS
    )


def entry_item(item: FetchItem) -> bytes:
    """The item key of the entry holding ``item``'s whole value (no partial, no
    PEEK; ``RFC822`` is ``BODY[]``)."""
    whole = FetchItem(item.name, item.section) if item.partial is not None else item
    return whole.key


def stored_form(item: FetchItem, value: FetchValue, *, utf8: bool = False) -> bytes | None:
    """The entry octets for a response ``item`` and its parsed ``value``; None
    when it is not stored (a partial response, or a value of an unexpected shape)."""
    if item.partial is not None or category(item) is None:
        return None
    if is_section(item):
        if value is None:
            return _NIL
        if isinstance(value, Literal):
            return _DATA + value.data
        if isinstance(value, bytes):
            return _DATA + value
        return None
    if value is None:
        return None
    try:
        return _VALUE + fetch_value(item, value, utf8=utf8)
    except (TypeError, ValueError):
        return None


def response_name(item: FetchItem) -> bytes:
    """How a response names the requested ``item`` (no PEEK; a partial keeps its
    origin only: ``BODY[1]<0>``)."""
    partial = (item.partial[0], None) if item.partial is not None else None
    return bytes(FetchItem(item.name, item.section, partial, False, item.modifiers))


def item_bytes(item: FetchItem, stored: bytes, name: bytes | None = None) -> bytes:
    """The response item (name and value) for the requested ``item`` from its
    entry; a partial is cut from the whole section (RFC 9051 section 6.4.5: an
    origin past the end gives an empty string). ``name``: its
    :func:`response_name`, when already known."""
    if name is None:
        name = response_name(item)
    kind, body = stored[:1], stored[1:]
    if kind == _VALUE:
        return name + b" " + body
    if kind == _NIL:
        return name + b" NIL"
    data = body
    if item.partial is not None:
        offset, length = item.partial
        data = data[offset : offset + length] if length is not None else data[offset:]
    marker = b"~" if item.name == "BINARY" and b"\x00" in data else b""
    return name + b" " + marker + b"{%d}\r\n" % len(data) + data


@dataclass(frozen=True, slots=True)
class Plan:
    """How a FETCH command could be answered from the cache.

    ``cached`` are the requested items to take from entries (each with its entry
    item key); ``uid`` whether responses carry UID; ``flags`` whether FLAGS were
    asked (they come from the server); ``sets_seen`` whether a body item without
    PEEK is asked (the server must set ``\\Seen``)."""

    cached: tuple[tuple[FetchItem, bytes], ...]
    uid: bool
    flags: bool
    sets_seen: bool


def plan(args: FetchArgs, *, uid: bool, policy: CachePolicy) -> Plan | None:
    """A :class:`Plan` when every item asked is cacheable under ``policy`` (or
    UID, or FLAGS); None when the command must go to the server as it is
    (another item, a CONDSTORE/QRESYNC modifier)."""
    if args.changedsince is not None or args.vanished or args.other_modifiers:
        return None
    cached: list[tuple[FetchItem, bytes]] = []
    flags = False
    wants_uid = uid
    for item in args.items:
        if item.name == "UID":
            wants_uid = True
            continue
        if item.name == "FLAGS":
            flags = True
            continue
        kind = category(item)
        if kind is None or kind not in policy.items:
            return None
        cached.append((item, entry_item(item)))
    if not cached:
        return None  # nothing the cache holds: the server answers
    sets_seen = any(item.sets_seen for item, _ in cached)
    return Plan(tuple(cached), wants_uid, flags, sets_seen)


class CaptureBudget:
    """Octets all :class:`StreamCapture` of a proxy may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class StreamCapture:
    """Collects a response whose literal streams (a large body) so that it can be
    parsed and stored once it ended; gives up past ``limit`` octets, or when the
    proxy's ``budget`` for such copies is spent."""

    def __init__(self, limit: int, budget: CaptureBudget | None = None) -> None:
        self.limit = limit
        self.budget = budget or CaptureBudget(limit)
        self._parts: list[bytes] = []
        self._size = 0
        self.abandoned = False

    def release(self) -> None:
        """Give the octets held back to the budget (also when abandoned)."""
        self.budget.give(self._size)
        self._size = 0
        self._parts.clear()

    def add(self, part: FramePart | LiteralChunk) -> Response | None:
        """Add a part; the whole response once its last part is here (None before,
        or when it was too large or does not parse)."""
        if self.abandoned:
            return None
        data = bytes(part.data if isinstance(part, LiteralChunk) else part.raw)
        if self._size + len(data) > self.limit or not self.budget.take(len(data)):
            self.abandoned = True
            self.release()
            return None
        self._size += len(data)
        self._parts.append(data)
        if isinstance(part, LiteralChunk) or part.literal is not None:
            return None
        raw = b"".join(self._parts)
        self.release()
        framer = Framer(
            Role.CLIENT,
            max_line=len(raw) + 2,
            max_literal=len(raw),
            inline_literal=len(raw),
            max_inline_total=len(raw),
            max_literals=1024,
        )
        framer.receive_data(raw)
        event = framer.next_event()
        if not isinstance(event, Frame):
            return None
        try:
            return Response.parse(event)
        except ParseError:
            return None
