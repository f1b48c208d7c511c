"""Capabilities: hop-by-hop ones are decided per leg, end-to-end ones are relayed
when the proxy knows them; what a client sees before and after login.

The tables are the tests' own, written from the module's documentation, so a name
dropped from (or added to) the module's sets shows up here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapproxy.capabilities import (
    HOP_BY_HOP,
    RELAYABLE,
    ClientCapabilities,
    is_hop_by_hop,
    is_relayable,
)

#: Describe one connection: never passed between legs.
HOP = [
    "STARTTLS",
    "LOGINDISABLED",
    "SASL-IR",
    "LITERAL+",
    "LITERAL-",
    "COMPRESS=DEFLATE",
    "ID",
    "LOGIN-REFERRALS",
    "MAILBOX-REFERRALS",
    "UNAUTHENTICATE",
    "X-PROXY",
    # families, whatever the parameter
    "AUTH=PLAIN",
    "AUTH=LOGIN",
    "AUTH=XOAUTH2",
    "AUTH=SCRAM-SHA-256-PLUS",
    "AUTH=",
    "COMPRESS=ZSTD",
]

#: End-to-end extensions the proxy relays.
END_TO_END = [
    "IMAP4REV1",
    "IMAP4REV2",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "LIST-MYRIGHTS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "CONDSTORE",
    "QRESYNC",
    "ENABLE",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "WITHIN",
    "MULTIAPPEND",
    "CATENATE",
    "URL-PARTIAL",
    "BINARY",
    "UTF8=ACCEPT",
    "SNIPPET=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "OBJECTID",
    "NOTIFY",
    "METADATA",
    "METADATA-SERVER",
    "QUOTA",
    "QUOTASET",
    "ACL",
    "APPENDLIMIT",
    "REPLACE",
    "PARTIAL",
    "UIDONLY",
    "MESSAGELIMIT",
]

#: Families of end-to-end capabilities, relayable whatever their parameter.
END_TO_END_FAMILIES = [
    "THREAD=REFERENCES",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFS",
    "I18NLEVEL=1",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "RIGHTS=texk",
    "APPENDLIMIT=35651584",
    "MESSAGELIMIT=1000",
    "SAVELIMIT=1000",
]

#: Neither: the proxy does not know them, so they are not shown.
UNKNOWN = [
    "X-FOO",
    "XLIST",
    "X-GM-EXT-1",
    "XAPPLEPUSHSERVICE",
    "XYZZY",
    "NOTIFY-EXTRA",
    "SORTED",
    "THREAD",  # the family needs its "=algorithm"
    "QUOTA-X",
    "UTF8=ONLY",
    "SNIPPET=OTHER",
    "CONTEXT=OTHER",
    # Known, but they name command tags after completion (tag mapping cannot follow).
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "INPROGRESS",
    "IMAP4",
    "",
]


def variants(name: str) -> list[str]:
    return sorted({name, name.lower(), name.title(), name.upper()})


@pytest.mark.parametrize("name", HOP)
def test_hop_by_hop(name: str) -> None:
    for spelling in variants(name):
        assert is_hop_by_hop(spelling)
        assert not is_relayable(spelling)


@pytest.mark.parametrize("name", END_TO_END + END_TO_END_FAMILIES)
def test_relayable(name: str) -> None:
    for spelling in variants(name):
        assert is_relayable(spelling)
        assert not is_hop_by_hop(spelling)


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_is_neither(name: str) -> None:
    for spelling in variants(name):
        assert not is_relayable(spelling)
        assert not is_hop_by_hop(spelling)


def test_tables_cover_the_module_sets() -> None:
    assert set(HOP) >= HOP_BY_HOP
    assert set(END_TO_END) == RELAYABLE
    assert not HOP_BY_HOP & RELAYABLE


# -- before login ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "starttls_offered", "expected"),
    [
        (False, True, ("IMAP4rev1", "STARTTLS", "LOGINDISABLED", "LITERAL+", "ID")),
        (False, False, ("IMAP4rev1", "LOGINDISABLED", "LITERAL+", "ID")),
        (True, False, ("IMAP4rev1", "SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN", "LITERAL+", "ID")),
        (True, True, ("IMAP4rev1", "SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN", "LITERAL+", "ID")),
    ],
)
def test_pre_auth(tls: bool, starttls_offered: bool, expected: tuple[str, ...]) -> None:
    caps = ClientCapabilities().pre_auth(tls=tls, starttls_offered=starttls_offered)
    assert caps == expected
    if not tls:
        assert not any(cap.upper().startswith("AUTH=") for cap in caps)
        assert "SASL-IR" not in caps


def test_pre_auth_mechanisms_and_literal_minus() -> None:
    caps = ClientCapabilities(mechanisms=("PLAIN",), literal_plus=False)
    assert caps.pre_auth(tls=True, starttls_offered=False) == (
        "IMAP4rev1",
        "SASL-IR",
        "AUTH=PLAIN",
        "LITERAL-",
        "ID",
    )
    assert caps.pre_auth(tls=False, starttls_offered=True) == (
        "IMAP4rev1",
        "STARTTLS",
        "LOGINDISABLED",
        "LITERAL-",
        "ID",
    )


# -- after login -------------------------------------------------------------------


def names(text: str) -> list[str]:
    """Capability names as a CAPABILITY line lists them."""
    return text.split()


DOVECOT = names(
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE QUOTA ACL "
    "RIGHTS=texk AUTH=PLAIN XLIST X-GM-EXT-1"
)


def test_authenticated_dovecot() -> None:
    assert ClientCapabilities().authenticated(DOVECOT) == (
        *names(
            "IMAP4rev1 ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
            "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
            "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "
            "SEARCHRES WITHIN LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW "
            "STATUS=SIZE SAVEDATE NOTIFY SPECIAL-USE QUOTA ACL RIGHTS=texk"
        ),
        "LITERAL+",
        "ID",
    )


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        # IMAP4rev1 moves first, in the upstream's spelling; the rest keep their order
        (["IDLE", "imap4rev1", "Move"], ("imap4rev1", "IDLE", "Move")),
        (["IMAP4rev2", "IDLE", "IMAP4rev1"], ("IMAP4rev1", "IMAP4rev2", "IDLE")),
        # a server without IMAP4rev1 (IMAP4rev2 only): the proxy speaks rev1
        (["IMAP4rev2", "IDLE"], ("IMAP4rev1", "IMAP4rev2", "IDLE")),
        ([], ("IMAP4rev1",)),
        # hop-by-hop and unknown ones go; the proxy's own come last
        (
            ["LITERAL-", "ID", "STARTTLS", "AUTH=PLAIN", "X-FOO", "UIDPLUS"],
            ("IMAP4rev1", "UIDPLUS"),
        ),
        # no duplicates, whatever the spelling: the first one stays
        (["IMAP4rev1", "IDLE", "IDLE", "IMAP4rev1"], ("IMAP4rev1", "IDLE")),
        (["IMAP4rev1", "idle", "IDLE", "Idle"], ("IMAP4rev1", "idle")),
        (["IMAP4REV1", "imap4rev1", "MOVE"], ("IMAP4REV1", "MOVE")),
    ],
)
def test_authenticated(upstream: list[str], expected: tuple[str, ...]) -> None:
    assert ClientCapabilities().authenticated(upstream) == (*expected, "LITERAL+", "ID")
    assert ClientCapabilities(literal_plus=False).authenticated(iter(upstream)) == (
        *expected,
        "LITERAL-",
        "ID",
    )


_NAMES = st.sampled_from(HOP + END_TO_END + END_TO_END_FAMILIES + UNKNOWN[:-1])
_SPELLINGS: list[Callable[[str], str]] = [str.upper, str.lower, str.title, str]
_SPELLED = st.builds(lambda name, spell: spell(name), _NAMES, st.sampled_from(_SPELLINGS))
_CAPABILITY = _SPELLED | st.from_regex(r"[A-Za-z0-9=+\-.]{1,12}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(upstream=st.lists(_CAPABILITY, max_size=30))
def test_authenticated_relays_each_relayable_once_and_nothing_hop_by_hop(
    upstream: list[str],
) -> None:
    result = ClientCapabilities().authenticated(upstream)
    relayed, own = result[:-2], result[-2:]
    assert own == ("LITERAL+", "ID")
    assert relayed[0].upper() == "IMAP4REV1"
    assert not any(is_hop_by_hop(cap) for cap in relayed)
    assert all(is_relayable(cap) for cap in relayed)
    keys = [cap.upper() for cap in relayed]
    assert len(keys) == len(set(keys))
    wanted = {cap.upper() for cap in upstream if is_relayable(cap)} | {"IMAP4REV1"}
    assert set(keys) == wanted
    # Each is spelled as the upstream first spelled it, in the upstream's order.
    first: dict[str, str] = {}
    for cap in upstream:
        first.setdefault(cap.upper(), cap)
    in_order = [first[key] for key in dict.fromkeys(cap.upper() for cap in upstream)]
    expected = [cap for cap in in_order if cap.upper() in wanted and cap.upper() != "IMAP4REV1"]
    assert list(relayed[1:]) == expected
