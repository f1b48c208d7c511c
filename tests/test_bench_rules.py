"""bench/rules.py: a smoke run of ``--quick``.

The benchmark's figures are not checked (timings are not asserts); the smoke run only
shows that both parts run and print their lines. Its exit status does say something:
the script fails when the proxy with the audit rule wrote fewer audit lines than
commands were measured on it, or the proxy without it wrote any.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "rules.py"


def test_quick_run_prints_both_parts(dovecot) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for line in (
        "rules engine: microseconds per RuleSet.decide",
        "   10 rules:",
        "  100 rules:",
        " 1000 rules:",
        "(target <= 20 us:",
        "relay throughput, audit rule off vs on (--quick run",
        "UID FETCH n (FLAGS ENVELOPE), 1 client",
        "UID FETCH n (FLAGS ENVELOPE), 8 clients",
        "bulk UID FETCH 1:* BODY.PEEK[]",
        "target on >= 0.9x off for every measure: worst",
        'audit lines (event "command" on imapproxy.audit): on ',
    ):
        assert line in out
