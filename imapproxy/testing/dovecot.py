"""Start and stop a private Dovecot IMAP server for tests, benchmarks and the demo.

:class:`DovecotServer` owns a work directory and everything in it::

    WORK/dovecot.conf     generated configuration (rendered by _render_config)
    WORK/dovecot.log      Dovecot's log (see log_text / log_errors)
    WORK/dovecot.out      stdout/stderr of the ``dovecot`` command itself
    WORK/tls/             trustme CA (ca.pem) and the server certificate + key
    WORK/passwd.d/NAME    one passwd-file per user: ``NAME:{PLAIN}password::::::``
    WORK/mail/NAME/       the user's home; mail in WORK/mail/NAME/Maildir
    WORK/corpus/Maildir   the corpus template users get hard-linked copies of
    WORK/run, WORK/state  Dovecot's base_dir (sockets, master.pid) and state_dir

``start()`` resets those entries, writes the corpus template and the TLS files,
picks two free loopback ports (bind-and-close, since Dovecot cannot report what port 0
gave it; a collision makes ``dovecot`` exit and the start is retried on new ports),
runs ``dovecot -c WORK/dovecot.conf`` (which daemonizes; its output goes to a file, never
a pipe that would stay open) and polls until both listeners return a ``* OK``
greeting. ``stop()`` sends SIGTERM to the pid in ``run/master.pid``, waits, and falls
back to SIGKILL. An atexit hook stops a server the caller forgot.

Users live in one passwd-file *per user*: Dovecot stats a passwd-file at most once per
second, so a user appended to a shared file right after another login could stay
invisible for up to a second. A new file path is read on its first lookup, which
makes :meth:`DovecotServer.add_user` effective immediately.

Dovecot refuses to access mail as root. Run as root, the server creates the system user
``imapproxy-mail`` when missing and uses it for all mail; run as another user,
every Dovecot process runs as that user (no chroot, no privilege changes).
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import trustme

from imapproxy.testing.corpus import FOLDERS, CorpusSummary, install_corpus, write_corpus

__all__ = [
    "MAIL_SYSTEM_USER",
    "DovecotError",
    "DovecotNotInstalled",
    "DovecotServer",
    "User",
    "WhoEntry",
    "find_dovecot",
]

MAIL_SYSTEM_USER = "imapproxy-mail"
"""System user that owns all mail when the server is started as root."""

INSTALL_HINT = (
    "Dovecot is not installed. `make test` (or `make dovecot`) installs it; "
    "or run `apt-get install dovecot-imapd` as root."
)

_T = TypeVar("_T")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_FD_WANTED = 8192  # comfortably above default_client_limit (4000) plus Dovecot's own
_MAX_BASE_DIR = 64  # Unix socket paths are limited to 108 bytes; Dovecot adds ~40.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class DovecotNotInstalled(RuntimeError):
    """The ``dovecot`` / ``doveadm`` binaries are missing; the message says how to fix it."""


class DovecotError(RuntimeError):
    """Dovecot could not be configured, started, queried or stopped.

    The message ends with the tail of the Dovecot log when there is one.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A mail account on the test server."""

    name: str
    password: str
    home: Path

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    def __repr__(self) -> str:
        return f"User(name={self.name!r}, home={str(self.home)!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoEntry:
    """One logged-in connection as reported by ``doveadm who -1``."""

    username: str
    proto: str
    pid: int
    ip: str


def find_dovecot() -> tuple[Path, Path]:
    """Paths of the ``dovecot`` and ``doveadm`` binaries.

    Looks in PATH and in the sbin directories (often not in a non-root PATH).
    Raises DovecotNotInstalled if either is missing.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = [shutil.which(name, path=search) for name in ("dovecot", "doveadm")]
    if found[0] is None or found[1] is None:
        raise DovecotNotInstalled(INSTALL_HINT)
    return Path(found[0]), Path(found[1])


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who the Dovecot processes run as, and who owns mail."""

    root: bool
    mail_uid: int
    mail_gid: int
    internal_user: str
    login_user: str
    internal_group: str | None = None  # None: Dovecot's default ("dovecot")


def _identity() -> _Identity:
    if os.geteuid() != 0:
        try:
            me = pwd.getpwuid(os.geteuid())
        except KeyError:
            raise DovecotError(
                f"uid {os.geteuid()} has no passwd entry; Dovecot needs a user name to run as"
            ) from None
        try:
            group = grp.getgrgid(me.pw_gid).gr_name
        except KeyError:
            raise DovecotError(
                f"gid {me.pw_gid} has no group entry; Dovecot needs a name"
            ) from None
        return _Identity(False, me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, group)
    mail = _ensure_system_user(MAIL_SYSTEM_USER)

    def existing(name: str) -> str:
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            return mail.pw_name

    return _Identity(True, mail.pw_uid, mail.pw_gid, existing("dovecot"), existing("dovenull"))


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    useradd = shutil.which("useradd", path=search)
    if useradd is None:
        raise DovecotError(f"cannot create system user {name!r}: useradd not found")
    argv = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    argv += ["--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    try:  # another process may have created it concurrently: check again either way
        return pwd.getpwnam(name)
    except KeyError:
        raise DovecotError(f"useradd {name} failed: {result.stderr.strip()}") from None


def _raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft open-files limit towards ``wanted`` (Dovecot inherits it).

    Dovecot warns at startup when the limit is below what its client limits could need;
    the soft limit can be raised up to the hard limit without privileges.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like Dovecot's listeners: connections in TIME_WAIT do not block the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (``Z`` for a zombie), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def _alive(pid: int) -> bool:
    # The daemonized master is not our child, so we cannot reap it; a zombie is dead.
    return _process_state(pid) not in (None, "Z")


def _masters_for(config: Path) -> list[int]:
    """Pids of Dovecot masters started with ``-c config`` (left over by a crashed run)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dovecot") and str(config).encode() in argv:
            pids.append(int(entry.name))
    return pids


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL and wait again."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.02)
    raise DovecotError(f"Dovecot master {pid} did not exit after SIGKILL")


