"""`longlab bench retro`: RETRO database build throughput and search latency per chunk at full size.

Build: chunk + encode + write every .py file of the standard library (or --root) into a temporary folder,
chunks/s. Search: the k nearest chunks from other documents for --queries chunks drawn from the database,
per backend: exact torch (KVMemory's chunked matmul top-k), faiss flat (exact) and faiss ivf (approximate:
its index build time and recall are reported too; recall counts a hit as correct when its score reaches the
exact k-th score, because duplicate chunks have equal keys and exact search breaks such ties arbitrarily).
Uses --db when it exists (built by `longlab retro build`), else the freshly built temporary database.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from .common import device_label, stamp

NAME = "retro"
HELP = "RETRO chunk database: build throughput (chunks/s) and search ms per chunk, exact vs faiss"
COLUMNS = ["stage", "method", "entries", "queries", "k", "seconds", "chunks_per_s", "ms_per_chunk",
           "index_build_s", "recall_vs_exact"]


def register(parser) -> None:
    parser.add_argument("--db", default="data/retro/db_m16", help="database to search (built if missing)")
    parser.add_argument("--root", default=None, help="corpus for the build timing (default: the standard library)")
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--backends", nargs="+", default=["torch", "faiss:flat", "faiss:ivf"])
    parser.add_argument("--skip-build", action="store_true", help="only time the search")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", default=None,
                        help="frozen TinyLM for the keys (default: data/checkpoints/tiny_memorizing.safetensors)")


def main(args) -> list[dict]:
    from ..memory.retro.build import build_database
    from ..memory.retro.db import RetroDatabase
    from ..memory.retro.encoder import ChunkEncoder

    torch.set_num_threads(args.threads)
    encoder = ChunkEncoder.from_checkpoint(args.checkpoint)
    blank = {"entries": "", "queries": "", "k": "", "seconds": "", "chunks_per_s": "", "ms_per_chunk": "",
             "index_build_s": "", "recall_vs_exact": ""}
    rows, tmp = [], None
    if not args.skip_build:
        tmp = Path(tempfile.mkdtemp(prefix="retro_bench_"))
        start = time.perf_counter()
        manifest = build_database(tmp / "db", encoder, args.chunk, root=args.root)
        seconds = time.perf_counter() - start
        rows.append({**blank, "stage": "build", "method": f"encoder layers={encoder.layers}",
                     "entries": manifest["entries"], "seconds": seconds,
                     "chunks_per_s": manifest["entries"] / seconds})
    folder = Path(args.db) if (Path(args.db) / "manifest.json").exists() else (tmp / "db" if tmp else Path(args.db))
    try:
        exact = None
        for backend in args.backends:
            kind, _, index = backend.partition(":")
            db = RetroDatabase.load(folder, backend=kind, index=index or "flat", identity=encoder.identity)
            pick = torch.randperm(len(db), generator=torch.Generator().manual_seed(0))[: args.queries]
            keys, docs = encoder.encode(db.entries.chunks[pick]), db.entries.doc_ids[pick]
            start = time.perf_counter()
            db.search(keys[:1], args.k, docs[:1])  # faiss builds its index on the first search
            first = time.perf_counter() - start
            start = time.perf_counter()
            found = db.search(keys, args.k, docs)
            seconds = time.perf_counter() - start
            if exact is None and kind == "torch":
                exact = found.scores[:, -1:]  # the exact k-th score per query
            # tie-aware: identical chunks (licence headers, blank lines) share a key, so any of them is a true hit
            recall = "" if exact is None else (found.scores >= exact - 1e-5).float().mean().item()
            rows.append({**blank, "stage": "search", "method": backend, "entries": len(db), "queries": args.queries,
                         "k": args.k, "seconds": seconds, "ms_per_chunk": 1e3 * seconds / args.queries,
                         "index_build_s": max(0.0, first - seconds / args.queries), "recall_vs_exact": recall})
            del db
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return [{"device": device_label("cpu"), "threads": args.threads, **row, **stamp()} for row in rows]
