"""Character classes of the IMAP grammar (RFC 9051 section 9), in one place.

Reading is lenient and writing strict (QUIRKS.md), so most classes come in two
forms: the ``*_READ`` patterns accept 8-bit octets (servers and clients send them,
QUIRKS F7), the ``*_WRITE`` patterns are 7-bit as the grammar says.
"""

from __future__ import annotations

import re

__all__ = [
    "ASTRING_READ",
    "ASTRING_WRITE",
    "ATOM_READ",
    "ATOM_WRITE",
    "FLAG_READ",
    "FLAG_WRITE",
    "LIST_READ",
    "LIST_WRITE",
    "QUOTABLE",
    "TAG",
    "TAG_CHAR",
    "astring_form",
    "quote",
]

#: ``tag = 1*<any ASTRING-CHAR except "+">``: printable ASCII except
#: ``( ) { SP % * " \ +`` (``]`` is allowed).
TAG_CHAR = rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]"
TAG = re.compile(TAG_CHAR + rb"+")

# ATOM-CHAR: any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]".
ATOM_READ = re.compile(rb'[^\x00-\x20\x7f(){%*"\\\]]+')
ATOM_WRITE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR adds "]".
ASTRING_READ = re.compile(rb'[^\x00-\x20\x7f(){%*"\\]+')
ASTRING_WRITE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# list-char adds the wildcards "%" and "*".
LIST_READ = re.compile(rb'[^\x00-\x20\x7f(){"\\]+')
LIST_WRITE = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
# A flag: "\" atom, a keyword, or "\*". Reading also accepts "[" and "]" inside
# (Gmail's "OIB-Seen-[Gmail]/All", QUIRKS L7).
FLAG_READ = re.compile(rb'\\?[^\x00-\x20\x7f(){%*"\\]+|\\\*')
FLAG_WRITE = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+|\\\*')
# QUOTED-CHAR: 7-bit TEXT-CHAR (no CR, LF, NUL); "\" and DQUOTE are escaped.
QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")


def quote(data: bytes) -> bytes:
    """``data`` as a quoted string. Raises ValueError if it cannot be one."""
    if QUOTABLE.fullmatch(data) is None:
        raise ValueError("value cannot be a quoted string")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def astring_form(data: bytes) -> bytes:
    """``data`` as an atom if it can be one, else quoted (``NIL`` is quoted).

    Raises ValueError for values that need a literal (CR, LF, NUL, 8-bit).
    """
    if ASTRING_WRITE.fullmatch(data) is not None and data.upper() != b"NIL":
        return data
    return quote(data)
