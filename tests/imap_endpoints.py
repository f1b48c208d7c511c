r"""Where a test connects: Dovecot directly or the proxy, implicit TLS or STARTTLS.

An :class:`Endpoint` opens the same kind of client (IMAPClient, imaplib, or the raw
:class:`~imap_raw.RawImap`) on either side, so a test can run one scenario directly
against Dovecot and through the proxy and compare the results item by item.
:func:`scrub` removes what legitimately differs between two runs: Dovecot's
command timings, and the ``\Marked`` / ``\UnMarked`` LIST flags, which Dovecot adds
once its mailbox list index knows about new mail, i.e. depending on what earlier
sessions did.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from dataclasses import dataclass
from typing import Any

from imap_raw import RawImap
from imapclient import IMAPClient

from imapproxy.testing import DovecotServer

__all__ = ["CLIENT_TIMEOUT", "Endpoint", "quote", "scrub"]

#: Socket timeout of the blocking clients (the trio side has its own fail_after).
CLIENT_TIMEOUT = 20.0

_TIMING = re.compile(rb" \(\d+\.\d+(?: \+ \d+\.\d+)* secs\)")
_MARKED = (re.compile(rb" \\(?:Un)?Marked\b", re.I), re.compile(rb"\\(?:Un)?Marked\b ?", re.I))
_MARKED_FLAGS = frozenset({b"\\MARKED", b"\\UNMARKED"})


@dataclass(frozen=True)
class Endpoint:
    """An IMAP port and how to secure it (``tls``: ``"implicit"`` or ``"starttls"``)."""

    port: int
    tls: str
    ctx: ssl.SSLContext
    host: str = "localhost"

    @classmethod
    def direct(cls, dovecot: DovecotServer, tls: str) -> Endpoint:
        port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
        return cls(port, tls, dovecot.client_ssl_context())

    @classmethod
    def via(cls, proxy: Any, tls: str) -> Endpoint:
        """The proxy's listener of that kind (``proxy``: a conftest ``RunningProxy``)."""
        return cls(proxy.port(tls), tls, proxy.ssl_context())

    def imapclient(self) -> IMAPClient:
        if self.tls == "implicit":
            return IMAPClient(
                self.host, self.port, ssl=True, ssl_context=self.ctx, timeout=CLIENT_TIMEOUT
            )
        client = IMAPClient(self.host, self.port, ssl=False, timeout=CLIENT_TIMEOUT)
        client.starttls(self.ctx)
        return client

    def imaplib(self) -> imaplib.IMAP4:
        if self.tls == "implicit":
            return imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=self.ctx, timeout=CLIENT_TIMEOUT
            )
        client = imaplib.IMAP4(self.host, self.port, timeout=CLIENT_TIMEOUT)
        client.starttls(self.ctx)
        return client

    async def raw(self) -> RawImap:
        """A raw client past the greeting (and STARTTLS), not logged in."""
        client = await RawImap.connect(self.host, self.port)
        if self.tls == "implicit":
            await client.start_tls(self.ctx, self.host)
        greeting = await client.read_line()
        assert greeting.startswith(b"* OK"), greeting
        if self.tls == "starttls":
            reply = await client.command(b"tls", b"STARTTLS")
            assert reply[-1].startswith(b"tls OK"), reply
            await client.start_tls(self.ctx, self.host)
        return client

    async def raw_login(self, user: str, password: str) -> RawImap:
        client = await self.raw()
        reply = await client.command(b"login", b"LOGIN " + quote(user) + b" " + quote(password))
        assert reply[-1].startswith(b"login OK"), reply
        return client


def quote(text: str) -> bytes:
    """An IMAP quoted string (ASCII only)."""
    return b'"' + text.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def scrub(value: Any) -> Any:
    r"""``value`` without Dovecot's timings (``(0.001 + 0.000 secs)``) and LIST's
    ``\Marked`` / ``\UnMarked``, recursively."""
    if isinstance(value, bytes):
        value = _TIMING.sub(b"", value)
        if value.startswith(b"("):  # a LIST response's attributes
            for pattern in _MARKED:
                value = pattern.sub(b"", value)
        return value
    if isinstance(value, str):
        return _TIMING.sub(b"", value.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(
            scrub(item)
            for item in value
            if not (isinstance(item, bytes) and item.upper() in _MARKED_FLAGS)
        )
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    return value
