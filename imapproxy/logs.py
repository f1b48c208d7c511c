"""Structured logging: structlog set up from the ``[logging]`` section.

:func:`configure_logging` builds one processor chain: context bound with
:func:`structlog.contextvars.bind_contextvars` (``session``, ``peer``, ``user``,
``upstream``, bound once per connection), the level, an ISO 8601 UTC timestamp,
:func:`redact` and a renderer: JSON lines (one object per event) when the output is
not a terminal or ``format = "json"``, structlog's console renderer on a terminal
or with ``format = "console"``. Events below the configured level cost one no-op
call. The stdlib :mod:`logging` module is not involved.

:func:`redact` is the second line of defence for credentials (the first is that
code never logs them, and that :class:`imapproxy.wire.Secret` has a redacted
repr): a value under a key named like a credential (``password``, ``secret``,
``token``, ``sasl``, ...) and any ``Secret`` value, also nested in dicts, lists and
tuples, is written as ``"[REDACTED]"``.

Loggers from :func:`get_logger` are not cached, so :func:`configure_logging` may
be called again (tests do) and module-level loggers follow the latest setup.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from imapproxy.wire import Secret

if TYPE_CHECKING:
    from imapproxy.config import Logging

__all__ = ["REDACTED", "configure_logging", "get_logger", "is_sensitive_key", "redact"]

REDACTED = "[REDACTED]"

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_level = 0  # the configured level (0: not configured, everything passes)

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
    """True when an event key names a credential: ``password``, ``sasl_ir``, ``auth_token``."""
    low = key.lower()
    if any(word in low for word in _SENSITIVE_SUBSTRINGS):
        return True
    return any(
        part in _SENSITIVE_PARTS or part.removesuffix("s") in _SENSITIVE_PARTS
        for part in re.split(r"[^a-z0-9]+", low)
    )


def _scrub(value: Any, depth: int = 0) -> Any:
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
        return type(value)(_scrub(item, depth + 1) for item in value)
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: credentials under sensitive keys and Secret values hidden."""
    for key, value in event_dict.items():
        if key != "event" and is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def configure_logging(cfg: Logging, *, stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process from ``cfg``.

    Output goes to ``stream`` when given (tests), else to ``cfg.file`` (appended,
    line-buffered), else to standard output. Calling it again replaces the setup
    and closes a log file the previous call opened. Raises OSError when the log
    file cannot be opened.
    """
    global _opened, _level
    _level = _LEVELS[cfg.level]
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
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    # Tracebacks without local variables: a frame's locals may hold credentials.
    if console:
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=_is_terminal(output), exception_formatter=structlog.dev.plain_traceback
            )
        )
    else:
        processors += [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )


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
