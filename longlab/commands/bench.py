"""`longlab bench TARGET`: run a benchmark, print its rows as a table, write them as CSV.

The CSV goes to <--out>/<TARGET>_<device>.csv; --out defaults to ./data/bench relative to the working
directory. Targets are the plugins in `longlab.bench` (how to add one: that package's docstring).
"""
from __future__ import annotations

from .. import bench, plugins
from ..bench.common import DEFAULT_OUT, csv_path, write_csv
from ..table import format_table

NAME = "bench"
HELP = "benchmarks (ratios vs a baseline measured in the same run; CSV written under --out, default ./data/bench)"


def _add_out(parser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="folder for the CSV (default: %(default)s, relative to the working directory)")


def register(parser) -> None:
    sub = plugins.add_subparsers(parser, bench, dest="target", metavar="TARGET")
    for target_parser in sub.choices.values():
        _add_out(target_parser)
    _add_out(sub.add_parser("all", help="run every benchmark with its defaults"))


def main(args) -> int:
    targets = bench.targets()
    if args.target == "all":
        runs = [(module, plugins.defaults(module)) for module in targets.values()]
    else:
        runs = [(targets[args.target], args)]
    for module, options in runs:
        rows = module.main(options)
        print(f"\n== bench {module.NAME} ==")
        mode = getattr(module, "mode", None)  # optional: a variant of the benchmark with its own CSV and columns
        name, columns = mode(options) if mode else (module.NAME, getattr(module, "COLUMNS", None))
        print(format_table(rows, columns))
        path = write_csv(rows, csv_path(args.out, name, getattr(options, "device", None)))
        print(f"wrote {path}")
    return 0
