"""Protocol errors of the codec, each carrying the reply it implies.

Two kinds, after h11: a :class:`RemoteProtocolError` means the peer sent something
the codec cannot accept (a malformed command from a client, garbage from an
upstream); a :class:`LocalProtocolError` means this side tried to build or send
something invalid (a bug, or a value that cannot be expressed on the wire).

Every error carries a :class:`Reply`: what should go back on the wire because of
it -- a tagged ``BAD`` or ``NO`` with an optional response code, or an untagged
``BYE`` when the connection cannot continue (for instance an over-long line, after
which the byte stream cannot be resynchronised). The session layer writes
``error.reply.to_bytes()`` and, for ``BYE``, closes the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ReplyKind",
]

ReplyKind = Literal["BAD", "NO", "BYE"]


def _clean_text(text: str) -> bytes:
    """Reply text as one safe line: no CR, LF or NUL, ASCII only, never empty."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text).strip()
    return (cleaned or "Error").encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A status response the codec asks its caller to send.

    ``kind`` is ``BAD``, ``NO`` or ``BYE``; ``tag`` is the tag of the command the
    reply completes (``None``: untagged, always so for ``BYE``); ``code`` is the
    response code atom without brackets, e.g. ``b"TOOBIG"`` (RFC 9051 section 7.1).
    """

    kind: ReplyKind
    text: str
    code: bytes | None = None
    tag: bytes | None = None

    @property
    def closes(self) -> bool:
        """True when the connection must be closed after sending the reply."""
        return self.kind == "BYE"

    def with_tag(self, tag: bytes | None) -> Reply:
        """The same reply completing another command (ignored for ``BYE``)."""
        return Reply(kind=self.kind, text=self.text, code=self.code, tag=tag)

    def to_bytes(self) -> bytes:
        """The reply as a strictly formed response line, CRLF included."""
        tag = b"*" if self.tag is None or self.kind == "BYE" else self.tag
        code = b"[" + self.code + b"] " if self.code else b""
        return b"%s %s %s%s\r\n" % (tag, self.kind.encode(), code, _clean_text(self.text))


class ProtocolError(Exception):
    """Base class: a protocol violation and the reply it implies."""

    def __init__(self, text: str, *, reply: Reply | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.reply = reply if reply is not None else Reply(kind="BAD", text=text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r}, reply={self.reply!r})"


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol (or exceed a configured cap)."""


class LocalProtocolError(ProtocolError):
    """This side tried to build or send something the protocol cannot express."""
