"""TinyLM attention kinds from related work: linear attention and token pooling (see longlab.attention).

Each is a `SelfAttention` whose `mix` runs the method's kernel on the RoPE-rotated q, k and v (B, H, N, D).
"""
from __future__ import annotations

from .layers import SelfAttention


class LinearAttentionLayer(SelfAttention):
    """Causal linear attention, phi(x) = elu(x) + 1 (Katharopoulos et al. 2020, eq. 9), O(N) chunked form."""

    def mix(self, q, k, v):
        from ..attention.linear import linear_attention

        return linear_attention(q, k, v, causal=True)
