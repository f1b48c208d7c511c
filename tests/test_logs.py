"""Logging setup: JSON lines, console output, levels, context, redaction, files."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio

import imapproxy.logs
from imapproxy.config import Logging
from imapproxy.logs import (
    REDACTED,
    bind_context,
    bound_context,
    clear_context,
    configure_logging,
    get_logger,
    is_sensitive_key,
    redact,
)
from imapproxy.wire import Secret


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    configure_logging(Logging(), stream=io.StringIO())  # closes a log file a test opened
    clear_context()
    structlog.reset_defaults()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="json"), stream=out)
    log = get_logger("imapproxy.test")
    log.info("session started", peer="192.0.2.1:5000")
    log.warning("slow upstream", seconds=2.5)
    first, second = json_lines(out)
    assert first["event"] == "session started"
    assert first["level"] == "info"
    assert first["peer"] == "192.0.2.1:5000"
    assert first["logger_name"] == "imapproxy.test"
    assert second["level"] == "warning"
    assert second["seconds"] == 2.5
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)


def test_auto_is_json_off_a_terminal_and_console_on_one() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="auto"), stream=out)
    get_logger("t").info("hello", user="alice")
    assert json_lines(out)[0]["event"] == "hello"

    tty = Terminal()
    configure_logging(Logging(format="auto"), stream=tty)
    get_logger("t").info("hello", user="alice")
    text = tty.getvalue()
    assert "hello" in text
    assert "alice" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_console_format_without_colours_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="console"), stream=out)
    get_logger("t").info("hello", user="alice")
    line = out.getvalue()
    assert "hello" in line
    assert "user=alice" in line
    assert "\x1b[" not in line


def test_levels_filter() -> None:
    out = io.StringIO()
    configure_logging(Logging(level="warning", format="json"), stream=out)
    log = get_logger("t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in json_lines(out)] == ["w", "e"]

    out = io.StringIO()
    configure_logging(Logging(level="debug", format="json"), stream=out)
    log.debug("d")
    assert [line["event"] for line in json_lines(out)] == ["d"]


def test_loggers_follow_reconfiguration() -> None:
    log = get_logger("made before configure")
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Logging(format="json"), stream=first)
    log.info("one")
    configure_logging(Logging(format="json"), stream=second)
    log.info("two")
    assert [line["event"] for line in json_lines(first)] == ["one"]
    assert [line["event"] for line in json_lines(second)] == ["two"]


def test_bound_context_is_merged() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="json"), stream=out)
    log = get_logger("t")
    with bound_context(session="s1", peer="192.0.2.1:5000"):
        log.info("command", command="SELECT")
    log.info("after")
    inside, after = json_lines(out)
    assert (inside["session"], inside["peer"], inside["command"]) == (
        "s1",
        "192.0.2.1:5000",
        "SELECT",
    )
    assert "session" not in after


async def test_context_is_per_trio_task() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="json"), stream=out)
    log = get_logger("t")

    async def session(name: str) -> None:
        bind_context(session=name)
        await trio.lowlevel.checkpoint()
        log.info("command")

    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(session, name)
    assert sorted(line["session"] for line in json_lines(out)) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "passwd",
        "new_password",
        "userPassword",
        "secret",
        "client_secret",
        "token",
        "auth_token",
        "tokens",
        "credentials",
        "credential",
        "authenticate",
        "authenticate_args",
        "sasl",
        "sasl_ir",
        "sasl-response",
        "initial_response",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    ["user", "event", "command", "mechanism", "authenticated", "tokenizer", "passthrough", "tag"],
)
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_redaction_in_output() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="json"), stream=out)
    get_logger("t").info(
        "login",
        user="alice",
        password="hunter2",
        sasl_ir="AGFsaWNlAGh1bnRlcjI=",
        args=[Secret(b"hunter2"), "INBOX", {"token": "t0k3n", "ok": 1}],
        pair=(Secret(b"hunter2"),),
        auth=Secret(b"hunter2"),
        mechanism="PLAIN",
    )
    text = out.getvalue()
    assert "hunter2" not in text
    assert "t0k3n" not in text
    assert "AGFsaWNl" not in text
    (line,) = json_lines(out)
    assert line["user"] == "alice"
    assert line["mechanism"] == "PLAIN"
    assert line["password"] == REDACTED
    assert line["sasl_ir"] == REDACTED
    assert line["args"] == [REDACTED, "INBOX", {"token": REDACTED, "ok": 1}]
    assert line["pair"] == [REDACTED]
    assert line["auth"] == REDACTED


def test_redaction_covers_bound_context_and_console() -> None:
    tty = Terminal()
    configure_logging(Logging(format="console"), stream=tty)
    with bound_context(credentials="alice:hunter2"):
        get_logger("t").info("x", token="abc123")
    assert "hunter2" not in tty.getvalue()
    assert "abc123" not in tty.getvalue()
    assert REDACTED in tty.getvalue()


def test_redact_processor_directly() -> None:
    event = {"event": "password changed", "password": "x", "nested": {"a": [Secret(b"x")]}}
    assert redact(None, "info", event) == {
        "event": "password changed",
        "password": REDACTED,
        "nested": {"a": [REDACTED]},
    }


def test_tracebacks_carry_no_local_variables() -> None:
    out = io.StringIO()
    configure_logging(Logging(format="json"), stream=out)
    password = "hunter2"  # a local that must not reach the log
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("t").exception("failed")
    assert password not in out.getvalue()
    (line,) = json_lines(out)
    assert line["level"] == "error"
    assert line["exception"][0]["exc_type"] == "RuntimeError"


def test_log_file_is_appended_and_line_buffered(tmp_path: Path) -> None:
    path = tmp_path / "imapproxy.log"
    path.write_text('{"event": "earlier"}\n')
    configure_logging(Logging(format="auto", file=path))
    get_logger("t").info("one")
    # readable at once, without a flush; JSON since a file is not a terminal
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["earlier", "one"]

    second = tmp_path / "second.log"
    configure_logging(Logging(format="json", file=second))
    get_logger("t").info("two")
    assert [json.loads(line)["event"] for line in second.read_text().splitlines()] == ["two"]
    assert len(path.read_text().splitlines()) == 2


def test_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Logging(format="json"))
    get_logger("t").info("to stdout")
    assert json.loads(capsys.readouterr().out)["event"] == "to stdout"


def test_enabled_for_follows_the_configured_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    assert imapproxy.logs.enabled_for("debug")  # not configured: everything passes
    configure_logging(Logging(level="info", format="json"), stream=io.StringIO())
    assert not imapproxy.logs.enabled_for("debug")
    assert imapproxy.logs.enabled_for("info")
    assert imapproxy.logs.enabled_for("error")
