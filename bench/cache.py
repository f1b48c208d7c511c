"""Part cache benchmark: cold vs warm FETCH through imapproxy over a slow upstream link.

Run: ``make bench`` (or ``.venv/bin/python bench/cache.py [--quick]``).

**The link.** A throttling TCP relay sits between imapproxy and Dovecot's plain IMAP
port, emulating a 50 ms round trip at 20 Mbit/s (``tc netem`` is not available here).
It runs in its own process (``bench/cache.py --throttle HOST:PORT``: Trio, one task
reading and one writing per direction of each connection). Each direction is a
:class:`Link`: every chunk read is timestamped on arrival and cut into slices of at
most 8 KiB; a token bucket of 8 KiB filling at 20 Mbit/s (2.5 MB/s) decides when each
slice may leave, and it is delivered 25 ms after that (so 25 ms one way, 50 ms a round
trip, never faster than the rate, data in order). A slice the writer takes up late
(the receiving side was slow to read) counts as arriving then, so a backlog never goes
out in a burst.
At most 2 MiB per direction wait in the relay; beyond that it stops reading, and TCP's
flow control holds the sender. Both TCP connections are on loopback: the relay adds
only the delay and the rate, not TCP's own behaviour on a long path (slow start,
window limits), nor a delay to connection set-up.

**What is measured.** A private Dovecot (as ``bench/relay.py`` starts it, whose
helpers this uses) and two imapproxy processes (``python -m imapproxy serve``, TLS to
the client on loopback, plain IMAP to the relay, logging at info as JSON lines to a
file), alike but for one rule: *off* has ``[[rule]] log = "info"`` (an audit line per
command, no cache); *cache* has the same plus ``cache = { admit_after = 1 }`` (every
fetched item stored at once; the ``[cache]`` defaults: a 64 MiB memory tier). Each
round gives each proxy a fresh user (so "cold" is cold: cache entries are per user)
holding ``Attachment``, one message whose part 2 is a 2 MiB base64 attachment, and
``INBOX`` and ``Listing``, 500 small messages each. One client session per proxy and
round (a raw TLS socket that skips literal data by its ``{n}`` count; see
``relay.Client``) examines each mailbox in turn and sends its fetch twice:

(a) ``UID FETCH 1 (BODY.PEEK[2])`` in ``Attachment``;
(b) ``UID FETCH 1:500 (UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])``
    in ``INBOX``: the header listing, whose warm fetch needs no upstream round trip;
(c) the same with ``FLAGS`` in ``Listing``: its warm fetch waits for one small
    upstream command (``UID FETCH 1:500 (UID FLAGS)``), a round trip at least.

*off* is the first fetch through the proxy without the cache (*off again* its second),
*cold* the first with the cache and *warm* its second. Each time is the median over
the rounds; the ratios are the medians of the per-round ratios (the proxies take turns,
off first in even rounds, after an unrecorded warm-up session on each). After the
run the cache proxy's audit log is read: every cold fetch should be a cache miss and
every warm one a hit (``"cache"`` of the audit line); the counts are printed, and each
fetch that was not as expected is listed (the times include it as measured). The
cache's counters (its ``cache counters`` line, written as it stops) are printed too.
The benchmark fails only when a second fetch brings another amount of message data
than the first. The imapproxy process's CPU per fetch is shown alongside, from
``/proc/PID/task/*/schedstat``.

Targets (issue 5): warm >= 20x faster than cold; cold at most 5% slower than off
(cold/off <= 1.05x), for the attachment and the header listing. The FLAGS variant is
shown for information.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import relay  # bench/relay.py: bench/ is sys.path[0] when this script runs
import trio

from imapproxy.testing import DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls

ONE_WAY_DELAY = 0.025
"""Seconds added to every slice in each direction (a 50 ms round trip)."""
RATE = 20e6 / 8
"""Octets per second in each direction (20 Mbit/s)."""
BURST = 8 * 1024
"""The token bucket's size, and the largest slice, in octets."""
READ_SIZE = 64 * 1024
QUEUE_SLICES = 256
"""Slices waiting per direction before the relay stops reading (2 MiB)."""

