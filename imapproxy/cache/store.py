"""The part cache: memory, then disk, then Redis, behind one async interface.

:class:`PartCache` asks the tiers of :mod:`imapproxy.cache.tiers` in order, the
memory tier on the Trio thread and the others in worker threads (a few per tier,
through a :class:`trio.CapacityLimiter`), one thread hop per tier for a whole batch
of keys. A hit in a lower tier is written to the tiers above it with the time it has
left. A put goes to every tier, the disk and Redis writes concurrently.

A failing disk or Redis tier never reaches the caller: a read becomes a miss and a
write is skipped, the failure is counted in :attr:`CacheStats.tier_errors` and
logged at most once a minute per tier (naming the tier and the error, never a key or
a value). After a Redis failure the tier is left alone for :data:`REDIS_BACKOFF`
seconds, so a dead Redis costs one timeout, not one per FETCH.

Admission (:meth:`PartCache.admit`) is bookkeeping for the caller, which decides
whether a fetched item is worth storing: it remembers the last fetch times of up to
:data:`ADMISSION_KEYS` keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio
from cachetools import LRUCache

from imapproxy.cache.keys import CacheKey
from imapproxy.cache.seal import Sealer
from imapproxy.cache.tiers import DiskTier, Found, Lookup, MemoryTier, RedisTier, Stored
from imapproxy.config import CacheSettings
from imapproxy.logs import get_logger

__all__ = [
    "ADMISSION_KEYS",
    "REDIS_BACKOFF",
    "TIER_THREADS",
    "WARNING_INTERVAL",
    "CacheStats",
    "PartCache",
]

REDIS_BACKOFF = 5.0
"""Seconds the Redis tier is skipped after it failed."""
WARNING_INTERVAL = 60.0
"""At most one warning per tier in this many seconds."""
TIER_THREADS = 4
"""Worker threads per blocking tier."""
ADMISSION_KEYS = 65536
"""Keys whose fetch times :meth:`PartCache.admit` remembers (least recently used out)."""
_REDIS_HOP_TIMEOUTS = 4
"""A Redis hop (connect, AUTH, command, reply) is given up after this many
``redis_timeout``; the worker thread finishes on its own socket timeouts."""

_T = TypeVar("_T")

_log = get_logger("imapproxy.cache")


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache started."""

    hits: int = 0
    """Keys asked for and found in some tier."""
    misses: int = 0
    """Keys asked for and found nowhere."""
    bytes_served: int = 0
    """Bytes of the values of hits."""
    bytes_stored: int = 0
    """Bytes of the values put into at least one tier (promotions not counted)."""
    bytes_saved: int = 0
    """Bytes the session sent to clients from cached values (counted by the session)."""
    evictions: int = 0
    """Entries the memory tier pushed out to stay within its budget (the disk tier's
    culling is not observable)."""
    tier_hits: dict[str, int] = field(default_factory=dict)
    """Hits by the tier that had the value: ``memory``, ``disk``, ``redis``."""
    tier_errors: dict[str, int] = field(default_factory=dict)
    """Failures by tier: calls that raised or timed out, and entries that did not open."""

    def snapshot(self) -> dict[str, int | dict[str, int]]:
        """A copy of the counters for a log line or metrics."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bytes_served": self.bytes_served,
            "bytes_stored": self.bytes_stored,
            "bytes_saved": self.bytes_saved,
            "evictions": self.evictions,
            "tier_hits": dict(self.tier_hits),
            "tier_errors": dict(self.tier_errors),
        }


class PartCache:
    """Immutable message data by :class:`CacheKey`, in the tiers ``settings`` configures.

    Raises OSError or ValueError when the key file, the Redis password file or the disk
    directory cannot be used (at start: the configuration validated them, but files
    change). The Redis tier connects on first use.
    """

    def __init__(
        self, settings: CacheSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.stats = CacheStats()
        self._clock = clock
        self._memory = (
            MemoryTier(settings.memory_bytes, self._evicted) if settings.memory_bytes else None
        )
        self._sealer: Sealer | None = None
        if settings.disk_dir is not None or settings.redis_url is not None:
            self._sealer = Sealer(settings.read_key())
        self._disk: DiskTier | None = None
        self._redis: RedisTier | None = None
        if settings.disk_dir is not None:
            self._disk = DiskTier(settings.disk_dir, settings.disk_bytes, self._sealer_())
        if settings.redis_url is not None:
            self._redis = RedisTier(
                settings.redis_url,
                settings.read_redis_password(),
                settings.redis_timeout,
                self._sealer_(),
            )
        for tier in (self._memory, self._disk, self._redis):
            if tier is not None:
                self.stats.tier_hits[tier.name] = 0
                self.stats.tier_errors[tier.name] = 0
        self._threads = {
            "disk": trio.CapacityLimiter(TIER_THREADS),
            "redis": trio.CapacityLimiter(TIER_THREADS),
        }
        self._redis_down_until = -math.inf
        self._warned_at: dict[str, float] = {}
        self._unreported: dict[str, int] = {}
        self._admission: LRUCache[CacheKey, tuple[float, ...]] = LRUCache(ADMISSION_KEYS)

    def __repr__(self) -> str:
        parts = []
        if self._memory is not None:
            parts.append(
                f"memory {len(self._memory)} entries, {self._memory.used} of "
                f"{self._memory.budget} bytes"
            )
        if self._disk is not None:
            parts.append(f"disk {self._disk.directory}")
        if self._redis is not None:
            wait = self._redis_down_until - self._clock()
            state = f"backing off {wait:.1f}s" if wait > 0 else "up"
            parts.append(f"redis {self._redis.url} ({state})")
        return f"<PartCache {'; '.join(parts) or 'no tiers'}>"

    @property
    def tiers(self) -> tuple[str, ...]:
        """The names of the configured tiers, top first."""
        return tuple(tier.name for tier in (self._memory, self._disk, self._redis) if tier)

    # -- reading ---------------------------------------------------------------------

    async def get(self, key: CacheKey) -> bytes | None:
        """The value of ``key`` from the first tier that has it, or None."""
        return (await self.get_many((key,))).get(key)

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, bytes]:
        """The values of those ``keys`` that some tier has (misses are absent).

        One memory pass, then at most one worker-thread call per lower tier for the
        keys still missing, then one to promote Redis hits to disk.
        """
        wanted = list(dict.fromkeys(keys))
        found: dict[CacheKey, bytes] = {}
        missing = wanted
        if self._memory is not None:
            found, missing = self._memory.get_many(wanted, self._clock())
            self.stats.tier_hits["memory"] += len(found)
        promote: list[tuple[CacheKey, Found]] = []
        to_disk: list[tuple[CacheKey, Found]] = []
        if missing and self._sealer is not None:
            names = [self._sealer.name(key) for key in missing]
            for tier in (self._disk, self._redis):
                if tier is None or not missing:
                    continue
                lookup = await self._call(tier, partial(tier.get_many, names))
                if lookup is None:
                    continue
                self._count_corrupt(tier.name, lookup)
                for i, hit in lookup.found.items():
                    found[missing[i]] = hit.value
                    promote.append((missing[i], hit))
                    if tier is self._redis:
                        to_disk.append((missing[i], hit))
                self.stats.tier_hits[tier.name] += len(lookup.found)
                keep = [i for i in range(len(missing)) if i not in lookup.found]
                missing = [missing[i] for i in keep]
                names = [names[i] for i in keep]
        if promote:
            await self._promote(promote, to_disk)
        self.stats.hits += len(found)
        self.stats.misses += len(wanted) - len(found)
        self.stats.bytes_served += sum(len(value) for value in found.values())
        return found

    async def _promote(
        self, hits: list[tuple[CacheKey, Found]], to_disk: list[tuple[CacheKey, Found]]
    ) -> None:
        """Lower-tier hits into the tiers above, for the time they have left."""
        if self._memory is not None:
            now = self._clock()
            for key, hit in hits:
                ttl = self.settings.ttl if hit.ttl is None else hit.ttl
                if ttl > 0:
                    self._memory.put(key, hit.value, now + ttl)
        disk = self._disk
        if disk is not None and to_disk:
            entries = self._entries(
                [(key, hit.value) for key, hit in to_disk],
                [self.settings.ttl if hit.ttl is None else hit.ttl for _, hit in to_disk],
            )
            await self._call(disk, partial(disk.put_many, [e for e in entries if e.ttl > 0]))

    # -- writing ---------------------------------------------------------------------

    async def put(self, key: CacheKey, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` in every tier for ``ttl`` seconds (None: the
        configured ``ttl``). Values larger than a tier holds are not stored there."""
        await self.put_many(((key, value),), ttl=ttl)

    async def put_many(
        self, items: Sequence[tuple[CacheKey, bytes]], *, ttl: float | None = None
    ) -> None:
        """:meth:`put` for several items: one worker-thread call per lower tier."""
        seconds = self.settings.ttl if ttl is None else ttl
        values = dict(items)
        if not values or seconds <= 0:
            return
        stored: set[CacheKey] = set()
        if self._memory is not None:
            expires = self._clock() + seconds
            stored.update(
                key for key, value in values.items() if self._memory.put(key, value, expires)
            )
        tiers = [tier for tier in (self._disk, self._redis) if tier is not None]
        if tiers:
            keys = list(values)
            entries = self._entries(list(values.items()), [seconds] * len(keys))
            written: list[set[int]] = []

            async def write(tier: DiskTier | RedisTier) -> None:
                result = await self._call(tier, partial(tier.put_many, entries))
                if result is not None:
                    written.append(result)

            async with trio.open_nursery() as nursery:
                for tier in tiers:
                    nursery.start_soon(write, tier)
            stored.update(keys[i] for indices in written for i in indices)
        self.stats.bytes_stored += sum(len(values[key]) for key in stored)

    def _entries(self, items: list[tuple[CacheKey, bytes]], ttls: list[float]) -> list[Stored]:
        sealer = self._sealer_()
        tags: dict[tuple[str, str, str], str] = {}
        entries = []
        for (key, value), ttl in zip(items, ttls, strict=True):
            tag = tags.get(key.mailbox_id)
            if tag is None:
                tag = tags[key.mailbox_id] = sealer.mailbox_tag(*key.mailbox_id)
            entries.append(Stored(sealer.name(key), tag, value, ttl))
        return entries

    async def drop_mailbox(self, upstream: str, owner: str, mailbox: str) -> None:
        """Drop every entry of the mailbox, whatever its UIDVALIDITY, from every tier
        (for a UIDVALIDITY change). A tier that fails keeps its entries until they
        expire; they are keyed by the old UIDVALIDITY."""
        if self._memory is not None:
            self._memory.drop_mailbox((upstream, owner, mailbox))
        tiers = [tier for tier in (self._disk, self._redis) if tier is not None]
        if not tiers:
            return
        tag = self._sealer_().mailbox_tag(upstream, owner, mailbox)
        async with trio.open_nursery() as nursery:
            for tier in tiers:
                nursery.start_soon(self._call, tier, partial(tier.drop_mailbox, tag))

    # -- admission -------------------------------------------------------------------

    def admit(self, key: CacheKey, *, after: int, window: float) -> bool:
        """Record one fetch of ``key``; True once it was fetched ``after`` times within
        the last ``window`` seconds (``after <= 1``: at once)."""
        if after <= 1:
            return True
        now = self._clock()
        times = (*self._admission.get(key, ())[-(after - 1) :], now)
        self._admission[key] = times
        return len(times) >= after and now - times[0] <= window

    # -- the blocking tiers ----------------------------------------------------------

    async def _call(self, tier: DiskTier | RedisTier, call: Callable[[], _T]) -> _T | None:
        """``call()`` in one of the tier's worker threads; None when it failed (counted,
        logged, and for Redis the start of a back-off) or the tier is backing off."""
        limiter = self._threads[tier.name]
        if tier is not self._redis:
            try:
                return await trio.to_thread.run_sync(call, limiter=limiter)
            except Exception as exc:
                self._failed(tier.name, _describe(exc))
                return None
        if self._clock() < self._redis_down_until:
            return None
        result: _T | None = None
        error = ""
        with trio.move_on_after(self.settings.redis_timeout * _REDIS_HOP_TIMEOUTS) as scope:
            try:
                result = await trio.to_thread.run_sync(
                    call, limiter=limiter, abandon_on_cancel=True
                )
            except Exception as exc:
                error = _describe(exc)
        if scope.cancelled_caught:
            error = "no answer in time"
        if error:
            self._redis_down_until = self._clock() + REDIS_BACKOFF
            self._failed(tier.name, error)
            return None
        return result

    def _count_corrupt(self, tier: str, lookup: Lookup) -> None:
        if lookup.corrupt:
            self._failed(tier, "entries did not open (tampered, or another key)", lookup.corrupt)

    def _failed(self, tier: str, error: str, count: int = 1) -> None:
        self.stats.tier_errors[tier] += count
        self._unreported[tier] = self._unreported.get(tier, 0) + count
        now = self._clock()
        last = self._warned_at.get(tier)
        if last is not None and now - last < WARNING_INTERVAL:
            return
        self._warned_at[tier] = now
        _log.warning(
            "cache tier failed",
            tier=tier,
            error=error,
            failures=self._unreported.pop(tier),
            backoff=REDIS_BACKOFF if tier == "redis" else None,
        )

    def _evicted(self) -> None:
        self.stats.evictions += 1

    def _sealer_(self) -> Sealer:
        assert self._sealer is not None, "a disk or Redis tier has a sealer"
        return self._sealer

    async def aclose(self) -> None:
        """Close the disk and Redis tiers (the memory tier just goes with the object)."""
        disk, redis = self._disk, self._redis
        self._disk = self._redis = None
        for tier in (disk, redis):
            if tier is not None:
                try:
                    await trio.to_thread.run_sync(tier.close)
                except Exception as exc:
                    self._failed(tier.name, _describe(exc))


def _describe(exc: BaseException) -> str:
    """What went wrong, for a warning: the exception's type and message, shortened."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."
