"""Every byte of a real IMAPClient session with Dovecot frames, parses and re-serializes.

A recording TCP relay (Trio) sits between IMAPClient (run in a worker thread) and
the Dovecot fixture's plaintext port. The session covers LIST, SELECT of every
folder, FETCH of BODYSTRUCTURE, ENVELOPE and BODY[] over the whole corpus, SEARCH,
STATUS, APPEND and IDLE (woken by an APPEND from a second connection). Afterwards
both recorded directions are framed, in the chunks they arrived in and again in
other splits, and:

* the bytes of all events put back together are the stream, exactly (relay);
* every frame parses, head and typed arguments or data;
* every frame rebuilt from its typed value parses to the same value, and the
  frames the proxy would synthesize (status lines, counts, FLAGS, SEARCH,
  CAPABILITY, small FETCH responses...) come out byte-identical to Dovecot's;
* the BODY[] literal data is each corpus message file with CRLF line ends.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest
import trio
from imapclient import IMAPClient

from imapproxy.testing import DovecotServer, User
from imapproxy.wire import (
    NEED_DATA,
    BadFrame,
    Command,
    ContinuationRequest,
    EndOfStream,
    Frame,
    FramePart,
    Framer,
    Literal,
    LiteralChunk,
    Response,
    Role,
    build_command,
    build_response,
)
from imapproxy.wire.commands import GenericArgs
from imapproxy.wire.responses import Condition, FetchData, GenericData, Kind

NEW_MAIL = (
    b"From: Robin <robin@example.net>\r\nTo: Pat <pat@example.org>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <idle-wakeup@example.net>\r\n"
    b"\r\nNew mail while idling.\r\n"
)


@dataclass
class Recording:
    to_server: list[bytes] = field(default_factory=list)
    to_client: list[bytes] = field(default_factory=list)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, record: list[bytes]) -> None:
    while data := await source.receive_some(65536):
        record.append(data)
        await sink.send_all(data)
    await sink.send_eof()


def _client_session(port: int, dovecot: DovecotServer, user: User) -> dict[str, object]:
    """The IMAPClient session through the relay (runs in a worker thread)."""
    seen: dict[str, object] = {}
    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30) as client:
        client.login(user.name, user.password)
        client.capabilities()
        folders = client.list_folders()
        seen["folders"] = [name for _flags, _delim, name in folders]
        client.list_sub_folders()
        client.namespace()
        client.id_({"name": "imapproxy-test", "version": "1"})
        for _flags, _delim, name in folders:
            if b"\\Noselect" in _flags:
                continue
            selected = client.select_folder(name, readonly=True)
            client.search(["UNSEEN"])
            uids = client.search("ALL")
            if selected[b"EXISTS"]:
                client.fetch(uids, ["UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"])
                client.fetch(uids, ["BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[]"])
                client.use_uid = False
                client.fetch(
                    [1], ["BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]", "BODY.PEEK[1]<0.100>"]
                )
                client.use_uid = True
            client.search(["OR", "FROM", "example", "SUBJECT", "report"])
            client.close_folder()
        client.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UNSEEN", "UIDVALIDITY"])
        client.append("Drafts", b"Subject: draft\r\n\r\nA draft.\r\n", flags=[b"\\Draft"])
        client.select_folder("INBOX")
        client.idle()
        with IMAPClient(dovecot.hostname, port=dovecot.imap_port, ssl=False, timeout=30) as other:
            other.login(user.name, user.password)
            other.append("INBOX", NEW_MAIL)
        seen["idle"] = client.idle_check(timeout=20)
        client.idle_done()
        client.search(["SINCE", date(2024, 1, 1)])
        client.logout()
    return seen


async def _record(dovecot: DovecotServer, user: User) -> Recording:
    record = Recording()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:

            async def relay(client_stream: trio.SocketStream) -> None:
                upstream = await trio.open_tcp_stream(dovecot.host, dovecot.imap_port)
                async with client_stream, upstream, trio.open_nursery() as pumps:
                    pumps.start_soon(_pump, client_stream, upstream, record.to_server)
                    pumps.start_soon(_pump, upstream, client_stream, record.to_client)

            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, relay, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            seen = await trio.to_thread.run_sync(_client_session, port, dovecot, user)
            nursery.cancel_scope.cancel()
    assert seen["idle"], "IDLE was not woken by the new message"
    return record


@pytest.fixture(scope="module")
def session_user(dovecot: DovecotServer) -> Iterator[User]:
    user = dovecot.add_user()
    yield user
    dovecot.remove_user(user)


@pytest.fixture(scope="module")
def recording(dovecot: DovecotServer, session_user: User) -> Recording:
    """One recorded session, shared by the tests of this module."""
    return trio.run(_record, dovecot, session_user)


def _splits(chunks: list[bytes], seed: int) -> Iterator[list[bytes]]:
    """The chunks as recorded, then the same stream cut at random points."""
    yield chunks
    stream = b"".join(chunks)
    rng = random.Random(seed)
    for max_size in (7, 4096, 200_000):
        cuts = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, max_size)
            cuts.append(stream[pos : pos + step])
            pos += step
        yield cuts


@dataclass
class Framed:
    events: list[object]
    raw: bytes  # every event's bytes, in order


def _frame(role: Role, chunks: list[bytes]) -> Framed:
    framer = Framer(role)
    events: list[object] = []
    out: list[bytes] = []
    for chunk in [*chunks, None]:
        if chunk is None:
            framer.receive_eof()
        else:
            framer.receive_data(chunk)
        while (event := framer.next_event()) is not NEED_DATA:
            if isinstance(event, EndOfStream):
                assert not event.partial
                break
            assert not isinstance(event, BadFrame), event
            if isinstance(event, ContinuationRequest):
                framer.accept_literal()
                continue
            if isinstance(event, LiteralChunk):
                out.append(bytes(event.data))
                if events and isinstance(events[-1], bytearray):
                    events[-1] += event.data
                else:
                    events.append(bytearray(event.data))
                continue
            assert isinstance(event, Frame | FramePart)
            out.append(event.raw)
            events.append(event)
            if role is Role.SERVER and isinstance(event, Frame) and event.raw != b"DONE\r\n":
                cmd = Command.parse(event)
                if cmd.name == "IDLE":
                    framer.expect_line()  # "DONE" is not a command
        else:
            continue
        break
    return Framed(events, b"".join(out))


def _whole_frames(framed: Framed) -> Iterator[tuple[Frame, list[bytes]]]:
    """Each complete frame (a skeleton for streamed ones) with its streamed data."""
    streamed: list[bytes] = []
    for event in framed.events:
        if isinstance(event, bytearray):
            streamed.append(bytes(event))
        elif isinstance(event, FramePart):
            if event.literal is None:
                yield event.frame, streamed
                streamed = []
        else:
            assert isinstance(event, Frame)
            yield event, []


# Responses the proxy synthesizes itself; these must come out as Dovecot writes them.
_CANONICAL = re.compile(
    rb"^(?:\* \d+ (?:EXISTS|RECENT|EXPUNGE)|\* FLAGS |\* SEARCH|\* CAPABILITY |\* OK \[|"
    rb"\* \d+ FETCH \((?:UID|FLAGS|RFC822\.SIZE|INTERNALDATE)[^{]*\)\r\n$)"
)


def test_commands_frame_parse_and_rebuild(recording: Recording) -> None:
    stream = b"".join(recording.to_server)
    results = []
    for chunks in _splits(recording.to_server, seed=1):
        framed = _frame(Role.SERVER, chunks)
        assert framed.raw == stream  # relay: byte for byte
        results.append([repr(e) for e in framed.events])
        names = set()
        for frame, _streamed in _whole_frames(framed):
            if frame.raw == b"DONE\r\n":
                continue
            cmd = Command.parse(frame)
            names.add(cmd.name)
            args = cmd.args
            if cmd.name not in ("ID",):
                assert not isinstance(args, GenericArgs), cmd
            rebuilt = Command.parse(build_command(cmd.tag, cmd.name, args))
            assert rebuilt.args == args, cmd
        assert {"LOGIN", "LIST", "LSUB", "NAMESPACE", "ID", "SELECT", "EXAMINE"} <= names
        assert {"FETCH", "UID FETCH", "UID SEARCH", "APPEND", "IDLE", "STATUS", "LOGOUT"} <= names
    assert all(r == results[0] for r in results), "events differ between splits"


def test_responses_frame_parse_and_rebuild(
    recording: Recording, dovecot: DovecotServer, session_user: User
) -> None:
    stream = b"".join(recording.to_client)
    bodies: list[bytes] = []
    for split, chunks in enumerate(_splits(recording.to_client, seed=2)):
        framed = _frame(Role.CLIENT, chunks)
        assert framed.raw == stream
        canonical = 0
        for frame, streamed in _whole_frames(framed):
            response = Response.parse(frame)
            data = response.data
            name = response.name
            if isinstance(data, GenericData):
                pytest.fail(f"response parsed only generically: {frame.raw[:80]!r}")
            if isinstance(data, FetchData):
                for item, value in data.items:
                    if item.name == "BODY" and item.section is not None and split == 0:
                        if streamed:
                            bodies.append(b"".join(streamed))
                        elif isinstance(value, Literal):
                            bodies.append(value.data)
            if response.kind is Kind.CONTINUATION:
                continue
            if streamed:
                continue  # the skeleton lacks the data: nothing to rebuild
            rebuilt = build_response(
                data,
                tag=response.tag,
                name=name
                if name in ("LSUB", "ENABLED", "SORT", "EXISTS", "RECENT", "EXPUNGE")
                else None,
            )
            assert Response.parse(rebuilt).data == data, frame.raw[:120]
            if _CANONICAL.match(frame.raw) and (not isinstance(data, Condition) or data.text):
                assert rebuilt.raw == frame.raw
                canonical += 1
        assert canonical > 100
    # The BODY[] data of every message is its file, with CRLF line ends.
    corpus_files = {
        m.read_bytes(session_user.maildir).replace(b"\n", b"\r\n") for m in dovecot.corpus.messages
    }
    fetched = {b for b in bodies if len(b) > 200}
    assert corpus_files <= fetched