ATTACHMENT_OCTETS = 2 * 1024 * 1024
"""The attachment part's size on the wire (base64, CRLF line ends), to a whole line."""
LISTING = 500
HEADER_FIELDS = b"FROM TO SUBJECT DATE MESSAGE-ID"
COLD_WARM_TARGET = 20.0
COLD_OFF_TARGET = 1.05
MODES = ("off", "cache")
OFF_RULE = '[[rule]]\nname = "audit"\nlog = "info"\n'
CACHE_RULE = '[[rule]]\nname = "audit and cache"\nlog = "info"\ncache = { admit_after = 1 }\n'


# -- the link (pure) -----------------------------------------------------------------


class Link:
    """One direction of the emulated link: a token bucket of ``burst`` octets that
    fills at ``rate`` octets per second, then ``delay`` seconds of propagation.

    Pure bookkeeping: :meth:`schedule` is given the times and says when to deliver;
    the caller sleeps. Slices must be scheduled in the order they are delivered.
    """

    def __init__(self, rate: float, delay: float, burst: int) -> None:
        if rate <= 0 or delay < 0 or burst <= 0:
            raise ValueError("a link needs rate > 0, delay >= 0 and burst > 0")
        self.rate = rate
        self.delay = delay
        self.burst = burst
        self._full_at = -math.inf  # when the bucket is full again

    def schedule(self, arrival: float, size: int, now: float | None = None) -> float:
        """When to deliver a slice of ``size`` octets (at most ``burst``) that arrived
        at ``arrival``: once the bucket holds ``size`` tokens (and not before it
        arrived), plus the delay. ``now`` is when the slice is taken up: one taken
        up late (the writer was held up) counts as arriving at ``now - delay``, so
        deliveries never outpace the rate."""
        if not 0 < size <= self.burst:
            raise ValueError(f"a slice of {size} octets does not fit a {self.burst}-octet bucket")
        if now is not None:
            arrival = max(arrival, now - self.delay)
        # With the bucket full again at F, it holds burst - rate * (F - t) tokens at t.
        leaves = max(arrival, self._full_at - (self.burst - size) / self.rate)
        self._full_at = max(self._full_at, leaves) + size / self.rate
        return leaves + self.delay


