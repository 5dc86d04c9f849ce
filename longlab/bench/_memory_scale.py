"""`longlab bench memory --scale`: exact and approximate top-k over KVMemory from 16k to 16M keys.

Workload: one head, D = 64, float32 keys and values (standard normal, seeded),
1024 standard-normal queries, top-32. Per memory size, rows for:
  - `exact (KVMemory)`: `KVMemory.search(exact=True)`; `add_keys_per_s` = entries / seconds spent in `add`
    (batches of 2**20); `peak_mib` = tensors created by the search; `rss_gib` = the process's resident
    memory after the search (the memory's keys and values included); `search_s` is timed on a second run, without
    the peak tracker (it intercepts every tensor op);
  - `exact, float32 scan only (threshold_topk)`: where the search above used the bfloat16 screen
    (`longlab.memory.screened_search`), the same search without it; `same_neighbours` = the fraction of
    its top-32 that the screened search also returns (1 but for float32 near-ties);
  - `faiss flat (knn_inner_product)`: faiss's brute-force inner-product search (the kernel IndexFlatIP.search
    runs) over the memory's own key buffer without copying it (an IndexFlatIP would hold a second copy of
    the keys); `same_neighbours` = fraction of its top-32 that the exact search also returns;
  - `faiss ivf nprobe=p` (sizes >= --ivf-min): the same KVMemory API with backend="faiss", index="ivf":
    recall@32 against the exact answer and speed-up over it for each nprobe (a recall-against-time curve);
    `build_s` = training plus adding (done once, on the first search);
  - `save` / `load` (sizes in --persist-sizes): streaming safetensors, seconds and peak tensor memory.
Each row records the 1-minute load average before and after (`os.getloadavg`): timings from a loaded
machine (>= 2.5 on 2 cores) are "measured under load"; peak memory does not depend on load.

On a GPU (`device="cuda"`) the memory and the queries live there: `peak_mib` is the allocator's peak during the
search, `device_gib` what the memory holds on the GPU, searches are timed after a synchronize; the faiss rows
(faiss-cpu) and save/load are left out, being CPU work whatever the device.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..analysis.memtrack import timed_peak
from ..memory import KVMemory, exact_topk, recall_at_k
from ..memory.screened_search import screen_worthwhile
from .common import device_label, stamp

COLUMNS = ["keys", "method", "search_s", "speedup_vs_exact", "recall", "same_neighbours", "add_keys_per_s",
           "build_s", "peak_mib", "rss_gib", "device_gib", "load_before", "load_after"]
SIZES = [16384 * 4**i for i in range(6)]  # 16k .. 16M
NPROBES = [1, 4, 16, 64, 128, 256, 512]  # of nlist = sqrt(keys) lists: 1024 at 1M
BATCH = 2**20
FLOAT32_SCAN = "exact, float32 scan only (threshold_topk)"  # the method name of the search without its screen
CPU = torch.device("cpu")


def _rss_gib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fill(memory: KVMemory, n: int, dim: int, seed: int) -> float:
    """Add n seeded standard-normal keys (values = a copy of them) in batches, generated on the CPU and moved to
    the memory's device before the clock starts; seconds spent inside add."""
    gen, spent = torch.Generator().manual_seed(seed), 0.0
    for start in range(0, n, BATCH):
        keys = torch.randn(min(BATCH, n - start), dim, generator=gen).to(memory.device)
        _sync(memory.device)
        begin = time.perf_counter()
        memory.add(keys, keys)
        _sync(memory.device)
        spent += time.perf_counter() - begin
    return spent


def _timed(fn, device: torch.device = CPU):
    before = _load()
    seconds, peak = timed_peak(fn, device)
    return seconds, peak, before, _load()


def _timed_search(fn, device: torch.device = CPU):
    """Like `_timed`, but the seconds are a second, untracked run's: the peak-memory tracker intercepts every
    tensor op, which at thousands of blocks per search adds seconds that are not the search's (on a GPU the
    first run also loads the kernels)."""
    _, peak, before, _ = _timed(fn, device)
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start, peak, before, _load()


