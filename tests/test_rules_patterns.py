"""Mailbox canonicalisation and LIST-wildcard patterns (imapproxy.rules.patterns)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapproxy.rules.patterns import MailboxPattern, canonical, check_separator
from imapproxy.wire import Mailbox

# Names without wildcards; "/" separates levels.
LEVEL = st.text(st.characters(blacklist_characters="*%/", blacklist_categories=["Cs"]), min_size=1)
NAMES = st.lists(LEVEL, min_size=1, max_size=4).map("/".join)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("inbox", "INBOX"),
        ("InBoX", "INBOX"),
        ("inbox/Sub", "INBOX/Sub"),
        ("INBOX/", "INBOX"),
        ("Archive/", "Archive"),
        ("Archive//", "Archive"),
        ("inboxes", "inboxes"),
        ("Inbox.Sub", "Inbox.Sub"),
        ("/", "/"),
        ("\u0131nbox", "\u0131nbox"),  # dotless i upper-cases to I: not INBOX
    ],
)
def test_canonical(name, expected):
    assert canonical(name) == expected


def test_canonical_other_separator():
    assert canonical("inbox.Sub.", ".") == "INBOX.Sub"
    assert canonical("inbox/Sub", ".") == "inbox/Sub"


def test_canonical_of_decoded_wire_names():
    assert canonical(Mailbox(b"Entw&APw-rfe/").decode()) == "Entw\u00fcrfe"
    with pytest.raises(ValueError, match=r"non-canonical|printable ASCII"):
        Mailbox(b"&AEE-rchive").decode()  # "A" encoded: refused, cannot dodge "Archive"


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("Archive", "Archive", True),
        ("Archive", "Archive/2020", False),
        ("Archive/*", "Archive/2020/Q1", True),
        ("Archive/%", "Archive/2020", True),
        ("Archive/%", "Archive/2020/Q1", False),
        ("Archive/%", "Archive", False),
        ("*", "anything/at/all", True),
        ("%", "top", True),
        ("%", "top/child", False),
        ("inbox", "INBOX", True),
        ("INBOX/*", "inbox/Sub", True),
        ("inbox*", "INBOX/x", True),
        ("Arch*ve", "Arch/i/ve", True),
        ("Arch%ve", "Arch/ve", False),
        ("a.b", "axb", False),  # regex characters are literal
        ("Archive/", "Archive", True),
        ("Entw\u00fcrfe", "Entw\u00fcrfe", True),
    ],
)
def test_matches(pattern, name, matches):
    assert MailboxPattern.compile(pattern).matches(name) is matches


def test_several_patterns_one_regex():
    pattern = MailboxPattern.compile(["Junk", "Junk/*"])
    assert pattern.sources == ("Junk", "Junk/*")
    assert isinstance(pattern.regex, re.Pattern)
    assert pattern.matches("Junk")
    assert pattern.matches("Junk/old")
    assert not pattern.matches("Junkyard")
    assert str(pattern) == "'Junk', 'Junk/*'"


def test_other_separator():
    pattern = MailboxPattern.compile("Archive.%", ".")
    assert pattern.matches("Archive.2020")
    assert not pattern.matches("Archive.2020.Q1")
    assert pattern.matches("Archive.2020/Q1")  # "/" is an ordinary character here


@pytest.mark.parametrize("bad", ["", [], [""], ["ok", ""]])
def test_empty_patterns_refused(bad):
    with pytest.raises(ValueError, match=r"empty|at least one"):
        MailboxPattern.compile(bad)


@pytest.mark.parametrize("bad", ["", "//", "*", "%"])
def test_bad_separator(bad):
    with pytest.raises(ValueError, match="one character"):
        check_separator(bad)


@given(NAMES)
def test_literal_pattern_matches_exactly_its_canonical_name(name):
    pattern = MailboxPattern.compile(name)
    assert pattern.matches(name)
    assert pattern.matches(canonical(name))
    assert not pattern.matches(name + "/x")


@given(NAMES, NAMES)
def test_literal_pattern_matches_only_equal_names(a, b):
    assert MailboxPattern.compile(a).matches(b) is (canonical(a) == canonical(b))


@given(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1))
def test_star_matches_everything(name):
    assert MailboxPattern.compile("*").matches(name)


@given(LEVEL.filter(lambda s: s.upper() != "INBOX"), NAMES)
def test_percent_does_not_cross_the_separator(prefix, rest):
    pattern = MailboxPattern.compile(prefix + "/%")
    assert pattern.matches(f"{prefix}/{rest}") is ("/" not in rest)
    assert MailboxPattern.compile(prefix + "/*").matches(f"{prefix}/{rest}")


@given(NAMES)
def test_canonical_is_idempotent(name):
    assert canonical(canonical(name)) == canonical(name)
