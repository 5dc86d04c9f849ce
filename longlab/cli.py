"""The `longlab` command line. Subcommands are plugins, one module each in `longlab.commands`
(the protocol: `longlab.plugins`)."""
from __future__ import annotations

import argparse
import sys

from . import commands, plugins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longlab",
        description="longlab: explore how language models handle long sequences. "
        "Run `longlab COMMAND --help` for each command's options.",
    )
    plugins.add_subparsers(parser, commands, dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return plugins.discover(commands)[args.command].main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
