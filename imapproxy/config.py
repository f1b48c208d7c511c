"""Configuration: one TOML file, read with :mod:`tomllib`, validated by pydantic models.

Each TOML table is a frozen pydantic model that forbids unknown keys
(:class:`Listener` for ``[[listener]]``, :class:`ServerTls` for ``[tls]``, and so
on), gathered by :class:`Config`. A rule lives on the model that owns its fields:
plaintext listeners only on loopback (:class:`Listener`), plaintext upstreams only
when opted in (:class:`Upstream`), limit and timeout bounds (:class:`Limits`,
:class:`Timeouts`); rules that span sections (routes name existing upstreams, TLS
listeners need ``[tls]``) are field validators on :class:`Config`. Every rule
reports at the exact key it concerns through :func:`_fail`.

:func:`load_config` and :func:`parse_config` turn pydantic's errors into
:class:`ConfigError`: one line per problem, ``FILE: key.path: message``, with the
TOML key names (``listener[0].address``, ``routes.users."alice@example.com"``) and
messages that say what was expected. TOML syntax errors name the line and column.

Sizes (``"64KiB"``) and durations (``"1h30m"``) are annotated types
(:data:`ByteSize`, :data:`Duration`) whose metadata also tells
:meth:`Config.summary` how to show them. Relative paths are resolved against the
directory of the configuration file.

Adding a section (``[rules]``, ``[cache]``, ``[multiplex]`` come with their
issues) is one model deriving from :class:`Section` and one field on
:class:`Config`: error paths, unknown-key hints and the summary of plain sections
follow from the models.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import ssl
import tomllib
import types
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, NoReturn, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "CACHE_KEY_HINT",
    "Address",
    "ByteSize",
    "ByteSizeOrOff",
    "CacheSettings",
    "Config",
    "ConfigError",
    "Duration",
    "Limits",
    "Listener",
    "Logging",
    "Routes",
    "Rules",
    "Section",
    "ServerTls",
    "Timeouts",
    "TlsMode",
    "Upstream",
    "format_duration",
    "format_size",
    "load_config",
    "parse_cache_key",
    "parse_config",
    "parse_duration",
    "parse_redis_password",
    "parse_size",
]


# -- errors ----------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used.

    ``str(error)`` is every problem, one line each: ``FILE: key.path: message``.
    ``path`` is the file; ``errors`` the lines without the file name.
    """

    def __init__(self, path: Path, errors: Sequence[str]) -> None:
        self.path = path
        self.errors = list(errors)
        super().__init__("\n".join(f"{path}: {error}" for error in self.errors))


def _error(message: str) -> PydanticCustomError:
    """A pydantic error whose message is ``message`` as it stands (no templating)."""
    return PydanticCustomError("imapproxy_config", "{message}", {"message": message})


def _fail(*problems: tuple[tuple[str | int, ...], str]) -> NoReturn:
    """Raise every ``(location, message)`` at once, each at its own key path.

    Locations are relative to the model or field being validated; pydantic
    prefixes the outer path (``listener``, ``0``) as the error travels up.
    """
    raise ValidationError.from_exception_data(
        "imapproxy configuration",
        [InitErrorDetails(type=_error(message), loc=loc, input=None) for loc, message in problems],
    )


# -- addresses -------------------------------------------------------------------

_HOST_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_ADDRESS_HINT = "expected host:port (IPv6 as [::1]:993)"


