"""Character classes of the IMAP grammar (RFC 9051 section 9), in one place.

Most classes come in two forms: the ``*_READ`` patterns accept 8-bit octets,
which servers send (QUIRKS F7) and which responses are read with; the ``*_WRITE``
patterns are 7-bit as the grammar says, and serve both for writing and for
reading commands. Commands are read strictly because a server refuses an atom
with 8-bit octets part way through a command and then reads the rest of the
stream -- a non-synchronizing literal's data -- as commands: accepting what the
server refuses would let the proxy and the server disagree on where commands
end.
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
    "WORDS",
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


#: Command and response names of RFC 9051, RFC 3501 and the extensions the codec
#: knows: what a log line or a repr may show of a frame (never its arguments).
WORDS = frozenset(
    b"""
    APPEND AUTHENTICATE CAPABILITY CHECK CLOSE COMPRESS COPY CREATE DELETE ENABLE
    EXAMINE EXPUNGE FETCH GETQUOTA GETQUOTAROOT ID IDLE LIST LOGIN LOGOUT LSUB MOVE
    NAMESPACE NOOP RENAME SEARCH SELECT SETQUOTA SORT STARTTLS STATUS STORE SUBSCRIBE
    THREAD UID UNAUTHENTICATE UNSELECT UNSUBSCRIBE XLIST
    OK NO BAD BYE PREAUTH ENABLED ESEARCH EXISTS FLAGS RECENT VANISHED QUOTA QUOTAROOT
    """.split()
)


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
