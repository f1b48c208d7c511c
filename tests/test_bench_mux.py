"""bench/mux.py: how clients are spread over users and mailboxes, the windows of
``--distinct``, and smoke runs of ``--quick`` and ``--quick --distinct``; a smoke run
of bench/mux_slow.py ``--quick``.

The benchmark's figures are not checked (timings and connection counts are not
asserts, nor are its targets); the smoke run only shows that it runs and prints its
table. Its exit status does say something: the script fails when a client gets a
response other than OK, or a header listing other than the one a direct session got
from the same mailbox. The shared side runs only when the configuration check accepts
``max_sessions_per_connection = 100``; until then the run says it is not available.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench_loader import load_bench

BENCH = Path(__file__).resolve().parent.parent / "bench" / "mux.py"


bench = load_bench("mux")


# -- the spread of clients --------------------------------------------------------------


def test_clients_spread_evenly_over_users_and_their_mailboxes() -> None:
    plan = bench.FULL
    counts: dict[tuple[int, str], int] = {}
    for client in range(plan.clients):
        key = bench.assignment(client, plan.users)
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == plan.users * len(bench.MAILBOXES) == bench.mailboxes_in_use(plan)
    assert max(counts.values()) - min(counts.values()) <= 1
    per_user = [sum(n for (u, _), n in counts.items() if u == user) for user in range(plan.users)]
    assert per_user == [plan.clients // plan.users] * plan.users


@pytest.mark.parametrize(
    ("clients", "users", "in_use"), [(1, 1, 1), (2, 1, 2), (5, 5, 5), (40, 4, 12)]
)
def test_mailboxes_in_use_counts_what_the_clients_select(clients, users, in_use) -> None:
    plan = bench.Plan(
        clients=clients, users=users, messages=60, connect_rate=1, idle=0, sample_every=1
    )
    assert bench.mailboxes_in_use(plan) == in_use


# -- the commands ---------------------------------------------------------------------


def test_identical_commands_are_the_same_for_every_client_of_a_mailbox() -> None:
    plan = bench.FULL
    assert {bench.window(n, plan, False) for n in range(plan.clients)} == {(1, 50)}
    assert bench.work_lines("Lists", 1, 50) == [
        ("SELECT", b"SELECT Lists"),
        (
            "UID FETCH headers",
            b"UID FETCH 1:50 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
        ),
        ("NOOP", b"NOOP"),
        ("UID FETCH flags", b"UID FETCH 1:* (UID FLAGS)"),
        ("NOOP", b"NOOP"),
    ]
    assert bench.repeated_commands(plan, False) == plan.clients - bench.mailboxes_in_use(plan)


@pytest.mark.parametrize("plan", [bench.FULL, bench.QUICK], ids=["full", "quick"])
def test_distinct_windows_differ_within_each_mailbox(plan) -> None:
    for n in range(plan.clients):
        first, last = bench.window(n, plan, True)
        assert first >= 1
        assert last == first + 49 <= plan.messages
    assert bench.window(3, bench.FULL, True) == (1 + 21, 1 + 21 + 49)
    assert bench.window(40, bench.FULL, True) == (1 + 280 % 251, 1 + 280 % 251 + 49)
    assert bench.repeated_commands(plan, True) == 0
    lines = dict(bench.work_lines("INBOX", 30, 79))
    assert lines["UID FETCH headers"] == (
        b"UID FETCH 30:79 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
    )
    assert lines["UID FETCH flags"] == b"UID FETCH 30:* (UID FLAGS)"


def test_a_windows_expectation_comes_from_the_listing_of_every_header() -> None:
    record = [
        (
            b"* %d FETCH (UID %d FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {%d}\r\n)\r\n"
            % (n, n, 10 + n),
            10 + n,
        )
        for n in range(1, 8)
    ]
    headers = bench.Headers.parse(record)
    assert headers.listing(3, 5) == bench.Expected(3, 13 + 14 + 15)
    assert headers.listing(6, 50) == bench.Expected(2, 16 + 17)
    with pytest.raises(bench.ProtocolFailure):
        bench.Headers.parse([(b"* 1 FETCH (FLAGS ())\r\n", 0)])


# -- smoke runs ---------------------------------------------------------------------------


def _quick(*options: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout


def test_quick_run_prints_the_table(dovecot) -> None:
    out = _quick()
    _check_table(out)
    assert "commands: identical per mailbox" in out
    assert "commands: distinct per client" not in out


def test_quick_distinct_run_prints_the_table(dovecot) -> None:
    out = _quick("--distinct")
    _check_table(out)
    assert "commands: distinct per client" in out
    assert "commands: identical per mailbox" not in out
    assert "no two clients of a mailbox send the same command" in out


def _check_table(out: str) -> None:
    for line in (
        "Multiplexing benchmark: 40 clients of 4 users through imapproxy, upstream "
        "connections unshared vs shared (--quick run)",
        "shared: [multiplex] enabled = true, max_sessions_per_connection = 100, "
        "max_connections_per_user = 10, max_connections = 1000",
        "40 clients of 4 users, 3 mailboxes each (12 in use), 60 messages a mailbox",
        "unshared      shared  shared/unshared",
        "upstream connections, peak ",
        "upstream connections, all idling ",
        "commands/s (phase 2) ",
        "latency p50, all commands (ms) ",
        "latency p99, all commands (ms) ",
        "proxy RSS peak, VmHWM (MiB) ",
        "Latency by command in ms, p50 / p99 (count)",
        "connect (TCP, TLS, greeting) ",
        "UID FETCH headers ",
        "DONE ",
        "LOGOUT ",
        "Targets (issue 6)",
        "shared upstream connections at peak <= users x mailboxes in use (12): ",
        "shared p99 <= 2x unshared (all commands): ",
    ):
        assert line in out
    # The unshared proxy is always measured: one upstream connection per client.
    peak = next(line for line in out.splitlines() if line.startswith("upstream connections, peak"))
    assert peak.split()[3] == "40"
    # The shared one is measured, or said to be unavailable (while the limit is 1).
    refused = "shared: not available (config refused: " in out
    assert refused == ("users x mailboxes in use (12): not measured" in out)


SLOW = BENCH.parent / "mux_slow.py"


def test_slow_reader_quick_run_prints_the_table(dovecot) -> None:
    """bench/mux_slow.py --quick: its exit status says every response was OK and the
    slow reader got its 10 MB message whole; the figures are only printed."""
    result = subprocess.run(
        [sys.executable, str(SLOW), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    for line in (
        "5 sessions of one user on one shared upstream connection",
        "alone   slow reader     ratio",
        "p50 latency (ms) ",
        "p99 latency (ms) ",
        "slowest command (ms) ",
        "upstream connections of the user while the slow reader read: ",
        "when the others were done (then the rest, whole)",
        "a slow reader raises the others' p99 at most 2x: ",
    ):
        assert line in result.stdout, (line, result.stdout)
