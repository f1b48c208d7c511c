"""Connection limits (overall and per client IP) and the failed-login throttle
(a delay that doubles per failure, keyed on user and client IP, forgotten after a
window, in a bounded table). Time is passed in: no sleeps."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from imapproxy.limits import ConnectionLimiter, KeyedGate, LoginThrottle, RateLimiter

PER_IP = "Too many connections from your address"
TOTAL = "Too many connections to the proxy"

# -- ConnectionLimiter -------------------------------------------------------------

#: (operation, ip, what acquire answers or None for release, repr afterwards)
#: with max_total=3, max_per_ip=2.
TRANSCRIPT = [
    ("acquire", "10.0.0.1", None, "ConnectionLimiter(1/3, 1 addresses)"),
    ("acquire", "10.0.0.1", None, "ConnectionLimiter(2/3, 1 addresses)"),
    ("acquire", "10.0.0.1", PER_IP, "ConnectionLimiter(2/3, 1 addresses)"),
    ("acquire", "10.0.0.2", None, "ConnectionLimiter(3/3, 2 addresses)"),
    ("acquire", "10.0.0.3", TOTAL, "ConnectionLimiter(3/3, 2 addresses)"),
    ("acquire", "10.0.0.1", TOTAL, "ConnectionLimiter(3/3, 2 addresses)"),
    ("release", "10.0.0.2", None, "ConnectionLimiter(2/3, 1 addresses)"),
    ("acquire", "10.0.0.3", None, "ConnectionLimiter(3/3, 2 addresses)"),
    ("release", "10.0.0.1", None, "ConnectionLimiter(2/3, 2 addresses)"),
    ("acquire", "10.0.0.1", None, "ConnectionLimiter(3/3, 2 addresses)"),
    ("release", "10.0.0.1", None, "ConnectionLimiter(2/3, 2 addresses)"),
    ("release", "10.0.0.1", None, "ConnectionLimiter(1/3, 1 addresses)"),
    ("release", "10.0.0.3", None, "ConnectionLimiter(0/3, 0 addresses)"),
]


def test_connection_limiter_transcript() -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_ip=2)
    assert repr(limiter) == "ConnectionLimiter(0/3, 0 addresses)"
    for step, (operation, ip, answer, summary) in enumerate(TRANSCRIPT):
        if operation == "acquire":
            assert limiter.acquire(ip) == answer, step
        else:
            limiter.release(ip)
        assert repr(limiter) == summary, step


def test_connections_from() -> None:
    limiter = ConnectionLimiter(max_total=10, max_per_ip=5)
    assert limiter.connections_from("192.0.2.1") == 0
    for _ in range(3):
        assert limiter.acquire("192.0.2.1") is None
    assert limiter.acquire("2001:db8::1") is None
    assert limiter.connections_from("192.0.2.1") == 3
    assert limiter.connections_from("2001:db8::1") == 1
    assert limiter.connections_from("192.0.2.2") == 0
    assert limiter.total == 4
    # Asking about an address does not start counting it.
    assert repr(limiter) == "ConnectionLimiter(4/10, 2 addresses)"


@settings(max_examples=200, deadline=None)
@given(
    max_total=st.integers(1, 6),
    max_per_ip=st.integers(1, 6),
    steps=st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c"])), max_size=40),
)
def test_connection_limiter_matches_a_counter(
    max_total: int, max_per_ip: int, steps: list[tuple[bool, str]]
) -> None:
    """Random acquires and releases (of held connections only) against a Counter."""
    limiter = ConnectionLimiter(max_total, max_per_ip)
    held: Counter[str] = Counter()
    for acquire, ip in steps:
        if acquire:
            expected = (
                TOTAL if held.total() >= max_total else PER_IP if held[ip] >= max_per_ip else None
            )
            assert limiter.acquire(ip) == expected
            if expected is None:
                held[ip] += 1
        elif held[ip]:
            limiter.release(ip)
            held[ip] -= 1
        assert limiter.total == held.total()
        assert all(limiter.connections_from(a) == held[a] for a in "abc")
        addresses = sum(1 for a in "abc" if held[a])
        assert (
            repr(limiter) == f"ConnectionLimiter({held.total()}/{max_total}, {addresses} addresses)"
        )


# -- LoginThrottle -----------------------------------------------------------------


def throttle(**overrides: float) -> LoginThrottle:
    settings = {"base": 1.0, "maximum": 30.0, "window": 900.0, **overrides}
    return LoginThrottle(settings["base"], settings["maximum"], settings["window"])


def test_delay_doubles_per_failure_up_to_the_maximum() -> None:
    limits = throttle()
    now = 1000.0
    delays = []
    for _ in range(8):
        delays.append(limits.failed("alice", "192.0.2.1", now))
        now += 60.0  # long after the delay, well inside the window
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("base", "maximum", "expected"),
    [
        (0.5, 10.0, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]),
        (2.0, 2.0, [2.0] * 6),
        (3.0, 100.0, [3.0, 6.0, 12.0, 24.0, 48.0, 96.0]),
    ],
)
def test_delay_is_base_times_two_to_the_failures_minus_one(
    base: float, maximum: float, expected: list[float]
) -> None:
    limits = throttle(base=base, maximum=maximum)
    assert [limits.failed("bob", "192.0.2.1", 10.0 * i) for i in range(6)] == expected


def test_free_failures_cost_nothing_then_the_delay_doubles() -> None:
    limits = throttle()
    delays = [limits.failed("", "192.0.2.1", 60.0 * i, free=3) for i in range(6)]
    assert delays == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0]
    assert limits.delay("", "192.0.2.1", 300.0, free=3) == 4.0


def test_delay_counts_down_from_the_last_failure() -> None:
    limits = throttle()
    assert limits.delay("alice", "192.0.2.1", 100.0) == 0.0
    for now in (100.0, 100.5):
        limits.failed("alice", "192.0.2.1", now)
    # Second failure at 100.5: the next answer waits 2 s from then.
    assert limits.delay("alice", "192.0.2.1", 100.5) == 2.0
    assert limits.delay("alice", "192.0.2.1", 101.0) == 1.5
    assert limits.delay("alice", "192.0.2.1", 102.5) == 0.0
    assert limits.delay("alice", "192.0.2.1", 500.0) == 0.0
    assert limits.failed("alice", "192.0.2.1", 500.0) == 4.0  # still counted


def test_delay_is_per_user_and_ip() -> None:
    limits = throttle()
    for i in range(4):
        limits.failed("alice", "192.0.2.1", 100.0 + i)
    assert limits.delay("alice", "192.0.2.1", 103.0) == 8.0
    assert limits.delay("bob", "192.0.2.1", 103.0) == 0.0  # same office, other user
    assert limits.delay("alice", "198.51.100.7", 103.0) == 0.0  # same user, other address
    assert limits.failed("alice", "198.51.100.7", 103.0) == 1.0
    assert limits.failed("bob", "192.0.2.1", 103.0) == 1.0
    assert len(limits) == 3


def test_success_clears_the_pair_only() -> None:
    limits = throttle()
    for i in range(3):
        limits.failed("alice", "192.0.2.1", float(i))
        limits.failed("alice", "192.0.2.9", float(i))
    limits.succeeded("alice", "192.0.2.1")
    assert limits.delay("alice", "192.0.2.1", 2.0) == 0.0
    assert limits.failed("alice", "192.0.2.1", 3.0) == 1.0  # starts over
    assert limits.delay("alice", "192.0.2.9", 2.0) == 4.0
    limits.succeeded("nobody", "192.0.2.1")  # not known: nothing to clear
    assert len(limits) == 2


def test_failures_are_forgotten_after_the_window() -> None:
    limits = throttle(window=60.0, maximum=1000.0)
    for i in range(5):
        limits.failed("alice", "192.0.2.1", float(i))  # last failure at 4
    # At exactly the window the failures still count; just after, they are gone.
    assert limits.delay("alice", "192.0.2.1", 64.0) == 0.0
    assert len(limits) == 1
    assert limits.failed("alice", "192.0.2.1", 64.0) == 32.0
    assert limits.failed("alice", "192.0.2.1", 64.0 + 60.0 + 0.001) == 1.0
    limits.failed("bob", "192.0.2.1", 200.0)
    assert limits.delay("bob", "192.0.2.1", 260.5) == 0.0
    assert len(limits) == 1  # bob's entry went when it was asked about


def test_window_restarts_with_each_failure() -> None:
    limits = throttle(window=60.0)
    for now in (0.0, 50.0, 100.0, 150.0):
        delay = limits.failed("alice", "192.0.2.1", now)
    assert delay == 8.0  # never 60 s without a failure


def test_table_is_bounded_and_evicts_the_oldest() -> None:
    limits = LoginThrottle(1.0, 30.0, 900.0, max_entries=3)
    for i, user in enumerate(["a", "b", "c"]):
        limits.failed(user, "192.0.2.1", float(i))
    limits.failed("a", "192.0.2.1", 3.0)  # a failed most recently now
    limits.failed("d", "192.0.2.1", 4.0)
    assert len(limits) == 3
    assert limits.delay("b", "192.0.2.1", 4.0) == 0.0  # evicted: the oldest
    assert limits.delay("a", "192.0.2.1", 4.0) == 1.0  # 2 s from 3.0
    assert limits.delay("c", "192.0.2.1", 4.0) == 0.0  # 1 s from 2.0, over
    assert limits.failed("c", "192.0.2.1", 4.0) == 2.0  # still counted
    assert limits.delay("d", "192.0.2.1", 4.0) == 1.0
    for i in range(100):
        limits.failed(f"user{i}", "192.0.2.1", 5.0)
    assert len(limits) == 3


def test_many_failures_do_not_overflow() -> None:
    limits = throttle()
    for i in range(2000):
        delay = limits.failed("mallory", "203.0.113.5", float(i))
    assert delay == 30.0


def test_repr() -> None:
    limits = throttle(base=0.5)
    assert repr(limits) == "LoginThrottle(0 pairs, base=0.5s, max=30.0s)"
    limits.failed("alice", "192.0.2.1", 0.0)
    limits.failed("bob", "192.0.2.1", 0.0)
    limits.failed("bob", "192.0.2.1", 1.0)
    assert repr(limits) == "LoginThrottle(2 pairs, base=0.5s, max=30.0s)"


# -- KeyedGate: one login attempt at a time per (user, client IP) ----------------------


async def test_gate_holds_one_attempt_per_key_at_a_time() -> None:
    gate = KeyedGate()
    inside: list[str] = []
    first_in, release = trio.Event(), trio.Event()

    async def first() -> None:
        async with gate.hold(("alice", "192.0.2.1")):
            inside.append("first")
            first_in.set()
            await release.wait()
            inside.remove("first")

    async def second() -> None:
        async with gate.hold(("alice", "192.0.2.1")):
            assert inside == []  # the first one is out before the second is in
            inside.append("second")
            inside.remove("second")

    async def other_pair() -> None:
        async with gate.hold(("alice", "198.51.100.7")):
            assert inside == ["first"]  # another pair does not wait for alice's

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await first_in.wait()
            nursery.start_soon(second)
            await other_pair()
            await trio.testing.wait_all_tasks_blocked()
            assert len(gate) == 1  # alice's key, held and waited for
            release.set()
    assert len(gate) == 0  # keys go when nobody holds or waits
    assert repr(gate) == "KeyedGate(0 keys)"


async def test_gate_key_released_on_cancellation() -> None:
    gate = KeyedGate()
    with trio.move_on_after(0):
        async with gate.hold("k"):
            await trio.sleep_forever()
    assert len(gate) == 0
    async with gate.hold("k"):
        assert len(gate) == 1


# -- RateLimiter: a rule's commands per second per user --------------------------------


def test_rate_limiter_allows_a_burst_then_spaces_commands() -> None:
    limiter = RateLimiter()
    waits = [limiter.take("alice", 2.0, 10.0) for _ in range(5)]
    # Two at once (the burst), then one every half second, queued fairly.
    assert waits == [0.0, 0.0, 0.5, 1.0, 1.5]
    assert limiter.take("bob", 2.0, 10.0) == 0.0  # another user has its own bucket
    # After a quiet while the bucket is full again, never fuller.
    assert limiter.take("alice", 2.0, 100.0) == 0.0
    assert limiter.take("alice", 2.0, 100.0) == 0.0
    assert limiter.take("alice", 2.0, 100.0) == 0.5


def test_rate_limiter_below_one_per_second_and_bounded() -> None:
    limiter = RateLimiter(max_keys=3)
    assert limiter.take("a", 0.5, 0.0) == 0.0
    assert limiter.take("a", 0.5, 0.0) == 2.0
    for key in ("b", "c"):
        limiter.take(key, 0.5, 0.0)
    # Full buckets are forgotten when the table is full; "a" still owes tokens.
    limiter.take("d", 0.5, 10.0)
    assert len(limiter) <= 3
    assert repr(limiter).startswith("RateLimiter(")
