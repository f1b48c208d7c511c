"""Multiplexing benchmark: many clients of a few users through imapproxy, upstream
connections shared vs not shared.

Run: ``make bench`` or ``make bench-mux`` (the latter runs it twice, identical
commands then ``--distinct``; or ``.venv/bin/python bench/mux.py [--quick] [--distinct]
[--clients N] [--users M] [--sessions-per-connection K]``).

**The setup.** A private Dovecot (as ``bench/relay.py`` starts it, whose helpers this
uses, with its process and connection limits raised for the clients) holds ``--users``
users (10), each with three mailboxes, ``INBOX``, ``Projects`` and ``Lists``, of a few
hundred small plain-text messages (300; ``bench/cache.py``'s listing messages, seeded
per user and mailbox, so no two mailboxes have the same header data). Two imapproxy
processes (``python -m imapproxy serve``, TLS to the client on loopback, plain IMAP to
Dovecot's loopback port, logging at info as JSON lines to a file, the client limits
raised for the clients) differ in ``[multiplex]`` only: *unshared* has ``enabled =
false``, every client session its own upstream connection; *shared* has ``enabled =
true``, ``max_sessions_per_connection = 100``, ``max_connections_per_user = 10`` and
``max_connections = 1000`` (``--sessions-per-connection`` sets another value: 1 measures
connection reuse alone). While concurrent sharing is not built, the configuration check
refuses the shared settings: the benchmark says so ("shared: not available") and
measures the unshared proxy alone. Each proxy runs only during its turn (unshared
first); before either, one direct session per user selects each mailbox and fetches as
the clients will (Dovecot's indexes and caches warm, and what each fetch should bring;
with ``--distinct`` it lists the headers of every message once, and each client's
window is expected to bring the FETCH responses and header octets of its UIDs there).

**The clients.** ``--clients`` (1,000) client sessions, spread evenly over the users
(100 each) and over each user's mailboxes, run as Trio tasks in this process, each on
its own TLS connection (a small client of its own that reads responses line by line
and skips literal data by its ``{n}`` count). In four phases:

1. *connect*: the clients connect at a fixed rate (250 a second, so that this phase
   is about logging in rather than a burst of a thousand TLS handshakes): TCP, TLS
   handshake, greeting, ``LOGIN``; then each waits until all are logged in;
2. *work*: all at once, one command in flight per client: ``SELECT`` of its mailbox,
   ``UID FETCH 1:50 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])``, ``NOOP``,
   ``UID FETCH 1:* (UID FLAGS)``, ``NOOP``, then ``IDLE`` (timed to the server's ``+``;
   with ``--distinct`` the two fetches are the client's own, below);
3. *idle*: once every client is idling, for a few seconds (5);
4. *done*: all at once, ``DONE`` (timed to the IDLE's tagged OK) and ``LOGOUT``.

**Identical or distinct commands.** By default every client of a mailbox sends the
same two fetches, which the shared proxy may answer with one upstream execution when
they wait at the same time (docs/multiplex.md, "Sharing"): kinder to sharing than real
traffic. With ``--distinct`` each client lists its own window of 50 UIDs, ``UID FETCH
a:b (...)`` with a = 1 + (client * 7) mod 251 and b = a + 49 (300 messages; mod
messages - 49 in general), and fetches flags with ``UID FETCH a:* (UID FLAGS)``: no two
clients of a mailbox send the same command, so none rides on another's; UID FETCHes
of the same items that wait for the turn together are still merged into one over the
union of their UID sets (docs/multiplex.md), each client given its own messages. The
report says which ran ("commands: identical per mailbox" / "commands: distinct per
client").

**What is measured**, for each proxy:

* upstream connections: Dovecot's logged-in IMAP connections of the benchmark's users
  (``doveadm who -1``, one line a connection), sampled every second (``--quick``: every
  quarter second) throughout phases 1 to 3, at the end of phase 1 and twice in phase 3
  (as it starts and as it ends); *peak* is the largest sample, *idling* the largest of
  phase 3;
* commands/s: the commands of phase 2 (six a client) over its wall time, from the
  moment all clients are released until the last one has its ``+`` to IDLE;
* latency: each command from sending its line to reading its tagged response (IDLE: its
  ``+``), p50 and p99 (nearest rank) over every command of every phase (nine a
  client), and per command; the connection set-up (TCP, TLS, greeting) apart;
* the proxy's RSS: its peak (``VmHWM`` of ``/proc/PID/status``, read at the end of
  phase 3 and again at the end of the run), and ``VmRSS`` before the first client;
* CPU seconds of the proxy process and of this client over the four phases, for
  information.

Every tagged response must be OK, and every client's header listing must bring as many
FETCH responses and octets of header data as the direct session got from the same
mailbox (a response delivered to the wrong client session would show here, unless both
mailboxes' headers had the same size): anything else is a protocol failure, and the
benchmark exits non-zero after printing what it measured. Targets are reported, never
enforced by the exit status.

Targets (issue 6): shared upstream connections at peak <= users x mailboxes in use
(30); shared p99 latency <= 2x unshared (over all commands). The ratios
(shared/unshared) are computed from the run, never assumed. Dovecot, imapproxy and
this client (1,000 TLS sessions in one Python process) share the machine's cores: the
latencies include their competition for CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cache  # bench/cache.py (its mail); bench/ is sys.path[0] when this script runs
import relay  # bench/relay.py: Dovecot, imapproxy processes, percentiles
import trio

from imapproxy.config import ConfigError
from imapproxy.testing import DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls

MAILBOXES = ("INBOX", "Projects", "Lists")
HEADER_FIELDS = b"FROM SUBJECT DATE"
LISTED = 50
"""Messages of the header listing (UID FETCH 1:50; with ``--distinct``, a:a+49)."""
STEP = 7
"""With ``--distinct``, client N's listing starts at UID 1 + (N * STEP) mod (messages -
LISTED + 1): 251 windows of 300 messages, and no two clients of a mailbox alike (as long
as a mailbox has fewer clients than windows; ``repeated_commands`` counts them)."""


def headers_line(first: int, last: int | None) -> bytes:
    """The header listing of UIDs ``first`` to ``last`` (None: to the last message)."""
    uids = b"%d:%s" % (first, b"*" if last is None else b"%d" % last)
    return b"UID FETCH %s (UID FLAGS BODY.PEEK[HEADER.FIELDS (%s)])" % (uids, HEADER_FIELDS)


def flags_line(first: int) -> bytes:
    """The flags of every message from UID ``first`` on."""
    return b"UID FETCH %d:* (UID FLAGS)" % first


HEADERS = headers_line(1, LISTED)
FLAGS = flags_line(1)
WORK: tuple[tuple[str, bytes], ...] = (
    ("SELECT", b"SELECT %s"),
    ("UID FETCH headers", HEADERS),
    ("NOOP", b"NOOP"),
    ("UID FETCH flags", FLAGS),
    ("NOOP", b"NOOP"),
)
"""Phase 2 before IDLE: (label, command line; ``%s`` the mailbox). With ``--distinct``
the two fetches are each client's own (``work_lines``)."""
LISTING = "UID FETCH headers"
COMMANDS = (
    "LOGIN",
    "SELECT",
    "UID FETCH headers",
    "NOOP",
    "UID FETCH flags",
    "IDLE",
    "DONE",
    "LOGOUT",
)
CONNECT = "connect"
"""Latency label of TCP connect + TLS handshake + greeting (not a command)."""

