"""KVMemory: FIFO eviction, exact top-k vs brute force, errors, save/load, faiss backend."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import devices
from hypothesis import example, given
from hypothesis import strategies as st

from longlab.memory import KVMemory, exact_topk, recall_at_k, search

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def brute_topk(q, keys, k, normalize=False):
    if normalize:
        q, keys = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(keys, dim=-1)
    scores = q.double() @ keys.double().transpose(-1, -2)
    return scores.topk(min(k, keys.shape[-2]), dim=-1)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("normalize", [False, True])
def test_search_matches_brute_force(device, normalize):
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(3, 500, 16, generator=gen), torch.randn(3, 500, 8, generator=gen)
    mem = KVMemory(1000, 16, 8, heads=3, device=device, chunk=64).add(keys.to(device), values.to(device))
    q = torch.randn(3, 7, 16, generator=gen)
    res = mem.search(q.to(device), 10, normalize=normalize)
    want_scores, want_idx = brute_topk(q, keys, 10, normalize)
    assert res.scores.shape == (3, 7, 10) and res.keys.shape == (3, 7, 10, 16) and res.values.shape == (3, 7, 10, 8)
    torch.testing.assert_close(res.scores.cpu().double(), want_scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(res.indices.cpu(), want_idx)
    assert torch.equal(res.keys.cpu(), keys.gather(1, want_idx.view(3, -1, 1).expand(-1, -1, 16)).view(3, 7, 10, 16))
    assert torch.equal(res.positions.cpu(), want_idx)  # default positions count entries from 0
    assert (res.scores[..., :-1] >= res.scores[..., 1:]).all()


@given(n=st.integers(1, 300), k=st.integers(1, 40), chunk=st.integers(1, 128), group=st.integers(1, 8),
       method=st.sampled_from(["blocks", "threshold", "auto"]), scaled=st.booleans(),
       queries=st.sampled_from([1, 5]))  # auto takes the blocks path for one query per head (a decode step)
# chunks narrower than k: an intermediate merge has fewer than k candidates
@example(n=10, k=10, chunk=1, group=32, method="blocks", scaled=False, queries=5)
# the group-max pre-selection on every full chunk, a plain top-k on the last
@example(n=300, k=3, chunk=96, group=8, method="blocks", scaled=False, queries=5)
@example(n=3, k=3, chunk=1, group=2, method="threshold", scaled=False, queries=5)  # blocks rounded up to hold k keys
# 16 warm blocks, thresholds on groups, a ragged last block
@example(n=301, k=3, chunk=8, group=2, method="threshold", scaled=True, queries=5)
def test_exact_topk_any_chunk(n, k, chunk, group, method, scaled, queries):
    gen = torch.Generator().manual_seed(n * 1000 + k)
    q, keys = torch.randn(2, queries, 4, generator=gen, dtype=torch.float64), torch.randn(2, n, 4, generator=gen,
                                                                                     dtype=torch.float64)
    scale = torch.rand(2, n, generator=gen, dtype=torch.float64) if scaled else None
    scores, idx = exact_topk(q, keys, k, key_scale=scale, chunk=chunk, group=group, method=method)
    want_scores, want_idx = brute_topk(q, keys if scale is None else keys * scale[..., None], k)
    torch.testing.assert_close(scores, want_scores)
    assert torch.equal(idx, want_idx)


@pytest.mark.parametrize("planted", [5, 150, 299])  # in the warm blocks, in a grouped block, in the ragged last one
def test_threshold_search_finds_a_planted_best_key_in_any_block(planted):
    """301 keys, blocks of 8 (16 warm ones, then groups of 2, a last block of 5): the key planted to be every
    query's best is found, with the rest of the top-k, wherever it sits."""
    gen = torch.Generator().manual_seed(planted)
    q, keys = torch.randn(1, 6, 4, generator=gen, dtype=torch.float64), torch.randn(1, 301, 4, generator=gen,
                                                                                     dtype=torch.float64)
    keys[0, planted] = 50 * q[0].mean(0)  # far above every other score for queries sharing that direction
    scores, idx = exact_topk(q, keys, 4, chunk=8, group=2, method="threshold")
    want_scores, want_idx = brute_topk(q, keys, 4)
    assert torch.equal(idx, want_idx) and (idx == planted).any()
    torch.testing.assert_close(scores, want_scores)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_group_maxima_on_the_bits_decide_as_the_float_maxima(dtype):
    """Against positive thresholds, group maxima taken on the scores' bits (same-width ints) pass exactly the groups
    the float maxima pass: negative scores, -0.0, +-inf and ties with the threshold included."""
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 50, 4, 16, generator=gen, dtype=torch.float64) * 3
    scores[0, :5] = -scores[0, :5].abs()  # groups with only negative scores
    scores[1, :3, 0] = torch.tensor([-0.0, float("inf"), float("-inf")])[:, None]
    threshold = torch.rand(2, 1, 16, generator=gen, dtype=torch.float64) * 4 + 1e-3
    scores[0, 10, 2] = threshold[0, 0]  # a group whose max equals the threshold
    scores, threshold = scores.to(dtype), threshold.to(dtype)
    want = search.groups_reaching(scores, threshold)
    assert torch.equal(search.groups_reaching(scores, threshold, search.SAME_WIDTH_INT[dtype]), want)
    assert 0 < int(want.sum()) < want.numel()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sign", [1, -1])
