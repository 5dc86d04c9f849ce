"""Measure the alpha-beta model of this machine's gloo transport: alpha (s per message) and beta (s/byte).

Two local ranks exchange buffers of growing size with the same ring step the ring algorithm uses
(isend + irecv), several steps back to back per sample; the fastest sample per size (the least disturbed
by other work on a shared machine) feeds a least-squares line t(m) = alpha + m * beta, weighted by 1/t so
small and large messages count alike. Saved as JSON where the caller says (`longlab parallel --calibrate`
writes ./data/gloo_alpha_beta.json relative to the working directory by default); readers pass the path.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from pathlib import Path

import torch

from ..checks import positive_int
from .comm.protocol import Tag
from .comm.trace import AlphaBeta
from .run.processes import run_world

DEFAULT_FILE = Path("data") / "gloo_alpha_beta.json"  # the CLI's default, relative to the working directory
DEFAULT_SIZES = tuple(2**p for p in range(6, 23, 2))  # 64 B .. 4 MiB
BURST = 5
CALIBRATION = Tag("buffer", "calibration buffer")


class _RingStepTimer:
    """Rank program: the fastest of `repeats` bursts of ring steps per buffer size -> (len(sizes),) seconds.
    A class, not a closure, because ranks are fresh processes that receive it pickled."""

    def __init__(self, sizes, repeats):
        self.sizes, self.repeats = tuple(sizes), repeats

    def __call__(self, group, q, k, v):
        fastest = []
        for size in self.sizes:
            buf = torch.zeros(size // 4, dtype=torch.float32)
            samples = []
            for _ in range(self.repeats + 1):  # first one warms up
                group.barrier()
                start = time.perf_counter()
                for _ in range(BURST):
                    group.ring_shift(buf, tag=CALIBRATION).wait()
                samples.append((time.perf_counter() - start) / BURST)
            fastest.append(min(samples[1:]))
        return torch.tensor(fastest, dtype=torch.float64)


def fit_alpha_beta(sizes, times) -> AlphaBeta:
    """Least-squares alpha, beta for t = alpha + m * beta, rows weighted by 1/t (relative error); both clipped
    at a tiny positive value."""
    m = torch.tensor([float(s) for s in sizes], dtype=torch.float64)
    t = torch.tensor([float(x) for x in times], dtype=torch.float64)
    design = torch.stack([torch.ones_like(m), m], dim=1) / t[:, None]
    alpha, beta = torch.linalg.lstsq(design, torch.ones_like(t)[:, None]).solution.flatten().tolist()
    return AlphaBeta(max(alpha, 1e-9), max(beta, 1e-15))


def calibrate(sizes=DEFAULT_SIZES, repeats: int = 10, timeout: float = 120.0, path=None) -> dict:
    """Measure gloo ring-step times between two local processes, fit alpha/beta; save JSON to `path` if given
    (its folder is created)."""
    positive_int("repeats", repeats)
    dummy = torch.zeros(1, 1, 2, 1)
    payloads = run_world(_RingStepTimer(sizes, repeats), [(dummy, dummy, dummy)] * 2, timeout=timeout)
    times = torch.maximum(payloads[0]["out"], payloads[1]["out"]).tolist()
    model = fit_alpha_beta(sizes, times)
    result = {
        "alpha_s": model.alpha,
        "beta_s_per_byte": model.beta,
        "bandwidth_GB_s": 1e-9 / model.beta,
        "backend": "gloo",
        "transport": "2 local processes on 127.0.0.1, isend+irecv ring step",
        "sizes_bytes": list(sizes),
        "fastest_step_s": times,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_alpha_beta(path) -> AlphaBeta:
    """The calibration saved at `path`, or the default `AlphaBeta()` when that file does not exist (yet)."""
    try:
        data = json.loads(Path(path).read_text())
        return AlphaBeta(data["alpha_s"], data["beta_s_per_byte"])
    except (OSError, KeyError, ValueError):
        return AlphaBeta()
