"""Megatron-LM sequence parallelism (Korthikanti et al. 2022, arXiv 2205.05198), as a cost formula only.

Activations are sharded along the sequence outside attention; each of the attention and MLP blocks
all-gathers them (N x h) before and reduce-scatters after: 4 (P-1)/P B N h e bytes per rank and layer, about
4 N h, independent of P. Here for comparison in the cost figures; there is no rank program.
"""
from __future__ import annotations

from ..spec import CommStep, MethodSpec, Workload


def plan(world_size: int, w: Workload, opts: dict) -> list[CommStep]:
    p = world_size
    chunk = w.batch * w.seq_len * w.heads * w.head_dim * w.elem_size // p  # activations N x h, split P ways
    ops = ["all_gather", "reduce_scatter", "all_gather", "reduce_scatter"]  # attention block, MLP block
    return [CommStep(op, [p - 1] * p, [(p - 1) * chunk] * p, "activations") for op in ops]


SPEC = MethodSpec(
    name="megatron",
    summary="Megatron-SP: all-gather + reduce-scatter of the activations around attention and MLP (formula only)",
    sharding=None,
    plan=plan,
)