P99_TARGET = 2.0
COMMAND_TIMEOUT = 120.0
"""Seconds a command may take before the client counts it a failure."""
RECEIVE_SIZE = 65536
MAX_LINE = 1024 * 1024
SIDES = ("unshared", "shared")
MULTIPLEX: dict[str, dict[str, object]] = {
    "unshared": {"enabled": False},
    "shared": {
        "enabled": True,
        "max_sessions_per_connection": 100,
        "max_connections_per_user": 10,
        "max_connections": 1000,
    },
}


@dataclass(frozen=True)
class Plan:
    clients: int
    users: int
    messages: int  # per mailbox
    connect_rate: float  # new client connections per second in phase 1
    idle: float  # seconds of phase 3
    sample_every: float  # seconds between doveadm who samples


FULL = Plan(clients=1000, users=10, messages=300, connect_rate=250, idle=5.0, sample_every=1.0)
QUICK = Plan(clients=40, users=4, messages=60, connect_rate=200, idle=0.5, sample_every=0.25)


def assignment(client: int, users: int) -> tuple[int, str]:
    """The user (index) and mailbox of client number ``client``: users in turn, and
    each user's clients over its mailboxes in turn."""
    return client % users, MAILBOXES[(client // users) % len(MAILBOXES)]


def mailboxes_in_use(plan: Plan) -> int:
    """How many (user, mailbox) pairs the clients select: the connection target."""
    return len({assignment(i, plan.users) for i in range(plan.clients)})


def window(client: int, plan: Plan, distinct: bool) -> tuple[int, int]:
    """The first and last UID of client number ``client``'s header listing: 1 to LISTED
    for every client, or with ``distinct`` LISTED of them from 1 + (client * STEP) mod
    (messages - LISTED + 1)."""
    if not distinct:
        return 1, LISTED
    first = 1 + (client * STEP) % (plan.messages - LISTED + 1)
    return first, first + LISTED - 1


def work_lines(mailbox: str, first: int, last: int | None) -> list[tuple[str, bytes]]:
    """Phase 2 before IDLE on ``mailbox``: WORK, its header listing over UIDs ``first``
    to ``last`` (None: ``*``) and its flags fetch from ``first`` on."""
    lines = []
    for label, line in WORK:
        if line == HEADERS:
            line = headers_line(first, last)
        elif line == FLAGS:
            line = flags_line(first)
        lines.append((label, line.replace(b"%s", mailbox.encode())))
    return lines


def repeated_commands(plan: Plan, distinct: bool) -> int:
    """Clients whose header listing another client of the same user and mailbox sends
    too (and so its flags fetch): the commands the shared proxy may answer together."""
    seen = {(*assignment(i, plan.users), window(i, plan, distinct)) for i in range(plan.clients)}
    return plan.clients - len(seen)


def mode(distinct: bool) -> str:
    return "distinct per client" if distinct else "identical per mailbox"


# -- the client -----------------------------------------------------------------------


class ProtocolFailure(Exception):
    """A response the benchmark did not expect (not OK, wrong data, closed)."""


@dataclass
class Replies:
    """What one command brought: its tagged line, untagged FETCH responses, and octets
    of literal data."""

    tagged: bytes
    fetches: int
    literal_octets: int


class Client:
    """One IMAP session over TLS, commands timed into ``latencies`` (label -> seconds).

    Reads whole response lines; a line that ends in a literal announcement is followed
    by that many octets, which are counted and dropped, then the rest of the response.
    """

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], latencies: Latencies) -> None:
        self.stream = stream
        self.latencies = latencies
        self.buffer = bytearray()
        self.tags = 0
        self.fetches = 0
        self.literal_octets = 0
        self.record: list[tuple[bytes, int]] | None = None
        """When a list: each FETCH response's lines (literal data left out) and octets
        of literal data are appended to it."""

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext, latencies: Latencies) -> Client:
        start = time.perf_counter()
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        client = cls(stream, latencies)
        try:
            with trio.fail_after(COMMAND_TIMEOUT):
                await stream.do_handshake()
                greeting = await client._response()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        if not greeting.startswith(b"* OK"):
            await trio.aclose_forcefully(stream)
            raise ProtocolFailure(f"greeting {greeting[:200]!r}")
        latencies.add(CONNECT, time.perf_counter() - start)
        return client

    async def _fill(self) -> None:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ProtocolFailure("the proxy closed the connection")
        self.buffer += data

    async def _line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_LINE:
                raise ProtocolFailure(f"a line longer than {MAX_LINE} octets")
            await self._fill()
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    async def _skip(self, octets: int) -> None:
        while octets:
            if not self.buffer:
                await self._fill()
            take = min(octets, len(self.buffer))
            del self.buffer[:take]
            octets -= take

    async def _response(self) -> bytes:
        """The next response's first line (literal data and the rest of it consumed)."""
        head = line = await self._line()
        lines = [head] if self.record is not None else None
        octets = 0
        while (size := relay.literal_size(line)) is not None:
            await self._skip(size)
            octets += size
            line = await self._line()
            if lines is not None:
                lines.append(line)
        self.literal_octets += octets
        if head.startswith(b"* ") and b" FETCH " in head[:32]:
            self.fetches += 1
            if self.record is not None and lines is not None:
                self.record.append((b"".join(lines), octets))
        return head

    async def _tagged(self, tag: bytes, label: str, start: float) -> Replies:
        fetches, octets = self.fetches, self.literal_octets
        while not (line := await self._response()).startswith(tag + b" "):
            pass
        self.latencies.add(label, time.perf_counter() - start)
        if not line.startswith(tag + b" OK"):
            raise ProtocolFailure(f"{label}: {line[:200]!r}")
        return Replies(line, self.fetches - fetches, self.literal_octets - octets)

    def _next_tag(self) -> bytes:
        self.tags += 1
        return b"m%d" % self.tags

    async def command(self, label: str, line: bytes) -> Replies:
        """Send a command, read to its tagged response (which must be OK)."""
        tag = self._next_tag()
        with trio.fail_after(COMMAND_TIMEOUT):
            start = time.perf_counter()
            await self.stream.send_all(tag + b" " + line + b"\r\n")
            return await self._tagged(tag, label, start)

    async def idle(self) -> bytes:
        """Send IDLE and read to the server's continuation request; the IDLE's tag."""
        tag = self._next_tag()
        with trio.fail_after(COMMAND_TIMEOUT):
            start = time.perf_counter()
            await self.stream.send_all(tag + b" IDLE\r\n")
            while not (line := await self._response()).startswith(b"+"):
                if line.startswith(tag + b" "):
                    raise ProtocolFailure(f"IDLE: {line[:200]!r}")
        self.latencies.add("IDLE", time.perf_counter() - start)
        return tag

    async def done(self, tag: bytes) -> None:
        """End the IDLE of ``tag``: DONE, then read to its tagged OK."""
        with trio.fail_after(COMMAND_TIMEOUT):
            start = time.perf_counter()
            await self.stream.send_all(b"DONE\r\n")
            await self._tagged(tag, "DONE", start)

    async def aclose(self) -> None:
        """Close TLS and the socket (the transport is closed however this ends)."""
        with (
            trio.move_on_after(5),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
        ):
            await self.stream.aclose()


