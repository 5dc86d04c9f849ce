"""Build a RETRO database folder from the standard library's .py files: resumable, one shard at a time.

Documents (sorted by path) are grouped into shards of about `shard_chunks` entries; each shard is encoded
and written atomically, and a shard already on disk with the same encoder, chunk size and documents is
skipped, so an interrupted `longlab retro build` picks up where it stopped. The manifest is written last.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tqdm.auto import tqdm

from ...checks import positive_int
from .chunks import ChunkEntries, chunk_document, count_chunks, stdlib_python_files
from .shards import read_manifest, read_shard, shard_name, write_manifest, write_shard


def plan_shards(sizes: list[int], chunk_size: int, shard_chunks: int) -> list[tuple[int, int]]:
    """Contiguous document ranges [first, stop) of about `shard_chunks` entries each (a long file is never split)."""
    ranges, first, count = [], 0, 0
    for i, size in enumerate(sizes):
        count += size // chunk_size
        if count >= shard_chunks:
            ranges.append((first, i + 1))
            first, count = i + 1, 0
    if first < len(sizes):
        ranges.append((first, len(sizes)))
    return ranges


def corpus_digest(names: list[str], sizes: list[int]) -> str:
    digest = hashlib.sha256("\n".join(f"{n}\t{s}" for n, s in zip(names, sizes)).encode())
    return digest.hexdigest()[:16]


def build_database(out_dir, encoder, chunk_size: int = 16, root=None, shard_chunks: int = 1 << 16,
                   progress: bool = True) -> dict:
    """Encode every chunk of the corpus under `root` (default: the standard library) into `out_dir`.

    Returns the manifest: chunk_size, encoder identity, documents (names), sizes, shards, entries, build
    seconds (of this call; shards found on disk cost nothing) and chunks_per_s (chunks encoded by this call).
    """
    m = positive_int("chunk_size", chunk_size, "bytes")
    positive_int("shard_chunks", shard_chunks)
    out = Path(out_dir)
    files = stdlib_python_files(root)
    names, sizes = [n for n, _ in files], [p.stat().st_size for _, p in files]
    digest = corpus_digest(names, sizes)
    try:
        manifest = read_manifest(out)
        if (manifest["chunk_size"] == m and manifest["encoder"] == encoder.identity
                and manifest["corpus_sha256"] == digest):
            return manifest
    except FileNotFoundError:
        pass
    ranges = plan_shards(sizes, m, shard_chunks)
    shards, encoded, start = [], 0, time.perf_counter()
    bar = tqdm(total=count_chunks(sizes, m), desc="retro build", unit="chunk", disable=not progress)
    for index, (first, stop) in enumerate(ranges):
        path = out / shard_name(index)
        expected = count_chunks(sizes[first:stop], m)
        try:
            keys, entries = read_shard(path, encoder.identity, m, (first, stop))
            if len(entries) != expected:
                raise ValueError(f"{path} has {len(entries)} entries, expected {expected}")
        except (FileNotFoundError, ValueError):  # missing, partial or stale: (re)build this shard
            parts = [chunk_document(files[d][1].read_bytes(), m, d) for d in range(first, stop)]
            entries = ChunkEntries.cat(parts, m)
            write_shard(path, encoder.encode(entries.chunks), entries, encoder.identity, (first, stop))
            encoded += len(entries)
        shards.append({"file": path.name, "doc_range": [first, stop], "count": len(entries)})
        bar.update(len(entries))
    bar.close()
    elapsed = time.perf_counter() - start
    manifest = {"chunk_size": m, "encoder": encoder.identity, "corpus_sha256": digest, "documents": names,
                "sizes": sizes, "shards": shards, "entries": sum(s["count"] for s in shards),
                "build_s": round(elapsed, 2), "chunks_encoded": encoded,
                "chunks_per_s": round(encoded / elapsed, 1) if encoded else None}
    write_manifest(out, manifest)
    return read_manifest(out)
