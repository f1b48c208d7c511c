"""Routing a login name to its upstream: an exact user entry, then the domain,
then the default; names compare case-insensitively; no route means None."""

from __future__ import annotations

import pytest

from imapproxy.config import Config, parse_config
from imapproxy.router import Router, normalise_user

BASE = """
[[listener]]
address = "127.0.0.1:1143"
tls = "none"

[[upstream]]
name = "main"
address = "127.0.0.1:1431"
tls = "none"

[[upstream]]
name = "legacy"
address = "127.0.0.1:1432"
tls = "none"

[[upstream]]
name = "vip"
address = "127.0.0.1:1433"
tls = "none"
"""

ROUTES = """
[routes]
default = "main"

[routes.domains]
"Old.Example.ORG" = "legacy"
"example.com" = "main"

[routes.users]
"Alice@Old.Example.org" = "vip"
"bob@example.com" = "legacy"
"root" = "vip"
"""


def config(routes: str) -> Config:
    return parse_config(BASE + routes)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(config(ROUTES))


#: (login name, upstream name)
ROUTED = [
    # users first, whatever the case of the login or of the key
    ("alice@old.example.org", "vip"),
    ("ALICE@OLD.EXAMPLE.ORG", "vip"),
    ("bob@example.com", "legacy"),
    ("Bob@Example.Com", "legacy"),
    ("root", "vip"),
    ("ROOT", "vip"),
    # then the domain
    ("carol@old.example.org", "legacy"),
    ("carol@OLD.example.org", "legacy"),
    ("dave@example.com", "main"),
    ("weird@name@old.example.org", "legacy"),  # the domain follows the last "@"
    ("@old.example.org", "legacy"),
    # then the default
    ("erin@elsewhere.net", "main"),
    ("erin@sub.old.example.org", "main"),  # domains match exactly, not by suffix
    ("old.example.org", "main"),  # no "@": not a domain
    ("alice", "main"),  # the user entry is for alice@old.example.org
    ("bob", "main"),
    ("rooted", "main"),
    ("", "main"),
    ("carol@", "main"),
]


@pytest.mark.parametrize(("user", "upstream"), ROUTED)
def test_route(router: Router, user: str, upstream: str) -> None:
    route = router.route(user)
    assert route is not None
    assert route.name == upstream


@pytest.mark.parametrize(("user", "upstream"), ROUTED)
def test_router_agrees_with_the_config_lookup(user: str, upstream: str) -> None:
    assert config(ROUTES).routes.lookup(user) == upstream


def test_route_returns_the_configured_upstream() -> None:
    cfg = config(ROUTES)
    route = Router(cfg).route("carol@old.example.org")
    assert route is cfg.upstream("legacy")
    assert str(route.address) == "127.0.0.1:1432"


def test_no_route_without_a_default() -> None:
    router = Router(
        config('[routes.domains]\n"example.com" = "main"\n[routes.users]\nroot = "vip"\n')
    )
    assert router.route("alice@example.com").name == "main"  # type: ignore[union-attr]
    assert router.route("root").name == "vip"  # type: ignore[union-attr]
    assert router.route("alice@example.org") is None
    assert router.route("alice") is None
    assert router.route("") is None
    assert repr(router) == "Router(1 users, 1 domains, default=None)"


def test_default_only() -> None:
    router = Router(config('[routes]\ndefault = "legacy"\n'))
    for user in ("alice", "alice@example.com", "ROOT"):
        assert router.route(user).name == "legacy"  # type: ignore[union-attr]
    assert repr(router) == "Router(0 users, 0 domains, default='legacy')"


def test_single_upstream_is_the_default() -> None:
    cfg = parse_config(
        '[[listener]]\naddress = "127.0.0.1:1143"\ntls = "none"\n'
        '[[upstream]]\nname = "only"\naddress = "127.0.0.1:143"\ntls = "none"\n'
    )
    router = Router(cfg)
    assert router.route("anyone@anywhere").name == "only"  # type: ignore[union-attr]
    assert repr(router) == "Router(0 users, 0 domains, default='only')"


def test_repr(router: Router) -> None:
    assert repr(router) == "Router(3 users, 2 domains, default='main')"


def test_normalise_user_lower_cases_only() -> None:
    assert normalise_user(" Alice@Example.COM ") == " alice@example.com "