def login_line(user: User) -> bytes:
    return b'LOGIN "%s" "%s"' % (user.name.encode(), user.password.encode())


# -- the measurements -----------------------------------------------------------------


class Latencies:
    """Seconds per label, in the order measured."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, label: str, seconds: float) -> None:
        self.samples.setdefault(label, []).append(seconds)

    def commands(self) -> list[float]:
        """Every command's latency (connection set-ups left out)."""
        return [s for label, values in self.samples.items() if label != CONNECT for s in values]


class Barrier:
    """Set once ``parties`` tasks have arrived."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = trio.Event()
        self.at: float | None = None  # perf_counter when the last one arrived

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties and not self.event.is_set():
            self.at = time.perf_counter()
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


@dataclass(frozen=True)
class Expected:
    """What the direct session got from one mailbox's header listing: FETCH
    responses, and octets of header data."""

    fetches: int
    literal_octets: int


UID_ITEM = re.compile(rb"[( ]UID (\d+)[) ]")


@dataclass(frozen=True)
class Headers:
    """The direct session's header listing of one mailbox: octets of header data per
    UID (UIDs 1 to LISTED, or with ``--distinct`` every message)."""

    octets: dict[int, int]

    @classmethod
    def parse(cls, record: Sequence[tuple[bytes, int]]) -> Headers:
        """From ``Client.record``: every FETCH response must name its UID, once."""
        octets: dict[int, int] = {}
        for text, size in record:
            found = UID_ITEM.search(text)
            if found is None:
                raise ProtocolFailure(f"direct session: a FETCH without its UID: {text[:200]!r}")
            uid = int(found.group(1))
            if uid in octets:
                raise ProtocolFailure(f"direct session: UID {uid} fetched twice")
            octets[uid] = size
        return cls(octets)

    def listing(self, first: int, last: int) -> Expected:
        """What a listing of UIDs ``first`` to ``last`` should bring."""
        sizes = [size for uid, size in self.octets.items() if first <= uid <= last]
        return Expected(len(sizes), sum(sizes))


@dataclass
class Side:
    """One proxy's run and what was measured on it."""

    name: str
    refused: str | None = None  # the configuration check's words, when refused
    latencies: Latencies = field(default_factory=Latencies)
    errors: list[str] = field(default_factory=list)
    proxy_said: list[str] = field(default_factory=list)  # its complaints, on errors
    who: list[tuple[str, int]] = field(default_factory=list)  # (phase, connections)
    rss_start_kib: int = 0
    hwm_kib: int = 0
    work_commands: int = 0
    work_seconds: float = 0.0
    wall: float = 0.0
    proxy_cpu: float = 0.0  # seconds, the imapproxy process, the whole run
    client_cpu: float = 0.0  # seconds, this process, the whole run

    @property
    def measured(self) -> bool:
        """Run to the end without errors: its figures are whole."""
        return self.refused is None and not self.errors and bool(self.latencies.commands())

    @property
    def peak(self) -> int:
        return max((n for _, n in self.who), default=0)

    @property
    def idling(self) -> int:
        return max((n for phase, n in self.who if phase == "idle"), default=0)

    def p(self, q: float, label: str | None = None) -> float:
        values = self.latencies.commands() if label is None else self.latencies.samples[label]
        return relay.percentile(values, q)

    @property
    def rate(self) -> float:
        return self.work_commands / self.work_seconds if self.work_seconds else math.nan


