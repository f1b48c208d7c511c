"""The part cache through the proxy, against Dovecot (docs/cache.md).

A ``cache`` rule with ``admit_after = 1`` stores what the first FETCH brings; the
second identical FETCH is answered from the cache. Every check of what the
server holds is made on a direct connection.
"""

from __future__ import annotations

import email
import imaplib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from conftest import RunningProxy, dovecot_commands, private_dovecot, proxy_login, start_proxy
from imap_raw import RawImap
from imapclient import IMAPClient
from redis_server import new_redis_server

import imapproxy.logs
from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream
from imapproxy.wire import Frame, Framer, Response, Role
from imapproxy.wire.reader import Literal
from imapproxy.wire.responses import FetchData

RULE = '[[rule]]\nname = "cache everything at once"\ncache = { admit_after = 1 }\n'

#: Every kind of cacheable item, in the forms clients use.
ITEMS = (
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID)]",
    "BODY.PEEK[]<0.1000>",
    "BODY.PEEK[1]<100.50>",
    "BINARY.PEEK[1]",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "INTERNALDATE",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
)


async def cache_proxy(
    nursery: trio.Nursery,
    dovecot: DovecotServer,
    tls: ProxyTls,
    tmp_path: Path,
    rule: str = RULE,
    **options: Any,
) -> RunningProxy:
    rules = tmp_path / "rules.d"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "cache.toml").write_text(rule)
    return await start_proxy(
        nursery,
        tmp_path / "proxy",
        tls,
        [dovecot_upstream(dovecot)],
        rules={"dir": str(rules)},
        **options,
    )


def parsed(responses: list[bytes]) -> dict[int, dict[bytes, object]]:
    """FETCH responses by message, items by key (in whatever order they came)."""
    out: dict[int, dict[bytes, object]] = {}
    for raw in responses:
        framer = Framer(
            Role.CLIENT,
            max_line=10**7,
            max_literal=10**8,
            inline_literal=10**8,
            max_inline_total=10**8,
        )
        framer.receive_data(raw)
        frame = framer.next_event()
        assert isinstance(frame, Frame)
        data = Response.parse(frame).data
        if isinstance(data, FetchData):
            items = out.setdefault(data.number, {})
            for item, value in data.items:
                items[item.key] = value.data if isinstance(value, Literal) else value
    return out


@asynccontextmanager
async def cache_session(
    dovecot: DovecotServer, user: User, tls: ProxyTls, tmp_path: Path, **options: Any
) -> AsyncIterator[RawImap]:
    """A proxy with the cache rule (:func:`cache_proxy`) and a raw client logged in
    to it as ``user``; LOGOUT and shutdown at the end, everything within 30 s."""
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, tls, tmp_path, **options)
        with trio.fail_after(30):
            client = await proxy_login(running, user)
            yield client
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()


async def each_reads(
    running: RunningProxy, users: tuple[User, ...], mailbox: bytes, bodies: dict[str, bytes]
) -> None:
    """Each of ``users`` in turn reads UID 1 of ``mailbox``: their own message."""
    with trio.fail_after(30):
        for user in users:
            client = await proxy_login(running, user)
            await client.command(b"b", b"EXAMINE " + mailbox)
            got = await client.command(b"c", b"UID FETCH 1 (BODY.PEEK[])")
            assert got[0].endswith(bodies[user.name] + b")\r\n"), (user.name, got)
            await client.command(b"z", b"LOGOUT")
            await client.aclose()


async def in_thread(fn: Callable[[], Any]) -> Any:
    with trio.fail_after(120):
        return await trio.to_thread.run_sync(fn)


def folders_of(client: IMAPClient) -> list[str]:
    return [name for flags, _d, name in client.list_folders() if b"\\Noselect" not in flags]


def fetch_everything(client: IMAPClient, *, uid: bool) -> dict[tuple[str, str], Any]:
    """Every item of ITEMS for every message of every folder (EXAMINE only)."""
    client.use_uid = uid
    out: dict[tuple[str, str], Any] = {}
    for folder in folders_of(client):
        client.select_folder(folder, readonly=True)
        for item in ITEMS:
            try:
                out[folder, item] = client.fetch("1:*", [item])
            except Exception as exc:
                out[folder, item] = repr(exc)
    return out


