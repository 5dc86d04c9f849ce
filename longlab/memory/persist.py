"""Save / load a KVMemory with safetensors: plain tensors + string metadata, atomic, never pickle.

Only the occupied slots 0..count-1 are written (the ring fills slots in order, see store.py), together with
the write cursor, so a loaded memory evicts exactly the entries the saved one would have.

This module takes and returns tensors and plain metadata, never a KVMemory: `KVMemory.save` / `KVMemory.load`
(store.py) call it, so the dependency runs one way (store -> persist).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io import atomic_write

FORMAT = "longlab.KVMemory"
VERSION = "1"
META_INTS = ("capacity", "key_dim", "value_dim", "heads", "cursor", "count", "total_added")
_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def save_memory(path, tensors: dict, meta: dict) -> Path:
    """Write a memory's occupied slots to `path` atomically (temp file in the same folder, then os.replace:
    readers never see half a file). tensors: keys (H, n, Dk), values (H, n, Dv), positions (n,), doc_ids (n,);
    meta: the ints of META_INTS plus dtype, backend, index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensors[name].contiguous().cpu() for name in ("keys", "values", "positions", "doc_ids")}
    meta = {**{name: str(int(meta[name])) for name in META_INTS}, "format": FORMAT, "version": VERSION,
            "dtype": str(meta["dtype"]), "backend": meta["backend"], "index": meta["index"]}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _read(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        if not path.exists():
            raise FileNotFoundError(f"no memory file at {path}") from err
        raise ValueError(f"{path} is not a readable safetensors KVMemory file (truncated or corrupt?): {err}") from err
    return meta, tensors


def load_memory(path) -> tuple[dict, dict]:
    """Read and check a file written by `save_memory`: (meta, tensors) with meta's ints parsed, meta["dtype"] a
    torch dtype; ValueError naming the problem for a truncated or mismatched file."""
    path = Path(path)
    meta, tensors = _read(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a KVMemory file (metadata format={meta.get('format')!r}, "
                         f"expected {FORMAT!r}); write it with KVMemory.save")
    try:
        ints = {name: int(meta[name]) for name in META_INTS}
        dtype = _DTYPES[meta["dtype"]]
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: metadata is incomplete or malformed ({err}); re-save the memory") from err
    h, n = ints["heads"], ints["count"]
    expected = {"keys": (h, n, ints["key_dim"]), "values": (h, n, ints["value_dim"]), "positions": (n,),
                "doc_ids": (n,)}
    for name, shape in expected.items():
        got = tuple(tensors[name].shape) if name in tensors else None
        if got != shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {got}, metadata says {shape}; the file is "
                             f"mismatched (metadata {json.dumps(ints)})")
    if not (0 <= n <= ints["capacity"] and 0 <= ints["cursor"] < ints["capacity"]):
        raise ValueError(f"{path}: count={n} / cursor={ints['cursor']} do not fit capacity={ints['capacity']}")
    info = {**ints, "dtype": dtype, "backend": meta.get("backend", "torch"), "index": meta.get("index", "flat")}
    return info, tensors
