"""The per-rank program shared by `simulate` (threads) and `launch` (processes): pick the algorithm for a
method name, cut the inputs into shards, glue outputs back."""
from __future__ import annotations

import torch

from ..attention.validate import check_qkv
from . import layout
from .dilated_dist import check_longnet, longnet_attention
from .ring import ring_attention
from .ulysses import check_ulysses, ulysses_attention

LONGNET_OPTIONS = ("segment_lengths", "dilation_rates", "offsets")


class RankProgram:
    """fn(group, q_shard, k_shard, v_shard) -> out_shard for a method name, or for a custom callable
    fn(group, q, k, v, causal=..., scale=..., **opts) (e.g. to test failure handling). A plain picklable
    object, so `launch(..., start_method="spawn")` can ship it to fresh processes."""

    def __init__(self, method, causal: bool, scale, seq_len: int, opts: dict):
        if not callable(method) and method not in layout.METHODS:
            raise ValueError(f"method must be one of {layout.METHODS} or a callable, got {method!r}")
        if method == "longnet":
            unknown = set(opts) - set(LONGNET_OPTIONS)
            if unknown:
                raise TypeError(f"unknown options {sorted(unknown)} for 'longnet'; it takes {LONGNET_OPTIONS}")
        elif method in ("ring", "zigzag"):
            _no_options(method, {k: v for k, v in opts.items() if k != "overlap"})
        elif not callable(method):
            _no_options(method, opts)
        self.method, self.causal, self.scale, self.seq_len, self.opts = method, causal, scale, seq_len, dict(opts)

    def __call__(self, group, q, k, v):
        method, causal, scale = self.method, self.causal, self.scale
        if callable(method):
            return method(group, q, k, v, causal=causal, scale=scale, **self.opts)
        if method == "ulysses":
            return ulysses_attention(group, q, k, v, causal=causal, scale=scale, seq_len=self.seq_len)
        if method in ("ring", "zigzag"):
            mode = "zigzag" if method == "zigzag" else "contiguous"
            return ring_attention(group, q, k, v, causal=causal, scale=scale, layout=mode, **self.opts)
        return longnet_attention(group, q, k, v, causal=causal, scale=scale, **self.opts)

    def __repr__(self) -> str:
        return f"RankProgram({self.method!r}, causal={self.causal}, seq_len={self.seq_len}, opts={self.opts})"


def rank_program(method, causal: bool, scale, seq_len: int, opts: dict) -> RankProgram:
    """The per-rank callable for `method` (see `RankProgram`)."""
    return RankProgram(method, causal, scale, seq_len, opts)


def _no_options(method, opts):
    if opts:
        raise TypeError(f"method {method!r} takes no extra options, got {sorted(opts)}")


def prepare(method, q, k, v, world_size, opts) -> str:
    """Validate everything a rank would reject, up front, in the caller's process. Returns the layout name."""
    check_qkv(q, k, v)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"sequence parallel self-attention needs Nq == Nk, got {q.shape[2]} and {k.shape[2]}")
    if callable(method):
        return opts.pop("layout", "ring")
    if method not in layout.METHODS:
        raise ValueError(f"method must be one of {layout.METHODS} or a callable, got {method!r}")
    n = q.shape[2]
    layout.check_divisible(method, n, world_size)
    if method == "ulysses":
        check_ulysses(q.shape[1], world_size)
    if method == "longnet":
        from ..attention.patterns import Dilated

        pattern = Dilated(
            tuple(opts.get("segment_lengths", (2048, 4096, 8192))),
            tuple(opts.get("dilation_rates", (1, 2, 4))),
            False,
            opts.get("offsets", "reference"),
        )
        check_longnet(pattern, n, world_size)
    return method


def shards(layout_name: str, tensors, world_size: int) -> list[tuple[torch.Tensor, ...]]:
    """[(q_r, k_r, v_r) for each rank]."""
    split = [layout.split(layout_name, t, world_size) for t in tensors]
    return [tuple(parts[r] for parts in split) for r in range(world_size)]
