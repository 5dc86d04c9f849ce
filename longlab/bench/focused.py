"""`longlab bench focused`: Focused Transformer costs. Decode: one new token through one Focused layer whose
memory holds M tokens (16k, 256k, 1M), memory read by exact top-k (KVMemory torch), faiss flat top-k, or all of
memory, against a dense KV-cached layer attending to the same total context (M + L keys) where that fits.
Training: one crossbatch step (forward + backward of a 3-layer TinyLM, dense / focused / dense) against d,
against the same model's plain step on the same 2b windows (no crossbatch keys).

Memory entries are random keys and values (the cost of a read does not depend on what was stored).
"""
from __future__ import annotations

import os
import random

import torch

from .common import device_label, stamp, time_call

NAME = "focused"
HELP = "Focused Transformer: decode cost per token vs memory size (exact top-k, faiss, all of memory) and " \
       "crossbatch training step time vs d"
COLUMNS = ["stage", "method", "memory_tokens", "d", "ms", "ratio_vs_dense", "load_1min"]


def register(parser) -> None:
    parser.add_argument("--memory", type=int, nargs="+", default=[16384, 262144, 1048576],
                        help="memory sizes in tokens (per head)")
    parser.add_argument("--methods", nargs="+", default=["topk", "faiss:flat", "all"],
                        help="memory reads: topk (exact torch), faiss:flat / faiss:hnsw, all (all of memory)")
    parser.add_argument("--dense-max", type=int, default=1048576 + 256,
                        help="largest dense KV-cached context timed (skip beyond: does not fit)")
    parser.add_argument("--d", type=int, nargs="+", default=[1, 2, 4, 8], help="crossbatch d values")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--topk", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-train", action="store_true", help="only the decode rows")
    parser.add_argument("--device", default="cpu")


def _config(args, memory_size: int, topk):
    from ..models import TinyLMConfig

    return TinyLMConfig(context=args.window, d_model=args.d_model, n_heads=args.heads, n_layers=3,
                        attention=("dense", "focused", "dense"), memory_size=memory_size,
                        memory_topk=args.topk, extra={"focused_topk": topk})


def _decode_rows(args, device) -> list[dict]:
    from ..attention import attend
    from ..memory.focused.layer import FocusedAttention
    from ..memory.store import KVMemory

    rows, gen = [], torch.Generator().manual_seed(0)
    head_dim = args.d_model // args.heads
    for m in args.memory:
        keys = torch.randn(args.heads, m, head_dim, generator=gen)
        values = torch.randn(args.heads, m, head_dim, generator=gen)
        dense_ms = None
        if m + args.window <= args.dense_max:
            q = torch.randn(1, args.heads, 1, head_dim, device=device)
            k = torch.cat([keys, torch.randn(args.heads, args.window, head_dim, generator=gen)], 1)[None].to(device)
            v = torch.cat([values, torch.randn(args.heads, args.window, head_dim, generator=gen)], 1)[None].to(device)
            proj = torch.nn.Linear(args.d_model, 4 * args.d_model, bias=False).to(device)  # qkv + out projections
            x = torch.randn(1, 1, args.d_model, device=device)
            with torch.no_grad():
                dense_ms = 1e3 * time_call(lambda: (proj(x), attend(q, k, v)), args.repeats, device=device)
            rows.append({"stage": "decode", "method": "dense KV cache (same total context)", "memory_tokens": m,
                         "d": "", "ms": dense_ms, "ratio_vs_dense": 1.0, "load_1min": _load()})
            del k, v
        for method in args.methods:
            topk = None if method == "all" else args.topk
            layer = FocusedAttention(_config(args, m, topk), 1).to(device).eval()
            backend, index = ("faiss", method.split(":")[1]) if method.startswith("faiss") else ("torch", "flat")
            try:
                bank = KVMemory(m, head_dim, heads=args.heads, device=device, backend=backend, index=index)
            except ImportError:
                continue
            for start in range(0, m, 65536):
                bank.add(keys[:, start : start + 65536], values[:, start : start + 65536])
            layer.lanes.set_sizes([m], device=device)
            layer.lanes[0].bank = bank
            x = torch.randn(1, 1, args.d_model, device=device)
            pos = torch.tensor([args.window - 1], device=device)
            with torch.no_grad():
                layer(x, pos, write_memory=False)  # builds a faiss index once (not a per-token cost)
                ms = 1e3 * time_call(lambda f=layer: f(x, pos, write_memory=False), args.repeats, device=device)
            name = {"topk": f"focused exact top-{args.topk}", "all": "focused all of memory"}.get(
                method, f"focused {method} top-{args.topk}")
            rows.append({"stage": "decode", "method": name, "memory_tokens": m, "d": "", "ms": ms,
                         "ratio_vs_dense": "" if dense_ms is None else ms / dense_ms, "load_1min": _load()})
            del layer, bank
    return rows


def _train_rows(args, device) -> list[dict]:
    from ..memory.focused.crossbatch import CrossbatchBatch, crossbatch_loss, make_layout
    from ..models import TinyLM

    torch.manual_seed(0)
    model = TinyLM(_config(args, 0, args.topk)).to(device)
    b, n = args.lanes, args.window
    gen = torch.Generator().manual_seed(1)
    tokens = [torch.randint(0, 256, (b, n), generator=gen).to(device) for _ in range(4)]

    def plain():
        _, loss = model(torch.cat(tokens[:2]), torch.cat(tokens[2:]))
        loss.backward()

    base_ms = 1e3 * time_call(plain, args.repeats, device=device)
    rows = [{"stage": "train step", "method": "plain (no crossbatch keys)", "memory_tokens": "", "d": 0,
             "ms": base_ms, "ratio_vs_dense": 1.0, "load_1min": _load()}]
    for d in args.d:
        if d > b:
            continue
        batch = CrossbatchBatch(*tokens, make_layout(b, d, random.Random(0)), [0] * b)

        def step():
            crossbatch_loss(model, batch).backward()

        ms = 1e3 * time_call(step, args.repeats, device=device)
        rows.append({"stage": "train step", "method": f"crossbatch, {b} lanes x 2 windows of {n}",
                     "memory_tokens": "", "d": d, "ms": ms, "ratio_vs_dense": ms / base_ms, "load_1min": _load()})
    return rows


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    try:
        from ..memory.faiss_backend import faiss_with_torch_threads
        faiss_with_torch_threads()  # faiss's OpenMP pool would otherwise use every core
    except ImportError:
        pass
    device = torch.device(args.device)
    rows = _decode_rows(args, device)
    if not args.skip_train:
        rows += _train_rows(args, device)
    return [{"device": device_label(device), **row, **stamp()} for row in rows]


def _load() -> float:
    """1-minute load average (a shared machine's timings are only as good as this is low)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")