async def test_every_item_is_the_same_cached_and_uncached(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    user = shared_user
    direct_ctx = dovecot.client_ssl_context()

    def direct() -> dict[str, Any]:
        with IMAPClient(dovecot.hostname, port=dovecot.imaps_port, ssl_context=direct_ctx) as c:
            c.login(user.name, user.password)
            return {"uid": fetch_everything(c, uid=True), "seq": fetch_everything(c, uid=False)}

    def proxied(port: int) -> list[dict[str, Any]]:
        ctx = proxy_tls.client_context()
        with IMAPClient("localhost", port=port, ssl_context=ctx) as c:
            c.login(user.name, user.password)
            # The first pass fills the cache, the second is answered by it.
            return [
                {"uid": fetch_everything(c, uid=True), "seq": fetch_everything(c, uid=False)}
                for _ in range(2)
            ]

    expected = await in_thread(direct)
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path)
        cache = running.proxy.cache
        assert cache is not None
        first, second = await in_thread(lambda: proxied(running.implicit_port))
        hits = cache.stats.hits
        running.proxy.shutdown()
    for got in (first, second):
        for form in ("uid", "seq"):
            for key, value in expected[form].items():
                assert got[form][key] == value, (form, key)
    # The second pass came from the cache (items of every message and folder).
    assert hits >= len(ITEMS) * 103


async def test_seen_is_set_by_the_server_and_not_in_examine(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path) as client:
        await client.command(b"b", b"SELECT INBOX")
        unseen = (await client.command(b"c", b"UID SEARCH UNSEEN"))[0].split()[2:]
        first, second = unseen[0], unseen[1]
        # Read-write: BODY[TEXT] (no PEEK) from the cache still sets \Seen upstream,
        # and the client hears of it as from the server.
        peek = await client.command(b"d", b"UID FETCH " + first + b" (BODY.PEEK[TEXT])")
        cached = await client.command(b"e", b"UID FETCH " + first + b" (BODY[TEXT])")
        assert cached[-1] == b"e OK Fetch completed (from the cache)\r\n", cached
        text = peek[0].split(b"}\r\n", 1)[1]
        assert any(line.endswith(text) for line in cached)
        assert any(b"FLAGS (" in line and b"\\Seen" in line for line in cached), cached
        # Read-only (EXAMINE): served, and nothing changes.
        await client.command(b"f", b"EXAMINE INBOX")
        await client.command(b"g", b"UID FETCH " + second + b" (BODY.PEEK[TEXT])")
        quiet = await client.command(b"h", b"UID FETCH " + second + b" (BODY[TEXT])")
        assert quiet[-1] == b"h OK Fetch completed (from the cache)\r\n", quiet
        assert not any(b"\\Seen" in line for line in quiet)
    with trio.fail_after(30):
        _, flags = await dovecot_commands(
            dovecot,
            mail_user,
            b"EXAMINE INBOX",
            b"UID FETCH " + first + b"," + second + b" (FLAGS)",
        )
    by_uid = {line.split(b"UID ")[1].split()[0]: line for line in flags[:-1]}
    assert b"\\Seen" in by_uid[first]
    assert b"\\Seen" not in by_uid[second]


async def test_a_user_never_gets_another_users_part(
    dovecot: DovecotServer, twin_users: tuple[User, User], proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # Same mailbox name, same UID (and maybe the same UIDVALIDITY): other data.
    alice, bob = twin_users
    messages = {}
    for user in twin_users:
        body = f"Subject: for {user.name}\r\n\r\nonly {user.name} may read this\r\n".encode()
        messages[user.name] = body
        with trio.fail_after(30):
            await dovecot_commands(
                dovecot, user, b"CREATE Private", b"APPEND Private {%d+}\r\n" % len(body) + body
            )
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path)
        await each_reads(running, (alice, bob, alice, bob), b"Private", messages)
        running.proxy.shutdown()


async def test_sequence_numbers_follow_an_expunge_by_another_session(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path) as client:
        await client.command(b"b", b"SELECT INBOX")
        for tag in (b"c1", b"c2"):  # fill, then from the cache
            before = await client.command(tag, b"FETCH 2:3 (UID ENVELOPE)")
        assert before[-1] == b"c2 OK Fetch completed (from the cache)\r\n"
        # Another session expunges message 2; this one hears of it at its NOOP.
        await dovecot_commands(
            dovecot,
            mail_user,
            b"SELECT INBOX",
            b"STORE 2 +FLAGS.SILENT (\\Deleted)",
            b"EXPUNGE",
        )
        noop = await client.command(b"d", b"NOOP")
        assert b"* 2 EXPUNGE\r\n" in noop
        after = await client.command(b"e", b"FETCH 2 (UID ENVELOPE)")
        # Message 2 is now the former message 3: its UID and envelope.
        assert after[0].replace(b"* 2 ", b"* 3 ", 1) == before[1], (after, before)


