"""Sealing entries for the stores outside the process: keyed names, AEAD values.

The disk and Redis tiers hold mail, possibly on shared machines, so neither sees a
plaintext value nor a name that says whose mail it is. From the 32-byte key of
``cache.key_file`` HKDF-SHA256 derives two independent keys, by label:

* the *naming* key: an entry is stored under ``HMAC-SHA256(naming, encode_key(k))``
  and tagged with ``HMAC-SHA256(naming, encode_mailbox(...))`` (see
  :mod:`imapproxy.cache.keys`): opaque, stable across restarts and instances that
  share the key, and without the key not linkable to a user or mailbox;
* the *sealing* key: a value is AES-256-GCM encrypted with a fresh random 96-bit
  nonce, the entry's name as associated data, so an entry copied under another
  name does not open. A sealed value is ``version (1) | nonce (12) | ciphertext+tag``.

A value that does not open (tampered, truncated, another key's) raises
:class:`CorruptEntry`; the tiers treat it as a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imapproxy.cache.keys import CacheKey, encode_key, encode_mailbox

__all__ = ["OVERHEAD", "CorruptEntry", "Sealer"]

_VERSION = b"\x01"
_NONCE = 12
_TAG = 16
OVERHEAD = len(_VERSION) + _NONCE + _TAG
"""Bytes a sealed value has on top of its plaintext."""


class CorruptEntry(Exception):
    """A stored value that does not open with this key under this name."""


def _derive(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(key)


class Sealer:
    """Names and seals entries with keys derived from one 32-byte secret."""

    __slots__ = ("_aead", "_naming")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"the cache key is 32 bytes, got {len(key)}")
        self._naming = _derive(key, b"imapproxy cache v1 naming")
        self._aead = AESGCM(_derive(key, b"imapproxy cache v1 sealing"))

    def __repr__(self) -> str:
        return "Sealer(key='***')"

    def name(self, key: CacheKey) -> str:
        """The stored name of ``key``: 64 hex digits."""
        return hmac.new(self._naming, encode_key(key), hashlib.sha256).hexdigest()

    def mailbox_tag(self, upstream: str, owner: str, mailbox: str) -> str:
        """The tag of every entry of a mailbox: 64 hex digits."""
        data = encode_mailbox(upstream, owner, mailbox)
        return hmac.new(self._naming, data, hashlib.sha256).hexdigest()

    def seal(self, name: str, value: bytes) -> bytes:
        """``value`` encrypted and bound to ``name``."""
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, value, name.encode("ascii"))

    def open(self, name: str, sealed: bytes) -> bytes:
        """The value sealed under ``name``; raises CorruptEntry when it does not open."""
        if len(sealed) < OVERHEAD or sealed[:1] != _VERSION:
            raise CorruptEntry("not a sealed cache entry")
        nonce = sealed[1 : 1 + _NONCE]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE :], name.encode("ascii"))
        except InvalidTag:
            raise CorruptEntry("the entry does not open with this key") from None
