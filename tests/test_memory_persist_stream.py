"""Streaming KVMemory save/load: exact round trip through sliced writes and reads, plain safetensors on disk,
no second copy of the memory while loading, truncated or corrupt files named in the error."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from longlab.analysis.memtrack import timed_peak
from longlab.memory import KVMemory, persist


def filled(capacity=50, heads=3, n=70, seed=0):
    gen = torch.Generator().manual_seed(seed)
    memory = KVMemory(capacity, 6, 5, heads=heads)
    memory.add(torch.randn(heads, n, 6, generator=gen), torch.randn(heads, n, 5, generator=gen),
               doc_ids=torch.randint(0, 4, (n,), generator=gen))  # n > capacity: the ring has wrapped
    return memory


@pytest.mark.parametrize("slice_bytes", [8, 100, 2**20])  # down to one row per step
@pytest.mark.parametrize("n", [20, 70])
def test_round_trip_in_slices(tmp_path, monkeypatch, slice_bytes, n):
    monkeypatch.setattr(persist, "SLICE_BYTES", slice_bytes)
    memory = filled(n=n)
    path = tmp_path / "memory.safetensors"
    memory.save(path)
    loaded = KVMemory.load(path)
    count = memory.count
    for name in ("keys", "values", "key_norms"):  # (heads, capacity, ...): slots 0..count-1 are occupied
        assert torch.equal(getattr(loaded, name)[:, :count], getattr(memory, name)[:, :count]), name
    for name in ("positions", "doc_ids"):
        assert torch.equal(getattr(loaded, name)[:count], getattr(memory, name)[:count]), name
    assert (loaded.cursor, loaded.count, loaded.total_added) == (memory.cursor, memory.count, memory.total_added)
    q = torch.randn(3, 4, 6)
    assert torch.equal(loaded.search(q, 7).indices, memory.search(q, 7).indices)
    stored = load_file(str(path))  # an ordinary safetensors file
    assert torch.equal(stored["keys"], memory.keys[:, : memory.count])


def test_load_holds_one_memory_not_two(tmp_path):
    memory = filled(capacity=20000, heads=1, n=20000)
    path = tmp_path / "memory.safetensors"
    memory.save(path)
    buffers = sum(t.numel() * t.element_size() for t in (memory.keys, memory.values, memory.key_norms,
                                                         memory.positions, memory.doc_ids))
    _, peak = timed_peak(lambda: KVMemory.load(path))
    assert peak < 1.25 * buffers, (peak, buffers)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "memory.safetensors"
    filled().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 17])
    with pytest.raises(ValueError, match="memory.safetensors"):
        KVMemory.load(path)


def test_corrupt_header_names_the_file(tmp_path):
    path = tmp_path / "memory.safetensors"
    filled().save(path)
    data = bytearray(path.read_bytes())
    data[8:20] = b"not json !!!"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="memory.safetensors"):
        KVMemory.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        KVMemory.load(tmp_path / "nothing.safetensors")


def test_ivf_nprobe_trades_recall_and_exact_flag_searches_exactly():
    """Same API, approximate behind it: more lists scanned never lowers recall here, all lists = exact."""
    pytest.importorskip("faiss")
    from longlab.memory import recall_at_k

    gen = torch.Generator().manual_seed(3)
    keys, queries = torch.randn(4000, 16, generator=gen), torch.randn(50, 16, generator=gen)
    memory = KVMemory(4000, 16, backend="faiss", index="ivf", nprobe=1).add(keys, keys)
    exact = memory.search(queries, 10, exact=True)
    recalls = []
    for nprobe in (1, 4, 64):  # 64 >= nlist = 63 lists here: every list scanned
        memory.nprobe = nprobe
        recalls.append(recall_at_k(memory.search(queries, 10), exact))
    assert recalls[0] < 1.0 and recalls[-1] == 1.0, recalls
    with pytest.raises(ValueError, match="nprobe"):
        KVMemory(10, 4).nprobe = 2
