"""`longlab bench memory`: KVMemory exact top-k vs faiss IndexFlatIP, same data, same run; add throughput.

Target: exact top-32 for 1024 queries over 1,000,000 keys of dim 64 (float32, CPU) within 1.5x of
faiss IndexFlatIP, returning the same neighbours (ties aside). One row per KVMemory chunk size plus a faiss
row; `ratio_vs_faiss` = our search time / faiss search time (below 1 = faster).

`--scale`: 16k to 16M keys, exact vs faiss flat, faiss IVF recall against time, streaming save/load,
load average per row; see `longlab.bench._memory_scale`.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..memory import KVMemory
from ._memory_scale import COLUMNS as SCALE_COLUMNS
from ._memory_scale import NPROBES, measure_scale
from ._memory_scale import SIZES as SCALE_SIZES
from .common import device_label, stamp, time_call

NAME = "memory"
HELP = "KVMemory exact top-k search and add throughput vs faiss IndexFlatIP (1M keys, dim 64)"
COLUMNS = ["method", "chunk", "keys", "queries", "dim", "k", "search_s", "ratio_vs_faiss", "same_neighbours",
           "non_tie_mismatches", "add_keys_per_s"]


def register(parser) -> None:
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 4096, 8192, 32768],
                        help="KVMemory key-chunk sizes to time (0 = the automatic default)")
    parser.add_argument("--add-batch", type=int, default=4096, help="entries per add() call when filling")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch + faiss threads (0 = leave torch's default)")
    parser.add_argument("--device", default="cpu")
    scale = parser.add_argument_group("--scale: exact and faiss IVF search from 16k to 16M keys (CSV "
                                      "memory_scale_<device>.csv; see longlab.bench._memory_scale)")
    scale.add_argument("--scale", action="store_true", help="run the scale benchmark instead")
    scale.add_argument("--scale-sizes", type=int, nargs="+", default=SCALE_SIZES)
    scale.add_argument("--nprobes", type=int, nargs="+", default=NPROBES, help="IVF lists scanned per query")
    scale.add_argument("--ivf-min", type=int, default=65536, help="smallest memory that also gets an IVF index")
    scale.add_argument("--persist-sizes", type=int, nargs="*", default=[SCALE_SIZES[-1]],
                       help="sizes also saved and loaded (streaming safetensors, in a temporary folder)")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _fill(memory: KVMemory, keys: torch.Tensor, batch: int) -> None:
    values = keys.new_zeros(keys.shape[0], memory.value_dim)
    for start in range(0, keys.shape[0], batch):
        memory.add(keys[start : start + batch], values[start : start + batch])


def _agreement(indices, scores, ref_indices, ref_scores, tol=1e-4) -> tuple[float, int]:
    """Fraction of reference neighbours we also return, and how many misses are NOT explained by a tied score."""
    same = (indices[..., :, None] == ref_indices[..., None, :]).any(-1)
    missing = ~same
    # a swapped neighbour is a tie when its score equals the k-th score of the reference (both lists exact)
    kth = ref_scores[..., -1:].expand_as(scores)
    non_tie = missing & ((scores - kth).abs() > tol * kth.abs().clamp_min(1.0))
    return same.float().mean().item(), int(non_tie.sum())


def mode(args) -> tuple[str, list[str]]:
    """CSV name and table columns: the scale benchmark writes its own file."""
    return ("memory_scale", SCALE_COLUMNS) if args.scale else (NAME, COLUMNS)


def main(args) -> list[dict]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale:
        return measure_scale(args.scale_sizes, args.dim, args.queries, args.k, args.nprobes, args.ivf_min,
                             args.persist_sizes, device=device)
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(args.keys, args.dim, generator=gen)
    queries = torch.randn(args.queries, args.dim, generator=gen)
    base = {"keys": args.keys, "queries": args.queries, "dim": args.dim, "k": args.k}
    rows = []

    try:
        from ..memory.faiss_backend import faiss_with_torch_threads

        faiss = faiss_with_torch_threads()  # same threads as torch: a fair ratio
        index = faiss.IndexFlatIP(args.dim)
        t_add = _timed(lambda: [index.add(keys[s : s + args.add_batch].numpy())
                                for s in range(0, args.keys, args.add_batch)])
        q_np = queries.numpy()
        result = {}
        t_faiss = time_call(lambda: result.update(zip("DI", index.search(q_np, args.k))), args.repeats, warmup=0)
        ref_scores, ref_index = torch.from_numpy(result["D"]), torch.from_numpy(result["I"])
        rows.append({"method": "faiss IndexFlatIP", "chunk": "", **base, "search_s": t_faiss, "ratio_vs_faiss": 1.0,
                     "same_neighbours": 1.0, "non_tie_mismatches": 0, "add_keys_per_s": args.keys / t_add,
                     "device": device_label("cpu")})  # faiss-cpu searches on the CPU whatever --device says
        index.reset()  # free the 256 MB copy before filling KVMemory
    except ImportError:
        t_faiss = ref_scores = ref_index = None

    memory = KVMemory(args.keys, args.dim, 1, device=device)
    t_add = _timed(lambda: _fill(memory, keys.to(device), args.add_batch))
    q = queries.to(device)
    for chunk in tqdm(args.chunks, desc="bench memory", unit="chunk"):
        memory.chunk = chunk or None
        found = {}
        t = time_call(lambda: found.update(res=memory.search(q, args.k)), args.repeats,
                      warmup=int(device.type == "cuda"), device=device)  # CUDA: first call loads kernels
        res = found["res"]
        row = {"method": "KVMemory torch", "chunk": chunk or "auto", **base, "search_s": t,
               "add_keys_per_s": args.keys / t_add}
        if t_faiss is not None:
            same, non_tie = _agreement(res.indices[0].cpu(), res.scores[0].cpu(), ref_index, ref_scores)
            row.update(ratio_vs_faiss=t / t_faiss, same_neighbours=same, non_tie_mismatches=non_tie)
        rows.append(row)
    rows = [{"device": device_label(device), **row, **stamp()} for row in rows]
    return rows
