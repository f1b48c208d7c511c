"""Randomized, differential stress of concurrent sharing (docs/multiplex.md,
"Sharing"; imapproxy/mux.py) against Dovecot.

Several raw sessions of one user select INBOX through a proxy that shares upstream
connections, and each runs a seeded random mix of commands at the same time as the
others: FETCH and STORE by sequence number, UID FETCH of random sets, SEARCH of the
session's own keyword, NOOP, short IDLEs, now and then an APPEND, a STORE
``\\Deleted`` + EXPUNGE of a message the session owns, or a command that moves it to
a connection of its own (ENABLE CONDSTORE, FETCH MODSEQ). Every session keeps the
model a real client would keep from what *it* receives -- sequence number -> UID
(FETCH responses, EXISTS, EXPUNGE) and each message's flags (any FETCH FLAGS,
solicited or not, and its own ``.SILENT`` STOREs) -- and every response is checked
against it: the Message-ID of each message returned is the one of the UID the
model puts there, no result comes for a message not asked for, no EXPUNGE comes
during a FETCH, STORE or SEARCH by number (RFC 9051 section 7.5.1). At the end each
session's model must be Dovecot's mailbox, read on a direct connection: the same
UIDs in the same order, the same flags.

The seed is in every failure message; a failing seed is replayed by putting it in
:data:`SEEDS` (``STRESS_LINES=400`` shows more of the failing session's transcript).
The interleaving of the sessions is up to the scheduler and the network, so a seed
fixes what each session does, not when: a defect that needs a race is caught by
running many rounds.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field

import pytest
import trio
from conftest import RunningProxy, dovecot_commands
from imap_endpoints import Endpoint, quote
from imap_raw import RawImap, tagged_status
from test_proxy_mux import fetches, fill, message, message_id, without_recent

from imapproxy.testing import DovecotServer, User

#: The whole test ends within this many seconds.
TEST_TIMEOUT = 50
#: One command (sent, and read up to its tagged response) ends within this.
COMMAND_TIMEOUT = 10
#: Messages in INBOX at the start (UIDs 1..MESSAGES).
MESSAGES = 40
SESSIONS = 7
STEPS = 45
#: At most this many messages are expunged, and appended, in one run.
MAX_EXPUNGES = 8
MAX_APPENDS = 10

#: (seed, sessions that may move to a connection of their own, rounds): each round
#: is a fresh user and mailbox, its sessions' random generators seeded from the
#: seed and the round.
SEEDS = [
    pytest.param(1, 0, 1, id="seed1"),
    pytest.param(2, 0, 1, id="seed2"),
    pytest.param(3, 0, 1, id="seed3"),
    # With moves, 30 rounds: what this found (fixed) needed races -- a silent STORE
    # swallowing other connections' changes, a move losing changes Dovecot reported
    # without a UID, the shared UID map rebuilt without the EXPUNGEs that came after
    # the UID SEARCH's result.
    pytest.param(100, SESSIONS, 30, id="seed100-moves"),
]

_NUMBERED = re.compile(rb"\* (\d+) ([A-Z]+)")
_UID = re.compile(rb"[( ]UID (\d+)")
_FLAGS = re.compile(rb"[( ]FLAGS \(([^)]*)\)")
_ENVELOPE_ID = re.compile(rb'"(<[^"]*@mux\.test>)"')
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_SEARCH = re.compile(rb"\* SEARCH((?: \d+)*)\s*\r\n")

#: Commands during which an EXPUNGE must not be shown (RFC 9051 section 7.5.1).
BY_NUMBER = "by number"
BY_UID = "by uid"
OTHER = "other"


# -- what is true, and what one session believes ---------------------------------------


@dataclass
class World:
    """What all sessions know for sure: each UID's Message-ID, which messages may be
    gone (``\\Deleted`` was stored on them), who owns which message."""

    seed: int
    truth: dict[int, str] = field(default_factory=dict)
    #: Message-IDs of messages being (or already) appended, not yet tied to a UID
    appending: set[str] = field(default_factory=set)
    #: UIDs on which ``\Deleted`` was (or is about to be) stored
    deleted: set[int] = field(default_factory=set)
    owner: dict[int, int] = field(default_factory=dict)
    expunges: int = 0
    appends: int = 0

    def observe(self, uid: int, mid: str) -> str | None:
        """Record that ``uid`` was returned with ``mid``; a complaint if it cannot be."""
        known = self.truth.get(uid)
        if known is not None:
            return None if known == mid else f"UID {uid} came with {mid}, it is {known}"
        if mid not in self.appending:
            return f"UID {uid} came with {mid}, which is no message being appended"
        self.appending.discard(mid)
        self.truth[uid] = mid
        return None


@dataclass
class Entry:
    """One message of a session's model: its UID and flags once learned."""

    uid: int | None = None
    flags: frozenset[bytes] | None = None


