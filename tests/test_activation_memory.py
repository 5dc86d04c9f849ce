"""Per-rank activation memory of sequence-parallel attention: formulas against tensors sliced the way each method
holds them, the 1/P scaling, and the input checks."""
from __future__ import annotations

import pytest
import torch

from longlab.analysis.activation_memory import (
    ACTIVATION_METHODS,
    activation_bytes_per_rank,
    activation_elements_per_rank,
    what_it_holds,
)

N, H, D = 64, 8, 4


def _qkvo():
    return [torch.zeros(1, H, N, D) for _ in range(4)]  # q, k, v, out of one layer, (B, H, N, D)


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_formulas_match_the_tensors_each_method_holds(world):
    q, k, v, o = _qkvo()
    shard = slice(0, N // world)
    heads = slice(0, H // world)
    ulysses = sum(t[:, heads].numel() for t in (q, k, v, o))  # all positions, H/P heads
    ring = sum(t[:, :, shard].numel() for t in (q, k, v, o)) + k[:, :, shard].numel() + v[:, :, shard].numel()
    gathered_input = torch.zeros(1, N, H * D)
    megatron = gathered_input.numel() + ulysses
    assert activation_elements_per_rank("ulysses", N, H, D, world) == ulysses
    assert activation_elements_per_rank("ring", N, H, D, world) == ring
    assert activation_elements_per_rank("zigzag", N, H, D, world) == ring
    assert activation_elements_per_rank("megatron", N, H, D, world) == megatron
    assert activation_elements_per_rank("single device", N, H, D) == sum(t.numel() for t in (q, k, v, o))


def test_scaling_with_p_and_n():
    for method in ("ulysses", "ring"):
        per_rank = activation_elements_per_rank
        assert per_rank(method, N, H, D, 4) == per_rank(method, N, H, D, 2) / 2
        assert per_rank(method, 2 * N, H, D, 4) == 2 * per_rank(method, N, H, D, 4)
    gathered = N * H * D
    assert activation_elements_per_rank("megatron", N, H, D, 8) > gathered  # never below the gathered input
    assert activation_bytes_per_rank("ring", N, H, D, 2, dtype_bytes=2) == 2 * activation_elements_per_rank(
        "ring", N, H, D, 2)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="method"):
        activation_elements_per_rank("allreduce", N, H, D, 2)
    with pytest.raises(ValueError, match="world_size"):
        activation_elements_per_rank("single device", N, H, D, 2)
    with pytest.raises(ValueError, match="divide heads"):
        activation_elements_per_rank("ulysses", N, 6, D, 4)
    with pytest.raises(ValueError, match="n"):
        activation_elements_per_rank("ring", 0, H, D, 2)
    with pytest.raises(ValueError, match="method"):
        what_it_holds("nope")
    assert all(what_it_holds(m) for m in ACTIVATION_METHODS)
