"""The part cache's storage: the memory tier (budget, LFU, expiry), admission, the
encrypted disk tier (restart, tampering, another key), the Redis tier against a real
``redis-server`` with AUTH (and taken away mid-run), promotion, dropping a mailbox,
counters, and the ``[cache]`` section of the configuration."""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest
import structlog
import trio
from hypothesis import given
from hypothesis import strategies as st
from redis_server import RedisServer, new_redis_server

from imapproxy.__main__ import main
from imapproxy.cache import CacheKey, CacheSettings, PartCache
from imapproxy.cache.store import REDIS_BACKOFF, WARNING_INTERVAL
from imapproxy.cache.tiers import ENTRY_OVERHEAD
from imapproxy.config import ConfigError, parse_config


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the module (tests that stop it start their own)."""
    server = new_redis_server()
    with server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, not started: for tests that stop it."""
    server = new_redis_server()
    try:
        yield server
    finally:
        server.close()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "cache.key"
    path.write_text(os.urandom(32).hex() + "\n")
    return path


def key(uid: int = 1, item: bytes = b"BODY[1]", **where: Any) -> CacheKey:
    fields: dict[str, object] = {
        "upstream": "main",
        "owner": "alice@example.com",
        "mailbox": "INBOX",
        "uidvalidity": 7,
        "uid": uid,
        "item": item,
    }
    fields.update(where)
    return CacheKey(**fields)  # type: ignore[arg-type]


def disk(tmp_path: Path, key_file: Path, **extra: Any) -> CacheSettings:
    return CacheSettings(
        memory_bytes=extra.pop("memory_bytes", 0),
        disk_dir=tmp_path / "disk",
        key_file=key_file,
        **extra,
    )


def redis_settings(server: RedisServer, key_file: Path, **extra: Any) -> CacheSettings:
    return CacheSettings(
        memory_bytes=extra.pop("memory_bytes", 0),
        redis_url=server.url,
        redis_password_file=server.password_file,
        key_file=key_file,
        **extra,
    )


# -- memory ------------------------------------------------------------------------


async def test_memory_round_trip_and_misses() -> None:
    cache = PartCache(CacheSettings(memory_bytes=2000))
    assert await cache.get(key()) is None
    await cache.put(key(), b"part one")
    assert await cache.get(key()) == b"part one"
    assert await cache.get(key(item=b"BODY[2]")) is None
    assert await cache.get(key(uidvalidity=8)) is None
    assert await cache.get(key(owner="")) is None
    assert cache.tiers == ("memory",)
    assert repr(cache) == f"<PartCache memory 1 entries, {8 + ENTRY_OVERHEAD} of 2000 bytes>"
    await cache.aclose()


async def test_memory_evicts_the_least_frequently_used_within_its_budget() -> None:
    budget = 3 * (100 + ENTRY_OVERHEAD)
    cache = PartCache(CacheSettings(memory_bytes=budget))
    a, b, c, d = (key(uid) for uid in (1, 2, 3, 4))
    for k in (a, b, c):
        await cache.put(k, bytes(100))
    for _ in range(3):
        assert await cache.get(a) is not None
        assert await cache.get(b) is not None
    await cache.put(d, bytes(100))  # c, never read, goes
    found = await cache.get_many([a, b, c, d])
    assert set(found) == {a, b, d}
    assert cache.stats.evictions == 1
    assert f"{budget} of {budget} bytes" in repr(cache)


async def test_memory_refuses_a_value_over_its_budget() -> None:
    cache = PartCache(CacheSettings(memory_bytes=100 + ENTRY_OVERHEAD))
    await cache.put(key(1), bytes(60))
    await cache.put(key(2), bytes(101))
    assert await cache.get(key(2)) is None
    assert await cache.get(key(1)) == bytes(60)  # not pushed out for nothing
    assert cache.stats.bytes_stored == 60


async def test_memory_entries_expire_by_the_clock() -> None:
    clock = Clock()
    cache = PartCache(CacheSettings(memory_bytes=10_000, ttl=3600), clock=clock)
    await cache.put(key(1), b"short", ttl=10)
    await cache.put(key(2), b"default")
    clock.now += 9.9
    assert await cache.get(key(1)) == b"short"
    clock.now += 0.1
    assert await cache.get(key(1)) is None
    clock.now += 3600 - 10.0 - 0.001
    assert await cache.get(key(2)) == b"default"
    clock.now += 0.001
    assert await cache.get(key(2)) is None
    await cache.put(key(3), b"never", ttl=0)
    assert await cache.get(key(3)) is None


