"""Shared fixtures: one private Dovecot for the whole test session.

- ``dovecot`` (session): a running :class:`~imapproxy.testing.DovecotServer` with the
  corpus; plain (not trio) so that every test, sync or trio, shares the one server.
- ``shared_user`` (session): a user with the corpus for tests that only read mail.
  Do not change its mail (flags, expunges, appends): other tests count on it.
- ``mail_user`` (function): a fresh user with a private copy of the corpus, removed
  after the test; use it whenever a test changes mail.
- ``proxy`` (function, trio): imapproxy serving in the test's nursery in front of the
  session's Dovecot, with an implicit-TLS and a STARTTLS listener on ephemeral ports;
  ``proxy.ssl_context()`` trusts its certificate (``proxy_tls``, session). Use
  :func:`start_proxy` for other configurations (other upstreams, limits, timeouts).

Tests that use any of them get the ``dovecot`` marker automatically, so
``pytest -m "not dovecot"`` runs the rest. When Dovecot is not installed those tests
fail with instructions (``make test`` installs it). Setting IMAPPROXY_SKIP_DOVECOT=1
skips them instead: a convenience for machines without Dovecot. CI never sets it, so
a CI run without Dovecot fails loudly rather than passing with half the suite skipped.
"""

from __future__ import annotations

import io
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from imap_raw import RawImap
from secret_watch import SecretWatch

from imapproxy.config import Logging
from imapproxy.logs import configure_logging
from imapproxy.server import Proxy
from imapproxy.testing import DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream, proxy_config

DOVECOT_FIXTURES = frozenset({"dovecot", "shared_user", "mail_user", "twin_users", "proxy"})
SKIP_ENV = "IMAPPROXY_SKIP_DOVECOT"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DOVECOT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dovecot)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """The session's Dovecot server (started on first use, stopped at the end)."""
    server = DovecotServer()
    try:
        server.start()
    except DovecotNotInstalled as exc:
        missing = str(exc)  # reported below, outside the handler: no chained traceback
    else:
        missing = ""
    if missing:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{missing} (skipped because {SKIP_ENV}=1)")
        pytest.fail(f"{missing} Or set {SKIP_ENV}=1 to skip the Dovecot tests.", pytrace=False)
    watch_users(server)
    try:
        yield server
    finally:
        server.stop()


# -- never a secret in a log line ------------------------------------------------------

#: Every password the suite gives a Dovecot user, and what tests register.
SECRETS = SecretWatch()


def watch_users(server: DovecotServer) -> None:
    """Register the passwords of ``server``'s users, now and as they are added."""
    SECRETS.add_user(server.shared_user.name, server.shared_user.password)
    add_user = server.add_user

    def add_and_watch(*args: Any, **kwargs: Any) -> User:
        user = add_user(*args, **kwargs)
        SECRETS.add_user(user.name, user.password)
        return user

    server.add_user = add_and_watch  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_secret_in_any_log_line() -> Iterator[None]:
    """Each test's log lines, at debug level and as JSON, searched for every
    registered password and for the base64 of each SASL PLAIN message at all three
    alignments. (Tests of the logging setup itself replace this configuration.)"""
    buffer = io.StringIO()
    configure_logging(Logging(level="debug", format="json"), stream=buffer)
    yield
    leaks = SECRETS.leaks(buffer.getvalue().encode("utf-8", "surrogateescape"))
    structlog.reset_defaults()
    if leaks:
        pytest.fail("a log line holds " + "; ".join(leaks), pytrace=False)


@pytest.fixture(scope="session")
def shared_user(dovecot: DovecotServer) -> User:
    """A corpus user shared by all tests: read only."""
    return dovecot.shared_user


@pytest.fixture
def twin_users(dovecot: DovecotServer) -> Iterator[tuple[User, User]]:
    """Two fresh users with identical corpus copies (so UIDs line up): one for a
    direct connection, one for the same commands through the proxy."""
    users = (dovecot.add_user(), dovecot.add_user())
    try:
        yield users
    finally:
        for user in users:
            dovecot.remove_user(user)


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> Iterator[User]:
    """A fresh user with its own copy of the corpus; deleted after the test."""
    user = dovecot.add_user()
    try:
        yield user
    finally:
        dovecot.remove_user(user)


# -- the proxy in front of the session's Dovecot -------------------------------------


