"""The codec and a real server agree on where commands begin and end.

Smuggling needs two parties that read one byte stream differently. For every
input here the codec frames the stream into commands whose arguments parse; the
same bytes then go to Dovecot, and the tags Dovecot answers must be exactly the
tags of those commands, in order: no command the codec saw as literal data runs,
and none the codec saw is lost.
"""

from __future__ import annotations

import socket

import pytest

from imapproxy.testing import DovecotServer, User
from imapproxy.wire import (
    NEED_DATA,
    Command,
    ContinuationRequest,
    Frame,
    Framer,
    ParseError,
    Role,
)

SHAPES = [
    pytest.param(b"t1 SELECT {" + b"0" * 30 + b"5+}\r\nINBOX\r\nt2 NOOP\r\n", id="zero-padded"),
    pytest.param(b"t1 STATUS {5+}\r\nINBOX (MESSAGES)\r\nt2 NOOP\r\n", id="literal-mailbox"),
    pytest.param(
        b't1 LIST "" {1+}\r\n*\r\nt2 LSUB "" {10+}\r\nt3 NOOP\r\n%\r\nt4 NOOP\r\n',
        id="literal-pattern-looks-like-command",
    ),
    pytest.param(
        b"t1 APPEND Drafts ~{7+}\r\nhi\x00\r\n\r\n\r\nt2 NOOP\r\n",
        id="literal8-message",
    ),
    pytest.param(
        b"t1 APPEND Drafts {18+}\r\nt9 DELETE Drafts\r\n (\\Seen) {5+}\r\nhello\r\nt2 NOOP\r\n",
        id="multiappend-with-command-shaped-data",
    ),
    pytest.param(
        b"t1 SEARCH HEADER Subject {12+}\r\nt9 LOGOUT\r\nX\r\nt2 NOOP\r\n",
        id="search-literal",
    ),
    pytest.param(b"t1 NOOP\r\nt2 CHECK\r\nt3 NOOP\r\n", id="pipelined"),
]


def _codec_tags(stream: bytes) -> list[bytes]:
    framer = Framer(Role.SERVER)
    framer.receive_data(stream)
    tags = []
    while (event := framer.next_event()) is not NEED_DATA:
        if isinstance(event, ContinuationRequest):
            framer.accept_literal()
            continue
        assert isinstance(event, Frame), event
        command = Command.parse(event)
        assert command.args is not None  # the codec accepts the whole command
        tags.append(command.tag)
    return tags


def _read_until_tagged(sock: socket.socket, buf: bytearray, tag: bytes) -> list[bytes]:
    """Tagged response lines up to and including ``tag``'s."""
    tagged = []
    while True:
        while b"\r\n" not in buf:
            data = sock.recv(65536)
            assert data, "server closed the connection"
            buf += data
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        if line[:1] not in (b"*", b"+"):
            tagged.append(line)
            if line.split(b" ", 1)[0] == tag:
                return tagged


def _send(dovecot: DovecotServer, user: User, stream: bytes) -> list[bytes]:
    """Log in, send ``stream`` and a final ``Z9 NOOP``; the tagged lines up to Z9's."""
    with socket.create_connection((dovecot.host, dovecot.imap_port), timeout=10) as sock:
        buf = bytearray()
        while b"\r\n" not in buf:
            buf += sock.recv(4096)
        buf[:] = buf.partition(b"\r\n")[2]
        sock.sendall(f'L1 LOGIN "{user.name}" "{user.password}"\r\n'.encode())
        assert _read_until_tagged(sock, buf, b"L1")[-1].startswith(b"L1 OK")
        sock.sendall(stream + b"Z9 NOOP\r\n")
        return _read_until_tagged(sock, buf, b"Z9")


@pytest.mark.parametrize("stream", SHAPES)
def test_server_sees_the_commands_the_codec_sees(
    stream: bytes, dovecot: DovecotServer, mail_user: User
) -> None:
    tags = _codec_tags(stream)
    answered = [line.split(b" ", 1)[0] for line in _send(dovecot, mail_user, stream)]
    assert answered == [*tags, b"Z9"]


SMUGGLE = b"t9 CREATE Smuggled\r\n"  # 20 octets

REFUSED = [
    pytest.param(b"t1 SEARCH TEXT ~{20+}\r\n" + SMUGGLE + b"\r\n", id="literal8-in-search"),
    pytest.param(b"t1 APPEND Drafts (\\Seen \xe9) {20+}\r\n" + SMUGGLE + b"\r\n", id="8bit-flag"),
    pytest.param(b"t1 RENAME Drafts Dr\xe9fts {20+}\r\n" + SMUGGLE + b"\r\n", id="8bit-atom"),
    pytest.param(b"t1 NOOP {20+}\r\n" + SMUGGLE + b"\r\n", id="noop-with-literal"),
]


@pytest.mark.parametrize("stream", REFUSED)
def test_commands_the_server_would_split_are_refused(
    stream: bytes, dovecot: DovecotServer, mail_user: User
) -> None:
    """Dovecot rejects these part way and runs the literal's data as a command
    (shown here, so a change on either side is noticed); the codec refuses them
    whole, so a relay never forwards them."""
    framer = Framer(Role.SERVER)
    framer.receive_data(stream)
    (frame,) = list(iter(framer.next_event, NEED_DATA))
    assert isinstance(frame, Frame)
    with pytest.raises(ParseError):
        _ = Command.parse(frame).args
    answered = [line.split(b" ", 2)[:2] for line in _send(dovecot, mail_user, stream)]
    assert [b"t9", b"OK"] in answered  # the server ran the smuggled command
