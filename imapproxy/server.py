"""The shell of a running proxy: listeners, connection limits, signals.

:class:`Proxy` holds what every session shares -- the configuration, the TLS
contexts (built once), the router, the connection limiter and the failed-login
throttle -- and :meth:`Proxy.serve` runs the listeners until SIGTERM or SIGINT.

Shutdown drains: the listeners close first, then every session is asked to end
(:meth:`~imapproxy.session.ClientSession.shutdown`: at once when idle, after its
commands in flight otherwise, always with a BYE); after ``shutdown_grace``
seconds whatever is left is cancelled.

A connection over the limits (overall or per client IP) gets a BYE with the
reason and is closed; on an implicit-TLS listener the BYE goes over TLS (a short
handshake), with a small bound on how many such refusals run at once so that a
flood cannot turn refusals into work.
"""

from __future__ import annotations

import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
from cachetools import LRUCache

from imapproxy.cache import PartCache
from imapproxy.capabilities import ClientCapabilities
from imapproxy.config import Config, ConfigError, Listener, load_config
from imapproxy.fetchcache import CaptureBudget
from imapproxy.limits import ConnectionLimiter, KeyedGate, LoginThrottle, RateLimiter
from imapproxy.logs import get_logger
from imapproxy.mux import Multiplexer
from imapproxy.pool import Pooled, UpstreamPool
from imapproxy.router import Router
from imapproxy.rules import RuleSet, load_configured_rules
from imapproxy.session import ClientSession
from imapproxy.tls import client_context, server_context

__all__ = ["BoundListener", "Proxy", "run"]

log = get_logger("imapproxy.server")

