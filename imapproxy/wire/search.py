"""SEARCH keys (RFC 9051 section 6.4.4) as a tree.

A search program is parsed into :class:`SearchKey` nodes. The keys of RFC 3501 and
RFC 9051, MODSEQ (RFC 7162), OLDER/YOUNGER (RFC 5032), SAVEDBEFORE/SAVEDON/
SAVEDSINCE/SAVEDATESUPPORTED (RFC 8514), EMAILID/THREADID (RFC 8474), FILTER
(RFC 5466), FUZZY (RFC 6203) and Gmail's X-GM-* keys are known, each with the
arguments its grammar gives. Several keys in a row, and a parenthesised list, are
``AND`` (a list of one key is that key); a bare sequence set is ``SEQSET``. An
unknown key is a parse error because its arguments cannot be delimited without
knowing its grammar.

The tree is for features that inspect or rewrite a search (rules; the
multiplexer's sequence-number translation, which rebuilds the command with
:func:`~imapproxy.wire.build.build_command`); an unchanged search is relayed as
its original bytes.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imapproxy.wire.values import SequenceSet

if TYPE_CHECKING:
    from imapproxy.wire.reader import Reader

__all__ = [
    "SearchArg",
    "SearchKey",
    "read_search_program",
]


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search key: its upper-case name and its arguments.

    Names are the keyword (``FROM``, ``SINCE``, ``NOT``, ``OR``, ...), plus ``AND``
    for a parenthesised list or an implicit conjunction, and ``SEQSET`` for a bare
    sequence set. Arguments are ``bytes`` (strings, flags, atoms), ``int``,
    :class:`datetime.date`, :class:`SequenceSet` or nested :class:`SearchKey`.
    """

    name: str
    args: tuple[SearchArg, ...] = ()

    def walk(self) -> list[SearchKey]:
        """This key and every key nested in it, depth first."""
        keys = [self]
        for arg in self.args:
            if isinstance(arg, SearchKey):
                keys.extend(arg.walk())
        return keys


SearchArg = bytes | int | _dt.date | SequenceSet | SearchKey

_NO_ARGS = frozenset(
    [
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
        "SAVEDATESUPPORTED",
    ]
)
_ASTRING = frozenset(
    [
        "BCC",
        "BODY",
        "CC",
        "FROM",
        "SUBJECT",
        "TEXT",
        "TO",
        "X-GM-RAW",
        "X-GM-LABELS",
    ]
)
_DATE = frozenset(
    [
        "BEFORE",
        "ON",
        "SINCE",
        "SENTBEFORE",
        "SENTON",
        "SENTSINCE",
        "SAVEDBEFORE",
        "SAVEDON",
        "SAVEDSINCE",
    ]
)
_ATOM_ARG = frozenset(
    [
        "KEYWORD",
        "UNKEYWORD",
        "EMAILID",
        "THREADID",
        "FILTER",
    ]
)
_NUMBER64 = frozenset(
    [
        "LARGER",
        "SMALLER",
        "X-GM-MSGID",
        "X-GM-THRID",
    ]
)
_NZ_NUMBER = frozenset(("OLDER", "YOUNGER"))
_MAX_DEPTH = 64


def read_search_program(reader: Reader) -> SearchKey:
    """``search-key *(SP search-key)`` up to the end of the line, as one key."""
    keys = [_read_key(reader, 0)]
    while not reader.at_end():
        reader.sp()
        keys.append(_read_key(reader, 0))
    reader.expect_end()
    return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))


def _read_key(reader: Reader, depth: int) -> SearchKey:
    if depth > _MAX_DEPTH:
        raise reader.error("Search nested too deep")
    octet = reader.peek()
    if octet == 0x28:  # "("
        keys = reader.paren_list(lambda: _read_key(reader, depth + 1), allow_empty=False)
        return keys[0] if len(keys) == 1 else SearchKey("AND", keys)
    if octet == 0x24 or 0x30 <= octet <= 0x39 or octet == 0x2A:  # "$", digit, "*"
        return SearchKey("SEQSET", (reader.sequence_set(),))
    start = reader.pos
    name = reader.keyword()
    if name in _NO_ARGS:
        return SearchKey(name)
    reader.sp()
    if name in _ASTRING:
        return SearchKey(name, (reader.astring(),))
    if name in _DATE:
        return SearchKey(name, (reader.date(),))
    if name in _ATOM_ARG:
        return SearchKey(name, (reader.atom(),))
    if name in _NUMBER64:
        return SearchKey(name, (reader.number64(),))
    if name in _NZ_NUMBER:
        return SearchKey(name, (reader.nz_number(),))
    if name == "HEADER":
        field = reader.astring()
        reader.sp()
        return SearchKey(name, (field, reader.astring()))
    if name == "UID":
        return SearchKey(name, (reader.sequence_set(),))
    if name in ("NOT", "FUZZY"):
        return SearchKey(name, (_read_key(reader, depth + 1),))
    if name == "OR":
        first = _read_key(reader, depth + 1)
        reader.sp()
        return SearchKey(name, (first, _read_key(reader, depth + 1)))
    if name == "MODSEQ":
        # MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer (RFC 7162)
        if reader.peek() == 0x22:
            entry = reader.quoted()
            reader.sp()
            entry_type = reader.atom().lower()
            if entry_type not in (b"priv", b"shared", b"all"):
                raise reader.error("Expected priv, shared or all")
            reader.sp()
            return SearchKey(name, (entry, entry_type, reader.number64()))
        return SearchKey(name, (reader.number64(),))
    reader.pos = start
    raise reader.error("Unknown search key")
