"""The real-Dovecot harness and the corpus, checked with stdlib imaplib and IMAPClient.

Sync tests (no trio): every client gets ``timeout=TIMEOUT`` so a hung server fails the
test instead of hanging it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import os
import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC
from pathlib import Path

import pytest
import trio
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from imapproxy.testing import (
    FOLDERS,
    CorpusSummary,
    DovecotNotInstalled,
    DovecotServer,
    User,
    encode_mailbox_name,
    write_corpus,
)
from imapproxy.testing import dovecot as dovecot_module

TIMEOUT = 10.0


@contextmanager
def connect(server: DovecotServer, user: User, *, starttls: bool = False) -> Iterator[IMAPClient]:
    """A logged-in IMAPClient over implicit TLS (or STARTTLS on the plain port)."""
    ctx = server.client_ssl_context()
    if starttls:
        client = IMAPClient(server.hostname, server.imap_port, ssl=False, timeout=TIMEOUT)
        client.starttls(ctx)
    else:
        client = IMAPClient(
            server.hostname, server.imaps_port, ssl=True, ssl_context=ctx, timeout=TIMEOUT
        )
    with client:
        client.login(user.name, user.password)
        client.normalise_times = False
        yield client


def tree_digest(root: Path) -> str:
    """Hash of every path, file content and mtime under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


# -- connecting -------------------------------------------------------------------------


def test_login_over_implicit_tls_with_imaplib(dovecot: DovecotServer, shared_user: User) -> None:
    ctx = dovecot.client_ssl_context()
    with imaplib.IMAP4_SSL(
        dovecot.hostname, dovecot.imaps_port, ssl_context=ctx, timeout=TIMEOUT
    ) as imap:
        assert isinstance(imap.sock, ssl.SSLSocket)
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
        typ, _ = imap.login(shared_user.name, shared_user.password)
        assert typ == "OK"


def test_login_over_starttls_with_imaplib(dovecot: DovecotServer, shared_user: User) -> None:
    with imaplib.IMAP4(dovecot.hostname, dovecot.imap_port, timeout=TIMEOUT) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(ssl_context=dovecot.client_ssl_context())
        assert isinstance(imap.sock, ssl.SSLSocket)
        typ, _ = imap.login(shared_user.name, shared_user.password)
        assert typ == "OK"


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_login_with_imapclient(dovecot: DovecotServer, shared_user: User, starttls: bool) -> None:
    with connect(dovecot, shared_user, starttls=starttls) as client:
        assert b"IMAP4REV1" in client.capabilities()
        assert client.noop()[0].startswith(b"NOOP completed")


async def test_trio_client_shares_the_session_server(
    dovecot: DovecotServer, shared_user: User
) -> None:
    async def read_until(stream: trio.SSLStream[trio.SocketStream], marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = await stream.receive_some()
            assert chunk, f"EOF before {marker!r}: {data!r}"
            data += chunk
        return data

    with trio.fail_after(TIMEOUT):
        stream = await trio.open_ssl_over_tcp_stream(
            dovecot.hostname, dovecot.imaps_port, ssl_context=dovecot.client_ssl_context()
        )
        async with stream:
            assert (await read_until(stream, b"\r\n")).startswith(b"* OK")
            login = f"a LOGIN {shared_user.name} {shared_user.password}\r\n"
            await stream.send_all(login.encode())
            assert b"a OK" in await read_until(stream, b"a OK")


def test_certificate_is_verified_for_both_names(dovecot: DovecotServer) -> None:
    ctx = dovecot.client_ssl_context()
    for name in ("localhost", "127.0.0.1"):
        with imaplib.IMAP4_SSL(name, dovecot.imaps_port, ssl_context=ctx, timeout=TIMEOUT) as imap:
            assert imap.welcome.startswith(b"* OK")
    untrusting = ssl.create_default_context()  # system roots only: must reject the test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            dovecot.hostname, dovecot.imaps_port, ssl_context=untrusting, timeout=TIMEOUT
        )


def test_wrong_password_is_rejected(dovecot: DovecotServer, shared_user: User) -> None:
    ctx = dovecot.client_ssl_context()
    with (
        IMAPClient(
            dovecot.hostname, dovecot.imaps_port, ssl_context=ctx, timeout=TIMEOUT
        ) as client,
        pytest.raises(LoginError),
    ):
        client.login(shared_user.name, "not-the-password")


# -- the corpus as Dovecot serves it ----------------------------------------------------


