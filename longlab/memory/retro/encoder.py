"""RETRO's frozen retriever: a chunk's key is the mean over its bytes of a frozen TinyLM's hidden states.

RETRO (arXiv 2112.04426, sec. 2.3) keys each chunk by the time-averaged output of a frozen BERT, so the
database never has to be re-encoded while the language model trains. Here the frozen network is the first
`layers` blocks of a TinyLM checkpoint run on the chunk alone (positions 0..m-1); keys are L2-normalised so
inner-product search is cosine search.
`layers=0` keys by the embedding layer's output (hidden state 0: a bag of bytes, order-blind) and encodes
the 31 MB standard library in seconds; `layers=1` adds the first transformer block (order-aware) at about
21 kB/s on one idle CPU thread (~25 min for the standard library), so 0 is the default on a shared CPU.
The encoder's identity (checkpoint weights hash, layers, pooling) is stored with every key, and a
database refuses keys or queries made by another encoder.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from ...checks import int_at_least, positive_int

# Relative to the working directory (run from the repository root), like every default path in longlab: the
# library never reads or writes inside its own install. Elsewhere pass the checkpoint explicitly.
DEFAULT_CHECKPOINT = Path("data") / "checkpoints" / "tiny_memorizing.safetensors"


def weights_digest(model) -> str:
    """sha256 (first 16 hex digits) of a model's parameters in name order: identifies the frozen weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


class ChunkEncoder:
    """Frozen key function: chunks (n, m) uint8 bytes -> keys (n, d_model) float32, unit length.

    key(chunk) = normalize(mean_t h_t), h = the first `layers` blocks of `model` on the chunk's bytes
    (RETRO sec. 2.3: Bert(N) averaged over time; layers=0 is the
    embedding output). The model is never trained through this object.
    """

    def __init__(self, model, layers: int = 0, name: str = "tiny_memorizing", batch: int = 4096):
        int_at_least("layers", layers, 0)
        if layers > len(model.blocks):
            raise ValueError(f"layers={layers} but the model has only {len(model.blocks)} blocks; pick 0.."
                             f"{len(model.blocks)}")
        self.model, self.layers, self.batch = model.eval(), layers, positive_int("batch", batch)
        self.dim = model.config.d_model
        self.identity = {"encoder": "TinyLM-mean-pool", "name": name, "weights_sha256": weights_digest(model),
                         "layers": str(layers), "dim": str(self.dim), "normalized": "true"}

    @classmethod
    def from_checkpoint(cls, path=None, layers: int = 0) -> ChunkEncoder:
        from ...models.train import load_checkpoint

        path = Path(path or DEFAULT_CHECKPOINT)
        model, _ = load_checkpoint(path)
        return cls(model, layers=layers, name=path.stem)

    @torch.no_grad()
    def hidden(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n, m) bytes -> (n, m, d_model) hidden states after `layers` blocks."""
        x = chunks.long()
        positions = torch.arange(x.shape[1])
        h = self.model.embed(x)
        for block in self.model.blocks[: self.layers]:
            h = block(h, positions)
        return h

    @torch.no_grad()
    def encode(self, chunks: torch.Tensor) -> torch.Tensor:
        """Keys (n, d_model) float32 of unit length for chunks (n, m) of byte values."""
        if not isinstance(chunks, torch.Tensor) or chunks.dim() != 2 or chunks.dtype.is_floating_point:
            raise ValueError(f"chunks must be an integer tensor (n, m) of bytes, got "
                             f"{getattr(chunks, 'dtype', type(chunks))} {tuple(getattr(chunks, 'shape', ()))}")
        out = [F.normalize(self.hidden(chunks[s : s + self.batch]).mean(1).float(), dim=-1)
               for s in range(0, chunks.shape[0], self.batch)]
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def __repr__(self) -> str:
        return (f"ChunkEncoder({self.identity['name']}, first {self.layers} block(s), dim={self.dim}, "
                f"weights {self.identity['weights_sha256']})")


def check_same_encoder(stored: dict, given: dict, where: str) -> None:
    """Raise ValueError when keys made by encoder `given` would be mixed with keys made by `stored`."""
    if stored != given:
        diff = {k: (stored.get(k), given.get(k)) for k in set(stored) | set(given) if stored.get(k) != given.get(k)}
        raise ValueError(f"{where} was built with another encoder (differences stored vs given: {diff}); "
                         f"rebuild it with this encoder (longlab retro build) or load the matching checkpoint")
