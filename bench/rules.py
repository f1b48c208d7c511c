"""Rules engine benchmark: the cost of one decision with 10, 100 and 1,000 rules, and
relay throughput with the audit rule on and off.

Run: ``make bench`` (or ``.venv/bin/python bench/rules.py [--quick]``).

**Part 1, decision cost.** Generates a mix of rules like the examples in ``rules/``
(audit logging, per-user and per-group policy, read-only and denied mailbox patterns,
network and listener conditions, rewrites, shadow rules), compiles them once, and
times :meth:`RuleSet.decide` over a cycle of contexts (several users, FETCH, UID
STORE, SELECT, COPY with two mailboxes, APPEND with a size, ...). Two numbers per size:

* *steady*: a session's commands after its first (the candidate rules for its
  session facts and command are memoised) -- the per-command cost;
* *first*: each decision for a new session (nothing memoised): a login or the
  first use of a command name.

Each is the median of several timeit repeats, in microseconds per decision.
Target (issue 4): steady <= 20 us with 100 rules; the line says whether it is met.

**Part 2, relay throughput with the audit rule on vs off.** Starts a private Dovecot
(as ``bench/relay.py`` does, whose helpers it uses) with one user holding a few 5 MiB
messages and one user per concurrent client holding the test corpus, and two
imapproxy processes (``python -m imapproxy serve``, implicit TLS to the client, plain
IMAP to Dovecot's loopback port, logging at info as JSON lines to a file), alike but
for the rules: *off* has no ``[rules]``; *on* has ``[rules] dir`` holding
``rules/10-audit-everything.toml``, whose "audit everything" rule writes one audit
line (``event="command"`` on the ``imapproxy.audit`` logger, at info) per command.
Three measures, each on both proxies in turn (off then on, then on then off in the
next round, ...):

1. ``UID FETCH n (FLAGS ENVELOPE)`` with one client, one command in flight, cycling
   through the INBOX's UIDs: commands per second;
2. the same with several concurrent clients (each its own user and connection, one
   command in flight each, one thread multiplexing them): commands per second, all
   clients together;
3. bulk ``UID FETCH 1:* BODY.PEEK[]`` of the 5 MiB messages over one connection: MB/s.

Each figure is the median over the rounds; the on/off ratio is the median of the
per-round ratios (timings here drift by a third from run to run, so the proxies take
turns). The relay's CPU per command (or per GB) is shown alongside, from
``/proc/PID/stat``. Target (issue 4): on >= 0.9x off for every measure. After the
run the proxies' logs are read: the *on* log must hold at least one audit line per
command sent in the measures and the *off* log none, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import relay  # bench/relay.py: bench/ is sys.path[0] when this script runs

from imapproxy.rules import Context, RuleSet, compile_rule
from imapproxy.rules.model import Rule
from imapproxy.testing import DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls

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


def decision_costs(quick: bool) -> None:
    repeats = 5 if quick else 15
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
    sys.stdout.flush()


# -- part 2: relay throughput with the audit rule on and off ----------------------------

AUDIT_RULE_FILE = Path(__file__).resolve().parent.parent / "rules" / "10-audit-everything.toml"
RELAY_TARGET = 0.9
MODES = ("off", "on")
BULK_FETCH = b"UID FETCH 1:* BODY.PEEK[]"


@dataclass
class RelayPlan:
    rounds: int  # the two proxies take turns this many times
    one_client: int  # small commands per round with one client
    clients: int  # concurrent clients of the second measure
    many_client: int  # small commands per client and round with ``clients`` clients
    bulk_seconds: float  # timed bulk fetching per proxy and round (at least one fetch)
    messages: int  # 5 MiB messages of the bulk user
    warmup: int  # untimed commands per client before each timed batch


QUICK_PLAN = RelayPlan(
    rounds=2, one_client=200, clients=8, many_client=25, bulk_seconds=0.3, messages=2, warmup=3
)
FULL_PLAN = RelayPlan(
    rounds=7, one_client=1500, clients=8, many_client=150, bulk_seconds=1.5, messages=4, warmup=5
)


@dataclass
class Measure:
    """One measure's figures, per round, for each proxy."""

    label: str
    unit: str  # of the rate
    cpu_unit: str  # of the relay's CPU per unit of work
    cpu_digits: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})

    def add(self, mode: str, figures: tuple[float, float]) -> None:
        self.rates[mode].append(figures[0])
        self.cpu[mode].append(figures[1])

    def ratio(self) -> float:
        """The median of the rounds' on/off ratios."""
        pairs = zip(self.rates["on"], self.rates["off"], strict=True)
        return statistics.median(on / off for on, off in pairs)