def test_list_shows_corpus_folders_with_special_use(
    dovecot: DovecotServer, shared_user: User
) -> None:
    with connect(dovecot, shared_user) as client:
        listed = {name: set(flags) for flags, _delim, name in client.list_folders()}
        delimiter = client.list_folders()[0][1]
    assert delimiter == b"/"
    for spec in FOLDERS:
        assert spec.name in listed, f"{spec.name} missing from LIST: {sorted(listed)}"
        special = {f for f in listed[spec.name] if f not in (b"\\HasChildren", b"\\HasNoChildren")}
        expected = {spec.special_use.encode()} if spec.special_use else set()
        assert special == expected, spec.name
    # "Shared" has no directory of its own: a placeholder parent.
    assert listed["Shared"] == {b"\\Noselect", b"\\HasChildren"}
    assert set(listed) == {f.name for f in FOLDERS} | {"Shared"}


def test_status_matches_corpus_summary(dovecot: DovecotServer, shared_user: User) -> None:
    corpus = dovecot.corpus
    with connect(dovecot, shared_user) as client:
        for folder in corpus.folders:
            status = client.folder_status(
                folder.name, [b"MESSAGES", b"UNSEEN", b"UIDNEXT", b"UIDVALIDITY"]
            )
            assert status == {
                b"MESSAGES": folder.count,
                b"UNSEEN": folder.unseen,
                b"UIDNEXT": folder.uidnext,
                b"UIDVALIDITY": folder.uidvalidity,
            }, folder.name
    assert 80 <= corpus.total_messages <= 150
    assert 10_000_000 <= corpus.total_bytes <= 20_000_000
    assert 40 <= corpus.folder("INBOX").count <= 60


def test_uids_flags_sizes_and_dates_match_corpus(dovecot: DovecotServer, shared_user: User) -> None:
    with connect(dovecot, shared_user) as client:
        for folder in dovecot.corpus.folders:
            client.select_folder(folder.name, readonly=True)
            by_uid = client.fetch(client.search(), ["FLAGS", "RFC822.SIZE", "INTERNALDATE"])
            assert sorted(by_uid) == [m.uid for m in folder.messages], folder.name
            for m in folder.messages:
                data = by_uid[m.uid]
                flags = {f.decode() for f in data[b"FLAGS"]} - {"\\Recent"}
                assert flags == set(m.flags), (folder.name, m.uid)
                assert data[b"RFC822.SIZE"] == m.rfc822_size
                assert data[b"INTERNALDATE"].astimezone(UTC) == m.internaldate


def test_large_attachments_fetch_whole_and_match_disk(
    dovecot: DovecotServer, shared_user: User
) -> None:
    corpus = dovecot.corpus
    big = corpus.of_kind("attachment-3mb")[0]
    medium = corpus.of_kind("attachment-1mb")[0]
    assert big.size >= 3_000_000
    assert 900_000 <= medium.size <= 1_200_000
    with connect(dovecot, shared_user) as client:
        for message in (big, medium):
            client.select_folder(message.folder, readonly=True)
            body = client.fetch([message.uid], ["BODY.PEEK[]"])[message.uid][b"BODY[]"]
            on_disk = message.read_bytes(shared_user.maildir)
            assert body == on_disk.replace(b"\n", b"\r\n")  # Maildir stores LF, IMAP sends CRLF
            assert len(body) == message.rfc822_size
    parsed = email.message_from_bytes(big.read_bytes(corpus.root), policy=email.policy.default)
    attachment = next(iter(parsed.iter_attachments()))
    assert len(attachment.get_content()) == 3 * 1024 * 1024


def test_bodystructure_of_forward_with_nested_attachment(
    dovecot: DovecotServer, shared_user: User
) -> None:
    forward = dovecot.corpus.of_kind("forward")[0]
    with connect(dovecot, shared_user) as client:
        client.select_folder(forward.folder, readonly=True)
        structure = client.fetch([forward.uid], ["BODYSTRUCTURE"])[forward.uid][b"BODYSTRUCTURE"]
    # multipart/mixed: [text/plain, message/rfc822 [multipart/mixed [text, application/pdf]]]
    parts = structure[0]
    assert [p[:2] for p in parts] == [(b"text", b"plain"), (b"message", b"rfc822")]
    encapsulated = parts[1][8]  # the body structure of the forwarded message
    assert (b"application", b"pdf") in list(_media_types(encapsulated))


def _media_types(node: object) -> Iterator[tuple[bytes, bytes]]:
    """Every (type, subtype) pair in a nested BODYSTRUCTURE."""
    if isinstance(node, (tuple, list)):
        if len(node) >= 2 and isinstance(node[0], bytes) and isinstance(node[1], bytes):
            yield (node[0].lower(), node[1].lower())
        for child in node:
            yield from _media_types(child)


def test_corpus_opens_without_dovecot_errors(dovecot: DovecotServer, mail_user: User) -> None:
    with connect(dovecot, mail_user) as client:
        for folder in dovecot.corpus.folders:
            client.select_folder(folder.name)
            client.fetch(client.search(), ["BODYSTRUCTURE", "FLAGS", "ENVELOPE"])
    tag = f"({mail_user.name})"
    problems = [
        line
        for line in dovecot.log_text().splitlines()
        if tag in line and any(level in line for level in (": Error: ", ": Warning: ", ": Panic: "))
    ]
    assert problems == []


