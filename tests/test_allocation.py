"""Allocation over distance, decay fits, dependency path length, memory tracker."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longlab.analysis.allocation import effective_allocation, fit_decay, keys_vs_distance, log_binned
from longlab.analysis.complexity import flops_vs_n, masked_costs
from longlab.analysis.memtrack import TensorMemoryTracker
from longlab.analysis.paths import dependency_path_length
from longlab.attention.patterns import Dense, Dilated, SlidingWindow


def test_keys_vs_distance_counts_diagonals():
    d, counts = keys_vs_distance(Dense(), 2, 10)
    assert np.allclose(counts, [1] + [2 * (10 - k) / 10 for k in range(1, 10)])
    _, window = keys_vs_distance(SlidingWindow(3, causal=True), 1, 10)
    assert np.allclose(window[:3], [1, 0.9, 0.8]) and np.all(window[3:] == 0)
    pattern = Dilated((4, 8), (1, 2))
    _, union = keys_vs_distance(pattern, 2, 16)
    _, counted = keys_vs_distance(pattern, 2, 16, union=False)
    assert union.sum() == pytest.approx(int((pattern.multiplicity(2, 16) > 0).sum()) / 32)
    assert counted.sum() == pytest.approx(int(pattern.multiplicity(2, 16).sum()) / 32)


def test_fit_decay_recovers_parameters():
    d = np.arange(1, 200, dtype=float)
    exp_fit = fit_decay(d, 3.0 * np.exp(-d / 20.0))["exponential"]
    assert exp_fit.amplitude == pytest.approx(3.0) and 1 / exp_fit.rate == pytest.approx(20.0) and exp_fit.r2 > 0.999
    pow_fit = fit_decay(d, 5.0 * d**-1.5)["power"]
    assert pow_fit.amplitude == pytest.approx(5.0) and pow_fit.rate == pytest.approx(1.5)
    assert np.allclose(pow_fit.predict([1, 4]), [5.0, 5.0 / 8])
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_decay([0, 1], [1, 0])


def test_log_binned_averages_within_bins():
    centres, means = log_binned(np.arange(9), np.array([9, 1, 2, 2, 4, 4, 4, 4, 8.0]), bins_per_octave=1)
    assert np.allclose(means, [1, 2, 4, 8])  # d = 0 dropped; bins [1,2), [2,4), [4,8), [8,..]
    assert np.all(np.diff(centres) > 0)


@pytest.mark.parametrize("pattern", [Dilated((4, 8, 16), (1, 2, 4)), SlidingWindow(5, causal=True), Dense()])
def test_effective_allocation_rows_sum_to_one(pattern):
    q, k, v = (torch.randn(1, 3, 24, 4, dtype=torch.float64) for _ in range(3))
    res = effective_allocation(pattern, q, k, v)
    assert res.covered == 1.0 and res.max_row_error < 1e-10
    assert res.weight.sum() == pytest.approx(1.0)
    # weight only where the pattern has keys
    _, keys = keys_vs_distance(pattern, 3, 24)
    assert np.all(res.weight[keys == 0] == 0)


def test_dependency_path_length():
    assert dependency_path_length(Dense(), 1, 32) == 1
    assert dependency_path_length(SlidingWindow(4), 1, 32) == math.ceil(31 / 3)
    assert dependency_path_length(SlidingWindow(4, causal=True), 1, 32) == math.ceil(31 / 3)
    assert dependency_path_length(Dilated((8,), (1,)), 1, 32) == math.inf  # segments never talk
    for pattern in (Dilated.geometric(4, 2, 4), Dilated.geometric(2, 3, 3, causal=True), SlidingWindow(3)):
        assert dependency_path_length(pattern, 4, 30) == brute_path_length(pattern, 4, 30)


def brute_path_length(pattern, heads, n):
    """Breadth-first search from every source over the union graph (key j -> query i), Python loops."""
    union = (pattern.multiplicity(heads, n) > 0).any(0)
    worst = 0
    for src in range(n):
        seen, frontier, layers = {src}, {src}, 0
        want = set(range(src, n)) if pattern.causal else set(range(n))
        while not want <= seen:
            frontier = {i for j in frontier for i in range(n) if union[i, j]} - seen
            if not frontier:
                return math.inf
            seen |= frontier
            layers += 1
        worst = max(worst, layers)
    return worst


def test_complexity_reads_patterns():
    pattern = Dilated((4, 8), (1, 2))
    table = flops_vs_n({"dilated": pattern, "dense": Dense()}, [8, 16], head_dim=2, heads=2)
    assert table["dense"] == [4 * 2 * 2 * 64, 4 * 2 * 2 * 256]
    costs = masked_costs(pattern, 2, 16, head_dim=2, block=4)
    assert costs["gathered"] <= costs["block mask"] <= costs["dense mask"]


def test_memory_tracker_counts_new_tensors():
    with TensorMemoryTracker() as tracker:
        a = torch.zeros(1000, dtype=torch.float32)
        b = torch.zeros(500, dtype=torch.float64)
        del a
        c = torch.ones(10)
    assert tracker.peak_bytes == 4000 + 4000 and tracker.current_bytes == 4000 + 40
    del b, c


def test_memory_tracker_ignores_views_of_existing_tensors():
    x = torch.zeros(1000)
    with TensorMemoryTracker() as tracker:
        y = x.view(10, 100)[2:]
        z = y * 2
    assert tracker.peak_bytes == z.numel() * 4


def test_capture_qk_returns_the_layers_inputs_and_restores_it():
    from longlab.analysis.allocation import capture_qk
    from longlab.models import TinyLM
    from longlab.models.tiny import TinyLMConfig

    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=32, d_model=32, n_layers=1, n_heads=2, attention=["dense"]))
    idx = torch.randint(0, 256, (2, 16))
    q, k, v = capture_qk(model, idx, 0)
    attn = model.blocks[0].attn
    x = model.blocks[0].norm1(model.embed(idx))
    q_ref, k_ref, v_ref = attn.project(x)
    q_ref, k_ref = attn.rotate(q_ref, k_ref, torch.arange(16))
    for got, want in ((q, q_ref), (k, k_ref), (v, v_ref)):
        torch.testing.assert_close(got, want)
    assert "mix" not in vars(attn)