# -- admission ---------------------------------------------------------------------


def test_admission_counts_fetches_within_the_window() -> None:
    clock = Clock()
    cache = PartCache(CacheSettings(memory_bytes=10_000), clock=clock)
    assert cache.admit(key(1), after=1, window=10)
    assert cache.admit(key(1), after=0, window=10)
    assert [cache.admit(key(2), after=3, window=10) for _ in range(3)] == [False, False, True]
    spread = []
    for _ in range(4):
        spread.append(cache.admit(key(3), after=2, window=10))
        clock.now += 11
    assert spread == [False, False, False, False]
    clock.now += 100
    assert not cache.admit(key(3), after=2, window=10)
    clock.now += 10
    assert cache.admit(key(3), after=2, window=10)  # 10 s apart: within the window


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=30),
    after=st.integers(min_value=2, max_value=5),
    window=st.integers(min_value=1, max_value=40),
)
def test_admission_is_a_sliding_window(gaps: list[int], after: int, window: int) -> None:
    clock = Clock()
    cache = PartCache(CacheSettings(memory_bytes=10_000), clock=clock)
    times: list[float] = []
    for gap in gaps:
        clock.now += gap
        times.append(clock.now)
        recent = [t for t in times if clock.now - t <= window]
        assert cache.admit(key(), after=after, window=window) == (len(recent) >= after)


# -- disk --------------------------------------------------------------------------


async def test_disk_round_trip_survives_a_restart(tmp_path: Path, key_file: Path) -> None:
    with trio.fail_after(10):
        first = PartCache(disk(tmp_path, key_file))
        await first.put(key(1), b"envelope")
        await first.put(key(2), b"x" * 100_000)  # a file of its own, not in SQLite
        assert await first.get(key(1)) == b"envelope"
        await first.aclose()
        second = PartCache(disk(tmp_path, key_file))
        found = await second.get_many([key(1), key(2), key(3)])
        assert found == {key(1): b"envelope", key(2): b"x" * 100_000}
        assert second.stats.tier_hits == {"disk": 2}
        await second.aclose()


async def test_disk_holds_neither_plaintext_nor_names(tmp_path: Path, key_file: Path) -> None:
    small = b"Subject: the merger plan, strictly confidential\r\n"
    large = small * 2000  # beyond diskcache's 32 KiB: stored as a file
    where: dict[str, Any] = {"owner": "carol@example.com", "mailbox": "Projects/Merger"}
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file))
        await cache.put(key(1, **where), small)
        await cache.put(key(2, **where), large)
        stored = b"".join(
            path.read_bytes() for path in (tmp_path / "disk").rglob("*") if path.is_file()
        )
        assert len(stored) > len(large)
        for secret in (small[:20], b"merger plan", b"carol@example", b"Projects/Merger"):
            assert secret not in stored
        assert (tmp_path / "disk").stat().st_mode & 0o077 == 0
        await cache.aclose()


def tamper(directory: Path, change: dict[str, str] | None = None) -> list[str]:
    """Flip the last bit of every sealed value, or (``change``) move values to other
    names; returns the stored names."""
    with diskcache.Cache(str(directory)) as store:
        names = sorted(store)
        values = {name: store[name] for name in names}
        for name in names:
            if change is None:
                value = values[name]
                store[name] = value[:-1] + bytes([value[-1] ^ 1])
            else:
                store[change[name]] = values[name]
    return names


async def test_disk_tampered_entry_is_a_miss(tmp_path: Path, key_file: Path) -> None:
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file))
        await cache.put(key(1), b"small part")
        await cache.put(key(2), b"y" * 50_000)
        tamper(tmp_path / "disk")
        with structlog.testing.capture_logs() as logs:
            assert await cache.get_many([key(1), key(2)]) == {}
        assert cache.stats.tier_errors == {"disk": 2}
        assert [(log["event"], log["tier"], log["failures"]) for log in logs] == [
            ("cache tier failed", "disk", 2)
        ]
        assert not any((tmp_path / "disk").rglob("*.val"))  # the bad entries are gone
        await cache.aclose()