def _check_host(host: str) -> str | None:
    """Why ``host`` is not a host name or IPv4 address, or None when it is one."""
    if not _HOST_NAME.fullmatch(host) or len(host) > 253:
        return f"{host!r} is not a host name or IPv4 address"
    if all(label.isdigit() for label in host.rstrip(".").split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv4 address"
    return None


class Address(NamedTuple):
    """A host and port, written ``host:port`` or ``[v6]:port`` in the configuration.

    ``host`` is an IPv4 address, an IPv6 address (without brackets) or a host name.
    Port 0 asks the system for a free port (useful for listeners in tests).
    """

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; raise ValueError saying what is wrong."""
        if text.startswith("["):
            bracket = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", text)
            if bracket is None:
                raise ValueError(f"{_ADDRESS_HINT}, got {text!r}")
            host, port = bracket.groups()
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    f"{host!r} in brackets is not an IPv6 address ({_ADDRESS_HINT})"
                ) from None
        else:
            host, colon, port = text.rpartition(":")
            if not colon or not host:
                raise ValueError(f"{_ADDRESS_HINT}, got {text!r}")
            if ":" in host:
                raise ValueError(f"IPv6 addresses need brackets, as in [::1]:993, got {text!r}")
            problem = _check_host(host)
            if problem:
                raise ValueError(f"{problem} ({_ADDRESS_HINT})")
        if not _PORT.fullmatch(port) or int(port) > 65535:
            raise ValueError(f"port must be a number from 0 to 65535, got {port!r} in {text!r}")
        return cls(host, int(port))

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and ``localhost``."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _validate_address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise _error(f"{_ADDRESS_HINT} as a string, got {_show(value)}")
    try:
        return Address.parse(value)
    except ValueError as exc:
        raise _error(str(exc)) from None


AddressField = Annotated[Address, PlainValidator(_validate_address), PlainSerializer(str)]


# -- sizes and durations -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shown:
    """Field metadata: how :meth:`Config.summary` shows a value ("size", "duration")."""

    kind: Literal["size", "duration"]


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_HINT = (
    "expected a size: a number of bytes, or a string such as '64KiB', '10MB' or '1 GiB' "
    "(KiB/MiB/GiB and K/M/G are powers of 1024, KB/MB/GB powers of 1000)"
)


def parse_size(value: object) -> int:
    """A size in bytes from an integer or a string such as ``"64KiB"``.

    Units (case-insensitive): B; KiB, MiB, GiB and K, M, G (powers of 1024);
    KB, MB, GB (powers of 1000). Raises ValueError unless the result is a positive
    whole number of bytes.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{_SIZE_HINT}, got {_show(value)}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value)
        unit = _SIZE_UNITS.get(match[2].lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{_SIZE_HINT}, got {value!r}")
        exact = Decimal(match[1]) * unit
        if exact != exact.to_integral_value():
            raise ValueError(f"{value!r} is not a whole number of bytes")
        size = int(exact)
    if size <= 0:
        raise ValueError(f"must be a positive size, got {_show(value)}")
    return size


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)"
_DURATION = re.compile(rf"\s*(?:{_DURATION_PART}\s*)+", re.IGNORECASE)
_DURATION_HINT = (
    "expected a duration: seconds as a number, or a string such as '30s', '31m', '1h30m' "
    "(units ms, s, m, h, d)"
)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"1h30m"`` or ``"500ms"``.

    Raises ValueError unless the result is a positive, finite number of seconds.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_DURATION_HINT}, got {_show(value)}")
    if isinstance(value, str):
        if re.fullmatch(r"\s*[0-9]+(?:\.[0-9]+)?\s*", value):
            seconds = float(value)
        elif _DURATION.fullmatch(value):
            seconds = sum(
                float(number) * _DURATION_UNITS[unit.lower()]
                for number, unit in re.findall(_DURATION_PART, value, re.IGNORECASE)
            )
        else:
            raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {_show(value)}")
    return seconds


