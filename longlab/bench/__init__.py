"""Benchmarks: each module in this package is one `longlab bench NAME` target.

How to add a benchmark: add ONE file here, e.g. `longlab/bench/focused.py`, that defines (the plugin
protocol of `longlab.plugins`, shared with the CLI commands):

    NAME = "focused"            the target word: `longlab bench focused`
    HELP = "one line"           shown in `longlab bench --help`; the module docstring is the long help
    register(parser)            add the benchmark's options (sizes, repeats, --device ...) with defaults
                                small enough to finish in minutes on a 2-core CPU
    main(args) -> list[dict]    run it and RETURN the rows, one dict per measurement (same keys in every
                                row); never write files, never change `args`
    COLUMNS = [...]             optional: the columns the printed table shows (default: all of them)
    mode(args) -> (name, cols)  optional: for a variant (e.g. `--scale`) the CSV name used instead of NAME
                                and its table columns

The `bench` command prints the rows as a table and writes them to `<--out>/<NAME>_<device>.csv`
(`--out` defaults to ./data/bench relative to the working directory; `_<device>` is the device type
of a `--device` option, left out when the benchmark has none). `longlab bench all` runs every target with
its defaults. Rows report ratios measured in the same run (ours vs a baseline), never timed assertions in
tests; `common` has the timing, environment stamp and CSV helpers.
"""
from __future__ import annotations

import importlib

from .. import plugins


def targets() -> dict:
    """Map NAME -> module for every benchmark module in this package."""
    return plugins.discover(importlib.import_module(__name__))
