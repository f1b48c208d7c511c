"""Typed values (imapproxy.wire.values): modified UTF-7, Mailbox, SequenceSet,
Section/FetchItem keys, dates and Secret."""

from __future__ import annotations

import copy
import datetime as dt
import pickle

import pytest

from imapproxy.wire import Command, Frame, LiteralSpan, ParseError
from imapproxy.wire.commands import AuthenticateArgs, LoginArgs
from imapproxy.wire.values import (
    STAR,
    FetchItem,
    Mailbox,
    Secret,
    Section,
    SequenceSet,
    format_date,
    format_datetime,
    mutf7_decode,
    mutf7_encode,
    parse_date,
    parse_datetime,
)

# -- modified UTF-7 ------------------------------------------------------------------

VECTORS = [
    ("", b""),
    ("INBOX", b"INBOX"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
    ("&", b"&-"),
    ("A&B", b"A&-B"),
    ("&&", b"&-&-"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("é é", b"&AOk- &AOk-"),
    ("ééé", b"&AOkA6QDp-"),
    ("Ж", b"&BBY-"),
    ("😀", b"&2D3eAA-"),  # astral: a UTF-16 surrogate pair
    ("a😀&b", b"a&2D3eAA-&-b"),
    ("𝄞x", b"&2DTdHg-x"),
    ("\x00a\x7f", b"&AAA-a&AH8-"),  # controls and DEL are base64 too
    ("\t", b"&AAk-"),
    (" !%'~", b" !%'~"),
]


@pytest.mark.parametrize(("text", "wire"), VECTORS)
def test_mutf7_encode(text: str, wire: bytes) -> None:
    assert mutf7_encode(text) == wire


@pytest.mark.parametrize(("text", "wire"), VECTORS)
def test_mutf7_decode(text: str, wire: bytes) -> None:
    assert mutf7_decode(wire) == text


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"Entw\xc3\xbcrfe", "octet 0xc3 is not allowed"),  # raw 8-bit (UTF-8)
        (b"\xe9", "octet 0xe9 is not allowed"),
        (b"a\x00b", "octet 0x00 is not allowed"),
        (b"a\tb", "octet 0x09 is not allowed"),
        (b"\x7f", "octet 0x7f is not allowed"),
        (b"&", "unterminated or malformed"),  # bare &
        (b"a&b", "unterminated or malformed"),
        (b"&ZeVnLIqe", "unterminated or malformed"),  # unterminated run
        (b"&AOk", "unterminated or malformed"),
        (b"&AOk_-", "unterminated or malformed"),  # "_" is not base64
        (b"&AOk/-", "unterminated or malformed"),  # "/" is written ","
        (b"&AOk=-", "unterminated or malformed"),  # "=" padding
        (b"&AOk==-", "unterminated or malformed"),
        (b"&A-", "truncated base64"),  # bad base64 length
        (b"&AOkA6-", "truncated base64"),
        (b"&AOl-", "non-zero padding bits"),  # leftover bits not zero
        (b"&AOn-", "non-zero padding bits"),
        (b"&AGE-", "printable ASCII encoded"),  # "a" encoded
        (b"&ACY-", "printable ASCII encoded"),  # "&" encoded instead of "&-"
        (b"&ACA-", "printable ASCII encoded"),  # SP encoded
        (b"&AOkAYQ-", "printable ASCII encoded"),  # "éa" in one run
        (b"&AOk-&AOk-", "adjacent encoded runs"),  # should be one run "&AOkA6Q-"
        (b"x&AOk-&AOk-y", "adjacent encoded runs"),
        (b"&2D0-", "invalid UTF-16"),  # lone high surrogate
        (b"&3gA-", "invalid UTF-16"),  # lone low surrogate
        (b"&AOnYPQ-", "invalid UTF-16"),  # "é" then a lone high surrogate
        (b"&AA-", "odd number of octets"),
        (b"&AOkA-", "odd number of octets"),
        (b"&AO-", "odd number of octets"),
    ],
)
def test_mutf7_rejects_non_canonical(wire: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mutf7_decode(wire)


def test_mutf7_amp_dash_is_not_an_adjacent_run() -> None:
    # "&-" between two runs separates them legitimately: "é&é".
    assert mutf7_encode("é&é") == b"&AOk-&-&AOk-"
    assert mutf7_decode(b"&AOk-&-&AOk-") == "é&é"


def test_mutf7_every_bmp_block_round_trips() -> None:
    text = "".join(chr(c) for c in range(0x80, 0xD800, 97)) + "".join(
        chr(c) for c in range(0xE000, 0x110000, 4099)
    )
    wire = mutf7_encode(text)
    assert wire.isascii()
    assert mutf7_decode(wire) == text


# -- Mailbox ---------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [b"INBOX", b"inbox", b"Inbox", b"iNbOx"])
def test_inbox_is_case_insensitive(spelling: bytes) -> None:
    box = Mailbox(spelling)
    assert box.is_inbox
    assert box.key == b"INBOX"
    assert box == Mailbox(b"INBOX")
    assert hash(box) == hash(Mailbox(b"INBOX"))
    assert box.decode() == "INBOX"
    assert box.decode(utf8=True) == "INBOX"
    assert box.raw == spelling  # kept as received
    assert repr(box) == f"Mailbox({spelling!r})"


def test_other_names_compare_byte_for_byte() -> None:
    assert Mailbox(b"Sent") != Mailbox(b"sent")
    assert Mailbox(b"Inbox/Sub") != Mailbox(b"INBOX/Sub")
    assert Mailbox(b"Inbox/Sub").key == b"Inbox/Sub"
    assert Mailbox(b"INBOXX").is_inbox is False
    assert Mailbox(b"INBO").is_inbox is False
    assert {Mailbox(b"inbox"), Mailbox(b"INBOX"), Mailbox(b"Sent")} == {
        Mailbox(b"Inbox"),
        Mailbox(b"Sent"),
    }
    assert Mailbox(b"x").__eq__(b"x") is NotImplemented
    assert Mailbox(b"x") != b"x"


@pytest.mark.parametrize(
    ("name", "utf8", "raw"),
    [
        ("INBOX", False, b"INBOX"),
        ("inbox", False, b"INBOX"),
        ("InBoX", True, b"INBOX"),
        ("Entwürfe", False, b"Entw&APw-rfe"),
        ("Entwürfe", True, b"Entw\xc3\xbcrfe"),
        ("a&b", False, b"a&-b"),
        ("a&b", True, b"a&b"),
        ("台北", False, b"&U,BTFw-"),
        ("台北", True, "台北".encode()),
        ("Archive", False, b"Archive"),
    ],
)
def test_mailbox_from_str_and_decode(name: str, utf8: bool, raw: bytes) -> None:
    box = Mailbox.from_str(name, utf8=utf8)
    assert box.raw == raw
    expected = "INBOX" if name.upper() == "INBOX" else name
    assert box.decode(utf8=utf8) == expected


def test_mailbox_decode_errors() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        Mailbox(b"\xff\xfe").decode(utf8=True)
    with pytest.raises(ValueError, match="not allowed in modified UTF-7"):
        Mailbox(b"Entw\xc3\xbcrfe").decode()
    with pytest.raises(ValueError, match="adjacent"):
        Mailbox(b"&AOk-&AOk-").decode()
    # the same bytes read as modified UTF-7 and as UTF-8 give different names
    assert Mailbox(b"a&-b").decode() == "a&b"
    assert Mailbox(b"a&-b").decode(utf8=True) == "a&-b"


# -- SequenceSet -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "ranges", "saved"),
    [
        (b"1", ((1, 1),), False),
        (b"1:3", ((1, 3),), False),
        (b"*", ((STAR, STAR),), False),
        (b"5:*", ((5, STAR),), False),
        (b"*:5", ((STAR, 5),), False),
        (b"3:1", ((3, 1),), False),
        (b"$", (), True),
        (b"1,3:5,7:*", ((1, 1), (3, 5), (7, STAR)), False),
        (b"4294967295", ((4294967295, 4294967295),), False),
        (b"2,2,1", ((2, 2), (2, 2), (1, 1)), False),
    ],
)
def test_sequence_set_parse(wire: bytes, ranges: tuple[object, ...], saved: bool) -> None:
    value = SequenceSet.parse(wire)
    assert value == SequenceSet(ranges, saved)  # type: ignore[arg-type]
    assert bytes(value) == wire
    assert str(value) == wire.decode()


