"""Concurrent sharing of upstream connections (issue 6, docs/multiplex.md): several
client sessions of one user on one upstream connection, against Dovecot.

Every test drives real clients through a proxy with ``[multiplex]`` sharing turned
on (the ``mux_proxy`` fixture of tests/conftest.py): IMAPClient in worker threads
where a client library's view is the point, :class:`~imap_raw.RawImap` where the
exact untagged responses a session receives, or what it does *not* read, are. Each
test gets a user of its own whose mailboxes it builds itself, with a known
Message-ID per UID (``<BOX.UID@mux.test>``), so that every FETCH can be checked
against the message it must return. What Dovecot itself holds is read back on a
direct connection, and how many connections the proxy really opened is counted
with ``doveadm who``.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from conftest import RunningProxy, dovecot_commands
from imap_endpoints import Endpoint, quote
from imap_raw import RawImap, caps_of, plain, tagged_status
from imapclient import IMAPClient

from imapproxy.testing import DovecotServer, User

#: Every I/O test ends within this many seconds.
TEST_TIMEOUT = 60

#: How many times ``doveadm who`` is asked before a count is judged (it sees a
#: connection a moment after its login and forgets it a moment after its logout).
WHO_ATTEMPTS = 200


# -- fixtures -----------------------------------------------------------------------------


class Clients:
    """The raw clients of a test, closed after it whatever happened (a client left
    to the garbage collector would fail a later test with a ResourceWarning)."""

    def __init__(self, running: RunningProxy) -> None:
        self.running = running
        self.opened: list[RawImap] = []

    def keep(self, client: RawImap) -> RawImap:
        self.opened.append(client)
        return client

    async def connect(self) -> RawImap:
        """A client of the proxy past its greeting, not logged in."""
        return self.keep(await Endpoint.via(self.running, "implicit").raw())

    async def login(self, user: User) -> RawImap:
        """A client of the proxy logged in as ``user`` (tag ``a``)."""
        client = await self.connect()
        assert_ok(
            await client.command(b"a", b"LOGIN " + quote(user.name) + b" " + quote(user.password))
        )
        return client

    async def aclose(self) -> None:
        for client in self.opened:
            await client.aclose()


@pytest.fixture
async def clients(mux_proxy: RunningProxy) -> AsyncIterator[Clients]:
    """Opens raw clients of ``mux_proxy`` for a test and closes them after it."""
    opened = Clients(mux_proxy)
    try:
        yield opened
    finally:
        await opened.aclose()


# -- mailboxes with a known Message-ID per UID -------------------------------------------


def message_id(box: str, uid: int) -> str:
    """The Message-ID :func:`fill` gives message ``uid`` of ``box``."""
    return f"<{box}.{uid}@mux.test>"


def message(mid: str, body: bytes = b"") -> bytes:
    """A small message (CRLF line ends) with Message-ID ``mid`` and ``body``."""
    head = f"From: a@mux.test\r\nTo: b@mux.test\r\nSubject: {mid}\r\nMessage-ID: {mid}\r\n\r\n"
    return head.encode() + (body or b"hello\r\n")


def fill(dovecot: DovecotServer, user: User, counts: dict[str, int]) -> dict[str, int]:
    """Create ``user``'s mailboxes directly on Dovecot, each with ``counts[box]``
    messages whose UIDs are 1..n and Message-IDs ``message_id(box, uid)``; returns
    each mailbox's UIDVALIDITY."""
    validity = {}
    with direct(dovecot, user) as client:
        for box, count in counts.items():
            if box != "INBOX":
                client.create_folder(box)
            client.multiappend(box, [message(message_id(box, n)) for n in range(1, count + 1)])
            validity[box] = client.folder_status(box, ["UIDVALIDITY"])[b"UIDVALIDITY"]
    return validity


def direct(dovecot: DovecotServer, user: User) -> IMAPClient:
    """An IMAPClient logged in to Dovecot itself, past the proxy."""
    return _logged_in(Endpoint.direct(dovecot, "implicit").imapclient(), user)


def via(running: RunningProxy, user: User) -> IMAPClient:
    """An IMAPClient logged in through the proxy."""
    return _logged_in(Endpoint.via(running, "implicit").imapclient(), user)


def _logged_in(client: IMAPClient, user: User) -> IMAPClient:
    try:
        client.login(user.name, user.password)
    except BaseException:
        client.shutdown()
        raise
    return client


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


# -- counting upstream connections ---------------------------------------------------------


def upstream_connections(dovecot: DovecotServer, user: User) -> int:
    """How many IMAP connections Dovecot has logged in as ``user`` right now."""
    return sum(entry.username == user.name for entry in dovecot.doveadm_who())


def settled_connections(dovecot: DovecotServer, user: User, done: Callable[[int], bool]) -> int:
    """The count of ``user``'s connections once ``done(count)`` holds, or the last
    count after :data:`WHO_ATTEMPTS` asks (for the caller to assert on)."""
    for _ in range(WHO_ATTEMPTS):
        count = upstream_connections(dovecot, user)
        if done(count):
            break
    return count


async def connections_become(dovecot: DovecotServer, user: User, expected: int) -> None:
    """Assert that ``user`` has ``expected`` upstream connections (waiting for
    Dovecot's count to catch up with logins and logouts that just happened)."""
    count = await in_thread(settled_connections, dovecot, user, lambda n: n == expected)
    assert count == expected, f"{user.name} has {count} upstream connections, not {expected}"


# -- reading raw responses -----------------------------------------------------------------

_NUMBERED = re.compile(rb"\* (\d+) ([A-Z]+)")
_UID = re.compile(rb"[( ]UID (\d+)")
_MESSAGE_ID = re.compile(rb"Message-ID: (<[^>\r\n]*>)", re.IGNORECASE)
_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
_CODE = re.compile(rb"\[([A-Z-]+)(?: ([^\]]*))?\]")
_PARENS = re.compile(rb"\(([^)]*)\)")

