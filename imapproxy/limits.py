"""Bounds that protect the proxy and its upstreams from one client.

* :class:`ConnectionLimiter` -- client connections overall and per client IP.
* :class:`LoginThrottle` -- a growing delay after failed logins, keyed on
  (user, client IP): keyed on the user alone it would let anyone lock a user out
  by failing on purpose; keyed on the IP alone it would punish a whole NATed
  office for one typo. Failures are forgotten after a window, and the table is
  bounded (the oldest entries go first).
* :class:`RateLimiter` -- token buckets for a rule's ``limit.commands_per_second``
  per user: a command over the rate waits for its token (the session stops
  reading the client meanwhile) rather than failing.
* :class:`KeyedGate` -- one login attempt at a time per (user, client IP), so that
  many parallel connections get no more guesses than one connection does: each
  attempt waits its turn, then the throttle's delay since the latest failure.

The limiter and the throttle are plain objects: the session asks, then awaits
what the answer implies; the gate holds a Trio lock per key while it is used.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

__all__ = ["ConnectionLimiter", "KeyedGate", "LoginThrottle", "RateLimiter"]


class ConnectionLimiter:
    """Counts client connections; :meth:`acquire` says whether one may proceed."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: defaultdict[str, int] = defaultdict(int)

    def acquire(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; returns None when allowed, else the
        reason it is refused (and then nothing was counted)."""
        if self.total >= self.max_total:
            return "Too many connections to the proxy"
        if self._per_ip[ip] >= self.max_per_ip:
            return "Too many connections from your address"
        self.total += 1
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        count = self._per_ip[ip] - 1
        if count <= 0:
            del self._per_ip[ip]
        else:
            self._per_ip[ip] = count

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def __repr__(self) -> str:
        return f"ConnectionLimiter({self.total}/{self.max_total}, {len(self._per_ip)} addresses)"


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Failed-login delays per (user, client IP).

    After the n-th consecutive failure the next answer for that pair waits
    ``base * 2**(n-1)`` seconds, at most ``maximum``. A success clears the pair;
    failures older than ``window`` seconds are forgotten. ``free`` failures (a
    rule's allowance) cost nothing: the delays start after them.

    The same class counts failures per client IP alone, with ``user=""``.
    """

    def __init__(
        self, base: float, maximum: float, window: float, *, max_entries: int = 100_000
    ) -> None:
        self.base = base
        self.maximum = maximum
        self.window = window
        self.max_entries = max_entries
        self._failures: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def _get(self, key: tuple[str, str], now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last > self.window:
            del self._failures[key]
            return None
        return entry

    def _wanted(self, count: int) -> float:
        if count <= 0:
            return 0.0
        return min(self.maximum, self.base * math.pow(2, min(count - 1, 62)))

    def delay(self, user: str, ip: str, now: float, *, free: int = 0) -> float:
        """Seconds the next login answer for (user, ip) must wait (0: none)."""
        entry = self._get((user, ip), now)
        if entry is None:
            return 0.0
        return max(0.0, entry.last + self._wanted(entry.count - free) - now)

    def failed(self, user: str, ip: str, now: float, *, free: int = 0) -> float:
        """Record a failure; returns the delay before answering it."""
        key = (user, ip)
        entry = self._get(key, now)
        if entry is None:
            entry = _Failures(0, now)
            self._failures[key] = entry
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)
        entry.count += 1
        entry.last = now
        self._failures.move_to_end(key)
        return self.delay(user, ip, now, free=free)

    def succeeded(self, user: str, ip: str) -> None:
        self._failures.pop((user, ip), None)

    def __len__(self) -> int:
        return len(self._failures)

    def __repr__(self) -> str:
        return f"LoginThrottle({len(self._failures)} pairs, base={self.base}s, max={self.maximum}s)"


class KeyedGate:
    """One holder at a time per key; a key's lock exists only while it is held or
    waited for (memory is bounded by the connections doing so)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = trio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)

    def __repr__(self) -> str:
        return f"KeyedGate({len(self._locks)} keys)"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per key (a user): ``rate`` commands per second, bursts of up
    to ``max(1, rate)``. :meth:`take` says how long the caller must wait for its
    token; the bucket is debited at once, so callers queue fairly.

    Buckets that have refilled are forgotten once there are more than
    ``max_keys`` of them.
    """

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: dict[Hashable, _Bucket] = {}

    def take(self, key: Hashable, rate: float, now: float) -> float:
        """Spend one token of ``key``'s bucket; seconds to wait before acting."""
        burst = max(1.0, rate)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now, rate)
            bucket = self._buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        bucket.tokens -= 1.0
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / rate

    def _forget_full(self, now: float, rate: float) -> None:
        burst = max(1.0, rate)
        for key in [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= burst]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        return f"RateLimiter({len(self._buckets)} keys)"
