"""The per-rank program shared by `simulate` (threads) and `launch` (processes): pick the algorithm for a
method name, cut the inputs into shards, glue outputs back."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention.validate import check_qkv
from . import layout
from .dilated_dist import check_longnet, longnet_attention
from .ring import ring_attention
from .ulysses import check_ulysses, ulysses_attention

LONGNET_OPTIONS = ("segment_lengths", "dilation_rates", "offsets")


def rank_program(method, causal: bool, scale, seq_len: int, opts: dict) -> Callable:
    """fn(group, q_shard, k_shard, v_shard) -> out_shard for a method name (or a custom callable
    fn(group, q, k, v, causal=..., scale=..., **opts), e.g. to test failure handling)."""
    if callable(method):
        return lambda g, q, k, v: method(g, q, k, v, causal=causal, scale=scale, **opts)
    if method == "ulysses":
        _no_options(method, opts)
        return lambda g, q, k, v: ulysses_attention(g, q, k, v, causal=causal, scale=scale, seq_len=seq_len)
    if method in ("ring", "zigzag"):
        _no_options(method, opts)
        mode = "zigzag" if method == "zigzag" else "contiguous"
        return lambda g, q, k, v: ring_attention(g, q, k, v, causal=causal, scale=scale, layout=mode)
    if method == "longnet":
        unknown = set(opts) - set(LONGNET_OPTIONS)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)} for 'longnet'; it takes {LONGNET_OPTIONS}")
        return lambda g, q, k, v: longnet_attention(g, q, k, v, causal=causal, scale=scale, **opts)
    raise ValueError(f"method must be one of {layout.METHODS} or a callable, got {method!r}")


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