class AuditSetup:
    """One imapproxy (audit off or on), its connections and the commands sent on them."""

    def __init__(self, mode: str, target: relay.Target) -> None:
        self.mode = mode
        self.target = target
        self.bulk: relay.Client | None = None
        self.one: list[relay.Client] = []
        self.many: list[relay.Client] = []
        self.commands = 0  # in the measures, warm-up included

    def connect(self, bulk_user: User, users: Sequence[User]) -> None:
        self.bulk = relay.Client(self.target, bulk_user)
        self.bulk.command(BULK_FETCH)  # warm-up: page cache, Dovecot's indexes
        self.one = [relay.Client(self.target, users[0])]
        self.many = [relay.Client(self.target, user) for user in users]

    def small(
        self, clients: Sequence[relay.Client], uids: Sequence[int], per_client: int, warmup: int
    ) -> tuple[float, float]:
        """(commands per second, relay CPU microseconds per command)."""
        pid = self.target.relay_pid
        assert pid is not None
        cpu0 = relay.cpu_sample(pid)
        _, elapsed = relay.round_trips(
            clients,
            lambda i: b"UID FETCH %d (FLAGS ENVELOPE)" % uids[i % len(uids)],
            per_client,
            warmup,
        )
        cpu = relay.cpu_used(cpu0, relay.cpu_sample(pid))
        sent = len(clients) * (per_client + warmup)
        self.commands += sent
        return sent / elapsed, cpu / sent * 1e6

    def bulk_fetch(self, seconds: float) -> tuple[float, float]:
        """(MB/s, relay CPU seconds per GB)."""
        assert self.bulk is not None
        pid = self.target.relay_pid
        assert pid is not None
        cpu0 = relay.cpu_sample(pid)
        octets = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            octets += self.bulk.command(BULK_FETCH)[1]
            self.commands += 1
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
        cpu = relay.cpu_used(cpu0, relay.cpu_sample(pid))
        return octets / elapsed / 1e6, cpu / (octets / 1e9)

    def close(self) -> None:
        for client in [*([self.bulk] if self.bulk else []), *self.one, *self.many]:
            client.close()


def audit_lines(log: Path) -> int:
    """The audit lines of commands (``event="command"`` on ``imapproxy.audit``) in a
    JSON-lines log."""
    count = 0
    with open(log, encoding="utf-8") as f:
        for line in f:
            if '"command"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("event") == "command" and entry.get("logger_name") == "imapproxy.audit":
                count += 1
    return count


