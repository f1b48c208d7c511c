"""The rules engine: loading, validation messages and decisions (imapproxy.rules)."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapproxy.config import ConfigError
from imapproxy.rules import (
    READONLY_DENY,
    Context,
    Deny,
    Limits,
    Rewrite,
    RuleError,
    RuleSet,
    compile_rule,
    load_rules,
)
from imapproxy.rules.model import Rule

EXAMPLES = Path(__file__).resolve().parent.parent / "rules"

ISSUE_RULES = """
[[rule]]
name = "audit everything"
log = "info"

[[rule]]
name = "archive is read-only"
when.mailbox = ["Archive", "Archive/*"]
readonly = true

[[rule]]
name = "shared folders are managed by IT"
when.command = ["DELETE", "RENAME"]
when.mailbox = "Shared/*"
deny = "Shared folders are managed by IT"

[[rule]]
name = "legacy folder names"
rewrite.mailbox = { "Sent Items" = "Sent" }   # client's name = upstream's name

[[rule]]
name = "hide server-side junk"
rewrite.hide = ["Junk", "Junk/*"]
"""


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        if isinstance(text, bytes):
            (directory / name).write_bytes(text)
        else:
            (directory / name).write_text(textwrap.dedent(text))
    return directory


def rules(tmp_path: Path, text: str, **kwargs) -> RuleSet:
    return load_rules(write(tmp_path / "rules", {"10-test.toml": text}), **kwargs)


def errors(tmp_path: Path, files: dict[str, str | bytes], **kwargs) -> list[str]:
    directory = write(tmp_path / "rules", files)
    with pytest.raises(RuleError) as info:
        load_rules(directory, **kwargs)
    assert str(info.value) == "\n".join(info.value.errors)
    prefix = f"{directory}/"
    return [line.removeprefix(prefix) for line in info.value.errors]


# -- loading -------------------------------------------------------------------------


def test_empty_directory(tmp_path):
    ruleset = load_rules(tmp_path)
    assert len(ruleset) == 0
    assert ruleset.decide(Context(command="FETCH")).verdict == "allow"
    assert repr(ruleset) == "RuleSet(0 rules, 0 shadow, default=allow, separator='/')"


def test_missing_directory(tmp_path):
    with pytest.raises(RuleError, match="not a directory"):
        load_rules(tmp_path / "nope")


def test_rule_error_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_rules(tmp_path / "nope")


def test_issue_rules_as_written(tmp_path):
    ruleset = rules(tmp_path, ISSUE_RULES)
    assert [rule.name for rule in ruleset.rules] == [
        "audit everything",
        "archive is read-only",
        "shared folders are managed by IT",
        "legacy folder names",
        "hide server-side junk",
    ]


def test_files_load_in_name_order(tmp_path):
    directory = write(
        tmp_path / "rules",
        {
            "b.toml": '[[rule]]\nname = "second"\ndeny = "no"\n',
            "a.toml": '[[rule]]\nname = "first"\nallow = true\n',
            "notes.txt": "not a rule file",
        },
    )
    ruleset = load_rules(directory)
    assert [rule.name for rule in ruleset.rules] == ["first", "second"]
    assert ruleset.decide(Context(command="NOOP")).decided_by == "first"
    assert ruleset.files == ("a.toml", "b.toml")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_loads_alone(tmp_path, example):
    write(tmp_path / "rules", {example.name: example.read_text()})
    assert len(load_rules(tmp_path / "rules")) >= 1


def test_examples_together(tmp_path):
    ruleset = load_rules(EXAMPLES)
    assert len(ruleset.files) == 8
    summary = ruleset.summary()
    assert summary.startswith("rules: 15 in 8 files from ")
    assert "    'archive is read-only': mailbox Archive, Archive/* -> readonly" in summary
    assert "[shadow]" in summary
    store = ruleset.decide(Context(user="bob", command="UID STORE", mailboxes=("Archive/2020",)))
    assert store.deny == READONLY_DENY
    assert store.log_level == "info"
    assert store.log_fields == {"policy": "compliance"}
    delete = ruleset.decide(Context(user="admin", command="DELETE", mailboxes=("Shared/Team",)))
    assert delete.verdict == "deny"
    assert delete.log_level == "warning"
    assert delete.log_fields == {"policy": "compliance", "destructive": True}
    assert [s.rule for s in delete.shadowed] == ["IT may manage shared folders (dry run)"]
    assert delete.shadowed[0].verdict == "allow"
    assert delete.shadowed[0].decisive is False  # the deny came first
    legacy = ruleset.session_rewrite(Context(user="bob", upstream="legacy"))
    assert legacy.to_upstream("Sent Items/2024") == "Sent.2024"
    assert legacy.to_client("Trash.old") == "Deleted Items/old"
    assert legacy.flag_to_upstream("$junk") == "Junk"
    assert legacy.greeting == "Example Mail ready"
    assert legacy.hidden("Junk/x")
    assert legacy.hidden(".dovecot")
    assert "NOTIFY" not in legacy.capabilities(["IMAP4rev1", "NOTIFY", "CATENATE", "IDLE"])
    other = ruleset.session_rewrite(Context(user="bob", upstream="main"))
    assert other.to_upstream("Sent Items") == "Sent Items"
    assert dict(other.id_fields) == {"name": "Example Mail", "vendor": "Example Ltd"}
    login = ruleset.decide(
        Context(
            user="ann@staff.example.com",
            peer=ipaddress.ip_address("203.0.113.9"),
            command="LOGIN",
        )
    )
    assert login.deny is not None
    assert login.deny.bye
    office = ruleset.decide(
        Context(
            user="ann@staff.example.com",
            peer=ipaddress.ip_address("::ffff:192.0.2.7"),
            command="LOGIN",
        )
    )
    assert office.verdict == "allow"
    assert office.decided_by == "office and VPN may log in"
    limits = ruleset.session_decision(Context(user="x", tls=True)).limits
    assert limits == Limits(
        commands_per_second=50.0, failed_logins_per_ip=20, failed_logins_per_user_ip=5
    )


# -- validation messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[rule]]\nname = "a"\nlog = "loud"\n',
            "rule 'a' (#1): log: expected 'debug', 'info' or 'warning', or a table "
            "{ level = ..., fields = { ... } }, got 'loud'",
        ),
        (
            '[[rule]]\nname = "a"\nlog = { level = "error" }\n',
            "rule 'a' (#1): log.level: expected 'debug', 'info' or 'warning', got 'error'",
        ),
        (
            '[[rule]]\nname = "a"\nlog = { fields = { x = 1.5 } }\n',
            "rule 'a' (#1): log.fields.x: expected a string, an integer or true/false, got 1.5",
        ),
        (
            '[[rule]]\nlog = "info"\n',
            "rule #1: name: required key is missing",
        ),
        (
            '[[rule]]\nname = ""\nlog = "info"\n',
            "rule #1: name: expected a non-empty name",
        ),
        (
            '[[rule]]\nname = 5\nlog = "info"\n',
            "rule #1: name: expected a string, got 5",
        ),
        (
            '[[rule]]\nname = "a"\nmode = "dry"\nlog = "info"\n',
            "rule 'a' (#1): mode: expected 'enforce' or 'shadow', got 'dry'",
        ),
        (
            '[[rule]]\nname = "a"\nlogs = "info"\n',
            "rule 'a' (#1): logs: unknown key; expected one of: name, mode, when, log, trace, "
            "deny, allow, readonly, rewrite, limit, cache",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.mailboxes = "x"\nallow = true\n',
            "rule 'a' (#1): when.mailboxes: unknown key; expected one of: user, group, network, "
            "listener, tls, upstream, command, mailbox, append_size",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.mailbox = ["ok", ""]\nallow = true\n',
            "rule 'a' (#1): when.mailbox[1]: a mailbox pattern cannot be empty",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.mailbox = []\nallow = true\n',
            "rule 'a' (#1): when.mailbox: expected a string or a non-empty array of strings, "
            "got an empty array",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.network = "10.0.0.1/8"\nallow = true\n',
            "rule 'a' (#1): when.network[0]: '10.0.0.1/8' has host bits set: the network is "
            "'10.0.0.0/8' (or write the address alone for one host)",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.network = ["10.0.0.0/8", "office"]\nallow = true\n',
            "rule 'a' (#1): when.network[1]: expected a network in CIDR notation such as "
            "'10.0.0.0/8' or '2001:db8::/32', got 'office'",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.command = ["FETCH", 3]\nallow = true\n',
            "rule 'a' (#1): when.command[1]: expected a string, got 3",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.command = "FETCH ALL"\nallow = true\n',
            "rule 'a' (#1): when.command[0]: only UID commands have two words ('UID FETCH'), "
            "got 'FETCH ALL'",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.tls = "yes"\nallow = true\n',
            "rule 'a' (#1): when.tls: expected true or false, got 'yes'",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.append_size = { min = "1MiB", max = 10 }\ndeny = "x"\n',
            "rule 'a' (#1): when.append_size.max: must be at least min (1 MiB (1048576 bytes))",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.append_size = {}\ndeny = "x"\n',
            "rule 'a' (#1): when.append_size: expected min, max or both",
        ),
        (
            '[[rule]]\nname = "a"\ndeny = { text = "no", code = "no perm" }\n',
            "rule 'a' (#1): deny.code: expected a response code such as 'NOPERM', got 'no perm'",
        ),
        (
            '[[rule]]\nname = "a"\ndeny = ""\n',
            "rule 'a' (#1): deny.text: expected a non-empty string",
        ),
        (
            '[[rule]]\nname = "a"\ndeny = "no"\nallow = true\n',
            "rule 'a' (#1): deny: a rule has one verdict; it has allow and deny",
        ),
        (
            '[[rule]]\nname = "a"\n',
            "rule 'a' (#1): no action: expected at least one of log, trace, deny, allow, "
            "readonly, rewrite, limit, cache",
        ),
        (
            '[[rule]]\nname = "a"\nrewrite.separator = { client = "..", upstream = "." }\n',
            "rule 'a' (#1): rewrite.separator.client: a hierarchy separator is one character "
            "other than * and %, got '..'",
        ),
        (
            '[[rule]]\nname = "a"\nrewrite.mailbox = { "Sent*" = "Sent" }\n',
            "rule 'a' (#1): rewrite.mailbox.\"Sent*\": client name: a mailbox name here "
            "cannot contain * or %, got 'Sent*'",
        ),
        (
            '[[rule]]\nname = "a"\nrewrite.flags = { "$Junk" = "bad flag" }\n',
            "rule 'a' (#1): rewrite.flags.\"$Junk\": expected a flag or keyword such as "
            "'\\\\Flagged' or '$Label1', got 'bad flag'",
        ),
        (
            '[[rule]]\nname = "a"\nlimit.commands_per_second = 0\n',
            "rule 'a' (#1): limit.commands_per_second: must be greater than 0, got 0",
        ),
        (
            '[[rule]]\nname = "a"\nlimit.failed_logins_per_ip = -1\n',
            "rule 'a' (#1): limit.failed_logins_per_ip: must be greater than 0, got -1",
        ),
        (
            "rules = []\n",
            "rules: unknown key; expected one of: rule",
        ),
        (
            '[[rule]]\nname = "a"\nallow = true\n[[rule]]\nname = "a"\ndeny = "x"\n',
            "rule 'a' (#2): name: 'a' is the name of rule #1 in 10-test.toml too "
            "(names are unique across files)",
        ),
        (
            '[[rule]]\nname = "a"\nwhen.group = "staff"\nallow = true\n',
            "rule 'a' (#1): when.group: groups come from a users file ([rules] users_file), "
            "and none is configured",
        ),
        (
            "[[rule]\n",
            "line 1, column 7: TOML syntax: Expected ']]' at the end of an array declaration",
        ),
    ],
)
def test_validation_messages(tmp_path, text, expected):
    assert errors(tmp_path, {"10-test.toml": text}) == [f"10-test.toml: {expected}"]


def test_every_problem_of_every_file(tmp_path):
    lines = errors(
        tmp_path,
        {
            "a.toml": '[[rule]]\nname = "x"\nallow = true\n',
            "b.toml": (
                '[[rule]]\nname = "x"\ndeny = "no"\n'
                '[[rule]]\nname = "y"\nwhen.user = 1\nwhen.listener = []\nallow = true\n'
            ),
            "c.toml": b"\xff",
        },
    )
    assert lines == [
        "b.toml: rule 'y' (#2): when.user: expected a string or an array of strings, got 1",
        "b.toml: rule 'y' (#2): when.listener: expected a string or a non-empty array of "
        "strings, got an empty array",
        "c.toml: not UTF-8 text (byte 0)",
    ]


def test_duplicates_across_files(tmp_path):
    lines = errors(
        tmp_path,
        {
            "a.toml": '[[rule]]\nname = "x"\nallow = true\n',
            "b.toml": '[[rule]]\nname = "x"\ndeny = "no"\n',
        },
    )
    assert lines == [
        "b.toml: rule 'x' (#1): name: 'x' is the name of rule #1 in a.toml too "
        "(names are unique across files)"
    ]


def test_unknown_group_and_users_file_errors(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text('[groups]\nstaff = ["Alice", "bob"]\n')
    lines = errors(
        tmp_path,
        {"10-test.toml": '[[rule]]\nname = "a"\nwhen.group = ["staff", "ops"]\nallow = true\n'},
        users_file=users,
    )
    assert lines == [
        f"10-test.toml: rule 'a' (#1): when.group: no group 'ops' in {users} (groups: staff)"
    ]
    users.write_text('[group]\nstaff = ["alice"]\n')
    lines = errors(tmp_path, {}, users_file=users)
    assert lines == [f"{users}: group: unknown key; expected one of: groups"]


def test_groups_from_users_file(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text('[groups]\nstaff = ["Alice", "bob"]\nadmins = ["alice"]\n')
    ruleset = rules(
        tmp_path,
        '[[rule]]\nname = "staff"\nwhen.group = "admins"\ndeny = "no"\n',
        users_file=users,
    )
    assert ruleset.decide(Context(user="alice", command="NOOP")).verdict == "deny"
    assert ruleset.decide(Context(user="bob", command="NOOP")).verdict == "allow"
    assert ruleset.decide(Context(command="NOOP")).verdict == "allow"
    explicit = Context(user="bob", groups=frozenset({"admins"}), command="NOOP")
    assert ruleset.decide(explicit).verdict == "deny"
    assert "groups: 2 for 2 users" in ruleset.summary()


# -- decisions -----------------------------------------------------------------------


def ctx(command="FETCH", *mailboxes, **kwargs):
    return Context(user=kwargs.pop("user", "alice"), command=command, mailboxes=mailboxes, **kwargs)


@pytest.mark.parametrize(
    ("context", "verdict", "deny", "examine"),
    [
        (ctx("FETCH", "Archive"), "allow", None, False),
        (ctx("SELECT", "Archive/2020"), "allow", None, True),
        (ctx("EXAMINE", "Archive"), "allow", None, False),
        (ctx("STORE", "Archive"), "deny", READONLY_DENY, False),
        (ctx("UID EXPUNGE", "Archive/x"), "deny", READONLY_DENY, False),
        (ctx("APPEND", "Archive"), "deny", READONLY_DENY, False),
        (ctx("COPY", "Archive", "INBOX"), "allow", None, False),  # copying out reads
        (ctx("UID COPY", "INBOX", "Archive"), "deny", READONLY_DENY, False),
        (ctx("MOVE", "Archive", "INBOX"), "deny", READONLY_DENY, False),  # expunges the source
        (ctx("CREATE", "Archive/new"), "deny", READONLY_DENY, False),
        (ctx("RENAME", "Mine", "Archive/Mine"), "deny", READONLY_DENY, False),
        (ctx("STORE", "Archived"), "allow", None, False),
        (
            ctx("DELETE", "Shared/Team"),
            "deny",
            Deny(text="Shared folders are managed by IT"),
            False,
        ),
        (
            ctx("RENAME", "Mine", "Shared/Mine"),
            "deny",
            Deny(text="Shared folders are managed by IT"),
            False,
        ),
        (ctx("RENAME", "Shared", "Other"), "allow", None, False),  # "Shared/*" is below it
        (ctx("UID FETCH", "Shared/Team"), "allow", None, False),
        (ctx("FETCH", "inbox"), "allow", None, False),
    ],
)
def test_issue_rule_decisions(tmp_path, context, verdict, deny, examine):
    decision = rules(tmp_path, ISSUE_RULES).decide(context)
    assert decision.verdict == verdict
    assert decision.deny == deny
    assert decision.examine_instead is examine
    assert decision.log_level == "info"
    assert decision.matched[0] == "audit everything"
    assert decision.rewrite.hidden("Junk")
    assert decision.rewrite.to_upstream("Sent Items") == "Sent"


DECIDING = """
[[rule]]
name = "log fetch"
when.command = "FETCH"
log = { level = "debug", fields = { a = 1, b = "first" } }

