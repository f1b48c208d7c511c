"""The rules engine: compile rule files once, then decide per command.

:func:`load_rules` reads every ``*.toml`` of a directory in name order, validates
it (:mod:`imapproxy.rules.model`) and compiles each rule into a
:class:`CompiledRule`: user globs become one regular expression, mailbox patterns
one more, CIDRs :mod:`ipaddress` networks, names frozensets. A :class:`RuleSet`
then answers :meth:`RuleSet.decide` for a :class:`Context` (who, from where, which
command, which mailboxes) with a :class:`Decision`. Nothing here does I/O after
loading, and nothing imports trio.

Semantics (docs/rules.md): rules are considered in order; every matching rule's
``log``, ``trace``, ``rewrite`` and ``limit`` accumulate (for a key set twice the
earlier rule wins; hide patterns and capability changes are united); the first
matching rule with a verdict decides it -- ``allow``, ``deny``, or ``readonly``,
which is a verdict (deny) only for a write command whose written mailbox matches
the rule (:data:`WRITE_TARGETS`) and otherwise only marks the decision read-only
(SELECT becomes EXAMINE). Without a verdict the configured default applies. A
``mode = "shadow"`` rule changes nothing; :attr:`Decision.shadowed` says what it
would have done.

Speed: the conditions that stay fixed for a session (user, groups, peer,
listener, TLS, upstream) and the command name select the candidate rules once per
(session facts, command) and the result is memoised, so a decision evaluates only
the mailbox and size conditions of the few rules left.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from imapproxy.config import _TOML_POSITION, ConfigError
from imapproxy.router import normalise_user as _default_normalise
from imapproxy.rules.model import (
    LOG_LEVELS,
    LogLevel,
    Network,
    Rule,
    RuleFile,
    UsersFile,
    describe_errors,
    rule_label,
)
from imapproxy.rules.patterns import MailboxPattern, canonical, check_separator

__all__ = [
    "READONLY_DENY",
    "WRITE_TARGETS",
    "CompiledRule",
    "Context",
    "Decision",
    "Deny",
    "Limits",
    "Rewrite",
    "RuleError",
    "RuleSet",
    "Shadowed",
    "compile_rule",
    "load_rules",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Verdict = Literal["allow", "deny"]


class RuleError(ConfigError):
    """Rule files that cannot be used.

    ``str(error)`` is every problem, one line each:
    ``FILE: rule 'NAME' (#INDEX): key.path: message`` (``rule #INDEX`` when the
    name is missing; ``FILE: key.path: message`` outside a rule). ``path`` is the
    rules directory; ``errors`` the lines, file names included.
    """

    def __init__(self, directory: Path, errors: Sequence[str]) -> None:
        self.path = directory
        self.errors = list(errors)
        Exception.__init__(self, "\n".join(self.errors))


# -- what a rule sees, and what it decides ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The facts a decision depends on. Absent facts are None (or empty).

    A condition on a fact the context lacks does not match (a ``when.user`` rule
    does not match before login).

    Attributes:
        user: the login name, normalised as the router does (lower-case).
        groups: the user's groups; None: looked up in the rule set's users file.
        peer: the client's IP address (IPv4-mapped IPv6 counts as IPv4).
        listener: the listener's name; tls: whether the client connection is TLS.
        upstream: the upstream's name.
        command: the command name, upper-case, ``UID FETCH`` for UID commands.
        mailboxes: decoded upstream names the command touches (after rewriting):
            the selected mailbox for FETCH/STORE/..., source and destination for
            COPY/MOVE, old and new for RENAME, the target of APPEND. Canonicalised
            by the engine.
        append_size: the size of APPEND's message literal.
    """

    user: str | None = None
    groups: frozenset[str] | None = None
    peer: IPAddress | None = None
    listener: str | None = None
    tls: bool | None = None
    upstream: str | None = None
    command: str | None = None
    mailboxes: tuple[str, ...] = ()
    append_size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny:
    """How to refuse: ``NO [code] text``, or ``* BYE text`` then close when ``bye``."""

    text: str
    code: str = "NOPERM"
    bye: bool = False


READONLY_DENY = Deny(text="Mailbox is read-only", code="NOPERM")
"""The refusal of a write command by a ``readonly`` rule."""