# -- users ------------------------------------------------------------------------------


def test_mail_users_are_independent(dovecot: DovecotServer, mail_user: User) -> None:
    inbox = dovecot.corpus.folder("INBOX")
    first = inbox.messages[0]
    already_deleted = sum(1 for m in inbox.messages if "\\Deleted" in m.flags)
    other = dovecot.add_user()
    try:
        with connect(dovecot, mail_user) as client:
            client.select_folder("INBOX")
            client.add_flags([2], [b"\\Flagged"])
            client.delete_messages([first.uid])
            client.expunge()
            remaining = client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"]
            assert remaining == inbox.count - 1 - already_deleted
        with connect(dovecot, other) as client:
            client.select_folder("INBOX", readonly=True)
            assert client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] == inbox.count
            assert b"\\Flagged" not in client.get_flags([2])[2]
        # The template (and so every other user) still has the expunged message.
        assert (dovecot.corpus.root / first.path).exists()
        assert first.read_bytes(other.maildir) == first.read_bytes(dovecot.corpus.root)
    finally:
        dovecot.remove_user(other)


def test_add_user_mid_session_works_immediately(dovecot: DovecotServer, shared_user: User) -> None:
    # A login first, so Dovecot has just looked at its passwd data in this very second.
    with connect(dovecot, shared_user):
        pass
    user = dovecot.add_user(with_corpus=False)
    try:
        with connect(dovecot, user) as client:
            assert [name for _flags, _delim, name in client.list_folders()] == ["INBOX"]
            assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        dovecot.remove_user(user)
    with pytest.raises(ValueError, match="exists already"):
        dovecot.add_user(shared_user.name)
    with pytest.raises(ValueError, match="invalid user name"):
        dovecot.add_user("../escape")


def test_doveadm_who_counts_logged_in_connections(dovecot: DovecotServer, mail_user: User) -> None:
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(connect(dovecot, mail_user))
        mine = [entry for entry in dovecot.doveadm_who() if entry.username == mail_user.name]
    assert len(mine) == 3
    assert {(e.proto, e.ip) for e in mine} == {("imap", "127.0.0.1")}
    assert len({e.pid for e in mine}) == 3


# -- the corpus on its own --------------------------------------------------------------


def test_corpus_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    first = write_corpus(tmp_path / "a")
    second = write_corpus(tmp_path / "b")
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert _without_root(first) == _without_root(second)


def _without_root(summary: CorpusSummary) -> object:
    return [(f.name, f.uidvalidity, f.messages) for f in summary.folders]


def test_corpus_messages_parse_without_defects(dovecot: DovecotServer) -> None:
    corpus = dovecot.corpus
    kinds = {m.kind for m in corpus.messages}
    assert {"plain", "alternative", "attachment", "forward", "related", "thread"} <= kinds
    assert {"utf8-8bit", "utf8-qp", "latin1-8bit", "iso-2022-jp", "long-headers"} <= kinds
    for message in corpus.messages:
        raw = message.read_bytes(corpus.root)
        assert b"\r" not in raw, message.path
        assert max(len(line) for line in raw.split(b"\n")) <= 998, message.path
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        defects = [d for part in parsed.walk() for d in part.defects]
        assert defects == [], (message.path, defects)


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
    ],
)
def test_mailbox_names_in_modified_utf7(name: str, encoded: str) -> None:
    assert encode_mailbox_name(name) == encoded


# -- launcher options and errors --------------------------------------------------------


def test_imap_capability_imitates_an_older_server(dovecot: DovecotServer) -> None:
    with DovecotServer(imap_capability="IMAP4rev1 IDLE UIDPLUS") as old:
        with connect(old, old.shared_user) as client:
            assert set(client.capabilities()) == {b"IMAP4REV1", b"IDLE", b"UIDPLUS"}
        with connect(dovecot, dovecot.shared_user) as client:
            assert b"MOVE" in client.capabilities()
        workdir = old.workdir
    assert not workdir.exists()  # a temporary work directory is removed by stop()


def test_missing_dovecot_raises_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(dovecot_module, "_SBIN_DIRS", ())
    with pytest.raises(DovecotNotInstalled, match="apt-get install dovecot-imapd"):
        DovecotServer().start()


def test_workdir_under_unsearchable_parent_is_refused(
    dovecot: DovecotServer,  # requested only so that a missing Dovecot fails/skips as usual
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only the root mode hands files to other users")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(dovecot_module.DovecotError, match="not searchable"):
        DovecotServer(locked / "work").start()
