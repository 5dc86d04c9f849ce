"""Save / load a KVMemory with safetensors: plain tensors + string metadata, atomic, never pickle.

Only the occupied slots 0..count-1 are written (the ring fills slots in order, see store.py), together with
the write cursor, so a loaded memory evicts exactly the entries the saved one would have.

Streaming: `save_memory` writes the safetensors layout itself (8-byte header length, JSON header, raw
bytes) slice by slice straight from the memory's buffers, and `read_memory_into` copies each stored tensor
slice by slice from the memory-mapped file into preallocated buffers, so neither direction holds a second
copy of the memory (a 16M-key memory is 8 GiB). Files are plain safetensors, readable by any reader.

This module takes and returns tensors and plain metadata, never a KVMemory: `KVMemory.save` / `KVMemory.load`
(store.py) call it, so the dependency runs one way (store -> persist).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..io import atomic_write

FORMAT = "longlab.KVMemory"
VERSION = "1"
META_INTS = ("capacity", "key_dim", "value_dim", "heads", "cursor", "count", "total_added")
_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_ST_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
              torch.int64: "I64"}
SLICE_BYTES = 64 * 2**20  # bytes per write / copy step when streaming


def _rows_per_step(t: torch.Tensor) -> int:
    return max(1, SLICE_BYTES // max(1, t[0].numel() * t.element_size()) if t.dim() > 1 else SLICE_BYTES // 8)


def _pieces(t: torch.Tensor):
    """Contiguous pieces of t in row-major order, each at most ~SLICE_BYTES (t may be a non-contiguous view
    such as keys[:, :n] of a (H, capacity, D) buffer: each head's rows are contiguous)."""
    if t.dim() == 3:
        for h in range(t.shape[0]):
            yield from _pieces(t[h])
        return
    step = _rows_per_step(t)
    for start in range(0, t.shape[0], step):
        yield t[start : start + step].contiguous()


def write_safetensors(path, tensors: dict, metadata: dict) -> None:
    """Write `tensors` (CPU, any views) as a safetensors file, streaming: header first, then each tensor's
    bytes in slices of ~SLICE_BYTES, so no full contiguous copy is ever made."""
    header, offset = {"__metadata__": metadata}, 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data start to 8 bytes (space padding)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for t in tensors.values():
            for piece in _pieces(t):
                handle.write(memoryview(piece.numpy()).cast("B"))


def save_memory(path, tensors: dict, meta: dict) -> Path:
    """Write a memory's occupied slots to `path` atomically (temp file in the same folder, then os.replace:
    readers never see half a file). tensors: keys (H, n, Dk), values (H, n, Dv), positions (n,), doc_ids (n,);
    meta: the ints of META_INTS plus dtype, backend, index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensors[name].detach().cpu() for name in ("keys", "values", "positions", "doc_ids")}
    meta = {**{name: str(int(meta[name])) for name in META_INTS}, "format": FORMAT, "version": VERSION,
            "dtype": str(meta["dtype"]), "backend": meta["backend"], "index": meta["index"]}
    return atomic_write(path, lambda tmp: write_safetensors(tmp, tensors, meta))


def _unreadable(path: Path, err: Exception) -> Exception:
    if not path.exists():
        return FileNotFoundError(f"no memory file at {path}")
    return ValueError(f"{path} is not a readable safetensors KVMemory file (truncated or corrupt?): {err}")


def _read(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from err
    return meta, tensors


def _check(path: Path, meta: dict, shapes: dict) -> dict:
    """Parse and check the metadata against the stored shapes; the info dict `load_memory` returns."""
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
        got = shapes.get(name)
        if got != shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {got}, metadata says {shape}; the file is "
                             f"mismatched (metadata {json.dumps(ints)})")
    if not (0 <= n <= ints["capacity"] and 0 <= ints["cursor"] < ints["capacity"]):
        raise ValueError(f"{path}: count={n} / cursor={ints['cursor']} do not fit capacity={ints['capacity']}")
    return {**ints, "dtype": dtype, "backend": meta.get("backend", "torch"), "index": meta.get("index", "flat")}


def load_memory(path) -> tuple[dict, dict]:
    """Read and check a file written by `save_memory`: (meta, tensors) with meta's ints parsed, meta["dtype"] a
    torch dtype; ValueError naming the problem for a truncated or mismatched file. Loads whole tensors: for
    a big memory use `read_memory_into`."""
    path = Path(path)
    meta, tensors = _read(path)
    return _check(path, meta, {name: tuple(t.shape) for name, t in tensors.items()}), tensors


def read_memory_into(path, make_buffers) -> dict:
    """Stream a file written by `save_memory` into preallocated buffers: `make_buffers(info)` gets the checked
    metadata (as `load_memory`'s) and returns {name: destination tensor of the stored shape}, e.g. views
    keys[:, :count] of a fresh KVMemory; each tensor is copied from the memory-mapped file in slices of
    ~SLICE_BYTES. Returns info. ValueError naming the file for a truncated or corrupt file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
            info = _check(path, handle.metadata() or {}, shapes)
            for name, dest in make_buffers(info).items():
                stored = handle.get_slice(name)
                rows = [dest[h] for h in range(dest.shape[0])] if dest.dim() == 3 else [dest]
                for h, out in enumerate(rows):
                    step = _rows_per_step(out)
                    for start in range(0, out.shape[0], step):
                        stop = min(out.shape[0], start + step)
                        piece = stored[h, start:stop] if dest.dim() == 3 else stored[start:stop]
                        out[start:stop].copy_(piece)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise _unreadable(path, err) from err
    return info
