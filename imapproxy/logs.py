"""Structured logging: structlog set up from the ``[logging]`` section.

:func:`configure_logging` builds one processor chain: context bound with
:func:`bind_context` or :func:`bound_context` (``session``, ``peer``, ``user``,
``upstream``, bound once per connection; one context variable holding a dict, so
merging it costs one lookup), the level, an ISO 8601 UTC timestamp (microseconds),
:func:`redact` and a renderer: JSON lines (one object per event, by orjson) when
the output is not a terminal or ``format = "json"``, structlog's console renderer
on a terminal or with ``format = "console"``. Events below the configured level
cost one no-op call. The stdlib :mod:`logging` module is not involved. The chain
is kept cheap: with audit logging on, every command writes a line.

:func:`redact` is the second line of defence for credentials (the first is that
code never logs them, and that :class:`imapproxy.wire.Secret` has a redacted
repr): a value under a key named like a credential (``password``, ``secret``,
``token``, ``sasl``, ...) and any ``Secret`` value, also nested in dicts, lists and
tuples, is written as ``"[REDACTED]"``.

Loggers from :func:`get_logger` are not cached, so :func:`configure_logging` may
be called again (tests do) and module-level loggers follow the latest setup.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from imapproxy.wire import Secret

if TYPE_CHECKING:
    from imapproxy.config import Logging

__all__ = [
    "REDACTED",
    "bind_context",
    "bound_context",
    "bound_logger",
    "clear_context",
    "configure_logging",
    "get_logger",
    "is_sensitive_key",
    "redact",
]

REDACTED = "[REDACTED]"

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_level = 0  # the configured level (0: not configured, everything passes)
_generation = 0  # configure_logging calls so far (bound loggers of older ones are stale)

# Key parts (split at anything but letters and digits, a plural "s" ignored) that
# mark a credential, and substrings that do even inside a longer word.
_SENSITIVE_PARTS = frozenset(
    {"password", "passwd", "secret", "token", "credential", "authenticate", "sasl"}
)
_SENSITIVE_SUBSTRINGS = ("password", "passwd", "secret", "initial_response", "initialresponse")
_MAX_DEPTH = 8

_opened: TextIO | None = None
"""The log file opened by the last :func:`configure_logging`, closed by the next."""


def is_sensitive_key(key: str) -> bool:
    """True when an event key names a credential: ``password``, ``sasl_ir``, ``auth_token``.

    Memoised: events use a small set of keys, and every line checks each of them."""
    known = _SENSITIVE_MEMO.get(key)
    if known is None:
        known = _sensitive(key)
        if len(_SENSITIVE_MEMO) >= _MAX_MEMO:
            _SENSITIVE_MEMO.clear()
        _SENSITIVE_MEMO[key] = known
    return known


def _sensitive(key: str) -> bool:
    low = key.lower()
    if any(word in low for word in _SENSITIVE_SUBSTRINGS):
        return True
    return any(
        part in _SENSITIVE_PARTS or part.removesuffix("s") in _SENSITIVE_PARTS
        for part in re.split(r"[^a-z0-9]+", low)
    )


_SENSITIVE_MEMO: dict[str, bool] = {}
_MAX_MEMO = 4096

#: Values written as they are, without a look inside (the common case, fast).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _scrub(value: Any, depth: int = 0) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Secret):
        return REDACTED
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and is_sensitive_key(key)
            else _scrub(v, depth + 1)
            for key, v in value.items()
        }
    if isinstance(value, list | tuple):
        if all(type(item) in _PLAIN for item in value):
            return value  # names, tags: nothing to hide
        return type(value)(_scrub(item, depth + 1) for item in value)
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: credentials under sensitive keys and Secret values hidden.

    Which keys of an event are sensitive is worked out once per key sequence (a
    given event is logged with the same keys every time); values are looked into
    only when one is not a plain string, number, boolean or None."""
    keys = tuple(event_dict)
    sensitive = _PLANS.get(keys)
    if sensitive is None:
        sensitive = frozenset(k for k in keys if k != "event" and is_sensitive_key(k))
        if len(_PLANS) >= _MAX_MEMO:
            _PLANS.clear()
        _PLANS[keys] = sensitive
    for key in sensitive:
        event_dict[key] = REDACTED
    if not _PLAIN.issuperset(map(type, event_dict.values())):
        for key, value in event_dict.items():
            if type(value) not in _PLAIN and key not in sensitive:
                event_dict[key] = _scrub(value)
    return event_dict