def _pydantic(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """A parser raising ValueError, as a pydantic validator with a clean message."""

    def validate(value: object) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise _error(str(exc)) from None

    return validate


ByteSize = Annotated[int, PlainValidator(_pydantic(parse_size)), _Shown("size")]
"""A positive number of bytes; TOML integer or string with a unit (``"64KiB"``)."""

Duration = Annotated[float, PlainValidator(_pydantic(parse_duration)), _Shown("duration")]
"""A positive number of seconds; TOML number or string with units (``"1h30m"``)."""

Count = Annotated[int, Field(strict=True, gt=0)]
"""A positive TOML integer."""


def format_size(size: int) -> str:
    """``65536`` -> ``"64 KiB (65536 bytes)"``; sizes without an exact unit in bytes."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit} ({size} bytes)"
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit} ({size} bytes)"
    return f"{size} bytes"


def format_duration(seconds: float) -> str:
    """``1860`` -> ``"1860s (31m)"``; ``10`` -> ``"10s"``; ``0.5`` -> ``"0.5s"``."""
    plain = f"{seconds:g}s"
    if seconds < 60 or seconds != int(seconds):
        return plain
    rest = int(seconds)
    parts = []
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= factor:
            parts.append(f"{rest // factor}{unit}")
            rest %= factor
    return f"{plain} ({''.join(parts)})"


# -- files -----------------------------------------------------------------------


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """A relative path taken from the directory of the configuration file."""
    base = info.context.get("base") if isinstance(info.context, Mapping) else None
    if isinstance(base, Path) and not path.is_absolute():
        return base / path
    return path


def _readable_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise _error(f"file not found: {path}") from None
    except IsADirectoryError:
        raise _error(f"not a file: {path}") from None
    except OSError as exc:
        raise _error(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def _writable_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if path.is_dir():
        raise _error(f"is a directory, expected a file name: {path}")
    if not path.parent.is_dir():
        raise _error(f"directory not found: {path.parent}")
    return path


ReadableFile = Annotated[Path, AfterValidator(_readable_file)]
"""An existing readable file; relative to the configuration file's directory."""


def _readable_dir(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if not path.exists():
        raise _error(f"directory not found: {path}")
    if not path.is_dir():
        raise _error(f"not a directory: {path}")
    try:
        next(path.iterdir(), None)
    except OSError as exc:
        raise _error(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


ReadableDir = Annotated[Path, AfterValidator(_readable_dir)]
"""An existing readable directory; relative to the configuration file's directory."""

OutputFile = Annotated[Path, AfterValidator(_writable_file)]
"""A file to write to, in an existing directory; relative to the configuration file."""


# -- sections --------------------------------------------------------------------


class Section(BaseModel):
    """Base of every configuration table: immutable, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


TlsMode = Literal["implicit", "starttls", "none"]
"""``implicit``: TLS from the first byte (993); ``starttls``: plaintext until
STARTTLS (143); ``none``: no TLS at all."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise _error(
            f"expected a name of letters, digits, '_', '.', ':' and '-', got {_show(name)}"
        )
    return name


Name = Annotated[str, Field(strict=True), AfterValidator(_check_name)]


def _check_server_name(name: str) -> str:
    problem = None if ":" in name and _is_ipv6(name) else _check_host(name)
    if problem:
        raise _error(f"expected a host name (no port), {problem}")
    return name


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


class ServerTls(Section):
    """``[tls]``: the certificate clients see, for implicit TLS and STARTTLS listeners."""

    cert: ReadableFile
    """PEM certificate chain, server certificate first."""
    key: ReadableFile
    """PEM private key of the certificate, unencrypted."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version offered to clients."""
    ciphers: str | None = None
    """OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are OpenSSL's); None: OpenSSL's."""

    @model_validator(mode="after")
    def _usable(self) -> ServerTls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(cafile=self.cert)
        except ssl.SSLError as exc:
            _fail((("cert",), f"not a PEM certificate: {self.cert} ({_ssl_reason(exc)})"))
        encrypted = False

        def no_password() -> bytes:
            nonlocal encrypted
            encrypted = True
            return b""

        try:
            context.load_cert_chain(self.cert, self.key, password=no_password)
        except ssl.SSLError as exc:
            if encrypted:
                _fail((("key",), f"{self.key} is encrypted; imapproxy needs an unencrypted key"))
            _fail((("key",), f"{self.key} is not the private key of tls.cert ({_ssl_reason(exc)})"))
        if self.ciphers is not None:
            try:
                context.set_ciphers(self.ciphers)
            except ssl.SSLError:
                _fail((("ciphers",), f"OpenSSL selects no cipher for {self.ciphers!r}"))
        return self


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


def _raw_address(data: Mapping[str, Any]) -> Address | None:
    """The ``address`` of a table not yet validated, when it is a valid one."""
    raw = data.get("address")
    if isinstance(raw, Address):
        return raw
    try:
        return Address.parse(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def _default_name(listener: Listener) -> str:
    return f"{listener.tls}:{listener.address.port}"


class Listener(Section):
    """``[[listener]]``: an address where clients connect."""

    address: AddressField
    tls: TlsMode
    name: str = ""
    """Shown in logs; defaults to ``"<tls>:<port>"``, e.g. ``"implicit:993"``, or to
    ``"<tls>:<address>"`` when several listeners share tls mode and port."""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("name"):
            address = _raw_address(data)
            if address is not None and isinstance(data.get("tls"), str):
                return {**data, "name": f"{data['tls']}:{address.port}"}
        return data

    @model_validator(mode="after")
    def _plaintext_on_loopback_only(self) -> Listener:
        if self.tls == "none" and not self.address.is_loopback:
            _fail(
                (
                    ("tls",),
                    f'tls = "none" is allowed only on a loopback address (127.0.0.1, [::1], '
                    f"localhost), not {self.address}: clients would send passwords in clear "
                    'text over the network; use "implicit" (993) or "starttls" (143)',
                )
            )
        return self


class Upstream(Section):
    """``[[upstream]]``: an IMAP server the proxy relays to."""

    name: Name
    """Referred to by ``[routes]`` and shown in logs."""
    address: AddressField
    tls: TlsMode
    ca: ReadableFile | None = None
    """PEM file of the CA certificates to trust; None: the system trust store."""
    verify: StrictBool = True
    """Verify the certificate and that it names ``server_name``."""
    server_name: Annotated[str, AfterValidator(_check_server_name)] | None = None
    """SNI and the name to verify; defaults to the host of ``address``."""
    allow_plaintext: StrictBool = False
    """Required for ``tls = "none"`` to a host that is not loopback."""
    trusted: StrictBool = False
    """Forward the client's address in ID (x-originating-ip, x-originating-port)."""

    @model_validator(mode="before")
    @classmethod
    def _default_server_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("server_name") is None:
            address = _raw_address(data)
            if address is not None:
                return {**data, "server_name": address.host}
        return data

    @model_validator(mode="after")
    def _checked(self) -> Upstream:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.address.port == 0:
            problems.append((("address",), "port 0 is only meaningful for a listener"))
        if self.tls == "none" and not self.address.is_loopback and not self.allow_plaintext:
            problems.append(
                (
                    ("tls",),
                    f'tls = "none" to {self.address}, which is not a loopback address, sends '
                    'passwords and mail in clear text over the network; use "implicit" or '
                    '"starttls", or set allow_plaintext = true to accept that',
                )
            )
        if self.ca is not None:
            try:
                ssl.create_default_context(cafile=self.ca)
            except ssl.SSLError as exc:
                problems.append(
                    (("ca",), f"no PEM CA certificate in {self.ca} ({_ssl_reason(exc)})")
                )
        if problems:
            _fail(*problems)
        return self

    @property
    def tls_description(self) -> str:
        """How the proxy connects, for humans: ``"implicit, verified against system store"``."""
        if self.tls == "none":
            return "none (plaintext)"
        trust = f"CA file {self.ca}" if self.ca else "system store"
        if self.verify:
            return f"{self.tls}, certificate verified for {self.server_name!r} against {trust}"
        return f"{self.tls}, certificate NOT verified"


def _lower_keys(table: dict[str, str], what: str) -> dict[str, str]:
    lowered: dict[str, str] = {}
    original: dict[str, str] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key, upstream in table.items():
        low = key.lower()
        if not key.strip():
            problems.append(((key,), f"expected a {what}, got an empty key"))
        elif what == "domain" and "@" in key:
            problems.append(((key,), "a domain key is the part after '@' (example.com)"))
        elif low in lowered:
            problems.append(
                ((key,), f"same {what} as {original[low]!r} (keys are compared lower-case)")
            )
        lowered[low] = upstream
        original.setdefault(low, key)
    if problems:
        _fail(*problems)
    return lowered


class Routes(Section):
    """``[routes]``: which upstream serves a user.

    The login name is compared lower-case: an exact entry in ``users`` first, then
    its domain (after the last ``@``) in ``domains``, then ``default``.
    """

    default: Name | None = None
    domains: dict[str, str] = Field(default_factory=dict)
    users: dict[str, str] = Field(default_factory=dict)

    @field_validator("domains")
    @classmethod
    def _domains(cls, table: dict[str, str]) -> dict[str, str]:
        return _lower_keys(table, "domain")

    @field_validator("users")
    @classmethod
    def _users(cls, table: dict[str, str]) -> dict[str, str]:
        return _lower_keys(table, "user name")

    def lookup(self, user: str) -> str | None:
        """The upstream name for login name ``user``, or None when no route matches."""
        user = user.lower()
        if user in self.users:
            return self.users[user]
        _, at, domain = user.rpartition("@")
        if at and domain in self.domains:
            return self.domains[domain]
        return self.default


class Limits(Section):
    """``[limits]``: caps on clients, their input, and failed logins."""

    max_line: ByteSize = 65536
    """Octets in one client command line (literals excluded)."""
    max_literal: ByteSize = 64 * 1024**2
    """Octets in one client literal (the APPEND size limit)."""
    max_preauth_literal: ByteSize = 8192
    """Octets in one literal before login (credentials)."""
    max_connections: Count = 5000
    """Client connections overall."""
    max_connections_per_ip: Count = 100
    """Client connections from one IP address."""
    max_pipelined: Count = 1000
    """Client commands in flight before the proxy stops reading from the client."""
    login_failure_delay: Duration = 1.0
    """Delay before answering a failed login; doubles per consecutive failure."""
    login_failure_max_delay: Duration = 30.0
    """The doubling stops here."""
    login_failure_window: Duration = 900.0
    """Failures older than this are forgotten."""

    @model_validator(mode="after")
    def _consistent(self) -> Limits:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.max_preauth_literal > self.max_literal:
            problems.append(
                (
                    ("max_preauth_literal",),
                    f"must not exceed max_literal ({format_size(self.max_literal)})",
                )
            )
        if self.max_connections_per_ip > self.max_connections:
            problems.append(
                (
                    ("max_connections_per_ip",),
                    f"must not exceed max_connections ({self.max_connections})",
                )
            )
        if self.login_failure_max_delay < self.login_failure_delay:
            problems.append(
                (
                    ("login_failure_max_delay",),
                    "must be at least login_failure_delay "
                    f"({format_duration(self.login_failure_delay)})",
                )
            )
        if problems:
            _fail(*problems)
        return self


MIN_IDLE_TIMEOUT = 60.0
"""The lowest ``timeouts.idle`` accepted; RFC 9051 section 5.4 asks for 30 minutes."""


class Timeouts(Section):
    """``[timeouts]``: how long the proxy waits, in seconds."""

    preauth: Duration = 60.0
    """A client that has not logged in."""
    tls_handshake: Duration = 30.0
    """A client's TLS handshake."""
    idle: Duration = 1860.0
    """An authenticated client that sends nothing (RFC 9051 asks for at least 30 min)."""
    upstream_connect: Duration = 10.0
    """Connecting to an upstream, TLS handshake and greeting included."""
    upstream_response: Duration = 120.0
    """An upstream silent while a command is in flight (not during IDLE)."""
    shutdown_grace: Duration = 10.0
    """On SIGTERM: time sessions get after BYE before they are cut."""

    @field_validator("idle")
    @classmethod
    def _idle(cls, idle: float) -> float:
        if idle < MIN_IDLE_TIMEOUT:
            raise _error(
                f"must be at least {MIN_IDLE_TIMEOUT:g}s, got {format_duration(idle)}; "
                "RFC 9051 section 5.4 asks servers to wait at least 30 minutes (1800s) "
                "before logging out an idle client"
            )
        return idle


class Multiplex(Section):
    """``[multiplex]``: reuse and sharing of logged-in upstream connections
    (docs/multiplex.md).

    With ``enabled``, a client's upstream connection is kept when it logs out (in a
    clean state) and given to the next login of the same user on the same upstream
    whose password matches the one the upstream last accepted on it; with
    ``max_sessions_per_connection`` above 1, concurrent sessions of the user share
    its connections (:mod:`imapproxy.mux`)."""

    enabled: StrictBool = False
    """Keep and reuse logged-in upstream connections."""
    max_sessions_per_connection: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 1
    """Client sessions one upstream connection serves at a time. 1: reuse only;
    above 1, concurrent sessions of a user share its connections."""
    max_connections_per_user: Count = 10
    """Logged-in connections per user (and upstream) kept idle; with sharing, the
    connections the user's sessions share (a SELECT that would need one more is
    refused with ``[LIMIT]``)."""
    max_connections: Count = 100
    """Logged-in connections kept idle, or shared, in all."""
    idle_expiry: Duration = 60.0
    """How long an idle connection is kept for the next login."""
    reuse_max_age: Duration = 300.0
    """How long after the upstream checked a password a connection logged in with it
    is reused; past that the next login goes to the upstream again, so a changed or
    locked password stops working."""


class Logging(Section):
    """``[logging]``: structured logs (see :mod:`imapproxy.logs`)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: the console renderer on a terminal, JSON lines otherwise."""
    file: OutputFile | None = None
    """Appended to; None: standard output."""


class Rules(Section):
    """``[rules]``: where the rule files are and how they decide (docs/rules.md)."""

    dir: ReadableDir | None = None
    """Directory of ``*.toml`` rule files, loaded in name order; None: no rules."""
    users_file: ReadableFile | None = None
    """TOML file of user groups (``[groups] staff = ["alice", ...]``) for ``when.group``."""
    default: Literal["allow", "deny"] = "allow"
    """The verdict when no rule decides."""
    user_case: Literal["lower", "preserve"] = "lower"
    """How user names are normalised before rules see them (as the upstream does)."""
    separator: str = Field(default="/", min_length=1, max_length=1, pattern=r"^[^*%]$")
    """The upstream's hierarchy separator: rule patterns (``when.mailbox``,
    ``rewrite.hide``) and the upstream names of ``rewrite.mailbox`` are written with it."""


def _parse_size_or_zero(value: object) -> int:
    if (type(value) is int and value == 0) or value == "0":
        return 0
    return parse_size(value)


ByteSizeOrOff = Annotated[int, PlainValidator(_pydantic(_parse_size_or_zero)), _Shown("size")]
"""A :data:`ByteSize`, or 0 to turn off what it sizes."""

CACHE_KEY_HINT = "64 hex digits (32 random bytes), as written by: openssl rand -hex 32"


def parse_cache_key(text: bytes) -> bytes:
    """The 32-byte key of a ``cache.key_file``: 64 hex digits, whitespace around ignored.

    Raises ValueError saying what was expected; the message never shows the content.
    """
    digits = text.strip()
    if len(digits) != 64 or not re.fullmatch(rb"[0-9A-Fa-f]{64}", digits):
        raise ValueError(f"expected {CACHE_KEY_HINT}")
    return bytes.fromhex(digits.decode("ascii"))


def parse_redis_password(text: bytes) -> str:
    """The password of a ``cache.redis_password_file``: its content without the line end.

    Raises ValueError (never showing the content) when it is empty or not UTF-8.
    """
    try:
        password = text.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError("expected the Redis password as UTF-8 text") from None
    if not password or "\n" in password:
        raise ValueError("expected the Redis password on one line")
    return password


def _secret_file(parse: Callable[[bytes], object]) -> Callable[[Path], Path]:
    """A validator of a readable file whose content ``parse`` accepts."""

    def validate(path: Path) -> Path:
        try:
            parse(path.read_bytes())
        except OSError as exc:
            raise _error(f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise _error(f"{path}: {exc}") from None
        return path

    return validate


def _cache_dir(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if path.exists() and not path.is_dir():
        raise _error(f"not a directory: {path}")
    if not path.exists() and not path.parent.is_dir():
        raise _error(f"directory not found: {path.parent} (the proxy creates {path.name} in it)")
    return path


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(url: str) -> str:
    """``url`` when it is a Redis URL without a password; the message never shows it."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _error("expected a Redis URL such as 'redis://127.0.0.1:6379/0'") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise _error(
            "expected a Redis URL such as 'redis://127.0.0.1:6379/0' "
            f"(schemes: {', '.join(_REDIS_SCHEMES)})"
        )
    if parts.password is not None:
        raise _error(
            "the URL holds a password: put it in redis_password_file instead "
            "(the configuration file is no place for secrets)"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise _error("expected a host in the Redis URL, as in 'redis://127.0.0.1:6379/0'")
    if parts.scheme == "unix" and not parts.path:
        raise _error("expected a socket path in the Redis URL, as in 'unix:///run/redis.sock'")
    return url


class CacheSettings(Section):
    """``[cache]``: the MIME-part cache's tiers (see :mod:`imapproxy.cache`, docs/cache.md).

    Only paths are kept here: the key and the Redis password are read from their files
    when the cache starts (:meth:`read_key`, :meth:`read_redis_password`), so no
    repr, log line or ``imapproxy check`` output can show them.
    """

    memory_bytes: ByteSizeOrOff = 64 * 1024**2
    """Budget of the in-process tier; 0: no memory tier."""
    disk_dir: Annotated[Path, AfterValidator(_cache_dir)] | None = None
    """Directory of the disk tier (created when missing; survives restarts); None: none."""
    disk_bytes: ByteSize = 1024**3
    """Budget of the disk tier."""
    redis_url: Annotated[str, Field(strict=True), AfterValidator(_redis_url)] | None = None
    """The shared tier of several proxy instances, ``redis://host:port/db``; None: none."""
    redis_password_file: (
        Annotated[
            Path, AfterValidator(_readable_file), AfterValidator(_secret_file(parse_redis_password))
        ]
        | None
    ) = None
    """File holding the password for Redis AUTH; required with ``redis_url``."""
    redis_timeout: Duration = 0.2
    """Connecting to Redis and each Redis command; past it the tier counts as failing."""
    key_file: (
        Annotated[
            Path, AfterValidator(_readable_file), AfterValidator(_secret_file(parse_cache_key))
        ]
        | None
    ) = None
    """File of the key that encrypts the disk and Redis tiers (:data:`CACHE_KEY_HINT`);
    required with ``disk_dir`` or ``redis_url``."""
    ttl: Duration = 7 * 86400.0
    """How long an entry lives unless the cache is told otherwise."""

    @model_validator(mode="after")
    def _secrets_for_stores(self) -> CacheSettings:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        stores = [name for name in ("disk_dir", "redis_url") if getattr(self, name) is not None]
        if stores and self.key_file is None:
            problems.append(
                (
                    ("key_file",),
                    f"required with {' and '.join(stores)}: those tiers hold mail, encrypted "
                    f"with this key; expected a file of {CACHE_KEY_HINT}",
                )
            )
        if self.redis_url is not None and self.redis_password_file is None:
            problems.append(
                (
                    ("redis_password_file",),
                    "required with redis_url: a file holding the password for Redis AUTH "
                    "(set requirepass in redis.conf)",
                )
            )
        if problems:
            _fail(*problems)
        return self

    def read_key(self) -> bytes:
        """The 32-byte key from ``key_file``; raises OSError or ValueError."""
        if self.key_file is None:
            raise ValueError("cache.key_file is not set")
        return parse_cache_key(self.key_file.read_bytes())

    def read_redis_password(self) -> str:
        """The Redis password from ``redis_password_file``; raises OSError or ValueError."""
        if self.redis_password_file is None:
            raise ValueError("cache.redis_password_file is not set")
        return parse_redis_password(self.redis_password_file.read_bytes())


class Config(Section):
    """The whole configuration file. Build it with :func:`load_config`."""

    listeners: tuple[Listener, ...] = Field(alias="listener")
    tls: ServerTls | None = Field(default=None, validate_default=True)
    upstreams: tuple[Upstream, ...] = Field(alias="upstream")
    routes: Routes = Field(default_factory=Routes, validate_default=True)
    limits: Limits = Field(default_factory=Limits)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    logging: Logging = Field(default_factory=Logging)
    rules: Rules = Field(default_factory=Rules)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    multiplex: Multiplex = Field(default_factory=Multiplex)

    _source: Path = PrivateAttr(default=Path("<string>"))

    @property
    def source(self) -> Path:
        """The file this configuration was read from (``<string>`` for text)."""
        return self._source

    @field_validator("listeners")
    @classmethod
    def _distinct_listeners(cls, listeners: tuple[Listener, ...]) -> tuple[Listener, ...]:
        if not listeners:
            _fail(((), _AT_LEAST_ONE.format("listener")))
        # Default names that collide ("implicit:993" on 0.0.0.0 and on [::]) get the
        # whole address instead: "implicit:0.0.0.0:993", "implicit:[::]:993".
        count = Counter(listener.name for listener in listeners)
        listeners = tuple(
            listener.model_copy(update={"name": f"{listener.tls}:{listener.address}"})
            if count[listener.name] > 1 and listener.name == _default_name(listener)
            else listener
            for listener in listeners
        )
        problems: list[tuple[tuple[str | int, ...], str]] = []
        by_address: dict[Address, int] = {}
        by_name: dict[str, int] = {}
        for i, listener in enumerate(listeners):
            if listener.address in by_address and listener.address.port != 0:
                problems.append(
                    ((i, "address"), f"listener[{by_address[listener.address]}] has it too")
                )
            elif listener.name in by_name:
                problems.append(
                    (
                        (i, "name"),
                        f"{listener.name!r} is the name of listener[{by_name[listener.name]}] too",
                    )
                )
            by_address.setdefault(listener.address, i)
            by_name.setdefault(listener.name, i)
        if problems:
            _fail(*problems)
        return listeners

    @field_validator("tls")
    @classmethod
    def _tls_for_listeners(cls, tls: ServerTls | None, info: ValidationInfo) -> ServerTls | None:
        listeners: tuple[Listener, ...] = info.data.get("listeners", ())
        needing = [f"listener[{i}]" for i, lis in enumerate(listeners) if lis.tls != "none"]
        if tls is None and needing:
            _fail(
                (
                    (),
                    f"{', '.join(needing)} use TLS: add a [tls] section with cert and key "
                    "(the certificate clients see)",
                )
            )
        return tls

    @field_validator("upstreams")
    @classmethod
    def _distinct_upstreams(cls, upstreams: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
        if not upstreams:
            _fail(((), _AT_LEAST_ONE.format("upstream")))
        seen: dict[str, int] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for i, upstream in enumerate(upstreams):
            if upstream.name in seen:
                problems.append(
                    (
                        (i, "name"),
                        f"{upstream.name!r} is the name of upstream[{seen[upstream.name]}] too",
                    )
                )
            seen.setdefault(upstream.name, i)
        if problems:
            _fail(*problems)
        return upstreams

    @field_validator("routes")
    @classmethod
    def _routes_to_upstreams(cls, routes: Routes, info: ValidationInfo) -> Routes:
        upstreams: tuple[Upstream, ...] | None = info.data.get("upstreams")
        if upstreams is None:  # reported already
            return routes
        names = [upstream.name for upstream in upstreams]
        known = f"upstreams: {', '.join(names)}"
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if routes.default is not None and routes.default not in names:
            problems.append((("default",), f"no upstream named {routes.default!r} ({known})"))
        for table in ("domains", "users"):
            for key, name in getattr(routes, table).items():
                if name not in names:
                    problems.append(((table, key), f"no upstream named {name!r} ({known})"))
        if routes.default is None and not (routes.users or routes.domains) and len(names) > 1:
            problems.append(
                (
                    (),
                    f"{len(names)} upstreams and no routes: set routes.default, or add "
                    "[routes.users] / [routes.domains] entries",
                )
            )
        if problems:
            _fail(*problems)
        if routes.default is None and len(names) == 1:
            return routes.model_copy(update={"default": names[0]})
        return routes

    def upstream(self, name: str) -> Upstream:
        """The upstream called ``name``; raises KeyError when there is none."""
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise KeyError(name)

    def summary(self) -> str:
        """The effective configuration, defaults included, for ``imapproxy check``."""
        lines = [f"configuration: {self.source}", "listeners:"]
        lines += [f"  {lis.name}: {lis.address}, tls = {lis.tls}" for lis in self.listeners]
        lines.append("tls:")
        if self.tls is None:
            lines.append("  none (every listener is plaintext on loopback)")
        else:
            lines += [
                f"  cert = {self.tls.cert}",
                f"  key = {self.tls.key}",
                f"  min_version = {self.tls.min_version}",
                f"  ciphers = {self.tls.ciphers or 'OpenSSL default'}",
            ]
        lines.append("upstreams:")
        for upstream in self.upstreams:
            lines += [
                f"  {upstream.name}: {upstream.address}",
                f"    tls = {upstream.tls_description}",
                f"    trusted = {_yes(upstream.trusted)} "
                f"({'forwards' if upstream.trusted else 'does not forward'} client address in ID)",
            ]
            if upstream.tls == "none" and upstream.allow_plaintext:
                lines.append("    allow_plaintext = yes")
        lines.append("routes (login name lower-case: users, then domains, then default):")
        lines += [f"  user {user} -> {name}" for user, name in self.routes.users.items()]
        lines += [f"  domain {domain} -> {name}" for domain, name in self.routes.domains.items()]
        lines.append(
            f"  default -> {self.routes.default}"
            if self.routes.default
            else "  default: none (logins matching no route are refused)"
        )
        for name, field in type(self).model_fields.items():
            if name in _SUMMARISED:
                continue
            lines.append(f"{field.alias or name}:")
            lines += _plain_summary(getattr(self, name))
        return "\n".join(lines)


_AT_LEAST_ONE = "at least one [[{}]] table is required"
_SUMMARISED = frozenset({"listeners", "tls", "upstreams", "routes"})


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _plain_summary(section: BaseModel) -> list[str]:
    """``key = value`` lines for a section of plain values, sizes and durations shown."""
    lines = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        shown = next((m.kind for m in field.metadata if isinstance(m, _Shown)), None)
        if shown == "size":
            text = format_size(value)
        elif shown == "duration":
            text = format_duration(value)
        elif value is None:
            text = "none"
        elif isinstance(value, bool):
            text = _yes(value)
        else:
            text = str(value)
        lines.append(f"  {field.alias or name} = {text}")
    if isinstance(section, Logging):  # what "auto" and no file mean
        lines = [
            line
            + {
                "  format = auto": " (console on a terminal, JSON lines otherwise)",
                "  file = none": " (standard output)",
            }.get(line, "")
            for line in lines
        ]
    if isinstance(section, CacheSettings):  # which tiers are off
        lines = [
            line
            + {
                "  memory_bytes = 0 bytes": " (no memory tier)",
                "  disk_dir = none": " (no disk tier)",
                "  redis_url = none": " (no Redis tier)",
            }.get(line, "")
            for line in lines
        ]
    return lines


# -- loading ---------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises ConfigError naming the file and, for each problem, the key path (or the
    line and column of a TOML syntax error), or saying why the file cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, source=path)


_TOML_POSITION = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)


def parse_config(text: str, *, source: Path = Path("<string>")) -> Config:
    """Validate the TOML ``text``; ``source`` names it in errors and anchors relative paths.

    Raises ConfigError as :func:`load_config` does.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.fullmatch(message)
        if position:
            what, line, column = position.groups()
            message = f"line {line}, column {column}: TOML syntax: {what}"
        elif message.endswith(" (at end of document)"):
            what = message.removesuffix(" (at end of document)")
            message = f"line {text.count(chr(10)) + 1} (end of file): TOML syntax: {what}"
        else:  # pragma: no cover - tomllib always gives a position
            message = f"TOML syntax: {message}"
        raise ConfigError(source, [message]) from None
    try:
        config = Config.model_validate(table, context={"base": source.parent})
    except ValidationError as exc:
        errors = [_describe(error) for error in exc.errors(include_url=False)]
        raise ConfigError(source, errors) from None
    config._source = source
    return config


# -- error messages --------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_path(loc: Iterable[str | int]) -> str:
    """``("listener", 0, "address")`` -> ``listener[0].address``; odd keys quoted."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            path += f".{key}" if path else key
    return path


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "path_type": "a file path string",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
    "tuple_type": "an array of tables",
    "list_type": "an array",
}


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``key.path: message`` in TOML words."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    path = _toml_path(loc) or "(top level)"
    kind: str = error["type"]
    value = error.get("input")
    if kind == "imapproxy_config":
        message = str(error["msg"])
    elif kind == "extra_forbidden":
        allowed = _keys_at(loc[:-1])
        message = "unknown key" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing" and _is_array_of_tables(loc):
        message = _AT_LEAST_ONE.format(loc[-1])
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "literal_error":
        message = f"expected {error['ctx']['expected']}, got {_show(value)}"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_show(value)}"
    else:
        text = str(error["msg"]).removeprefix("Value error, ")
        message = f"{text.replace('Input should be', 'must be')}, got {_show(value)}"
    return f"{path}: {message}"


def _show(value: object) -> str:
    """A value as humans reading TOML see it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return str(value)


def _section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside ``annotation`` (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``)
    and whether it sits in a container whose next location part is an index or key."""
    contained = False
    while True:
        origin = get_origin(annotation)
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if origin in (Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
        elif origin in (tuple, list, dict) and args:
            annotation, contained = args[-1] if origin is dict else args[0], True
        elif origin is Annotated:
            annotation = args[0]
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, contained
    return None, contained


def _walk(loc: Sequence[str | int]) -> tuple[type[BaseModel] | None, Any]:
    """The model at TOML location ``loc`` (aliases), and the annotation of its last key."""
    model: type[BaseModel] | None = Config
    annotation: Any = None
    parts = list(loc)
    while parts and model is not None:
        part = parts.pop(0)
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None, None
        annotation = field.annotation
        model, contained = _section_model(annotation)
        if contained and parts:
            parts.pop(0)
    if parts:
        return None, None
    return model, annotation


def _keys_at(loc: Sequence[str | int]) -> list[str]:
    model, _ = _walk(loc)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _is_array_of_tables(loc: Sequence[str | int]) -> bool:
    _, annotation = _walk(loc)
    return get_origin(annotation) is tuple
