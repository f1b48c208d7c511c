"""Mailbox names as rules see them, and LIST-wildcard patterns over them.

Rules compare *text*: the caller decodes a wire name first (modified UTF-7 or
UTF-8 with :meth:`imapproxy.wire.Mailbox.decode`, which refuses non-canonical
encodings, so a name cannot be spelled differently to dodge a rule), then
:func:`canonical` gives the one form rules match: ``INBOX`` in any case is
``INBOX``, also as the first level of a hierarchy (``inbox/Sub`` is
``INBOX/Sub``, RFC 9051 section 5.1), and trailing separators are dropped
(``Archive/`` is ``Archive``).

:class:`MailboxPattern` compiles one pattern, or several as alternatives, into
one regular expression with the wildcards of LIST (RFC 9051 section 6.3.9):
``*`` matches any characters, the hierarchy separator included; ``%`` matches
any characters except the separator. A pattern is canonicalised like a name, so
``inbox/%`` matches ``INBOX/Drafts``. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MailboxPattern", "canonical", "check_separator"]


def check_separator(separator: str) -> str:
    """``separator`` when it is a usable hierarchy separator; raise ValueError otherwise.

    IMAP's hierarchy delimiter is one character (RFC 9051 ``mailbox-list``), and
    it cannot be a wildcard.
    """
    if len(separator) != 1 or separator in "*%":
        raise ValueError(
            f"a hierarchy separator is one character other than * and %, got {separator!r}"
        )
    return separator


def canonical(name: str, separator: str = "/") -> str:
    """The form of mailbox ``name`` that rules compare.

    ``INBOX`` is case-insensitive alone and as the first hierarchy level; trailing
    ``separator`` characters are removed (a name made only of separators is kept).
    ``name`` is decoded text, not wire bytes.
    """
    stripped = name.rstrip(separator)
    if stripped:
        name = stripped
    head = name[:5]
    if head != "INBOX" and head.isascii() and head.upper() == "INBOX":
        rest = name[5:]
        if not rest or rest.startswith(separator):
            return "INBOX" + rest
    return name


def _canonical_pattern(pattern: str, separator: str) -> str:
    """A pattern with its INBOX prefix upper-cased, also before a wildcard."""
    pattern = canonical(pattern, separator)
    head = pattern[:5]
    if head.isascii() and head.upper() == "INBOX" and pattern[5:6] in ("*", "%"):
        return "INBOX" + pattern[5:]
    return pattern


def _translate(pattern: str, separator: str) -> str:
    not_separator = f"[^{re.escape(separator)}]*"
    parts: list[str] = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(not_separator)
        else:
            parts.append(re.escape(char))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class MailboxPattern:
    """One or more LIST-style patterns compiled to one regular expression.

    ``sources`` are the patterns as written; :meth:`matches` takes a decoded name
    and canonicalises it before matching. Build with :meth:`compile`.
    """

    sources: tuple[str, ...]
    separator: str
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, pattern: str | Iterable[str], separator: str = "/") -> MailboxPattern:
        """Compile ``pattern`` (or every pattern of an iterable, as alternatives).

        Raises:
            ValueError: an empty pattern, no pattern at all, or a bad separator.
        """
        check_separator(separator)
        sources = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        if not sources:
            raise ValueError("expected at least one mailbox pattern")
        alternatives = []
        for source in sources:
            if not source:
                raise ValueError("a mailbox pattern cannot be empty")
            alternatives.append(_translate(_canonical_pattern(source, separator), separator))
        regex = re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)
        return cls(sources, separator, regex)

    def matches(self, name: str) -> bool:
        """Whether the decoded mailbox ``name`` (canonicalised here) matches."""
        return self.regex.fullmatch(canonical(name, self.separator)) is not None

    def matches_canonical(self, name: str) -> bool:
        """:meth:`matches` for a name already in :func:`canonical` form (the hot path)."""
        return self.regex.fullmatch(name) is not None

    def __str__(self) -> str:
        return ", ".join(repr(source) for source in self.sources)
