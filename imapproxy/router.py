"""Routing: which upstream serves a user.

Static, from ``[routes]``: an exact user entry wins, then the domain of
``user@domain``, then ``default``. Names compare lower-case (servers treat login
names case-insensitively; a rule on ``alice`` must not be dodged by ``ALICE``).
A later issue may add a pluggable lookup behind the same :meth:`Router.route`.
"""

from __future__ import annotations

from imapproxy.config import Config, Upstream

__all__ = ["Router", "normalise_user"]


def normalise_user(user: str) -> str:
    """The form user names are compared in: stripped of nothing, lower-cased."""
    return user.lower()


class Router:
    """Maps a login name to its upstream (``None``: no route; refuse the login)."""

    def __init__(self, config: Config) -> None:
        self._upstreams = {up.name: up for up in config.upstreams}
        routes = config.routes
        self._users = {normalise_user(k): v for k, v in routes.users.items()}
        self._domains = {k.lower(): v for k, v in routes.domains.items()}
        self._default = routes.default

    def route(self, user: str) -> Upstream | None:
        name = normalise_user(user)
        target = self._users.get(name)
        if target is None and "@" in name:
            target = self._domains.get(name.rpartition("@")[2])
        if target is None:
            target = self._default
        return self._upstreams.get(target) if target is not None else None

    def __repr__(self) -> str:
        return (
            f"Router({len(self._users)} users, {len(self._domains)} domains, "
            f"default={self._default!r})"
        )