def proc_status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def count_connections(server: DovecotServer, names: frozenset[str]) -> int:
    """Dovecot's logged-in IMAP connections of the users ``names``."""
    return sum(1 for e in server.doveadm_who() if e.proto == "imap" and e.username in names)


@dataclass
class Run:
    """Everything one side's clients share."""

    side: Side
    plan: Plan
    port: int
    ctx: ssl.SSLContext
    users: Sequence[User]
    expected: dict[tuple[str, str], Headers]
    distinct: bool
    logged_in: Barrier = field(init=False)
    idling: Barrier = field(init=False)
    go: trio.Event = field(default_factory=trio.Event)
    wake: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def __post_init__(self) -> None:
        self.logged_in = Barrier(self.plan.clients)
        self.idling = Barrier(self.plan.clients)

    def fail(self, text: str) -> None:
        self.side.errors.append(text)
        self.scope.cancel()


async def client_session(run: Run, number: int) -> None:
    """One client through the four phases."""
    index, mailbox = assignment(number, run.plan.users)
    user = run.users[index]
    first, last = window(number, run.plan, run.distinct)
    lines = work_lines(mailbox, first, last)
    expected = run.expected[user.name, mailbox].listing(first, last)
    try:
        client = await Client.connect(run.port, run.ctx, run.side.latencies)
        try:
            await client.command("LOGIN", login_line(user))
            run.logged_in.arrive()
            await run.go.wait()
            for label, line in lines:
                replies = await client.command(label, line)
                if label == LISTING:
                    check_listing(expected, replies)
            tag = await client.idle()
            run.idling.arrive()
            await run.wake.wait()
            await client.done(tag)
            await client.command("LOGOUT", b"LOGOUT")
        finally:
            await client.aclose()
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, ProtocolFailure) as exc:
        run.fail(f"client {number} ({user.name}, {mailbox}): {exc!r}")


