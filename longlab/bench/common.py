"""Shared benchmark plumbing: timing, environment stamp, CSV in and out.

Nothing here decides where files go: the caller passes a path (`longlab bench --out DIR`, default
./data/bench relative to the working directory), so an installed longlab never writes into its own folder.
"""
from __future__ import annotations

import csv
import datetime as _dt
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..io import atomic_write

DEFAULT_OUT = Path("data", "bench")  # relative: resolved against the working directory when written


def add_shape_arguments(parser, sizes, heads: int = 8, head_dim: int = 64, repeats: int = 3,
                        repeats_help: str = "timed runs per measurement (the median or best is kept)") -> None:
    """--sizes, --heads, --head-dim, --repeats, --device: the options every attention benchmark shares."""
    parser.add_argument("--sizes", type=int, nargs="+", default=list(sizes), help="sequence lengths N")
    parser.add_argument("--heads", type=int, default=heads)
    parser.add_argument("--head-dim", type=int, default=head_dim)
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def random_qkv(heads: int, n: int, head_dim: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (1, heads, n, head_dim), standard normal, seeded by n: every method sees the same inputs at one N."""
    gen = torch.Generator().manual_seed(n)
    return tuple(torch.randn(1, heads, n, head_dim, generator=gen).to(device) for _ in range(3))


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, device=None) -> float:
    """Median wall-clock seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def device_label(device: torch.device | str = "cpu") -> str:
    """Short description of where a benchmark ran (CPU model / GPU name, threads)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def stamp() -> dict:
    """Columns added to every row: when, torch version."""
    return {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}


def csv_path(out_dir: str | Path, name: str, device: torch.device | str | None = None) -> Path:
    """Where benchmark `name` saves its rows: out_dir/<name>_<device type>.csv (out_dir/<name>.csv without a
    device), e.g. data/bench/dilated_cpu.csv."""
    suffix = f"_{torch.device(device).type}" if device is not None else ""
    return Path(out_dir) / f"{name}{suffix}.csv"


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write rows (dicts with the same keys) to CSV, creating parent folders. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise ValueError(f"no benchmark rows to write to {path}")

    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def read_csv(path: str | Path) -> list[dict]:
    """Read a benchmark CSV back (values as strings)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