@dataclass
class RunningProxy:
    """A proxy serving in the test's nursery, in front of the session's Dovecot."""

    proxy: Proxy
    tls: ProxyTls

    def port(self, mode: str) -> int:
        """The bound port of the listener with ``tls = mode``."""
        for bound in self.proxy.listening:
            if bound.config.tls == mode:
                return bound.port
        raise LookupError(mode)

    @property
    def implicit_port(self) -> int:
        return self.port("implicit")

    @property
    def starttls_port(self) -> int:
        return self.port("starttls")

    def ssl_context(self) -> ssl.SSLContext:
        return self.tls.client_context()


@pytest.fixture(scope="session")
def proxy_tls(tmp_path_factory: pytest.TempPathFactory) -> ProxyTls:
    """The proxy's certificate (localhost, 127.0.0.1, ::1) and its CA."""
    return ProxyTls.create(tmp_path_factory.mktemp("proxy-tls"))


#: Fast failed-login delays so that tests of refusals do not wait seconds.
TEST_LIMITS = {"login_failure_delay": 0.01, "login_failure_max_delay": 0.05}


async def start_proxy(
    nursery: trio.Nursery,
    directory: Path,
    tls: ProxyTls,
    upstreams: list[dict[str, object]],
    **options: Any,
) -> RunningProxy:
    """Configure and start a proxy in ``nursery`` (ephemeral ports)."""
    limits = {**TEST_LIMITS, **options.pop("limits", {})}
    config = proxy_config(directory, tls, upstreams, limits=limits, **options)
    proxy = Proxy(config)
    await nursery.start(proxy.serve)
    return RunningProxy(proxy, tls)


def private_dovecot(**options: Any) -> Iterator[DovecotServer]:
    """A Dovecot of a test module's own (``DovecotServer(**options)``), started, its
    users' passwords watched; for a module-scoped fixture to yield from."""
    server = DovecotServer(**options)
    try:
        server.start()
    except DovecotNotInstalled as exc:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(str(exc))
        raise
    watch_users(server)
    try:
        yield server
    finally:
        server.stop()


async def proxy_login(running: RunningProxy, user: User) -> RawImap:
    """A raw client logged in to ``running`` as ``user`` (greeting read)."""
    client = await RawImap.connect(
        "localhost", running.implicit_port, ssl_context=running.ssl_context()
    )
    await client.read_line()
    reply = await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
    assert reply[-1].startswith(b"a OK"), reply
    return client


async def dovecot_commands(
    server: DovecotServer, user: User, *commands: bytes
) -> list[list[bytes]]:
    """What ``server`` itself answers to ``commands`` (each a list of response
    lines, the tagged one last), on a direct connection logged in as ``user``."""
    client = await RawImap.connect(
        server.hostname, server.imaps_port, ssl_context=server.client_ssl_context()
    )
    await client.read_line()
    await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
    replies = [await client.command(b"c%d" % i, command) for i, command in enumerate(commands)]
    await client.command(b"z", b"LOGOUT")
    await client.aclose()
    return replies


@pytest.fixture
async def proxy(
    dovecot: DovecotServer, proxy_tls: ProxyTls, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[RunningProxy]:
    """imapproxy (implicit TLS + STARTTLS listeners) in front of Dovecot's implicit-TLS port."""
    running = await start_proxy(nursery, tmp_path, proxy_tls, [dovecot_upstream(dovecot)])
    yield running
    running.proxy.shutdown()


#: Concurrent sharing on (docs/multiplex.md): up to 100 sessions a connection (well
#: above the busiest test's 50), three connections a user (one per mailbox).
MUX_SHARING: dict[str, object] = {
    "enabled": True,
    "max_sessions_per_connection": 100,
    "max_connections_per_user": 3,
}


@pytest.fixture
def mux_user(dovecot: DovecotServer) -> Iterator[User]:
    """A fresh user with an empty INBOX (sharing tests build their own mailboxes)."""
    user = dovecot.add_user(with_corpus=False)
    try:
        yield user
    finally:
        dovecot.remove_user(user)


@pytest.fixture
async def mux_proxy(
    dovecot: DovecotServer, proxy_tls: ProxyTls, tmp_path: Path
) -> AsyncIterator[RunningProxy]:
    """imapproxy in front of the session's Dovecot sharing upstream connections
    (:data:`MUX_SHARING`); stopped after the test once its upstream connections
    are logged out (within a minute)."""
    async with trio.open_nursery() as nursery:
        running = await start_proxy(
            nursery,
            tmp_path / "proxy",
            proxy_tls,
            [dovecot_upstream(dovecot)],
            multiplex=MUX_SHARING,
        )
        yield running
        running.proxy.shutdown()
        nursery.cancel_scope.deadline = trio.current_time() + 60