class StressFailure(AssertionError):
    pass


@dataclass
class Outcome:
    responses: list[bytes]
    status: bytes
    #: the FETCH responses that carried an ENVELOPE: (sequence number, UID, Message-ID)
    results: list[tuple[int, int | None, str]]
    #: (sequence number, flags) of the FETCH responses with FLAGS
    flag_news: list[tuple[int, frozenset[bytes]]]
    searched: list[int] | None


class Session:
    """One raw client of the proxy and its model of INBOX."""

    def __init__(self, index: int, client: RawImap, world: World, rng: random.Random) -> None:
        self.index = index
        self.client = client
        self.world = world
        self.rng = rng
        self.keyword = b"$s%d" % index
        self.view: list[Entry] = []
        #: UIDs on which this session's keyword is set (only it changes it)
        self.mine: set[int] = set()
        self.condstore = False
        #: whether it may move to a connection of its own (ENABLE CONDSTORE, MODSEQ)
        self.may_move = False
        self.tags = 0
        self.transcript: list[bytes] = []

    # -- checking ---------------------------------------------------------------------

    def fail(self, what: str) -> StressFailure:
        recent = b"".join(self.transcript[-int(os.environ.get("STRESS_LINES", "40")) :]).decode(
            errors="replace"
        )
        return StressFailure(
            f"seed {self.world.seed}, session {self.index}: {what}\n"
            f"view: {[e.uid for e in self.view]}\n-- its last responses --\n{recent}"
        )

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise self.fail(what)

    def absorb(self, responses: list[bytes], kind: str, command: bytes) -> Outcome:
        """Apply ``responses`` (in order) to the model, checking each one."""
        results: list[tuple[int, int | None, str]] = []
        flag_news: list[tuple[int, frozenset[bytes]]] = []
        searched: list[int] | None = None
        for response in responses:
            self.check(not response.startswith(b"* BYE"), f"BYE during {command!r}")
            numbered = _NUMBERED.match(response)
            if numbered is None:
                found = _SEARCH.match(response)
                if found is not None:
                    searched = [int(n) for n in found.group(1).split()]
                continue
            n, name = int(numbered.group(1)), numbered.group(2)
            if name == b"EXISTS":
                self.check(n >= len(self.view), f"EXISTS {n} shrinks {len(self.view)}")
                self.view.extend(Entry() for _ in range(n - len(self.view)))
            elif name == b"EXPUNGE":
                self.check(kind != BY_NUMBER, f"EXPUNGE during {command!r}")
                self.check(1 <= n <= len(self.view), f"EXPUNGE {n} of {len(self.view)}")
                gone = self.view.pop(n - 1)
                if gone.uid is not None:
                    self.mine.discard(gone.uid)
            elif name == b"FETCH":
                self.check(1 <= n <= len(self.view), f"FETCH {n} of {len(self.view)}")
                entry = self.view[n - 1]
                uid_match = _UID.search(response)
                if uid_match is not None:
                    uid = int(uid_match.group(1))
                    if entry.uid is None:
                        self.check(
                            all(e.uid != uid for e in self.view),
                            f"UID {uid} at {n}, already elsewhere in the view",
                        )
                        entry.uid = uid
                    self.check(entry.uid == uid, f"FETCH {n} says UID {uid}, not {entry.uid}")
                flags = _FLAGS.search(response)
                if flags is not None:
                    entry.flags = without_recent(flags.group(1).split())
                    flag_news.append((n, entry.flags))
                if b"ENVELOPE" in response:
                    self.check(entry.uid is not None, f"ENVELOPE without a UID: {response!r}")
                    assert entry.uid is not None
                    ids = _ENVELOPE_ID.findall(response)
                    if not ids and entry.uid in self.world.deleted:
                        # an expunged message's empty envelope (RFC 2180 4.1.3)
                        results.append((n, entry.uid, ""))
                        continue
                    self.check(bool(ids), f"no Message-ID in {response!r}")
                    mid = ids[-1].decode()
                    complaint = self.world.observe(entry.uid, mid)
                    self.check(complaint is None, f"{complaint} (at {n})")
                    results.append((n, entry.uid, mid))
        status = tagged_status(responses)
        return Outcome(responses, status, results, flag_news, searched)

    # -- talking --------------------------------------------------------------------

    def next_tag(self) -> bytes:
        self.tags += 1
        return b"s%dt%d" % (self.index, self.tags)

    async def command(self, text: bytes, kind: str) -> Outcome:
        tag = self.next_tag()
        self.transcript.append(b"C: " + tag + b" " + text + b"\r\n")
        with trio.fail_after(COMMAND_TIMEOUT):
            responses = await self.client.command(tag, text)
        self.transcript.extend(responses)
        outcome = self.absorb(responses, kind, text)
        self.check(
            outcome.status.startswith(b"OK")
            or (outcome.status == b"NO [EXPUNGEISSUED]" and kind == BY_NUMBER),
            f"{text!r} answered {outcome.status!r}",
        )
        return outcome

    async def until_continuation(self, tag: bytes, text: bytes) -> None:
        """Read up to a ``+``, absorbing what comes before it."""
        with trio.fail_after(COMMAND_TIMEOUT):
            while True:
                response = await self.client.read_response()
                self.transcript.append(response)
                if response.startswith(b"+"):
                    return
                self.check(not response.startswith(tag + b" "), f"{text!r}: {response!r}")
                self.absorb([response], OTHER, text)

    async def finish(self, tag: bytes, text: bytes) -> Outcome:
        with trio.fail_after(COMMAND_TIMEOUT):
            responses = await self.client.read_until_tagged(tag)
        self.transcript.extend(responses)
        outcome = self.absorb(responses, OTHER, text)
        self.check(outcome.status.startswith(b"OK"), f"{text!r} answered {outcome.status!r}")
        return outcome

    async def noop(self) -> Outcome:
        return await self.command(b"NOOP", OTHER)

    async def numbered(self, text: bytes) -> Outcome:
        """A FETCH, STORE or SEARCH by number; NOOP after a ``NO [EXPUNGEISSUED]``."""
        outcome = await self.command(text, BY_NUMBER)
        if outcome.status.startswith(b"NO"):
            await self.noop()
        return outcome

    # -- the operations ----------------------------------------------------------------

    def known_positions(self) -> list[int]:
        return [n for n, e in enumerate(self.view, 1) if e.uid is not None]

    async def fetch_by_number(self) -> None:
        if not self.view:
            return
        n = self.rng.randint(1, len(self.view))
        uid = self.view[n - 1].uid
        outcome = await self.numbered(b"FETCH %d (UID FLAGS ENVELOPE)" % n)
        self.check(
            all(seq == n for seq, _, _ in outcome.results),
            f"FETCH {n} returned other messages: {outcome.results}",
        )
        if uid is not None and uid not in self.world.deleted and outcome.status == b"OK":
            self.check(len(outcome.results) == 1, f"FETCH {n} (UID {uid}) returned nothing")

    def random_uid_set(self) -> tuple[bytes, list[tuple[int, int | None]]]:
        top = max(self.world.truth) + 2
        if self.rng.random() < 0.25:
            start = self.rng.randint(1, top)
            return b"%d:*" % start, [(start, None)]
        spans: list[tuple[int, int | None]] = []
        for _ in range(self.rng.randint(1, 3)):
            a = self.rng.randint(1, top)
            b = a if self.rng.random() < 0.5 else min(top, a + self.rng.randint(1, 8))
            spans.append((a, b))
        text = b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b or 0) for a, b in spans)
        return text, spans

    async def uid_fetch(self) -> None:
        text, spans = self.random_uid_set()
        items = self.rng.choice([b"(UID FLAGS ENVELOPE)", b"(FLAGS ENVELOPE)", b"(ENVELOPE)"])
        # The largest UID this session has been shown: its connection's "*" is at
        # least that (unless expunged), and may be no more -- a message another
        # session appended is in the mailbox before this connection hears of it.
        largest = max((e.uid for e in self.view if e.uid is not None), default=0)
        outcome = await self.command(b"UID FETCH " + text + b" " + items, BY_UID)
        got = [uid for _, uid, _ in outcome.results]
        self.check(len(got) == len(set(got)), f"UID FETCH {text!r} repeated a message: {got}")

        def within(uid: int) -> bool:
            return any(a <= uid and (b is None or uid <= b) for a, b in spans)

        star = spans[0][1] is None
        outside = [uid for uid in got if uid is None or not within(uid)]
        if star and outside:
            # n:* with n above the largest UID means the last message (RFC 9051 6.4.8)
            self.check(
                len(got) == 1
                and got[0] is not None
                and all(u <= got[0] or u in self.world.deleted for u in range(1, largest + 1)),
                f"UID FETCH {text!r} returned {got}",
            )
        else:
            self.check(not outside, f"UID FETCH {text!r} returned {outside}, not asked for")
        missing = [
            e.uid
            for e in self.view
            if e.uid is not None
            and within(e.uid)
            and e.uid not in self.world.deleted
            and e.uid not in got
        ]
        self.check(not missing, f"UID FETCH {text!r} did not return {missing} (got {got})")

    async def store(self) -> None:
        positions = self.known_positions()
        if not positions:
            return
        n = self.rng.choice(positions)
        uid = self.view[n - 1].uid
        assert uid is not None
        sign = self.rng.choice([b"+", b"-"])
        silent = self.rng.random() < 0.5
        text = b"STORE %d %sFLAGS%s (%s)" % (n, sign, b".SILENT" if silent else b"", self.keyword)
        before = self.view[n - 1].flags
        outcome = await self.numbered(text)
        if not outcome.status.startswith(b"OK"):
            return
        if sign == b"+":
            self.mine.add(uid)
        else:
            self.mine.discard(uid)
        if uid in self.world.deleted:
            return
        # (an EXPUNGE is never shown during STORE: the message is still at n)
        entry = self.view[n - 1]
        self.check(entry.uid == uid, f"{text!r}: position {n} is now UID {entry.uid}")
        told = [flags for seq, flags in outcome.flag_news if seq == n]
        if silent:
            # (others' changes may still be shown; the session's own one is its to apply)
            if entry.flags is not None:
                changed = {self.keyword} if sign == b"+" else set()
                entry.flags = (entry.flags - {self.keyword}) | changed
            return
        if before is not None and (self.keyword in before) != (sign == b"+"):
            # Dovecot answers a STORE with FETCH only for messages whose flags changed
            self.check(bool(told), f"{text!r} came without FETCH FLAGS: {outcome.responses}")
        if told:
            self.check(
                (self.keyword in told[-1]) == (sign == b"+"),
                f"{text!r} answered with flags {sorted(told[-1])}",
            )

    async def search(self) -> None:
        outcome = await self.numbered(b"SEARCH KEYWORD " + self.keyword)
        if not outcome.status.startswith(b"OK"):
            return
        self.check(outcome.searched is not None, f"no SEARCH response: {outcome.responses}")
        assert outcome.searched is not None
        expected = {n for n, e in enumerate(self.view, 1) if e.uid in self.mine}
        found = set(outcome.searched)
        # messages it appended with its keyword that its view has not placed yet
        unplaced = self.mine - {e.uid for e in self.view}
        anonymous = {n for n in found - expected if self.view[n - 1].uid is None}
        self.check(
            found - anonymous <= expected and len(anonymous) <= len(unplaced),
            f"SEARCH found {sorted(found - expected)} too",
        )
        unfound = {n for n in expected - found if self.view[n - 1].uid not in self.world.deleted}
        self.check(not unfound, f"SEARCH missed {sorted(unfound)} (found {sorted(found)})")

    async def idle(self) -> None:
        tag = self.next_tag()
        self.transcript.append(b"C: " + tag + b" IDLE\r\n")
        await self.client.send(tag + b" IDLE\r\n")
        await self.until_continuation(tag, b"IDLE")
        self.transcript.append(b"C: DONE\r\n")
        await self.client.send(b"DONE\r\n")
        await self.finish(tag, b"IDLE")

    async def append(self) -> None:
        if self.world.appends >= MAX_APPENDS:
            return
        self.world.appends += 1
        mid = f"<INBOX.a{self.index}x{self.tags}@mux.test>"
        self.world.appending.add(mid)
        flagged = self.rng.random() < 0.5
        data = message(mid)
        tag = self.next_tag()
        text = b"APPEND INBOX %s{%d}" % (b"(" + self.keyword + b") " if flagged else b"", len(data))
        self.transcript.append(b"C: " + tag + b" " + text + b"\r\n")
        await self.client.send(tag + b" " + text + b"\r\n")
        await self.until_continuation(tag, text)
        await self.client.send(data + b"\r\n")
        outcome = await self.finish(tag, text)
        appended = _APPENDUID.search(outcome.responses[-1])
        self.check(appended is not None, f"no APPENDUID: {outcome.responses[-1]!r}")
        assert appended is not None
        uid = int(appended.group(1))
        complaint = self.world.observe(uid, mid)
        self.check(complaint is None, f"APPENDUID {uid}: {complaint}")
        self.world.owner[uid] = self.index
        if flagged:
            self.mine.add(uid)

    async def expunge(self) -> None:
        if self.world.expunges >= MAX_EXPUNGES:
            return
        owned = [
            n
            for n, e in enumerate(self.view, 1)
            if e.uid is not None
            and self.world.owner.get(e.uid) == self.index
            and e.uid not in self.world.deleted
        ]
        if not owned:
            return
        self.world.expunges += 1
        n = self.rng.choice(owned)
        uid = self.view[n - 1].uid
        assert uid is not None
        self.world.deleted.add(uid)
        outcome = await self.numbered(b"STORE %d +FLAGS.SILENT (\\Deleted)" % n)
        if not outcome.status.startswith(b"OK"):
            return
        entry = self.view[n - 1]
        if entry.flags is not None:
            entry.flags |= {b"\\Deleted"}
        await self.command(b"EXPUNGE", OTHER)
        self.check(
            all(e.uid != uid for e in self.view), f"UID {uid} is still in the view after EXPUNGE"
        )

    async def go_dedicated(self) -> None:
        if self.condstore or not self.view:
            return
        if self.rng.random() < 0.5:
            outcome = await self.command(b"ENABLE CONDSTORE", OTHER)
            self.check(b"* ENABLED CONDSTORE\r\n" in outcome.responses, f"{outcome.responses}")
        else:
            n = self.rng.randint(1, len(self.view))
            outcome = await self.numbered(b"FETCH %d (MODSEQ)" % n)
            if not outcome.status.startswith(b"OK"):
                return
        self.condstore = True

    async def step(self) -> None:
        operations = [
            (self.fetch_by_number, 25),
            (self.uid_fetch, 20),
            (self.store, 20),
            (self.search, 8),
            (self.noop, 10),
            (self.idle, 5),
            (self.append, 3),
            (self.expunge, 3),
            (self.go_dedicated, 2 if self.may_move else 0),
        ]
        (operation,) = self.rng.choices(
            [op for op, _ in operations], weights=[w for _, w in operations]
        )
        await operation()

    async def login_and_select(self, user: User) -> None:
        await self.command(b"LOGIN " + quote(user.name) + b" " + quote(user.password), OTHER)
        await self.command(b"SELECT INBOX", OTHER)
        if self.rng.random() < 0.5:  # learn every UID at once, as many clients do
            await self.command(b"FETCH 1:* (UID FLAGS)", BY_NUMBER)

    # -- the end ----------------------------------------------------------------------

    async def compare(self, uids: list[int], flags: dict[int, frozenset[bytes]]) -> None:
        """After two NOOPs the model is Dovecot's mailbox (``uids`` in order, ``flags``)."""
        await self.noop()
        await self.noop()
        self.check(
            len(self.view) == len(uids), f"{len(self.view)} messages, Dovecot has {len(uids)}"
        )
        for n, (entry, uid) in enumerate(zip(self.view, uids, strict=True), 1):
            self.check(entry.uid in (None, uid), f"{n} is UID {entry.uid}, Dovecot says {uid}")
            self.check(
                entry.flags in (None, flags[uid]),
                f"{n} (UID {uid}) has flags {entry.flags}, Dovecot says {flags[uid]}",
            )
        await self.command(b"UID FETCH 1:* (UID FLAGS)", BY_UID)
        self.check([e.uid for e in self.view] == uids, f"the view is not Dovecot's {uids}")
        self.check(
            [e.flags for e in self.view] == [flags[uid] for uid in uids],
            "flags differ from Dovecot's after UID FETCH 1:*",
        )
        everything = await self.command(b"SEARCH ALL", BY_NUMBER)
        self.check(
            everything.searched == list(range(1, len(uids) + 1)), f"SEARCH ALL: {everything}"
        )
        own = {uid for uid in uids if self.keyword in flags[uid]}
        self.check(own == self.mine, f"{self.keyword!r} is on {sorted(own)}, not {self.mine}")


