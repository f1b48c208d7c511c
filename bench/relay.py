"""Relay benchmark: imapproxy against Dovecot direct and nginx's mail proxy.

Run: ``make bench`` (or ``.venv/bin/python bench/relay.py [--quick]``).

Starts a private Dovecot (a temp dir under /tmp) with one user holding a few 5 MiB
messages and one user per concurrent client holding the test corpus, then measures,
for each setup, in one run:

(a) the client straight to Dovecot's implicit-TLS port;
(b) imapproxy with implicit TLS to the client and implicit TLS to Dovecot;
(c) imapproxy with implicit TLS to the client and plain IMAP to Dovecot's loopback port;
(d) nginx's mail proxy in the place of (c): it terminates the client's TLS and relays
    plain IMAP to Dovecot, with an auth_http responder in this process. Only where
    Debian's nginx with its mail module is installed; this script never installs it.

What is measured:

1. bulk ``UID FETCH 1:* BODY[]`` of the 5 MiB messages over one connection, in MB/s,
   and the CPU seconds per GB (10^9 octets) of the relay process (imapproxy or nginx),
   of Dovecot and of this client, from ``/proc/PID/stat`` (utime + stime of each
   process in the tree) before and after the timed fetches;
2. round trips of ``NOOP`` and of ``UID FETCH n (FLAGS)``, p50 and p99, with 1 client
   and with 50 concurrent clients (each its own user and connection, one command in
   flight per client).

imapproxy runs as ``python -m imapproxy serve --config FILE`` in its own process;
nginx with one worker process. The client reads raw bytes from blocking (bulk) or
non-blocking (round trips, one thread multiplexing all connections with a selector)
TLS sockets and skips literal data by the ``{n}`` counts at the end of response lines,
so it does no per-line work on message data. The machine's cores are shared by
Dovecot, the relay and the client.

Targets (issue #3): (b) >= 0.7x the throughput of (a); (c) >= 0.8x the throughput of
(d); at most 150 us added to the NOOP p50 with 1 client by the proxy ((b) - (a)).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import math
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from imapproxy.testing import DovecotServer, User, find_dovecot
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream, proxy_config

MESSAGE_SIZE = 5 * 1024 * 1024
RECV_SIZE = 256 * 1024
NGINX_MAIL_MODULE = Path("/usr/lib/nginx/modules/ngx_mail_module.so")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\r?\n\Z")
_N = TypeVar("_N", int, float)

# -- pure helpers ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method.

    Raises ValueError for no values or ``q`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def literal_size(line: bytes | bytearray) -> int | None:
    """The size of the literal announced at the end of a response line
    (``{n}``, ``{n+}`` or ``~{n}`` before CRLF), None when the line announces none."""
    if not line.endswith(b"}\r\n") and not line.endswith(b"}\n"):
        return None
    match = _LITERAL_AT_END.search(line)
    return int(match[1]) if match else None


class ResponseScanner:
    """Follows a server's response stream just enough to find tagged status lines.

    Text is split at LF; a line ending in a literal announcement makes the next
    ``n`` octets literal data, which is only counted (never searched or copied), and
    the text after it continues the same response. Only the head of a response says
    what it is: untagged (``*``), a continuation request (``+``) or tagged.
    """

    __slots__ = ("_continued", "_partial", "_skip", "literal_octets", "untagged")

    def __init__(self) -> None:
        self._partial = b""
        self._skip = 0
        self._continued = False
        self.literal_octets = 0
        """Octets of literal data seen so far."""
        self.untagged = 0
        """Untagged response lines seen so far (a greeting counts)."""

    def feed(self, data: bytes | bytearray, end: int | None = None) -> bytes | None:
        """Consume ``data[:end]``; returns the last tagged line completed in it (with
        its CRLF), None when none was."""
        stop = len(data) if end is None else end
        pos = 0
        tagged = None
        while pos < stop:
            if self._skip:
                take = min(self._skip, stop - pos)
                self._skip -= take
                pos += take
                continue
            nl = data.find(b"\n", pos, stop)
            if nl < 0:
                self._partial += data[pos:stop]
                break
            line = bytes(data[pos : nl + 1])
            pos = nl + 1
            if self._partial:
                line, self._partial = self._partial + line, b""
            head = not self._continued
            size = literal_size(line)
            if size is not None:
                self._skip = size
                self.literal_octets += size
            self._continued = size is not None
            if not head:
                continue
            if line.startswith(b"*"):
                self.untagged += 1
            elif not line.startswith(b"+") and size is None:
                tagged = line
        return tagged

    @property
    def idle(self) -> bool:
        """True between responses: no partial line, no literal data pending."""
        return not self._partial and not self._skip and not self._continued


# -- processes ------------------------------------------------------------------------

_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent pid, CPU seconds used: utime + stime)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        # After "pid (comm)": state ppid ... utime (14th field) stime (15th).
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLOCK_TICK)
    return table


def cpu_sample(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and each of its descendants, by pid."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    sample = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            sample[pid] = table[pid][1]
            todo.extend(children.get(pid, ()))
    return sample


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two samples (processes that exited in between not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _find_sbin(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def _dovecot_master(server: DovecotServer) -> int:
    config = str(server.config_path).encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"dovecot") and config in argv:
            return int(entry.name)
    raise RuntimeError("Dovecot's master process not found")


def _wait_listening(port: int, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
    """Until a TLS connection to ``port`` gets a greeting (or ``proc`` exits)."""
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                if tls.recv(1024).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing greets on port {port}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _serving(argv: list[str], output: Path, port: int, tls: ProxyTls) -> Iterator[int]:
    """Run a relay process (output to a file) until it greets on ``port``; its pid."""
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(port, tls.client_context(), proc)
        yield proc.pid
    finally:
        _stop(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_imapproxy(
    directory: Path,
    tls: ProxyTls,
    server: DovecotServer,
    upstream_tls: str,
    *,
    rules: dict[str, object] | None = None,
    upstream_address: str | None = None,
    limits: dict[str, object] | None = None,
    multiplex: dict[str, object] | None = None,
) -> Iterator[tuple[int, int]]:
    """imapproxy as ``python -m imapproxy serve`` in its own process: (port, pid).

    It logs at info, JSON lines, to ``directory/imapproxy.log``; ``rules``, ``limits``
    and ``multiplex`` are its tables of those names (the defaults when None);
    ``upstream_address`` (``host:port``) replaces the address of Dovecot's port for
    ``upstream_tls`` (something in between). The configuration is validated before
    the process starts: a refused one raises :class:`imapproxy.config.ConfigError`."""
    port = _free_port()
    extra = {"address": upstream_address} if upstream_address is not None else {}
    config = proxy_config(
        directory,
        tls,
        [dovecot_upstream(server, tls=upstream_tls, **extra)],
        listeners=("implicit",),
        ports={"implicit": port},
        logging={"level": "info", "format": "json", "file": directory / "imapproxy.log"},
        rules=rules,
        limits=limits,
        multiplex=multiplex,
    )
    argv = [sys.executable, "-m", "imapproxy", "serve", "--config", str(config.source)]
    with _serving(argv, directory / "imapproxy.out", port, tls) as pid:
        yield port, pid


def nginx_mail() -> tuple[str, bool] | None:
    """(nginx binary, whether the mail module must be loaded) when nginx can proxy
    IMAP here; None otherwise."""
    nginx = _find_sbin("nginx")
    if nginx is None:
        return None
    version = subprocess.run(
        [nginx, "-V"], capture_output=True, text=True, check=False, timeout=30
    ).stderr
    if "--with-mail=dynamic" in version or ("--with-mail" not in version):
        return (nginx, True) if NGINX_MAIL_MODULE.exists() else None
    return nginx, False


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """nginx's auth_http: every login goes to Dovecot's plain port."""

    upstream_port = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.upstream_port))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def run_nginx(
    directory: Path, tls: ProxyTls, server: DovecotServer, nginx: str, load_module: bool
) -> Iterator[tuple[int, int]]:
    """nginx's mail proxy (one worker) in front of Dovecot's plain port: (port, pid)."""
    handler = type("AuthHandler", (_AuthHandler,), {"upstream_port": server.imap_port})
    auth = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=auth.serve_forever, name="auth_http", daemon=True)
    thread.start()
    port = _free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        "\n".join(
            [
                f"load_module {NGINX_MAIL_MODULE};" if load_module else "",
                "worker_processes 1;",
                f"error_log {directory / 'error.log'} warn;",
                f"pid {directory / 'nginx.pid'};",
                "events { worker_connections 1024; }",
                "mail {",
                "  server_name localhost;",
                f"  auth_http 127.0.0.1:{auth.server_address[1]}/auth;",
                "  proxy_pass_error_message on;",
                f"  ssl_certificate {tls.cert_path};",
                f"  ssl_certificate_key {tls.key_path};",
                "  ssl_protocols TLSv1.2 TLSv1.3;",
                "  server {",
                f"    listen 127.0.0.1:{port} ssl;",
                "    protocol imap;",
                "  }",
                "}",
                "",
            ]
        )
    )
    argv = [nginx, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
    try:
        with _serving([*argv, "-g", "daemon off;"], directory / "nginx.out", port, tls) as pid:
            yield port, pid
    finally:
        auth.shutdown()
        auth.server_close()


# -- the client -----------------------------------------------------------------------


@dataclass
class Target:
    """Where clients connect for one setup, and the relay process (if any)."""

    label: str
    port: int
    ctx: ssl.SSLContext
    relay_pid: int | None


class Client:
    """One IMAP connection over TLS, logged in, a mailbox examined."""

    def __init__(self, target: Target, user: User) -> None:
        raw = socket.create_connection(("127.0.0.1", target.port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = target.ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = bytearray(RECV_SIZE)
        self.scanner = ResponseScanner()
        self.tags = 0
        while self.scanner.untagged == 0:
            self._receive()
        self.command(b'LOGIN "%s" "%s"' % (user.name.encode(), user.password.encode()))
        self.command(b"EXAMINE INBOX")

    @property
    def cipher(self) -> str:
        cipher = self.sock.cipher()
        return f"{self.sock.version()} {cipher[0] if cipher else '?'}"

    def next_tag(self) -> bytes:
        self.tags += 1
        return b"b%d" % self.tags

    def _receive(self) -> tuple[int, bytes | None]:
        n = self.sock.recv_into(self.buf)
        if not n:
            raise ConnectionError("the server closed the connection")
        return n, self.scanner.feed(self.buf, n)

    def command(self, line: bytes) -> tuple[bytes, int]:
        """Send a command and read to its tagged OK: (status line, octets received)."""
        tag = self.next_tag()
        self.sock.sendall(tag + b" " + line + b"\r\n")
        received = 0
        while True:
            n, tagged = self._receive()
            received += n
            if tagged is not None:
                check_ok(tag, tagged)
                return tagged, received

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.settimeout(5)
            self.command(b"LOGOUT")
        with contextlib.suppress(OSError):
            self.sock.close()


def check_ok(tag: bytes, line: bytes) -> None:
    if not line.startswith(tag + b" OK"):
        raise RuntimeError(f"expected {tag.decode()} OK, got {line[:200]!r}")


@dataclass
class _Loop:
    client: Client
    left: int
    warmup: int
    tag: bytes = b""
    started: float = 0.0
    sent: int = 0


def round_trips(
    clients: Sequence[Client], command: Callable[[int], bytes], per_client: int, warmup: int
) -> tuple[list[float], float]:
    """Each client sends ``warmup + per_client`` commands, one in flight at a time, all
    clients at once; returns the round trips (seconds) after warm-up, and the wall time."""
    selector = selectors.DefaultSelector()
    samples: list[float] = []
    loops = [_Loop(c, per_client, warmup) for c in clients]

    def send(loop: _Loop) -> None:
        sock = loop.client.sock
        loop.tag = loop.client.next_tag()
        data = loop.tag + b" " + command(loop.sent) + b"\r\n"
        loop.sent += 1
        loop.started = time.perf_counter()
        while True:
            try:
                if sock.send(data) == len(data):
                    return
                raise RuntimeError("short write of a command")
            except ssl.SSLWantWriteError:
                select_one(sock, selectors.EVENT_WRITE)

    for loop in loops:
        loop.client.sock.setblocking(False)
        selector.register(loop.client.sock, selectors.EVENT_READ, loop)
    start = time.perf_counter()
    for loop in loops:
        send(loop)
    active = len(loops)
    try:
        while active:
            for key, _ in selector.select():
                loop = key.data
                client = loop.client
                while True:
                    try:
                        _, tagged = client._receive()
                    except ssl.SSLWantReadError:
                        break
                    if tagged is None:
                        continue
                    now = time.perf_counter()
                    check_ok(loop.tag, tagged)
                    if loop.warmup:
                        loop.warmup -= 1
                    else:
                        samples.append(now - loop.started)
                        loop.left -= 1
                    if loop.left:
                        send(loop)
                    else:
                        selector.unregister(client.sock)
                        active -= 1
                    if not client.sock.pending():
                        break
        elapsed = time.perf_counter() - start
    finally:
        selector.close()
        for loop in loops:
            loop.client.sock.setblocking(True)
            loop.client.sock.settimeout(30)
    return samples, elapsed


def select_one(sock: ssl.SSLSocket, events: int) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, events)
        sel.select(30)


# -- the measurements -----------------------------------------------------------------


@dataclass
class Latency:
    p50: float
    p99: float
    rate: float  # round trips per second, all clients together
    relay_cpu: float | None  # CPU seconds of the relay per round trip
    client_cpu: float  # CPU seconds of this client per round trip


@dataclass
class Plan:
    rounds: int  # the setups take turns this many times (drift on a shared machine)
    bulk_seconds: float  # timed bulk fetching per setup and round (at least one fetch)
    one_client: int  # round trips per command with 1 client, per round
    many_client: int  # round trips per client and command with many clients, per round
    clients: int
    warmup: int  # untimed round trips per client before each timed batch


COMMANDS: dict[str, Callable[[Sequence[int], int], bytes]] = {
    "NOOP": lambda uids, i: b"NOOP",
    "FETCH": lambda uids, i: b"UID FETCH %d (FLAGS)" % uids[i % len(uids)],
}


class Setup:
    """One setup's connections and what was measured on them, over all rounds."""

    def __init__(self, key: str, target: Target, dovecot_pid: int) -> None:
        self.key = key
        self.target = target
        self.dovecot_pid = dovecot_pid
        self.clients: dict[int, list[Client]] = {}
        self.bulk: Client | None = None
        self.cipher = ""
        self.octets = 0
        self.seconds = 0.0
        self.relay_cpu = 0.0
        self.dovecot_cpu = 0.0
        self.client_cpu = 0.0
        self.samples: dict[tuple[str, int], list[float]] = {}
        self.elapsed: dict[tuple[str, int], float] = {}
        self.round_trips: dict[tuple[str, int], int] = {}  # warm-up ones included
        self.relay_cpu_rt: dict[tuple[str, int], float] = {}
        self.client_cpu_rt: dict[tuple[str, int], float] = {}

    def connect(self, bulk_user: User, users: Sequence[User], counts: Sequence[int]) -> None:
        self.bulk = Client(self.target, bulk_user)
        self.cipher = self.bulk.cipher
        self.bulk.command(b"UID FETCH 1:* BODY[]")  # warm-up: page cache, Dovecot's indexes
        for count in counts:
            self.clients[count] = [Client(self.target, user) for user in users[:count]]

    def bulk_round(self, seconds: float) -> None:
        assert self.bulk is not None
        pid = self.target.relay_pid
        relay0 = cpu_sample(pid) if pid else {}
        dovecot0 = cpu_sample(self.dovecot_pid)
        client0 = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            self.octets += self.bulk.command(b"UID FETCH 1:* BODY[]")[1]
            if time.perf_counter() >= deadline:
                break
        self.seconds += time.perf_counter() - start
        self.client_cpu += time.process_time() - client0
        self.dovecot_cpu += cpu_used(dovecot0, cpu_sample(self.dovecot_pid))
        if pid:
            self.relay_cpu += cpu_used(relay0, cpu_sample(pid))

    def latency_round(self, name: str, count: int, uids: Sequence[int], plan: Plan) -> None:
        per_client = plan.one_client if count == 1 else plan.many_client
        make = COMMANDS[name]
        pid = self.target.relay_pid
        relay0 = cpu_sample(pid) if pid else {}
        client0 = time.process_time()
        samples, elapsed = round_trips(
            self.clients[count], lambda i: make(uids, i), per_client, plan.warmup
        )
        key = (name, count)
        _add(self.client_cpu_rt, key, time.process_time() - client0)
        if pid:
            _add(self.relay_cpu_rt, key, cpu_used(relay0, cpu_sample(pid)))
        self.samples.setdefault(key, []).extend(samples)
        _add(self.elapsed, key, elapsed)
        _add(self.round_trips, key, count * (per_client + plan.warmup))

    def close(self) -> None:
        if self.bulk is not None:
            self.bulk.close()
        for clients in self.clients.values():
            for client in clients:
                client.close()

    def result(self) -> Result:
        gb = self.octets / 1e9
        return Result(
            label=self.key,
            mbps=self.octets / self.seconds / 1e6,
            bulk_octets=self.octets,
            relay_cpu_per_gb=self.relay_cpu / gb if self.target.relay_pid else None,
            dovecot_cpu_per_gb=self.dovecot_cpu / gb,
            client_cpu_per_gb=self.client_cpu / gb,
            latency={
                key: Latency(
                    percentile(samples, 50),
                    percentile(samples, 99),
                    len(samples) / self.elapsed[key],
                    self.relay_cpu_rt[key] / self.round_trips[key]
                    if key in self.relay_cpu_rt
                    else None,
                    self.client_cpu_rt[key] / self.round_trips[key],
                )
                for key, samples in self.samples.items()
            },
            cipher=self.cipher,
        )