def slices(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` octets, in order."""
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- the throttling relay (its own process) ------------------------------------------


async def _direction(
    source: trio.SocketStream, sink: trio.SocketStream, link: Link, done: trio.CancelScope
) -> None:
    """Relay one direction through ``link`` until end of file (then half-close);
    any failure ends the whole connection (``done``)."""
    send, receive = trio.open_memory_channel[tuple[float, bytes]](QUEUE_SLICES)

    async def read() -> None:
        async with send:
            while data := await source.receive_some(READ_SIZE):
                arrival = trio.current_time()
                for piece in slices(data, link.burst):
                    await send.send((arrival, piece))

    async def write() -> None:
        async with receive:
            async for arrival, piece in receive:
                await trio.sleep_until(link.schedule(arrival, len(piece), trio.current_time()))
                await sink.send_all(piece)
        await sink.send_eof()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)
    except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        done.cancel()


async def _connection(upstream: tuple[str, int], client: trio.SocketStream) -> None:
    async with client:
        try:
            server = await trio.open_tcp_stream(*upstream)
        except OSError:
            return
        async with server, trio.open_nursery() as nursery:
            for source, sink in ((client, server), (server, client)):
                link = Link(RATE, ONE_WAY_DELAY, BURST)
                nursery.start_soon(_direction, source, sink, link, nursery.cancel_scope)


async def serve_throttled(upstream: tuple[str, int]) -> None:
    """Listen on an ephemeral loopback port (printed on stdout, one line) and relay
    every connection to ``upstream`` through two :class:`Link` directions."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(functools.partial(_connection, upstream), listeners)


@contextlib.contextmanager
def throttled_relay(upstream_port: int) -> Iterator[int]:
    """The throttling relay to ``127.0.0.1:upstream_port`` in its own process: its port."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--throttle", f"127.0.0.1:{upstream_port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the throttling relay did not start (exit {proc.poll()})")
        yield int(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- mail -----------------------------------------------------------------------------


def attachment_message(rng: random.Random) -> bytes:
    """A multipart/mixed message: a short text part, then a base64 attachment part of
    just under :data:`ATTACHMENT_OCTETS` on the wire (76 characters + CRLF per line)."""
    lines = ATTACHMENT_OCTETS // 78
    blob = base64.b64encode(rng.randbytes(lines * 57))
    attachment = b"\n".join(blob[i : i + 76] for i in range(0, len(blob), 76)) + b"\n"
    boundary = b"=_bench_boundary_4711"
    return b"".join(
        [
            b"From: Report Robot <reports@example.org>\n",
            b"To: Bench User <bench@example.org>\n",
            b"Subject: The quarterly figures, attached\n",
            b"Date: Mon, 1 Jul 2024 09:00:00 +0000\n",
            b"Message-ID: <attachment1@example.org>\n",
            b"MIME-Version: 1.0\n",
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n',
            b"\n",
            b"This is a multi-part message in MIME format.\n",
            b"--" + boundary + b"\n",
            b"Content-Type: text/plain; charset=utf-8\n",
            b"Content-Transfer-Encoding: 7bit\n",
            b"\n",
            b"Hello,\n\nthe figures are attached.\n\nRegards,\nthe report robot\n",
            b"--" + boundary + b"\n",
            b'Content-Type: application/octet-stream; name="figures.bin"\n',
            b"Content-Transfer-Encoding: base64\n",
            b'Content-Disposition: attachment; filename="figures.bin"\n',
            b"\n",
            attachment,
            b"--" + boundary + b"--\n",
        ]
    )


_TEXT = (
    "budget meeting review draft plan notes lunch travel invoice report release "
    "design question update schedule team project contract feedback minutes agenda"
)
_WORDS = _TEXT.split()


def listing_message(n: int, rng: random.Random) -> bytes:
    """A small plain-text message, headers as a mail client would find them."""
    subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 9)))
    body = "\n".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(6, 14)))
        for _ in range(rng.randrange(3, 15))
    )
    day = 1 + n % 28
    return (
        f"Return-Path: <sender{n % 37}@example.org>\n"
        f"Received: from mx.example.org by imap.example.org; {day} Jun 2024 10:00:00 +0000\n"
        f"From: Sender {n % 37} <sender{n % 37}@example.org>\n"
        "To: Bench User <bench@example.org>\n"
        f"Subject: {subject.capitalize()} ({n})\n"
        f"Date: Sat, {day} Jun 2024 {n % 24:02d}:{n % 60:02d}:00 +0000\n"
        f"Message-ID: <listing{n}.{rng.randrange(10**9)}@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        f"{body}\n"
    ).encode()


def write_mailbox(user: User, name: str, messages: Sequence[bytes]) -> None:
    """``messages`` straight into a Maildir++ mailbox of the user (``INBOX`` or a
    top-level ``name``), owned like the user's home; some seen, some flagged."""
    owner = user.home.stat()
    folder = user.maildir if name == "INBOX" else user.maildir / f".{name}"
    for path in (user.maildir, folder, *(folder / sub for sub in ("cur", "new", "tmp"))):
        path.mkdir(exist_ok=True)
        os.chown(path, owner.st_uid, owner.st_gid)
    for n, message in enumerate(messages, 1):
        flags = "" if n % 3 == 0 else ("FS" if n % 7 == 0 else "S")
        path = folder / "cur" / f"{1719820000 + n}.M{n}P1.bench:2,{flags}"
        path.write_bytes(message)
        os.chown(path, owner.st_uid, owner.st_gid)


@dataclass
class Mail:
    attachment: bytes
    listing: list[bytes]

    @classmethod
    def create(cls) -> Mail:
        rng = random.Random(5)
        return cls(
            attachment_message(rng), [listing_message(n, rng) for n in range(1, LISTING + 1)]
        )

    def give(self, user: User) -> None:
        write_mailbox(user, "Attachment", [self.attachment])
        write_mailbox(user, "INBOX", self.listing)
        write_mailbox(user, "Listing", self.listing)


# -- the measurements -----------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    key: str
    label: str
    mailbox: bytes
    command: bytes


FETCHES = (
    Fetch("attachment", "2 MB attachment", b"Attachment", b"UID FETCH 1 (BODY.PEEK[2])"),
    Fetch(
        "listing",
        "500-message header listing",
        b"INBOX",
        b"UID FETCH 1:%d (UID BODY.PEEK[HEADER.FIELDS (%s)])" % (LISTING, HEADER_FIELDS),
    ),
    Fetch(
        "flags",
        "500-message header listing + FLAGS",
        b"Listing",
        b"UID FETCH 1:%d (UID FLAGS BODY.PEEK[HEADER.FIELDS (%s)])" % (LISTING, HEADER_FIELDS),
    ),
)
TARGETED = ("attachment", "listing")


@dataclass(frozen=True)
class Timed:
    seconds: float
    tag: str
    literal_octets: int  # message data received
    proxy_cpu: float  # seconds of the proxy's process


@dataclass
class ProxyUnderTest:
    """One imapproxy process, and what was measured through it."""

    mode: str
    target: relay.Target
    log: Path
    # fetch key -> per round: (first, second)
    runs: dict[str, list[tuple[Timed, Timed]]] = field(default_factory=dict)
    sessions: list[str] = field(default_factory=list)  # measured users

    def timed(self, client: relay.Client, command: bytes) -> Timed:
        pid = self.target.relay_pid
        assert pid is not None
        cpu0 = process_cpu(pid)
        literal0 = client.scanner.literal_octets
        start = time.perf_counter()
        client.command(command)
        seconds = time.perf_counter() - start
        cpu = process_cpu(pid) - cpu0
        # relay.Client tags its commands b1, b2, ...: this one was the last.
        return Timed(seconds, f"b{client.tags}", client.scanner.literal_octets - literal0, cpu)

    def session(self, user: User, *, record: bool = True) -> None:
        """One client session: each fetch twice in its mailbox."""
        client = relay.Client(self.target, user)  # logged in, INBOX examined
        try:
            for fetch in FETCHES:
                client.command(b"EXAMINE " + fetch.mailbox)
                first = self.timed(client, fetch.command)
                second = self.timed(client, fetch.command)
                if first.literal_octets != second.literal_octets:
                    raise RuntimeError(
                        f"{self.mode}: {fetch.label}: {first.literal_octets} octets of "
                        f"message data, then {second.literal_octets}"
                    )
                if record:
                    self.runs.setdefault(fetch.key, []).append((first, second))
        finally:
            client.close()
        if record:
            self.sessions.append(user.name)


def process_cpu(pid: int) -> float:
    """CPU seconds of a process's threads so far, to the nanosecond (the first field
    of ``/proc/PID/task/TID/schedstat``; ``/proc/PID/stat`` counts clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def audit_cache_fields(log: Path) -> dict[tuple[str, str], str | None]:
    """(user, tag) -> the ``cache`` field of each UID FETCH's audit line."""
    out = {}
    with open(log, encoding="utf-8") as f:
        for line in f:
            if '"command"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("event") == "command" and entry.get("command") == "UID FETCH":
                out[entry.get("user"), entry.get("tag")] = entry.get("cache")
    return out


def cache_counters(log: Path) -> dict[str, object] | None:
    """The last ``cache counters`` line of a JSON-lines log (the proxy writes one as it
    stops), without the logging fields; None when there is none."""
    last = None
    with open(log, encoding="utf-8") as f:
        for line in f:
            if '"cache counters"' in line:
                last = json.loads(line)
    if last is None:
        return None
    skip = {"event", "logger_name", "level", "timestamp"}
    return {key: value for key, value in last.items() if key not in skip}


@dataclass
class Plan:
    rounds: int


QUICK = Plan(rounds=2)
FULL = Plan(rounds=9)


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


@dataclass
class Row:
    fetch: Fetch
    off: float  # ms
    off_again: float
    cold: float
    warm: float
    cold_warm: float  # median of per-round ratios
    cold_off: float
    octets: int
    cpu: tuple[float, float, float]  # proxy CPU ms: off, cold, warm


def rows(proxies: dict[str, ProxyUnderTest]) -> list[Row]:
    out = []
    for fetch in FETCHES:
        off, cache = proxies["off"].runs[fetch.key], proxies["cache"].runs[fetch.key]
        out.append(
            Row(
                fetch,
                off=median_ms([first.seconds for first, _ in off]),
                off_again=median_ms([second.seconds for _, second in off]),
                cold=median_ms([cold.seconds for cold, _ in cache]),
                warm=median_ms([warm.seconds for _, warm in cache]),
                cold_warm=statistics.median(cold.seconds / warm.seconds for cold, warm in cache),
                cold_off=statistics.median(
                    c.seconds / o.seconds for (c, _), (o, _) in zip(cache, off, strict=True)
                ),
                octets=cache[0][0].literal_octets,
                cpu=(
                    median_ms([first.proxy_cpu for first, _ in off]),
                    median_ms([cold.proxy_cpu for cold, _ in cache]),
                    median_ms([warm.proxy_cpu for _, warm in cache]),
                ),
            )
        )
    return out


def render(
    table: list[Row],
    plan: Plan,
    hits: Hits,
    counters: dict[str, object] | None,
) -> list[str]:
    width = max(len(row.fetch.label) for row in table)
    out = [
        "",
        f"Times in ms, median of {plan.rounds} rounds; ratios: median of the rounds' ratios",
        f"{'fetch':<{width}}  {'off':>7}  {'off again':>9}  {'cold':>7}  {'warm':>7}"
        f"  {'cold/warm (>= 20x)':>20}  {'cold/off (<= 1.05x)':>20}",
    ]
    for row in table:
        targeted = row.fetch.key in TARGETED
        cold_warm = f"{row.cold_warm:6.1f}x " + (
            _met(row.cold_warm >= COLD_WARM_TARGET) if targeted else "info"
        )
        cold_off = f"{row.cold_off:6.3f}x " + (
            _met(row.cold_off <= COLD_OFF_TARGET) if targeted else "info"
        )
        out.append(
            f"{row.fetch.label:<{width}}  {row.off:7.1f}  {row.off_again:9.1f}  {row.cold:7.1f}"
            f"  {row.warm:7.1f}  {cold_warm:>20}  {cold_off:>20}"
        )
    out += ["", "imapproxy CPU per fetch in ms (median): off / cold / warm"]
    for row in table:
        off, cold, warm = row.cpu
        out.append(f"{row.fetch.label:<{width}}  {off:7.1f} / {cold:7.1f} / {warm:7.1f}")
    out += ["", "Targets (issue 5)"]
    for row in table:
        if row.fetch.key not in TARGETED:
            continue
        out.append(
            f"{row.fetch.label}: warm >= {COLD_WARM_TARGET:g}x faster than cold: "
            f"{row.cold_warm:.1f}x {_met(row.cold_warm >= COLD_WARM_TARGET)}; "
            f"cold <= {COLD_OFF_TARGET:g}x off: {row.cold_off:.3f}x "
            f"{_met(row.cold_off <= COLD_OFF_TARGET)}"
        )
    out += [
        "",
        f"Cache proxy audit log: cold fetches {hits.misses} of {hits.colds} misses, "
        f"warm fetches {hits.hits} of {hits.warms} hits",
        *(f"  NOT as expected: {line}" for line in hits.unexpected),
        "Cache proxy counters as it stopped (warm-up session included): "
        + (", ".join(f"{key} {value}" for key, value in counters.items()) if counters else "none"),
        "",
        "Commands",
    ]
    for row in table:
        out.append(
            f"{row.fetch.label}: {row.fetch.command.decode()} in "
            f"{row.fetch.mailbox.decode()} ({row.octets:,} octets of message data)"
        )
    out += [
        "",
        "Notes",
        "- off: the first fetch through the proxy without the cache; off again: its second "
        "(Dovecot's own caches warm); cold: the first with the cache (a fresh user: nothing "
        "cached); warm: its second. Each fetch is the first command after EXAMINE of its "
        "mailbox, in one client session per proxy and round, the proxies taking turns",
        "- the FLAGS variant is not a target: its warm fetch waits for a UID FETCH (UID FLAGS) "
        f"upstream, a {2 * ONE_WAY_DELAY * 1000:g} ms round trip at least",
        "- CPU: the imapproxy process's threads from /proc/PID/task/*/schedstat, read before "
        "and after each fetch",
    ]
    return out


@dataclass
class Hits:
    """What the cache proxy's audit log says of the timed fetches."""

    misses: int = 0  # cold fetches that were misses
    colds: int = 0
    hits: int = 0  # warm fetches that were hits
    warms: int = 0
    unexpected: list[str] = field(default_factory=list)


def check_hits(proxy: ProxyUnderTest) -> Hits:
    """Every cold fetch should be a miss and every warm one a hit."""
    fields = audit_cache_fields(proxy.log)
    out = Hits()
    for fetch in FETCHES:
        for r, (user, (cold, warm)) in enumerate(
            zip(proxy.sessions, proxy.runs[fetch.key], strict=True)
        ):
            out.colds += 1
            out.warms += 1
            for which, timed, expected in (("cold", cold, "miss"), ("warm", warm, "hit")):
                found = fields.get((user, timed.tag), "no audit line")
                if found == expected:
                    out.misses += which == "cold"
                    out.hits += which == "warm"
                else:
                    out.unexpected.append(
                        f"round {r + 1}, {fetch.label}, {which} ({timed.seconds * 1000:.1f} ms): "
                        f"{found}"
                    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~25 s)")
    parser.add_argument("--throttle", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throttle:
        host, port = args.throttle.rsplit(":", 1)
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve_throttled, (host, int(port)))
        return
    plan = QUICK if args.quick else FULL
    print(
        f"Part cache benchmark: imapproxy over a slow link to Dovecot "
        f"({'--quick' if args.quick else 'full'} run, {plan.rounds} rounds)"
    )
    print(
        f"link (throttling TCP relay, proxy <-> Dovecot): {ONE_WAY_DELAY * 1000:g} ms each way "
        f"({2 * ONE_WAY_DELAY * 1000:g} ms round trip), {RATE * 8 / 1e6:g} Mbit/s each way "
        f"(token bucket, {BURST // 1024} KiB); client to proxy: TLS on loopback"
    )
    print(
        f"{os.cpu_count()} CPU cores shared by Dovecot, imapproxy, the relay and this client; "
        f"Python {platform.python_version()}"
    )
    sys.stdout.flush()
    mail = Mail.create()
    root = Path(tempfile.mkdtemp(prefix="imapproxy-bench-cache-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach its work dir inside
    proxies: dict[str, ProxyUnderTest] = {}
    try:
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(DovecotServer(root / "dovecot"))
            except DovecotNotInstalled as exc:
                raise SystemExit(f"not measured: {exc}") from None
            tls = ProxyTls.create(root / "proxy-tls")
            for mode, rule in (("off", OFF_RULE), ("cache", CACHE_RULE)):
                rules_dir = root / f"rules-{mode}"
                rules_dir.mkdir()
                (rules_dir / "bench.toml").write_text(rule)
                link_port = stack.enter_context(throttled_relay(server.imap_port))
                port, pid = stack.enter_context(
                    relay.run_imapproxy(
                        root / f"proxy-{mode}",
                        tls,
                        server,
                        "none",
                        rules={"dir": str(rules_dir)},
                        upstream_address=f"127.0.0.1:{link_port}",
                    )
                )
                target = relay.Target(mode, port, tls.client_context(), pid)
                proxies[mode] = ProxyUnderTest(
                    mode, target, root / f"proxy-{mode}" / "imapproxy.log"
                )
            relay.progress("writing mail")
            users = {}
            for r in range(-1, plan.rounds):  # round -1: warm-up, not recorded
                for mode in MODES:
                    user = server.add_user(f"{mode}{r + 1:02d}", with_corpus=False)
                    mail.give(user)
                    users[mode, r] = user
            relay.progress("warm-up session on each proxy")
            for mode in MODES:
                proxies[mode].session(users[mode, -1], record=False)
            for r in range(plan.rounds):
                relay.progress(f"round {r + 1}/{plan.rounds}")
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    proxies[mode].session(users[mode, r])
        # The proxies have stopped: their logs are complete.
        hits = check_hits(proxies["cache"])
        counters = cache_counters(proxies["cache"].log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for line in render(rows(proxies), plan, hits, counters):
        print(line)


if __name__ == "__main__":
    main()
