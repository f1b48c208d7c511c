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
from imapproxy.wire import NEED_DATA, Command, ContinuationRequest, Frame, Framer, Role

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


@pytest.mark.parametrize("stream", SHAPES)
def test_server_sees_the_commands_the_codec_sees(
    stream: bytes, dovecot: DovecotServer, mail_user: User
) -> None:
    tags = _codec_tags(stream)
    with socket.create_connection((dovecot.host, dovecot.imap_port), timeout=10) as sock:
        buf = bytearray()
        while b"\r\n" not in buf:
            buf += sock.recv(4096)
        buf[:] = buf.partition(b"\r\n")[2]
        login = f'L1 LOGIN "{mail_user.name}" "{mail_user.password}"\r\n'.encode()
        sock.sendall(login)
        assert _read_until_tagged(sock, buf, b"L1")[-1].startswith(b"L1 OK")
        sock.sendall(stream + b"Z9 NOOP\r\n")
        answered = [line.split(b" ", 1)[0] for line in _read_until_tagged(sock, buf, b"Z9")]
    assert answered == [*tags, b"Z9"]