@dataclass
class Result:
    label: str
    mbps: float
    bulk_octets: int
    relay_cpu_per_gb: float | None
    dovecot_cpu_per_gb: float
    client_cpu_per_gb: float
    latency: dict[tuple[str, int], Latency]
    cipher: str


def _add(totals: dict[tuple[str, int], _N], key: tuple[str, int], value: _N) -> None:
    totals[key] = totals.get(key, 0) + value


def run_rounds(setups: Sequence[Setup], uids: Sequence[int], plan: Plan) -> None:
    """The setups take turns: every phase of a round runs on each setup in order."""
    for r in range(plan.rounds):
        progress(f"round {r + 1}/{plan.rounds}: bulk FETCH")
        for setup in setups:
            setup.bulk_round(plan.bulk_seconds)
        for count in (1, plan.clients):
            progress(f"round {r + 1}/{plan.rounds}: round trips, {count} client(s)")
            for name in COMMANDS:
                for setup in setups:
                    setup.latency_round(name, count, uids, plan)


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def write_bulk_messages(user: User, count: int, size: int) -> None:
    """``count`` messages of ``size`` octets (base64 text, as an attachment would be)
    straight into the user's Maildir, owned like the user's home."""
    owner = user.home.stat()
    rng = random.Random(3)
    for sub in ("cur", "new", "tmp"):
        (user.maildir / sub).mkdir(parents=True, exist_ok=True)
    for path in (user.maildir, *(user.maildir / s for s in ("cur", "new", "tmp"))):
        os.chown(path, owner.st_uid, owner.st_gid)
    for n in range(1, count + 1):
        header = (
            f"From: Bulk Sender <bulk@example.org>\nTo: {user.name}@example.org\n"
            f"Subject: bulk message {n}\nMessage-ID: <bulk{n}@example.org>\n"
            "Date: Mon, 1 Jul 2024 10:00:00 +0000\nMIME-Version: 1.0\n"
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        ).encode()
        # Dovecot sends CRLF line ends: 76 + 2 octets per line on the wire.
        lines = (size - len(header)) // 78
        blob = base64.b64encode(rng.randbytes(lines * 57))
        body = b"\n".join(blob[i : i + 76] for i in range(0, len(blob), 76)) + b"\n"
        path = user.maildir / "cur" / f"1719828000.M{n}P1.bench:2,S"
        path.write_bytes(header + body)
        os.chown(path, owner.st_uid, owner.st_gid)


