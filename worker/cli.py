"""`actionrunner`: the command line. Each group of subcommands registers itself from its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The full parser: local commands (check, run, schema) and pipeline commands (worker, actions,
    submit, demo)."""
    from worker import cli_local, cli_remote

    parser = argparse.ArgumentParser(
        prog="actionrunner",
        description="Run tenant-written password-reset actions in a sandbox.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_local.register(commands)
    cli_remote.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status.

    0: the command did its job (any flow outcome counts); 1: `check` found problems; 2: unusable input.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
