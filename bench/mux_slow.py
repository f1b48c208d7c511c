"""Head-of-line benchmark: a client that reads a 10 MB FETCH slowly, and the other
sessions of its user on the same shared upstream connection.

Run: ``make bench-mux`` (after ``bench/mux.py``) or ``.venv/bin/python
bench/mux_slow.py [--quick]``.

**The setup.** A private Dovecot (started as ``bench/mux.py`` starts it) holds one
user whose INBOX has one message of 10 MB and 200 small ones (``bench/cache.py``'s
listing messages). One imapproxy process (``bench/relay.py``'s ``run_imapproxy``)
shares upstream connections (``[multiplex]`` ``max_sessions_per_connection = 100``),
so every session below is on one upstream connection: the one INBOX is open on.

**The runs.** ``--clients`` (20) sessions of the user select INBOX and each make round
trips for ``--seconds`` (10), one command in flight: ``UID FETCH u (UID FLAGS
BODY.PEEK[HEADER.FIELDS (SUBJECT)])`` of a small message u drawn at random, then
``NOOP``; each command timed from sending its line to reading its tagged response.

1. *alone*: the sessions by themselves;
2. *with a slow reader*: first another session of the user asks ``UID FETCH big
   (BODY.PEEK[])`` and, once the answer has begun, reads it at ``--rate`` (256 KiB/s,
   so the 10 MB would take 40 s); while it does, the sessions make their round trips
   again, for as long. Then it reads the rest at full speed and must have the whole
   message. The server's 10 MB answer holds the shared connection while it arrives
   (one command at a time): the commands queued behind it wait that long, whoever
   reads it; the slowest command of each run is reported with the percentiles.

**What is measured**: p50 and p99 (nearest rank) of the sessions' commands in each
run, and their ratio; the upstream connections of the user (``doveadm who``) while the
slow reader is reading; the proxy's peak RSS (``VmHWM``). The proxy's reader never
waits for a client: what a slow one has not read goes to its queue, in memory up to
4 MiB, then to a temporary file (docs/multiplex.md).

Target (issue 6): the slow reader does not raise the others' p99 beyond 2x. Reported,
never enforced by the exit status; a protocol failure (a response not OK, the slow
reader's message short) exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import re
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cache  # bench/cache.py (its mail); bench/ is sys.path[0] when this script runs
import mux  # bench/mux.py: its client, Dovecot limits, connection counts
import relay  # bench/relay.py: Dovecot, imapproxy processes, percentiles
import trio

from imapproxy.testing import DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls

SMALL = 200
"""Small messages in INBOX besides the big one."""
BIG = 10 * 1024 * 1024
"""The size of the big message, in octets (about)."""
MULTIPLEX: dict[str, object] = {"enabled": True, "max_sessions_per_connection": 100}
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
TARGET = 2.0


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float  # how long the sessions make round trips, each run
    rate: int  # octets a second the slow reader reads


FULL = Plan(clients=20, seconds=10.0, rate=256 * 1024)
QUICK = Plan(clients=5, seconds=1.0, rate=1024 * 1024)


@dataclass
class Measured:
    alone: list[float] = field(default_factory=list)
    slowed: list[float] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    slow_read: int = 0  # octets of the big message the slow reader had when they ended
    rss_peak_kib: int = 0


def big_message() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\n"
    head = b"From: a@example.org\nTo: b@example.org\nSubject: the big one\n\n"
    return head + line * (BIG // len(line))


async def session(port: int, ctx: ssl.SSLContext, user: User) -> mux.Client:
    client = await mux.Client.connect(port, ctx, mux.Latencies())
    await client.command("LOGIN", mux.login_line(user))
    await client.command("SELECT", b"SELECT INBOX")
    return client


async def round_trips(client: mux.Client, until: float, uids: list[int], seed: int) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < until:
        uid = rng.choice(uids)
        line = b"UID FETCH %d (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % uid
        replies = await client.command("FETCH", line)
        if replies.fetches != 1:
            raise mux.ProtocolFailure(f"UID FETCH {uid}: {replies.fetches} responses")
        await client.command("NOOP", b"NOOP")


async def everyone(clients: list[mux.Client], seconds: float, uids: list[int]) -> list[float]:
    """Every session's round trips at once, for ``seconds``; their commands' latencies."""
    for client in clients:
        client.latencies.samples.clear()
    until = time.perf_counter() + seconds
    async with trio.open_nursery() as nursery:
        for n, client in enumerate(clients):
            nursery.start_soon(round_trips, client, until, uids, n)
    return [s for client in clients for s in client.latencies.commands()]


class SlowReader:
    """A session that fetches the big message and reads its answer at ``rate``."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], size: int) -> None:
        self.stream = stream
        self.size = size
        self.buffer = bytearray()
        self.read = 0  # octets of the literal read

    async def _line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            data = await self.stream.receive_some(mux.RECEIVE_SIZE)
            if not data:
                raise mux.ProtocolFailure("the proxy closed the slow reader's connection")
            self.buffer += data
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    async def command(self, tag: bytes, line: bytes) -> None:
        await self.stream.send_all(tag + b" " + line + b"\r\n")
        while not (reply := await self._line()).startswith(tag + b" "):
            pass
        if not reply.startswith(tag + b" OK"):
            raise mux.ProtocolFailure(f"slow reader: {reply[:200]!r}")

    async def begin(self, uid: int) -> None:
        """Ask for the big message; return once its literal has begun."""
        await self.stream.send_all(b"big UID FETCH %d (BODY.PEEK[])\r\n" % uid)
        while (size := relay.literal_size(await self._line())) is None:
            pass
        if size != self.size:
            raise mux.ProtocolFailure(f"slow reader: a literal of {size}, not {self.size}")
        self.read = min(len(self.buffer), size)
        del self.buffer[: self.read]

    async def trickle(self, rate: int) -> None:
        """Read at ``rate`` octets a second (until cancelled or all is read)."""
        chunk = max(1, rate // 8)
        while self.read < self.size:
            data = await self.stream.receive_some(min(chunk, self.size - self.read))
            if not data:
                raise mux.ProtocolFailure("the proxy closed the slow reader's connection")
            self.read += len(data)
            await trio.sleep(len(data) / rate)

    async def finish(self) -> None:
        """The rest at full speed, then the tagged OK."""
        while self.read < self.size:
            data = await self.stream.receive_some(mux.RECEIVE_SIZE)
            if not data:
                raise mux.ProtocolFailure("the proxy closed the slow reader's connection")
            taken = min(len(data), self.size - self.read)
            self.read += taken
            self.buffer += data[taken:]
        while not (line := await self._line()).startswith(b"big "):
            pass
        if not line.startswith(b"big OK"):
            raise mux.ProtocolFailure(f"slow reader: {line[:200]!r}")


async def measure(
    plan: Plan,
    port: int,
    ctx: ssl.SSLContext,
    user: User,
    big: tuple[int, int],
    uids: list[int],
    server: DovecotServer,
    pid: int,
    measured: Measured,
) -> None:
    clients = [await session(port, ctx, user) for _ in range(plan.clients)]
    try:
        relay.progress(f"alone: {plan.clients} sessions, round trips for {plan.seconds:g} s")
        measured.alone = await everyone(clients, plan.seconds, uids)
        relay.progress(f"with a slow reader at {plan.rate // 1024} KiB/s")
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        slow = SlowReader(stream, big[1])
        try:
            with trio.fail_after(mux.COMMAND_TIMEOUT):
                await stream.do_handshake()
                await slow._line()  # the greeting
                await slow.command(b"a", mux.login_line(user))
                await slow.command(b"s", b"SELECT INBOX")
                await slow.begin(big[0])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow.trickle, plan.rate)
                names = frozenset({user.name})
                measured.connections.append(
                    await trio.to_thread.run_sync(mux.count_connections, server, names)
                )
                measured.slowed = await everyone(clients, plan.seconds, uids)
                measured.connections.append(
                    await trio.to_thread.run_sync(mux.count_connections, server, names)
                )
                measured.slow_read = slow.read
                nursery.cancel_scope.cancel()
            with trio.fail_after(mux.COMMAND_TIMEOUT):
                await slow.finish()
            measured.rss_peak_kib = mux.proc_status_kib(pid, "VmHWM")
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await trio.aclose_forcefully(stream)
    finally:
        for client in clients:
            await client.aclose()