@pytest.mark.parametrize(
    "wire",
    [
        b"0",
        b"-1",
        b"1:",
        b":2",
        b"",
        b"1,,2",
        b",1",
        b"1,",
        b"$,1",
        b"1,$",
        b"$$",
        b"0:3",
        b"3:0",
        b"01",
        b"1:2:3",
        b"4294967296",
        b"1:4294967296",
        b"99999999999999999999",
        b" 1",
        b"1 ",
        b"a",
        b"**",
        b"1:**",
    ],
)
def test_sequence_set_rejects(wire: bytes) -> None:
    with pytest.raises(ValueError, match=r"invalid sequence set|exceeds 32 bits"):
        SequenceSet.parse(wire)


def test_sequence_set_empty_has_no_wire_form() -> None:
    with pytest.raises(ValueError, match="empty sequence set"):
        bytes(SequenceSet())


@pytest.mark.parametrize(
    ("wire", "largest", "bounds"),
    [
        (b"1", 10, [(1, 1)]),
        (b"3:1", 10, [(1, 3)]),
        (b"*", 10, [(10, 10)]),
        (b"5:*", 3, [(3, 5)]),  # "*" is 3, so the range is 3:5
        (b"*:5", 10, [(5, 10)]),
        (b"1,3:5,7:*", 9, [(1, 1), (3, 5), (7, 9)]),
        (b"1,2,3", 10, [(1, 3)]),  # adjacent numbers merge
        (b"7:9,1:3,2:8", 10, [(1, 9)]),
        (b"5,5,5", 10, [(5, 5)]),
        (b"10:12,1", 20, [(1, 1), (10, 12)]),
        (b"1:*", 0, [(0, 1)]),
    ],
)
def test_sequence_set_bounds(wire: bytes, largest: int, bounds: list[tuple[int, int]]) -> None:
    assert SequenceSet.parse(wire).bounds(largest) == bounds