_PLANS: dict[tuple[str, ...], frozenset[str]] = {}


def configure_logging(cfg: Logging, *, stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process from ``cfg``.

    Output goes to ``stream`` when given (tests), else to ``cfg.file`` (appended,
    line-buffered), else to standard output. Calling it again replaces the setup
    and closes a log file the previous call opened. Raises OSError when the log
    file cannot be opened.
    """
    global _opened, _level, _generation
    _level = _LEVELS[cfg.level]
    _generation += 1
    output: TextIO
    if stream is not None:
        output = stream
    elif cfg.file is not None:
        output = cfg.file.open("a", buffering=1, encoding="utf-8")
    else:
        output = sys.stdout
    if _opened is not None and _opened is not output:
        _opened.close()
    _opened = output if stream is None and cfg.file is not None else None

    console = cfg.format == "console" or (cfg.format == "auto" and _is_terminal(output))
    processors: list[Processor] = [_prepare]
    # Tracebacks without local variables: a frame's locals may hold credentials.
    if console:
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=_is_terminal(output), exception_formatter=structlog.dev.plain_traceback
            )
        )
    else:
        exceptions = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )

        def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
            if "exc_info" in event_dict or "exception" in event_dict:
                event_dict = exceptions(logger, method, event_dict)
            return _dumps(event_dict, default=_fallback)

        processors.append(render)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )


def _prepare(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """The bound context, ``level``, ``timestamp`` and :func:`redact`, in one step
    (each is a function call less per event)."""
    bound = _CONTEXT.get()
    if bound:
        event_dict = {**bound, **event_dict}
    event_dict["level"] = _METHOD_LEVELS.get(method, method)
    return redact(logger, method, _timestamp(logger, method, event_dict))


#: Method names that are not their level's name (as structlog's add_log_level).
_METHOD_LEVELS = {"warn": "warning", "exception": "error"}


def _fallback(obj: Any) -> str:
    """How a value JSON cannot hold is written: its repr (as structlog does)."""
    return repr(obj)


def _dumps(obj: Any, **kwargs: Any) -> str:
    """JSON for one event, by orjson (a tenth of the json module's cost: one line
    per command is written with audit logging on). UTF-8 as it is, not escaped;
    what orjson cannot serialise goes through structlog's fallback (its repr)."""
    return orjson.dumps(obj, default=kwargs.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


_NOTHING_BOUND: Mapping[str, Any] = {}
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "imapproxy_log_context", default=_NOTHING_BOUND
)


def bind_context(**fields: Any) -> None:
    """Add ``fields`` to every event logged from the current trio task (and the
    tasks it starts from now on)."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


@contextlib.contextmanager
def bound_context(**fields: Any) -> Iterator[None]:
    """:func:`bind_context` for the duration of a ``with`` block; what was bound
    inside it is dropped at its end too."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def clear_context() -> None:
    _CONTEXT.set(_NOTHING_BOUND)


def _merge_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    bound = _CONTEXT.get()
    return {**bound, **event_dict} if bound else event_dict


_SECOND: list[Any] = [None, ""]


def _timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: ISO 8601, UTC, microseconds (``2026-11-27T09:12:03.123456Z``);
    the date and time text is formatted once a second."""
    now = time.time()
    second = int(now)
    if _SECOND[0] != second:
        _SECOND[0], _SECOND[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    event_dict["timestamp"] = f"{_SECOND[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


def _is_terminal(output: TextIO) -> bool:
    try:
        return output.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def enabled_for(level: str) -> bool:
    """Whether events at ``level`` are written (everything is, until
    :func:`configure_logging` sets a level): lets hot paths skip building an event
    nobody will see."""
    return _LEVELS[level] >= _level


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose events carry ``logger_name=name`` (the module, by convention).

    The logger is resolved at each call, so it follows later :func:`configure_logging`.
    """
    return cast(FilteringBoundLogger, structlog.get_logger(logger_name=name))


_BOUND: dict[str, tuple[int, FilteringBoundLogger]] = {}


def bound_logger(name: str) -> FilteringBoundLogger:
    """:func:`get_logger` for hot paths (the audit line of every command): the
    bound logger is built once per :func:`configure_logging`, not at each call."""
    entry = _BOUND.get(name)
    if entry is not None and entry[0] == _generation:
        return entry[1]
    logger = cast(FilteringBoundLogger, structlog.get_logger(logger_name=name).bind())
    _BOUND[name] = (_generation, logger)
    return logger
