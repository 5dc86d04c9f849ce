"""longlab.analysis.dense_cost: counts checked against brute force on small sizes."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.analysis.dense_cost import dense_cost, dense_cost_table, format_bytes, format_count, max_n_for_memory


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, d, h", [(1, 4, 1), (7, 8, 2), (16, 3, 5)])
def test_flops_count_every_scored_pair(n, d, h, causal):
    scored = torch.ones(n, n, dtype=torch.bool)
    if causal:
        scored = scored.tril()
    pairs = h * int(scored.sum())  # brute force: each pair costs d mult-adds in QK^T and d in PV
    row = dense_cost(n, head_dim=d, heads=h, causal=causal, batch=3)
    assert row["flops"] == 3 * 2 * (2 * d) * pairs


def test_bytes():
    row = dense_cost(1024, head_dim=64, heads=8, dtype_bytes=4, batch=2)
    assert row["score_bytes"] == 2 * 8 * 1024 * 1024 * 4
    q = torch.empty(2, 8, 1024, 64, dtype=torch.float32)
    lse = torch.empty(2, 8, 1024, dtype=torch.float32)
    assert row["flash_bytes"] == 4 * q.nbytes + lse.nbytes  # q, k, v, out + lse
    assert row["kv_cache_bytes"] == 2 * q.nbytes


def test_growth_is_quadratic_vs_linear():
    a, b = dense_cost_table([4096, 8192])
    assert b["flops"] == 4 * a["flops"] and b["score_bytes"] == 4 * a["score_bytes"]
    assert b["kv_cache_bytes"] == 2 * a["kv_cache_bytes"]


@given(st.floats(1.0, 1e15), st.integers(1, 64), st.sampled_from([1, 2, 4]))
def test_max_n_for_memory_is_the_boundary(memory, heads, dtype_bytes):
    n = max_n_for_memory(memory, heads=heads, dtype_bytes=dtype_bytes)
    fits = lambda k: dense_cost(k, heads=heads, dtype_bytes=dtype_bytes)["score_bytes"] <= memory  # noqa: E731
    assert (n == 0 or fits(n)) and not fits(n + 1)


def test_format():
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(80) == "80 B" and format_bytes(2**40) == "1 TiB"
    assert format_count(2.5e12) == "2.5 T" and format_count(999) == "999"


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be"), (dict(n=8, heads=0), "heads"), (dict(n=8, head_dim=2.5), "head_dim"),
    (dict(n=True), "n must be"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dense_cost(**kwargs)


def test_bad_table_and_memory():
    with pytest.raises(ValueError, match="ns"):
        dense_cost_table([])
    with pytest.raises(ValueError, match="memory_bytes"):
        max_n_for_memory(0)