def test_sequence_set_bounds_of_saved_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"'\$'"):
        SequenceSet.parse(b"$").bounds(5)


@pytest.mark.parametrize(
    ("wire", "largest", "normalised"),
    [
        (b"7:*,1,3:5,2,*", None, b"1:5,7:*,*"),
        (b"7:*,1,3:5,2,*", 4, b"1:7"),
        (b"5,3,4,1", None, b"1,3:5"),
        (b"5:*,5:*,2", None, b"2,5:*"),
        (b"*:5", None, b"*:5"),
        (b"9:7,1", None, b"1,7:9"),
        (b"9:7,1", 100, b"1,7:9"),
        (b"*", 12, b"12"),
        (b"$", None, b"$"),
    ],
)
def test_sequence_set_normalised(wire: bytes, largest: int | None, normalised: bytes) -> None:
    assert bytes(SequenceSet.parse(wire).normalised(largest)) == normalised


def test_sequence_set_contains_and_iter() -> None:
    value = SequenceSet.parse(b"2,4:6,9:*")
    assert [n for n in range(1, 13) if value.contains(n, largest=10)] == [2, 4, 5, 6, 9, 10]
    assert list(value.iter(10)) == [2, 4, 5, 6, 9, 10]
    # 9:* with * = 7 is 7:9, and nothing above 7 exists
    assert list(value.iter(7)) == [2, 4, 5, 6, 7]
    assert value.contains(7, largest=7)
    assert not value.contains(8, largest=7)
    assert not value.contains(3, largest=10)
    assert list(SequenceSet.parse(b"*").iter(3)) == [3]
    assert list(SequenceSet.parse(b"3:1,2").iter(3)) == [1, 2, 3]
    assert list(SequenceSet.parse(b"3:1,2").iter(0)) == []  # an empty mailbox