def measure_scale(sizes=SIZES, dim: int = 64, num_queries: int = 1024, k: int = 32, nprobes=NPROBES,
                  ivf_min: int = 65536, persist_sizes=(), folder=None, progress: bool = True,
                  on_row=None, ivf_max: int | None = None, device="cpu") -> list[dict]:
    """Rows of the memory scale benchmark (see the module docstring), on the CPU or a GPU. on_row(rows so far):
    called after each memory size (e.g. to save partial results of a long run)."""
    device = torch.device(device)
    on_cpu = device.type == "cpu"
    try:
        from ..memory.faiss_backend import faiss_with_torch_threads
        faiss = faiss_with_torch_threads() if on_cpu else None
    except ImportError:
        faiss = None
    queries = torch.randn(num_queries, dim, generator=torch.Generator().manual_seed(1)).to(device)
    warm = KVMemory(4096, dim, device=device)  # first-use costs (allocator, kernels, the tracker) out of the rows
    _fill(warm, 4096, dim, seed=0)
    timed_peak(lambda: warm.search(queries, k), device)
    rows = []

    def row(n, method, seconds, before, after, **extra):
        rows.append({"keys": n, "method": method, "search_s": seconds, "speedup_vs_exact": "", "recall": "",
                     "same_neighbours": "", "add_keys_per_s": "", "build_s": "", "peak_mib": "", "rss_gib": "",
                     **extra, "load_before": before, "load_after": after, "queries": num_queries, "dim": dim,
                     "k": k, "device": device_label(device), "threads": torch.get_num_threads(), **stamp()})

    for n in tqdm(sizes, desc="bench memory --scale", unit="size", disable=not progress):
        ivf = faiss is not None and n >= ivf_min and (ivf_max is None or n <= ivf_max)
        memory = KVMemory(n, dim, backend="faiss" if ivf else "torch", index="ivf", device=device)
        add_s = _fill(memory, n, dim, seed=n)
        found = {}
        t_exact, peak, before, after = _timed_search(lambda: found.update(exact=memory.search(queries, k, exact=True)),
                                                     device)
        exact = found["exact"]
        row(n, "exact (KVMemory)", t_exact, before, after, speedup_vs_exact=1.0, recall=1.0,
            add_keys_per_s=n / add_s, peak_mib=peak / 2**20, rss_gib=_rss_gib(),
            device_gib="" if on_cpu else torch.cuda.memory_allocated(device) / 2**30)
        if screen_worthwhile(queries[None], memory.keys[:, :n], k, None, memory.chunk):
            # the search above went through the bfloat16 screen: the float32 scan alone, for comparison
            t_scan, peak, before, after = _timed_search(lambda: found.update(
                scan=exact_topk(queries[None], memory.keys[:, :n], k, chunk=memory.chunk, method="threshold")))
            same = recall_at_k(_Indices(found.pop("scan")[1]), exact)
            row(n, FLOAT32_SCAN, t_scan, before, after,
                speedup_vs_exact=t_exact / t_scan, same_neighbours=same, peak_mib=peak / 2**20)
        if faiss is not None:
            keys_np = memory.keys[0, :n].numpy()  # a view: no copy
            before = _load()
            start = time.perf_counter()
            _, ref_index = faiss.knn(queries.numpy(), keys_np, k, metric=faiss.METRIC_INNER_PRODUCT)
            t_faiss = time.perf_counter() - start
            same = recall_at_k(_Indices(exact.indices), _Indices(torch.from_numpy(ref_index)[None]))
            row(n, "faiss flat (knn_inner_product)", t_faiss, before, _load(), speedup_vs_exact=t_exact / t_faiss,
                same_neighbours=same)
            del keys_np  # a view of the memory's keys: it would keep 4 GiB alive after `del memory`
        if ivf:
            before = _load()
            start = time.perf_counter()
            memory.nprobe = nprobes[0]
            memory.search(queries[:1], k)  # trains and fills the index
            build_s = time.perf_counter() - start
            for nprobe in nprobes:
                memory.nprobe = nprobe
                before = _load()
                start = time.perf_counter()
                approx = memory.search(queries, k)
                seconds = time.perf_counter() - start
                row(n, f"faiss ivf nprobe={nprobe}", seconds, before, _load(), speedup_vs_exact=t_exact / seconds,
                    recall=recall_at_k(approx, exact), build_s=build_s, rss_gib=_rss_gib())
        if n in persist_sizes and on_cpu:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                path = Path(tmp, "memory.safetensors")
                seconds, peak, before, after = _timed(lambda: memory.save(path))
                row(n, "save (streaming safetensors)", seconds, before, after, peak_mib=peak / 2**20)
                del memory
                loaded = {}
                seconds, peak, before, after = _timed(lambda: loaded.update(m=KVMemory.load(path)))
                same = torch.equal(loaded["m"].search(queries[:8], k, exact=True).indices, exact.indices[:, :8])
                row(n, "load (streaming safetensors)", seconds, before, after, peak_mib=peak / 2**20,
                    rss_gib=_rss_gib(), same_neighbours=float(same))
                loaded.clear()
        else:
            del memory
        if on_row is not None:
            on_row(rows)
    return rows


class _Indices:
    """Just enough of a SearchResult for recall_at_k."""

    def __init__(self, indices):
        self.indices = indices


def quiet(rows, limit: float = 2.5) -> bool:
    """True when every row was measured with the 1-minute load average below `limit`."""
    return all(float(r["load_before"]) < limit and float(r["load_after"]) < limit for r in rows)
