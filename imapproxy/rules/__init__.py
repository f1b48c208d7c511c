"""Rules: audit, access control and rewriting from ``rules/*.toml`` (docs/rules.md).

:func:`load_rules` reads and compiles a rules directory into a :class:`RuleSet`;
:meth:`RuleSet.decide` turns a :class:`Context` into a :class:`Decision`. Pure:
no I/O after loading, no trio. :mod:`.patterns` has mailbox canonicalisation and
LIST wildcards, :mod:`.model` the file format.
"""

from imapproxy.config import Config
from imapproxy.router import normalise_user
from imapproxy.rules.engine import (
    READONLY_DENY,
    WRITE_TARGETS,
    CachePolicy,
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


def load_configured_rules(config: Config) -> RuleSet | None:
    """The rule set a configuration names in ``[rules]`` (None: no rules).

    Raises:
        RuleError: a rule file is wrong (every problem, one line each).
    """
    settings = config.rules
    if settings.dir is None:
        return None
    normalise = normalise_user if settings.user_case == "lower" else str
    return load_rules(
        settings.dir,
        users_file=settings.users_file,
        default=settings.default,
        normalise_user=normalise,
        separator=settings.separator,
    )


__all__ = [
    "READONLY_DENY",
    "WRITE_TARGETS",
    "CachePolicy",
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
    "load_configured_rules",
    "load_rules",
]
