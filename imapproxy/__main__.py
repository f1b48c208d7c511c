"""Command-line entry point: ``imapproxy <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imapproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="start a private Dovecot with a demo corpus and print how to connect"
    )
    demo.add_argument(
        "--dir", default=".demo", help="working directory for the demo (default: .demo)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from imapproxy.testing.demo import run_demo

        return run_demo(args.dir)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