def check_listing(expected: Expected, replies: Replies) -> None:
    if (replies.fetches, replies.literal_octets) != (expected.fetches, expected.literal_octets):
        raise ProtocolFailure(
            f"header listing: {replies.fetches} FETCH responses, {replies.literal_octets} "
            f"octets of header data; the mailbox has {expected.fetches}, "
            f"{expected.literal_octets}"
        )


async def sample_who(run: Run, server: DovecotServer, phase: str) -> None:
    names = frozenset(user.name for user in run.users)
    count = await trio.to_thread.run_sync(count_connections, server, names)
    run.side.who.append((phase, count))


async def sampler(run: Run, server: DovecotServer, scope: trio.CancelScope) -> None:
    """``doveadm who`` every ``sample_every`` seconds until ``scope`` is cancelled."""
    with scope:
        while True:
            await sample_who(run, server, "sample")
            await trio.sleep(run.plan.sample_every)


async def drive(
    side: Side,
    plan: Plan,
    port: int,
    ctx: ssl.SSLContext,
    users: Sequence[User],
    expected: dict[tuple[str, str], Headers],
    distinct: bool,
    server: DovecotServer,
    pid: int,
) -> None:
    """The four phases of one side's clients (any failure ends them all)."""
    run = Run(side, plan, port, ctx, users, expected, distinct)
    with run.scope:
        async with trio.open_nursery() as outer:
            sampling = trio.CancelScope()
            outer.start_soon(sampler, run, server, sampling)
            async with trio.open_nursery() as clients:
                relay.progress(f"{side.name}: phase 1, {plan.clients} clients connect and log in")
                for number in range(plan.clients):
                    clients.start_soon(client_session, run, number)
                    await trio.sleep(1 / plan.connect_rate)
                await run.logged_in.wait()
                await sample_who(run, server, "logged in")
                relay.progress(f"{side.name}: phase 2, SELECT, fetches, NOOPs, IDLE")
                start = time.perf_counter()
                run.go.set()
                await run.idling.wait()
                assert run.idling.at is not None
                side.work_seconds = run.idling.at - start
                side.work_commands = plan.clients * (len(WORK) + 1)
                relay.progress(f"{side.name}: phase 3, all idling for {plan.idle:g} s")
                await sample_who(run, server, "idle")
                await trio.sleep(plan.idle)
                await sample_who(run, server, "idle")
                side.hwm_kib = proc_status_kib(pid, "VmHWM")
                sampling.cancel()  # phase 4 is not sampled
                relay.progress(f"{side.name}: phase 4, DONE and LOGOUT")
                run.wake.set()
    side.hwm_kib = max(side.hwm_kib, proc_status_kib(pid, "VmHWM"))


async def direct_session(
    server: DovecotServer,
    user: User,
    distinct: bool,
    expected: dict[tuple[str, str], Headers],
) -> None:
    """Straight to Dovecot: each mailbox selected and fetched as the clients will
    (with ``distinct``, the headers and flags of every message, once), and the header
    data of each message listed kept in ``expected``."""
    client = await Client.connect(server.imaps_port, server.client_ssl_context(), Latencies())
    try:
        await client.command("LOGIN", login_line(user))
        for mailbox in MAILBOXES:
            for label, line in work_lines(mailbox, 1, None if distinct else LISTED):
                if label == LISTING:
                    client.record = []
                replies = await client.command(label, line)
                if label == LISTING and client.record is not None:
                    headers = Headers.parse(client.record)
                    client.record = None
                    got = headers.listing(1, max(headers.octets, default=0))
                    if got != Expected(replies.fetches, replies.literal_octets):
                        raise ProtocolFailure(f"direct session: {got} of {replies}")
                    expected[user.name, mailbox] = headers
        await client.command("LOGOUT", b"LOGOUT")
    finally:
        await client.aclose()


async def warm_up(
    server: DovecotServer, users: Sequence[User], distinct: bool
) -> dict[tuple[str, str], Headers]:
    expected: dict[tuple[str, str], Headers] = {}
    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(direct_session, server, user, distinct, expected)
    return expected


