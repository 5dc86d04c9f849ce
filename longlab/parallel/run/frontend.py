"""The front end `simulate` (threads) and `launch` (processes) share: validate everything up front in the
caller's process, build the picklable per-rank program, cut the inputs into shards and glue outputs back."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...attention.validate import check_qkv
from ...checks import positive_int
from .. import sharding as sharding_lib
from ..comm.trace import AlphaBeta
from ..methods import METHODS, REGISTRY, get_method


class RankProgram:
    """fn(group, q_shard, k_shard, v_shard) -> out_shard for a registered method, or for a custom callable
    fn(group, q, k, v, causal=..., scale=..., **opts) (e.g. to test failure handling). Holds the method's
    name, not its function, so it pickles into fresh rank processes."""

    def __init__(self, method, causal: bool, scale, seq_len: int, opts: dict):
        self.method, self.causal, self.scale, self.seq_len, self.opts = method, causal, scale, seq_len, dict(opts)

    def __call__(self, group, q, k, v):
        if callable(self.method):
            return self.method(group, q, k, v, causal=self.causal, scale=self.scale, **self.opts)
        attention = REGISTRY[self.method].attention
        return attention(group, q, k, v, causal=self.causal, scale=self.scale, seq_len=self.seq_len, **self.opts)

    def __repr__(self) -> str:
        return f"RankProgram({self.method!r}, causal={self.causal}, seq_len={self.seq_len}, opts={self.opts})"


@dataclass
class Job:
    """A validated run: the per-rank program, how the sequence is sharded, the world size and the clock."""

    program: RankProgram
    sharding: str
    world_size: int
    model: AlphaBeta

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        return sharding_lib.split(self.sharding, x, self.world_size)

    def join(self, parts) -> torch.Tensor:
        return sharding_lib.join(self.sharding, list(parts))

    def shards(self, tensors) -> list[tuple[torch.Tensor, ...]]:
        """[(q_r, k_r, v_r) for each rank]."""
        split = [self.split(t) for t in tensors]
        return [tuple(parts[r] for parts in split) for r in range(self.world_size)]


def _custom_sharding(name) -> str:
    """A custom callable's `layout` option: a sharding name, or a registered method whose sharding to use."""
    if name in sharding_lib.SHARDINGS:
        return name
    if name in REGISTRY and REGISTRY[name].sharding is not None:
        return REGISTRY[name].sharding
    raise ValueError(f"layout must be one of {sharding_lib.SHARDINGS} or a method in {METHODS}, got {name!r}")


def prepare_job(method, q, k, v, world_size, causal: bool, scale, alpha, beta, opts: dict) -> Job:
    """Validate everything a rank would reject, in the caller's process, and return the `Job`.

    method: a registered name (`methods.METHODS`) or a callable (then opts may hold `layout`: its sharding).
    alpha, beta: the clock's seconds per message and per byte (None: `AlphaBeta()`'s defaults).
    """
    check_qkv(q, k, v)
    positive_int("world_size", world_size)
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"sequence parallel self-attention needs Nq == Nk, got {q.shape[2]} and {k.shape[2]}")
    opts = dict(opts)
    if callable(method):
        sharding = _custom_sharding(opts.pop("layout", "contiguous"))
        sharding_lib.check_divisible(sharding, q.shape[2], world_size)
    else:
        spec = get_method(method) if method in REGISTRY else None
        if spec is None or not spec.runnable:
            raise ValueError(f"method must be one of {METHODS} or a callable, got {method!r}")
        opts = spec.validate(q.shape[1], q.shape[2], world_size, opts)
        sharding = spec.sharding
    base = AlphaBeta()
    model = AlphaBeta(base.alpha if alpha is None else alpha, base.beta if beta is None else beta)
    return Job(RankProgram(method, causal, scale, q.shape[2], opts), sharding, world_size, model)


def apply_differentiable(function: type[torch.autograd.Function], q, k, v, *args) -> torch.Tensor:
    """function.apply(q, k, v, *args, needs_grad), under no_grad when no input requires grad."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad:
        return function.apply(q, k, v, *args, True)
    with torch.no_grad():
        return function.apply(q, k, v, *args, False)
