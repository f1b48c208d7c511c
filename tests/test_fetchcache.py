"""FETCH items against the part cache (imapproxy.fetchcache): what is cacheable,
stored forms, cached responses and partials, and rebuilding streamed responses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapproxy.fetchcache import (
    CaptureBudget,
    StreamCapture,
    category,
    entry_item,
    item_bytes,
    plan,
    stored_form,
)
from imapproxy.rules import CachePolicy
from imapproxy.rules.model import CACHE_ITEMS
from imapproxy.wire import Command, Frame, Framer, Response, Role
from imapproxy.wire.framing import FramePart, LiteralChunk
from imapproxy.wire.reader import Literal
from imapproxy.wire.responses import FetchData
from imapproxy.wire.values import FetchItem, Section

ALL = CachePolicy(items=frozenset(CACHE_ITEMS), max_size=10**9)


def fetch(line: bytes) -> Command:
    return Command.parse(Frame(line))


def response(raw: bytes) -> Response:
    framer = Framer(Role.CLIENT, max_line=10**6, max_literal=10**6, inline_literal=10**6)
    framer.receive_data(raw)
    event = framer.next_event()
    assert isinstance(event, Frame), event
    return Response.parse(event)


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        (FetchItem("BODY", Section((1,))), "BODY"),
        (FetchItem("BODY", Section(), peek=True), "BODY"),
        (FetchItem("RFC822"), "BODY"),
        (FetchItem("RFC822.HEADER"), "BODY"),
        (FetchItem("BINARY", Section((2,))), "BINARY"),
        (FetchItem("BODY"), "BODYSTRUCTURE"),
        (FetchItem("BODYSTRUCTURE"), "BODYSTRUCTURE"),
        (FetchItem("ENVELOPE"), "ENVELOPE"),
        (FetchItem("RFC822.SIZE"), "RFC822.SIZE"),
        (FetchItem("INTERNALDATE"), "INTERNALDATE"),
        (FetchItem("FLAGS"), None),
        (FetchItem("MODSEQ"), None),
        (FetchItem("UID"), None),
        (FetchItem("BINARY.SIZE", Section((1,))), None),
        (FetchItem("PREVIEW", modifiers=(b"LAZY",)), None),
    ],
)
def test_category(item: FetchItem, kind: str | None) -> None:
    assert category(item) == kind


def test_entry_items_share_whole_sections() -> None:
    assert entry_item(FetchItem("RFC822")) == entry_item(FetchItem("BODY", Section())) == b"BODY[]"
    partial = FetchItem("BODY", Section((1,)), partial=(10, 20), peek=True)
    assert entry_item(partial) == b"BODY[1]"
    assert entry_item(FetchItem("RFC822.HEADER")) == b"BODY[HEADER]"


def test_plan() -> None:
    command = fetch(b"a UID FETCH 1:* (FLAGS BODY.PEEK[1]<0.10> ENVELOPE)\r\n")
    found = plan(command.args, uid=True, policy=ALL)  # type: ignore[arg-type]
    assert found is not None
    assert (found.uid, found.flags, found.sets_seen) == (True, True, False)
    assert [entry for _item, entry in found.cached] == [b"BODY[1]", b"ENVELOPE"]
    seen = plan(fetch(b"a FETCH 1 (BODY[TEXT])\r\n").args, uid=False, policy=ALL)  # type: ignore[arg-type]
    assert seen is not None
    assert seen.sets_seen
    assert not seen.uid
    # Not answerable from the cache: another item, a modifier, an item the rule
    # does not name, or nothing cacheable at all.
    for line, policy in (
        (b"a FETCH 1 (MODSEQ BODY[])\r\n", ALL),
        (b"a FETCH 1 (BODY[]) (CHANGEDSINCE 5)\r\n", ALL),
        (b"a FETCH 1 (BODY[] ENVELOPE)\r\n", CachePolicy(items=frozenset({"ENVELOPE"}))),
        (b"a FETCH 1 (UID FLAGS)\r\n", ALL),
        (b"a FETCH 1 FAST\r\n", CachePolicy(items=frozenset({"ENVELOPE"}))),
    ):
        assert plan(fetch(line).args, uid=False, policy=policy) is None, line  # type: ignore[arg-type]


def test_stored_forms_and_cached_responses() -> None:
    data = response(
        b'* 3 FETCH (UID 9 RFC822.SIZE 120 INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b'ENVELOPE (NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL) BODY[1] {5}\r\nhello '
        b"BODY[HEADER.FIELDS (FROM)] NIL BODY[]<0> {3}\r\nabc)\r\n"
    ).data
    assert isinstance(data, FetchData)
    forms = {item.key: stored_form(item, value) for item, value in data.items}
    assert forms[b"UID"] is None  # never stored
    assert forms[b"BODY[]<0>"] is None  # a partial response: not the whole section
    assert item_bytes(FetchItem("RFC822.SIZE"), forms[b"RFC822.SIZE"] or b"") == b"RFC822.SIZE 120"
    assert item_bytes(FetchItem("ENVELOPE"), forms[b"ENVELOPE"] or b"") == (
        b'ENVELOPE (NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL)'
    )
    body = forms[b"BODY[1]"] or b""
    assert item_bytes(FetchItem("BODY", Section((1,)), peek=True), body) == b"BODY[1] {5}\r\nhello"
    assert item_bytes(FetchItem("BODY", Section((1,)), (1, 3)), body) == b"BODY[1]<1> {3}\r\nell"
    assert item_bytes(FetchItem("BODY", Section((1,)), (9, 3)), body) == b"BODY[1]<9> {0}\r\n"
    fields = FetchItem("BODY", Section(text="HEADER.FIELDS", fields=(b"FROM",)))
    assert item_bytes(fields, forms[b"BODY[HEADER.FIELDS (FROM)]"] or b"") == (
        b"BODY[HEADER.FIELDS (FROM)] NIL"
    )
    binary = stored_form(FetchItem("BINARY", Section((2,))), b"a\x00b") or b""
    assert item_bytes(FetchItem("BINARY", Section((2,)), peek=True), binary) == (
        b"BINARY[2] ~{3}\r\na\x00b"
    )


@given(st.binary(max_size=64), st.integers(0, 80), st.integers(1, 80))
def test_partials_are_cut_like_a_server(data: bytes, offset: int, length: int) -> None:
    stored = stored_form(FetchItem("BODY", Section()), data) or b""
    out = item_bytes(FetchItem("BODY", Section(), (offset, length), peek=True), stored)
    expected = data[offset : offset + length]
    assert out == b"BODY[]<%d> {%d}\r\n" % (offset, len(expected)) + expected


def test_stream_capture_rebuilds_a_streamed_response() -> None:
    body = b"x" * 200_000
    raw = b"* 4 FETCH (UID 7 BODY[] {%d}\r\n" % len(body) + body + b" RFC822.SIZE 200000)\r\n"
    framer = Framer(Role.CLIENT, max_line=10**6, max_literal=10**6, inline_literal=1024)
    framer.receive_data(raw)
    capture = StreamCapture(10**6)
    rebuilt = None
    while True:
        event = framer.next_event()
        if not isinstance(event, FramePart | LiteralChunk):
            break
        if isinstance(event, LiteralChunk):
            event = LiteralChunk(memoryview(bytes(event.data)), event.remaining)
        got = capture.add(event)
        if got is not None:
            rebuilt = got
    assert rebuilt is not None
    assert isinstance(rebuilt.data, FetchData)
    value = rebuilt.data.get(b"BODY[]")
    assert isinstance(value, Literal)
    assert value.data == body
    small = StreamCapture(1000)
    framer = Framer(Role.CLIENT, max_line=10**6, max_literal=10**6, inline_literal=1024)
    framer.receive_data(raw)
    results = []
    while isinstance(event := framer.next_event(), FramePart | LiteralChunk):
        results.append(small.add(event))
    assert small.abandoned
    assert results == [None] * len(results)  # too large to be cached: nothing


def test_captures_share_the_proxys_budget() -> None:
    budget = CaptureBudget(150_000)
    raw = b"* 4 FETCH (UID 7 BODY[] {100000}\r\n" + b"x" * 100_000 + b")\r\n"
    first, second = StreamCapture(10**6, budget), StreamCapture(10**6, budget)
    events = []
    framer = Framer(Role.CLIENT, max_line=10**6, max_literal=10**6, inline_literal=1024)
    framer.receive_data(raw)
    while isinstance(event := framer.next_event(), FramePart | LiteralChunk):
        if isinstance(event, LiteralChunk):
            event = LiteralChunk(memoryview(bytes(event.data)), event.remaining)
        events.append(event)
    first.add(events[0])
    first.add(events[1])  # holds about 100 kB
    results = [second.add(event) for event in events]
    assert second.abandoned  # no room left: not collected
    assert results == [None] * len(results)
    assert [first.add(event) for event in events[2:]][-1] is not None  # completes
    assert budget.used == 0  # everything given back