def test_threshold_search_with_the_best_keys_after_the_warm_blocks(dtype, sign):
    """Keys of the warm blocks score low, the best ones come later: the thresholds rise through the scan, positive
    with sign = 1 (group maxima then taken on the bits; negative scores too), all negative with sign = -1 (every
    score is, and the bits must not be used) and the top-k is still exact."""
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(1, 6, 8, generator=gen, dtype=torch.float64).abs() * sign
    keys = torch.randn(1, 4000, 8, generator=gen, dtype=torch.float64)
    keys = keys if sign > 0 else keys.abs()
    keys[0, :1024] *= 0.05 if sign > 0 else 20  # the 16 warm blocks of 64 keys: low thresholds
    q, keys = q.to(dtype), keys.to(dtype)
    scores, idx = search.threshold_topk(q, keys, 5, chunk=64, group=4)
    want_scores, want_idx = brute_topk(q, keys, 5)
    assert torch.equal(idx, want_idx) and (idx >= 1024).all()
    torch.testing.assert_close(scores.double(), want_scores.double())


def test_fifo_eviction_drops_exactly_oldest():
    mem = KVMemory(5, 2)
    for step in range(3):  # 3 x 3 = 9 entries through a capacity-5 ring
        mem.add(torch.full((3, 2), float(step)) + torch.arange(3.0)[:, None] / 10, torch.zeros(3, 2))
    assert len(mem) == 5 and mem.total_added == 9
    assert mem.positions[mem.order()].tolist() == [4, 5, 6, 7, 8]
    mem.add(torch.randn(12, 2), torch.randn(12, 2))  # more than capacity at once: newest 5 survive
    assert mem.positions[mem.order()].tolist() == [16, 17, 18, 19, 20]


def test_clear_all_and_by_document():
    mem = KVMemory(6, 2)
    mem.add(torch.randn(4, 2), torch.randn(4, 2), doc_ids=torch.tensor([0, 1, 0, 1]))
    mem.add(torch.randn(4, 2), torch.randn(4, 2), doc_ids=2)  # wraps around
    mem.clear(doc_id=1)
    # 8 entries in 6 slots evicted positions 0 (doc 0) and 1 (doc 1); clearing doc 1 drops position 3
    assert len(mem) == 5 and mem.doc_ids[mem.order()].tolist() == [0, 2, 2, 2, 2]
    assert mem.positions[mem.order()].tolist() == [2, 4, 5, 6, 7]
    mem.add(torch.randn(2, 2), torch.randn(2, 2), doc_ids=3)  # FIFO continues after compaction
    assert mem.positions[mem.order()].tolist() == [4, 5, 6, 7, 8, 9]
    mem.clear()
    assert len(mem) == 0 and mem.search(torch.randn(3, 2), 4).scores.shape == (1, 3, 0)


def test_k_larger_than_count_returns_what_exists():
    mem = KVMemory(10, 4).add(torch.randn(3, 4), torch.randn(3, 4))
    assert mem.search(torch.randn(2, 4), 8).indices.shape == (1, 2, 3)


def test_search_returns_no_gradient_into_memory():
    keys = torch.randn(10, 4, requires_grad=True)
    mem = KVMemory(10, 4).add(keys, keys * 2)
    res = mem.search(torch.randn(2, 4, requires_grad=True), 3)
    assert not mem.keys.requires_grad and not res.keys.requires_grad and not res.scores.requires_grad


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.add(torch.randn(3, 5), torch.randn(3, 4)), "keys must have shape"),
        (lambda m: m.add(torch.randn(3, 4), torch.randn(2, 4)), "must match"),
        (lambda m: m.add(torch.tensor([[float("nan")] * 4]), torch.zeros(1, 4)), "keys contains NaN"),
        (lambda m: m.add(torch.tensor([[0.0, float("-inf"), 1.0, 2.0]]), torch.zeros(1, 4)), "keys contains"),
        (lambda m: m.add(torch.zeros(1, 4), torch.tensor([[1.0, float("nan"), 0.0, 0.0]])), "values contains NaN"),
        (lambda m: m.search(torch.randn(2, 3), 1), "queries must have shape"),
        (lambda m: m.search(torch.randn(2, 4), 0), "k must be"),
        (lambda m: m.add(torch.randn(3, 4), torch.randn(3, 4), positions=torch.zeros(2)), "positions"),
    ],
)
def test_bad_input_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(KVMemory(8, 4))


