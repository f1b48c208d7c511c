"""The three stores of the part cache, each synchronous and unaware of the others.

* :class:`MemoryTier`: plain values in this process, a byte budget (values plus a
  fixed charge per entry), least frequently used out first
  (:class:`cachetools.LFUCache`), expiry checked on read against the cache's clock.
  Runs on the Trio thread: every operation is a few dict steps.
* :class:`DiskTier`: :mod:`diskcache` (SQLite plus files) in a directory, surviving
  restarts, sealed values (:mod:`imapproxy.cache.seal`), diskcache's own expiry
  (wall-clock) and tags (one per mailbox) for dropping a mailbox.
* :class:`RedisTier`: redis-py's blocking client, sealed values under
  ``imapproxy:cache:<name>``, ``SET ... PX`` for expiry, and one set per mailbox
  (``imapproxy:cache-mailbox:<tag>``) listing the names stored for it.

The disk and Redis tiers block, so :class:`~imapproxy.cache.store.PartCache` calls
them in worker threads, one call per batch of keys. They raise whatever their
library raises when the store fails; a single entry that does not open is not a
failure of the store: it is counted in :attr:`Lookup.corrupt`, dropped, and missed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import diskcache
import redis
from cachetools import LFUCache
from redis.backoff import NoBackoff
from redis.retry import Retry

from imapproxy.cache.keys import CacheKey
from imapproxy.cache.seal import OVERHEAD, CorruptEntry, Sealer

__all__ = [
    "ENTRY_OVERHEAD",
    "REDIS_MAX_VALUE",
    "DiskTier",
    "Found",
    "Lookup",
    "MemoryTier",
    "RedisTier",
    "Stored",
]


class Found(NamedTuple):
    """A value read from a tier and how long it has left (None: no expiry known)."""

    value: bytes
    ttl: float | None


@dataclass(slots=True)
class Lookup:
    """What a batch read from a tier found, by position in the batch."""

    found: dict[int, Found] = field(default_factory=dict)
    corrupt: int = 0
    """Entries that were there but did not open (tampered, another key): dropped."""


class Stored(NamedTuple):
    """One entry to write: its stored name, its mailbox's tag, the value, seconds to live."""

    name: str
    tag: str
    value: bytes
    ttl: float


# -- memory ------------------------------------------------------------------------


ENTRY_OVERHEAD = 512
"""Bytes the memory tier charges per entry on top of its value: the key, the
entry and the cache's bookkeeping (measured at about 500 on CPython 3.11), so that
a budget holds for many small items (``RFC822.SIZE``, ``INTERNALDATE``) too."""


class _Entry(NamedTuple):
    value: bytes
    expires: float


def _entry_size(entry: _Entry) -> int:
    return len(entry.value) + ENTRY_OVERHEAD


