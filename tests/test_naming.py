"""Mailbox names between the client's form and the upstream's (imapproxy.naming)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapproxy.naming import Listing, Names, Untranslatable
from imapproxy.rules import Rewrite
from imapproxy.wire import Command, Frame, Response
from imapproxy.wire.commands import (
    AclArgs,
    AppendArgs,
    CopyArgs,
    ListArgs,
    MetadataArgs,
    RenameArgs,
    SelectArgs,
    StatusArgs,
)
from imapproxy.wire.framing import LiteralSpan
from imapproxy.wire.values import Mailbox

LEGACY = Rewrite(
    mailboxes=(("Sent Items", "Sent"), ("Deleted Items", "Trash")),
    separators=("/", "."),
)
NAMES = Names(LEGACY)
MAP_ONLY = Names(Rewrite(mailboxes=(("Sent Items", "Sent"),)))


def mb(name: str) -> Mailbox:
    return Mailbox.from_str(name)


def command(raw: bytes) -> Command:
    literals: tuple[LiteralSpan, ...] = ()
    if raw.endswith(b"}\r\n"):
        start = raw.rindex(b"{")
        size = int(raw[start + 1 : -3].rstrip(b"+"))
        literals = (LiteralSpan(start, len(raw), size, streamed=True),)
    return Command.parse(Frame(raw, literals))


def response(raw: bytes) -> Response:
    return Response.parse(Frame(raw))


@pytest.mark.parametrize(
    ("client", "upstream"),
    [
        ("Sent Items", "Sent"),
        ("Sent Items/2024", "Sent.2024"),
        ("Sent Items2", "Sent Items2"),  # not a child: only whole levels map
        ("Archive/2024/Q1", "Archive.2024.Q1"),
        ("INBOX", "INBOX"),
        ("inbox/Sub", "INBOX.Sub"),
        ("Entw\u00fcrfe/Alt", "Entw\u00fcrfe.Alt"),
    ],
)
def test_names_both_ways(client: str, upstream: str) -> None:
    assert NAMES.up(mb(client)) == mb(upstream)
    assert NAMES.down(mb(upstream)) == mb(client if client != "inbox/Sub" else "INBOX/Sub")


def test_unchanged_names_keep_their_bytes() -> None:
    name = Mailbox(b"inbox")  # not re-spelled as INBOX when nothing changes
    assert MAP_ONLY.up(name) is name
    other = mb("Drafts")
    assert MAP_ONLY.up(other) is other
    assert MAP_ONLY.down(other) is other


def test_a_level_with_the_other_sides_separator_has_no_translation() -> None:
    with pytest.raises(Untranslatable):
        NAMES.up(mb("a.b"))
    assert NAMES.down(mb("weird/name")) is None  # the server's "/" inside a level


def test_shadowed_upstream_names_are_not_shown() -> None:
    # The server's own "Sent Items" would read as the client's "Sent Items", which
    # is the server's "Sent": the client never sees it.
    assert MAP_ONLY.down(mb("Sent Items")) is None
    assert MAP_ONLY.down(mb("Sent Items/x")) is None
    assert MAP_ONLY.down(mb("Sent")) == mb("Sent Items")


def test_a_renamed_servers_name_is_not_the_clients() -> None:
    # The server's "Trash" is the client's "Deleted Items": "Trash" from the
    # client would alias it.
    with pytest.raises(Untranslatable):
        NAMES.up(mb("Trash/x"))


def test_non_canonical_utf7_from_a_client_is_refused() -> None:
    with pytest.raises(Untranslatable):
        NAMES.up(Mailbox(b"&AGE-"))  # "a" encoded: not canonical


def test_utf8_names() -> None:
    names = Names(LEGACY, utf8=True)
    assert names.up(Mailbox("Entw\u00fcrfe/Alt".encode())) == Mailbox("Entw\u00fcrfe.Alt".encode())


@pytest.mark.parametrize(
    ("reference", "pattern", "upstream"),
    [
        ("", "*", b"*"),
        ("", "", b""),
        ("", "Sent Items/%", b"Sent.%"),
        ("", "Sent Items/20*", b"Sent.20*"),
        ("Sent Items/", "%", b"Sent.%"),
        ("", "Archive/%", b"Archive.%"),
        ("", "Sent*", b"*"),  # could match "Sent Items": everything, filtered
        ("", "%", b"*"),
        ("", "Deleted Items", b"Trash"),
        ("", "INBOX", b"INBOX"),
    ],
)
def test_list_patterns(reference: str, pattern: str, upstream: bytes) -> None:
    assert NAMES.pattern_up(mb(reference), pattern.encode()) == upstream


def test_list_pattern_with_the_servers_separator() -> None:
    with pytest.raises(Untranslatable):
        NAMES.pattern_up(Mailbox(b""), b"Archive/a.%")


def test_command_args() -> None:
    assert NAMES.command_args(SelectArgs(mb("Sent Items"))) == SelectArgs(mb("Sent"))
    assert MAP_ONLY.command_args(SelectArgs(mb("Drafts"))) is None  # unchanged
    assert NAMES.command_args(RenameArgs(mb("Sent Items/a"), mb("Drafts/b"))) == RenameArgs(
        mb("Sent.a"), mb("Drafts.b")
    )
    assert NAMES.command_args(StatusArgs(mb("Deleted Items"), ("MESSAGES",))) == StatusArgs(
        mb("Trash"), ("MESSAGES",)
    )
    copy = NAMES.command_args(command(b'a COPY 1:3 "Deleted Items"\r\n').args)
    assert isinstance(copy, CopyArgs)
    assert copy.mailbox == mb("Trash")
    listed = NAMES.command_args(ListArgs(mb("Sent Items/"), (b"%", b"x")))
    assert listed == ListArgs(Mailbox(b""), (b"Sent.%", b"Sent.x"))
    assert NAMES.command_args(ListArgs(Mailbox(b""), (b"",))) is None


def test_listing_filters_by_the_clients_patterns() -> None:
    listing = NAMES.listing(ListArgs(Mailbox(b""), (b"Sent*",)))
    assert isinstance(listing, Listing)
    assert listing.matches("Sent Items")
    assert not listing.matches("Drafts")
    assert NAMES.listing(ListArgs(Mailbox(b""), (b"",))) is None


def test_append_head() -> None:
    cmd = command(b'A1 APPEND "Sent Items" (\\Seen) {5}\r\n')
    assert isinstance(cmd.args, AppendArgs)
    end, head = Names.append_head(cmd, mb("Sent")) or (0, b"")
    assert head == b"A1 APPEND Sent"
    assert cmd.frame.raw[end:] == b" (\\Seen) {5}\r\n"
    literal_name = Command.parse(Frame(b"A2 APPEND {4}\r\nSent {5}\r\n", (LiteralSpan(10, 15, 4),)))
    assert Names.append_head(literal_name, mb("x")) == (19, b"A2 APPEND x")


def test_list_and_status_responses() -> None:
    line = b'* LIST (\\HasChildren) "." Sent\r\n'
    assert NAMES.response(response(line)) == b'* LIST (\\HasChildren) "/" "Sent Items"\r\n'
    child = response(b'* LIST () "." Sent.2024\r\n')
    assert NAMES.response(child) == b'* LIST () "/" "Sent Items/2024"\r\n'
    listing = NAMES.listing(ListArgs(Mailbox(b""), (b"Deleted*",)))
    assert NAMES.response(child, listing) is None  # outside the client's pattern
    status = response(b"* STATUS Trash (MESSAGES 3)\r\n")
    assert NAMES.response(status) == b'* STATUS "Deleted Items" (MESSAGES 3)\r\n'
    same = b'* LIST () "/" Drafts\r\n'
    assert MAP_ONLY.response(response(same)) == same  # relayed as it came
    assert NAMES.response(response(b'* LIST () "." "a/b"\r\n')) is None


def test_oldname_and_namespace() -> None:
    renamed = response(b'* LIST () "." Sent ("OLDNAME" ("Trash.x"))\r\n')
    assert NAMES.response(renamed) == (
        b'* LIST () "/" "Sent Items" ("OLDNAME" ("Deleted Items/x"))\r\n'
    )
    namespace = response(b'* NAMESPACE (("INBOX." ".")) NIL (("Public." "."))\r\n')
    assert NAMES.response(namespace) == (b'* NAMESPACE (("INBOX/" "/")) NIL (("Public/" "/"))\r\n')


names_text = st.lists(
    st.text(
        st.characters(blacklist_characters="/.*%\r\n\x00", blacklist_categories=("Cs", "Cc")),
        min_size=1,
        max_size=8,
    ),
    min_size=1,
    max_size=4,
).map("/".join)


@given(names_text)
def test_round_trip(name: str) -> None:
    """Every client name the server can store comes back as the same name."""
    try:
        upstream = NAMES.up(mb(name))
    except Untranslatable:
        return
    back = NAMES.down(upstream)
    assert back is not None
    assert back.decode() == mb(name).decode() or name.upper().startswith("INBOX")
    assert NAMES.up(back) == upstream


FLAGS = Names(Rewrite(flags=(("$Junk", "Junk"), ("$Label1", "Important"))))


def test_flags_in_commands() -> None:
    store = FLAGS.command_args(command(b"a UID STORE 1:3 +FLAGS.SILENT (\\Seen $junk)\r\n").args)
    assert store is not None
    assert store.flags == (b"\\Seen", b"Junk")  # type: ignore[union-attr]
    search = FLAGS.command_args(command(b"a SEARCH OR KEYWORD $Junk NOT UNKEYWORD x\r\n").args)
    assert search is not None
    rebuilt = [k.args for k in search.key.walk() if k.name == "KEYWORD"]  # type: ignore[union-attr]
    assert rebuilt == [(b"Junk",)]
    assert FLAGS.command_args(command(b"a STORE 1 +FLAGS (\\Seen)\r\n").args) is None
    head = b'A1 APPEND "x (y)" ($Junk \\Seen) "17-May-2024 09:30:00 +0200" {5}\r\n'
    assert FLAGS.command_flags(head) == (
        b'A1 APPEND "x (y)" (Junk \\Seen) "17-May-2024 09:30:00 +0200" {5}\r\n'
    )


def test_keywords_in_unparsed_searches() -> None:
    assert FLAGS.unmapped_keywords(b"a SORT (DATE) UTF-8 OR KEYWORD $junk UNSEEN\r\n")
    assert FLAGS.unmapped_keywords(b"a UID THREAD REFS UTF-8 unkeyword $Label1\r\n")
    assert not FLAGS.unmapped_keywords(b"a SORT (DATE) UTF-8 KEYWORD other\r\n")
    assert not NAMES.unmapped_keywords(b"a SORT (DATE) UTF-8 KEYWORD $Junk\r\n")


def test_flags_in_responses() -> None:
    assert FLAGS.response_flags(b"* FLAGS (\\Seen Junk Important)\r\n") == (
        b"* FLAGS (\\Seen $Junk $Label1)\r\n"
    )
    assert FLAGS.response_flags(b"* OK [PERMANENTFLAGS (Junk \\*)] Ok\r\n") == (
        b"* OK [PERMANENTFLAGS ($Junk \\*)] Ok\r\n"
    )
    fetch = (
        b'* 3 FETCH (UID 9 ENVELOPE (NIL "FLAGS (Junk)" NIL) BODY[] {17}\r\n'
        b"FLAGS (Junk) body FLAGS (Junk))\r\n"
    )
    assert FLAGS.response_flags(fetch) == fetch.replace(b"9 ENV", b"9 ENV").replace(
        b"FLAGS (Junk))\r\n", b"FLAGS ($Junk))\r\n"
    )
    # A part of a response whose literal streams: its data is not here.
    part = b"* 4 FETCH (FLAGS (Junk) BODY[] {100000}\r\n"
    assert FLAGS.response_flags(part) == b"* 4 FETCH (FLAGS ($Junk) BODY[] {100000}\r\n"


def test_a_servers_flag_spelled_like_a_mapped_client_flag_is_not_shown() -> None:
    # The client's $Junk is the server's Junk: the server's own $Junk is hidden.
    assert FLAGS.response_flags(b"* 1 FETCH (FLAGS (\\Seen $Junk Junk))\r\n") == (
        b"* 1 FETCH (FLAGS (\\Seen $Junk))\r\n"
    )


def test_a_list_of_only_shadowed_names_lists_nothing() -> None:
    with pytest.raises(Untranslatable):
        NAMES.command_args(ListArgs(Mailbox(b""), (b"Trash",)))
    both = NAMES.command_args(ListArgs(Mailbox(b""), (b"Trash", b"Drafts")))
    assert both == ListArgs(Mailbox(b""), (b"Drafts",))


def test_acl_and_quota_names_are_translated() -> None:
    assert NAMES.command_args(AclArgs(mb("Sent Items/x"), (b"bob", b"lr"))) == AclArgs(
        mb("Sent.x"), (b"bob", b"lr")
    )
    acl = response(b'* ACL Sent.x bob lr "anyone" l\r\n')
    assert NAMES.response(acl) == b'* ACL "Sent Items/x" bob lr "anyone" l\r\n'
    rights = response(b"* MYRIGHTS Trash lrswipkxtea\r\n")
    assert NAMES.response(rights) == b'* MYRIGHTS "Deleted Items" lrswipkxtea\r\n'
    root = response(b'* QUOTAROOT INBOX ""\r\n')
    assert NAMES.response(root) == b'* QUOTAROOT INBOX ""\r\n'  # unchanged: as it came
    assert NAMES.response(response(b"* MYRIGHTS a/b lr\r\n")) is None  # no client name


def test_metadata_names_are_translated() -> None:
    args = MetadataArgs(mb("Sent Items"), (), (b"/private/comment",))
    assert NAMES.command_args(args) == MetadataArgs(mb("Sent"), (), (b"/private/comment",))
    server = MetadataArgs(Mailbox(b""), (), (b"/shared/admin",))
    assert NAMES.command_args(server) in (None, server)  # the server's own: unchanged
    meta = response(b'* METADATA Sent.2024 (/private/comment "x")\r\n')
    assert NAMES.response(meta) == b'* METADATA "Sent Items/2024" (/private/comment "x")\r\n'