def test_bad_input_leaves_memory_unchanged_and_huge_finite_keys_are_accepted():
    mem = KVMemory(8, 4).add(torch.ones(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        mem.add(torch.tensor([[1.0, float("inf"), 0.0, 0.0]]), torch.zeros(1, 4))
    assert len(mem) == 2 and mem.total_added == 2
    mem.add(torch.full((1, 4), 1e30), torch.zeros(1, 4))  # finite, though its squared norm overflows float32
    assert len(mem) == 3 and torch.isinf(mem.key_norms[0, 2])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="capacity"):
        KVMemory(0, 4)
    with pytest.raises(ValueError, match="backend"):
        KVMemory(4, 4, backend="annoy")
    with pytest.raises(ValueError, match="heads"):
        KVMemory(4, 4, heads=2).add(torch.randn(3, 4), torch.randn(3, 4))


def test_repr_is_readable():
    text = repr(KVMemory(8, 4, heads=2).add(torch.randn(2, 3, 4), torch.randn(2, 3, 4), doc_ids=7))
    assert "3/8 entries" in text and "2 heads" in text and "docs=1" in text


def test_save_load_round_trip(tmp_path):
    mem = KVMemory(7, 4, 3, heads=2, dtype=torch.float64)
    for _ in range(3):
        mem.add(torch.randn(2, 3, 4), torch.randn(2, 3, 3), doc_ids=5)
    path = tmp_path / "mem.safetensors"
    mem.save(path)
    back = KVMemory.load(path)
    for name in ("capacity", "key_dim", "value_dim", "heads", "cursor", "count", "total_added", "dtype"):
        assert getattr(back, name) == getattr(mem, name), name
    q = torch.randn(2, 4, 4, dtype=torch.float64)
    a, b = mem.search(q, 5), back.search(q, 5)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    mem.add(torch.randn(2, 2, 4), torch.randn(2, 2, 3)), back.add(torch.randn(2, 2, 4), torch.randn(2, 2, 3))
    assert torch.equal(mem.positions, back.positions)  # eviction continues identically
    assert not list(tmp_path.glob("*.tmp")), "temp file left behind"
    assert b"pickle" not in path.read_bytes()[:200]


def test_load_truncated_or_mismatched_file_raises(tmp_path):
    path = tmp_path / "mem.safetensors"
    KVMemory(8, 4).add(torch.randn(5, 4), torch.randn(5, 4)).save(path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        KVMemory.load(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file

    save_file({"keys": torch.zeros(1, 2, 4)}, tmp_path / "other.safetensors", metadata={"format": "x"})
    with pytest.raises(ValueError, match="not a KVMemory file"):
        KVMemory.load(tmp_path / "other.safetensors")
    meta = {"format": "longlab.KVMemory", "capacity": "8", "key_dim": "4", "value_dim": "4", "heads": "1",
            "cursor": "5", "count": "5", "total_added": "5", "dtype": "torch.float32"}
    save_file({"keys": torch.zeros(1, 4, 4), "values": torch.zeros(1, 5, 4), "positions": torch.zeros(5).long(),
               "doc_ids": torch.zeros(5).long()}, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="mismatched"):
        KVMemory.load(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        KVMemory.load(tmp_path / "missing.safetensors")


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed (pip install 'longlab[faiss]')")
@pytest.mark.parametrize("normalize", [False, True])
def test_faiss_flat_matches_torch(normalize):
    gen = torch.Generator().manual_seed(1)
    keys, q = torch.randn(2, 400, 8, generator=gen), torch.randn(2, 9, 8, generator=gen)
    exact = KVMemory(500, 8, heads=2).add(keys, keys)
    flat = KVMemory(500, 8, heads=2, backend="faiss").add(keys, keys)
    a, b = exact.search(q, 6, normalize), flat.search(q, 6, normalize)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    assert recall_at_k(b, a) == 1.0
    more = torch.randn(2, 150, 8, generator=gen) * 3  # wraps the ring; the index is rebuilt after a change
    flat.add(more, more), exact.add(more, more)
    assert torch.equal(flat.search(q, 6, normalize).indices, exact.search(q, 6, normalize).indices)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed (pip install 'longlab[faiss]')")
@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_faiss_approximate_recall(index):
    gen = torch.Generator().manual_seed(2)
    keys, q = torch.randn(1, 3000, 16, generator=gen), torch.randn(1, 50, 16, generator=gen)
    exact = KVMemory(3000, 16).add(keys, keys).search(q, 10)
    approx = KVMemory(3000, 16, backend="faiss", index=index).add(keys, keys).search(q, 10)
    assert approx.indices.shape == exact.indices.shape
    assert 0.5 < recall_at_k(approx, exact) <= 1.0


def test_missing_faiss_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match=r"longlab\[faiss\]"):
        KVMemory(4, 4, backend="faiss")