async def test_a_new_uidvalidity_is_never_served_old_data(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path) as client:
        for round_, text in enumerate((b"the first", b"the second")):
            body = b"Subject: x\r\n\r\n" + text + b"\r\n"
            await client.command(b"b", b"CREATE Again")
            await client.send(b"c APPEND Again {%d}\r\n" % len(body))
            await client.read_line()
            await client.send(body + b"\r\n")
            await client.read_until_tagged(b"c")
            await client.command(b"d", b"SELECT Again")
            for tag in (b"e1", b"e2"):
                got = await client.command(tag, b"UID FETCH 1 (BODY.PEEK[TEXT])")
                assert text in got[0], (round_, got)
            await client.command(b"f", b"CLOSE")
            await client.command(b"g", b"DELETE Again")  # the next one: a new UIDVALIDITY


@pytest.mark.parametrize("form", [b"UID FETCH", b"FETCH"])
async def test_flags_come_from_the_server(
    dovecot: DovecotServer,
    mail_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    form: bytes,
) -> None:
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path) as client:
        await client.command(b"b", b"SELECT INBOX")
        await client.command(b"c", form + b" 4 (FLAGS RFC822.SIZE)")
        await client.command(b"d", b"STORE 4 +FLAGS.SILENT (\\Flagged)")
        served = await client.command(b"e", form + b" 4 (FLAGS RFC822.SIZE)")
        assert served[-1] == b"e OK Fetch completed (from the cache)\r\n"
        assert any(b"\\Flagged" in line for line in served), served


async def test_the_disk_tier_survives_a_restart_and_audit_lines_say_hit(
    dovecot: DovecotServer,
    shared_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    key = tmp_path / "cache.key"
    key.write_text(secrets.token_hex(32) + "\n")
    settings = {"memory_bytes": "8MiB", "disk_dir": str(tmp_path / "disk"), "key_file": str(key)}
    fetch = b"UID FETCH 1:5 (UID ENVELOPE BODY.PEEK[HEADER])"
    answers = []
    for run in ("before", "after"):  # a new proxy on the same disk directory
        async with trio.open_nursery() as nursery:
            running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path / run, cache=settings)
            with structlog.testing.capture_logs() as logs, trio.fail_after(30):
                client = await proxy_login(running, shared_user)
                await client.command(b"b", b"EXAMINE INBOX")
                answers.append(await client.command(b"c", fetch))
                await client.command(b"z", b"LOGOUT")
                await client.aclose()
            stats = running.proxy.cache.stats if running.proxy.cache else None
            running.proxy.shutdown()
        lines = [e for e in logs if e.get("event") == "command" and e.get("tag") == "c"]
        assert [line.get("cache") for line in lines] == ["miss" if run == "before" else "hit"]
        if run == "after":
            assert stats is not None
            assert stats.tier_hits["disk"] == 10  # 5 messages x 2 items, none in memory
    assert answers[1][-1] == b"c OK Fetch completed (from the cache)\r\n"
    assert parsed(answers[1][:-1]) == parsed(answers[0][:-1])
    # Mail on disk is encrypted: no header line of the corpus is in any file there.
    subject = next(line for line in answers[0][0].split(b"\r\n") if line.startswith(b"Subject:"))
    for path in (tmp_path / "disk").rglob("*"):
        if path.is_file():
            assert subject not in path.read_bytes()


async def test_what_the_cache_lacks_is_asked_in_one_command_and_merged(
    dovecot: DovecotServer,
    shared_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    user = shared_user
    steps = (
        ([1, 2, 3], ["BODY.PEEK[HEADER]"]),  # fills messages 1-3
        (range(1, 7), ["BODY.PEEK[HEADER]"]),  # 1-3 from the cache, 4-6 from the server
        (range(1, 7), ["ENVELOPE", "BODY.PEEK[HEADER]", "FLAGS"]),  # envelopes, flags asked
        (range(1, 7), ["ENVELOPE", "BODY.PEEK[HEADER]", "FLAGS"]),  # all cached; FLAGS asked
    )

    def run(host: str, port: int, ctx: Any) -> list[Any]:
        with IMAPClient(host, port=port, ssl_context=ctx) as c:
            c.login(user.name, user.password)
            c.select_folder("INBOX", readonly=True)
            return [c.fetch(list(where), items) for where, items in steps]

    expected = await in_thread(
        lambda: run(dovecot.hostname, dovecot.imaps_port, dovecot.client_ssl_context())
    )
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path)
        with structlog.testing.capture_logs() as logs:
            got = await in_thread(
                lambda: run("localhost", running.implicit_port, proxy_tls.client_context())
            )
        running.proxy.shutdown()
    assert got == expected
    fetches = [e.get("cache") for e in logs if e.get("event") == "command" and "cache" in e]
    assert fetches == ["miss", "partial", "partial", "hit"]