# -- output ---------------------------------------------------------------------------

SETUPS = {
    "a": "(a) direct to Dovecot, TLS",
    "b": "(b) imapproxy, TLS both legs",
    "c": "(c) imapproxy, TLS client / plain upstream",
    "d": "(d) nginx mail, TLS client / plain upstream",
}


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(results: dict[str, Result], plan: Plan, notes: list[str]) -> list[str]:
    width = max(len(label) for label in SETUPS.values())
    out = ["", "Bulk FETCH BODY[] of 5 MiB messages, one connection"]
    out.append(
        f"{'setup':<{width}}  {'MB/s':>7}  {'vs (a)':>6}  {'relay CPU s/GB':>14}  "
        f"{'Dovecot CPU s/GB':>16}  {'client CPU s/GB':>15}"
    )
    base = results["a"]
    for key, r in results.items():
        relay = f"{r.relay_cpu_per_gb:.2f}" if r.relay_cpu_per_gb is not None else "-"
        out.append(
            f"{SETUPS[key]:<{width}}  {r.mbps:7,.0f}  {r.mbps / base.mbps:5.2f}x  {relay:>14}  "
            f"{r.dovecot_cpu_per_gb:16.2f}  {r.client_cpu_per_gb:15.2f}"
        )
    n = plan.clients
    columns = [("NOOP", 1), ("FETCH", 1), ("NOOP", n), ("FETCH", n)]
    heads = [f"{name}, {count} client" + ("s" if count > 1 else "") for name, count in columns]
    out += [
        "",
        "Round trips in microseconds: p50 / p99 (round trips per second, all clients); "
        "FETCH is UID FETCH n (FLAGS)",
    ]
    out.append(f"{'setup':<{width}}  " + "  ".join(f"{h:>25}" for h in heads))
    for key, r in results.items():
        cells = []
        for column in columns:
            lat = r.latency[column]
            cells.append(f"{_us(lat.p50)} / {_us(lat.p99)} ({lat.rate:,.0f}/s)")
        out.append(f"{SETUPS[key]:<{width}}  " + "  ".join(f"{c:>25}" for c in cells))
    out += ["", "CPU per round trip in microseconds: relay / client (warm-up included)"]
    out.append(f"{'setup':<{width}}  " + "  ".join(f"{h:>17}" for h in heads))
    for key, r in results.items():
        cells = []
        for column in columns:
            lat = r.latency[column]
            relay = _us(lat.relay_cpu) if lat.relay_cpu is not None else "-"
            cells.append(f"{relay} / {_us(lat.client_cpu)}")
        out.append(f"{SETUPS[key]:<{width}}  " + "  ".join(f"{c:>17}" for c in cells))

    out += ["", "Ratios: throughput and relay CPU per GB as x; round trips as p50 difference (us)"]
    pairs = [("b", "a"), ("c", "a"), ("c", "b")]
    if "d" in results:
        pairs += [("d", "a"), ("c", "d")]
    out.append(
        f"{'':<10}  {'bulk MB/s':>9}  {'relay CPU/GB':>12}  " + "  ".join(f"{h:>17}" for h in heads)
    )
    for x, y in pairs:
        rx, ry = results[x], results[y]
        cpu = (
            f"{rx.relay_cpu_per_gb / ry.relay_cpu_per_gb:11.2f}x"
            if rx.relay_cpu_per_gb and ry.relay_cpu_per_gb
            else f"{'-':>12}"
        )
        cells = [f"{(rx.latency[c].p50 - ry.latency[c].p50) * 1e6:+,.0f}" for c in columns]
        out.append(
            f"({x}) vs ({y})  {rx.mbps / ry.mbps:8.2f}x  {cpu}  "
            + "  ".join(f"{c:>17}" for c in cells)
        )

    out += ["", "Targets"]
    ratio = results["b"].mbps / base.mbps
    out.append(f"(b) >= 0.70x (a) bulk throughput: {ratio:.2f}x  {_met(ratio >= 0.7)}")
    if "d" in results:
        ratio = results["c"].mbps / results["d"].mbps
        out.append(f"(c) >= 0.80x (d) bulk throughput: {ratio:.2f}x  {_met(ratio >= 0.8)}")
    else:
        out.append("(c) >= 0.80x (d) bulk throughput: not measured, (d) skipped")
    added = (results["b"].latency["NOOP", 1].p50 - base.latency["NOOP", 1].p50) * 1e6
    out.append(
        f"(b) - (a) NOOP p50 with 1 client <= 150 us: {added:+,.0f} us  {_met(added <= 150)}"
    )
    out += ["", "Notes", *(f"- {note}" for note in notes)]
    return out