WRITE_TARGETS: Mapping[str, Literal["all", "last"]] = {
    **dict.fromkeys(
        (
            "STORE",
            "UID STORE",
            "EXPUNGE",
            "UID EXPUNGE",
            "APPEND",
            "MOVE",
            "UID MOVE",
            "DELETE",
            "RENAME",
            "CREATE",
            "SETACL",
            "DELETEACL",
            "SETMETADATA",
            "SETANNOTATION",
        ),
        "all",
    ),
    "COPY": "last",
    "UID COPY": "last",
}
"""Write commands, and which of :attr:`Context.mailboxes` they write: ``all`` of
them (MOVE writes its source too, RENAME both names, CREATE the new name) or the
``last`` (COPY writes only its destination). A ``readonly`` rule denies these when
a written mailbox matches its ``when.mailbox`` (or always, without one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """``limit`` values of the matching rules (for each key the first rule's)."""

    commands_per_second: float | None = None
    failed_logins_per_ip: int | None = None
    failed_logins_per_user_ip: int | None = None

    def merged(self, later: Limits) -> Limits:
        return Limits(
            commands_per_second=_first(self.commands_per_second, later.commands_per_second),
            failed_logins_per_ip=_first(self.failed_logins_per_ip, later.failed_logins_per_ip),
            failed_logins_per_user_ip=_first(
                self.failed_logins_per_user_ip, later.failed_logins_per_user_ip
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """A ``cache`` action: which fetched data is cached, and how (docs/cache.md).

    ``items`` holds names of :data:`~imapproxy.rules.model.CACHE_ITEMS`; sizes in
    octets; an entry is admitted once fetched ``admit_after`` times within
    ``window`` seconds; ``ttl`` None means ``[cache] ttl``; ``shared`` keys a
    mailbox's entries without the user."""

    enabled: bool = True
    items: frozenset[str] = frozenset()
    min_size: int = 0
    max_size: int = 0
    admit_after: int = 2
    window: float = 3600.0
    ttl: float | None = None
    shared: bool = False


def _first(a: Any, b: Any) -> Any:
    return b if a is None else a


def _merge_pairs(
    earlier: tuple[tuple[str, str], ...], later: tuple[tuple[str, str], ...], fold: bool = False
) -> tuple[tuple[str, str], ...]:
    def key(k: str) -> str:
        return k.upper() if fold else k

    seen = {key(k) for k, _ in earlier}
    return earlier + tuple((k, v) for k, v in later if key(k) not in seen)


def _union(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
    return earlier + tuple(item for item in later if item not in earlier)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rewrite:
    """What the client sees differs from the upstream: the accumulated ``rewrite``.

    ``mailboxes`` maps client names to upstream names (canonical, in rule order;
    a name carries its children: ``Sent Items/2024`` is ``Sent/2024``);
    ``separators`` is (client, upstream) when they differ, else None and both
    sides use ``separator``. ``hide`` patterns match upstream names. ``flags``
    maps client flags to upstream flags (compared case-insensitively).
    """

    mailboxes: tuple[tuple[str, str], ...] = ()
    separators: tuple[str, str] | None = None
    separator: str = "/"
    hide: tuple[MailboxPattern, ...] = ()
    capabilities_add: tuple[str, ...] = ()
    capabilities_remove: tuple[str, ...] = ()
    flags: tuple[tuple[str, str], ...] = ()
    greeting: str | None = None
    id_fields: tuple[tuple[str, str], ...] = ()
    _by_client: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _by_upstream: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        longest_client = sorted(self.mailboxes, key=lambda pair: -len(pair[0]))
        longest_upstream = sorted(self.mailboxes, key=lambda pair: -len(pair[1]))
        object.__setattr__(self, "_by_client", tuple(longest_client))
        object.__setattr__(self, "_by_upstream", tuple((u, c) for c, u in longest_upstream))

    @property
    def client_separator(self) -> str:
        return self.separators[0] if self.separators else self.separator

    @property
    def upstream_separator(self) -> str:
        return self.separators[1] if self.separators else self.separator

    @property
    def renames(self) -> bool:
        """Mailbox names change on the way (a map or a separator change)."""
        return bool(self.mailboxes) or self.separators is not None

    @property
    def empty(self) -> bool:
        return self == _EMPTY_REWRITES.get(self.separator)

    def merged(self, later: Rewrite) -> Rewrite:
        """This rewrite and a later rule's: earlier keys win, lists are united."""
        if later.empty:
            return self
        return Rewrite(
            mailboxes=_merge_pairs(self.mailboxes, later.mailboxes),
            separators=self.separators or later.separators,
            separator=self.separator,
            hide=_union(self.hide, later.hide),
            capabilities_add=_union(self.capabilities_add, later.capabilities_add),
            capabilities_remove=_union(self.capabilities_remove, later.capabilities_remove),
            flags=_merge_pairs(self.flags, later.flags, fold=True),
            greeting=_first(self.greeting, later.greeting),
            id_fields=_merge_pairs(self.id_fields, later.id_fields, fold=True),
        )

    def to_upstream(self, name: str) -> str:
        """The upstream's name for the client's decoded mailbox ``name``.

        Raises:
            ValueError: a level of ``name`` contains the upstream's separator, so
                the name has no upstream form.
        """
        return self._translate(
            canonical(name, self.client_separator),
            self._by_client,
            self.client_separator,
            self.upstream_separator,
        )

    def to_client(self, name: str) -> str:
        """The client's name for the upstream's decoded mailbox ``name``.

        Raises:
            ValueError: a level contains the client's separator.
        """
        return self._translate(
            canonical(name, self.upstream_separator),
            self._by_upstream,
            self.upstream_separator,
            self.client_separator,
        )

    @staticmethod
    def _translate(name: str, table: tuple[tuple[str, str], ...], source: str, target: str) -> str:
        prefix, rest = "", name
        for before, after in table:
            if name == before:
                return after
            if name.startswith(before + source):
                prefix, rest = after, name[len(before) :]
                break
        if source != target:
            if target in rest:
                raise ValueError(
                    f"mailbox {name!r} contains the separator {target!r} of the other side"
                )
            rest = rest.replace(source, target)
        return prefix + rest

    def hidden(self, name: str) -> bool:
        """Whether the upstream's decoded mailbox ``name`` is hidden from the client."""
        return any(pattern.matches(name) for pattern in self.hide)

    def flag_to_upstream(self, flag: str) -> str:
        """The upstream's flag or keyword for the client's (case-insensitive)."""
        return _lookup(self.flags, flag)

    def flag_to_client(self, flag: str) -> str:
        """The client's flag or keyword for the upstream's (case-insensitive)."""
        return _lookup(tuple((u, c) for c, u in self.flags), flag)

    def capabilities(self, names: Iterable[str]) -> list[str]:
        """Capabilities shown to the client: ``remove`` taken out, ``add`` appended;
        CATENATE and NOTIFY withheld while mailbox names are rewritten (their
        arguments carry names the proxy does not translate)."""
        removed = set(self.capabilities_remove)
        if self.renames:
            removed |= {"CATENATE", "NOTIFY"}
        shown = [name for name in names if name.upper() not in removed]
        present = {name.upper() for name in shown}
        return shown + [name for name in self.capabilities_add if name not in present]


def _lookup(pairs: tuple[tuple[str, str], ...], key: str) -> str:
    folded = key.upper()
    for before, after in pairs:
        if before.upper() == folded:
            return after
    return key


_EMPTY_REWRITES: dict[str, Rewrite] = {}


def _empty_rewrite(separator: str) -> Rewrite:
    if separator not in _EMPTY_REWRITES:
        _EMPTY_REWRITES[separator] = Rewrite(separator=separator)
    return _EMPTY_REWRITES[separator]


@dataclass(frozen=True, slots=True, kw_only=True)
class Shadowed:
    """A matching ``mode = "shadow"`` rule and what it would have done.

    ``verdict`` and ``deny`` are the rule's own effect on this command (None: it
    has no verdict here); ``decisive`` says whether, enforced, it would have
    decided the verdict (no earlier enforced rule had).
    """

    rule: str
    verdict: Verdict | None
    deny: Deny | None
    readonly: bool
    decisive: bool
    log_level: LogLevel | None
    rewrites: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the rules say about one command (or session).

    Attributes:
        verdict: ``allow`` or ``deny``; deny: how to refuse when denied.
        decided_by: the rule that decided the verdict; None: the default did.
        readonly: a ``readonly`` rule matched; examine_instead: turn SELECT into EXAMINE.
        log_level: the most severe level of the matching ``log`` actions (None:
            no rule asked to log); log_fields: their fields, earlier rules winning.
        trace: a matching rule asked for a protocol trace.
        matched: names of the matching enforced rules, in order.
        shadowed: matching shadow rules, in order.
        rewrite: the accumulated rewrite; limits: the accumulated limits.
        cache: the cache policy of the first matching rule with ``cache`` (None:
            nothing is cached, also when that rule says ``cache = false``).
    """

    verdict: Verdict
    deny: Deny | None = None
    decided_by: str | None = None
    readonly: bool = False
    examine_instead: bool = False
    log_level: LogLevel | None = None
    log_fields: Mapping[str, str | int | bool] = field(default_factory=dict)
    trace: bool = False
    matched: tuple[str, ...] = ()
    shadowed: tuple[Shadowed, ...] = ()
    rewrite: Rewrite = field(default_factory=Rewrite)
    limits: Limits = field(default_factory=Limits)
    cache: CachePolicy | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


DEFAULT_DENY = Deny(text="Denied by policy", code="NOPERM")
"""The refusal when no rule decides and the default verdict is ``deny``."""

_LEVEL_RANK = {level: rank for rank, level in enumerate(LOG_LEVELS)}


# -- compiled rules ------------------------------------------------------------------

SessionCheck = Callable[[Context, frozenset[str]], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledRule:
    """One rule ready to evaluate. ``checks`` are the session conditions present."""

    name: str
    source: str
    shadow: bool
    checks: tuple[SessionCheck, ...]
    commands: frozenset[str] | None
    mailbox: MailboxPattern | None
    size_min: int | None
    size_max: int | None
    verdict: Literal["allow", "deny", "readonly"] | None
    deny: Deny | None
    log_level: LogLevel | None
    log_fields: Mapping[str, str | int | bool]
    trace: bool
    rewrite: Rewrite | None
    limits: Limits | None
    cache: CachePolicy | None
    session_only: bool
    rule: Rule = field(repr=False, compare=False)

    def matches_command(self, command: str | None) -> bool:
        if self.commands is None:
            return True
        if command is None:
            return False
        return command in self.commands or (
            command.startswith("UID ") and command[4:] in self.commands
        )

    def matches_session(self, ctx: Context, groups: frozenset[str]) -> bool:
        return all(check(ctx, groups) for check in self.checks)

    def matches_rest(self, mailboxes: tuple[str, ...] | None, size: int | None) -> bool:
        """The mailbox (any of them; None: not checked) and APPEND size conditions."""
        if self.mailbox is not None and mailboxes is not None:
            regex = self.mailbox.regex.fullmatch
            if not any(regex(name) for name in mailboxes):
                return False
        if self.size_min is not None and (size is None or size < self.size_min):
            return False
        return not (self.size_max is not None and (size is None or size > self.size_max))

    def effect(
        self, command: str | None, mailboxes: tuple[str, ...]
    ) -> tuple[Verdict, Deny | None] | None:
        """This rule's verdict for the command, or None when it has none here."""
        if self.verdict == "allow":
            return "allow", None
        if self.verdict == "deny":
            return "deny", self.deny
        if self.verdict == "readonly" and command is not None and command in WRITE_TARGETS:
            written = mailboxes[-1:] if WRITE_TARGETS[command] == "last" else mailboxes
            if self.mailbox is None or any(self.mailbox.regex.fullmatch(m) for m in written):
                return "deny", READONLY_DENY
        return None

    def describe(self) -> str:
        """``'name' [shadow]: when ... -> actions`` for :meth:`RuleSet.summary`."""
        rule = self.rule
        conditions = []
        for key, value in rule.when:
            if value is None:
                continue
            if isinstance(value, tuple):
                shown = ", ".join(str(item) for item in value)
            elif isinstance(value, bool):
                shown = "yes" if value else "no"
            else:
                shown = " ".join(f"{k}={v}" for k, v in value if v is not None)
            conditions.append(f"{key} {shown}")
        actions = []
        if self.log_level:
            actions.append(f"log {self.log_level}")
        if self.trace:
            actions.append("trace")
        if self.verdict == "deny" and self.deny:
            actions.append(f"deny [{self.deny.code}]{' with BYE' if self.deny.bye else ''}")
        elif self.verdict:
            actions.append(self.verdict)
        if rule.rewrite is not None:
            parts = [key for key, value in rule.rewrite if value]
            actions.append(f"rewrite {', '.join(parts)}")
        if rule.limit is not None:
            parts = [f"{key}={value}" for key, value in rule.limit if value is not None]
            actions.append(f"limit {', '.join(parts)}")
        if self.cache is not None:
            if not self.cache.enabled:
                actions.append("no cache")
            else:
                policy = self.cache
                shared = ", shared" if policy.shared else ""
                actions.append(
                    f"cache after {policy.admit_after} fetches in {policy.window:g}s, "
                    f"{policy.min_size}..{policy.max_size} octets{shared}"
                )
        when = "; ".join(conditions) or "always"
        mode = " [shadow]" if self.shadow else ""
        return f"{self.name!r}{mode}: {when} -> {', '.join(actions)}"


def _user_check(globs: Iterable[str], normalise: Callable[[str], str]) -> SessionCheck:
    regex = re.compile("|".join(fnmatch.translate(normalise(glob)) for glob in globs))

    def check(ctx: Context, groups: frozenset[str]) -> bool:
        return ctx.user is not None and regex.match(ctx.user) is not None

    return check


def _group_check(names: Iterable[str]) -> SessionCheck:
    wanted = frozenset(names)

    def check(ctx: Context, groups: frozenset[str]) -> bool:
        return not wanted.isdisjoint(groups)

    return check


def _network_check(networks: tuple[Network, ...]) -> SessionCheck:
    def check(ctx: Context, groups: frozenset[str]) -> bool:
        peer = ctx.peer
        if peer is None:
            return False
        return any(peer in network for network in networks)

    return check


def _name_check(attribute: Literal["listener", "upstream"], names: Iterable[str]) -> SessionCheck:
    wanted = frozenset(names)
    if attribute == "listener":
        return lambda ctx, groups: ctx.listener in wanted
    return lambda ctx, groups: ctx.upstream in wanted


def _tls_check(tls: bool) -> SessionCheck:
    return lambda ctx, groups: ctx.tls is tls


def _compile_rewrite(rule: Rule, separator: str) -> Rewrite | None:
    spec = rule.rewrite
    if spec is None:
        return None
    separators = (
        (spec.separator.client, spec.separator.upstream)
        if spec.separator is not None and spec.separator.client != spec.separator.upstream
        else None
    )
    client_sep, upstream_sep = separators or (separator, separator)
    return Rewrite(
        mailboxes=tuple(
            (canonical(c, client_sep), canonical(u, upstream_sep)) for c, u in spec.mailbox.items()
        ),
        separators=separators,
        separator=separator,
        hide=(MailboxPattern.compile(spec.hide, separator),) if spec.hide else (),
        capabilities_add=spec.capabilities.add if spec.capabilities else (),
        capabilities_remove=spec.capabilities.remove if spec.capabilities else (),
        flags=tuple(spec.flags.items()),
        greeting=spec.greeting,
        id_fields=tuple(spec.id.items()),
    )


def compile_rule(
    rule: Rule,
    source: str,
    *,
    separator: str = "/",
    normalise_user: Callable[[str], str] = _default_normalise,
) -> CompiledRule:
    """Compile a validated rule; ``source`` names its file in summaries."""
    when = rule.when
    checks: list[SessionCheck] = []
    if when.user is not None:
        checks.append(_user_check(when.user, normalise_user))
    if when.group is not None:
        checks.append(_group_check(when.group))
    if when.network is not None:
        checks.append(_network_check(when.network))
    if when.listener is not None:
        checks.append(_name_check("listener", when.listener))
    if when.tls is not None:
        checks.append(_tls_check(when.tls))
    if when.upstream is not None:
        checks.append(_name_check("upstream", when.upstream))
    verdict: Literal["allow", "deny", "readonly"] | None = None
    deny = None
    if rule.deny is not None:
        verdict = "deny"
        deny = Deny(text=rule.deny.text, code=rule.deny.code, bye=rule.deny.bye)
    elif rule.allow:
        verdict = "allow"
    elif rule.readonly:
        verdict = "readonly"
    limits = None
    if rule.limit is not None:
        limits = Limits(
            commands_per_second=rule.limit.commands_per_second,
            failed_logins_per_ip=rule.limit.failed_logins_per_ip,
            failed_logins_per_user_ip=rule.limit.failed_logins_per_user_ip,
        )
    cache = None
    if rule.cache is not None:
        spec = rule.cache
        cache = CachePolicy(
            enabled=spec.enabled,
            items=frozenset(spec.items),
            min_size=spec.min_size,
            max_size=spec.max_size,
            admit_after=spec.admit_after,
            window=spec.window,
            ttl=spec.ttl,
            shared=spec.shared,
        )
    return CompiledRule(
        name=rule.name,
        source=source,
        shadow=rule.mode == "shadow",
        checks=tuple(checks),
        commands=frozenset(when.command) if when.command is not None else None,
        mailbox=MailboxPattern.compile(when.mailbox, separator) if when.mailbox else None,
        size_min=when.append_size.min if when.append_size else None,
        size_max=when.append_size.max if when.append_size else None,
        verdict=verdict,
        deny=deny,
        log_level=rule.log.level if rule.log else None,
        log_fields=dict(rule.log.fields) if rule.log else {},
        trace=rule.trace,
        rewrite=_compile_rewrite(rule, separator),
        limits=limits,
        cache=cache,
        session_only=when.session_only,
        rule=rule,
    )


# -- the rule set --------------------------------------------------------------------

_MAX_SESSIONS_MEMO = 4096
_MAX_COMMANDS_MEMO = 256
_MAX_MAILBOX_MEMO = 65536
_MAX_DECISIONS_MEMO = 65536
_Candidate = tuple[CompiledRule, int, bool]
"""A candidate rule, the bit of its mailbox condition (0: none), whether it has a size one."""


class RuleSet:
    """Compiled rules in order, with the default verdict; immutable once built.

    Build with :func:`load_rules` (or directly from compiled rules in tests).
    :meth:`decide` memoises candidate rules per (session facts, command), an
    internal cache that never changes a result.
    """

    def __init__(
        self,
        rules: Sequence[CompiledRule] = (),
        *,
        default: Verdict = "allow",
        separator: str = "/",
        groups: Mapping[str, frozenset[str]] | None = None,
        directory: Path | None = None,
        files: Sequence[str] = (),
    ) -> None:
        self.rules = tuple(rules)
        self.default = default
        self.separator = check_separator(separator)
        self.groups_of_user: Mapping[str, frozenset[str]] = dict(groups or {})
        self.directory = directory
        self.files = tuple(files)
        #: Some rule looks at mailbox names (a condition, hiding or renaming):
        #: commands whose mailbox arguments the proxy does not parse cannot be
        #: judged, or translated, then.
        self.mailbox_aware = any(
            rule.mailbox is not None
            or (rule.rewrite is not None and (bool(rule.rewrite.hide) or rule.rewrite.renames))
            for rule in self.rules
            if not rule.shadow
        )
        self._empty_rewrite = _empty_rewrite(separator)
        self._default = Decision(
            verdict=default,
            deny=DEFAULT_DENY if default == "deny" else None,
            rewrite=self._empty_rewrite,
        )
        self._memo: dict[tuple[Any, ...], dict[str | None, tuple[_Candidate, ...]]] = {}
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        # Each rule with a mailbox condition has a bit; a mailbox name maps to the
        # bits of the rules it matches.
        with_mailbox = [rule for rule in self.rules if rule.mailbox is not None]
        self._bits = {id(rule): 1 << i for i, rule in enumerate(with_mailbox)}
        self._patterns = [
            (1 << i, rule.mailbox) for i, rule in enumerate(with_mailbox) if rule.mailbox
        ]
        self._mailbox_memo: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        shadow = sum(rule.shadow for rule in self.rules)
        return (
            f"RuleSet({len(self.rules)} rules, {shadow} shadow, default={self.default}, "
            f"separator={self.separator!r})"
        )

    def groups(self, ctx: Context) -> frozenset[str]:
        """The context's groups: its own, or the users file's for its user."""
        if ctx.groups is not None:
            return ctx.groups
        if ctx.user is None:
            return frozenset()
        return self.groups_of_user.get(ctx.user, frozenset())

    def _candidates(self, ctx: Context) -> tuple[_Candidate, ...]:
        """The rules whose session and command conditions match, memoised."""
        peer = ctx.peer
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
            ctx = replace(ctx, peer=peer)
        key = (ctx.user, ctx.groups, peer, ctx.listener, ctx.tls, ctx.upstream)
        by_command = self._memo.get(key)
        if by_command is None:
            if len(self._memo) >= _MAX_SESSIONS_MEMO:
                self._memo.clear()
            by_command = self._memo[key] = {}
        command = ctx.command
        candidates = by_command.get(command)
        if candidates is None:
            groups = self.groups(ctx)
            candidates = tuple(
                (
                    rule,
                    self._bits.get(id(rule), 0),
                    rule.size_min is not None or rule.size_max is not None,
                )
                for rule in self.rules
                if rule.matches_command(command) and rule.matches_session(ctx, groups)
            )
            if len(by_command) >= _MAX_COMMANDS_MEMO:
                by_command.clear()
            by_command[command] = candidates
        return candidates

    def _mailbox_mask(self, name: str) -> int:
        """The bits of the rules whose ``when.mailbox`` matches ``name``, memoised."""
        mask = self._mailbox_memo.get(name)
        if mask is None:
            text = canonical(name, self.separator)
            mask = 0
            for bit, pattern in self._patterns:
                if pattern.regex.fullmatch(text):
                    mask |= bit
            if len(self._mailbox_memo) >= _MAX_MAILBOX_MEMO:
                self._mailbox_memo.clear()
            self._mailbox_memo[name] = mask
        return mask

    def matching(self, ctx: Context) -> list[CompiledRule]:
        """Every rule (enforced or shadow) whose ``when`` matches ``ctx``, in order."""
        candidates = self._candidates(ctx)
        if not candidates:
            return []
        mask = 0
        for name in ctx.mailboxes:
            mask |= self._mailbox_mask(name)
        size = ctx.append_size
        matched = []
        for rule, bit, sized in candidates:
            if bit and not mask & bit:
                continue
            if sized and not rule.matches_rest(None, size):
                continue
            matched.append(rule)
        return matched

    def decide(self, ctx: Context) -> Decision:
        """The decision for one command described by ``ctx``.

        Memoised by the matching rules and the command, and the mailboxes when a
        matching rule has a verdict (a ``readonly`` rule's effect depends on them):
        a session's commands mostly repeat one decision."""
        matched = self.matching(ctx)
        if not matched:
            return self._default
        verdicts = any(rule.verdict is not None for rule in matched)
        key = (tuple(map(id, matched)), ctx.command, ctx.mailboxes if verdicts else None)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._combine(ctx, matched)
            if len(self._decisions) >= _MAX_DECISIONS_MEMO:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _combine(self, ctx: Context, matched: list[CompiledRule]) -> Decision:
        command = ctx.command
        separator = self.separator
        mailboxes = tuple(canonical(name, separator) for name in ctx.mailboxes)
        verdict: Verdict | None = None
        deny: Deny | None = None
        decided_by: str | None = None
        readonly = False
        level: LogLevel | None = None
        fields: dict[str, str | int | bool] = {}
        trace = False
        names: list[str] = []
        shadowed: list[Shadowed] = []
        rewrite = self._empty_rewrite
        limits: Limits | None = None
        cache: CachePolicy | None = None
        for rule in matched:
            effect = (
                rule.effect(command, mailboxes)
                if rule.verdict is not None and (verdict is None or rule.shadow)
                else None
            )
            if rule.shadow:
                shadowed.append(
                    Shadowed(
                        rule=rule.name,
                        verdict=effect[0] if effect else None,
                        deny=effect[1] if effect else None,
                        readonly=rule.verdict == "readonly",
                        decisive=effect is not None and verdict is None,
                        log_level=rule.log_level,
                        rewrites=rule.rewrite is not None,
                    )
                )
                continue
            names.append(rule.name)
            if rule.log_level is not None:
                if level is None or _LEVEL_RANK[rule.log_level] > _LEVEL_RANK[level]:
                    level = rule.log_level
                if rule.log_fields:
                    fields = {**rule.log_fields, **fields}
            trace = trace or rule.trace
            if rule.rewrite is not None:
                empty = rewrite is self._empty_rewrite
                rewrite = rule.rewrite if empty else rewrite.merged(rule.rewrite)
            if rule.limits is not None:
                limits = rule.limits if limits is None else limits.merged(rule.limits)
            if cache is None and rule.cache is not None:
                cache = rule.cache  # the first matching rule with ``cache`` decides
            if rule.verdict == "readonly":
                readonly = True
            if verdict is None and effect is not None:
                verdict, deny = effect
                decided_by = rule.name
        if verdict is None:
            verdict, deny = self._default.verdict, self._default.deny
        return Decision(
            verdict=verdict,
            deny=deny,
            decided_by=decided_by,
            readonly=readonly,
            examine_instead=readonly and command == "SELECT",
            log_level=level,
            log_fields=fields,
            trace=trace,
            matched=tuple(names),
            shadowed=tuple(shadowed),
            rewrite=rewrite,
            limits=limits or Limits(),
            cache=cache if cache is not None and cache.enabled else None,
        )

    def session_rewrite(self, ctx: Context) -> Rewrite:
        """The rewrite for a whole session: enforced rules whose ``when`` has no
        ``command``, ``mailbox`` or ``append_size`` key and matches ``ctx`` (whose
        command and mailboxes are ignored)."""
        return self.session_decision(ctx).rewrite

    def session_decision(self, ctx: Context) -> Decision:
        """:meth:`decide` over the session rules only (see :meth:`session_rewrite`):
        log level, trace and limits for the session, and a login verdict."""
        session = Context(
            user=ctx.user,
            groups=ctx.groups,
            peer=ctx.peer,
            listener=ctx.listener,
            tls=ctx.tls,
            upstream=ctx.upstream,
        )
        matched = [rule for rule in self.matching(session) if rule.session_only]
        if not matched:
            return self._default
        return self._combine(session, matched)

    def summary(self) -> str:
        """The rules as loaded, for ``imapproxy check``."""
        where = f" from {self.directory}" if self.directory is not None else ""
        lines = [
            f"rules: {len(self.rules)} in {len(self.files)} files{where} "
            f"(default verdict: {self.default}; hierarchy separator {self.separator!r})"
        ]
        source = None
        for rule in self.rules:
            if rule.source != source:
                source = rule.source
                lines.append(f"  {source}:")
            lines.append(f"    {rule.describe()}")
        if self.groups_of_user:
            count = len({g for groups in self.groups_of_user.values() for g in groups})
            lines.append(f"  groups: {count} for {len(self.groups_of_user)} users")
        return "\n".join(lines)


# -- loading -------------------------------------------------------------------------


def _read_toml(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The TOML table in ``path``, or the error lines (with the file name)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return None, [f"{path}: cannot read the file: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        return None, [f"{path}: not UTF-8 text (byte {exc.start})"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.fullmatch(message)
        if position:
            what, line, column = position.groups()
            message = f"line {line}, column {column}: TOML syntax: {what}"
        else:
            message = f"TOML syntax: {message}"
        return None, [f"{path}: {message}"]


def _load_users(
    path: Path, normalise: Callable[[str], str]
) -> tuple[dict[str, frozenset[str]], set[str], list[str]]:
    """user -> groups, every group name, and error lines."""
    data, errors = _read_toml(path)
    if data is None:
        return {}, set(), errors
    try:
        users_file = UsersFile.model_validate(data)
    except ValidationError as exc:
        lines = describe_errors(UsersFile, data, exc.errors(include_url=False))
        return {}, set(), [f"{path}: {line}" for line in lines]
    members: dict[str, set[str]] = {}
    for group, users in users_file.groups.items():
        for user in users:
            members.setdefault(normalise(user), set()).add(group)
    return {u: frozenset(g) for u, g in members.items()}, set(users_file.groups), []


def load_rules(
    directory: Path,
    *,
    users_file: Path | None = None,
    default: Verdict = "allow",
    separator: str = "/",
    normalise_user: Callable[[str], str] = _default_normalise,
) -> RuleSet:
    """Load and compile every ``*.toml`` in ``directory``, in name order.

    Args:
        directory: the rules directory; an empty one gives an empty rule set.
        users_file: TOML ``[groups] name = ["user", ...]`` for ``when.group``.
        default: the verdict when no rule decides.
        separator: the upstream's hierarchy separator, as rule patterns use it.
        normalise_user: how user names compare (the router's: lower-case);
            applied to ``when.user`` globs and users-file members.

    Raises:
        RuleError: every problem in every file, one line each.
    """
    directory = Path(directory)
    errors: list[str] = []
    if not directory.is_dir():
        raise RuleError(directory, [f"{directory}: not a directory"])
    groups: dict[str, frozenset[str]] = {}
    group_names: set[str] = set()
    users_broken = False
    if users_file is not None:
        groups, group_names, users_errors = _load_users(Path(users_file), normalise_user)
        errors += users_errors
        users_broken = bool(users_errors)
    compiled: list[CompiledRule] = []
    first_seen: dict[str, str] = {}
    files = sorted(path for path in directory.glob("*.toml") if path.is_file())
    for path in files:
        data, read_errors = _read_toml(path)
        if data is None:
            errors += read_errors
            continue
        try:
            rule_file = RuleFile.model_validate(data)
        except ValidationError as exc:
            lines = describe_errors(RuleFile, data, exc.errors(include_url=False))
            errors += [f"{path}: {line}" for line in lines]
            continue
        for index, rule in enumerate(rule_file.rules):
            label = rule_label(data.get("rule"), index)
            where = f"#{index + 1} in {path.name}"
            if rule.name in first_seen:
                errors.append(
                    f"{path}: {label}: name: {rule.name!r} is the name of rule "
                    f"{first_seen[rule.name]} too (names are unique across files)"
                )
            first_seen.setdefault(rule.name, where)
            for group in rule.when.group or ():
                if users_file is None:
                    errors.append(
                        f"{path}: {label}: when.group: groups come from a users file "
                        "([rules] users_file), and none is configured"
                    )
                    break
                if group not in group_names and not users_broken:
                    known = ", ".join(sorted(group_names)) or "none"
                    errors.append(
                        f"{path}: {label}: when.group: no group {group!r} in {users_file} "
                        f"(groups: {known})"
                    )
            compiled.append(
                compile_rule(rule, path.name, separator=separator, normalise_user=normalise_user)
            )
    if errors:
        raise RuleError(directory, errors)
    return RuleSet(
        compiled,
        default=default,
        separator=separator,
        groups=groups,
        directory=directory,
        files=[path.name for path in files],
    )