class _IndexedLFU(LFUCache[CacheKey, _Entry]):
    """An LFUCache that knows the keys of each mailbox and counts what it pushes out."""

    def __init__(self, maxsize: int, on_evict: Callable[[], None]) -> None:
        super().__init__(maxsize, getsizeof=_entry_size)
        self.by_mailbox: dict[tuple[str, str, str], set[CacheKey]] = {}
        self._on_evict = on_evict

    def __setitem__(self, key: CacheKey, value: _Entry) -> None:
        super().__setitem__(key, value)
        self.by_mailbox.setdefault(key.mailbox_id, set()).add(key)

    def __delitem__(self, key: CacheKey) -> None:
        super().__delitem__(key)
        keys = self.by_mailbox.get(key.mailbox_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_mailbox[key.mailbox_id]

    def popitem(self) -> tuple[CacheKey, _Entry]:
        item = super().popitem()
        self._on_evict()
        return item


class MemoryTier:
    """Values in this process within ``budget`` bytes, each charged its length plus
    :data:`ENTRY_OVERHEAD`."""

    name = "memory"

    def __init__(self, budget: int, on_evict: Callable[[], None]) -> None:
        self.budget = budget
        self._cache = _IndexedLFU(budget, on_evict)

    def __repr__(self) -> str:
        return f"<MemoryTier {len(self._cache)} entries, {self.used} of {self.budget} bytes>"

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def used(self) -> int:
        """Bytes charged for the entries held."""
        return int(self._cache.currsize)

    def get(self, key: CacheKey, now: float) -> bytes | None:
        """The value of ``key`` unless missing or expired at ``now`` (then dropped)."""
        try:
            entry = self._cache[key]  # one lookup (get() looks twice)
        except KeyError:
            return None
        if entry.expires <= now:
            del self._cache[key]
            return None
        return entry.value

    def get_many(
        self, keys: list[CacheKey], now: float
    ) -> tuple[dict[CacheKey, bytes], list[CacheKey]]:
        """:meth:`get` for several keys: (the values found, the keys missing)."""
        found: dict[CacheKey, bytes] = {}
        missing: list[CacheKey] = []
        lookup = self._cache.__getitem__
        for key in keys:
            try:
                entry = lookup(key)
            except KeyError:
                missing.append(key)
                continue
            if entry.expires <= now:
                del self._cache[key]
                missing.append(key)
            else:
                found[key] = entry.value
        return found, missing

    def put(self, key: CacheKey, value: bytes, expires: float) -> bool:
        """Hold ``value`` until ``expires``; False when it is larger than the budget."""
        if len(value) + ENTRY_OVERHEAD > self.budget:
            return False
        self._cache[key] = _Entry(value, expires)
        return True

    def drop_mailbox(self, mailbox_id: tuple[str, str, str]) -> int:
        """Drop every entry of the mailbox; returns how many."""
        keys = list(self._cache.by_mailbox.get(mailbox_id, ()))
        for key in keys:
            del self._cache[key]
        return len(keys)


# -- disk --------------------------------------------------------------------------

DISK_DB_TIMEOUT = 2.0
"""Seconds a disk operation waits for SQLite's lock before it fails."""


class DiskTier:
    """Sealed values in a diskcache directory of at most ``budget`` bytes."""

    name = "disk"

    def __init__(self, directory: Path, budget: int, sealer: Sealer) -> None:
        """Open (and create, mode 0700) the directory; raises OSError when it cannot."""
        directory.mkdir(mode=0o700, exist_ok=True)
        self.directory = directory
        self.budget = budget
        self._sealer = sealer
        self._cache = diskcache.Cache(
            str(directory),
            timeout=DISK_DB_TIMEOUT,
            size_limit=budget,
            eviction_policy="least-frequently-used",
            tag_index=True,
        )

    def __repr__(self) -> str:
        return f"<DiskTier {self.directory}, {self.budget} bytes>"

    def get_many(self, names: Sequence[str]) -> Lookup:
        """Read and open the entries called ``names``."""
        lookup = Lookup()
        for i, name in enumerate(names):
            sealed, expire_time = self._cache.get(name, expire_time=True)
            if sealed is None:
                continue
            try:
                value = self._sealer.open(name, bytes(sealed))
            except CorruptEntry:
                lookup.corrupt += 1
                self._cache.delete(name)
                continue
            ttl = None if expire_time is None else expire_time - time.time()
            lookup.found[i] = Found(value, ttl)
        return lookup

    def put_many(self, entries: Sequence[Stored]) -> set[int]:
        """Seal and write ``entries``, skipping any larger than the budget; returns the
        positions written."""
        written = set()
        for i, entry in enumerate(entries):
            if len(entry.value) + OVERHEAD > self.budget:
                continue
            sealed = self._sealer.seal(entry.name, entry.value)
            self._cache.set(entry.name, sealed, expire=entry.ttl, tag=entry.tag)
            written.add(i)
        return written

    def drop_mailbox(self, tag: str) -> int:
        """Drop every entry tagged ``tag``; returns how many."""
        return int(self._cache.evict(tag))

    def close(self) -> None:
        self._cache.close()


# -- redis -------------------------------------------------------------------------

REDIS_MAX_VALUE = 512 * 1024**2
"""Redis refuses strings longer than 512 MiB."""

_ENTRY_PREFIX = "imapproxy:cache:"
_MAILBOX_PREFIX = "imapproxy:cache-mailbox:"
_DROP_BATCH = 500


class RedisTier:
    """Sealed values in Redis, shared by every proxy instance with the same key file."""

    name = "redis"

    def __init__(self, url: str, password: str, timeout: float, sealer: Sealer) -> None:
        """A client for ``url``; it connects on first use, not here."""
        self.url = url
        self._sealer = sealer
        # No retries: a failure is reported at once and the cache backs off.
        self._client = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def __repr__(self) -> str:
        return f"<RedisTier {self.url}>"

    def get_many(self, names: Sequence[str]) -> Lookup:
        """Read and open the entries called ``names``, with their time to live, in one
        round trip."""
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.get(_ENTRY_PREFIX + name)
            pipe.pttl(_ENTRY_PREFIX + name)
        replies = pipe.execute()
        lookup = Lookup()
        corrupt: list[str] = []
        for i, name in enumerate(names):
            sealed, pttl = replies[2 * i], replies[2 * i + 1]
            if sealed is None:
                continue
            try:
                value = self._sealer.open(name, sealed)
            except CorruptEntry:
                corrupt.append(_ENTRY_PREFIX + name)
                continue
            lookup.found[i] = Found(value, pttl / 1000 if pttl >= 0 else None)
        if corrupt:
            lookup.corrupt = len(corrupt)
            self._client.delete(*corrupt)
        return lookup

    def put_many(self, entries: Sequence[Stored]) -> set[int]:
        """Seal and write ``entries``, each listed in its mailbox's set (one transaction);
        returns the positions written."""
        pipe = self._client.pipeline(transaction=True)
        written = set()
        for i, entry in enumerate(entries):
            if len(entry.value) + OVERHEAD > REDIS_MAX_VALUE:
                continue
            name = _ENTRY_PREFIX + entry.name
            members = _MAILBOX_PREFIX + entry.tag
            ttl_ms = max(1, math.ceil(entry.ttl * 1000))
            pipe.set(name, self._sealer.seal(entry.name, entry.value), px=ttl_ms)
            pipe.sadd(members, name)
            # The set lives as long as its longest-lived entry: set an expiry on a new
            # set (NX), extend it otherwise (GT). Requires Redis 7.
            pipe.pexpire(members, ttl_ms, nx=True)
            pipe.pexpire(members, ttl_ms, gt=True)
            written.add(i)
        if written:
            pipe.execute()
        return written

    def drop_mailbox(self, tag: str) -> int:
        """Delete every entry listed in the mailbox's set; returns how many were listed.

        Only the members deleted are removed from the set, so an entry a concurrent
        put lists meanwhile stays listed.
        """
        members = _MAILBOX_PREFIX + tag
        names = sorted(self._client.smembers(members))
        for start in range(0, len(names), _DROP_BATCH):
            batch = names[start : start + _DROP_BATCH]
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(*batch)
            pipe.srem(members, *batch)
            pipe.execute()
        return len(names)

    def close(self) -> None:
        self._client.close()
