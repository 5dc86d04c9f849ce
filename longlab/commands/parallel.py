"""`longlab parallel`: run Ulysses / ring / zigzag / LongNet on real gloo processes and print time and bytes
per rank beside the alpha-beta model; `--calibrate` measures alpha/beta for gloo on this machine.

Under torchrun use `torchrun ... -m longlab.parallel.run --method ...` (same options)."""
from __future__ import annotations

from ..parallel.run import cli

NAME = "parallel"
HELP = "sequence parallelism on real processes: time and bytes per rank vs the model (--calibrate: alpha/beta)"


def register(parser) -> None:
    cli.add_arguments(parser)


def main(args) -> int:
    return cli.main(args)
