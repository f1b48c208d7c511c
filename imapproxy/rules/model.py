"""The rule file format: pydantic models for ``[[rule]]`` tables.

A rule file is a TOML document of ``[[rule]]`` tables (:class:`RuleFile`). Each
:class:`Rule` has a ``name``, a ``mode``, an optional ``when`` table of conditions
(:class:`When`) and actions (``log``, ``trace``, ``deny``, ``allow``, ``readonly``,
``rewrite``, ``limit``, ``cache``). Keys that take "one or many" (``when.user``,
``when.mailbox``, ``rewrite.hide``, ...) accept a string or an array of strings
and store a tuple. Everything here only *validates*: patterns, globs and CIDRs are
checked here and compiled by :mod:`imapproxy.rules.engine`.

The models derive from :class:`imapproxy.config.Section` (frozen, unknown keys
refused) and reuse the configuration's sizes and error helpers, so a rule error
reads like a configuration error. :func:`describe_errors` turns pydantic's errors
into ``rule 'NAME' (#INDEX): key.path: message`` lines; the loader adds the file.
A users file (``[groups] name = ["alice", ...]``) is :class:`UsersFile`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PlainValidator,
    StrictBool,
    field_validator,
    model_validator,
)

from imapproxy.config import (
    ByteSize,
    Count,
    Duration,
    Section,
    _describe,
    _error,
    _fail,
    _section_model,
    _show,
    _toml_path,
    format_size,
)
from imapproxy.rules.patterns import MailboxPattern, check_separator

__all__ = [
    "CACHE_ITEMS",
    "AppendSize",
    "CacheAction",
    "Capabilities",
    "DenyAction",
    "LimitAction",
    "LogAction",
    "Network",
    "RewriteAction",
    "Rule",
    "RuleFile",
    "Separators",
    "UsersFile",
    "When",
    "describe_errors",
]

LogLevel = Literal["debug", "info", "warning"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- value types -----------------------------------------------------------------


def _one_or_many(value: Any) -> Any:
    """A string stands for an array of one string; an empty array is refused."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise _error(f"expected a string or an array of strings, got {_show(value)}")
    if not value:
        raise _error("expected a string or a non-empty array of strings, got an empty array")
    return value


def _text(value: str) -> str:
    if not value:
        raise _error("expected a non-empty string")
    if any(char in value for char in "\r\n\0"):
        raise _error(f"must not contain CR, LF or NUL, got {_show(value)}")
    return value


Text = Annotated[str, Field(strict=True), AfterValidator(_text)]
"""A non-empty string without CR, LF or NUL (it may travel in an IMAP response)."""


def _pattern(value: str) -> str:
    try:
        MailboxPattern.compile(value)
    except ValueError as exc:
        raise _error(str(exc)) from None
    return value


Pattern = Annotated[str, Field(strict=True), AfterValidator(_pattern)]
Patterns = Annotated[tuple[Pattern, ...], BeforeValidator(_one_or_many)]
"""LIST-style mailbox patterns (``*`` and ``%``), one or many."""

Names = Annotated[tuple[Text, ...], BeforeValidator(_one_or_many)]
"""Listener, upstream or group names, one or many."""

_ATOM = re.compile(r"[A-Z][A-Z0-9._-]*")


def _command(value: str) -> str:
    upper = value.upper()
    words = upper.split(" ")
    if not 1 <= len(words) <= 2 or not all(_ATOM.fullmatch(word) for word in words):
        raise _error(f"expected a command name such as 'FETCH' or 'UID FETCH', got {_show(value)}")
    if len(words) == 2 and words[0] != "UID":
        raise _error(f"only UID commands have two words ('UID FETCH'), got {_show(value)}")
    return upper


Commands = Annotated[
    tuple[Annotated[str, Field(strict=True), AfterValidator(_command)], ...],
    BeforeValidator(_one_or_many),
]
"""IMAP command names, upper-cased: ``FETCH`` matches FETCH and UID FETCH,
``UID FETCH`` only UID FETCH."""


def _glob(value: str) -> str:
    if not value:
        raise _error("expected a non-empty user name or glob")
    return value


