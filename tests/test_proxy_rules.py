"""Rules enforced by the proxy, against Dovecot with a raw client.

What is wired so far: verdicts on commands (deny, readonly: write commands refused
and SELECT turned into EXAMINE), decided before anything goes upstream -- for
APPEND before the client gets its "+"; login policy; audit lines at the level a
rule asks for, naming the rules that matched.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog
import trio
from conftest import dovecot_commands, start_proxy
from imap_raw import RawImap

import imapproxy.logs
from imapproxy.testing import DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream

EXAMPLES = Path(__file__).parent.parent / "rules"


def rules_dir(tmp_path: Path, *names: str, extra: str = "") -> Path:
    directory = tmp_path / "rules.d"
    directory.mkdir()
    for name in names:
        shutil.copy(EXAMPLES / name, directory / name)
    if extra:
        (directory / "99-test.toml").write_text(extra)
    return directory


async def rules_proxy(nursery, dovecot, proxy_tls, tmp_path: Path, rules: dict[str, object]):
    """The proxy in front of Dovecot with ``[rules]`` set to ``rules``."""
    upstreams = [dovecot_upstream(dovecot)]
    return await start_proxy(nursery, tmp_path / "proxy", proxy_tls, upstreams, rules=rules)


@asynccontextmanager
async def rules_session(
    dovecot: DovecotServer, tls: ProxyTls, tmp_path: Path, rules: dict[str, object], user: User
) -> AsyncIterator[RawImap]:
    """A proxy with ``[rules]`` set to ``rules`` and a raw client logged in to it
    as ``user``; LOGOUT and shutdown at the end, everything within 30 s."""
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(nursery, dovecot, tls, tmp_path, rules)
        with trio.fail_after(30):
            client = await login(running.implicit_port, running.ssl_context(), user)
            yield client
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()


async def login(port: int, ctx, user: User) -> RawImap:
    client = await RawImap.connect("localhost", port, ssl_context=ctx)
    await client.read_line()
    reply = await client.command(b"a", f'LOGIN "{user.name}" "{user.password}"'.encode())
    assert reply[-1].startswith(b"a OK"), reply
    return client


@pytest.fixture
def rules_config(tmp_path: Path):
    def make(*names: str, extra: str = "") -> dict[str, object]:
        return {"dir": str(rules_dir(tmp_path, *names, extra=extra))}

    return make


async def archive_state(dovecot: DovecotServer, user: User) -> tuple[bytes, list[bytes]]:
    """Straight from Dovecot: the archive's message count and every message's flags."""
    status, _, flags = await dovecot_commands(
        dovecot, user, b"STATUS Archive (MESSAGES)", b"EXAMINE Archive", b"FETCH 1:* (FLAGS)"
    )
    return status[0], flags[:-1]


async def test_read_only_archive(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    with trio.fail_after(30):
        # The corpus's archive is all read: make two messages unseen first.
        await dovecot_commands(
            dovecot, mail_user, b"SELECT Archive", b"STORE 1:2 -FLAGS.SILENT (\\Seen)"
        )
        before = await archive_state(dovecot, mail_user)
    async with rules_session(
        dovecot, proxy_tls, tmp_path, rules_config("20-read-only-archive.toml"), mail_user
    ) as client:
        selected = await client.command(b"b", b"SELECT Archive")
        # SELECT became EXAMINE: the server says READ-ONLY.
        assert b"[READ-ONLY]" in selected[-1], selected
        stored = await client.command(b"c", b"STORE 1 +FLAGS (\\Flagged \\Seen)")
        assert stored[-1].startswith(b"c NO [NOPERM]")
        expunged = await client.command(b"d", b"EXPUNGE")
        assert expunged[-1].startswith(b"d NO [NOPERM]")
        moved = await client.command(b"d2", b"MOVE 1 INBOX")
        assert moved[-1].startswith(b"d2 NO [NOPERM]")
        # Reading every message whole (not PEEK) sets no \Seen: EXAMINE.
        read = await client.command(b"d3", b"FETCH 1:* BODY[]")
        assert read[-1].startswith(b"d3 OK")
        # APPEND into the archive: refused before the client gets "+".
        await client.send(b"e APPEND Archive {5}\r\n")
        assert (await client.read_line()).startswith(b"e NO [NOPERM]")
        # The mailbox name as a literal: its "+" is due, the message's is not.
        await client.send(b"e2 APPEND {7}\r\n")
        assert (await client.read_line()).startswith(b"+ ")
        await client.send(b"Archive {5}\r\n")
        assert (await client.read_line()).startswith(b"e2 NO [NOPERM]")
        # Copying out of the archive is a read; into it, a write.
        await client.command(b"f", b"SELECT INBOX")
        into = await client.command(b"g", b"COPY 1 Archive")
        assert into[-1].startswith(b"g NO [NOPERM]")
    with trio.fail_after(30):
        after = await archive_state(dovecot, mail_user)
    assert after == before  # nothing changed, no message gained \Seen
    assert any(b"\\Seen" not in line for line in before[1])  # there were unseen ones


async def test_user_names_meet_the_same_rules_in_any_case(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    extra = (
        f'[[rule]]\nname = "no trash"\nwhen.user = "{mail_user.name}"\n'
        'when.mailbox = "Trash"\ndeny = "not for you"\n'
    )
    async with trio.open_nursery() as nursery:
        rules = rules_config(extra=extra)
        running = await rules_proxy(nursery, dovecot, proxy_tls, tmp_path, rules)
        with trio.fail_after(30):
            for spelling in (mail_user.name, mail_user.name.upper()):
                shouted = dataclasses.replace(mail_user, name=spelling)
                client = await login(running.implicit_port, running.ssl_context(), shouted)
                denied = await client.command(b"b", b"SELECT Trash")
                assert denied[-1].startswith(b"b NO [NOPERM] not for you"), (spelling, denied)
                await client.command(b"z", b"LOGOUT")
                await client.aclose()
        running.proxy.shutdown()


async def test_shared_folders_and_audit_lines(
    dovecot: DovecotServer,
    mail_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    rules_config,
    monkeypatch,
) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(
            nursery,
            dovecot,
            proxy_tls,
            tmp_path,
            rules_config(
                "10-audit-everything.toml",
                "30-no-deleting-shared-folders.toml",
                extra='[[rule]]\nname = "no listing (trial)"\nmode = "shadow"\n'
                'when.command = "LIST"\ndeny = "not today"\n',
            ),
        )
        with structlog.testing.capture_logs() as logs, trio.fail_after(30):
            client = await login(running.implicit_port, running.ssl_context(), mail_user)
            deleted = await client.command(b"b", b"DELETE Shared/Projects")
            assert deleted[-1] == b"b NO [NOPERM] Shared folders are managed by IT\r\n"
            listed = await client.command(b"c", b'LIST "" "Shared/*"')
            assert any(b"Shared/Projects" in line for line in listed)  # still there
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()
    lines = {e["tag"]: e for e in logs if e.get("event") == "command"}
    assert lines["b"]["log_level"] == "warning"  # "audit destructive commands"
    assert lines["b"]["rules"][:1] == ["audit everything"]
    assert "shared folders are managed by IT" in lines["b"]["rules"]
    assert lines["b"]["status"] == "NO"
    assert lines["c"]["log_level"] == "info"
    assert lines["c"]["rules"] == ["audit everything"]  # the shadow rule never counts
    (shadow,) = [e for e in logs if e.get("event") == "shadow rule"]
    assert shadow["rule"] == "no listing (trial)"
    assert (shadow["tag"], shadow["would"], shadow["decisive"]) == ("c", "deny", True)


async def test_login_policy_by_network(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(
            nursery, dovecot, proxy_tls, tmp_path, rules_config("70-login-policy-by-network.toml")
        )
        with trio.fail_after(30):
            client = await RawImap.connect(
                "localhost", running.implicit_port, ssl_context=running.ssl_context()
            )
            await client.read_line()
            # 127.0.0.1 is neither the office nor the VPN: a staff account gets a
            # BYE, decided before the upstream is asked (no such user there).
            await client.send(b'a LOGIN "carol@STAFF.example.com" "whatever-1"\r\n')
            rest = await client.read_to_eof()
            assert rest == b"* BYE Staff accounts log in from the office or the VPN\r\n"
            await client.aclose()
            # Other users are not concerned by the staff rule.
            other = await login(running.implicit_port, running.ssl_context(), shared_user)
            await other.command(b"z", b"LOGOUT")
            await other.aclose()
        running.proxy.shutdown()


def test_check_validates_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imapproxy.__main__ import main

    directory = rules_dir(
        tmp_path,
        "20-read-only-archive.toml",
        extra='[[rule]]\nname = "bad"\nwhen.network = "10.0.0.1/8"\ndeny = true\n',
    )
    config = tmp_path / "imapproxy.toml"
    config.write_text(
        '[[listener]]\naddress = "127.0.0.1:1143"\ntls = "none"\n'
        '[[upstream]]\nname = "u"\naddress = "127.0.0.1:143"\ntls = "none"\n'
        f'[rules]\ndir = "{directory}"\n'
    )
    assert main(["check", "--config", str(config)]) == 2
    errors = capsys.readouterr().err
    assert "99-test.toml: rule 'bad' (#1): when.network" in errors
    (directory / "99-test.toml").unlink()
    assert main(["check", "--config", str(config)]) == 0
    assert "archive is read-only" in capsys.readouterr().out


async def test_reload_swaps_rules_for_the_next_command(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    settings = rules_config("30-no-deleting-shared-folders.toml")
    directory = Path(str(settings["dir"]))
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(nursery, dovecot, proxy_tls, tmp_path, settings)
        proxy = running.proxy
        with trio.fail_after(30):
            client = await login(running.implicit_port, running.ssl_context(), shared_user)
            status = b"STATUS INBOX (MESSAGES)"
            assert (await client.command(b"b", status))[-1].startswith(b"b OK")
            # New rules: STATUS refused, for the session already logged in too.
            (directory / "40-no-status.toml").write_text(
                '[[rule]]\nname = "no status"\nwhen.command = "STATUS"\ndeny = "Not now"\n'
            )
            assert proxy.reload()
            assert (await client.command(b"c", status))[-1] == b"c NO [NOPERM] Not now\r\n"
            # A broken file: the old rules stay.
            (directory / "50-broken.toml").write_text("[[rule]]\nname = 1\n")
            assert not proxy.reload()
            assert (await client.command(b"d", status))[-1] == b"d NO [NOPERM] Not now\r\n"
            assert proxy.config.source == tmp_path / "proxy" / "imapproxy.toml"
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        proxy.shutdown()


async def test_hidden_folders(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    async with rules_session(
        dovecot, proxy_tls, tmp_path, rules_config("40-hide-folders.toml"), mail_user
    ) as client:
        listed = await client.command(b"b", b'LIST "" "*"')
        names = [line.rsplit(b" ", 1)[-1].strip() for line in listed[:-1]]
        assert b"Junk" not in names
        assert b"INBOX" in names
        with_status = await client.command(b"c", b'LIST "" "*" RETURN (STATUS (MESSAGES))')
        assert not any(b"Junk" in line for line in with_status)
        assert any(line.startswith(b"* STATUS INBOX") for line in with_status)
        for tag, command in [
            (b"d", b"SELECT Junk"),
            (b"e", b"STATUS Junk (MESSAGES)"),
            (b"f", b"RENAME Archive/2024 Junk"),
            (b"g", b"DELETE Junk"),
        ]:
            reply = await client.command(tag, command)
            assert reply[-1] == tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n"
        await client.command(b"h", b"SELECT INBOX")
        copied = await client.command(b"i", b"COPY 1 Junk")
        assert copied[-1].startswith(b"i NO [NONEXISTENT]")


async def test_capabilities_id_and_greeting(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(
            nursery,
            dovecot,
            proxy_tls,
            tmp_path,
            rules_config("60-strip-capabilities.toml"),
        )
        with trio.fail_after(30):
            client = await RawImap.connect(
                "localhost", running.implicit_port, ssl_context=running.ssl_context()
            )
            assert (await client.read_line()).endswith(b"] Example Mail ready\r\n")
            login = f'LOGIN "{shared_user.name}" "{shared_user.password}"'.encode()
            reply = (await client.command(b"a", login))[-1]
            shown = await client.command(b"b", b"CAPABILITY")
            for caps in (reply, shown[0]):
                assert b" NOTIFY" not in caps
                assert b"THREAD=REFERENCES" not in caps
                assert b"THREAD=REFS" in caps  # not listed in the rule
                assert b" MOVE" in caps
            ident = await client.command(b"c", b"ID NIL")
            assert b'"name" "Example Mail"' in ident[0]
            assert b'"vendor" "Example Ltd"' in ident[0]
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()


async def test_commands_per_second(
    dovecot: DovecotServer, shared_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    rule = '[[rule]]\nname = "slow"\nlimit = { commands_per_second = 20 }\n'
    async with rules_session(
        dovecot, proxy_tls, tmp_path, rules_config(extra=rule), shared_user
    ) as client:
        started = trio.current_time()
        await client.send(b"".join(b"n%d NOOP\r\n" % i for i in range(30)))
        for i in range(30):
            await client.read_until_tagged(b"n%d" % i)
        # A burst of 20, then 10 more at 20 per second: at least half a second.
        assert trio.current_time() - started >= 0.45


async def test_pipelined_behind_select_is_judged_on_the_new_mailbox(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    with trio.fail_after(30):
        before = await archive_state(dovecot, mail_user)
    async with rules_session(
        dovecot, proxy_tls, tmp_path, rules_config("20-read-only-archive.toml"), mail_user
    ) as client:
        await client.command(b"b", b"SELECT INBOX")
        await client.send(b"c SELECT Archive\r\nd MOVE 1 INBOX\r\n")
        await client.read_until_tagged(b"c")
        moved = await client.read_until_tagged(b"d")
        assert moved[-1].startswith(b"d NO [NOPERM]"), moved
    with trio.fail_after(30):
        assert await archive_state(dovecot, mail_user) == before


async def test_unjudged_commands_and_catenate_with_mailbox_rules(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    async with rules_session(
        dovecot, proxy_tls, tmp_path, rules_config("40-hide-folders.toml"), mail_user
    ) as client:
        caps = (await client.command(b"b", b"CAPABILITY"))[0]
        assert b" CATENATE" not in caps
        assert b"URL-PARTIAL" not in caps
        catenated = await client.command(b"c", b'APPEND Drafts CATENATE (URL "/Junk/;UID=1")')
        assert catenated[-1] == b"c NO [CANNOT] Not available through this proxy\r\n"
        # ACL, quota and METADATA commands name their mailbox: judged like the others.
        for tag, command in (
            (b"d", b'SETMETADATA Junk (/private/comment "x")'),
            (b"e", b"GETACL Junk"),
            (b"f", b"GETQUOTAROOT Junk"),
        ):
            hidden = await client.command(tag, command)
            assert hidden[-1].startswith(tag + b" NO [NONEXISTENT]"), hidden


async def test_login_rule_on_the_upstream_and_audit_fields(
    dovecot: DovecotServer,
    shared_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    rules_config,
    monkeypatch,
) -> None:
    monkeypatch.setattr(imapproxy.logs, "_level", 0)
    rules = (
        '[[rule]]\nname = "closed"\nwhen.command = "LOGIN"\nwhen.upstream = "dovecot"\n'
        'when.user = "nobody*"\ndeny = "Closed for maintenance"\n'
    )
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(
            nursery,
            dovecot,
            proxy_tls,
            tmp_path,
            rules_config("10-audit-everything.toml", extra=rules),
        )
        with structlog.testing.capture_logs() as logs, trio.fail_after(30):
            client = await RawImap.connect(
                "localhost", running.implicit_port, ssl_context=running.ssl_context()
            )
            await client.read_line()
            refused = await client.command(b"a", b"LOGIN nobody1 whatever-password")
            assert refused[-1] == b"a NO [NOPERM] Closed for maintenance\r\n"
            await client.aclose()
            other = await login(running.implicit_port, running.ssl_context(), shared_user)
            await other.command(b"b", b"NOOP")
            await other.command(b"z", b"LOGOUT")
            await other.aclose()
        running.proxy.shutdown()
    (noop,) = [e for e in logs if e.get("event") == "command" and e.get("tag") == "b"]
    assert noop["policy"] == "compliance"  # the rule's log fields


async def test_rename_of_a_parent_is_judged_with_its_children(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    hide_child = '[[rule]]\nname = "hide 2024"\nrewrite.hide = "Archive/2024"\n'
    async with rules_session(
        dovecot,
        proxy_tls,
        tmp_path,
        rules_config("30-no-deleting-shared-folders.toml", extra=hide_child),
        mail_user,
    ) as client:
        # "Shared" itself matches no rule, but Shared/Projects moves with it.
        shared = await client.command(b"b", b"RENAME Shared Other")
        assert shared[-1] == b"b NO [NOPERM] Shared folders are managed by IT\r\n"
        # A hidden child would reappear under the new name.
        archive = await client.command(b"c", b"RENAME Archive Old")
        assert archive[-1] == b"c NO [NOPERM] This mailbox cannot be renamed\r\n"
        # Without such children a RENAME goes through.
        await client.command(b"d", b"CREATE Plain/Child")
        renamed = await client.command(b"e", b"RENAME Plain Renamed")
        assert renamed[-1].startswith(b"e OK"), renamed
        listed = await client.command(b"f", b'LIST "" "Shared*"')
        assert any(line.endswith(b"Shared/Projects\r\n") for line in listed)


async def test_trace_of_a_matching_session(
    dovecot: DovecotServer,
    shared_user: User,
    mail_user: User,
    proxy_tls: ProxyTls,
    tmp_path: Path,
    rules_config,
) -> None:
    rule = f'[[rule]]\nname = "trace one user"\nwhen.user = "{shared_user.name}"\ntrace = true\n'
    async with trio.open_nursery() as nursery:
        running = await rules_proxy(nursery, dovecot, proxy_tls, tmp_path, rules_config(extra=rule))
        with structlog.testing.capture_logs() as logs, trio.fail_after(30):
            for user in (shared_user, mail_user):
                client = await login(running.implicit_port, running.ssl_context(), user)
                await client.command(b"b", b"EXAMINE INBOX")
                await client.command(b"c", b'LOGIN again "a-secret-password-1"')
                await client.command(b"z", b"LOGOUT")
                await client.aclose()
        running.proxy.shutdown()
    trace = [(e["dir"], e["line"]) for e in logs if e.get("event") == "trace"]
    assert ("C", "b EXAMINE INBOX\r\n") in trace
    assert any(d == "S" and "EXISTS" in line for d, line in trace)
    assert ("C", "c LOGIN [redacted]") in trace
    assert not any("a-secret-password-1" in line for _, line in trace)
    assert not any(line.startswith("a LOGIN") for _, line in trace)  # before login
    # Only the matching user's session was traced: one EXAMINE line.
    assert sum(line.startswith("b EXAMINE") for _, line in trace) == 1


async def test_flag_mapping_alone(
    dovecot: DovecotServer, mail_user: User, proxy_tls: ProxyTls, tmp_path: Path, rules_config
) -> None:
    # A keyword renamed for every session (no mailbox renaming): STORE and SEARCH
    # use the server's, FETCH and FLAGS show the client's.
    extra = '[[rule]]\nname = "keywords"\nrewrite.flags = { "$Important" = "ImportantOld" }\n'
    async with trio.open_nursery() as nursery:
        rules = rules_config(extra=extra)
        running = await rules_proxy(nursery, dovecot, proxy_tls, tmp_path, rules)
        with trio.fail_after(30):
            client = await login(running.implicit_port, running.ssl_context(), mail_user)
            await client.command(b"b", b"SELECT INBOX")
            stored = await client.command(b"c", b"STORE 3 +FLAGS ($Important)")
            assert b"$Important" in stored[0], stored
            assert b"ImportantOld" not in stored[0], stored
            found = await client.command(b"d", b"SEARCH KEYWORD $Important")
            assert found[0].split()[2:] == [b"3"], found
            flags = await client.command(b"e", b"FETCH 3 (FLAGS)")
            assert b"$Important" in flags[0]
            await client.command(b"z", b"LOGOUT")
            await client.aclose()
        running.proxy.shutdown()
    with trio.fail_after(30):
        _, fetched = await dovecot_commands(
            dovecot, mail_user, b"EXAMINE INBOX", b"FETCH 3 (FLAGS)"
        )
    assert b"ImportantOld" in fetched[0], fetched
    assert b"$Important" not in fetched[0], fetched
