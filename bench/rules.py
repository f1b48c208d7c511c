"""Rules engine benchmark: the cost of one decision with 10, 100 and 1,000 rules.

Run: ``make bench`` (or ``.venv/bin/python bench/rules.py [--quick]``).

Generates a mix of rules like the examples in ``rules/`` (audit logging, per-user
and per-group policy, read-only and denied mailbox patterns, network and listener
conditions, rewrites, shadow rules), compiles them once, and times
:meth:`RuleSet.decide` over a cycle of contexts (several users, FETCH, UID STORE,
SELECT, COPY with two mailboxes, APPEND with a size, ...). Two numbers per size:

* *steady*: a session's commands after its first (the candidate rules for its
  session facts and command are memoised) -- the per-command cost;
* *first*: each decision for a new session (nothing memoised): a login or the
  first use of a command name.

Each is the median of several timeit repeats, in microseconds per decision.
Target (issue 4): steady <= 20 us with 100 rules; the line says whether it is met.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import timeit

from imapproxy.rules import Context, RuleSet, compile_rule
from imapproxy.rules.model import Rule

TARGET_US = 20.0
COMMANDS = ["FETCH", "UID FETCH", "UID STORE", "SELECT", "COPY", "APPEND", "LIST", "EXPUNGE"]
MAILBOXES = ["INBOX", "Archive/2020", "Shared/Team", "Projects/a/b", "Sent", "Junk"]


def generate(count: int, seed: int = 4) -> RuleSet:
    """``count`` rules of assorted kinds, compiled."""
    rng = random.Random(seed)
    rules = []
    for i in range(count):
        kind = i % 8
        table: dict[str, object] = {"name": f"rule {i}"}
        if kind == 0:
            table["log"] = {"level": "info", "fields": {"n": i}}
        elif kind == 1:
            table["when"] = {"user": f"user{rng.randrange(500)}@example.com"}
            table["deny"] = "no"
        elif kind == 2:
            table["when"] = {"mailbox": [f"Archive{i}", f"Archive{i}/*"]}
            table["readonly"] = True
        elif kind == 3:
            table["when"] = {
                "command": rng.sample(["DELETE", "RENAME", "STORE", "FETCH"], 2),
                "mailbox": f"Shared{i}/%",
            }
            table["deny"] = {"text": "managed by IT", "code": "NOPERM"}
        elif kind == 4:
            table["when"] = {"network": f"10.{i % 256}.0.0/16", "listener": "vpn"}
            table["allow"] = True
        elif kind == 5:
            table["when"] = {"command": "APPEND", "append_size": {"min": 1000 + i}}
            table["log"] = "warning"
        elif kind == 6:
            table["when"] = {"upstream": f"legacy{i}"}
            table["rewrite"] = {"mailbox": {f"Sent Items {i}": "Sent"}, "hide": "Junk"}
        else:
            table["mode"] = "shadow"
            table["when"] = {"user": "*@example.org", "mailbox": ["Projects/*"]}
            table["deny"] = "dry run"
        rules.append(compile_rule(Rule.model_validate(table), "bench.toml"))
    return RuleSet(rules)


def contexts(count: int, users: int, rng: random.Random, first: int = 0) -> list[Context]:
    out = []
    for i in range(count):
        command = rng.choice(COMMANDS)
        mailboxes: tuple[str, ...] = (rng.choice(MAILBOXES),)
        if command == "COPY":
            mailboxes += (rng.choice(MAILBOXES),)
        out.append(
            Context(
                user=f"user{first + (i % users)}@example.com",
                peer=ipaddress.ip_address(f"10.{rng.randrange(256)}.1.2"),
                listener="implicit:993",
                tls=True,
                upstream="main",
                command=command,
                mailboxes=mailboxes,
                append_size=rng.randrange(5000) if command == "APPEND" else None,
            )
        )
    return out


def per_decision_us(ruleset: RuleSet, ctxs: list[Context], repeats: int) -> float:
    decide = ruleset.decide

    def run() -> None:
        for ctx in ctxs:
            decide(ctx)

    times = timeit.repeat(run, number=1, repeat=repeats)
    return statistics.median(times) / len(ctxs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    rng = random.Random(1)
    print("rules engine: microseconds per RuleSet.decide (median of repeats)")
    for count in (10, 100, 1000):
        ruleset = generate(count)
        steady = contexts(2000, users=20, rng=rng)
        for ctx in steady:  # memoise as a running session would
            ruleset.decide(ctx)
        steady_us = per_decision_us(ruleset, steady, repeats)
        # A fresh rule set each repeat, and every context a new session.
        first_times = []
        for r in range(max(3, repeats // 3)):
            fresh = generate(count)
            ctxs = contexts(300, users=300, rng=rng, first=1000 + r * 300)
            first_times.append(per_decision_us(fresh, ctxs, 1))
        first_us = statistics.median(first_times)
        verdict = ""
        if count == 100:
            met = "met" if steady_us <= TARGET_US else "NOT met"
            verdict = f"  (target <= {TARGET_US:g} us: {met})"
        print(
            f"  {count:>5} rules: {steady_us:7.2f} us steady, "
            f"{first_us:8.2f} us first command of a session{verdict}"
        )


if __name__ == "__main__":
    main()
