"""Sequence parallelism: one algorithm, two worlds.

- `simulate(method, q, k, v, world_size, causal=False, **opts) -> (out, trace)`: ranks as threads of this
  process (`SimGroup`), every transfer recorded and timed by an alpha-beta clock;
- `launch(...)`: the same on real processes (`TorchGroup`, gloo on CPU), measured times;
- methods: "ulysses" (all-to-all seq <-> heads), "ring" / "zigzag" (k/v blocks around the ring, lse merge),
  "longnet" (dilated attention: sparse k/v all-gathered within a segment's ranks), and "megatron" as a cost
  formula; each is one `MethodSpec` in the registry `methods` (`get_method(name)`);
- `cost`: per-method communication volume and alpha-beta time; `calibrate`: measure gloo alpha/beta.

Layout: `methods/` (one file per method: algorithm, sharding, options, cost formula), `comm/` (the
Communicator protocol, the simulated and torch.distributed groups, the recorded trace), `run/` (simulate,
launch, the process machinery, the CLI); `spec.py`, `sharding.py`, `cost.py`, `calibrate.py` and
`holdings.py` (who holds what after each step, for figures) beside them.
Entry points for real clusters: `longlab parallel ...` and `torchrun -m longlab.parallel.run ...`.
"""
from .calibrate import calibrate, load_alpha_beta
from .comm import AlphaBeta, Communicator, Event, SimGroup, SimWorld, Tag, TorchGroup, Trace
from .cost import Workload, bytes_per_rank, comm_time, plan
from .methods import ALL_METHODS, METHODS, REGISTRY, get_method
from .methods.longnet import longnet_attention
from .methods.ring import ring_attention
from .methods.ulysses import ulysses_attention
from .run import launch, simulate
from .spec import MethodSpec

__all__ = [
    "simulate", "launch", "SimGroup", "SimWorld", "TorchGroup", "Communicator", "Tag", "Trace", "Event",
    "AlphaBeta", "ulysses_attention", "ring_attention", "longnet_attention", "Workload", "plan", "bytes_per_rank",
    "comm_time", "METHODS", "ALL_METHODS", "REGISTRY", "MethodSpec", "get_method", "calibrate", "load_alpha_beta",
]
