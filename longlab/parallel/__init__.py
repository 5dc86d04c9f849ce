"""Sequence parallelism: one algorithm, two worlds.

- `simulate(method, q, k, v, world_size, causal=False, **opts) -> (out, trace)`: ranks as threads of this
  process (`SimGroup`), every transfer recorded and timed by an alpha-beta clock;
- `launch(...)`: the same on real processes (`TorchGroup`, gloo on CPU), measured times;
- methods: "ulysses" (all-to-all seq <-> heads), "ring" / "zigzag" (k/v blocks around the ring, lse merge),
  "longnet" (dilated attention: sparse k/v all-gathered within a segment's ranks);
- `cost`: per-method communication volume formulas and alpha-beta time; `calibrate`: measure gloo alpha/beta.
Entry points for real clusters: `longlab parallel ...` and `torchrun -m longlab.parallel.run ...`.
"""
from .calibrate import calibrate, load_alpha_beta
from .comm import Communicator
from .cost import Workload, bytes_per_rank, comm_time, plan
from .dilated_dist import longnet_attention
from .launch import launch
from .layout import METHODS
from .ring import ring_attention
from .sim_group import SimGroup, SimWorld
from .simulate import simulate
from .torch_group import TorchGroup
from .trace import AlphaBeta, Event, Trace
from .ulysses import ulysses_attention

__all__ = [
    "simulate", "launch", "SimGroup", "SimWorld", "TorchGroup", "Communicator", "Trace", "Event", "AlphaBeta",
    "ulysses_attention", "ring_attention", "longnet_attention", "Workload", "plan", "bytes_per_rank",
    "comm_time", "METHODS", "calibrate", "load_alpha_beta",
]
