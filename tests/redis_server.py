"""A private ``redis-server`` for tests: loopback, a free port, a password, no persistence.

:class:`RedisServer` starts Debian's ``redis-server`` as a subprocess and is ready
when the server has logged "Ready to accept connections" and answered PING with
the password (a reader thread follows its log; no polling). :meth:`RedisServer.stop`
and :meth:`RedisServer.start` again keep the port, so a test can take Redis away and
bring it back. :class:`RedisNotInstalled` says how to install it (``make test`` does).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

import pytest
import redis

__all__ = ["RedisNotInstalled", "RedisServer", "new_redis_server"]

START_TIMEOUT = 10.0
"""Seconds redis-server gets to become ready."""


class RedisNotInstalled(Exception):
    """redis-server is not on this machine."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RedisNotInstalled(
            "redis-server is not installed: run 'make test' (as root it installs it), "
            "or 'sudo apt-get install redis-server'."
        )
    return found


class RedisServer:
    """One redis-server on 127.0.0.1 with ``requirepass``; a context manager."""

    def __init__(self) -> None:
        self.binary = _binary()
        self.password = secrets.token_hex(16)
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="imapproxy-redis-")
        self.dir = Path(self._dir.name)
        self.password_file = self.dir / "password"
        self.password_file.write_text(self.password + "\n")
        self._process: subprocess.Popen[bytes] | None = None
        self._log: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this server (the test's own view, not the cache's)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        """Start the server (on the same port as before, after a stop) and wait until
        it answers PING; raises RuntimeError with its log when it does not."""
        assert self._process is None, "already running"
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "requirepass": self.password,
            "save": "",  # no snapshots
            "appendonly": "no",
            "dir": str(self.dir),
            "protected-mode": "yes",
            "logfile": "",  # standard output, which _follow reads
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        ready = threading.Event()
        assert self._process.stdout is not None
        threading.Thread(
            target=self._follow, args=(self._process.stdout, ready), daemon=True
        ).start()
        if not ready.wait(START_TIMEOUT) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + "".join(self._log[-20:]))
        with self.client() as client:
            client.ping()

    def _follow(self, output: IO[bytes], ready: threading.Event) -> None:
        """Read the server's log until it ends; set ``ready`` at its ready line."""
        with output:
            for raw in output:
                line = raw.decode("utf-8", "replace")
                self._log.append(line)
                if "Ready to accept connections" in line:
                    ready.set()
        ready.set()  # it exited: start() sees poll() is not None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SKIP_ENV = "IMAPPROXY_SKIP_DOVECOT"  # as tests/conftest.py: the external servers


def new_redis_server() -> RedisServer:
    """A :class:`RedisServer` (not started); the test fails saying how to install
    redis-server when it is missing, or skips with ``IMAPPROXY_SKIP_DOVECOT=1``."""
    try:
        return RedisServer()
    except RedisNotInstalled as exc:
        missing = str(exc)  # reported outside the handler: no chained traceback
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{missing} (skipped because {SKIP_ENV}=1)")
    pytest.fail(f"{missing} Or set {SKIP_ENV}=1 to skip the Redis tests.", pytrace=False)