class DovecotServer:
    """A private Dovecot on 127.0.0.1 with a STARTTLS port and an implicit-TLS port.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Connect to
    :attr:`hostname` (``localhost``, which the certificate names along with 127.0.0.1)
    on :attr:`imap_port` (plaintext + STARTTLS) or :attr:`imaps_port` (implicit TLS),
    trusting :attr:`ca_path` or :meth:`client_ssl_context`.

    Args:
        workdir: directory the server owns (created if missing, its known entries reset
            on start). Default: a fresh temporary directory, removed by :meth:`stop`.
        login_trusted_networks: Dovecot's setting of that name, e.g. ``"127.0.0.1/32"``,
            so that ID ``x-originating-ip`` from a proxy is honoured.
        imap_capability: Dovecot's ``imap_capability`` (post-login CAPABILITY list; a
            leading ``+`` adds to the default) to imitate an older server.
        ports: (imap, imaps) ports to try first; if either is taken, free ones are used.
        extra_config: appended verbatim to the generated dovecot.conf.
        startup_timeout: seconds to wait for both listeners to greet.
        separator: the hierarchy separator of the inbox namespace (``.`` makes a
            server like the legacy ones that show Maildir++ names as they are).
    """

    host = "127.0.0.1"
    """Address the listeners are bound to."""
    hostname = "localhost"
    """DNS name to connect to; the certificate is valid for it and for 127.0.0.1."""

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        login_trusted_networks: str | None = None,
        imap_capability: str | None = None,
        ports: tuple[int, int] | None = None,
        extra_config: str = "",
        startup_timeout: float = 15.0,
        separator: str = "/",
    ) -> None:
        self._own_workdir = workdir is None
        self._workdir_arg = None if workdir is None else Path(workdir).absolute()
        self.login_trusted_networks = login_trusted_networks
        self.imap_capability = imap_capability
        self._preferred_ports = ports
        self.extra_config = extra_config
        self.separator = separator
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._user_counter = 0
        self._users: dict[str, User] = {}
        self._workdir: Path | None = None
        self._base_dir: Path | None = None
        self._own_base_dir = False
        self._ports: tuple[int, int] | None = None
        self._pid: int | None = None
        self._identity: _Identity | None = None
        self._ca: trustme.CA | None = None
        self._corpus: CorpusSummary | None = None
        self._shared: User | None = None
        self._binaries: tuple[Path, Path] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Prepare the work directory, start Dovecot and wait until it greets.

        Raises DovecotNotInstalled if Dovecot is missing and DovecotError if it does not
        come up (the message includes the log tail). Returns ``self``.
        """
        if self._pid is not None:
            raise DovecotError("this DovecotServer is already running")
        self._binaries = find_dovecot()
        self._identity = _identity()
        with self._lock:
            self._users.clear()
            self._user_counter = 0
        try:
            work = self._prepare_workdir()
            self._write_tls(work / "tls")
            self._corpus = write_corpus(work / "corpus" / "Maildir")
            self._launch()
            self._shared = self.add_user("shared", "shared-secret")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM, then SIGKILL) and remove a temporary work directory.

        Safe to call more than once and on a server that failed to start.
        """
        atexit.unregister(self.stop)
        pid, self._pid = self._pid, None
        if self._base_dir is not None:
            with contextlib.suppress(OSError, ValueError):
                pid = int((self._base_dir / "master.pid").read_text().split()[0])
        if pid is not None and _alive(pid):
            _terminate(pid, timeout=10.0)
        if self._own_base_dir and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    def __repr__(self) -> str:
        if self._ports is None or self._pid is None:
            return f"<DovecotServer stopped workdir={self._workdir_arg}>"
        return (
            f"<DovecotServer pid={self._pid} {self.host} imap={self._ports[0]} "
            f"imaps={self._ports[1]} users={len(self._users)} workdir={self._workdir}>"
        )

    # -- what clients need ------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self._require(self._workdir, "workdir")

    @property
    def config_path(self) -> Path:
        return self.workdir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    @property
    def imap_port(self) -> int:
        """Plaintext port that offers STARTTLS."""
        return self._require(self._ports, "ports")[0]

    @property
    def imaps_port(self) -> int:
        """Implicit-TLS port."""
        return self._require(self._ports, "ports")[1]

    @property
    def ca(self) -> trustme.CA:
        """The trustme CA that issued the server certificate."""
        return self._require(self._ca, "ca")

    @property
    def ca_path(self) -> Path:
        """PEM file of the CA certificate, for clients that take a CA file."""
        return self.workdir / "tls" / "ca.pem"

    @property
    def corpus(self) -> CorpusSummary:
        """Summary of the corpus every ``with_corpus`` user receives."""
        return self._require(self._corpus, "corpus")

    @property
    def shared_user(self) -> User:
        """A user with the corpus that every test may read; do not change its mail."""
        return self._require(self._shared, "shared user")

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA and verifies the host name."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    # -- users ----------------------------------------------------------------------

    def add_user(
        self, name: str | None = None, password: str | None = None, *, with_corpus: bool = True
    ) -> User:
        """Create a user who can log in immediately.

        Args:
            name: user name (``[a-z0-9][a-z0-9._-]*``); default ``userNNNN``.
            password: default: a random one.
            with_corpus: give the user a private copy of the corpus (hard links, about
                10 ms); otherwise the mailbox starts empty.
        Raises ValueError for an invalid or existing name.
        """
        work = self.workdir
        identity = self._require(self._identity, "identity")
        with self._lock:
            if name is None:
                while True:
                    self._user_counter += 1
                    name = f"user{self._user_counter:04d}"
                    if name not in self._users:
                        break
            if not _USERNAME.match(name):
                raise ValueError(f"invalid user name {name!r}: use [a-z0-9][a-z0-9._-]*")
            if name in self._users:
                raise ValueError(f"user {name!r} exists already")
            if password is None:
                password = secrets.token_urlsafe(12)
            if any(c in password for c in ":\n\r\0"):
                raise ValueError("a passwd-file password cannot contain ':', NUL or line breaks")
            user = User(name=name, password=password, home=work / "mail" / name)
            self._users[name] = user
        user.home.mkdir(mode=0o700)
        os.chown(user.home, identity.mail_uid, identity.mail_gid)
        if with_corpus:
            template = self.corpus.root
            install_corpus(template, user.maildir, owner=(identity.mail_uid, identity.mail_gid))
        # Write the passwd-file last and atomically: the user exists once it is there.
        entry = work / "passwd.d" / name
        tmp = entry.with_name(f".{name}.tmp")
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        tmp.chmod(0o644)  # read by Dovecot's auth process (runs as default_internal_user)
        os.replace(tmp, entry)
        return user

    def remove_user(self, user: User | str) -> None:
        """Delete a user's passwd entry and mail. Close its connections first."""
        name = user if isinstance(user, str) else user.name
        with self._lock:
            known = self._users.pop(name, None)
        (self.workdir / "passwd.d" / name).unlink(missing_ok=True)
        if known is not None:
            shutil.rmtree(known.home, ignore_errors=True)

    @property
    def users(self) -> tuple[User, ...]:
        with self._lock:
            return tuple(self._users.values())

    # -- observing ------------------------------------------------------------------

    def doveadm_who(self) -> list[WhoEntry]:
        """Logged-in IMAP connections, one entry per connection (``doveadm who -1``)."""
        doveadm = self._require(self._binaries, "binaries")[1]
        result = subprocess.run(
            [str(doveadm), "-c", str(self.config_path), "who", "-1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(
                f"doveadm who failed ({result.returncode}): {result.stderr.strip()}"
                + self._log_tail()
            )
        entries = []
        for line in result.stdout.splitlines()[1:]:  # the first line is the header
            fields = line.split()
            if len(fields) >= 4:
                entries.append(
                    WhoEntry(username=fields[0], proto=fields[1], pid=int(fields[2]), ip=fields[3])
                )
        return entries

    def log_text(self) -> str:
        """Everything Dovecot has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_errors(self) -> list[str]:
        """Log lines at level Error, Fatal or Panic."""
        levels = (": Error: ", ": Fatal: ", ": Panic: ")
        return [line for line in self.log_text().splitlines() if any(x in line for x in levels)]

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _require(value: _T | None, what: str) -> _T:
        if value is None:
            raise DovecotError(f"the server is not started ({what} unknown)")
        return value

    def _prepare_workdir(self) -> Path:
        if self._workdir_arg is None:
            work = Path(tempfile.mkdtemp(prefix="imapproxy-dovecot-"))
        else:
            work = self._workdir_arg
            work.mkdir(parents=True, exist_ok=True)
        self._workdir = work
        identity = self._require(self._identity, "identity")
        if identity.root:
            # Dovecot's unprivileged processes must reach files under the work dir.
            work.chmod(0o755)
            for parent in work.parents:
                if not parent.stat().st_mode & 0o001:
                    raise DovecotError(
                        f"{parent} is not searchable by other users (mode "
                        f"{parent.stat().st_mode & 0o777:o}); Dovecot's unprivileged "
                        f"processes could not reach {work}. Use a work directory elsewhere."
                    )
        config = work / "dovecot.conf"
        for pid in _masters_for(config):  # left over by a run that was killed
            _terminate(pid, timeout=10.0)
        for name in ("run", "state", "passwd.d", "mail", "corpus", "tls"):
            shutil.rmtree(work / name, ignore_errors=True)
        for name in ("dovecot.log", "dovecot.out", "dovecot.conf"):
            (work / name).unlink(missing_ok=True)
        for name in ("passwd.d", "mail", "corpus", "tls"):
            (work / name).mkdir(mode=0o755)
        base = work / "run"
        if len(str(base)) > _MAX_BASE_DIR:
            base = Path(tempfile.mkdtemp(prefix="imapproxy-dc-"))
            base.chmod(0o755)  # what Dovecot expects of a base_dir (it warns otherwise)
            self._own_base_dir = True
        self._base_dir = base
        return work

    def _write_tls(self, tls: Path) -> None:
        self._ca = trustme.CA(organization_name="imapproxy test CA")
        cert = self._ca.issue_cert(self.hostname, self.host)
        self._ca.cert_pem.write_to_path(str(tls / "ca.pem"))
        (tls / "server.pem").write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        key = tls / "server.key"
        cert.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)

    def _launch(self) -> None:
        work = self.workdir
        dovecot = self._require(self._binaries, "binaries")[0]
        _raise_fd_limit(_FD_WANTED)
        attempts = 6
        for attempt in range(attempts):
            # Preferred ports first (if free now), then free ones picked by bind-and-close.
            ports = self._preferred_ports if attempt == 0 else None
            if ports is None or not all(_port_is_free(p) for p in ports):
                ports = (_free_port(), _free_port())
            if ports[0] == ports[1]:
                continue
            self._ports = ports
            self.config_path.write_text(self._render_config())
            with open(work / "dovecot.out", "ab") as out:
                result = subprocess.run(
                    [str(dovecot), "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                    check=False,
                )
            if result.returncode == 0:
                break
            output = (work / "dovecot.out").read_text(errors="replace")
            if "Address already in use" in output and attempt + 1 < attempts:
                continue
            raise DovecotError(
                f"`dovecot -c {self.config_path}` exited with {result.returncode}:\n"
                + output.strip()
                + self._log_tail()
            )
        else:
            raise DovecotError("could not find two free ports for Dovecot")
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Poll until master.pid is written and both listeners greet with ``* OK``.

        ``dovecot`` returns when it has forked; the daemon writes master.pid a moment
        later, so the pid file is polled along with the ports.
        """
        deadline = time.monotonic() + self.startup_timeout
        pidfile = self._require(self._base_dir, "base_dir") / "master.pid"
        ctx = self.client_ssl_context()
        pending = {self.imap_port: False, self.imaps_port: True}
        last_error = "no attempt"
        while True:
            if self._pid is None:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    self._pid = int(pidfile.read_text().split()[0])
            for port, tls in list(pending.items()):
                try:
                    greeting = self._greeting(port, ctx if tls else None)
                except (OSError, ssl.SSLError) as exc:
                    last_error = f"port {port}: {exc!r}"
                    continue
                if greeting.startswith(b"* OK"):
                    del pending[port]
                else:
                    last_error = f"port {port} greeted {greeting!r}"
            if not pending and self._pid is not None:
                return
            if self._pid is not None and not _alive(self._pid):
                raise DovecotError(
                    f"Dovecot (pid {self._pid}) exited during startup" + self._log_tail()
                )
            if time.monotonic() > deadline:
                waiting = [f"a greeting on port {p}" for p in sorted(pending)]
                if self._pid is None:
                    waiting.append(str(pidfile))
                raise DovecotError(
                    f"Dovecot did not come up within {self.startup_timeout}s; still waiting "
                    f"for {', '.join(waiting)} (last: {last_error})" + self._log_tail()
                )
            time.sleep(0.01)

    def _greeting(self, port: int, ctx: ssl.SSLContext | None) -> bytes:
        with socket.create_connection((self.host, port), timeout=2.0) as raw:
            if ctx is None:
                return self._read_line(raw)
            with ctx.wrap_socket(raw, server_hostname=self.hostname) as tls:
                return self._read_line(tls)

    @staticmethod
    def _read_line(sock: socket.socket) -> bytes:
        data = b""
        while b"\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def _log_tail(self, lines: int = 30) -> str:
        text = self.log_text() if self._workdir is not None else ""
        if not text:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of {self.log_path} ---\n{tail}"

    def _render_config(self) -> str:
        work = self.workdir
        identity = self._require(self._identity, "identity")
        base = self._require(self._base_dir, "base_dir")
        imap_port, imaps_port = self._require(self._ports, "ports")
        lines = [
            "# Generated by imapproxy.testing.dovecot: private test instance, do not edit.",
            f"instance_name = imapproxy-{os.getpid()}-{secrets.token_hex(4)}",
            f"base_dir = {base}",
            f"state_dir = {work / 'state'}",
            f"log_path = {work / 'dovecot.log'}",
            "protocols = imap",
            f"listen = {self.host}",
            "ssl = yes",
            f"ssl_cert = <{work / 'tls' / 'server.pem'}",
            f"ssl_key = <{work / 'tls' / 'server.key'}",
            "ssl_min_protocol = TLSv1.2",
        ]
        if Path("/usr/share/dovecot/dh.pem").exists():
            lines.append("ssl_dh = </usr/share/dovecot/dh.pem")
        lines += [
            "auth_mechanisms = plain login",
            "disable_plaintext_auth = no",
            "auth_verbose = yes",
            # Fast failed logins: no 2 s reply delay, no growing per-IP penalty (below).
            "auth_failure_delay = 0",
            f"default_internal_user = {identity.internal_user}",
            f"default_login_user = {identity.login_user}",
            *(
                [f"default_internal_group = {identity.internal_group}"]
                if identity.internal_group
                else []
            ),
            f"first_valid_uid = {identity.mail_uid}",
            f"first_valid_gid = {identity.mail_gid}",
            "mail_location = maildir:~/Maildir",
            "mail_fsync = never",
            f"mail_uid = {identity.mail_uid}",
            f"mail_gid = {identity.mail_gid}",
            "default_process_limit = 1000",
            "default_client_limit = 4000",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {work / 'passwd.d'}/%u",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = home={work / 'mail'}/%u allow_all_users=yes",
            "}",
            "namespace inbox {",
            "  inbox = yes",
            f"  separator = {self.separator}",
        ]
        for folder in FOLDERS:
            if folder.special_use:
                lines += [
                    f'  mailbox "{folder.name}" {{',
                    f"    special_use = {folder.special_use}",
                    "  }",
                ]
        lines += [
            "}",
            "protocol imap {",
            "  mail_max_userip_connections = 1000",
        ]
        if self.imap_capability is not None:
            lines.append(f"  imap_capability = {self.imap_capability}")
        lines += [
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            f"    address = {self.host}",
            f"    port = {imap_port}",
            "  }",
            "  inet_listener imaps {",
            f"    address = {self.host}",
            f"    port = {imaps_port}",
            "    ssl = yes",
            "  }",
            "  service_count = 0",  # high-performance mode: few processes, many clients
            "  process_min_avail = 2",
            "  client_limit = 1000",
        ]
        if not identity.root:
            lines.append("  chroot =")
        lines += [
            "}",
            "service imap {",
            "  process_limit = 1000",
            "}",
        ]
        lines += [
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",  # no auth penalty: every test logs in from 127.0.0.1
            "  }",
        ]
        if not identity.root:
            lines.append("  chroot =")
        lines.append("}")
        if self.login_trusted_networks is not None:
            lines.append(f"login_trusted_networks = {self.login_trusted_networks}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"