FETCH_IDS = b"(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
FLAGGED = frozenset({b"\\Flagged"})


def without_recent(flags: Any) -> frozenset[bytes]:
    r"""Message flags less ``\Recent``, which differs with who looked first."""
    return frozenset(flag for flag in flags if flag.lower() != b"\\recent")


@dataclass(frozen=True)
class Fetched:
    """One ``* n FETCH`` response: the sequence number and what it carried (the
    flags less ``\\Recent``, which depends on which connection looked first)."""

    seq: int
    uid: int | None
    mid: str | None
    flags: frozenset[bytes] | None
    modseq: int | None


def fetches(responses: list[bytes]) -> list[Fetched]:
    """The FETCH responses among ``responses``, in order."""
    found = []
    for response in responses:
        numbered = _NUMBERED.match(response)
        if numbered is None or numbered.group(2) != b"FETCH":
            continue
        uid = _UID.search(response)
        mid = _MESSAGE_ID.search(response)
        flags = re.search(rb"FLAGS \(([^)]*)\)", response)
        modseq = _MODSEQ.search(response)
        found.append(
            Fetched(
                seq=int(numbered.group(1)),
                uid=int(uid.group(1)) if uid else None,
                mid=mid.group(1).decode() if mid else None,
                flags=without_recent(flags.group(1).split()) if flags else None,
                modseq=int(modseq.group(1)) if modseq else None,
            )
        )
    return found


def numbered(responses: list[bytes], name: bytes) -> list[int]:
    """The numbers of the ``* n NAME`` responses (``EXPUNGE``, ``EXISTS``), in order."""
    return [
        int(match.group(1))
        for response in responses
        if (match := _NUMBERED.match(response)) is not None and match.group(2) == name
    ]


def check_view(responses: list[bytes], view: list[int], box: str = "INBOX") -> None:
    """Every FETCH in ``responses`` speaks of the message that its sequence number
    means in a session whose view (sequence number - 1 -> UID) is ``view``."""
    for item in fetches(responses):
        assert 1 <= item.seq <= len(view), (item, responses)
        uid = view[item.seq - 1]
        assert item.uid in (None, uid), (item, view, responses)
        assert item.mid in (None, message_id(box, uid)), (item, view, responses)


def assert_ok(responses: list[bytes]) -> None:
    assert tagged_status(responses).startswith(b"OK"), responses


def assert_answered(responses: list[bytes]) -> None:
    """OK or NO: what a command touching a message expunged by another session may
    get (RFC 2180 4.1; Dovecot says ``OK [EXPUNGEISSUED]``), never BAD."""
    assert tagged_status(responses).split()[0] in (b"OK", b"NO"), responses


async def read_until(client: RawImap, wanted: bytes) -> list[bytes]:
    """Responses up to and including the line ``wanted`` (IDLE updates)."""
    seen = []
    while True:
        response = await client.read_response()
        seen.append(response)
        if response == wanted:
            return seen


async def append_raw(client: RawImap, tag: bytes, box: bytes, data: bytes) -> list[bytes]:
    """APPEND with a synchronizing literal, waiting for the ``+``."""
    await client.send(tag + b" APPEND " + box + b" {%d}\r\n" % len(data))
    go_ahead = await client.read_response()
    assert go_ahead.startswith(b"+"), go_ahead
    await client.send(data + b"\r\n")
    return await client.read_until_tagged(tag)


def select_summary(responses: list[bytes]) -> dict[str, object]:
    """What a SELECT / EXAMINE response says about the mailbox, as a test compares it:
    FLAGS, PERMANENTFLAGS, EXISTS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (when sent) and
    the access the tagged OK grants (READ-WRITE or READ-ONLY)."""
    summary: dict[str, object] = {}
    for response in responses:
        if response.startswith(b"* FLAGS ") and (flags := _PARENS.search(response)):
            summary["FLAGS"] = frozenset(flags.group(1).split())
        elif (count := _NUMBERED.match(response)) and count.group(2) == b"EXISTS":
            summary["EXISTS"] = int(count.group(1))
        elif code := _CODE.search(response):
            name, value = code.group(1).decode(), code.group(2) or b""
            if name == "PERMANENTFLAGS":
                summary[name] = frozenset(value.strip(b"()").split())
            elif name in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"):
                summary[name] = int(value)
            elif name in ("READ-WRITE", "READ-ONLY"):
                summary["access"] = name
    return summary


# -- 1. fifty sessions of one user ---------------------------------------------------------

SESSIONS = 50
BOXES = ("INBOX", "Work", "Lists")
#: Messages per mailbox at the start: session i owns message i + 1 of every mailbox
#: (the only one whose flags it changes), so the final flags are known exactly.
MESSAGES = SESSIONS
STEPS = 16
STORED_FLAGS = (b"\\Flagged", b"\\Answered", b"$Mux")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