@pytest.mark.parametrize(
    ("numbers", "wire"),
    [
        ([1], b"1"),
        ([3, 1, 2], b"1:3"),
        ([5, 1, 2, 3, 9, 10], b"1:3,5,9:10"),
        ([7, 7, 7], b"7"),
        (range(1, 1001), b"1:1000"),
        ([4294967295], b"4294967295"),
    ],
)
def test_sequence_set_from_numbers(numbers: list[int], wire: bytes) -> None:
    value = SequenceSet.from_numbers(numbers)
    assert bytes(value) == wire
    assert SequenceSet.parse(wire) == value
    assert list(value.iter(0xFFFFFFFF)) == sorted(set(numbers))


def test_sequence_set_from_numbers_rejects_zero_and_empty_has_no_ranges() -> None:
    with pytest.raises(ValueError, match="32-bit numbers from 1"):
        SequenceSet.from_numbers([3, 0])
    with pytest.raises(ValueError, match="32-bit numbers from 1"):
        SequenceSet.from_numbers([-2])
    assert SequenceSet.from_numbers([]) == SequenceSet(())


def test_sequence_set_from_numbers_rejects_over_32_bits() -> None:
    with pytest.raises(ValueError, match="32-bit numbers from 1"):
        SequenceSet.from_numbers([1, 4294967296])


