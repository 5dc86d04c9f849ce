"""TinyLM building blocks: causal self-attention variants (dense, sliding window, dilated), MLP, pre-norm block.

Every attention layer projects x to per-head q, k, v, rotates q and k with RoPE, mixes them with its own
kernel (`mix`) and projects back; subclasses override only `mix` (or `forward`, for memory layers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attend
from ..attention.rope import apply_rope, rope_tables


class SelfAttention(nn.Module):
    """Multi-head causal self-attention skeleton: x (B, N, d_model) -> (B, N, d_model)."""

    def __init__(self, config, layer_index: int = 0):
        super().__init__()
        self.config, self.layer_index = config, layer_index
        self.n_heads, self.head_dim = config.n_heads, config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def project(self, x: torch.Tensor):
        """q, k, v of shape (B, H, N, head_dim), before RoPE."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def rotate(self, q, k, positions):
        cos, sin = rope_tables(positions, self.head_dim, self.config.rope_base, dtype=q.dtype)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        b, h, n, d = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))

    def mix(self, q, k, v) -> torch.Tensor:  # (B, H, N, D) each -> (B, H, N, D)
        raise NotImplementedError

    def mix_rerope(self, q, k, v, positions) -> torch.Tensor:  # un-rotated q, k (B, H, N, D) -> (B, H, N, D)
        raise ValueError(f"{type(self).__name__} supports only position='rope'; position='rerope' needs a dense "
                         f"layer (attention='dense')")

    def forward(self, x: torch.Tensor, positions: torch.Tensor, **context) -> torch.Tensor:
        q, k, v = self.project(x)
        if getattr(self.config, "position", "rope") == "rerope":
            return self.merge_heads(self.mix_rerope(q, k, v, positions))
        q, k = self.rotate(q, k, positions)
        return self.merge_heads(self.mix(q, k, v))

    def extra_repr(self) -> str:
        return f"heads={self.n_heads}, head_dim={self.head_dim}"


class DenseAttention(SelfAttention):
    """Full causal attention (Vaswani et al. 2017, eq. 1) through longlab.attend."""

    def mix(self, q, k, v):
        return attend(q, k, v, causal=True)[0]

    def mix_rerope(self, q, k, v, positions):
        """ReRoPE / leaky ReRoPE (longlab.attention.rerope), exact, as two partial attentions merged by lse."""
        from ..attention.rerope import rerope_attention

        c = self.config
        return rerope_attention(q, k, v, c.rerope_window, c.rerope_leak, positions, c.rope_base)[0]


def sliding_window_attention(q, k, v, window: int) -> torch.Tensor:
    """Exact causal sliding-window attention: query i sees keys j with i - window < j <= i.

    q, k, v (B, H, N, D) -> (B, H, N, D). Queries go in blocks of `window`; each block scores only the keys
    from one window back to its own end (O(N * window) work and memory), masked to the exact band.
    """
    n = q.shape[-2]
    outs = []
    for start in range(0, n, window):
        stop = min(start + window, n)
        k_start = max(0, start - window + 1)
        rows = torch.arange(start, stop, device=q.device)[:, None]
        cols = torch.arange(k_start, stop, device=q.device)[None, :]
        band = (cols <= rows) & (cols > rows - window)
        outs.append(F.scaled_dot_product_attention(q[..., start:stop, :], k[..., k_start:stop, :],
                                                   v[..., k_start:stop, :], attn_mask=band))
    return torch.cat(outs, dim=-2)


class SlidingWindowAttention(SelfAttention):
    """Causal local attention over the last `config.window` positions (Longformer / Mistral style)."""

    def mix(self, q, k, v):
        return sliding_window_attention(q, k, v, self.config.window)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.config.window}"


class DilatedAttentionLayer(SelfAttention):
    """LongNet dilated attention (arXiv 2307.02486, eqs. 4-10) via longlab.dilated_attention, causal."""

    def mix(self, q, k, v):
        from ..attention.dilated import dilated_attention  # lazy: the dilated module is optional here

        out = dilated_attention(q, k, v, list(self.config.segment_lengths), list(self.config.dilation_rates),
                                causal=True)
        return out[0] if isinstance(out, tuple) else out

    def extra_repr(self) -> str:
        c = self.config
        return f"{super().extra_repr()}, segments={tuple(c.segment_lengths)}, rates={tuple(c.dilation_rates)}"


class MLP(nn.Module):
    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.up, self.down = nn.Linear(d_model, ratio * d_model), nn.Linear(ratio * d_model, d_model)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class DecoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config, layer_index: int, attention_cls):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn = attention_cls(config, layer_index)
        self.mlp = MLP(config.d_model, config.mlp_ratio)

    def forward(self, x, positions, **context):
        """x (B, N, d) -> (B, N, d); a memory layer asked for return_retrievals gives (out, reads): then
        (x, reads)."""
        out = self.attn(self.norm1(x), positions, **context)
        reads = None
        if isinstance(out, tuple):
            out, reads = out
        x = x + out
        x = x + self.mlp(self.norm2(x))
        return x if reads is None else (x, reads)
