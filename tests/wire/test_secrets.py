"""Credentials never show up in reprs, error texts or replies of the codec."""

from __future__ import annotations

import pytest

from imapproxy.wire import Command, Frame, ParseError, Secret

PASSWORD = b"hunter2-Zq9"
SASL = b"AGFsaWNlAGh1bnRlcjItWnE5"  # base64 of "\0alice\0hunter2-Zq9"


@pytest.mark.parametrize(
    "wire",
    [
        b"a LOGIN alice hunter2-Zq9 extra\r\n",
        b"a LOGIN alice hunter2-Zq9(\r\n",
        b'a LOGIN alice "hunter2-Zq9\r\n',
        b"a LOGIN hunter2-Zq9\r\n",
        b"a AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjItWnE5 junk\r\n",
        b"a AUTHENTICATE PLAIN AGFsaWNlAGh1bnRlcjItWnE5!\r\n",
        b"a AUTHENTICATE PLAIN (AGFsaWNlAGh1bnRlcjItWnE5\r\n",
    ],
)
def test_parse_errors_of_secret_commands_do_not_quote_input(wire: bytes) -> None:
    command = Command.parse(Frame(wire))
    with pytest.raises(ParseError) as excinfo:
        _ = command.args
    error = excinfo.value
    for text in (str(error), repr(error), error.reply.text, error.reply.to_bytes().decode()):
        assert "hunter2" not in text
        assert SASL.decode()[:12] not in text
    assert error.reply.tag == b"a"


def test_parsed_credentials_are_secrets() -> None:
    login = Command.parse(Frame(b"a LOGIN alice hunter2-Zq9\r\n")).args
    auth = Command.parse(Frame(b"b AUTHENTICATE PLAIN " + SASL + b"\r\n")).args
    for args in (login, auth):
        assert "hunter2" not in repr(args)
        assert SASL.decode() not in repr(args)
    assert login.password == Secret(PASSWORD)  # type: ignore[union-attr]
    assert login.password.reveal() == PASSWORD  # type: ignore[union-attr]


def test_other_commands_quote_their_input_for_the_client() -> None:
    """Only LOGIN and AUTHENTICATE are redacted: elsewhere the text helps the user."""
    with pytest.raises(ParseError) as excinfo:
        _ = Command.parse(Frame(b"a SELECT INBOX junk\r\n")).args
    assert "junk" in excinfo.value.reply.text