# -- main -----------------------------------------------------------------------------


def _versions(nginx: tuple[str, bool] | None) -> str:
    dovecot = subprocess.run(
        [str(find_dovecot()[0]), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    parts = [f"Python {platform.python_version()}", f"Dovecot {dovecot[0] if dovecot else '?'}"]
    if nginx is not None:
        version = subprocess.run(
            [nginx[0], "-v"], capture_output=True, text=True, check=False
        ).stderr.strip()
        parts.append(version.replace("nginx version: ", ""))
    return ", ".join(parts) + f", {ssl.OPENSSL_VERSION}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~20 s)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    args = parser.parse_args()
    if args.quick:
        plan = Plan(
            rounds=1,
            bulk_seconds=0.5,
            one_client=300,
            many_client=10,
            clients=args.clients,
            warmup=3,
        )
        messages = 4
    else:
        plan = Plan(
            rounds=3,
            bulk_seconds=2.5,
            one_client=1000,
            many_client=60,
            clients=args.clients,
            warmup=5,
        )
        messages = 8
    nginx = nginx_mail()
    cores = os.cpu_count()
    print(
        "Relay benchmark: imapproxy vs direct Dovecot"
        + (" vs nginx mail proxy" if nginx else "")
        + f" ({'--quick' if args.quick else 'full'} run)"
    )
    print(
        f"{cores} CPU cores shared by Dovecot, the relay under test and this client; "
        + _versions(nginx)
    )
    if nginx is None:
        print("(d) skipped: nginx mail module not installed")
    sys.stdout.flush()

    root = Path(tempfile.mkdtemp(prefix="imapproxy-bench-relay-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach its work dir inside
    extra = "\n".join(
        [
            "protocol imap {",
            "  mail_max_userip_connections = 200",
            "}",
            "service imap {",
            "  process_limit = 400",
            "}",
            "service imap-login {",
            "  client_limit = 400",
            "}",
        ]
    )
    setups: list[Setup] = []
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(DovecotServer(root / "dovecot", extra_config=extra))
            bulk_user = server.add_user("bulk", with_corpus=False)
            write_bulk_messages(bulk_user, messages, MESSAGE_SIZE)
            users = [server.add_user(f"client{i:03d}") for i in range(plan.clients)]
            uids = [m.uid for m in server.corpus.folder("INBOX").messages]
            dovecot_pid = _dovecot_master(server)
            proxy_tls = ProxyTls.create(root / "proxy-tls")
            proxy_ctx = proxy_tls.client_context()

            targets: list[tuple[str, int, ssl.SSLContext, int | None]] = [
                ("a", server.imaps_port, server.client_ssl_context(), None)
            ]
            for key, upstream_tls in (("b", "implicit"), ("c", "none")):
                port, pid = stack.enter_context(
                    run_imapproxy(root / f"proxy-{key}", proxy_tls, server, upstream_tls)
                )
                targets.append((key, port, proxy_ctx, pid))
            if nginx is not None:
                port, pid = stack.enter_context(
                    run_nginx(root / "nginx", proxy_tls, server, *nginx)
                )
                targets.append(("d", port, proxy_ctx, pid))
            progress("connecting")
            for key, port, ctx, relay_pid in targets:
                setup = Setup(key, Target(SETUPS[key][:3], port, ctx, relay_pid), dovecot_pid)
                setups.append(setup)
                stack.callback(setup.close)
                setup.connect(bulk_user, users, (1, plan.clients))
            run_rounds(setups, uids, plan)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    results = {setup.key: setup.result() for setup in setups}
    sizes = [r.bulk_octets for r in results.values()]
    notes = [
        f"bulk: UID FETCH 1:* BODY[] of {messages} x 5 MiB messages on one connection, "
        f"repeated for at least {plan.bulk_seconds:g} s per setup and round after one "
        f"untimed fetch ({min(sizes) / 1e9:.1f}-{max(sizes) / 1e9:.1f} GB per setup); "
        "MB/s and GB are 10^6 and 10^9 octets received by the client",
        "CPU s/GB: utime + stime from /proc/PID/stat of each process in the tree (relay: "
        "imapproxy's process, or nginx's master and its worker; Dovecot: its master and all "
        "its children) sampled before and after the timed fetches; client: this process's "
        "time.process_time()",
        f"round trips: {plan.one_client} per command and round with 1 client, "
        f"{plan.many_client} per client, command and round with {plan.clients} clients "
        f"(each its own user, INBOX examined, one command in flight), after {plan.warmup} "
        "untimed ones per client and batch; UID FETCH cycles through the INBOX's UIDs",
        f"the setups take turns, {plan.rounds} round(s) of every phase, all connections "
        "open throughout; the client uses a blocking TLS socket for bulk and one thread "
        "with a selector over non-blocking TLS sockets for round trips, and skips literal "
        "data by its {n} count",
        f"{cores} cores are shared by Dovecot, the relay and the client: figures include "
        "their competition for CPU; imapproxy runs as `python -m imapproxy serve` (one "
        "process, logging at info to a file); nginx with worker_processes 1 and default "
        "buffers",
        "TLS (client leg): " + "; ".join(f"({k}) {r.cipher}" for k, r in results.items()),
    ]
    for line in render(results, plan, notes):
        print(line)


if __name__ == "__main__":
    main()