def wait_no_connections(server: DovecotServer, users: Sequence[User]) -> int:
    """Until Dovecot has none of the users' connections (up to 30 s); how many are left."""
    names = frozenset(user.name for user in users)
    deadline = time.monotonic() + 30
    while (left := count_connections(server, names)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def run_side(
    name: str,
    plan: Plan,
    root: Path,
    tls: ProxyTls,
    server: DovecotServer,
    users: Sequence[User],
    expected: dict[tuple[str, str], Headers],
    distinct: bool,
    multiplex: dict[str, object],
) -> Side:
    """One proxy with the ``[multiplex]`` table ``multiplex``, its clients' four phases."""
    side = Side(name)
    left = wait_no_connections(server, users)
    if left:
        side.errors.append(f"{left} connections of the benchmark's users still open upstream")
        return side
    limit = max(5000, 2 * plan.clients)
    with contextlib.ExitStack() as stack:
        try:
            port, pid = stack.enter_context(
                relay.run_imapproxy(
                    root / f"proxy-{name}",
                    tls,
                    server,
                    "none",
                    limits={"max_connections": limit, "max_connections_per_ip": limit},
                    multiplex=multiplex,
                )
            )
        except ConfigError as exc:
            side.refused = "; ".join(exc.errors)
            return side
        start = time.perf_counter()
        side.rss_start_kib = proc_status_kib(pid, "VmRSS")
        proxy0, client0 = relay.cpu_sample(pid), time.process_time()
        trio.run(
            drive, side, plan, port, tls.client_context(), users, expected, distinct, server, pid
        )
        side.proxy_cpu = relay.cpu_used(proxy0, relay.cpu_sample(pid))
        side.client_cpu = time.process_time() - client0
        side.wall = time.perf_counter() - start
    if side.errors:  # the proxy has stopped: what it said of them
        side.proxy_said = proxy_errors(root / f"proxy-{name}")
    return side


def proxy_errors(directory: Path, most: int = 12) -> list[str]:
    """The last complaints of an imapproxy process: lines of ``level`` warning, error or
    critical in its JSON log, and the end of what it wrote to stderr (a traceback)."""
    found = []
    with contextlib.suppress(OSError):
        for line in (directory / "imapproxy.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error", "critical"):
                    found.append(f"proxy log: {line[:300]}")
    with contextlib.suppress(OSError):
        lines = (directory / "imapproxy.out").read_text(errors="replace").splitlines()
        found += [f"proxy stderr: {line[:300]}" for line in lines[-most:]]
    return found[-most:]


# -- mail -------------------------------------------------------------------------------


def give_mail(user: User, messages: int) -> None:
    """The user's three mailboxes of ``messages`` listing messages each, seeded by user
    and mailbox."""
    for mailbox in MAILBOXES:
        rng = random.Random(f"{user.name}/{mailbox}")
        cache.write_mailbox(
            user, mailbox, [cache.listing_message(n, rng) for n in range(1, messages + 1)]
        )


def dovecot_limits(plan: Plan) -> str:
    """Dovecot settings for ``plan.clients`` logged-in connections at once (every one
    an imap process of its own), with room to spare."""
    processes = max(1000, plan.clients + 100)
    return "\n".join(
        [
            "protocol imap {",
            f"  mail_max_userip_connections = {plan.clients + 10}",
            "}",
            "service imap {",
            f"  process_limit = {processes}",
            "}",
            "service imap-login {",
            f"  client_limit = {processes}",
            "}",
        ]
    )


def raise_fd_limit(wanted: int) -> None:
    """This process's soft open-files limit up to ``wanted`` (the proxies inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- output ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def commands_notes(plan: Plan, distinct: bool) -> list[str]:
    """What the two fetches of phase 2 were, and whether clients repeated them."""
    repeats = repeated_commands(plan, distinct)
    if not distinct:
        return [
            f"- UID FETCH headers: {HEADERS.decode()}; UID FETCH flags: {FLAGS.decode()}; "
            "every client of a mailbox sends the same two (the shared proxy may answer "
            "identical read-only commands waiting at the same time with one upstream "
            "execution)"
        ]
    span = plan.messages - LISTED + 1
    return [
        f"- UID FETCH headers: {headers_line(1, LISTED).decode().replace('1:50', 'a:b', 1)}"
        f" with a = 1 + (client * {STEP}) mod {span}, b = a + {LISTED - 1}; "
        f"UID FETCH flags: {flags_line(1).decode().replace('1:*', 'a:*', 1)}; "
        + (
            "no two clients of a mailbox send the same command (those waiting together are "
            "merged: one UID FETCH over the union of their sets)"
            if not repeats
            else f"{repeats:,} clients repeat another client's window of their mailbox"
        )
        + " (expected counts and octets per window from the direct session's listing of "
        "all headers)"
    ]


def render(sides: dict[str, Side], plan: Plan, distinct: bool, wall: float) -> list[str]:
    unshared, shared = sides["unshared"], sides["shared"]
    both = unshared.measured and shared.measured
    target = mailboxes_in_use(plan)
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, a: str, b: str, ratio: float | None = None) -> None:
        rows.append((label, a, b, f"{ratio:.2f}x" if ratio is not None and both else "-"))

    def value(side: Side, text: str) -> str:
        return text if side.measured else "-"

    def ratio(a: float, b: float) -> float | None:
        return b / a if both and a else None

    u, s = unshared, shared
    row(
        "upstream connections, peak",
        value(u, f"{u.peak:,}"),
        value(s, f"{s.peak:,}"),
        ratio(u.peak, s.peak),
    )
    row(
        "upstream connections, all idling",
        value(u, f"{u.idling:,}"),
        value(s, f"{s.idling:,}"),
        ratio(u.idling, s.idling),
    )
    row(
        "commands/s (phase 2)",
        value(u, f"{u.rate:,.0f}"),
        value(s, f"{s.rate:,.0f}"),
        ratio(u.rate, s.rate),
    )
    for q in (50, 99):
        a = u.p(q) if u.measured else math.nan
        b = s.p(q) if s.measured else math.nan
        row(f"latency p{q}, all commands (ms)", value(u, _ms(a)), value(s, _ms(b)), ratio(a, b))
    row(
        "proxy RSS peak, VmHWM (MiB)",
        value(u, _mib(u.hwm_kib)),
        value(s, _mib(s.hwm_kib)),
        ratio(u.hwm_kib, s.hwm_kib),
    )
    row(
        "proxy RSS before the clients (MiB)",
        value(u, _mib(u.rss_start_kib)),
        value(s, _mib(s.rss_start_kib)),
    )
    row(
        "proxy CPU, the whole run (s)",
        value(u, f"{u.proxy_cpu:.1f}"),
        value(s, f"{s.proxy_cpu:.1f}"),
        ratio(u.proxy_cpu, s.proxy_cpu),
    )
    row(
        "client CPU, the whole run (s)",
        value(u, f"{u.client_cpu:.1f}"),
        value(s, f"{s.client_cpu:.1f}"),
    )
    row("wall time of the run (s)", value(u, f"{u.wall:.1f}"), value(s, f"{s.wall:.1f}"))

    width = max(len(r[0]) for r in rows)
    out = [
        "",
        f"{plan.clients:,} clients of {plan.users} users, {len(MAILBOXES)} mailboxes each "
        f"({mailboxes_in_use(plan)} in use), {plan.messages} messages a mailbox",
        f"commands: {mode(distinct)}",
        f"{'':<{width}}  {'unshared':>10}  {'shared':>10}  {'shared/unshared':>15}",
        *(f"{label:<{width}}  {a:>10}  {b:>10}  {r:>15}" for label, a, b, r in rows),
    ]
    for side in (u, s):
        if side.refused is not None:
            out.append(f"{side.name}: not available (config refused: {side.refused})")
        elif side.errors:
            out.append(f"{side.name}: FAILED:")
            out += [f"  {error}" for error in side.errors[:5]]
            if len(side.errors) > 5:
                out.append(f"  ({len(side.errors) - 5} more)")
            out += [f"  {line}" for line in side.proxy_said]

    labels = {CONNECT: "connect (TCP, TLS, greeting)", **{c: c for c in COMMANDS}}
    lw = max(len(name) for name in labels.values())
    out += ["", "Latency by command in ms, p50 / p99 (count)"]
    out.append(f"{'':<{lw}}  {'unshared':>24}  {'shared':>24}")
    for label, name in labels.items():
        cells = []
        for side in (u, s):
            values = side.latencies.samples.get(label) if side.measured else None
            if values:
                cells.append(
                    f"{_ms(relay.percentile(values, 50))} / {_ms(relay.percentile(values, 99))}"
                    f" ({len(values)})"
                )
            else:
                cells.append("-")
        out.append(f"{name:<{lw}}  {cells[0]:>24}  {cells[1]:>24}")

    out += ["", "Targets (issue 6)"]
    if s.measured:
        out.append(
            f"shared upstream connections at peak <= users x mailboxes in use ({target}): "
            f"{s.peak:,}  {_verdict(s.peak <= target)}"
        )
    else:
        out.append(
            f"shared upstream connections at peak <= users x mailboxes in use ({target}): "
            "not measured"
        )
    if both:
        p99 = s.p(99) / u.p(99)
        out.append(
            f"shared p99 <= {P99_TARGET:g}x unshared (all commands): {p99:.2f}x  "
            f"{_verdict(p99 <= P99_TARGET)}"
        )
    else:
        out.append(f"shared p99 <= {P99_TARGET:g}x unshared (all commands): not measured")

    out += [
        "",
        "Notes",
        f"- phase 1: clients connect at {plan.connect_rate:g}/s (TCP, TLS, greeting, LOGIN); "
        "phase 2, all at once: "
        + ", ".join(label for label, _ in WORK)
        + f", IDLE; phase 3: all idle for {plan.idle:g} s; phase 4: DONE, LOGOUT",
        *commands_notes(plan, distinct),
        f"- upstream connections: doveadm who -1, every {plan.sample_every:g} s in phases "
        "1-3, at the end of phase 1, and at the start and end of phase 3",
        "- latency: from sending a command line to its tagged response (IDLE: to its "
        "continuation request), nearest-rank percentiles; commands/s: the six commands a "
        "client of phase 2 over its wall time",
        "- RSS: VmHWM and VmRSS of the imapproxy process (/proc/PID/status); each proxy "
        "runs only during its own turn (unshared first); CPU: utime + stime of the imapproxy "
        "process (/proc/PID/stat) and this client's process_time(), phases 1-4",
        f"- {os.cpu_count()} CPU cores shared by Dovecot (one imap process a connection), "
        "imapproxy and this client (every client session a Trio task in one process)",
        f"- wall time of the whole benchmark: {wall:.1f} s",
    ]
    return out


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK.clients} clients of {QUICK.users} users"
    )
    parser.add_argument("--clients", type=int, help=f"client sessions ({FULL.clients})")
    parser.add_argument("--users", type=int, help=f"users ({FULL.users})")
    parser.add_argument(
        "--sessions-per-connection",
        type=int,
        default=MULTIPLEX["shared"]["max_sessions_per_connection"],
        help="the shared proxy's multiplex.max_sessions_per_connection (%(default)s)",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each client its own header window and flags fetch (no two clients of a "
        "mailbox send the same command): nothing identical to coalesce, only merging",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.clients is not None or args.users is not None:
        plan = Plan(
            clients=plan.clients if args.clients is None else args.clients,
            users=plan.users if args.users is None else args.users,
            messages=plan.messages,
            connect_rate=plan.connect_rate,
            idle=plan.idle,
            sample_every=plan.sample_every,
        )
    if not 1 <= plan.users <= plan.clients:
        parser.error("need 1 <= --users <= --clients")
    if args.distinct and plan.messages < LISTED:
        parser.error(f"--distinct needs at least {LISTED} messages a mailbox")
    began = time.perf_counter()
    print(
        f"Multiplexing benchmark: {plan.clients:,} clients of {plan.users} users through "
        f"imapproxy, upstream connections unshared vs shared "
        f"({'--quick' if args.quick else 'full'} run)"
    )
    print(
        "shared: [multiplex] "
        + ", ".join(
            f"{key} = {str(value).lower()}"
            for key, value in {
                **MULTIPLEX["shared"],
                "max_sessions_per_connection": args.sessions_per_connection,
            }.items()
        )
    )
    print(f"commands: {mode(args.distinct)}")
    print(
        f"{os.cpu_count()} CPU cores shared by Dovecot, imapproxy and this client; "
        f"Python {platform.python_version()}"
    )
    sys.stdout.flush()
    raise_fd_limit(4 * plan.clients + 1000)
    root = Path(tempfile.mkdtemp(prefix="imapproxy-bench-mux-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach its work dir inside
    sides: dict[str, Side] = {}
    try:
        try:
            server = DovecotServer(root / "dovecot", extra_config=dovecot_limits(plan))
            server.start()
        except DovecotNotInstalled as exc:
            raise SystemExit(f"not measured: {exc}") from None
        try:
            relay.progress(f"writing mail: {plan.users} users x {len(MAILBOXES)} mailboxes")
            users = []
            for u in range(plan.users):
                user = server.add_user(f"mux{u:02d}", with_corpus=False)
                give_mail(user, plan.messages)
                users.append(user)
            relay.progress("warm-up: one direct session per user")
            expected = trio.run(warm_up, server, users, args.distinct)
            tls = ProxyTls.create(root / "proxy-tls")
            for name in SIDES:
                multiplex = dict(MULTIPLEX[name])
                if name == "shared":
                    multiplex["max_sessions_per_connection"] = args.sessions_per_connection
                sides[name] = run_side(
                    name, plan, root, tls, server, users, expected, args.distinct, multiplex
                )
            dovecot_errors = server.log_errors()
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for line in render(sides, plan, args.distinct, time.perf_counter() - began):
        print(line)
    if dovecot_errors:
        print(f"Dovecot logged {len(dovecot_errors)} error(s); the first: {dovecot_errors[0]}")
    failed = [side.name for side in sides.values() if side.errors]
    if failed:
        raise SystemExit(f"protocol failures on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