async def test_disk_entry_moved_to_another_name_does_not_open(
    tmp_path: Path, key_file: Path
) -> None:
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file))
        await cache.put(key(1), b"alice's part")
        await cache.put(key(2), b"another part")
        with diskcache.Cache(str(tmp_path / "disk")) as store:
            first, second = sorted(store)
        tamper(tmp_path / "disk", {first: second, second: first})
        assert await cache.get_many([key(1), key(2)]) == {}
        assert cache.stats.tier_errors == {"disk": 2}
        await cache.aclose()


async def test_disk_with_another_key_is_a_miss(tmp_path: Path, key_file: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text(os.urandom(32).hex())
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file))
        await cache.put(key(), b"part")
        await cache.aclose()
        stranger = PartCache(disk(tmp_path, other))
        assert await stranger.get(key()) is None
        assert stranger.stats.snapshot()["tier_errors"] == {"disk": 0}
        assert stranger.stats.misses == 1
        await stranger.aclose()


async def test_disk_skips_a_value_over_its_budget(tmp_path: Path, key_file: Path) -> None:
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file, disk_bytes=64 * 1024))
        await cache.put(key(1), bytes(64 * 1024))
        assert await cache.get(key(1)) is None
        assert cache.stats.bytes_stored == 0
        assert cache.stats.tier_errors == {"disk": 0}
        await cache.aclose()


async def test_disk_failure_is_a_miss_and_warns_once_a_minute(
    tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file, memory_bytes=10_000), clock=clock)
        assert cache._disk is not None

        def broken(*args: object) -> Any:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(cache._disk, "get_many", broken)
        monkeypatch.setattr(cache._disk, "put_many", broken)
        with structlog.testing.capture_logs() as logs:
            await cache.put(key(1, mailbox="Secret Project"), b"kept in memory")
            assert await cache.get(key(2)) is None
            clock.now += WARNING_INTERVAL - 1
            assert await cache.get(key(3)) is None
            clock.now += 1
            assert await cache.get(key(4)) is None
            assert await cache.get(key(1, mailbox="Secret Project")) == b"kept in memory"
        assert cache.stats.tier_errors == {"memory": 0, "disk": 4}
        assert [(log["log_level"], log["tier"], log["failures"]) for log in logs] == [
            ("warning", "disk", 1),
            ("warning", "disk", 3),
        ]
        assert logs[0]["error"] == "OSError: [Errno 28] No space left on device"
        assert "Secret" not in repr(logs)
        assert cache.stats.bytes_stored == len(b"kept in memory")
        await cache.aclose()


# -- promotion, batching, dropping -------------------------------------------------


async def test_disk_hit_is_promoted_to_memory(tmp_path: Path, key_file: Path) -> None:
    with trio.fail_after(10):
        writer = PartCache(disk(tmp_path, key_file))
        await writer.put(key(), b"promoted")
        await writer.aclose()
        cache = PartCache(disk(tmp_path, key_file, memory_bytes=10_000))
        assert await cache.get(key()) == b"promoted"
        assert await cache.get(key()) == b"promoted"
        assert cache.stats.tier_hits == {"memory": 1, "disk": 1}
        await cache.aclose()


