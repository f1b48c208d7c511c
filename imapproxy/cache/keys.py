"""What the part cache is keyed by, and the canonical bytes of a key.

A :class:`CacheKey` names one immutable item of one message: the upstream, the
owner of the mailbox's namespace, the mailbox, its UIDVALIDITY, the UID and the
FETCH item (``b"BODY[1.2]"``, ``b"ENVELOPE"``). Message data never changes for a
UID within one UIDVALIDITY (RFC 9051 section 2.3.1.1), which is what makes caching
it safe; flags and MODSEQ are never cache keys.

:func:`encode_key` and :func:`encode_mailbox` are the unambiguous byte strings the
stores hash (length-prefixed fields under a version label), so that no two keys,
and no key and mailbox, share an encoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["CacheKey", "encode_key", "encode_mailbox"]


@dataclass(frozen=True, slots=True, eq=False)
class CacheKey:
    """One cached item of one message."""

    upstream: str
    """The upstream's name from the configuration."""
    owner: str
    """The user, or ``""`` for a shared mailbox (then the mailbox alone identifies it)."""
    mailbox: str
    """The upstream's mailbox name, decoded."""
    uidvalidity: int
    uid: int
    item: bytes
    """The FETCH item as the server names it: ``b"BODY[1.2]"``, ``b"RFC822.SIZE"``."""

    _parts: tuple[str, str, str, int, int, bytes] = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0 <= self.uidvalidity < 2**32 and 0 <= self.uid < 2**32):
            raise ValueError(
                f"UIDVALIDITY and UID are 32-bit numbers, got {self.uidvalidity}, {self.uid}"
            )
        # Hashed once: a FETCH of 500 messages looks up its keys in several dicts.
        parts = (self.uid, self.item, self.uidvalidity, self.mailbox, self.owner, self.upstream)
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_hash", hash(parts))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # The memory tier compares keys several times per lookup: one tuple
        # comparison, most selective part first, instead of the generated one.
        if self is other:
            return True
        if not isinstance(other, CacheKey):
            return NotImplemented
        return self._hash == other._hash and self._parts == other._parts

    @property
    def mailbox_id(self) -> tuple[str, str, str]:
        """``(upstream, owner, mailbox)``: what :meth:`PartCache.drop_mailbox` drops."""
        return (self.upstream, self.owner, self.mailbox)


_KEY_LABEL = b"imapproxy cache key v1\0"
_MAILBOX_LABEL = b"imapproxy cache mailbox v1\0"


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _text(text: str) -> bytes:
    # surrogatepass: a mailbox name decoded with surrogateescape still encodes.
    return _field(text.encode("utf-8", "surrogatepass"))


def encode_mailbox(upstream: str, owner: str, mailbox: str) -> bytes:
    """The canonical bytes of a mailbox (all its UIDVALIDITYs)."""
    return _MAILBOX_LABEL + _text(upstream) + _text(owner) + _text(mailbox)


def encode_key(key: CacheKey) -> bytes:
    """The canonical bytes of ``key``."""
    return (
        _KEY_LABEL
        + _text(key.upstream)
        + _text(key.owner)
        + _text(key.mailbox)
        + struct.pack(">QQ", key.uidvalidity, key.uid)
        + _field(key.item)
    )