@pytest.fixture(scope="module")
def old_dovecot() -> Iterator[DovecotServer]:
    """A Dovecot that announces no ESEARCH (like older servers)."""
    yield from private_dovecot(imap_capability="IMAP4rev1 LITERAL+ IDLE UIDPLUS NAMESPACE")


async def test_without_esearch_the_map_comes_from_a_plain_search(
    old_dovecot: DovecotServer, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    user = old_dovecot.add_user()
    async with cache_session(old_dovecot, user, proxy_tls, tmp_path) as client:
        await client.command(b"b", b"EXAMINE INBOX")
        # "*": which messages only the map can say (UID SEARCH ALL, no ESEARCH).
        first = await client.command(b"c", b"UID FETCH 45:* (ENVELOPE)")
        again = await client.command(b"d", b"UID FETCH 45:* (ENVELOPE)")
        assert again[-1] == b"d OK Fetch completed (from the cache)\r\n"
        assert parsed(again[:-1]) == parsed(first[:-1])


async def test_the_example_rules_as_written(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # cache = true: stored the second time an item is fetched, served the third;
    # Drafts never.
    example = (Path(__file__).parent.parent / "rules" / "80-cache-for-offices.toml").read_text()
    async with cache_session(dovecot, shared_user, proxy_tls, tmp_path, rule=example) as client:
        for mailbox, answers in ((b"INBOX", (False, False, True)), (b"Drafts", (False,) * 3)):
            await client.command(b"b", b"EXAMINE " + mailbox)
            for cached in answers:
                done = (await client.command(b"c", b"UID FETCH 1:2 (BODY.PEEK[1])"))[-1]
                assert done.endswith(b"(from the cache)\r\n") == cached, (mailbox, done)


async def test_a_redis_that_stops_is_a_miss_not_an_error(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # Only the Redis tier: a hit comes from Redis; with Redis gone the server
    # answers, and the client never notices.
    key = tmp_path / "cache.key"
    key.write_text(secrets.token_hex(32))
    server = new_redis_server()
    with server:
        settings = {
            "memory_bytes": 0,
            "redis_url": server.url,
            "redis_password_file": str(server.password_file),
            "key_file": str(key),
        }
        fetch = b"UID FETCH 1:4 (UID BODY.PEEK[HEADER] RFC822.SIZE)"
        async with trio.open_nursery() as nursery:
            running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path, cache=settings)
            with trio.fail_after(30):
                client = await proxy_login(running, shared_user)
                await client.command(b"b", b"EXAMINE INBOX")
                first = await client.command(b"c", fetch)
                second = await client.command(b"d", fetch)
                assert second[-1] == b"d OK Fetch completed (from the cache)\r\n"
                server.stop()
                third = await client.command(b"e", fetch)
                assert third[-1].startswith(b"e OK Fetch completed (")  # the server's
                assert not third[-1].endswith(b"(from the cache)\r\n")
                assert parsed(first) == parsed(second) == parsed(third)
                await client.command(b"z", b"LOGOUT")
                await client.aclose()
            cache = running.proxy.cache
            assert cache is not None
            assert cache.stats.tier_errors["redis"] >= 1
            running.proxy.shutdown()


# -- regressions found in review --------------------------------------------------------


async def test_shared_is_only_for_the_servers_shared_namespaces(
    dovecot: DovecotServer, twin_users: tuple[User, User], proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # The example marks Public/* shared; on this server Public/... is a personal
    # folder (no shared namespace), so each user keeps their own entries -- even
    # when the two folders got the same UIDVALIDITY.
    example = (Path(__file__).parent.parent / "rules" / "80-cache-for-offices.toml").read_text()
    bodies = {}

    async def make(user: User) -> None:
        body = f"Subject: for {user.name}\r\n\r\nonly {user.name} may read this\r\n".encode()
        bodies[user.name] = body
        create = b"APPEND Public/Secret {%d+}\r\n" % len(body) + body
        await dovecot_commands(dovecot, user, b"CREATE Public/Secret", create)

    with trio.fail_after(30):
        async with trio.open_nursery() as both:  # same second: same UIDVALIDITY, often
            for user in twin_users:
                both.start_soon(make, user)
    alice, bob = twin_users
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path, rule=example)
        await each_reads(running, (alice, alice, alice, bob), b"Public/Secret", bodies)
        running.proxy.shutdown()


async def test_imaplib_gets_the_body_in_the_first_response(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # RFC822 from the cache in a read-write mailbox: the server sets \Seen, and
    # its FLAGS go into the proxy's response, not a separate one before it (the
    # common imaplib idiom reads data[0][1]).
    async with trio.open_nursery() as nursery:
        running = await cache_proxy(nursery, dovecot, proxy_tls, tmp_path)
        port = running.implicit_port

        def run() -> list[Any]:
            client = imaplib.IMAP4_SSL("localhost", port, ssl_context=proxy_tls.client_context())
            client.login(mail_user.name, mail_user.password)
            client.select("INBOX")
            number = client.search(None, "UNSEEN")[1][0].split()[0]
            client.fetch(number, "(BODY.PEEK[])")  # fills the cache
            answers = [
                client.fetch(number, "(RFC822)")[1],
                client.fetch(number, "(FLAGS RFC822)")[1],
            ]
            client.logout()
            return answers

        plain, with_flags = await in_thread(run)
        running.proxy.shutdown()
    for data in (plain, with_flags):
        assert isinstance(data[0], tuple), data
        assert email.message_from_bytes(data[0][1])["Subject"]
        assert b"\\Seen" in data[0][0], data[0][0]  # FLAGS: the server set \Seen


async def test_two_items_on_one_entry_and_expunges_during_a_sequence_fetch(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path) as client:
        await client.command(b"b", b"SELECT INBOX")
        await client.command(b"c1", b"UID FETCH 1 (BODY.PEEK[])")  # the whole entry
        twice = b"UID FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[]<10.10>)"
        done = await client.command(b"c2", twice)
        assert done[-1] == b"c2 OK Fetch completed (from the cache)\r\n", done
        # Another session expunges message 1 while this one fetches by sequence
        # number with FLAGS (a round trip upstream): no EXPUNGE inside the FETCH.
        fetch = b"FETCH 2:3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
        await client.command(b"d", fetch)  # fills (and teaches the map)
        await dovecot_commands(
            dovecot, mail_user, b"SELECT INBOX", b"STORE 1 +FLAGS.SILENT (\\Deleted)", b"EXPUNGE"
        )
        during = await client.command(b"e", fetch)
        tagged = during.index(during[-1])
        assert not any(line.endswith(b" EXPUNGE\r\n") for line in during[:tagged]), during


async def test_a_large_streamed_body_is_admitted_on_its_second_fetch(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # cache = true (admit_after = 2) for the corpus's largest message: its body
    # streams through the proxy; the first fetch is only counted (not copied),
    # the second is stored, the third served.
    largest = dovecot.corpus.largest()
    rule = '[[rule]]\nname = "offices"\ncache = true\n'
    fetch = b"UID FETCH %d (BODY.PEEK[])" % largest.uid
    async with cache_session(dovecot, shared_user, proxy_tls, tmp_path, rule=rule) as client:
        await client.command(b"b", b"EXAMINE " + largest.folder.encode())
        answers = [await client.command(b"c%d" % i, fetch) for i in range(3)]
    assert [a[-1].endswith(b"(from the cache)\r\n") for a in answers] == [False, False, True]
    assert parsed(answers[2][:-1]) == parsed(answers[0][:-1])
    assert len(answers[0][0]) > largest.rfc822_size  # the whole body came


async def test_flags_from_the_server_in_cached_responses_are_mapped(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    rule = (
        '[[rule]]\nname = "cache"\ncache = { admit_after = 1 }\n'
        'rewrite.flags = { "$Junk" = "Junk" }\n'
    )
    with trio.fail_after(30):
        await dovecot_commands(dovecot, mail_user, b"SELECT INBOX", b"STORE 5 +FLAGS (Junk)")
    async with cache_session(dovecot, mail_user, proxy_tls, tmp_path, rule=rule) as client:
        await client.command(b"b", b"SELECT INBOX")
        await client.command(b"c", b"UID FETCH 5 (FLAGS ENVELOPE)")
        cached = await client.command(b"d", b"UID FETCH 5 (FLAGS ENVELOPE)")
    assert cached[-1] == b"d OK Fetch completed (from the cache)\r\n"
    assert b"$Junk" in cached[0], cached
    assert b" Junk" not in cached[0].replace(b"$Junk", b""), cached