_REFUSAL_HANDSHAKES = 16
#: Seconds the background work of a proxy (cache entries being stored) gets at shutdown.
_BACKGROUND_GRACE = 5.0
#: Octets of large responses all sessions may hold at once to store in the cache.
_CAPTURE_BUDGET = 256 * 1024 * 1024
#: Seconds between two log lines of the cache's counters.
_COUNTERS_EVERY = 300.0


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listener and the address it got (port 0 in the config: an ephemeral one)."""

    config: Listener
    host: str
    port: int


class Proxy:
    """A configured proxy; :meth:`serve` runs it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_ssl: ssl.SSLContext | None = (
            server_context(config.tls) if config.tls is not None else None
        )
        self.upstream_ssl: dict[str, ssl.SSLContext | None] = {
            up.name: client_context(up) if up.tls != "none" else None for up in config.upstreams
        }
        self.router = Router(config)
        #: The compiled rules (None: no ``[rules] dir``). Raises RuleError.
        self.rules: RuleSet | None = load_configured_rules(config)
        limits = config.limits
        self.limiter = ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip)
        self.throttle = LoginThrottle(
            limits.login_failure_delay,
            limits.login_failure_max_delay,
            limits.login_failure_window,
        )
        #: Failed logins per client IP alone: counted always, enforced for the
        #: sessions a ``limit.failed_logins_per_ip`` rule covers.
        self.ip_throttle = LoginThrottle(
            limits.login_failure_delay,
            limits.login_failure_max_delay,
            limits.login_failure_window,
        )
        self.capabilities = ClientCapabilities(max_literal=limits.max_literal)
        self.login_gate = KeyedGate()
        self.command_rate = RateLimiter()
        #: The part cache (docs/cache.md), used for what ``cache`` rules name.
        self.cache: PartCache | None = PartCache(config.cache)
        #: Octets of streamed responses being collected for the cache, all sessions.
        self.capture_budget = CaptureBudget(_CAPTURE_BUDGET)
        #: The UIDVALIDITY last seen per (upstream, owner, mailbox) of the cache.
        self.cache_validity: LRUCache[tuple[str, str, str], int] = LRUCache(maxsize=100_000)
        #: Tasks that outlive a session (storing cache entries); set while serving.
        self.background: trio.Nursery | None = None
        #: Idle logged-in upstream connections for reuse (docs/multiplex.md).
        self.pool = UpstreamPool(config.multiplex) if config.multiplex.enabled else None
        #: Upstream connections shared by concurrent sessions of a user (sharing:
        #: ``max_sessions_per_connection`` above 1).
        self.mux = (
            Multiplexer(config.multiplex, config.timeouts, self._spawn)
            if config.multiplex.enabled and config.multiplex.max_sessions_per_connection > 1
            else None
        )
        self.sessions: set[ClientSession] = set()
        self.listening: list[BoundListener] = []
        self._refusals: trio.Semaphore | None = None
        self._all_gone: trio.Event | None = None
        self._quiet: trio.Event | None = None
        self._listeners: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"Proxy({len(self.listening)} listeners, {len(self.sessions)} sessions)"

    async def serve(
        self,
        *,
        handle_signals: bool = False,
        task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until :meth:`shutdown` (or SIGTERM/SIGINT with
        ``handle_signals``), then drain the sessions and return."""
        self._refusals = trio.Semaphore(_REFUSAL_HANDSHAKES)
        async with trio.open_nursery() as background:
            self.background = background
            periodic = [trio.CancelScope(), trio.CancelScope()]
            if self.cache is not None:
                background.start_soon(self._cache_counters, periodic[0])
            if self.pool is not None:
                background.start_soon(self._sweep_pool, periodic[1])
            await self._serve(handle_signals, task_status)
            for scope in periodic:
                scope.cancel()
            if self.pool is not None:
                self.close_pooled(self.pool.drain())
            if self.mux is not None:
                for shared in self.mux.drain():
                    background.start_soon(shared.logout)
            # Work sessions left behind (entries being stored): a short grace.
            background.cancel_scope.deadline = trio.current_time() + _BACKGROUND_GRACE
        self.background = None
        if self.cache is not None:
            log.info("cache counters", **self.cache.stats.snapshot())
            await self.cache.aclose()

    def _spawn(self, task: Callable[[], Awaitable[object]]) -> None:
        """Run ``task`` for as long as the proxy serves (a shared connection)."""
        assert self.background is not None, "shared connections exist only while serving"
        self.background.start_soon(task)

    def close_pooled(self, entries: list[Pooled]) -> None:
        """Log out pooled connections that may not be reused, in the background."""
        for entry in entries:
            if self.background is not None:
                self.background.start_soon(entry.conn.logout)

    async def _sweep_pool(self, scope: trio.CancelScope) -> None:
        """Log out the pooled connections idle too long (or logged in too long ago)."""
        assert self.pool is not None
        every = max(1.0, min(self.config.multiplex.idle_expiry, 30.0) / 2)
        with scope:
            while True:
                await trio.sleep(every)
                self.close_pooled(self.pool.sweep(trio.current_time()))
                if self.mux is not None and self.background is not None:
                    for shared in self.mux.sweep(trio.current_time()):
                        self.background.start_soon(shared.logout)

    async def _cache_counters(self, scope: trio.CancelScope) -> None:
        """The cache's counters in the log every few minutes (when they moved)."""
        assert self.cache is not None
        last: dict[str, int | dict[str, int]] = {}
        with scope:
            while True:
                await trio.sleep(_COUNTERS_EVERY)
                counters = self.cache.stats.snapshot()
                if counters != last:
                    log.info("cache counters", **counters)
                    last = counters

    async def _serve(self, handle_signals: bool, task_status: trio.TaskStatus[Proxy]) -> None:
        async with trio.open_nursery() as sessions:
            async with trio.open_nursery() as listeners:
                for cfg in self.config.listeners:
                    bound = await trio.open_tcp_listeners(cfg.address.port, host=cfg.address.host)
                    for listener in bound:
                        sockname = listener.socket.getsockname()
                        self.listening.append(BoundListener(cfg, sockname[0], sockname[1]))
                        log.info(
                            "listening", listener=cfg.name, address=f"{sockname[0]}:{sockname[1]}"
                        )
                    listeners.start_soon(
                        partial(trio.serve_listeners, handler_nursery=sessions),
                        self._handler(cfg),
                        bound,
                    )
                self._listeners = listeners.cancel_scope
                if handle_signals:
                    listeners.start_soon(self._signals)
                task_status.started(self)
            # Listeners are closed: drain the sessions.
            await self.drain(sessions.cancel_scope)

    async def _signals(self) -> None:
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with trio.open_signal_receiver(*signals) as received:
            async for signum in received:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                log.info("shutting down", signal=signal.Signals(signum).name)
                self.shutdown()
                return

    def reload(self) -> bool:
        """SIGHUP: read the configuration file again and swap in its rules at once.

        Sessions use the new rules from their next command. A file that does not
        load keeps the old rules (and says why in the log). Only ``[rules]`` takes
        effect; other changes need a restart, and the log says so."""
        try:
            config = load_config(self.config.source)
            rules = load_configured_rules(config)
        except ConfigError as exc:
            log.error("reload failed, keeping the previous rules", error=str(exc))
            return False
        if config.model_dump(exclude={"rules"}) != self.config.model_dump(exclude={"rules"}):
            log.warning("reload: only [rules] changes take effect; restart for the rest")
        self.config = self.config.model_copy(update={"rules": config.rules})
        self.rules = rules
        log.info("rules reloaded", rules=len(rules) if rules is not None else 0)
        return True

    async def wait_quiet(self) -> None:
        """Wait until no session is left (every one ended, its upstream connection
        logged out or pooled)."""
        while self.sessions:
            self._quiet = trio.Event()
            await self._quiet.wait()

    def shutdown(self) -> None:
        """Stop accepting connections and drain the sessions (what SIGTERM does)."""
        if self._listeners is not None:
            self._listeners.cancel()

    async def drain(self, sessions: trio.CancelScope) -> None:
        self._all_gone = trio.Event()
        for session in list(self.sessions):
            session.shutdown()
        if self.sessions:
            with trio.move_on_after(self.config.timeouts.shutdown_grace):
                await self._all_gone.wait()
        sessions.cancel()

    def _handler(self, cfg: Listener) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(stream: trio.SocketStream) -> None:
            try:
                peer = stream.socket.getpeername()
            except OSError:
                await trio.aclose_forcefully(stream)
                return
            ip, port = str(peer[0]), int(peer[1])
            refused = self.limiter.acquire(ip)
            if refused is not None:
                await self._refuse(stream, cfg, refused, ip)
                return
            session = ClientSession(self, stream, (ip, port), cfg)
            self.sessions.add(session)
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
                self.limiter.release(ip)
                if not self.sessions:
                    if self._all_gone is not None:
                        self._all_gone.set()
                    if self._quiet is not None:
                        self._quiet.set()

        return handle

    async def _refuse(self, stream: trio.SocketStream, cfg: Listener, reason: str, ip: str) -> None:
        log.warning("connection refused", peer=ip, listener=cfg.name, reason=reason)
        bye = b"* BYE " + reason.encode("ascii") + b"\r\n"
        assert self._refusals is not None
        try:
            if cfg.tls != "implicit":
                with trio.move_on_after(2.0):
                    await stream.send_all(bye)
                return
            if self.server_ssl is None or self._refusals.value == 0:
                return
            async with self._refusals:
                tls = trio.SSLStream(stream, self.server_ssl, server_side=True)
                with trio.move_on_after(min(5.0, self.config.timeouts.tls_handshake)):
                    await tls.do_handshake()
                    await tls.send_all(bye)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


def run(config: Config) -> int:
    """``imapproxy serve``: run the proxy until SIGTERM/SIGINT; the exit status."""
    try:
        proxy = Proxy(config)
    except ConfigError as exc:  # a rule file changed since the check
        log.error("cannot start", error=str(exc))
        return 2
    except (OSError, ssl.SSLError) as exc:
        log.error("cannot start", error=str(exc))
        return 1
    try:
        trio.run(partial(proxy.serve, handle_signals=True))
    except OSError as exc:  # e.g. the address is in use
        log.error("cannot listen", error=str(exc))
        return 1
    log.info("stopped")
    return 0
