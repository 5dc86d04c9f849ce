"""Run `longlab bench dilated --scale` / `longlab bench memory --scale` with their rows saved after every
measurement (a full run takes many minutes on 2 cores; partial results survive an interruption).

    .venv/bin/python data/bench/run_scale.py dilated [--dense-sizes 16384 32768 65536]
    .venv/bin/python data/bench/run_scale.py memory [--ivf-max 4194304]
    python3 data/bench/run_scale.py dilated --device cuda --sizes 4096 65536 1048576 4194304   (see .ci/gpu)

The recorded files came from (a 2-core machine shared with other work, so timings are "under load"):
    run_scale.py dilated --sizes 4096 16384 32768 65536 262144 1048576 --dense-sizes 16384 32768
    run_scale.py memory --ivf-max 1048576       (2 threads, nothing else running)

Writes data/bench/dilated_scale_<device>.csv / data/bench/memory_scale_<device>.csv (same rows as the CLI
command; <device> is cpu or cuda).
"""
from __future__ import annotations

import argparse
from pathlib import Path

# isort: off
import longlab  # noqa: F401  (first, before torch: it turns on huge-page allocations, see longlab/__init__.py)
import torch
# isort: on

from longlab.bench import _dilated_scale, _memory_scale
from longlab.bench.common import read_csv, write_csv

HERE = Path(__file__).resolve().parent

parser = argparse.ArgumentParser()
parser.add_argument("target", choices=["dilated", "memory"])
parser.add_argument("--dense-sizes", type=int, nargs="*", default=[16384, 32768, 65536])
parser.add_argument("--sizes", type=int, nargs="+", default=None, help="dilated N / memory keys (default: all)")
parser.add_argument("--ivf-max", type=int, default=None, help="memory: largest size that also gets an IVF index")
parser.add_argument("--queries", type=int, default=1024, help="memory: queries per search")
parser.add_argument("--append", action="store_true", help="keep the CSV's existing rows and add these after them")
parser.add_argument("--device", default="cpu", help="cpu or cuda")
parser.add_argument("--out", default=str(HERE), help="folder for the CSV")
args = parser.parse_args()
out = Path(args.out) / f"{args.target}_scale_{torch.device(args.device).type}.csv"
previous = read_csv(out) if args.append and out.exists() else []


def save(rows):
    write_csv(previous + rows, out)


if args.target == "dilated":
    rows = _dilated_scale.measure_scale(args.sizes or _dilated_scale.SIZES, dense_sizes=args.dense_sizes, on_row=save,
                                        device=args.device)
else:
    sizes = args.sizes or _memory_scale.SIZES
    rows = _memory_scale.measure_scale(sizes, num_queries=args.queries, persist_sizes=[sizes[-1]],
                                       ivf_max=args.ivf_max, on_row=save, device=args.device)
save(rows)
print(f"wrote {out}")