# -- Section and FetchItem ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "wire", "key"),
    [
        (Section(), b"", b""),
        (Section(text="HEADER"), b"HEADER", b"HEADER"),
        (Section(text="TEXT"), b"TEXT", b"TEXT"),
        (Section((1, 2)), b"1.2", b"1.2"),
        (Section((1,), "MIME"), b"1.MIME", b"1.MIME"),
        (Section((3,), "HEADER"), b"3.HEADER", b"3.HEADER"),
        (
            Section(text="HEADER.FIELDS", fields=(b"From", b"to", b"X-Spam")),
            b"HEADER.FIELDS (From to X-Spam)",
            b"HEADER.FIELDS (FROM TO X-SPAM)",
        ),
        (
            Section((2,), "HEADER.FIELDS.NOT", (b"received",)),
            b"2.HEADER.FIELDS.NOT (received)",
            b"2.HEADER.FIELDS.NOT (RECEIVED)",
        ),
    ],
)
def test_section_bytes_and_key(section: Section, wire: bytes, key: bytes) -> None:
    assert bytes(section) == wire
    assert section.key == key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "BODY"}, "unknown section text"),
        ({"text": "header"}, "unknown section text"),
        ({"text": "MIME"}, "MIME needs a part number"),
        ({"text": "HEADER.FIELDS"}, "header fields go with"),
        ({"text": "HEADER", "fields": (b"From",)}, "header fields go with"),
        ({"fields": (b"From",)}, "header fields go with"),
    ],
)
def test_section_invalid(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Section(**kwargs)  # type: ignore[arg-type]


HF = Section(text="HEADER.FIELDS", fields=(b"From", b"To"))


@pytest.mark.parametrize(
    ("item", "wire", "key"),
    [
        (FetchItem("UID"), b"UID", b"UID"),
        (FetchItem("FLAGS"), b"FLAGS", b"FLAGS"),
        (FetchItem("RFC822.SIZE"), b"RFC822.SIZE", b"RFC822.SIZE"),
        (FetchItem("BODY"), b"BODY", b"BODY"),
        (FetchItem("BODYSTRUCTURE"), b"BODYSTRUCTURE", b"BODYSTRUCTURE"),
        (FetchItem("BODY", Section()), b"BODY[]", b"BODY[]"),
        (FetchItem("BODY", Section(), peek=True), b"BODY.PEEK[]", b"BODY[]"),
        (
            FetchItem("BODY", HF, peek=True),
            b"BODY.PEEK[HEADER.FIELDS (From To)]",
            b"BODY[HEADER.FIELDS (FROM TO)]",
        ),
        (FetchItem("BODY", Section(text="TEXT"), (0, 28)), b"BODY[TEXT]<0.28>", b"BODY[TEXT]<0>"),
        (FetchItem("BODY", Section(text="TEXT"), (0, None)), b"BODY[TEXT]<0>", b"BODY[TEXT]<0>"),
        (
            FetchItem("BODY", Section((1,)), (100, 50), True),
            b"BODY.PEEK[1]<100.50>",
            b"BODY[1]<100>",
        ),
        (FetchItem("BINARY", Section((1, 2)), peek=True), b"BINARY.PEEK[1.2]", b"BINARY[1.2]"),
        (FetchItem("BINARY.SIZE", Section((1,))), b"BINARY.SIZE[1]", b"BINARY.SIZE[1]"),
        (FetchItem("RFC822"), b"RFC822", b"BODY[]"),
        (FetchItem("RFC822.HEADER"), b"RFC822.HEADER", b"BODY[HEADER]"),
        (FetchItem("RFC822.TEXT"), b"RFC822.TEXT", b"BODY[TEXT]"),
    ],
)
def test_fetch_item_bytes_and_key(item: FetchItem, wire: bytes, key: bytes) -> None:
    assert bytes(item) == wire
    assert item.key == key


def test_fetch_item_keys_match_quirks_b13() -> None:
    # What a client asked for and what a server echoed match on the key.
    requested = FetchItem(
        "BODY", Section(text="HEADER.FIELDS", fields=(b"from", b"To")), (0, 28), True
    )
    echoed = FetchItem("BODY", Section(text="HEADER.FIELDS", fields=(b"FROM", b"TO")), (0, None))
    assert requested.key == echoed.key == b"BODY[HEADER.FIELDS (FROM TO)]<0>"
    assert FetchItem("RFC822.HEADER").key == FetchItem("BODY", Section(text="HEADER")).key
    assert FetchItem("RFC822.TEXT").key == FetchItem("BODY", Section(text="TEXT"), peek=True).key
    assert FetchItem("RFC822").key == FetchItem("BODY", Section()).key
    assert (
        FetchItem("BODY", Section((1,)), (0, 10)).key
        != FetchItem("BODY", Section((1,)), (10, 10)).key
    )
    assert FetchItem("BODY", Section((1,))).key != FetchItem("BINARY", Section((1,))).key


@pytest.mark.parametrize(
    ("item", "sets_seen"),
    [
        (FetchItem("BODY", Section()), True),
        (FetchItem("BODY", Section(text="HEADER")), True),
        (FetchItem("BODY", Section(), peek=True), False),
        (FetchItem("BINARY", Section((1,))), True),
        (FetchItem("BINARY", Section((1,)), peek=True), False),
        (FetchItem("BINARY.SIZE", Section((1,))), False),
        (FetchItem("RFC822"), True),
        (FetchItem("RFC822.TEXT"), True),
        (FetchItem("RFC822.HEADER"), False),
        (FetchItem("RFC822.SIZE"), False),
        (FetchItem("BODY"), False),
        (FetchItem("BODYSTRUCTURE"), False),
        (FetchItem("ENVELOPE"), False),
        (FetchItem("FLAGS"), False),
        (FetchItem("UID"), False),
    ],
)
def test_fetch_item_sets_seen(item: FetchItem, sets_seen: bool) -> None:
    assert item.sets_seen is sets_seen


# -- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"1-Feb-2024", dt.date(2024, 2, 1)),
        (b"01-Feb-2024", dt.date(2024, 2, 1)),
        (b"29-feb-2024", dt.date(2024, 2, 29)),
        (b"31-DEC-1999", dt.date(1999, 12, 31)),
        (b"7-Jul-0001", dt.date(1, 7, 7)),
    ],
)
def test_parse_date(wire: bytes, value: dt.date) -> None:
    assert parse_date(wire) == value


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"1-Feb-24",
        b"1 Feb 2024",
        b"1-Fev-2024",
        b"001-Feb-2024",
        b"0-Feb-2024",
        b"30-Feb-2024",
        b"29-Feb-2023",
        b"32-Jan-2024",
        b"1-Feb-2024 ",
        b'"1-Feb-2024"',
        b"1-Feb-0000",
        b"\xff-Feb-2024",
    ],
)
def test_parse_date_invalid(wire: bytes) -> None:
    with pytest.raises(ValueError, match=r"date|day|year|month"):
        parse_date(wire)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (dt.date(2024, 2, 1), b"1-Feb-2024"),
        (dt.date(2024, 12, 31), b"31-Dec-2024"),
        (dt.date(5, 1, 9), b"9-Jan-0005"),
    ],
)
def test_format_date(value: dt.date, wire: bytes) -> None:
    assert format_date(value) == wire
    assert parse_date(wire) == value


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (
            b" 1-Feb-2024 10:00:00 +0100",
            dt.datetime(2024, 2, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
        (
            b"01-feb-2024 23:59:59 -0130",
            dt.datetime(2024, 2, 1, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(minutes=90))),
        ),
        (
            b"17-Jul-1996 02:44:25 -0700",  # RFC 3501 example
            dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
        ),
        (b"31-Dec-1999 00:00:00 +0000", dt.datetime(1999, 12, 31, tzinfo=dt.UTC)),
        (b"31-Dec-1999 00:00:00 -0000", dt.datetime(1999, 12, 31, tzinfo=dt.UTC)),
    ],
)
def test_parse_datetime(wire: bytes, value: dt.datetime) -> None:
    parsed = parse_datetime(wire)
    assert parsed == value
    assert parsed.utcoffset() == value.utcoffset()


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"1-Feb-2024 10:00:00 +0100",  # day must be two characters
        b"01-Feb-2024 10:00 +0100",
        b"01-Feb-2024 10:00:00",
        b"01-Feb-2024 10:00:00 0100",
        b"01-Feb-2024 10:00:00 +01:00",
        b"01-Feb-2024T10:00:00 +0100",
        b"01-Feb-2024 24:00:00 +0100",
        b"01-Feb-2024 10:60:00 +0100",
        b"01-Feb-2024 10:00:60 +0100",
        b"01-Feb-2024 10:00:00 +2400",
        b"30-Feb-2024 10:00:00 +0100",
        b"01-Fob-2024 10:00:00 +0100",
        b"01-Feb-2024  10:00:00 +0100",
        b'"01-Feb-2024 10:00:00 +0100"',
    ],
)
def test_parse_datetime_invalid(wire: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - messages come from datetime too
        parse_datetime(wire)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (
            dt.datetime(2024, 2, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            b"01-Feb-2024 10:00:00 +0100",
        ),
        (
            dt.datetime(
                2024, 11, 21, 9, 5, 7, tzinfo=dt.timezone(-dt.timedelta(hours=3, minutes=30))
            ),
            b"21-Nov-2024 09:05:07 -0330",
        ),
        (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), b"01-Jan-2000 00:00:00 +0000"),
        (dt.datetime(2000, 1, 1), b"01-Jan-2000 00:00:00 +0000"),  # naive: as UTC
        (
            dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=14))),
            b"30-Jun-2024 23:59:59 +1400",
        ),
    ],
)
def test_format_datetime(value: dt.datetime, wire: bytes) -> None:
    assert format_datetime(value) == wire
    parsed = parse_datetime(wire)
    assert parsed.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert format_datetime(parsed) == wire


