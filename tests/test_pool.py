"""The pool of logged-in upstream connections (imapproxy.pool), without I/O."""

from __future__ import annotations

from typing import Any, cast

from imapproxy.config import Multiplex, Upstream
from imapproxy.pool import Pooled, UpstreamPool
from imapproxy.upstream import Credentials, UpstreamConnection
from imapproxy.wire.values import Secret


class Conn:
    """Stands in for an UpstreamConnection: only what the pool looks at."""

    def __init__(self) -> None:
        self.closed = False
        self.readable = False

    def quiet(self) -> bool:
        return not self.closed and not self.readable


def entry(pool: UpstreamPool, creds: Credentials, verified: float = 0.0) -> Pooled:
    conn = cast(UpstreamConnection, Conn())
    return Pooled(conn, pool.digest("main", creds), verified)


def creds(user: str = "alice", password: bytes = b"secret", authzid: str = "") -> Credentials:
    return Credentials(user, Secret(password), authzid)


def upstream(trusted: bool = False) -> Upstream:
    data: dict[str, Any] = {"name": "main", "address": "127.0.0.1:143", "tls": "none"}
    data |= {"allow_plaintext": True, "trusted": trusted}
    return Upstream.model_validate(data)


def test_only_the_same_password_takes_a_connection() -> None:
    pool = UpstreamPool(Multiplex(enabled=True))
    key = pool.key(upstream(), creds(), "192.0.2.1")
    kept = entry(pool, creds())
    assert pool.give(key, kept, now=10.0) == []
    assert pool.take(key, pool.digest("main", creds(password=b"wrong")), 11.0) == (None, [])
    assert pool.take(key, pool.digest("main", creds(authzid="bob")), 11.0) == (None, [])
    assert len(pool) == 1  # a wrong password leaves it for the right one
    assert pool.take(key, pool.digest("main", creds()), 12.0) == (kept, [])
    assert (len(pool), pool.reused) == (0, 1)


def test_keys_group_users_and_for_trusted_upstreams_addresses() -> None:
    pool = UpstreamPool(Multiplex(enabled=True))
    assert pool.key(upstream(), creds("Alice"), "192.0.2.1") == pool.key(
        upstream(), creds("alice"), "192.0.2.9"
    )
    assert pool.key(upstream(True), creds(), "192.0.2.1") != pool.key(
        upstream(True), creds(), "192.0.2.9"
    )
    assert pool.digest("main", creds()) != pool.digest("other", creds())
    assert UpstreamPool(Multiplex()).digest("main", creds()) != pool.digest("main", creds())


def test_expiry_bounds_and_staleness() -> None:
    pool = UpstreamPool(
        Multiplex(enabled=True, max_connections_per_user=2, max_connections=3, idle_expiry=60)
    )
    alice = pool.key(upstream(), creds(), "")
    bob = pool.key(upstream(), creds("bob"), "")
    first, second, third = (entry(pool, creds(), 100.0) for _ in range(3))
    assert pool.give(alice, first, 100.0) == []
    assert pool.give(alice, second, 101.0) == []
    assert pool.give(alice, third, 102.0) == [first]  # two per user
    others = [entry(pool, creds("bob"), 100.0) for _ in range(2)]
    assert pool.give(bob, others[0], 103.0) == []
    assert pool.give(bob, others[1], 104.0) == [second]  # three in all: the oldest goes
    # Idle too long: swept; logged in too long ago: never given.
    assert pool.sweep(103.0 + 60.0) == [third, others[0]]
    assert pool.give(alice, entry(pool, creds(), 0.0), 400.0) != []  # past reuse_max_age
    # A connection the server spoke on (a BYE) is stale, met when taking.
    cast(Conn, others[1].conn).readable = True
    found, stale = pool.take(bob, pool.digest("main", creds("bob")), 110.0)
    assert (found, stale) == (None, [others[1]])
    assert len(pool) == 0
    left = entry(pool, creds(), 200.0)
    pool.give(alice, left, 200.0)
    assert pool.drain() == [left]
    assert len(pool) == 0
