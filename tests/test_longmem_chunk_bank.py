"""LongMem's ChunkBank: token-to-chunk retrieval equals brute force (argmax q . mean(chunk keys)), the chunks expand
back to exactly their stored tokens, FIFO by chunk, safetensors round trip, clear errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.memory.longmem.chunk_bank import ChunkBank


def filled_bank(heads=2, d=8, csz=4, capacity=64, writes=3, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bank = ChunkBank(capacity, d, heads, csz, dtype=torch.float64)
    keys = [torch.randn(heads, n, d, generator=gen, dtype=torch.float64) for _ in range(writes)]
    values = [torch.randn(heads, n, d, generator=gen, dtype=torch.float64) for _ in range(writes)]
    for k, v in zip(keys, values):
        bank.add(k, v, doc_ids=7)
    return bank, torch.cat(keys, 1), torch.cat(values, 1)


@given(heads=st.integers(1, 3), csz=st.sampled_from([1, 2, 4]), chunks_asked=st.integers(1, 5),
       writes=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_retrieval_equals_brute_force_over_chunk_means(heads, csz, chunks_asked, writes, seed):
    d, n, capacity = 6, 8, 16  # capacity 16 tokens: after 2 writes the oldest chunks are evicted
    bank, keys, values = filled_bank(heads, d, csz, capacity, writes, n, seed)
    kept = min(capacity, writes * n)
    keys, values = keys[:, -kept:], values[:, -kept:]  # FIFO: the newest `capacity` tokens survive
    first_pos = writes * n - kept
    q = torch.randn(heads, 5, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    hits = bank.search(q, chunks_asked * csz)
    means = keys.view(heads, kept // csz, csz, d).mean(2)  # (H, C, D)
    scores = torch.einsum("hnd,hcd->hnc", q, means)
    c = min(chunks_asked, kept // csz)
    top = scores.topk(c, dim=-1)
    assert hits.keys.shape == (heads, 5, c * csz, d)
    assert torch.allclose(hits.chunk_scores[..., ::csz], top.values, atol=1e-12)
    best = scores.argmax(-1)  # the brute-force argmax chunk is the first one retrieved
    token_index = best[..., None] * csz + torch.arange(csz)  # (H, N, csz)
    expect_keys = torch.stack([keys[h, token_index[h]] for h in range(heads)])
    expect_values = torch.stack([values[h, token_index[h]] for h in range(heads)])
    assert torch.equal(hits.keys[:, :, :csz], expect_keys)
    assert torch.equal(hits.values[:, :, :csz], expect_values)
    assert torch.equal(hits.positions[:, :, :csz], token_index + first_pos)
    assert (hits.doc_ids == 7).all()


def test_fifo_evicts_one_chunk_at_a_time_and_clear_empties():
    bank = ChunkBank(8, 4, 1, 4, dtype=torch.float64)
    for i in range(3):  # three chunks written into a two-chunk bank
        bank.add(torch.full((1, 4, 4), float(i), dtype=torch.float64), torch.zeros(1, 4, 4, dtype=torch.float64))
    assert len(bank) == 8
    hits = bank.search(torch.ones(1, 1, 4, dtype=torch.float64), 8)
    assert sorted(hits.keys[0, 0, :, 0].unique().tolist()) == [1.0, 2.0]  # chunk 0 evicted, not all at once
    assert sorted(hits.positions[0, 0].tolist()) == list(range(4, 12))
    bank.clear()
    assert len(bank) == 0


def test_save_load_round_trip(tmp_path):
    bank, _, _ = filled_bank()
    bank.save(tmp_path / "bank.safetensors")
    back = ChunkBank.load(tmp_path / "bank.safetensors")
    assert back.chunk_size == bank.chunk_size and len(back) == len(bank)
    q = torch.randn(2, 3, 8, dtype=torch.float64)
    a, b = bank.search(q, 8), back.search(q, 8)
    for name in ("keys", "values", "positions", "doc_ids", "chunk_scores"):
        assert torch.equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("call, match", [
    (lambda: ChunkBank(10, 4, 1, 4), "capacity=10 is not a multiple of chunk_size=4"),
    (lambda: ChunkBank(8, 4, 1, 4).add(torch.zeros(1, 6, 4), torch.zeros(1, 6, 4)),
     "tokens written=6 is not a multiple of chunk_size=4"),
    (lambda: ChunkBank(8, 4, 1, 4).search(torch.zeros(1, 2, 4), 6), "k_tokens=6 is not a multiple"),
    (lambda: ChunkBank(8, 4, 2, 4).add(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)), r"must both be \(2, n, 4\)"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