def test_datetime_round_trip_over_a_year_of_offsets() -> None:
    start = dt.datetime(2023, 12, 31, 22, 17, 3)
    for i in range(0, 400, 7):
        offset = dt.timedelta(minutes=(i * 37) % (24 * 60) - 12 * 60)
        value = (start + dt.timedelta(days=i, seconds=i * 97)).replace(tzinfo=dt.timezone(offset))
        parsed = parse_datetime(format_datetime(value))
        assert parsed == value
        assert parsed.utcoffset() == offset


# -- Secret -------------------------------------------------------------------------


def test_secret_is_redacted() -> None:
    secret = Secret(b"hunter2")
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "Secret('***')"
    assert f"{secret}" == "Secret('***')"
    assert "hunter2" not in repr([secret, {"k": secret}])
    assert secret.reveal() == b"hunter2"
    assert len(secret) == 7


def test_secret_equality() -> None:
    assert Secret(b"a") == Secret(b"a")
    assert Secret(b"a") != Secret(b"b")
    assert Secret(b"") == Secret(b"")
    assert Secret(b"a") != Secret(b"ab")
    assert Secret(b"a") != b"a"
    assert Secret(b"a").__eq__(b"a") is NotImplemented


def test_secret_unhashable_and_unpicklable() -> None:
    secret = Secret(b"hunter2")
    with pytest.raises(TypeError, match="not hashable"):
        hash(secret)
    with pytest.raises(TypeError, match="not hashable"):
        {secret}  # noqa: B018
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(LoginArgs(b"bob", secret))
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(secret)


