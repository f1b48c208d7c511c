"""Reuse of logged-in upstream connections (docs/multiplex.md, "Reuse").

When a client logs out, its upstream connection -- logged in, idle, no mailbox
selected, never ENABLEd -- is kept here instead of being logged out, and given to
the next login of the same user (and SASL authorization identity) on the same
upstream, which then skips connecting, TLS, ID and authentication upstream.

Who may take a connection is decided without the upstream, so it is strict:

* the password (with the user, the authorization identity and the upstream) is
  compared with a keyed hash (HMAC-SHA256 under a secret of this process, never
  stored or logged) of the credentials the upstream accepted on that connection,
  in constant time. A wrong password never gets a pooled connection: it is
  checked upstream by a fresh login, like any login;
* only within ``reuse_max_age`` of the upstream's own check: after that the next
  login goes upstream again, so a changed or locked password stops working soon;
* for a trusted upstream (which saw the client's address in ID), only for a
  login from the same client address.

The proxy sees the secret of every mechanism it offers (LOGIN, AUTHENTICATE PLAIN
and LOGIN), so every login can be compared. Pure bookkeeping: the session puts
connections in (:meth:`UpstreamPool.give`) and takes them (:meth:`UpstreamPool.take`);
what must be closed is returned to the caller, who does the I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from imapproxy.config import Multiplex, Upstream
from imapproxy.router import normalise_user
from imapproxy.upstream import Credentials, UpstreamConnection

__all__ = ["PoolKey", "Pooled", "UpstreamPool"]

#: (upstream, user, authorization identity, client address or "").
PoolKey = tuple[str, str, str, str]


@dataclass(eq=False, slots=True)
class Pooled:
    """An idle logged-in upstream connection and what it was logged in with."""

    conn: UpstreamConnection
    digest: bytes
    #: When the upstream last checked the password (its login).
    verified_at: float
    idle_since: float = 0.0


class UpstreamPool:
    """The idle logged-in connections, bounded per key and overall."""

    def __init__(self, settings: Multiplex) -> None:
        self.settings = settings
        self._secret = secrets.token_bytes(32)
        self._idle: OrderedDict[PoolKey, list[Pooled]] = OrderedDict()
        self._count = 0
        #: Logins served by a pooled connection, and connections put in.
        self.reused = 0
        self.kept = 0

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"UpstreamPool({self._count} idle, {self.reused} reused)"

    @staticmethod
    def key(upstream: Upstream, credentials: Credentials, client_ip: str) -> PoolKey:
        """Who may share a connection: same upstream, user and authorization
        identity -- and, for a trusted upstream, the same client address."""
        return (
            upstream.name,
            normalise_user(credentials.user),
            credentials.authzid,
            client_ip if upstream.trusted else "",
        )

    def digest(self, upstream: str, credentials: Credentials) -> bytes:
        """The keyed hash of a login's credentials (nothing of it can be undone)."""
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (upstream, credentials.user, credentials.authzid):
            data = part.encode("utf-8", "surrogateescape")
            mac.update(len(data).to_bytes(4, "big") + data)
        mac.update(credentials.password.reveal())
        return mac.digest()

    def take(self, key: PoolKey, digest: bytes, now: float) -> tuple[Pooled | None, list[Pooled]]:
        """A pooled connection for a login with ``digest`` (None: none fits), and
        the stale ones met on the way (for the caller to close)."""
        stale: list[Pooled] = []
        entries = self._idle.get(key)
        if not entries:
            return None, stale
        found = None
        for entry in reversed(entries):  # the most recently used first
            if self._expired(entry, now):
                stale.append(entry)
            elif found is None and hmac.compare_digest(entry.digest, digest):
                found = entry
        for entry in [*stale, *([found] if found else [])]:
            entries.remove(entry)
            self._count -= 1
        if not entries:
            del self._idle[key]
        if found is not None:
            self.reused += 1
        return found, stale

    def give(self, key: PoolKey, entry: Pooled, now: float) -> list[Pooled]:
        """Keep ``entry`` for the next login; returns what had to go to stay within
        the bounds (the oldest idle ones)."""
        if now - entry.verified_at >= self.settings.reuse_max_age:
            return [entry]  # too old to be given to anyone
        entry.idle_since = now
        entries = self._idle.setdefault(key, [])
        entries.append(entry)
        self._idle.move_to_end(key)
        self._count += 1
        self.kept += 1
        out: list[Pooled] = []
        while len(entries) > self.settings.max_connections_per_user:
            out.append(entries.pop(0))
            self._count -= 1
        while self._count > self.settings.max_connections:
            oldest_key = next(iter(self._idle))
            oldest = self._idle[oldest_key]
            out.append(oldest.pop(0))
            self._count -= 1
            if not oldest:
                del self._idle[oldest_key]
        return out

    def sweep(self, now: float) -> list[Pooled]:
        """Take out the connections idle too long, or logged in too long ago."""
        out: list[Pooled] = []
        for key in list(self._idle):
            entries = self._idle[key]
            expired = [entry for entry in entries if self._expired(entry, now)]
            for entry in expired:
                entries.remove(entry)
            out += expired
            if not entries:
                del self._idle[key]
        self._count -= len(out)
        return out

    def drain(self) -> list[Pooled]:
        """Everything (at shutdown)."""
        out = [entry for entries in self._idle.values() for entry in entries]
        self._idle.clear()
        self._count = 0
        return out

    def _expired(self, entry: Pooled, now: float) -> bool:
        settings = self.settings
        return (
            now - entry.idle_since >= settings.idle_expiry
            or now - entry.verified_at >= settings.reuse_max_age
            or not entry.conn.quiet()  # a BYE, or the server closed it
        )
