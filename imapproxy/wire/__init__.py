"""The sans-IO IMAP codec: framing, lazy parsing, strict serializing.

Nothing here does I/O or imports trio, ssl, socket or structlog (a test checks).
The layers, bottom up:

* :mod:`~imapproxy.wire.framing` -- bytes to frames (a line plus its literals),
  with caps, streaming of large literals and continuation decisions.
* :mod:`~imapproxy.wire.commands` / :mod:`~imapproxy.wire.responses` -- a frame
  to a :class:`Command` or :class:`Response` whose tag and name are read at once
  and whose arguments or data are parsed on first access.
* :mod:`~imapproxy.wire.values`, :mod:`~imapproxy.wire.search`,
  :mod:`~imapproxy.wire.bodystructure` -- typed values.
* :mod:`~imapproxy.wire.build` -- frames the proxy makes itself.

See docs/codec.md for the outcomes of malformed input.
"""

from imapproxy.wire.build import FrameBuilder, build_command, build_response, continuation
from imapproxy.wire.commands import Command
from imapproxy.wire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, Reply
from imapproxy.wire.framing import (
    NEED_DATA,
    BadFrame,
    ContinuationRequest,
    EndOfStream,
    Event,
    Frame,
    FramePart,
    Framer,
    LiteralChunk,
    LiteralSpan,
    Role,
)
from imapproxy.wire.reader import Atom, Literal, ParseError
from imapproxy.wire.responses import Kind, Response
from imapproxy.wire.values import FetchItem, Mailbox, Secret, Section, SequenceSet

__all__ = [
    "NEED_DATA",
    "Atom",
    "BadFrame",
    "Command",
    "ContinuationRequest",
    "EndOfStream",
    "Event",
    "FetchItem",
    "Frame",
    "FrameBuilder",
    "FramePart",
    "Framer",
    "Kind",
    "Literal",
    "LiteralChunk",
    "LiteralSpan",
    "LocalProtocolError",
    "Mailbox",
    "ParseError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "Response",
    "Role",
    "Secret",
    "Section",
    "SequenceSet",
    "build_command",
    "build_response",
    "continuation",
]
