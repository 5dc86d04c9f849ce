"""Save / load a KVMemory with safetensors: plain tensors + string metadata, atomic, never pickle.

Only the occupied slots 0..count-1 are written (the ring fills slots in order, see store.py), together with
the write cursor, so a loaded memory evicts exactly the entries the saved one would have.
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
_META_INTS = ("capacity", "key_dim", "value_dim", "heads", "cursor", "count", "total_added")
_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def save_memory(memory, path) -> Path:
    """Write `memory` to `path` (temp file in the same folder, then os.replace: readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = memory.count
    tensors = {
        "keys": memory.keys[:, :n].contiguous().cpu(),
        "values": memory.values[:, :n].contiguous().cpu(),
        "positions": memory.positions[:n].contiguous().cpu(),
        "doc_ids": memory.doc_ids[:n].contiguous().cpu(),
    }
    meta = {name: str(getattr(memory, name)) for name in _META_INTS}
    meta.update(format=FORMAT, version=VERSION, dtype=str(memory.dtype), backend=memory.backend,
                index=memory.index_kind)
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


def load_memory(path, device=None):
    """Rebuild a KVMemory from `path`; ValueError naming the problem for a truncated/mismatched file."""
    from .store import KVMemory

    path = Path(path)
    meta, tensors = _read(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a KVMemory file (metadata format={meta.get('format')!r}, "
                         f"expected {FORMAT!r}); write it with KVMemory.save")
    try:
        ints = {name: int(meta[name]) for name in _META_INTS}
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
    memory = KVMemory(ints["capacity"], ints["key_dim"], ints["value_dim"], heads=h, device=device, dtype=dtype,
                      backend=meta.get("backend", "torch"), index=meta.get("index", "flat"))
    memory.keys[:, :n] = tensors["keys"].to(memory.device)
    memory.values[:, :n] = tensors["values"].to(memory.device)
    memory.key_norms[:, :n] = memory.keys[:, :n].norm(dim=-1)
    memory.positions[:n] = tensors["positions"].to(memory.device)
    memory.doc_ids[:n] = tensors["doc_ids"].to(memory.device)
    memory.cursor, memory.count, memory.total_added = ints["cursor"], n, ints["total_added"]
    if memory._faiss is not None:
        memory._faiss.mark_dirty()
    return memory