async def open_session(
    running: RunningProxy, user: User, index: int, world: World, rng: random.Random
) -> Session:
    client = await Endpoint.via(running, "implicit").raw()
    session = Session(index, client, world, rng)
    try:
        await session.login_and_select(user)
    except BaseException:
        await client.aclose()
        raise
    return session


async def dovecot_state(
    dovecot: DovecotServer, user: User
) -> tuple[list[int], dict[int, frozenset[bytes]]]:
    _, fetched = await dovecot_commands(dovecot, user, b"EXAMINE INBOX", b"FETCH 1:* (UID FLAGS)")
    uids = [f.uid for f in fetches(fetched) if f.uid is not None]
    flags = {f.uid: f.flags for f in fetches(fetched) if f.uid is not None and f.flags is not None}
    return uids, flags


async def run_round(
    dovecot: DovecotServer, running: RunningProxy, user: User, seed: int, movers: int
) -> None:
    """One round: fill ``user``'s INBOX, run the sessions, compare with Dovecot."""
    await trio.to_thread.run_sync(fill, dovecot, user, {"INBOX": MESSAGES})
    world = World(seed, truth={uid: message_id("INBOX", uid) for uid in range(1, MESSAGES + 1)})
    for uid in range(1, MESSAGES + 1):
        world.owner[uid] = uid % SESSIONS
    master = random.Random(seed)
    sessions: list[Session] = []
    try:
        with trio.fail_after(TEST_TIMEOUT):
            for index in range(SESSIONS):
                rng = random.Random(master.getrandbits(64))
                session = await open_session(running, user, index, world, rng)
                session.may_move = index < movers
                sessions.append(session)

            async def run(session: Session) -> None:
                for _ in range(STEPS):
                    await session.step()

            async with trio.open_nursery() as nursery:
                for session in sessions:
                    nursery.start_soon(run, session)

            uids, flags = await dovecot_state(dovecot, user)
            for session in sessions:  # one after another: nothing else goes on
                await session.compare(uids, flags)
            for session in sessions:
                with trio.fail_after(COMMAND_TIMEOUT):
                    await session.client.command(b"z", b"LOGOUT")
    finally:
        for session in sessions:
            await session.client.aclose()


@pytest.mark.parametrize(("seed", "movers", "rounds"), SEEDS)
async def test_sessions_sharing_a_mailbox_each_see_a_true_view_under_random_load(
    seed: int,
    movers: int,
    rounds: int,
    dovecot: DovecotServer,
    mux_user: User,
    mux_proxy: RunningProxy,
) -> None:
    """Seeded random commands of several sessions at once; every session's model
    (from what it received) is checked at every response and equals Dovecot's
    mailbox at the end (see the module docstring). ``movers`` of the sessions may
    move to connections of their own; later rounds have users of their own."""
    await run_round(dovecot, mux_proxy, mux_user, seed, movers)
    for round_ in range(1, rounds):
        user = dovecot.add_user(with_corpus=False)
        try:
            await run_round(dovecot, mux_proxy, user, seed * 1000 + round_, movers)
        finally:
            dovecot.remove_user(user)