Globs = Annotated[
    tuple[Annotated[str, Field(strict=True), AfterValidator(_glob)], ...],
    BeforeValidator(_one_or_many),
]
"""fnmatch globs over the normalised user name (``*@example.com``)."""


def _network(value: object) -> Network:
    if not isinstance(value, str):
        raise _error(
            f"expected a network in CIDR notation such as '10.0.0.0/8', got {_show(value)}"
        )
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            network = ipaddress.ip_network(value, strict=False)
            raise _error(
                f"{value!r} has host bits set: the network is {str(network)!r} "
                "(or write the address alone for one host)"
            ) from None
        raise _error(
            f"expected a network in CIDR notation such as '10.0.0.0/8' or '2001:db8::/32', "
            f"got {_show(value)}"
        ) from None


Networks = Annotated[
    tuple[Annotated[Network, PlainValidator(_network)], ...],
    BeforeValidator(_one_or_many),
]

_FLAG = re.compile(r"\\?[!#$&'+-.0-9:-Z^-z|~]+")


def _flag(value: str) -> str:
    if not _FLAG.fullmatch(value):
        raise _error(
            f"expected a flag or keyword such as '\\\\Flagged' or '$Label1', got {_show(value)}"
        )
    return value


Flag = Annotated[str, Field(strict=True), AfterValidator(_flag)]


def _capability(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9=+._-]*", value):
        raise _error(
            f"expected a capability name such as 'IDLE' or 'AUTH=PLAIN', got {_show(value)}"
        )
    return value.upper()


Capability = Annotated[str, Field(strict=True), AfterValidator(_capability)]


def _mailbox_name(value: str) -> str:
    _text(value)
    if "*" in value or "%" in value:
        raise _error(f"a mailbox name here cannot contain * or %, got {_show(value)}")
    return value


MailboxName = Annotated[str, Field(strict=True), AfterValidator(_mailbox_name)]


def _id_value(value: object) -> str:
    if not isinstance(value, str):
        raise _error(f"expected a string, got {_show(value)}")
    if len(value.encode()) > 1024 or "\0" in value:
        raise _error("an ID value is at most 1024 octets, without NUL (RFC 2971)")
    return value


def _field_value(value: object) -> str | int | bool:
    if isinstance(value, str | int | bool) and not isinstance(value, float):
        return value
    raise _error(f"expected a string, an integer or true/false, got {_show(value)}")


# -- conditions --------------------------------------------------------------------


class AppendSize(Section):
    """``when.append_size``: the APPEND message size, bounds included."""

    min: ByteSize | None = None
    max: ByteSize | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AppendSize:
        if self.min is None and self.max is None:
            _fail(((), "expected min, max or both"))
        if self.min is not None and self.max is not None and self.min > self.max:
            _fail((("max",), f"must be at least min ({format_size(self.min)})"))
        return self


class When(Section):
    """``when``: every key present must match (an absent key matches anything)."""

    user: Globs | None = None
    group: Names | None = None
    network: Networks | None = None
    listener: Names | None = None
    tls: StrictBool | None = None
    upstream: Names | None = None
    command: Commands | None = None
    mailbox: Patterns | None = None
    append_size: AppendSize | None = None

    @property
    def session_only(self) -> bool:
        """No key depends on the command (``command``, ``mailbox``, ``append_size``)."""
        return self.command is None and self.mailbox is None and self.append_size is None


# -- actions -----------------------------------------------------------------------


def _log_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        if value not in LOG_LEVELS:
            raise _error(
                "expected 'debug', 'info' or 'warning', or a table "
                f"{{ level = ..., fields = {{ ... }} }}, got {_show(value)}"
            )
        return {"level": value}
    return value


class LogAction(Section):
    """``log``: audit the matching commands at ``level`` with extra ``fields``."""

    level: LogLevel = "info"
    fields: dict[str, Annotated[str | int | bool, PlainValidator(_field_value)]] = Field(
        default_factory=dict
    )


