"""TinyLM: a byte-level pre-norm decoder with RoPE whose attention is chosen per layer (nanoGPT-sized reading).

    config = TinyLMConfig(attention=("dense", "memorizing"))
    model = TinyLM(config)
    logits, loss = model(idx, targets)          # idx, targets (B, N) int64 bytes; loss in nats/token

Attention kinds come from `longlab.models.registry` ("dense", "sliding", "dilated", "memorizing", ...).
Layers with state (memory) expose `reset_memory`; `TinyLM.reset_memory()` clears them all.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import int_at_least
from .layers import DecoderBlock
from .registry import attention_class, attention_kinds


@dataclass
class TinyLMConfig:
    """Sizes and per-layer attention choice. `attention` is one kind for all layers or one per layer."""

    vocab_size: int = 256
    context: int = 256
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    attention: str | tuple = "dense"
    window: int = 64  # sliding-window size (and memorizing local window when memory_local="sliding")
    segment_lengths: tuple = (64, 128, 256)  # dilated
    dilation_rates: tuple = (1, 2, 4)  # dilated
    memory_size: int = 16384  # memorizing: tokens kept per head (FIFO)
    memory_topk: int = 32  # memorizing: retrieved entries per query
    memory_local: str = "dense"  # memorizing: local attention "dense" or "sliding"
    position: str = "rope"  # "rope", or "rerope": relative positions capped at rerope_window (dense layers)
    rerope_window: int = 64  # rerope: keys closer than this get normal RoPE
    rerope_leak: float | None = None  # rerope: None = plain ReRoPE; s >= 1 = leaky (w + (i - j - w) / s)
    pool_block: int = 16  # pooled: tokens averaged into one pooled key/value (local window = `window`)
    float_mantissa: int = 2  # floatlike: mantissa bits m (every distance < 2^m, then 2^m keys per octave)
    extra: dict = field(default_factory=dict)  # free-form options for kinds added later

    def __post_init__(self):
        for name in ("vocab_size", "context", "d_model", "n_layers", "n_heads", "mlp_ratio", "window",
                     "memory_size", "memory_topk", "pool_block"):
            int_at_least(f"TinyLMConfig.{name}", getattr(self, name), 0 if name == "memory_size" else 1)
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} even head dims")
        kinds = (self.attention,) * self.n_layers if isinstance(self.attention, str) else tuple(self.attention)
        if len(kinds) != self.n_layers:
            raise ValueError(f"attention lists {len(kinds)} kinds for n_layers={self.n_layers}; give one per layer "
                             f"or a single string")
        for kind in kinds:
            if kind not in attention_kinds():
                raise ValueError(f"unknown attention kind {kind!r}; choose from {attention_kinds()}")
        if isinstance(self.float_mantissa, bool) or not isinstance(self.float_mantissa, int) or self.float_mantissa < 0:
            raise ValueError(f"TinyLMConfig.float_mantissa must be an int >= 0, got {self.float_mantissa!r}")
        if self.position not in ("rope", "rerope"):
            raise ValueError(f"position must be 'rope' or 'rerope', got {self.position!r}")
        if self.position == "rerope":
            from ..attention.rerope import check_leak
            from ..checks import positive_int

            positive_int("TinyLMConfig.rerope_window", self.rerope_window, "tokens")
            check_leak(self.rerope_leak)
        if self.memory_local not in ("dense", "sliding"):
            raise ValueError(f"memory_local must be 'dense' or 'sliding', got {self.memory_local!r}")
        self.attention = kinds
        self.segment_lengths, self.dilation_rates = tuple(self.segment_lengths), tuple(self.dilation_rates)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TinyLMConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def check_tokens(idx, context: int) -> None:
    """Refuse anything but an int64 (B, N) token tensor with N <= context (the model's window)."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
        raise ValueError(f"idx must be an int64 tensor of shape (B, N), got "
                         f"{getattr(idx, 'dtype', type(idx))} {tuple(getattr(idx, 'shape', ()))}")
    if idx.shape[1] > context:
        raise ValueError(f"sequence length {idx.shape[1]} exceeds config.context={context}; "
                         f"split the text into windows")


class TinyLM(nn.Module):
    """Byte-level decoder LM. forward(idx (B, N), targets=None) -> (logits (B, N, vocab), loss or None)."""

    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(
            DecoderBlock(config, i, attention_class(kind)) for i, kind in enumerate(config.attention)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input/output embeddings
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                reduction: str = "mean", **context):
        """idx, targets (B, N) int64 in [0, vocab); positions (N,) for RoPE (default 0..N-1).

        context goes to every attention layer (memory layers read `doc_start` (B,) bool and `write_memory`).
        Returns (logits, loss); loss is cross-entropy in nats, averaged (reduction="mean") or (B, N) ("none").
        With return_retrievals=True: (logits, loss, {block index: LayerReads}) from every memory layer.
        """
        check_tokens(idx, self.config.context)
        positions = torch.arange(idx.shape[1], device=idx.device) if positions is None else positions
        want_reads = context.pop("return_retrievals", False)
        reads = {}
        x = self.embed(idx)
        for i, block in enumerate(self.blocks):
            if want_reads and hasattr(block.attn, "lanes"):
                x, reads[i] = block(x, positions, return_retrievals=True, **context)
            else:
                x = block(x, positions, **context)
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
            loss = loss if reduction != "none" else loss.view_as(targets)
        return (logits, loss, reads) if want_reads else (logits, loss)

    def reset_memory(self, batch_index: int | None = None) -> None:
        """Clear every memory layer (or one batch element's memory)."""
        for layer in self.memory_layers():
            layer.reset(batch_index)

    def memory_layers(self) -> list:
        """The attention layers that hold memory lanes (`longlab.memory.base.MemoryLayer`)."""
        return [block.attn for block in self.blocks if hasattr(block.attn, "lanes")]

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding: append the argmax byte `max_new_tokens` times. idx (B, N) -> (B, N + new).

        Memory layers are read but not written while generating.
        """
        for _ in range(max_new_tokens):
            window = idx[:, -self.config.context:]
            logits, _ = self(window, write_memory=False)
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx

    def __repr__(self) -> str:
        c = self.config
        return (f"TinyLM({self.num_parameters() / 1e6:.2f}M params, layers={list(c.attention)}, d_model={c.d_model}, "
                f"heads={c.n_heads}, context={c.context})")