def relay_throughput(quick: bool) -> bool:
    """Part 2; prints its table. False when its target is missed."""
    plan = QUICK_PLAN if quick else FULL_PLAN
    print()
    print(
        f"relay throughput, audit rule off vs on ({'--quick' if quick else 'full'} run, "
        f"{plan.rounds} rounds, the proxies taking turns)"
    )
    print("  imapproxy with TLS to the client and plain IMAP to Dovecot, logging to a file;")
    print(f"  on: [rules] dir with rules/{AUDIT_RULE_FILE.name}; off: no [rules]")
    sys.stdout.flush()
    measures = [
        Measure("UID FETCH n (FLAGS ENVELOPE), 1 client", "cmd/s", "us/cmd", 0),
        Measure(f"UID FETCH n (FLAGS ENVELOPE), {plan.clients} clients", "cmd/s", "us/cmd", 0),
        Measure(f"bulk UID FETCH 1:* BODY.PEEK[], {plan.messages} x 5 MiB", "MB/s", "s/GB", 2),
    ]
    root = Path(tempfile.mkdtemp(prefix="imapproxy-bench-rules-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes reach its work dir inside
    setups: dict[str, AuditSetup] = {}
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(DovecotServer(root / "dovecot"))
            bulk_user = server.add_user("bulk", with_corpus=False)
            relay.write_bulk_messages(bulk_user, plan.messages, relay.MESSAGE_SIZE)
            users = [server.add_user(f"client{i:03d}") for i in range(plan.clients)]
            uids = [m.uid for m in server.corpus.folder("INBOX").messages]
            tls = ProxyTls.create(root / "proxy-tls")
            rules_dir = root / "rules"
            rules_dir.mkdir()
            shutil.copy(AUDIT_RULE_FILE, rules_dir)
            for mode in MODES:
                port, pid = stack.enter_context(
                    relay.run_imapproxy(
                        root / f"proxy-{mode}",
                        tls,
                        server,
                        "none",
                        rules={"dir": str(rules_dir)} if mode == "on" else None,
                    )
                )
                setup = AuditSetup(mode, relay.Target(mode, port, tls.client_context(), pid))
                setups[mode] = setup
                stack.callback(setup.close)  # the clients log out before the proxy stops
            relay.progress("connecting")
            for setup in setups.values():
                setup.connect(bulk_user, users)
            for r in range(plan.rounds):
                relay.progress(f"round {r + 1}/{plan.rounds}")
                order = MODES if r % 2 == 0 else MODES[::-1]
                for mode in order:
                    s = setups[mode]
                    measures[0].add(mode, s.small(s.one, uids, plan.one_client, plan.warmup))
                for mode in order:
                    s = setups[mode]
                    measures[1].add(mode, s.small(s.many, uids, plan.many_client, plan.warmup))
                for mode in order:
                    measures[2].add(mode, setups[mode].bulk_fetch(plan.bulk_seconds))
        # The proxies have stopped: their logs are complete.
        lines = {mode: audit_lines(root / f"proxy-{mode}" / "imapproxy.log") for mode in MODES}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    width = max(len(m.label) for m in measures)
    print(
        f"  {'measure (median of rounds)':<{width}}  {'off':>13}  {'on':>13}  {'on/off':>6}"
        f"  {'relay CPU off / on':>24}"
    )
    worst = min(m.ratio() for m in measures)
    for m in measures:
        off, on = (statistics.median(m.rates[mode]) for mode in MODES)
        cpu_off, cpu_on = (statistics.median(m.cpu[mode]) for mode in MODES)
        cpu = f"{cpu_off:,.{m.cpu_digits}f} / {cpu_on:,.{m.cpu_digits}f} {m.cpu_unit}"
        print(
            f"  {m.label:<{width}}  {off:>7,.0f} {m.unit:<5}  {on:>7,.0f} {m.unit:<5}"
            f"  {m.ratio():5.2f}x  {cpu:>24}"
        )
    met = worst >= RELAY_TARGET
    print(
        f"  target on >= {RELAY_TARGET:g}x off for every measure: worst {worst:.2f}x, "
        + ("met" if met else "NOT met")
    )
    sent = {mode: setups[mode].commands for mode in MODES}
    print(
        f'  audit lines (event "command" on imapproxy.audit): on {lines["on"]:,} for '
        f"{sent['on']:,} commands measured; off {lines['off']:,} for {sent['off']:,}"
    )
    if lines["on"] < sent["on"] or lines["off"]:
        raise SystemExit(
            "the audit lines do not match the setups: expected at least one per command "
            "with the audit rule on and none with it off"
        )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a short relay run")
    args = parser.parse_args()
    decision_costs(args.quick)
    try:
        relay_throughput(args.quick)
    except DovecotNotInstalled as exc:
        raise SystemExit(f"relay throughput not measured: {exc}") from None


if __name__ == "__main__":
    main()
