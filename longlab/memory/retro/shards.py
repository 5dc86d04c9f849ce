"""On-disk format of a RETRO database: a folder of safetensors shards plus manifest.json, all written atomically.

Each shard holds the entries of a contiguous range of documents (keys, [chunk, continuation] bytes, lengths,
doc ids, offsets) and, in its metadata, the encoder identity and chunk size it was built with. The manifest
is written last; a folder without one is an unfinished build that `longlab retro build` resumes, skipping
the shards already present. Never pickle: safetensors tensors and JSON only.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ...io import atomic_write
from .chunks import ChunkEntries

SHARD_FORMAT = "longlab.RetroShard"
MANIFEST_FORMAT = "longlab.RetroDatabase"
MANIFEST = "manifest.json"
_FIELDS = ("neighbours", "lengths", "doc_ids", "offsets")


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def write_shard(path, keys: torch.Tensor, entries: ChunkEntries, identity: dict, doc_range: tuple[int, int]) -> Path:
    """Write one shard atomically (temp file + rename: a crash never leaves half a shard under this name)."""
    tensors = {"keys": keys.contiguous().float(), **{f: getattr(entries, f).contiguous() for f in _FIELDS}}
    meta = {"format": SHARD_FORMAT, "encoder": json.dumps(identity, sort_keys=True),
            "chunk_size": str(entries.chunk_size), "doc_range": json.dumps(list(doc_range)), "count": str(len(entries))}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_shard(path, identity: dict | None = None, chunk_size: int | None = None,
               doc_range: tuple[int, int] | None = None) -> tuple[torch.Tensor, ChunkEntries]:
    """(keys (n, d), entries) of one shard; ValueError naming the file when it is corrupt, partial, or was
    built with another encoder / chunk size / document range than asked for."""
    from .encoder import check_same_encoder

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"RETRO shard {path} is missing; run `longlab retro build` to (re)build it")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is not a readable RETRO shard (truncated or corrupt?): {err}; delete it and "
                         f"run `longlab retro build` again") from err
    if meta.get("format") != SHARD_FORMAT or set(tensors) != {"keys", *_FIELDS}:
        raise ValueError(f"{path} is not a RETRO shard (format={meta.get('format')!r}, tensors={sorted(tensors)})")
    stored = json.loads(meta["encoder"])
    if identity is not None:
        check_same_encoder(stored, identity, str(path))
    if chunk_size is not None and int(meta["chunk_size"]) != chunk_size:
        raise ValueError(f"{path} has chunk_size={meta['chunk_size']}, expected {chunk_size}; rebuild the database")
    if doc_range is not None and tuple(json.loads(meta["doc_range"])) != tuple(doc_range):
        raise ValueError(f"{path} holds documents {meta['doc_range']}, expected {list(doc_range)}; rebuild it")
    n = int(meta["count"])
    if any(t.shape[0] != n for t in tensors.values()):
        raise ValueError(f"{path}: tensors have {[tuple(t.shape) for t in tensors.values()]} rows, metadata says "
                         f"{n}; the file is inconsistent, rebuild it")
    return tensors["keys"], ChunkEntries(*(tensors[f] for f in _FIELDS))


def write_manifest(folder, manifest: dict) -> Path:
    text = json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=1)
    return atomic_write(Path(folder) / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def read_manifest(folder) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no RETRO database at {folder} ({MANIFEST} missing: not built, or the build "
                                f"did not finish); run `longlab retro build --out {folder}`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rebuild the database") from err
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a RETRO database manifest (format={manifest.get('format')!r})")
    return manifest