async def find_big(server: DovecotServer, user: User) -> tuple[tuple[int, int], list[int]]:
    """Straight to Dovecot (its caches warm): the big message's UID and size, and the
    small ones' UIDs."""
    client = await mux.Client.connect(
        server.imaps_port, server.client_ssl_context(), mux.Latencies()
    )
    try:
        await client.command("LOGIN", mux.login_line(user))
        await client.command("SELECT", b"SELECT INBOX")
        client.record = []
        await client.command("FETCH", b"UID FETCH 1:* (UID RFC822.SIZE)")
        sizes = {}
        for text, _octets in client.record:
            uid, size = _UID.search(text), _SIZE.search(text)
            if uid is None or size is None:
                raise mux.ProtocolFailure(f"direct session: {text[:200]!r}")
            sizes[int(uid.group(1))] = int(size.group(1))
        client.record = None
        await client.command("WARM", b"UID FETCH 1:* (BODY.PEEK[])")
        await client.command("LOGOUT", b"LOGOUT")
    finally:
        await client.aclose()
    big = max(sizes, key=lambda uid: sizes[uid])
    return (big, sizes[big]), sorted(uid for uid in sizes if uid != big)


def render(plan: Plan, measured: Measured, wall: float) -> list[str]:
    def row(label: str, alone: float, slowed: float) -> str:
        ratio = slowed / alone if alone else float("inf")
        return f"{label:38}{alone * 1000:>12.1f}{slowed * 1000:>14.1f}{ratio:>9.2f}x"

    p99 = (relay.percentile(measured.alone, 99), relay.percentile(measured.slowed, 99))
    ratio = p99[1] / p99[0] if p99[0] else float("inf")
    lines = [
        "",
        f"{plan.clients} sessions of one user on one shared upstream connection, round "
        f"trips (UID FETCH of a header, NOOP) for {plan.seconds:g} s each run",
        f"{'':38}{'alone':>12}{'slow reader':>14}{'ratio':>10}",
        row(
            "p50 latency (ms)",
            relay.percentile(measured.alone, 50),
            relay.percentile(measured.slowed, 50),
        ),
        row("p99 latency (ms)", *p99),
        row("slowest command (ms)", max(measured.alone), max(measured.slowed)),
        f"{'commands':38}{len(measured.alone):>12,}{len(measured.slowed):>14,}",
        "",
        f"upstream connections of the user while the slow reader read: "
        f"{', '.join(map(str, measured.connections))}",
        f"the slow reader had read {measured.slow_read / 1048576:.1f} of "
        f"{BIG / 1048576:.0f} MiB when the others were done (then the rest, whole)",
        f"proxy RSS peak (VmHWM): {measured.rss_peak_kib / 1024:.1f} MiB",
        "",
        "Target (issue 6)",
        f"a slow reader raises the others' p99 at most {TARGET:.0f}x: {ratio:.2f}x  "
        + ("PASS" if ratio <= TARGET else "FAIL"),
        "",
        f"{os.cpu_count()} CPU cores shared by Dovecot, imapproxy and this client; "
        f"Python {platform.python_version()}; wall time {wall:.1f} s",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 sessions for 1 s")
    parser.add_argument("--clients", type=int, help=f"sessions ({FULL.clients})")
    parser.add_argument("--seconds", type=float, help=f"each run's length ({FULL.seconds:g})")
    parser.add_argument("--rate", type=int, help=f"the slow reader's octets/s ({FULL.rate})")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan = Plan(
        clients=args.clients or plan.clients,
        seconds=args.seconds or plan.seconds,
        rate=args.rate or plan.rate,
    )
    began = time.perf_counter()
    print("Head-of-line benchmark: a slow reader of a 10 MB FETCH and the others on its")
    print(f"shared upstream connection; [multiplex] {MULTIPLEX}")
    sys.stdout.flush()
    root = Path(tempfile.mkdtemp(prefix="imapproxy-bench-mux-slow-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach its work dir inside
    measured = Measured()
    try:
        try:
            server = DovecotServer(root / "dovecot")
            server.start()
        except DovecotNotInstalled as exc:
            raise SystemExit(f"not measured: {exc}") from None
        try:
            relay.progress(f"writing mail: a 10 MB message and {SMALL} small ones")
            user = server.add_user("slow00", with_corpus=False)
            rng = random.Random("slow")
            mail = [big_message()] + [cache.listing_message(n, rng) for n in range(2, SMALL + 2)]
            cache.write_mailbox(user, "INBOX", mail)
            big, uids = trio.run(find_big, server, user)
            tls = ProxyTls.create(root / "proxy-tls")
            with relay.run_imapproxy(root / "proxy", tls, server, "none", multiplex=MULTIPLEX) as (
                port,
                pid,
            ):
                trio.run(
                    measure,
                    plan,
                    port,
                    tls.client_context(),
                    user,
                    big,
                    uids,
                    server,
                    pid,
                    measured,
                )
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for line in render(plan, measured, time.perf_counter() - began):
        print(line)


if __name__ == "__main__":
    main()
