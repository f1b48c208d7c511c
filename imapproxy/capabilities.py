"""Capabilities: which are decided per leg, and which the proxy passes through.

A capability is either *hop-by-hop* -- it describes one connection (STARTTLS,
LOGINDISABLED, AUTH=, SASL-IR, LITERAL+/LITERAL-, COMPRESS, ID, LOGIN-REFERRALS) --
and then the proxy decides it separately for the client leg and the upstream leg,
or *end-to-end* -- it describes what the mailbox server can do (MOVE, CONDSTORE,
SPECIAL-USE, ...) -- and then the client sees it when the upstream has it and the
proxy can relay it. The second list is an allow-list: an extension the proxy does
not know is removed from CAPABILITY rather than half-passed, because its commands
or responses might carry state the proxy does not track. Some known ones are left
out on purpose because they name command tags after the command completed, which
the proxy's tag mapping cannot follow: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267:
updates under the search's tag, CANCELUPDATE naming it) and INPROGRESS (RFC 9585:
``[INPROGRESS ("tag" ...)]``).

:class:`ClientCapabilities` gives what a client is shown in each state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "HOP_BY_HOP",
    "RELAYABLE",
    "RELAYABLE_PREFIXES",
    "ClientCapabilities",
    "is_hop_by_hop",
    "is_relayable",
]

#: Capabilities that describe one connection; never passed from one leg to the other.
HOP_BY_HOP = frozenset(
    {
        "STARTTLS",
        "LOGINDISABLED",
        "SASL-IR",
        "LITERAL+",
        "LITERAL-",
        "COMPRESS=DEFLATE",
        "ID",
        "LOGIN-REFERRALS",
        "MAILBOX-REFERRALS",
        "UNAUTHENTICATE",
        "X-PROXY",
    }
)
_HOP_BY_HOP_PREFIXES = ("AUTH=", "COMPRESS=")

#: End-to-end extensions whose commands and responses the proxy parses and relays
#: correctly (its codec reads their grammar; no per-connection state it would miss).
RELAYABLE = frozenset(
    {
        "IMAP4REV1",
        "IMAP4REV2",
        "IDLE",
        "NAMESPACE",
        "UIDPLUS",
        "MOVE",
        "UNSELECT",
        "CHILDREN",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "LIST-MYRIGHTS",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "CONDSTORE",
        "QRESYNC",
        "ENABLE",
        "ESEARCH",
        "SEARCHRES",
        "SORT",
        "SORT=DISPLAY",
        "ESORT",
        "WITHIN",
        "MULTIAPPEND",
        "CATENATE",
        "URL-PARTIAL",
        "BINARY",
        "UTF8=ACCEPT",
        "SNIPPET=FUZZY",
        "PREVIEW",
        "STATUS=SIZE",
        "SAVEDATE",
        "OBJECTID",
        "NOTIFY",
        "METADATA",
        "METADATA-SERVER",
        "QUOTA",
        "QUOTASET",
        "ACL",
        "APPENDLIMIT",
        "REPLACE",
        "PARTIAL",
        "UIDONLY",
        "MESSAGELIMIT",
    }
)
#: Families of end-to-end capabilities, relayable whatever their parameter.
RELAYABLE_PREFIXES = (
    "THREAD=",
    "I18NLEVEL=",
    "QUOTA=",
    "RIGHTS=",
    "APPENDLIMIT=",
    "MESSAGELIMIT=",
    "SAVELIMIT=",
)


def is_hop_by_hop(name: str) -> bool:
    upper = name.upper()
    return upper in HOP_BY_HOP or upper.startswith(_HOP_BY_HOP_PREFIXES)


def is_relayable(name: str) -> bool:
    """Whether an upstream's end-to-end capability can be shown to clients."""
    upper = name.upper()
    if is_hop_by_hop(upper):
        return False
    return upper in RELAYABLE or upper.startswith(RELAYABLE_PREFIXES)


@dataclass(frozen=True, slots=True)
class ClientCapabilities:
    """What the proxy offers a client on its own account (hop-by-hop)."""

    #: SASL mechanisms the proxy terminates itself.
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    #: ``LITERAL+`` (RFC 7888): the client may send literals without waiting.
    literal_plus: bool = True
    #: The proxy's own cap on a literal (``limits.max_literal``): an upstream's
    #: ``APPENDLIMIT=n`` above it is shown as this (RFC 7889).
    max_literal: int | None = None

    def pre_auth(self, *, tls: bool, starttls_offered: bool) -> tuple[str, ...]:
        """Before login. Without TLS on a STARTTLS listener: STARTTLS and
        LOGINDISABLED, no AUTH=, whoever the peer is (loopback included)."""
        caps = ["IMAP4rev1"]
        if not tls:
            if starttls_offered:
                caps.append("STARTTLS")
            caps.append("LOGINDISABLED")
        else:
            caps.append("SASL-IR")
            caps.extend(f"AUTH={mech}" for mech in self.mechanisms)
        caps.extend(self._literals())
        caps.append("ID")
        return tuple(caps)

    def authenticated(self, upstream: Iterable[str]) -> tuple[str, ...]:
        """After login: the upstream's relayable end-to-end capabilities (in its
        order and spelling, IMAP4rev1 first) plus the proxy's hop-by-hop ones.
        Names are case-insensitive: a repeated one is shown once, as first spelled."""
        first: dict[str, str] = {}
        for cap in upstream:
            first.setdefault(cap.upper(), cap)
        relayed = [self._clamped(cap) for cap in first.values() if is_relayable(cap)]
        if not any(cap.upper() == "IMAP4REV1" for cap in relayed):
            relayed.insert(0, "IMAP4rev1")
        else:
            relayed.sort(key=lambda cap: cap.upper() != "IMAP4REV1")
        return (*relayed, *self._literals(), "ID")

    def _clamped(self, cap: str) -> str:
        name, _, value = cap.partition("=")
        if self.max_literal is None or name.upper() != "APPENDLIMIT" or not value.isdigit():
            return cap
        return f"{name}={min(int(value), self.max_literal)}"

    def _literals(self) -> tuple[str, ...]:
        return ("LITERAL+",) if self.literal_plus else ("LITERAL-",)
