"""Command-line entry point: ``imapproxy <command>``.

* ``check --config FILE``: validate the configuration and print the effective
  settings; exit 2 with one ``FILE: key.path: message`` line per problem on stderr.
* ``serve --config FILE``: validate as ``check`` does, set up logging, run the proxy
  until SIGTERM or SIGINT (:func:`imapproxy.server.run`).
* ``demo``: a private Dovecot with a demo corpus (``make demo``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from imapproxy import __version__

if TYPE_CHECKING:
    from imapproxy.config import Config

EXIT_CONFIG = 2
"""Exit status for a configuration that cannot be used (also argparse's usage errors)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imapproxy", description="An IMAP proxy and filtering middlebox."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check", help="validate a configuration file and print the effective settings"
    )
    check.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration")
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration")
    demo = sub.add_parser(
        "demo", help="start a private Dovecot with a demo corpus and print how to connect"
    )
    demo.add_argument(
        "--dir", default=".demo", help="working directory for the demo (default: .demo)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args.config)
    if args.command == "serve":
        return _serve(args.config)
    if args.command == "demo":
        from imapproxy.testing.demo import run_demo

        return run_demo(args.dir)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


def _check(path: str) -> int:
    from imapproxy.config import ConfigError, load_config
    from imapproxy.rules import load_configured_rules

    try:
        config = load_config(path)
        rules = load_configured_rules(config)
    except ConfigError as exc:  # RuleError is one too
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    print(config.summary())
    if rules is not None:
        print(rules.summary())
    return 0


def _serve(path: str) -> int:
    from imapproxy.config import ConfigError, load_config
    from imapproxy.logs import configure_logging
    from imapproxy.rules import load_configured_rules

    try:
        config = load_config(path)
        load_configured_rules(config)  # refused before listening; the proxy loads its own
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    try:
        configure_logging(config.logging)
    except OSError as exc:
        print(f"{config.source}: logging.file: cannot open: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # The proxy core, imported only to serve (``check`` works without it). By name,
    # so the type checks of this module do not depend on it: run(config) -> int.
    server = importlib.import_module("imapproxy.server")
    run: Callable[[Config], int] = server.run
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