@dataclass
class Crowd:
    """What the fifty sessions share: the barriers between the phases and what
    each learned, for the checks at the end."""

    validity: dict[str, int]
    started: threading.Event = field(default_factory=threading.Event)
    phase: threading.Barrier = field(
        default_factory=lambda: threading.Barrier(SESSIONS + 1, timeout=45)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (box, uid) -> Message-ID of the messages known to be there (initial ones,
    #: and appended ones whose APPENDUID came back)
    known: dict[tuple[str, int], str] = field(default_factory=dict)
    #: (box, Message-ID, UID from APPENDUID or None, flags) of every APPEND
    appended: list[tuple[str, str, int | None, frozenset[bytes]]] = field(default_factory=list)
    #: (box, uid, Message-ID) of every message a FETCH returned
    seen: list[tuple[str, int, str]] = field(default_factory=list)
    #: (box, uid) -> the flags its owner left it with
    wanted: dict[tuple[str, int], frozenset[bytes]] = field(default_factory=dict)


@dataclass
class FinalView:
    """What one session sees once all the work is done."""

    box: str
    flags: dict[int, frozenset[bytes]]
    uids: dict[int, int]
    selected: dict[bytes, Any]


def crowd_session(running: RunningProxy, user: User, crowd: Crowd, i: int) -> FinalView:
    """Session ``i`` of the fifty (see the test)."""
    rng = random.Random(i)
    try:
        if i:  # the first login teaches the proxy the password; the rest come at once
            assert crowd.started.wait(30), "session 0 did not log in"
        with via(running, user) as client:
            box = BOXES[i % len(BOXES)]
            selected = client.select_folder(box)
            assert selected[b"UIDVALIDITY"] == crowd.validity[box]
            crowd.started.set()
            crowd.phase.wait()  # everyone has a mailbox selected
            crowd.phase.wait()  # the driver counted the upstream connections
            for step in range(STEPS):
                box = crowd_step(client, crowd, rng, box, i, step)
            crowd.phase.wait()  # everyone is done
            crowd.phase.wait()  # the driver read what Dovecot holds
            client.noop()
            flags = {
                uid: without_recent(data[b"FLAGS"])
                for uid, data in client.fetch(client.search("ALL"), ["FLAGS"]).items()
            }
            client.use_uid = False
            seqs = client.search("ALL")
            uids = {seq: data[b"UID"] for seq, data in client.fetch(seqs, ["UID"]).items()}
            client.use_uid = True
            selected = client.select_folder(box)
            return FinalView(box, flags, uids, selected)
    except BaseException:
        crowd.started.set()
        crowd.phase.abort()
        raise


def fetch_by_sequence(client: IMAPClient, crowd: Crowd, rng: random.Random, box: str) -> None:
    wanted = rng.sample(range(1, MESSAGES + 1), 5)  # no expunges: sequence number == UID
    client.use_uid = False
    try:
        got = client.fetch(wanted, ["UID", "ENVELOPE"])
    finally:
        client.use_uid = True
    for seq in wanted:
        assert got[seq][b"UID"] == seq, (box, seq, got[seq])
        mid = got[seq][b"ENVELOPE"].message_id.decode()
        assert mid == message_id(box, seq), (box, seq, mid)
        with crowd.lock:
            crowd.seen.append((box, seq, mid))


def fetch_by_uid(client: IMAPClient, crowd: Crowd, rng: random.Random, box: str) -> None:
    with crowd.lock:
        known = {uid: mid for (b, uid), mid in crowd.known.items() if b == box}
    client.noop()  # as on a direct connection: UIDs are fetched once the session knows them
    wanted = rng.sample(sorted(known), 5)
    got = client.fetch(wanted, ["ENVELOPE"])
    for uid in wanted:
        mid = got[uid][b"ENVELOPE"].message_id.decode()
        assert mid == known[uid], (box, uid, mid)
        with crowd.lock:
            crowd.seen.append((box, uid, mid))


def store_flag(
    client: IMAPClient, crowd: Crowd, rng: random.Random, box: str, *, session: int
) -> None:
    uid = session + 1  # the session's own message
    flag = rng.choice(STORED_FLAGS)
    with crowd.lock:
        had = crowd.wanted.get((box, uid), frozenset())
    add = flag not in had
    client.use_uid = rng.random() < 0.5  # by sequence number (== UID) or by UID
    try:
        got = (client.add_flags if add else client.remove_flags)([uid], [flag])
    finally:
        client.use_uid = True
    assert (flag in got[uid]) == add, (box, uid, flag, add, got)
    with crowd.lock:
        crowd.wanted[(box, uid)] = had | {flag} if add else had - {flag}


def search(client: IMAPClient, crowd: Crowd, rng: random.Random, box: str) -> None:
    n = rng.randint(1, MESSAGES)
    client.use_uid = rng.random() < 0.5
    try:
        found = client.search(["HEADER", "Message-ID", message_id(box, n)])
    finally:
        client.use_uid = True
    assert found == [n], (box, n, found)


def append(
    client: IMAPClient, crowd: Crowd, rng: random.Random, box: str, *, session: int, step: int
) -> None:
    target = rng.choice(BOXES)
    mid = f"<append.{session}.{step}@mux.test>"
    flags = frozenset(rng.choice([(), (b"\\Seen",), (b"\\Flagged", b"$Mux")]))
    reply = client.append(target, message(mid), flags=sorted(flags))
    uid = _APPENDUID.search(reply)
    with crowd.lock:
        crowd.appended.append((target, mid, int(uid.group(1)) if uid else None, flags))
        if uid:
            crowd.known[(target, int(uid.group(1)))] = mid


def noop(client: IMAPClient, *_: Any) -> None:
    client.noop()


def reselect(client: IMAPClient, crowd: Crowd, rng: random.Random, box: str) -> str:
    box = rng.choice(BOXES)
    selected = client.select_folder(box)
    assert selected[b"UIDVALIDITY"] == crowd.validity[box], (box, selected)
    assert selected[b"EXISTS"] >= MESSAGES, (box, selected)
    assert selected[b"READ-WRITE"], (box, selected)
    return box


def crowd_step(
    client: IMAPClient, crowd: Crowd, rng: random.Random, box: str, session: int, step: int
) -> str:
    """One step of a session's work, chosen by ``rng``; returns the mailbox selected after it."""
    action = rng.choice(CROWD_ACTIONS)
    if action is reselect:
        return reselect(client, crowd, rng, box)
    if action is store_flag:
        store_flag(client, crowd, rng, box, session=session)
    elif action is append:
        append(client, crowd, rng, box, session=session, step=step)
    else:
        action(client, crowd, rng, box)
    return box


#: What a session does at a step (weighted by repetition).
CROWD_ACTIONS: tuple[Callable[..., Any], ...] = (
    *[fetch_by_sequence] * 3,
    *[fetch_by_uid] * 2,
    *[store_flag] * 3,
    search,
    append,
    noop,
    reselect,
)


@dataclass
class Truth:
    """What Dovecot holds after the work, per mailbox."""

    flags: dict[str, dict[int, frozenset[bytes]]]
    mids: dict[str, dict[int, str]]
    selected: dict[str, dict[bytes, Any]]


def dovecot_truth(dovecot: DovecotServer, user: User) -> Truth:
    truth = Truth({}, {}, {})
    with direct(dovecot, user) as client:
        for box in BOXES:
            truth.selected[box] = client.select_folder(box)
            data = client.fetch(client.search("ALL"), ["FLAGS", "ENVELOPE"])
            truth.flags[box] = {uid: without_recent(d[b"FLAGS"]) for uid, d in data.items()}
            truth.mids[box] = {uid: d[b"ENVELOPE"].message_id.decode() for uid, d in data.items()}
    return truth


def run_crowd(
    running: RunningProxy, dovecot: DovecotServer, user: User, crowd: Crowd
) -> tuple[list[FinalView], Truth, list[int]]:
    """The fifty sessions in a pool of fifty threads, and this thread between their
    phases: it counts the user's upstream connections while every session has a
    mailbox selected, and reads Dovecot's state once the work is done."""
    counts: list[int] = []
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        futures = [pool.submit(crowd_session, running, user, crowd, i) for i in range(SESSIONS)]
        truth = None
        try:
            crowd.phase.wait()  # all selected
            counts.append(settled_connections(dovecot, user, lambda n: n <= len(BOXES)))
            crowd.phase.wait()
            while crowd.phase.n_waiting < SESSIONS and not crowd.phase.broken:
                counts.append(upstream_connections(dovecot, user))  # still all selected
            crowd.phase.wait()  # the work is done
            truth = dovecot_truth(dovecot, user)
            crowd.phase.wait()
        except threading.BrokenBarrierError:
            pass  # a session failed: its exception is raised below
        except BaseException:
            crowd.phase.abort()
            raise
        errors = [future.exception() for future in futures]
    # A failed session broke the barriers, and the others failed on them: report it.
    for error in sorted(
        filter(None, errors), key=lambda e: isinstance(e, threading.BrokenBarrierError)
    ):
        raise error
    assert truth is not None
    return [future.result() for future in futures], truth, counts


async def test_fifty_sessions_of_one_user_keep_the_invariants_of_direct_connections(
    dovecot: DovecotServer, mux_user: User, mux_proxy: RunningProxy
) -> None:
    """Fifty IMAPClient sessions of one user (a pool of fifty threads) select, fetch
    (by sequence number and by UID), store flags, search, append and NOOP on three
    mailboxes. Every FETCH returns the message its UID names; every STORE changes
    the session's own message only; every APPEND is there once; afterwards every
    session's flags, FLAGS and EXISTS are a direct connection's; and while they are
    all selected Dovecot sees at most one connection per mailbox."""
    with trio.fail_after(TEST_TIMEOUT):
        validity = await in_thread(fill, dovecot, mux_user, dict.fromkeys(BOXES, MESSAGES))
        crowd = Crowd(validity)
        for box in BOXES:
            for uid in range(1, MESSAGES + 1):
                crowd.known[(box, uid)] = message_id(box, uid)
        views, truth, counts = await trio.to_thread.run_sync(
            run_crowd, mux_proxy, dovecot, mux_user, crowd, abandon_on_cancel=True
        )

    # Every FETCH returned the message its UID (= sequence number) names.
    for box, uid, mid in crowd.seen:
        assert truth.mids[box][uid] == mid, (box, uid, mid)
    for box in BOXES:
        for uid in range(1, MESSAGES + 1):
            assert truth.mids[box][uid] == message_id(box, uid)
    # Nothing lost: every appended message is there once, with its flags and UID.
    for box in BOXES:
        mine = [entry for entry in crowd.appended if entry[0] == box]
        assert len(truth.mids[box]) == MESSAGES + len(mine), box
        where = {mid: uid for uid, mid in truth.mids[box].items()}
        assert len(where) == len(truth.mids[box]), f"a Message-ID twice in {box}"
        for _box, mid, appended_uid, flags in mine:
            assert mid in where, (box, mid)
            assert appended_uid in (None, where[mid]), (box, mid, appended_uid, where[mid])
            assert truth.flags[box][where[mid]] == flags, (box, mid)
    # Every STORE changed its own message only, and the flags are what their owners left.
    for box in BOXES:
        for uid in range(1, MESSAGES + 1):
            assert truth.flags[box][uid] == crowd.wanted.get((box, uid), frozenset()), (box, uid)
    # Flags converge: every session sees what a direct connection sees.
    for i, view in enumerate(views):
        box = view.box
        assert view.flags == truth.flags[box], (i, box)
        assert view.uids == dict(enumerate(sorted(truth.flags[box]), start=1)), (i, box)
        for item in (b"FLAGS", b"PERMANENTFLAGS"):
            assert set(view.selected[item]) == set(truth.selected[box][item]), (i, box, item)
        assert view.selected[b"EXISTS"] == truth.selected[box][b"EXISTS"], (i, box)
    # One upstream connection per selected mailbox, not one per session.
    assert max(counts) <= len(BOXES), f"upstream connections while all selected: {counts}"


async def test_concurrent_header_windows_each_get_their_own_messages(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """Twenty sessions on one mailbox fetch different windows of Message-ID headers
    at once (``UID FETCH a:b``, or ``a:*`` for every other session, five rounds):
    the UID FETCHes that wait for the turn together go upstream as one over the
    union of their sets (docs/multiplex.md). Each session gets exactly the
    messages of its own window, with their Message-IDs, and nothing else."""
    messages = 60
    with trio.fail_after(TEST_TIMEOUT):
        await in_thread(fill, dovecot, mux_user, {"INBOX": messages})
        sessions = [await clients.login(mux_user) for _ in range(20)]
        for client in sessions:
            assert_ok(await client.command(b"s", b"EXAMINE INBOX"))

        async def windows(i: int, client: RawImap) -> None:
            for step in range(5):
                low = 1 + (i * 7 + step * 3) % (messages - 10)
                high = low + 9 if i % 2 else messages
                spec = b"%d:%d" % (low, high) if i % 2 else b"%d:*" % low
                tag = b"f%d" % step
                reply = await client.command(
                    tag, b"UID FETCH " + spec + b" (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
                )
                assert_ok(reply)
                got = fetches(reply)
                assert [item.uid for item in got] == list(range(low, high + 1)), (i, spec)
                for item in got:
                    assert item.uid is not None
                    assert item.mid == message_id("INBOX", item.uid), (i, item)

        async with trio.open_nursery() as nursery:
            for i, client in enumerate(sessions):
                nursery.start_soon(windows, i, client)


# -- 2. an EXPUNGE by one session, sequence numbers of another -----------------------------


async def test_an_expunge_by_another_session_is_shown_only_at_the_next_noop(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """A expunges while B fetches, stores and searches by sequence number: B's
    numbers keep meaning the messages they meant, no EXPUNGE reaches B during those
    commands (RFC 9051 7.5.1), its NOOP then brings exactly the one EXPUNGE; and
    Dovecot shows that B's STOREs changed the right messages. Once in turn, once
    with A's expunge racing B's commands."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 8})
    with trio.fail_after(TEST_TIMEOUT):
        a = await clients.login(mux_user)
        b = await clients.login(mux_user)
        for client in (a, b):
            assert_ok(await client.command(b"s", b"SELECT INBOX"))
        view = list(range(1, 9))  # B's view: sequence number - 1 -> UID

        # A expunges message 3; B has not been told when it fetches and stores.
        assert_ok(await a.command(b"a1", b"STORE 3 +FLAGS.SILENT (\\Deleted)"))
        expunge = await a.command(b"a2", b"EXPUNGE")
        assert_ok(expunge)
        assert numbered(expunge, b"EXPUNGE") == [3]
        during: list[bytes] = []
        fetched = await b.command(b"b1", b"FETCH 1:8 " + FETCH_IDS)
        during += fetched
        check_view(fetched, view)
        # Every message B can still read comes back, under B's numbering.
        assert {f.seq for f in fetches(fetched) if f.mid} >= {1, 2, 4, 5, 6, 7, 8}, fetched
        assert_answered(fetched)
        stored = await b.command(b"b2", b"STORE 4 +FLAGS (\\Flagged)")  # UID 4, not UID 5
        during += stored
        assert_ok(stored)
        check_view(stored, view)
        assert any((f.seq, f.flags) == (4, FLAGGED) for f in fetches(stored)), stored
        gone = await b.command(b"b3", b"STORE 3 +FLAGS (\\Seen)")  # the expunged one
        during += gone
        assert_answered(gone)
        check_view(gone, view)
        found = await b.command(b"b4", b'SEARCH HEADER Message-ID "<INBOX.5@mux.test>"')
        during += found
        assert b"* SEARCH 5\r\n" in found, found
        flagged = await b.command(b"b5", b"SEARCH FLAGGED")
        during += flagged
        assert b"* SEARCH 4\r\n" in flagged, flagged
        assert numbered(during, b"EXPUNGE") == [], during
        assert all(n >= len(view) for n in numbered(during, b"EXISTS")), during

        told = await b.command(b"b6", b"NOOP")
        assert_ok(told)
        assert numbered(told, b"EXPUNGE") == [3], told
        view.remove(3)
        after = await b.command(b"b7", b"FETCH 3:4 " + FETCH_IDS)
        check_view(after, view)
        assert [(f.seq, f.uid) for f in fetches(after) if f.mid] == [(3, 4), (4, 5)], after

        # Again with A's expunge (of UID 6, B's 5) racing B's sequence-number commands.
        during = []

        async def expunge_six() -> None:
            assert_ok(await a.command(b"a3", b"UID STORE 6 +FLAGS.SILENT (\\Deleted)"))
            assert_ok(await a.command(b"a4", b"EXPUNGE"))

        async def fetch_and_store() -> None:
            for tag, command in (
                (b"b8", b"FETCH 1:7 " + FETCH_IDS),
                (b"b9", b"STORE 5 +FLAGS (\\Answered)"),  # UID 6, being expunged
                (b"b10", b"STORE 4 +FLAGS (\\Draft)"),  # UID 5
                (b"b11", b"FETCH 4:6 " + FETCH_IDS),
            ):
                responses = await b.command(tag, command)
                assert_answered(responses)
                check_view(responses, view)
                during.extend(responses)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(expunge_six)
            nursery.start_soon(fetch_and_store)
        assert numbered(during, b"EXPUNGE") == [], during
        told = await b.command(b"b12", b"NOOP")
        assert_ok(told)
        assert numbered(told, b"EXPUNGE") == [5], told
        view.remove(6)
        for client in (a, b):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()

        # B changed exactly the messages it meant, and nothing else.
        _, state = await dovecot_commands(
            dovecot, mux_user, b"EXAMINE INBOX", b"FETCH 1:* (UID FLAGS)"
        )
    flags = {f.uid: f.flags for f in fetches(state)}
    assert flags == {
        1: frozenset(),
        2: frozenset(),
        4: {b"\\Flagged"},
        5: {b"\\Draft"},
        7: frozenset(),
        8: frozenset(),
    }, state


# -- 3. IDLE ------------------------------------------------------------------------------


def replay_count(count: int, responses: list[bytes]) -> int:
    """The message count after ``responses``, asserting each EXISTS and EXPUNGE
    makes sense where it comes (RFC 9051 7.4.1, 7.5.1)."""
    for response in responses:
        match = _NUMBERED.match(response)
        if match is None:
            continue
        n = int(match.group(1))
        if match.group(2) == b"EXISTS":
            assert n >= count, (count, responses)
            count = n
        elif match.group(2) == b"EXPUNGE":
            assert 1 <= n <= count, (count, responses)
            count -= 1
    return count


async def test_idle_clients_see_exists_and_expunge_caused_by_other_sessions(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """Two IDLE clients on a shared mailbox see ``* n EXISTS`` and ``* n EXPUNGE``
    for another session's APPEND and EXPUNGE, and EXISTS for an APPEND from outside
    the proxy; DONE ends each one's IDLE."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 10})
    with trio.fail_after(TEST_TIMEOUT):
        idlers = [await clients.login(mux_user) for _ in range(2)]
        worker = await clients.login(mux_user)
        for client in (*idlers, worker):
            assert_ok(await client.command(b"s", b"SELECT INBOX"))
        transcripts: list[list[bytes]] = [[], []]
        for client in idlers:
            await client.send(b"i IDLE\r\n")
            go_ahead = await client.read_response()
            assert go_ahead.startswith(b"+"), go_ahead

        # Another session of the proxy appends, then expunges message 2.
        assert_ok(await append_raw(worker, b"w1", b"INBOX", message("<idle.1@mux.test>")))
        for client, transcript in zip(idlers, transcripts, strict=True):
            transcript += await read_until(client, b"* 11 EXISTS\r\n")
        assert_ok(await worker.command(b"w2", b"STORE 2 +FLAGS.SILENT (\\Deleted)"))
        assert_ok(await worker.command(b"w3", b"EXPUNGE"))
        for client, transcript in zip(idlers, transcripts, strict=True):
            transcript += await read_until(client, b"* 2 EXPUNGE\r\n")

        # A change from outside the proxy: the shared connection's own IDLE hears it.
        outside = clients.keep(
            await Endpoint.direct(dovecot, "implicit").raw_login(mux_user.name, mux_user.password)
        )
        assert_ok(await append_raw(outside, b"o1", b"INBOX", message("<idle.2@mux.test>")))
        await outside.command(b"z", b"LOGOUT")
        await outside.aclose()
        for client, transcript in zip(idlers, transcripts, strict=True):
            transcript += await read_until(client, b"* 11 EXISTS\r\n")

        for client, transcript in zip(idlers, transcripts, strict=True):
            await client.send(b"DONE\r\n")
            done = await client.read_until_tagged(b"i")
            assert_ok(done)
            transcript += done
            assert replay_count(10, transcript) == 11, transcript
            assert numbered(transcript, b"EXPUNGE") == [2], transcript
            fetched = await client.command(b"f", b"FETCH 10:11 " + FETCH_IDS)
            assert [f.mid for f in fetches(fetched) if f.mid] == [
                "<idle.1@mux.test>",
                "<idle.2@mux.test>",
            ], fetched
        for client in (*idlers, worker):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()


# -- 4. no head-of-line blocking ----------------------------------------------------------

BIG = 10 << 20


async def reader_that_stalls(running: RunningProxy) -> RawImap:
    """A raw TLS client to the proxy whose socket buffers little: once it stops
    reading, the proxy cannot hand it more than a few MB."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    await sock.connect(("127.0.0.1", running.implicit_port))
    client = RawImap(trio.SocketStream(sock))
    await client.start_tls(running.ssl_context(), "localhost")
    greeting = await client.read_line()
    assert greeting.startswith(b"* OK"), greeting
    return client


async def test_a_client_that_stops_reading_a_big_fetch_does_not_hold_up_the_others(
    dovecot: DovecotServer, mux_user: User, mux_proxy: RunningProxy, clients: Clients
) -> None:
    """No head-of-line blocking: while a client that reads nothing more has a 10 MB
    FETCH outstanding on the shared connection, another session on the mailbox
    completes 20 FETCH and NOOP round trips; the slow client then gets its message
    whole."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n"
    big = message(message_id("INBOX", 1), line * (BIG // len(line)))

    def build() -> None:
        with direct(dovecot, mux_user) as client:
            client.append("INBOX", big)
            client.multiappend("INBOX", [message(message_id("INBOX", n)) for n in range(2, 7)])

    await in_thread(build)
    with trio.fail_after(TEST_TIMEOUT):
        slow = clients.keep(await reader_that_stalls(mux_proxy))
        login = f'LOGIN "{mux_user.name}" "{mux_user.password}"'.encode()
        assert_ok(await slow.command(b"a", login))
        other = await clients.login(mux_user)
        for client in (slow, other):
            assert_ok(await client.command(b"s", b"SELECT INBOX"))
        await slow.send(b"big FETCH 1 BODY.PEEK[]\r\n")
        while True:  # until the 10 MB answer has begun; then nothing more is read
            first = await slow.read_line()
            literal = re.search(rb"\{(\d+)\}\r\n\Z", first)
            if literal:
                break
            assert not first.startswith(b"big "), first
        assert first.startswith(b"* 1 FETCH ("), first
        assert int(literal.group(1)) == len(big), first

        with trio.fail_after(TEST_TIMEOUT / 3):
            for n in range(20):
                seq = 2 + n % 5
                fetched = await other.command(b"f%d" % n, b"FETCH %d " % seq + FETCH_IDS)
                assert_ok(fetched)
                assert [f.mid for f in fetches(fetched)] == [message_id("INBOX", seq)], fetched
                assert_ok(await other.command(b"n%d" % n, b"NOOP"))

        # The slow client still gets all of its message, byte for byte.
        body = await slow.read_exactly(len(big))
        assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
        assert_ok(await slow.read_until_tagged(b"big"))
        for client in (slow, other):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()


# -- 5. a client killed in the middle of an APPEND literal ---------------------------------


async def test_a_client_killed_mid_append_leaves_the_shared_connection_usable(
    dovecot: DovecotServer, mux_user: User, mux_proxy: RunningProxy, clients: Clients
) -> None:
    """A client that sends half an APPEND literal and goes away leaves the shared
    connection to the other session (NOOP, FETCH, STORE, APPEND all work at once),
    no new upstream connection is opened, and the half message is never stored."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 5})
    half = message("<half@mux.test>", b"x" * 4000 + b"\r\n")
    whole = message("<whole@mux.test>")
    with trio.fail_after(TEST_TIMEOUT):
        killed = await clients.login(mux_user)
        other = await clients.login(mux_user)
        for client in (killed, other):
            assert_ok(await client.command(b"s", b"SELECT INBOX"))
        await connections_become(dovecot, mux_user, 1)

        await killed.send(b"k APPEND INBOX {%d}\r\n" % len(half))
        go_ahead = await killed.read_response()
        assert go_ahead.startswith(b"+"), go_ahead
        await killed.send(half[: len(half) // 2])
        await killed.aclose()

        # The other session goes on at once, on the connection they shared.
        assert_ok(await other.command(b"o1", b"NOOP"))
        fetched = await other.command(b"o2", b"FETCH 1:5 " + FETCH_IDS)
        assert_ok(fetched)
        check_view(fetched, [1, 2, 3, 4, 5])
        assert [f.seq for f in fetches(fetched) if f.mid] == [1, 2, 3, 4, 5], fetched
        stored = await other.command(b"o3", b"STORE 2 +FLAGS (\\Flagged)")
        assert_ok(stored)
        assert [(f.seq, f.flags) for f in fetches(stored)] == [(2, FLAGGED)], stored
        appended = await append_raw(other, b"o4", b"INBOX", whole)
        assert_ok(appended)
        appended += await other.command(b"o5", b"NOOP")
        assert numbered(appended, b"EXISTS") == [6], appended  # its own message, only
        await connections_become(dovecot, mux_user, 1)  # the same one connection
        await other.command(b"z", b"LOGOUT")
        await other.aclose()
        await mux_proxy.proxy.wait_quiet()

        searched = await dovecot_commands(
            dovecot,
            mux_user,
            b"SELECT INBOX",
            b'SEARCH HEADER Message-ID "<half@mux.test>"',
            b'SEARCH HEADER Message-ID "<whole@mux.test>"',
            b"SEARCH FLAGGED",
        )
    assert numbered(searched[0], b"EXISTS") == [6], searched[0]
    assert b"* SEARCH\r\n" in searched[1], searched[1]  # the half message is not there
    assert b"* SEARCH 6\r\n" in searched[2], searched[2]
    assert b"* SEARCH 2\r\n" in searched[3], searched[3]


# -- 6. a wrong password ------------------------------------------------------------------


async def test_a_wrong_password_never_joins_a_logged_in_session(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """While a session of the user is logged in, LOGIN and AUTHENTICATE PLAIN with
    a wrong password get ``NO [AUTHENTICATIONFAILED]`` and leave the client
    unauthenticated; the right password then joins."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 3})
    wrong = f"not-{mux_user.password}"
    with trio.fail_after(TEST_TIMEOUT):
        logged_in = await clients.login(mux_user)
        assert_ok(await logged_in.command(b"s", b"SELECT INBOX"))

        intruder = await clients.connect()
        refused = await intruder.command(b"w1", f'LOGIN "{mux_user.name}" "{wrong}"'.encode())
        assert tagged_status(refused) == b"NO [AUTHENTICATIONFAILED]", refused
        await intruder.send(b"w2 AUTHENTICATE PLAIN\r\n")
        go_ahead = await intruder.read_response()
        assert go_ahead.startswith(b"+"), go_ahead
        await intruder.send(plain(mux_user.name, wrong) + b"\r\n")
        refused = await intruder.read_until_tagged(b"w2")
        assert tagged_status(refused) == b"NO [AUTHENTICATIONFAILED]", refused
        # Still not logged in: nothing of the other session's reaches it.
        for tag, command in ((b"w3", b"SELECT INBOX"), (b"w4", b"FETCH 1 (FLAGS)")):
            denied = await intruder.command(tag, command)
            assert tagged_status(denied) in (b"NO", b"BAD"), denied
        # The right password still joins, and the logged-in session never noticed.
        joined = await intruder.command(
            b"w5", f'LOGIN "{mux_user.name}" "{mux_user.password}"'.encode()
        )
        assert_ok(joined)
        fetched = await logged_in.command(b"f", b"FETCH 1:3 " + FETCH_IDS)
        assert_ok(fetched)
        check_view(fetched, [1, 2, 3])
        for client in (logged_in, intruder):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()


# -- 7. a session on a shared connection is a fresh login ---------------------------------


async def capabilities(client: RawImap) -> list[str]:
    reply = await client.command(b"c", b"CAPABILITY")
    assert_ok(reply)
    (line,) = [response for response in reply if response.startswith(b"* CAPABILITY ")]
    return caps_of(line)


async def login_capabilities(clients: Clients, user: User) -> tuple[RawImap, list[str]]:
    """A raw client logged in through the proxy, and the capabilities of its LOGIN OK."""
    client = await clients.connect()
    reply = await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
    assert_ok(reply)
    return client, caps_of(reply[-1]) if b"[CAPABILITY " in reply[-1] else []


async def test_a_session_on_a_shared_connection_behaves_like_a_fresh_login(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """A session joining a shared connection gets a fresh login's capabilities,
    nothing selected, and (synthesized) SELECT and EXAMINE responses equal to
    Dovecot's own for the same mailbox state."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 6})
    with trio.fail_after(TEST_TIMEOUT):
        first, first_login = await login_capabilities(clients, mux_user)
        first_caps = await capabilities(first)
        assert_ok(await first.command(b"s", b"SELECT INBOX"))
        # Through the shared connection: a new message, a new keyword, a \Deleted one.
        assert_ok(await append_raw(first, b"p", b"INBOX", message("<fresh@mux.test>")))
        assert_ok(await first.command(b"k", b"STORE 2 +FLAGS ($Joined \\Deleted)"))

        joining, joining_login = await login_capabilities(clients, mux_user)
        assert joining_login == first_login
        assert await capabilities(joining) == first_caps
        # Authenticated, nothing selected, even though the connection has INBOX open.
        nothing = await joining.command(b"n", b"FETCH 1 (FLAGS)")
        assert tagged_status(nothing) == b"BAD", nothing
        selected = await joining.command(b"s", b"SELECT INBOX")
        assert_ok(selected)
        (direct_select,) = await dovecot_commands(dovecot, mux_user, b"SELECT INBOX")
        summary = select_summary(selected)
        assert summary == select_summary(direct_select), (selected, direct_select)
        assert set(summary) >= {
            "FLAGS",
            "PERMANENTFLAGS",
            "EXISTS",
            "UIDVALIDITY",
            "UIDNEXT",
            "access",
        }
        assert summary["EXISTS"] == 7, summary
        assert summary["access"] == "READ-WRITE", summary
        check_view(await joining.command(b"f", b"FETCH 1:6 " + FETCH_IDS), [1, 2, 3, 4, 5, 6])

        # EXAMINE: a connection of its own mode, then a session joining that one.
        examiners = [await clients.login(mux_user) for _ in range(2)]
        for client in examiners:
            examined = await client.command(b"e", b"EXAMINE INBOX")
            assert_ok(examined)
            (direct_examine,) = await dovecot_commands(dovecot, mux_user, b"EXAMINE INBOX")
            assert select_summary(examined) == select_summary(direct_examine), examined
            assert select_summary(examined)["access"] == "READ-ONLY"
        for client in (first, joining, *examiners):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()


# -- 8. CONDSTORE moves a session to a connection of its own -------------------------------


async def test_condstore_moves_the_session_to_a_dedicated_connection(
    dovecot: DovecotServer, mux_user: User, clients: Clients
) -> None:
    """ENABLE CONDSTORE, and SELECT (CONDSTORE), move the session to a connection
    of its own (``doveadm who`` counts one more each time), where HIGHESTMODSEQ and
    MODSEQ are Dovecot's; the session left on the shared connection sees the flag
    change without MODSEQ."""
    await in_thread(fill, dovecot, mux_user, {"INBOX": 5})
    with trio.fail_after(TEST_TIMEOUT):
        plain_session = await clients.login(mux_user)
        assert_ok(await plain_session.command(b"s", b"SELECT INBOX"))
        enabling = await clients.login(mux_user)
        await connections_become(dovecot, mux_user, 1)

        enabled = await enabling.command(b"e", b"ENABLE CONDSTORE")
        assert_ok(enabled)
        assert b"* ENABLED CONDSTORE\r\n" in enabled, enabled
        await connections_become(dovecot, mux_user, 2)
        selected = await enabling.command(b"s", b"SELECT INBOX")
        assert_ok(selected)
        fetched = await enabling.command(b"f", b"FETCH 1:* (UID MODSEQ)")
        direct = await dovecot_commands(
            dovecot, mux_user, b"ENABLE CONDSTORE", b"SELECT INBOX", b"FETCH 1:* (UID MODSEQ)"
        )
        assert select_summary(selected) == select_summary(direct[1]), (selected, direct[1])
        assert "HIGHESTMODSEQ" in select_summary(selected), selected
        assert fetches(fetched) == fetches(direct[2]), (fetched, direct[2])

        stored = await enabling.command(b"t", b"STORE 1 +FLAGS (\\Flagged)")
        assert_ok(stored)
        (change,) = fetches(stored)
        assert (change.seq, change.flags) == (1, FLAGGED), stored
        assert change.modseq, stored
        _, after = await dovecot_commands(dovecot, mux_user, b"EXAMINE INBOX", b"FETCH 1 (MODSEQ)")
        assert fetches(after)[0].modseq == change.modseq, (stored, after)
        # The session left on the shared connection hears of it, without MODSEQ.
        told = await plain_session.command(b"n", b"NOOP")
        assert any((f.seq, f.flags) == (1, FLAGGED) for f in fetches(told)), told
        assert b"MODSEQ" not in b"".join(told), told

        # SELECT ... (CONDSTORE) does the same.
        await connections_become(dovecot, mux_user, 2)  # the direct ones above are gone
        selecting = await clients.login(mux_user)
        selected = await selecting.command(b"s", b"SELECT INBOX (CONDSTORE)")
        assert_ok(selected)
        await connections_become(dovecot, mux_user, 3)
        (direct_select,) = await dovecot_commands(dovecot, mux_user, b"SELECT INBOX (CONDSTORE)")
        assert select_summary(selected) == select_summary(direct_select), selected
        assert "HIGHESTMODSEQ" in select_summary(selected), selected
        for client in (plain_session, enabling, selecting):
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
