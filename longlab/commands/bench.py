"""`longlab bench TARGET`: run a benchmark, print a table, write CSV under data/bench/."""
from __future__ import annotations

from ..bench import targets
from ..bench.common import format_table, write_csv

NAME = "bench"
HELP = "benchmarks (ratios vs dense SDPA measured in the same run; CSV written under data/bench/)"


def register(parser) -> None:
    sub = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, module in targets().items():
        target_parser = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(target_parser)
    sub.add_parser("all", help="run every benchmark with its defaults")


def main(args) -> int:
    chosen = targets() if args.target == "all" else {args.target: targets()[args.target]}
    for name, module in chosen.items():
        if args.target == "all":
            parser_defaults = _defaults(module)
            for key, value in parser_defaults.items():
                setattr(args, key, value)
        rows = module.run(args)
        print(f"\n== bench {name} ==")
        print(format_table(rows, getattr(module, "COLUMNS", None)))
        path = write_csv(rows, args.out)
        print(f"wrote {path}")
    return 0


def _defaults(module) -> dict:
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return vars(parser.parse_args([]))
