"""rules/50-rename-for-legacy-server.toml through the proxy, against a Dovecot whose
hierarchy separator is "." (a legacy server's face), with IMAPClient and a raw client.

The client sees "Sent Items", "Deleted Items" and "/"; the server keeps "Sent",
"Trash" and ".". Every check of what the server stored is made on a direct
connection to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import dovecot_commands, private_dovecot, proxy_login, start_proxy
from imap_raw import RawImap
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream

EXAMPLE = Path(__file__).parent.parent / "rules" / "50-rename-for-legacy-server.toml"

#: Rules judge the upstream's names: a rule written for "Sent.*" protects what the
#: client calls "Sent Items/...".
PROTECT = """
[[rule]]
name = "sent subfolders stay"
when.command = "DELETE"
when.mailbox = "Sent.*"
deny = "Sent subfolders are kept"
"""

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: to the legacy server\r\n"
    b"Message-ID: <legacy-1@imapproxy.test>\r\n\r\nHello.\r\n"
)


@pytest.fixture(scope="module")
def legacy() -> Iterator[DovecotServer]:
    """A Dovecot with "." as its hierarchy separator."""
    yield from private_dovecot(separator=".")


@pytest.fixture
def legacy_user(legacy: DovecotServer) -> Iterator[User]:
    user = legacy.add_user()
    try:
        yield user
    finally:
        legacy.remove_user(user)


async def legacy_proxy(nursery: trio.Nursery, legacy: DovecotServer, tls: ProxyTls, tmp: Path):
    rules = tmp / "rules.d"
    rules.mkdir()
    shutil.copy(EXAMPLE, rules / EXAMPLE.name)
    (rules / "90-protect.toml").write_text(PROTECT)
    upstreams = [dovecot_upstream(legacy, name="legacy")]
    return await start_proxy(
        nursery, tmp / "proxy", tls, upstreams, rules={"dir": str(rules), "separator": "."}
    )


def names_of(listing: list[tuple[Any, bytes, str]]) -> set[str]:
    return {name for _flags, _delimiter, name in listing}


async def test_renamed_folders_with_a_real_client(
    legacy: DovecotServer, legacy_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    user = legacy_user

    def session(port: int) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with IMAPClient("localhost", port=port, ssl_context=proxy_tls.client_context()) as c:
            c.login(user.name, user.password)
            listing = c.list_folders()
            seen["delimiters"] = {delimiter for _f, delimiter, _n in listing}
            seen["names"] = names_of(listing)
            seen["namespace"] = c.namespace()
            c.create_folder("Sent Items/2024")
            c.append("Sent Items", MESSAGE)
            seen["status"] = c.folder_status("Sent Items", ["MESSAGES"])
            seen["selected"] = c.select_folder("Sent Items")
            seen["fetched"] = c.search(["HEADER", "Message-ID", "<legacy-1@imapproxy.test>"])
            c.select_folder("INBOX")
            c.copy([1], "Deleted Items")
            c.add_flags([2], [b"$Junk"])  # the server's keyword is "Junk"
            seen["flags"] = c.get_flags([2])[2]
            seen["junk"] = c.search(["KEYWORD", "$Junk"])
            c.append("Sent Items", MESSAGE, flags=[b"$Junk"])
            c.rename_folder("Sent Items/2024", "Sent Items/Y2024")
            seen["sent_star"] = names_of(c.list_folders("", "Sent*"))
            seen["children"] = names_of(c.list_folders("Sent Items/", "%"))
            seen["subscribed"] = names_of(c.list_sub_folders("", "Deleted*"))
            for bad in ("a.b", "Sent Items/Y2024"):  # untranslatable; protected upstream
                try:
                    c.delete_folder(bad) if bad != "a.b" else c.create_folder(bad)
                except IMAPClientError as exc:
                    seen[bad] = str(exc)
            c.logout()
        return seen

    with trio.fail_after(30):
        before = await dovecot_commands(
            legacy, user, b"STATUS Trash (MESSAGES)", b"STATUS Sent (MESSAGES)"
        )
    async with trio.open_nursery() as nursery:
        running = await legacy_proxy(nursery, legacy, proxy_tls, tmp_path)
        with trio.fail_after(60):
            seen = await trio.to_thread.run_sync(session, running.implicit_port)
        running.proxy.shutdown()

    assert seen["delimiters"] == {b"/"}
    names = seen["names"]
    assert {"INBOX", "Sent Items", "Deleted Items", "Archive/2024", "Shared/Projects"} <= names
    assert not names & {"Sent", "Trash", "Archive.2024"}
    assert seen["namespace"].personal == (("", "/"),)
    assert seen["status"][b"MESSAGES"] == int(before[1][0].split(b"MESSAGES ")[1][:-3]) + 1
    assert seen["selected"][b"EXISTS"] == seen["status"][b"MESSAGES"]
    assert b"$Junk" in seen["flags"]
    assert b"Junk" not in seen["flags"]
    assert 2 in seen["junk"]
    assert len(seen["fetched"]) == 1
    assert seen["sent_star"] == {"Sent Items", "Sent Items/Y2024"}
    assert seen["children"] == {"Sent Items/Y2024"}
    assert "CANNOT" in seen["a.b"]
    assert "Sent subfolders are kept" in seen["Sent Items/Y2024"]

    with trio.fail_after(30):
        after = await dovecot_commands(
            legacy,
            user,
            b'LIST "" "Sent*"',
            b"STATUS Trash (MESSAGES)",
            b'LIST "" "a*"',
            b"EXAMINE INBOX",
            b"FETCH 2 (FLAGS)",
            b"EXAMINE Sent",
            b"SEARCH KEYWORD Junk",
        )
    assert any(line.endswith(b'"." Sent.Y2024\r\n') for line in after[0]), after[0]
    assert not any(b"Sent.2024" in line for line in after[0])
    trash_before = int(before[0][0].split(b"MESSAGES ")[1][:-3])
    assert after[1][0] == b"* STATUS Trash (MESSAGES %d)\r\n" % (trash_before + 1)
    assert after[2][:-1] == []  # "a.b" was never created
    assert b" Junk" in after[4][0]
    assert b"$Junk" not in after[4][0]
    assert after[6][0] != b"* SEARCH\r\n", after[6]  # the appended message has Junk upstream


async def test_listing_on_the_wire(
    legacy: DovecotServer, legacy_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    user = legacy_user
    with trio.fail_after(30):
        # The server's own "Sent Items" is shadowed: the client's "Sent Items" is
        # the server's "Sent". It must not show up twice, nor be reachable.
        await dovecot_commands(legacy, user, b'CREATE "Sent Items"')
    async with trio.open_nursery() as nursery:
        running = await legacy_proxy(nursery, legacy, proxy_tls, tmp_path)
        with trio.fail_after(30):
            client = await RawImap.connect(
                "localhost", running.implicit_port, ssl_context=running.ssl_context()
            )
            await client.read_line()
            await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
            listed = await client.command(b"b", b'LIST "" "*"')
            sent = [line for line in listed if b"Sent Items" in line]
            assert sent == [b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n'], listed
            assert b"OK" in listed[-1]
            shadowed = await client.command(b"c0", b'LIST "" "Trash"')
            assert shadowed == [b"c0 OK LIST completed\r\n"]  # the client has no Trash
            separator = await client.command(b"c", b'LIST "" ""')
            assert separator[0] == b'* LIST (\\Noselect) "/" ""\r\n'
            statuses = await client.command(
                b"d", b'LIST "" "Deleted Items" RETURN (STATUS (MESSAGES))'
            )
            assert statuses[0].endswith(b') "/" "Deleted Items"\r\n'), statuses
            assert statuses[1].startswith(b'* STATUS "Deleted Items" (MESSAGES ')
            selected = await client.command(b"e", b'SELECT "Deleted Items"')
            assert selected[-1].startswith(b"e OK [READ-WRITE]")
            sorted_ = await client.command(b"e2", b"SORT (DATE) UTF-8 KEYWORD $Junk")
            assert sorted_[-1].startswith(b"e2 NO [CANNOT]")  # not searched unmapped
            # APPEND with the mailbox name as a literal, the message streamed.
            await client.send(b"f APPEND {10}\r\n")
            assert (await client.read_line()).startswith(b"+ ")
            await client.send(b"Sent Items ($Junk) {%d}\r\n" % len(MESSAGE))
            assert (await client.read_line()).startswith(b"+ ")
            await client.send(MESSAGE + b"\r\n")
            appended = await client.read_until_tagged(b"f")
            assert appended[-1].startswith(b"f OK"), appended
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()
    with trio.fail_after(30):
        stored = await dovecot_commands(
            legacy, user, b"EXAMINE Sent", b"SEARCH KEYWORD Junk SUBJECT legacy"
        )
    assert stored[1][0] != b"* SEARCH\r\n", stored


async def test_lsub_percent_keeps_the_parents_of_subscribed_children(
    legacy: DovecotServer, legacy_user: User, proxy_tls: ProxyTls, tmp_path: Path
) -> None:
    # Renaming makes the proxy ask for "*" and filter: a subscribed child below the
    # "%" level must still show its unsubscribed parent, \Noselect (RFC 3501 6.3.9).
    user = legacy_user
    with trio.fail_after(30):
        await dovecot_commands(legacy, user, b"CREATE Projects.Alpha", b"SUBSCRIBE Projects.Alpha")
        direct = await dovecot_commands(legacy, user, b'LSUB "" "%"')
    assert b'* LSUB (\\Noselect) "." Projects\r\n' in direct[0]
    async with trio.open_nursery() as nursery:
        running = await legacy_proxy(nursery, legacy, proxy_tls, tmp_path)
        with trio.fail_after(30):
            client = await proxy_login(running, user)
            listed = await client.command(b"b", b'LSUB "" "%"')
            assert listed.count(b'* LSUB (\\Noselect) "/" Projects\r\n') == 1, listed
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()