def _deny_shorthand(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


def _code(value: str) -> str:
    upper = value.upper()
    if not re.fullmatch(r"[A-Z][A-Z0-9-]*", upper):
        raise _error(f"expected a response code such as 'NOPERM', got {_show(value)}")
    return upper


class DenyAction(Section):
    """``deny``: refuse with ``NO [code] text``, or ``BYE text`` when ``bye``."""

    text: Text
    code: Annotated[str, Field(strict=True), AfterValidator(_code)] = "NOPERM"
    bye: StrictBool = False


class Separators(Section):
    """``rewrite.separator``: the hierarchy separator each side uses."""

    client: str
    upstream: str

    @field_validator("client", "upstream")
    @classmethod
    def _one_char(cls, value: str) -> str:
        try:
            return check_separator(value)
        except ValueError as exc:
            raise _error(str(exc)) from None


class Capabilities(Section):
    """``rewrite.capabilities``: names added to and removed from CAPABILITY."""

    add: tuple[Capability, ...] = ()
    remove: tuple[Capability, ...] = ()


class RewriteAction(Section):
    """``rewrite``: what the client sees differs from what the upstream has."""

    mailbox: dict[str, MailboxName] = Field(default_factory=dict)
    """Client's name -> upstream's name; prefixes carry their children."""
    separator: Separators | None = None
    hide: Patterns | None = None
    """Upstream mailboxes the client never sees."""
    capabilities: Capabilities | None = None
    flags: dict[str, Flag] = Field(default_factory=dict)
    """Client's flag or keyword -> upstream's."""
    greeting: Text | None = None
    id: dict[str, Annotated[str, PlainValidator(_id_value)]] = Field(default_factory=dict)

    @field_validator("mailbox")
    @classmethod
    def _names(cls, table: dict[str, str]) -> dict[str, str]:
        for key in table:
            try:
                _mailbox_name(key)
            except Exception as exc:  # a PydanticCustomError
                _fail(((key,), f"client name: {exc}"))
        return table

    @field_validator("flags")
    @classmethod
    def _flag_keys(cls, table: dict[str, str]) -> dict[str, str]:
        for key in table:
            try:
                _flag(key)
            except Exception as exc:  # a PydanticCustomError
                _fail(((key,), f"client flag: {exc}"))
        return table


class LimitAction(Section):
    """``limit``: rates for the matching sessions (enforced by the session)."""

    commands_per_second: Annotated[float, Field(strict=False, gt=0, allow_inf_nan=False)] | None = (
        None
    )
    failed_logins_per_ip: Count | None = None
    failed_logins_per_user_ip: Count | None = None


#: What ``cache.items`` may name: BODY is every body section (BODY[...], RFC822,
#: RFC822.HEADER, RFC822.TEXT), BINARY every BINARY[...], BODYSTRUCTURE also the
#: non-extensible BODY structure.
CACHE_ITEMS = ("BODY", "BINARY", "ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE")


def _cache_items(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise _error(f"expected an item name or a non-empty list of them, got {_show(value)}")
    out = []
    for item in items:
        if not isinstance(item, str) or item.upper() not in CACHE_ITEMS:
            raise _error(f"expected one of {', '.join(CACHE_ITEMS)}, got {_show(item)}")
        out.append(item.upper())
    return tuple(out)


class CacheAction(Section):
    """``cache``: which fetched message data of the matching commands is cached
    (``cache = true``: these defaults; ``cache = false``: none)."""

    enabled: StrictBool = True
    items: Annotated[tuple[str, ...], PlainValidator(_cache_items)] = CACHE_ITEMS
    min_size: ByteSize = 0
    max_size: ByteSize = 32 * 1024 * 1024
    admit_after: Count = 2
    """Stored once fetched this many times within ``window`` ("frequently fetched")."""
    window: Duration = 3600.0
    ttl: Duration | None = None
    """Entry lifetime; None: ``[cache] ttl``."""
    shared: StrictBool = False
    """The mailbox is shared (a public folder): one entry serves every user."""

    @model_validator(mode="after")
    def _sizes(self) -> CacheAction:
        if self.min_size > self.max_size:
            _fail((("max_size",), f"must be at least min_size ({format_size(self.min_size)})"))
        return self


def _cache_shorthand(value: object) -> object:
    if isinstance(value, bool):
        return {"enabled": value}
    return value


# -- rules -------------------------------------------------------------------------


def _rule_name(value: str) -> str:
    if not value.strip():
        raise _error("expected a non-empty name")
    return value


class Rule(Section):
    """``[[rule]]``: a name, conditions and actions."""

    name: Annotated[str, Field(strict=True), AfterValidator(_rule_name)]
    mode: Literal["enforce", "shadow"] = "enforce"
    when: When = Field(default_factory=When)
    log: Annotated[LogAction | None, BeforeValidator(_log_shorthand)] = None
    trace: StrictBool = False
    deny: Annotated[DenyAction | None, BeforeValidator(_deny_shorthand)] = None
    allow: StrictBool = False
    readonly: StrictBool = False
    rewrite: RewriteAction | None = None
    limit: LimitAction | None = None
    cache: Annotated[CacheAction | None, BeforeValidator(_cache_shorthand)] = None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        verdicts = [
            key
            for key, present in (
                ("allow", self.allow),
                ("deny", self.deny is not None),
                ("readonly", self.readonly),
            )
            if present
        ]
        if len(verdicts) > 1:
            _fail(((verdicts[1],), f"a rule has one verdict; it has {' and '.join(verdicts)}"))
        actions = (self.log, self.deny, self.rewrite, self.limit, self.cache)
        if not (self.trace or self.allow or self.readonly or any(a is not None for a in actions)):
            _fail(
                (
                    (),
                    "no action: expected at least one of log, trace, deny, allow, readonly, "
                    "rewrite, limit, cache",
                )
            )
        return self


class RuleFile(Section):
    """A rule file: its ``[[rule]]`` tables, in order."""

    rules: tuple[Rule, ...] = Field(default=(), alias="rule")


class UsersFile(Section):
    """The users file: ``[groups] name = ["alice", "bob@example.com"]``."""

    groups: dict[str, tuple[Annotated[str, Field(strict=True), AfterValidator(_glob)], ...]] = (
        Field(default_factory=dict)
    )


# -- error messages ----------------------------------------------------------------


def _keys_at(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys allowed in the table at ``loc`` under ``root`` (for unknown-key hints)."""
    model: type[BaseModel] | None = root
    parts = list(loc)
    while parts and model is not None:
        part = parts.pop(0)
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        model, contained = _section_model(field.annotation)
        if contained and parts:
            parts.pop(0)
    if model is None or parts:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _message(root: type[BaseModel], error: Mapping[str, Any], loc: tuple[str | int, ...]) -> str:
    """``key.path: message`` (or the message alone at the table itself)."""
    if error["type"] == "extra_forbidden":
        allowed = _keys_at(root, loc[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"{_toml_path(loc)}: unknown key{hint}"
    described = _describe({**error, "loc": loc})
    return described.removeprefix("(top level): ")


def describe_errors(
    root: type[BaseModel], data: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Pydantic ``errors`` of validating ``data`` as ``root``, one line each.

    Inside a ``[[rule]]`` table the line starts ``rule 'NAME' (#INDEX): `` (INDEX
    counts from 1 in the file), or ``rule #INDEX: `` when the name is missing or
    not a usable string; other lines are ``key.path: message``.
    """
    lines = []
    raw_rules = data.get("rule")
    for error in errors:
        loc: tuple[str | int, ...] = tuple(error["loc"])
        if root is RuleFile and len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
            lines.append(f"{rule_label(raw_rules, loc[1])}: {_message(Rule, error, loc[2:])}")
        else:
            lines.append(_message(root, error, loc))
    return lines


def rule_label(raw_rules: object, index: int) -> str:
    """``rule 'NAME' (#INDEX)`` for the rule at ``index`` of a file, or ``rule #INDEX``."""
    name = None
    if isinstance(raw_rules, list) and index < len(raw_rules):
        table = raw_rules[index]
        if isinstance(table, Mapping):
            name = table.get("name")
    if isinstance(name, str) and name.strip():
        return f"rule {name!r} (#{index + 1})"
    return f"rule #{index + 1}"
