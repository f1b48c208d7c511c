"""Whole client sessions through the proxy, compared with the same sessions run
directly against Dovecot.

Each scenario is a blocking function that drives one client library (IMAPClient or
imaplib) through an :class:`~imap_endpoints.Endpoint` and returns what every
command gave back, parsed by the library. It runs once directly against Dovecot and
once through the proxy, on the same listener kind (implicit TLS, or STARTTLS on a
plaintext port); the transcripts must be equal item for item (Dovecot's command
timings aside), apart from what the proxy changes on purpose (CAPABILITY).

Reads use the shared corpus user (EXAMINE only); writes use two fresh users with
identical copies of the corpus, one per side, so UIDs, UIDVALIDITY and counts line
up. New mailboxes get a time-based UIDVALIDITY, so write scenarios only append,
copy and move into corpus mailboxes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
from collections.abc import Callable
from typing import Any

import pytest
import trio
from imap_endpoints import Endpoint, scrub

from imapproxy.testing import User

LISTENERS = ("implicit", "starttls")

#: Capabilities the proxy must never show after login (hop-by-hop ones it terminates).
HOP_BY_HOP_HIDDEN = {"STARTTLS", "LOGINDISABLED", "LOGIN-REFERRALS", "SASL-IR"}
#: Fixed internal date for appended messages (both sides must agree).
APPEND_TIME = dt.datetime(2024, 5, 17, 9, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))


#: Seconds one scenario may take (it moves about 25 MB for the write sessions).
SCENARIO_TIMEOUT = 60


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking client scenario in a thread while the proxy serves in trio."""
    with trio.fail_after(SCENARIO_TIMEOUT):
        return await trio.to_thread.run_sync(fn)


