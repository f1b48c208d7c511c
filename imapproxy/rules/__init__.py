"""Rules: audit, access control and rewriting from ``rules/*.toml`` (docs/rules.md).

:func:`load_rules` reads and compiles a rules directory into a :class:`RuleSet`;
:meth:`RuleSet.decide` turns a :class:`Context` into a :class:`Decision`. Pure:
no I/O after loading, no trio. :mod:`.patterns` has mailbox canonicalisation and
LIST wildcards, :mod:`.model` the file format.
"""

from imapproxy.rules.engine import (
    READONLY_DENY,
    WRITE_TARGETS,
    CompiledRule,
    Context,
    Decision,
    Deny,
    Limits,
    Rewrite,
    RuleError,
    RuleSet,
    Shadowed,
    compile_rule,
    load_rules,
)
from imapproxy.rules.patterns import MailboxPattern, canonical

__all__ = [
    "READONLY_DENY",
    "WRITE_TARGETS",
    "CompiledRule",
    "Context",
    "Decision",
    "Deny",
    "Limits",
    "MailboxPattern",
    "Rewrite",
    "RuleError",
    "RuleSet",
    "Shadowed",
    "canonical",
    "compile_rule",
    "load_rules",
]