async def test_get_many_asks_each_tier_once(
    tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        cache = PartCache(disk(tmp_path, key_file, memory_bytes=10_000))
        keys = [key(uid) for uid in range(1, 6)]
        await cache.put_many([(keys[0], b"1"), (keys[1], b"2"), (keys[2], b"3")])
        assert cache._memory is not None
        cache._memory.drop_mailbox(keys[0].mailbox_id)  # now on disk only
        await cache.put(keys[3], b"4")
        assert cache._disk is not None
        disk_calls: list[int] = []
        get_many = cache._disk.get_many

        def counted(names: list[str]) -> object:
            disk_calls.append(len(names))
            return get_many(names)

        monkeypatch.setattr(cache._disk, "get_many", counted)
        found = await cache.get_many([*keys, keys[0]])
        assert found == {keys[0]: b"1", keys[1]: b"2", keys[2]: b"3", keys[3]: b"4"}
        assert disk_calls == [4]  # one call for the four keys memory lacked
        assert await cache.get_many(keys[:4]) == found
        assert disk_calls == [4]  # promoted: memory has them all
        snapshot = cache.stats.snapshot()
        assert snapshot == {
            "hits": 8,
            "misses": 1,
            "bytes_served": 8,
            "bytes_stored": 4,
            "bytes_saved": 0,
            "evictions": 0,
            "tier_hits": {"memory": 5, "disk": 3},
            "tier_errors": {"memory": 0, "disk": 0},
        }
        await cache.aclose()


async def test_drop_mailbox_in_every_tier(
    tmp_path: Path, key_file: Path, redis_server: RedisServer
) -> None:
    settings = CacheSettings(
        memory_bytes=10_000,
        disk_dir=tmp_path / "disk",
        redis_url=redis_server.url,
        redis_password_file=redis_server.password_file,
        key_file=key_file,
    )
    dropped = [key(1), key(2, uidvalidity=8), key(3, item=b"ENVELOPE")]
    kept = [key(4, mailbox="Sent"), key(5, owner="bob@example.com"), key(6, upstream="other")]
    with trio.fail_after(10):
        cache = PartCache(settings)
        await cache.put_many([(k, b"value %d" % k.uid) for k in dropped + kept])
        await cache.drop_mailbox("main", "alice@example.com", "INBOX")
        assert set(await cache.get_many(dropped + kept)) == set(kept)
        for only in ({"redis_url": None, "redis_password_file": None}, {"disk_dir": None}):
            tier = PartCache(settings.model_copy(update={"memory_bytes": 0, **only}))
            assert set(await tier.get_many(dropped + kept)) == set(kept), tier.tiers
            await tier.aclose()
        await cache.drop_mailbox("main", "nobody", "INBOX")  # nothing there: no error
        assert cache.stats.tier_errors == {"memory": 0, "disk": 0, "redis": 0}
        await cache.aclose()


# -- redis -------------------------------------------------------------------------


async def test_redis_round_trip_with_auth(key_file: Path, redis_server: RedisServer) -> None:
    value = b"From: carol@example.com\r\nSubject: quarterly numbers\r\n"
    with redis_server.client() as client:
        client.flushdb()  # only this test's entries below
    with trio.fail_after(10):
        cache = PartCache(redis_settings(redis_server, key_file))
        await cache.put(key(mailbox="Finance/Q3"), value, ttl=60)
        assert await cache.get(key(mailbox="Finance/Q3")) == value
        assert await cache.get(key(mailbox="Finance/Q4")) is None
        assert cache.stats.tier_hits == {"redis": 1}
        assert cache.stats.tier_errors == {"redis": 0}
        await cache.aclose()
    with redis_server.client() as client:
        names = client.keys("imapproxy:*")
        stored = b"".join(client.get(n) or b"" for n in names if n.startswith(b"imapproxy:cache:"))
        ttls = [client.ttl(n) for n in names]
    assert names
    assert all(b"Finance" not in n and b"alice" not in n for n in names)
    assert b"quarterly" not in stored
    assert stored
    assert all(0 < ttl <= 60 for ttl in ttls)


async def test_redis_hit_is_promoted_to_disk(
    tmp_path: Path, key_file: Path, redis_server: RedisServer
) -> None:
    with trio.fail_after(10):
        shared = PartCache(redis_settings(redis_server, key_file))
        await shared.put(key(), b"from another instance", ttl=120)
        await shared.aclose()
        settings = disk(tmp_path, key_file).model_copy(
            update={
                "redis_url": redis_server.url,
                "redis_password_file": redis_server.password_file,
            }
        )
        cache = PartCache(settings)
        assert await cache.get(key()) == b"from another instance"
        assert cache.stats.tier_hits == {"disk": 0, "redis": 1}
        await cache.aclose()
        local = PartCache(disk(tmp_path, key_file))
        assert await local.get(key()) == b"from another instance"
        await local.aclose()


async def test_redis_with_a_wrong_password_is_a_miss(
    tmp_path: Path, key_file: Path, redis_server: RedisServer
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    settings = redis_settings(redis_server, key_file).model_copy(
        update={"redis_password_file": wrong}
    )
    with trio.fail_after(10):
        cache = PartCache(settings)
        with structlog.testing.capture_logs() as logs:
            await cache.put(key(), b"part")
            assert await cache.get(key()) is None
        assert cache.stats.tier_errors == {"redis": 1}  # then backing off: not asked
        assert "backing off" in repr(cache)
        assert "not-the-password" not in repr(logs) + repr(cache) + repr(settings)
        assert redis_server.password not in repr(logs)
        await cache.aclose()


async def test_redis_taken_away_and_brought_back(
    key_file: Path, own_redis_server: RedisServer
) -> None:
    server = own_redis_server
    clock = Clock()
    server.start()
    with trio.fail_after(15):
        cache = PartCache(redis_settings(server, key_file, memory_bytes=10_000), clock=clock)
        await cache.put(key(1), b"before")
        assert cache._memory is not None
        cache._memory.drop_mailbox(key().mailbox_id)
        assert await cache.get(key(1)) == b"before"
        server.stop()
        with structlog.testing.capture_logs() as logs:
            assert await cache.get(key(2)) is None  # fails: counted, backing off
            await cache.put(key(3), b"memory only")  # Redis not asked
            assert await cache.get(key(4)) is None
        assert cache.stats.tier_errors == {"memory": 0, "redis": 1}
        assert [(log["tier"], log["backoff"]) for log in logs] == [("redis", REDIS_BACKOFF)]
        assert await cache.get(key(3)) == b"memory only"
        server.start()
        clock.now += REDIS_BACKOFF - 0.1
        assert await cache.get(key(5)) is None  # still backing off
        clock.now += 0.1
        await cache.put(key(6), b"after")
        cache._memory.drop_mailbox(key().mailbox_id)
        assert await cache.get(key(6)) == b"after"
        assert await cache.get(key(1)) is None  # no persistence: gone with the server
        assert cache.stats.tier_errors == {"memory": 0, "redis": 1}
        assert cache.stats.tier_hits == {"memory": 1, "redis": 2}
        await cache.aclose()


async def test_redis_that_never_answers_times_out(tmp_path: Path, key_file: Path) -> None:
    password = tmp_path / "password"
    password.write_text("whatever-password")
    with socket.socket() as silent, trio.fail_after(5):
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog; nothing ever answers
        port = silent.getsockname()[1]
        settings = CacheSettings(
            memory_bytes=0,
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_password_file=password,
            redis_timeout=0.05,
            key_file=key_file,
        )
        cache = PartCache(settings)
        with structlog.testing.capture_logs() as logs:
            assert await cache.get(key()) is None
            await cache.put(key(), b"skipped")
        assert cache.stats.tier_errors == {"redis": 1}
        assert "Timeout" in logs[0]["error"]
        await cache.aclose()


# -- configuration -----------------------------------------------------------------

LOOPBACK = """
[[listener]]
address = "127.0.0.1:1143"
tls = "none"

[[upstream]]
name = "main"
address = "127.0.0.1:143"
tls = "none"
"""


def cache_errors(section: str, base: Path | None = None) -> list[str]:
    source = {"source": base / "imapproxy.toml"} if base else {}
    with pytest.raises(ConfigError) as excinfo:
        parse_config(LOOPBACK + "[cache]\n" + textwrap.dedent(section), **source)
    return excinfo.value.errors


def test_cache_section_defaults() -> None:
    settings = parse_config(LOOPBACK).cache
    assert settings == CacheSettings()
    assert (settings.memory_bytes, settings.disk_bytes) == (64 * 1024**2, 1024**3)
    assert (settings.disk_dir, settings.redis_url, settings.key_file) == (None, None, None)
    assert (settings.redis_timeout, settings.ttl) == (0.2, 7 * 86400.0)


def test_cache_section_sizes_durations_and_relative_paths(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "redis.password").write_text("s3cret-password\n")
    config = parse_config(
        LOOPBACK
        + textwrap.dedent(
            """
            [cache]
            memory_bytes = "0"
            disk_dir = "spool"
            disk_bytes = "512 MiB"
            redis_url = "redis://cache.internal:6380/2"
            redis_password_file = "redis.password"
            redis_timeout = "150ms"
            key_file = "cache.key"
            ttl = "1d12h"
            """
        ),
        source=tmp_path / "imapproxy.toml",
    )
    settings = config.cache
    assert settings.memory_bytes == 0
    assert settings.disk_dir == tmp_path / "spool"
    assert settings.disk_bytes == 512 * 1024**2
    assert settings.redis_password_file == tmp_path / "redis.password"
    assert settings.key_file == key_file
    assert (settings.redis_timeout, settings.ttl) == (0.15, 36 * 3600.0)
    assert settings.read_key() == bytes.fromhex(key_file.read_text())
    assert settings.read_redis_password() == "s3cret-password"
    summary = config.summary()
    for line in (
        "\ncache:\n",
        "  memory_bytes = 0 bytes (no memory tier)",
        f"  disk_dir = {tmp_path / 'spool'}",
        "  disk_bytes = 512 MiB (536870912 bytes)",
        "  redis_url = redis://cache.internal:6380/2",
        "  redis_timeout = 0.15s",
        f"  key_file = {key_file}",
        "  ttl = 129600s (1d12h)",
    ):
        assert line in summary, line
    for secret in ("s3cret-password", key_file.read_text().strip()):
        assert secret not in summary + repr(config)


def test_cache_summary_says_which_tiers_are_off() -> None:
    summary = parse_config(LOOPBACK).summary()
    assert "  memory_bytes = 64 MiB (67108864 bytes)" in summary
    assert "  disk_dir = none (no disk tier)" in summary
    assert "  redis_url = none (no Redis tier)" in summary
    assert "  ttl = 604800s (7d)" in summary


def test_documented_cache_example_parses(tmp_path: Path, key_file: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    example = doc.split("## `[cache]`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "redis.password").write_text("password\n")
    key_file.rename(tmp_path / "cache.key")
    example = example.replace("/etc/imapproxy/", f"{tmp_path}/")
    settings = parse_config(LOOPBACK + example.replace("/var/cache/", f"{tmp_path}/")).cache
    assert settings.disk_dir == tmp_path / "imapproxy"
    assert (settings.memory_bytes, settings.disk_bytes) == (256 * 1024**2, 20 * 1024**3)
    assert settings.ttl == 3 * 86400.0


def test_check_prints_the_cache_section(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "imapproxy.toml"
    path.write_text(LOOPBACK + '[cache]\ndisk_dir = "spool"\nkey_file = "cache.key"\n')
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"  disk_dir = {tmp_path / 'spool'}\n" in out
    assert key_file.read_text().strip() not in out


def test_stores_need_the_key_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("password")
    assert cache_errors('disk_dir = "spool"', tmp_path) == [
        "cache.key_file: required with disk_dir: those tiers hold mail, encrypted with this "
        "key; expected a file of 64 hex digits (32 random bytes), as written by: "
        "openssl rand -hex 32"
    ]
    (error,) = cache_errors(
        'disk_dir = "spool"\nredis_url = "redis://127.0.0.1:6379/0"\nredis_password_file = "pw"',
        tmp_path,
    )
    assert error.startswith("cache.key_file: required with disk_dir and redis_url: ")


def test_redis_needs_the_password_file(key_file: Path) -> None:
    assert cache_errors(f'redis_url = "redis://127.0.0.1/0"\nkey_file = "{key_file}"') == [
        "cache.redis_password_file: required with redis_url: a file holding the password "
        "for Redis AUTH (set requirepass in redis.conf)"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            'redis_url = "redis://:hunter22@127.0.0.1:6379/0"',
            "cache.redis_url: the URL holds a password: put it in redis_password_file instead",
        ),
        ('redis_url = "http://127.0.0.1/"', "cache.redis_url: expected a Redis URL such as"),
        ('redis_url = "redis://127.0.0.1:99999/0"', "cache.redis_url: expected a Redis URL"),
        ('redis_url = "redis:///0"', "cache.redis_url: expected a host in the Redis URL"),
        ("memory_bytes = -1", "cache.memory_bytes: must be a positive size, got -1"),
        ('disk_bytes = "0"', "cache.disk_bytes: must be a positive size, got '0'"),
        ('disk_bytes = "lots"', "cache.disk_bytes: expected a size"),
        ("redis_timeout = 0", "cache.redis_timeout: must be a positive duration, got 0"),
        ('ttl = "forever"', "cache.ttl: expected a duration"),
        ('disk_dir = "/nonexistent/imapproxy/cache"', "cache.disk_dir: directory not found:"),
        ('disk_dir = "/etc/hostname"', "cache.disk_dir: not a directory: /etc/hostname"),
        ('key_file = "/nonexistent.key"', "cache.key_file: file not found: /nonexistent.key"),
        ("size = 1", "cache.size: unknown key; expected one of: memory_bytes, disk_dir,"),
    ],
)
def test_cache_section_errors(value: str, message: str) -> None:
    errors = cache_errors(value)
    assert any(error.startswith(message) for error in errors), errors
    assert all("hunter22" not in error for error in errors)


def test_key_and_password_files_are_checked_without_showing_them(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("correct horse battery staple\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    errors = cache_errors(
        f'key_file = "{bad_key}"\nredis_url = "redis://127.0.0.1/0"\n'
        f'redis_password_file = "{empty}"'
    )
    assert errors == [
        f"cache.redis_password_file: {empty}: expected the Redis password on one line",
        f"cache.key_file: {bad_key}: expected 64 hex digits (32 random bytes), as written by: "
        "openssl rand -hex 32",
    ]