def test_secret_has_no_dict() -> None:
    secret = Secret(b"hunter2")
    assert not hasattr(secret, "__dict__")
    with pytest.raises(AttributeError):
        secret.extra = 1  # type: ignore[attr-defined]


def test_login_and_authenticate_repr_never_show_secret() -> None:
    login = LoginArgs(b"bob", Secret(b"hunter2"))
    assert repr(login) == "LoginArgs(userid=b'bob', password=Secret('***'))"
    assert str(login) == repr(login)
    auth = AuthenticateArgs("PLAIN", Secret(b"AGJvYgBodW50ZXIy"))
    assert repr(auth) == "AuthenticateArgs(mechanism='PLAIN', initial_response=Secret('***'))"
    assert (
        repr(AuthenticateArgs("PLAIN"))
        == "AuthenticateArgs(mechanism='PLAIN', initial_response=None)"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"a1 LOGIN bob hunter2\r\n",
        b'a1 LOGIN "bob" "hunter2"\r\n',
        b"a1 LOGIN bob {7+}\r\nhunter2\r\n",
        b"a1 AUTHENTICATE PLAIN AGJvYgBodW50ZXIy\r\n",
    ],
)
def test_parsed_credentials_are_secrets(raw: bytes) -> None:
    literals = (LiteralSpan(13, 19, 7, sync=False),) if b"{7+}" in raw else ()
    command = Command.parse(Frame(raw, literals))
    args = command.args
    assert "hunter2" not in repr(args)
    assert "AGJvYgBodW50ZXIy" not in repr(args)
    assert "hunter2" not in repr(command)
    if isinstance(args, LoginArgs):
        assert args.password == Secret(b"hunter2")
    else:
        assert isinstance(args, AuthenticateArgs)
        assert args.initial_response == Secret(b"AGJvYgBodW50ZXIy")


@pytest.mark.parametrize(
    "raw",
    [b'a1 LOGIN bob "hunter2\r\n', b"a1 LOGIN bob (hunter2)\r\n"],
)
def test_login_parse_error_does_not_quote_password(raw: bytes) -> None:
    command = Command.parse(Frame(raw))
    with pytest.raises(ParseError) as info:
        _ = command.args
    assert "hunter2" not in str(info.value)
    assert b"hunter2" not in info.value.reply.to_bytes()
