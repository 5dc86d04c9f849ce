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


class PooledAttentionLayer(SelfAttention):
    """Causal attention over an exact window of `config.window` tokens plus mean-pooled blocks of
    `config.pool_block` tokens further back (longlab.attention.pooling)."""

    def mix(self, q, k, v):
        from ..attention.band import band_attention
        from ..attention.pooling import pooled_attention

        if q.shape[2] < self.config.pool_block:  # too short for any complete block: the window alone
            return band_attention(q, k, v, self.config.window)[0]
        return pooled_attention(q, k, v, self.config.pool_block, self.config.window)[0]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.config.window}, pool_block={self.config.pool_block}"


class FloatLikeAttentionLayer(SelfAttention):
    """Causal float-like sparse attention (longlab.attention.floatlike): every key closer than 2^m, then 2^m keys
    per octave of distance, m = `config.float_mantissa`, on the gathered kernel."""

    def mix(self, q, k, v):
        from ..attention.floatlike import floatlike_attention

        return floatlike_attention(q, k, v, self.config.float_mantissa, causal=True)[0]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mantissa_bits={self.config.float_mantissa}"
