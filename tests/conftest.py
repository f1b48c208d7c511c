"""Shared fixtures: one private Dovecot for the whole test session.

- ``dovecot`` (session): a running :class:`~imapproxy.testing.DovecotServer` with the
  corpus; plain (not trio) so that every test, sync or trio, shares the one server.
- ``shared_user`` (session): a user with the corpus for tests that only read mail.
  Do not change its mail (flags, expunges, appends): other tests count on it.
- ``mail_user`` (function): a fresh user with a private copy of the corpus, removed
  after the test; use it whenever a test changes mail.

Tests that use any of them get the ``dovecot`` marker automatically, so
``pytest -m "not dovecot"`` runs the rest. When Dovecot is not installed those tests
fail with instructions (``make test`` installs it). Setting IMAPPROXY_SKIP_DOVECOT=1
skips them instead: a convenience for machines without Dovecot. CI never sets it, so
a CI run without Dovecot fails loudly rather than passing with half the suite skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from imapproxy.testing import DovecotNotInstalled, DovecotServer, User

DOVECOT_FIXTURES = frozenset({"dovecot", "shared_user", "mail_user"})
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
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_user(dovecot: DovecotServer) -> User:
    """A corpus user shared by all tests: read only."""
    return dovecot.shared_user


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> Iterator[User]:
    """A fresh user with its own copy of the corpus; deleted after the test."""
    user = dovecot.add_user()
    try:
        yield user
    finally:
        dovecot.remove_user(user)