def message(subject: str, size: int, seed: str) -> bytes:
    """A deterministic RFC 5322 message of about ``size`` octets (CRLF lines)."""
    head = (
        f"From: Tester <tester@example.org>\r\n"
        f"To: Someone <someone@example.org>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{seed}@imapproxy.test>\r\n"
        f"Date: Fri, 17 May 2024 09:30:00 +0200\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    lines = []
    total = len(head)
    counter = 0
    while total < size:
        line = hashlib.sha256(f"{seed}-{counter}".encode()).hexdigest() + "\r\n"
        lines.append(line.encode())
        total += len(line)
        counter += 1
    return head + b"".join(lines)


BIG = message("Ten megabytes", 10 * 1024 * 1024, "big")
SMALL_1 = message("Multi one", 2000, "m1")
SMALL_2 = message("Multi two", 3000, "m2")
IDLE_MSG = message("While you were idling", 1500, "idle")


def compare(direct: dict[str, Any], proxied: dict[str, Any]) -> None:
    """Item by item, so a failure names the command that differs."""
    assert list(proxied) == list(direct)
    for key in direct:
        assert scrub(proxied[key]) == scrub(direct[key]), key


# -- reads: the shared corpus user ---------------------------------------------------------


def read_imapclient(endpoint: Endpoint, user: User) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with endpoint.imapclient() as c:
        out["login"] = c.login(user.name, user.password)
        out["capabilities"] = c.capabilities()
        out["namespace"] = c.namespace()
        out["list"] = c.list_folders()
        out["lsub"] = c.list_sub_folders()
        out["status"] = {
            name: c.folder_status(name, ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
            for flags, _, name in out["list"]
            if b"\\Noselect" not in flags
        }
        out["examine"] = c.select_folder("INBOX", readonly=True)
        out["fetch"] = c.fetch(
            c.search("ALL"),
            ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE"],
        )
        out["partials"] = c.fetch(
            [1, 13, 29, 34],
            [
                "BODY.PEEK[]<0.300>",
                "BODY.PEEK[1]<10.100>",
                "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
                "BODY.PEEK[TEXT]<100.50>",
            ],
        )
        out["fetch_1mb"] = c.fetch([31], ["BODY.PEEK[]", "RFC822.SIZE"])
        out["search_subject"] = c.search(["SUBJECT", "Übersicht"], charset="UTF-8")
        out["search_text"] = c.search(["TEXT", "Grüße"], charset="UTF-8")
        out["search_body"] = c.search(["BODY", "nächste"], charset="UTF-8")
        out["search_flags"] = c.search(["UNSEEN", "OR", "FLAGGED", "DELETED"])
        out["examine_umlaut"] = c.select_folder("Entwürfe", readonly=True)
        out["fetch_umlaut"] = c.fetch(c.search("ALL"), ["ENVELOPE", "BODYSTRUCTURE"])
        out["examine_japanese"] = c.select_folder("Shared/Projects/日本語", readonly=True)
        out["fetch_japanese"] = c.fetch(c.search("ALL"), ["ENVELOPE", "BODY.PEEK[]"])
        out["unselect"] = c.unselect_folder()
        out["noop"] = c.noop()
        out["logout"] = c.logout()
    return out


def read_imaplib(endpoint: Endpoint, user: User) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with endpoint.imaplib() as imap:
        out["login"] = imap.login(user.name, user.password)
        out["capability"] = imap.capability()
        out["list"] = imap.list()
        out["lsub"] = imap.lsub()
        out["status"] = [
            imap.status(mailbox, "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
            for mailbox in ('"INBOX"', '"Entw&APw-rfe"', '"Shared/Projects/&ZeVnLIqe-"', '"Sent"')
        ]
        out["examine"] = imap.select("INBOX", readonly=True)
        out["examine_untagged"] = {
            key: imap.response(key)
            for key in ("FLAGS", "EXISTS", "RECENT", "UIDVALIDITY", "UIDNEXT")
        }
        out["fetch"] = imap.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
        out["partials"] = imap.uid(
            "FETCH", "13,29,34", "(BODY.PEEK[]<0.300> BODY.PEEK[1]<10.100> BODY.PEEK[HEADER])"
        )
        out["fetch_1mb"] = imap.uid("FETCH", "31", "(BODY.PEEK[])")
        imap.literal = "Übersicht".encode()  # type: ignore[assignment]
        out["search_subject"] = imap.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT")
        imap.literal = "Grüße".encode()  # type: ignore[assignment]
        out["search_text"] = imap.search("UTF-8", "TEXT")
        out["search_flags"] = imap.search(None, "UNSEEN")
        out["examine_umlaut"] = imap.select('"Entw&APw-rfe"', readonly=True)
        out["fetch_umlaut"] = imap.fetch("1:*", "(ENVELOPE BODY.PEEK[TEXT])")
        out["noop"] = imap.noop()
        out["close"] = imap.close()
        out["logout"] = imap.logout()
    return out


def strip_code(text: bytes) -> bytes:
    """``text`` without a leading response code (``[CAPABILITY ...] ``)."""
    if text.startswith(b"["):
        return text[text.index(b"]") + 1 :].lstrip()
    return text


def check_capabilities(direct: list[str], proxied: list[str]) -> None:
    """The proxy relays the end-to-end capabilities and terminates the rest."""
    upper = {cap.upper() for cap in proxied}
    assert not upper & HOP_BY_HOP_HIDDEN
    assert not any(cap.startswith(("AUTH=", "COMPRESS")) for cap in upper)
    assert {"IMAP4REV1", "MOVE", "UIDPLUS", "IDLE", "MULTIAPPEND", "SPECIAL-USE"} <= upper
    assert upper - {"LITERAL+", "ID"} <= {cap.upper() for cap in direct}


@pytest.mark.parametrize("listener", LISTENERS)
async def test_read_session_imapclient(proxy, dovecot, shared_user, listener) -> None:
    direct = await in_thread(
        lambda: read_imapclient(Endpoint.direct(dovecot, listener), shared_user)
    )
    proxied = await in_thread(lambda: read_imapclient(Endpoint.via(proxy, listener), shared_user))
    check_capabilities(
        [c.decode() for c in direct.pop("capabilities")],
        [c.decode() for c in proxied.pop("capabilities")],
    )
    # The proxy always puts its capabilities in the OK of LOGIN; Dovecot, only when
    # the client has not asked for them yet.
    assert strip_code(direct.pop("login")) == strip_code(proxied.pop("login")) == b"Logged in"
    compare(direct, proxied)
    # The corpus, not only agreement: a sanity check that the scenario saw real mail.
    assert len(proxied["fetch"]) == dovecot.corpus.folder("INBOX").count
    assert proxied["search_subject"] == [13, 30]
    assert len(proxied["fetch_1mb"][31][b"BODY[]"]) == proxied["fetch_1mb"][31][b"RFC822.SIZE"]


@pytest.mark.parametrize("listener", LISTENERS)
async def test_read_session_imaplib(proxy, dovecot, shared_user, listener) -> None:
    direct = await in_thread(lambda: read_imaplib(Endpoint.direct(dovecot, listener), shared_user))
    proxied = await in_thread(lambda: read_imaplib(Endpoint.via(proxy, listener), shared_user))
    direct_caps = direct.pop("capability")[1][0].decode().split()
    proxied_caps = proxied.pop("capability")[1][0].decode().split()
    check_capabilities(direct_caps, proxied_caps)
    assert direct.pop("login")[0] == proxied.pop("login")[0] == "OK"
    compare(direct, proxied)
    assert proxied["search_subject"] == ("OK", [b"13 30"])
    assert proxied["logout"][0] == "BYE"


# -- writes: a fresh user per side ---------------------------------------------------------


def write_imapclient(endpoint: Endpoint, user: User) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with endpoint.imapclient() as c:
        c.login(user.name, user.password)
        out["create"] = c.create_folder("Projekt/Übersicht")
        out["list_created"] = c.list_folders("", "Projekt*")
        out["rename"] = c.rename_folder("Projekt/Übersicht", "Projekt/Ergebnis")
        out["status_renamed"] = c.folder_status("Projekt/Ergebnis", ["MESSAGES", "UIDNEXT"])
        out["delete"] = c.delete_folder("Projekt/Ergebnis")
        out["list_after_delete"] = c.list_folders("", "Projekt*")
        out["select"] = c.select_folder("INBOX")
        out["add_flags"] = c.add_flags([1, 2, 3], [b"\\Flagged", b"$Label1"])
        out["remove_flags"] = c.remove_flags([4], [b"\\Seen"])
        out["copy"] = c.copy([1, 2], "Archive")
        out["move"] = c.move([3], "Trash")
        out["delete_flag"] = c.add_flags([5, 6], [b"\\Deleted"])
        out["expunge"] = c.expunge()
        out["append_10mb"] = c.append("Archive", BIG, flags=[b"\\Seen"], msg_time=APPEND_TIME)
        out["multiappend"] = c.multiappend(
            "Archive",
            [
                {"msg": SMALL_1, "flags": [b"\\Flagged"], "date": APPEND_TIME},
                {"msg": SMALL_2, "date": APPEND_TIME},
            ],
        )
        # IDLE: another connection appends, this one hears about it.
        c.idle()
        with endpoint.imaplib() as other:
            other.login(user.name, user.password)
            out["other_append"] = other.append("INBOX", None, None, IDLE_MSG)
        heard: list[Any] = []
        while not any(item[1] == b"EXISTS" for item in heard):
            news = c.idle_check(timeout=10)
            assert news, "no IDLE response within 10 s"
            heard += news
        out["idle_exists"] = [item for item in heard if item[1] == b"EXISTS"]
        out["idle_done"] = c.idle_done()[0]
        out["status"] = {
            name: c.folder_status(name, ["MESSAGES", "UIDNEXT", "UNSEEN"])
            for name in ("INBOX", "Archive", "Trash")
        }
        out["examine_archive"] = c.select_folder("Archive", readonly=True)
        fetched = c.fetch(
            [9, 10, 11, 12, 13], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]"]
        )
        out["fetch_appended"] = {
            uid: {key: value for key, value in item.items() if key != b"BODY[]"}
            for uid, item in fetched.items()
        }
        out["bodies"] = {
            uid: hashlib.sha256(item[b"BODY[]"]).hexdigest() for uid, item in fetched.items()
        }
        out["logout"] = c.logout()
    return out


def write_imaplib(endpoint: Endpoint, user: User) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with endpoint.imaplib() as imap:
        imap.login(user.name, user.password)
        out["create"] = imap.create('"Projekt/&ANw-bersicht"')
        out["rename"] = imap.rename('"Projekt/&ANw-bersicht"', "Projekt/Ergebnis")
        out["list"] = imap.list('""', "Projekt*")
        out["delete"] = imap.delete("Projekt/Ergebnis")
        out["select"] = imap.select("INBOX")
        imap.untagged_responses.clear()
        out["store"] = imap.uid("STORE", "1:3", "+FLAGS", r"(\Flagged $Label1)")
        out["store_silent"] = imap.uid("STORE", "4", "-FLAGS.SILENT", r"(\Seen)")
        out["copy"] = imap.uid("COPY", "1:2", "Archive")
        out["move"] = imap.uid("MOVE", "3", "Trash")
        out["move_untagged"] = dict(imap.untagged_responses)
        imap.untagged_responses.clear()
        out["delete_flag"] = imap.store("5:6", "+FLAGS", r"(\Deleted)")
        out["expunge"] = imap.expunge()
        out["append_10mb"] = imap.append(
            "Archive", r"(\Seen)", imaplib.Time2Internaldate(APPEND_TIME), BIG
        )
        # MULTIAPPEND: the first message as a LITERAL+ inside the command line, the
        # second as imaplib's synchronizing literal (it waits for "+").
        imap.literal = SMALL_2  # type: ignore[assignment]  # bytes work (typeshed: str)
        out["multiappend"] = imap._simple_command(
            "APPEND", "Archive", rb"(\Flagged) {%d+}" % len(SMALL_1) + b"\r\n" + SMALL_1 + b" ()"
        )
        out["status"] = [
            imap.status(name, "(MESSAGES UIDNEXT UNSEEN)") for name in ("INBOX", "Archive", "Trash")
        ]
        out["examine_archive"] = imap.select("Archive", readonly=True)
        out["fetch_appended"] = imap.uid("FETCH", "9:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
        typ, data = imap.uid("FETCH", "11", "(BODY.PEEK[])")
        out["big_body"] = (typ, hashlib.sha256(data[0][1]).hexdigest())
        out["close"] = imap.close()
        out["logout"] = imap.logout()
    return out


@pytest.mark.parametrize("listener", LISTENERS)
async def test_write_session_imapclient(proxy, dovecot, twin_users, listener) -> None:
    direct_user, proxy_user = twin_users
    direct = await in_thread(
        lambda: write_imapclient(Endpoint.direct(dovecot, listener), direct_user)
    )
    proxied = await in_thread(lambda: write_imapclient(Endpoint.via(proxy, listener), proxy_user))
    compare(direct, proxied)
    assert b"[APPENDUID 1704067205 11]" in proxied["append_10mb"]
    assert proxied["multiappend"][1][0].startswith(b"[APPENDUID 1704067205 12:13]")
    assert proxied["idle_exists"] == [(47, b"EXISTS")]  # 50 - 1 moved - 3 expunged + 1
    assert proxied["bodies"][11] == hashlib.sha256(BIG).hexdigest()
    assert proxied["bodies"][12] == hashlib.sha256(SMALL_1).hexdigest()


@pytest.mark.parametrize("listener", LISTENERS)
async def test_write_session_imaplib(proxy, dovecot, twin_users, listener) -> None:
    direct_user, proxy_user = twin_users
    direct = await in_thread(lambda: write_imaplib(Endpoint.direct(dovecot, listener), direct_user))
    proxied = await in_thread(lambda: write_imaplib(Endpoint.via(proxy, listener), proxy_user))
    compare(direct, proxied)
    assert proxied["multiappend"][0] == "OK"
    assert proxied["big_body"] == ("OK", hashlib.sha256(BIG).hexdigest())
    assert proxied["expunge"] == ("OK", [b"37", b"6", b"5"])  # uid 38 was \\Deleted already