[[rule]]
name = "log uid fetch loudly"
when.command = "UID FETCH"
log = { level = "warning", fields = { b = "second", c = true } }
trace = true

[[rule]]
name = "bob is allowed"
when.user = "BOB*"
allow = true

[[rule]]
name = "no big appends"
when.command = "APPEND"
when.append_size = { min = "1MiB" }
deny = { text = "Too big", code = "LIMIT" }

[[rule]]
name = "office network"
when.network = ["10.0.0.0/8", "2001:db8::/32"]
when.listener = ["internal", "vpn"]
when.tls = false
deny = { text = "Use TLS", code = "PRIVACYREQUIRED", bye = true }

[[rule]]
name = "legacy upstream"
when.upstream = "legacy"
readonly = true
"""


@pytest.mark.parametrize(
    ("context", "verdict", "by", "extra"),
    [
        (ctx("FETCH"), "allow", None, {"log_level": "debug", "trace": False}),
        (
            ctx("UID FETCH"),
            "allow",
            None,
            {
                "log_level": "warning",
                "trace": True,
                "log_fields": {"a": 1, "b": "first", "c": True},
            },
        ),
        (ctx("UID FETCH", user="bob2"), "allow", "bob is allowed", {}),
        (ctx("APPEND", "INBOX", append_size=2**20), "deny", "no big appends", {}),
        (ctx("APPEND", "INBOX", append_size=2**20 - 1), "allow", None, {}),
        (ctx("APPEND", "INBOX"), "allow", None, {}),  # no size, no match
        (ctx("APPEND", "INBOX", append_size=2**30, user="bob"), "allow", "bob is allowed", {}),
        (
            ctx("NOOP", peer=ipaddress.ip_address("10.1.2.3"), listener="vpn", tls=False),
            "deny",
            "office network",
            {},
        ),
        (
            ctx("NOOP", peer=ipaddress.ip_address("10.1.2.3"), listener="vpn", tls=True),
            "allow",
            None,
            {},
        ),
        (
            ctx("NOOP", peer=ipaddress.ip_address("2001:db8::1"), listener="internal", tls=False),
            "deny",
            "office network",
            {},
        ),
        (ctx("NOOP", listener="internal", tls=False), "allow", None, {}),  # no peer
        (ctx("STORE", "INBOX", upstream="legacy"), "deny", "legacy upstream", {"readonly": True}),
        (
            ctx("SELECT", "INBOX", upstream="legacy"),
            "allow",
            None,
            {"readonly": True, "examine_instead": True},
        ),
    ],
)
def test_decisions(tmp_path, context, verdict, by, extra):
    decision = rules(tmp_path, DECIDING).decide(context)
    assert decision.verdict == verdict
    assert decision.decided_by == by
    for key, value in extra.items():
        assert getattr(decision, key) == value


def test_deny_details(tmp_path):
    ruleset = rules(tmp_path, DECIDING)
    big = ruleset.decide(ctx("APPEND", "INBOX", append_size=2**21))
    assert big.deny == Deny(text="Too big", code="LIMIT", bye=False)
    assert not big.allowed
    office = ruleset.decide(
        ctx("NOOP", peer=ipaddress.ip_address("10.0.0.1"), listener="vpn", tls=False)
    )
    assert office.deny == Deny(text="Use TLS", code="PRIVACYREQUIRED", bye=True)


def test_default_deny(tmp_path):
    ruleset = rules(
        tmp_path, '[[rule]]\nname = "ok"\nwhen.user = "alice"\nallow = true\n', default="deny"
    )
    assert ruleset.decide(ctx("NOOP")).allowed
    refused = ruleset.decide(ctx("NOOP", user="mallory"))
    assert refused.verdict == "deny"
    assert refused.decided_by is None
    assert refused.deny == Deny(text="Denied by policy", code="NOPERM")


def test_command_names(tmp_path):
    ruleset = rules(
        tmp_path,
        '[[rule]]\nname = "base"\nwhen.command = "fetch"\ndeny = "a"\n'
        '[[rule]]\nname = "uid only"\nwhen.command = "UID STORE"\ndeny = "b"\n',
    )
    assert ruleset.decide(ctx("FETCH")).decided_by == "base"
    assert ruleset.decide(ctx("UID FETCH")).decided_by == "base"
    assert ruleset.decide(ctx("UID STORE")).decided_by == "uid only"
    assert ruleset.decide(ctx("STORE")).decided_by is None
    assert ruleset.decide(Context(user="alice")).decided_by is None


def test_users_are_normalised(tmp_path):
    ruleset = rules(tmp_path, '[[rule]]\nname = "a"\nwhen.user = "ALICE"\ndeny = "no"\n')
    assert ruleset.decide(ctx("NOOP", user="alice")).verdict == "deny"


def test_mailboxes_are_canonicalised(tmp_path):
    ruleset = rules(tmp_path, '[[rule]]\nname = "a"\nwhen.mailbox = "INBOX/*"\ndeny = "no"\n')
    assert ruleset.decide(ctx("FETCH", "inbox/Sub/")).verdict == "deny"
    assert ruleset.decide(ctx("FETCH", "inbox")).verdict == "allow"


def test_other_separator(tmp_path):
    ruleset = rules(
        tmp_path, '[[rule]]\nname = "a"\nwhen.mailbox = "Archive.%"\ndeny = "no"\n', separator="."
    )
    assert ruleset.decide(ctx("FETCH", "Archive.2020")).verdict == "deny"
    assert ruleset.decide(ctx("FETCH", "Archive.2020.Q1")).verdict == "allow"


def test_shadow_rule(tmp_path):
    ruleset = rules(
        tmp_path,
        '[[rule]]\nname = "would deny"\nmode = "shadow"\nwhen.command = "DELETE"\n'
        'deny = "no"\nlog = "warning"\nrewrite.hide = "x"\n'
        '[[rule]]\nname = "audit"\nlog = "info"\n',
    )
    decision = ruleset.decide(ctx("DELETE", "Old"))
    assert decision.verdict == "allow"
    assert decision.matched == ("audit",)
    assert decision.log_level == "info"
    assert not decision.rewrite.hidden("x")
    (shadow,) = decision.shadowed
    assert shadow.rule == "would deny"
    assert shadow.verdict == "deny"
    assert shadow.deny == Deny(text="no")
    assert shadow.decisive
    assert shadow.log_level == "warning"
    assert shadow.rewrites
    assert "'would deny' [shadow]: command DELETE -> log warning, deny [NOPERM], rewrite hide" in (
        ruleset.summary()
    )


def test_rewrites_accumulate_earlier_wins(tmp_path):
    ruleset = rules(
        tmp_path,
        """
        [[rule]]
        name = "one"
        rewrite.mailbox = { "Sent Items" = "Sent" }
        rewrite.hide = "Junk"
        rewrite.capabilities = { remove = ["idle"] }
        rewrite.flags = { "$Junk" = "Junk" }
        rewrite.greeting = "first"
        rewrite.id = { name = "first" }

        [[rule]]
        name = "two"
        when.user = "alice"
        rewrite.mailbox = { "Sent Items" = "Other", "Deleted Items" = "Trash" }
        rewrite.hide = ["Spam", "Junk"]
        rewrite.capabilities = { add = ["XLIST"], remove = ["IDLE", "SORT"] }
        rewrite.flags = { "$junk" = "X", "$NotJunk" = "NonJunk" }
        rewrite.greeting = "second"
        rewrite.id = { NAME = "second", vendor = "v" }

        [[rule]]
        name = "per command"
        when.command = "LIST"
        rewrite.hide = "Drafts"
        """,
    )
    rewrite = ruleset.session_rewrite(Context(user="alice", command="LIST"))
    assert rewrite.mailboxes == (("Sent Items", "Sent"), ("Deleted Items", "Trash"))
    assert rewrite.hidden("Junk")
    assert rewrite.hidden("Spam")
    assert not rewrite.hidden("Drafts")
    assert rewrite.capabilities(["IMAP4rev1", "IDLE", "SORT", "CATENATE"]) == [
        "IMAP4rev1",
        "XLIST",
    ]
    assert rewrite.flag_to_upstream("$JUNK") == "Junk"
    assert rewrite.flag_to_upstream("$notjunk") == "NonJunk"
    assert rewrite.flag_to_client("nonjunk") == "$NotJunk"
    assert rewrite.flag_to_client("\\Seen") == "\\Seen"
    assert rewrite.greeting == "first"
    assert rewrite.id_fields == (("name", "first"), ("vendor", "v"))
    listing = ruleset.decide(Context(user="alice", command="LIST"))
    assert listing.rewrite.hidden("Drafts")
    bob = ruleset.session_rewrite(Context(user="bob"))
    assert bob.mailboxes == (("Sent Items", "Sent"),)
    assert ruleset.session_rewrite(Context()).hide  # rule "one" has no conditions


@pytest.mark.parametrize(
    ("client", "upstream"),
    [
        ("Sent Items", "Sent"),
        ("Sent Items/2024", "Sent.2024"),
        ("sent items", "sent items"),  # names other than INBOX are case-sensitive
        ("Sent Itemsx", "Sent Itemsx"),
        ("INBOX/a/b", "INBOX.a.b"),
        ("inbox/a", "INBOX.a"),
        ("Projects/Old Stuff", "Projects.Old Stuff"),
        ("Deleted Items", "Trash"),
        ("Deleted Items/Old", "Trash.Old"),
    ],
)
def test_rewrite_names_both_ways(client, upstream):
    rewrite = Rewrite(
        mailboxes=(("Sent Items", "Sent"), ("Deleted Items", "Trash")),
        separators=("/", "."),
    )
    assert rewrite.to_upstream(client) == upstream
    if client[:5] != "inbox" and client != "sent items":
        assert rewrite.to_client(upstream) == client


def test_rewrite_unrepresentable_names():
    rewrite = Rewrite(separators=("/", "."))
    with pytest.raises(ValueError, match="separator"):
        rewrite.to_upstream("v1.2/notes")
    with pytest.raises(ValueError, match="separator"):
        rewrite.to_client("a/b.c")


def test_rewrite_longest_prefix_first():
    rewrite = Rewrite(mailboxes=(("A", "X"), ("A/B", "Y")))
    assert rewrite.to_upstream("A/B/C") == "Y/C"
    assert rewrite.to_upstream("A/C") == "X/C"
    assert rewrite.to_client("Y/C") == "A/B/C"
    assert not rewrite.renames or rewrite.mailboxes
    assert Rewrite().capabilities(["NOTIFY"]) == ["NOTIFY"]


def test_memo_is_bounded_and_invisible(tmp_path):
    ruleset = rules(tmp_path, '[[rule]]\nname = "a"\nwhen.command = "X1"\ndeny = "no"\n')
    for i in range(5000):
        ruleset.decide(Context(user=f"u{i}", command=f"X{i % 300}"))
    assert ruleset.decide(Context(user="u1", command="X1")).verdict == "deny"
    assert ruleset.decide(Context(user="u1", command="X2")).verdict == "allow"


# -- properties ------------------------------------------------------------------------

COMMANDS = [
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "SELECT",
    "APPEND",
    "COPY",
    "MOVE",
    "DELETE",
    "RENAME",
    "CREATE",
    "LIST",
    "NOOP",
    "LOGIN",
    "EXPUNGE",
]
MAILBOXES = ["INBOX", "Archive", "Archive/2020", "Shared/Team", "Junk", "Sent", "a/b/c"]
USERS = ["alice", "bob", "carol@example.com"]
LISTENERS = ["implicit:993", "vpn"]


@st.composite
def rule_models(draw, name):
    table: dict[str, Any] = {"name": name}
    when: dict[str, Any] = {}
    if draw(st.booleans()):
        when["command"] = draw(st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=3))
    if draw(st.booleans()):
        when["mailbox"] = draw(
            st.lists(st.sampled_from([*MAILBOXES, "Archive/*", "%", "*", "Shared/%"]), min_size=1)
        )
    if draw(st.booleans()):
        when["user"] = draw(st.sampled_from([*USERS, "*@example.com", "b*"]))
    if draw(st.booleans()):
        when["listener"] = draw(st.sampled_from(LISTENERS))
    if draw(st.booleans()):
        when["tls"] = draw(st.booleans())
    if draw(st.booleans()):
        when["network"] = draw(st.sampled_from(["10.0.0.0/8", "192.0.2.0/24", "::/0"]))
    if draw(st.booleans()):
        when["append_size"] = {"max": draw(st.integers(1, 2000))}
    if when:
        table["when"] = when
    verdict = draw(st.sampled_from(["allow", "deny", "readonly", None]))
    if verdict == "deny":
        table["deny"] = "no"
    elif verdict is not None:
        table[verdict] = True
    if draw(st.booleans()) or verdict is None:
        table["log"] = draw(st.sampled_from(["debug", "info", "warning"]))
    if draw(st.booleans()):
        table["rewrite"] = {"hide": draw(st.sampled_from(MAILBOXES))}
    if draw(st.booleans()):
        table["trace"] = True
    return Rule.model_validate(table)


@st.composite
def compiled_rules(draw, prefix="r"):
    count = draw(st.integers(0, 8))
    return [compile_rule(draw(rule_models(f"{prefix}{i}")), "test.toml") for i in range(count)]


@st.composite
def contexts(draw):
    return Context(
        user=draw(st.sampled_from([*USERS, None])),
        peer=draw(
            st.sampled_from(
                [None, ipaddress.ip_address("10.1.1.1"), ipaddress.ip_address("2001:db8::5")]
            )
        ),
        listener=draw(st.sampled_from([*LISTENERS, None])),
        tls=draw(st.sampled_from([True, False, None])),
        command=draw(st.sampled_from(COMMANDS)),
        mailboxes=tuple(draw(st.lists(st.sampled_from(MAILBOXES), max_size=2))),
        append_size=draw(st.sampled_from([None, 10, 1500])),
    )


def _without_shadowed(decision):
    return (
        decision.verdict,
        decision.deny,
        decision.decided_by,
        decision.readonly,
        decision.examine_instead,
        decision.log_level,
        dict(decision.log_fields),
        decision.trace,
        decision.matched,
        decision.rewrite,
        decision.limits,
    )


@settings(max_examples=200, deadline=None)
@given(compiled_rules(), compiled_rules("s"), st.data(), contexts())
def test_shadow_rules_never_change_the_decision(enforced, extra, data, context):
    shadows = [
        compile_rule(rule.rule.model_copy(update={"mode": "shadow"}), "s.toml") for rule in extra
    ]
    mixed = list(enforced)
    for shadow in shadows:
        mixed.insert(data.draw(st.integers(0, len(mixed))), shadow)
    default = data.draw(st.sampled_from(["allow", "deny"]))
    plain = RuleSet(enforced, default=default).decide(context)
    with_shadows = RuleSet(mixed, default=default).decide(context)
    assert _without_shadowed(plain) == _without_shadowed(with_shadows)
    assert plain.shadowed == ()
    assert {s.rule for s in with_shadows.shadowed} <= {s.name for s in shadows}


@settings(max_examples=200, deadline=None)
@given(compiled_rules(), st.data(), contexts())
def test_a_rule_that_does_not_match_changes_nothing(existing, data, context):
    extra = compile_rule(data.draw(rule_models("extra")), "x.toml")
    ruleset = RuleSet([extra])
    if ruleset.matching(context):
        return
    position = data.draw(st.integers(0, len(existing)))
    before = RuleSet(existing).decide(context)
    after = RuleSet([*existing[:position], extra, *existing[position:]]).decide(context)
    assert before == after


@settings(max_examples=100, deadline=None)
@given(compiled_rules(), contexts())
def test_decisions_are_consistent(compiled, context):
    decision = RuleSet(compiled).decide(context)
    assert (decision.verdict == "deny") is (decision.deny is not None)
    assert decision.examine_instead <= (decision.readonly and context.command == "SELECT")
    if decision.decided_by is not None:
        assert decision.decided_by in decision.matched
    # memoised and fresh rule sets agree
    assert RuleSet(compiled).decide(context) == decision


def test_the_engine_does_no_io():
    import subprocess
    import sys

    code = "import sys, imapproxy.rules; print(sorted({'trio', 'structlog'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cache_action(tmp_path):
    ruleset = load_rules(
        write(
            tmp_path / "rules",
            {
                "a.toml": (
                    '[[rule]]\nname = "no cache for drafts"\nwhen.mailbox = "Drafts"\n'
                    "cache = false\n"
                    '[[rule]]\nname = "offices"\ncache = true\n'
                    '[[rule]]\nname = "public"\nwhen.mailbox = "Public/*"\n'
                    'cache = { shared = true, admit_after = 1, items = ["body", "ENVELOPE"] }\n'
                )
            },
        )
    )
    drafts = ruleset.decide(Context(user="a", command="UID FETCH", mailboxes=("Drafts",)))
    assert drafts.cache is None  # the first rule with cache decides: off
    inbox = ruleset.decide(Context(user="a", command="UID FETCH", mailboxes=("INBOX",)))
    assert inbox.cache is not None
    assert inbox.cache.admit_after == 2  # the defaults of cache = true
    assert inbox.cache.items >= {"BODY", "BINARY", "ENVELOPE", "BODYSTRUCTURE"}
    assert not inbox.cache.shared
    public = ruleset.decide(Context(user="a", command="FETCH", mailboxes=("Public/x",)))
    assert public.cache is not None
    assert public.cache.shared is False  # "offices" matched first
    assert "cache after 2 fetches in 3600s" in ruleset.summary()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('cache = { items = ["FLAGS"] }', "cache.items: expected one of BODY"),
        ('cache = { min_size = "2MiB", max_size = "1MiB" }', "cache.max_size: must be at least"),
        ("cache = { admit_after = 0 }", "cache.admit_after"),
        ('cache = "yes"', "cache"),
    ],
)
def test_cache_action_errors(tmp_path, text, error):
    with pytest.raises(RuleError) as info:
        load_rules(write(tmp_path / "rules", {"a.toml": f'[[rule]]\nname = "x"\n{text}\n'}))
    assert error in str(info.value)
