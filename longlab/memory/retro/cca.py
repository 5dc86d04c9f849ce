"""RETRO chunked cross-attention (CCA) with its causal shift (Borgeaud et al. 2021, arXiv 2112.04426, eq. 3-4).

A sequence of N = L m tokens is split into L chunks of m tokens; chunk u retrieved neighbours whose encoded
tokens are the keys/values E_u. Token i attends only to E_u with

    u(i) = floor((i + 1) / m) - 1,

so tokens 0..m-2 attend to nothing (they keep the residual: output 0 here) and the LAST token of chunk u,
i = (u + 1) m - 1, is the first to read chunk u's neighbours: a token only ever uses neighbours retrieved
with tokens at or before it. Implementation: drop the first m - 1 queries, pad m - 1 at the end, and the
queries fall into L groups of m, group u attending to E_u (one small dense attention per chunk).
This function adds no positions; `ChunkedCrossAttention` (model.py) rotates q and k once, with
`cca_positions`. No learned null key: a valid neighbour always has >= m visible bytes.
"""
from __future__ import annotations

import math

import torch

from ...checks import positive_int


def chunk_of_token(n: int, chunk_size: int, device=None) -> torch.Tensor:
    """u(i) = floor((i + 1) / m) - 1 for i in 0..n-1 (LongTensor (n,); -1 = attends to no neighbour)."""
    return torch.div(torch.arange(n, device=device) + 1, chunk_size, rounding_mode="floor") - 1


def cca_positions(n: int, chunk_size: int, neighbour_len: int, device=None):
    """RoPE positions for CCA, applied once (RETRO-pytorch shifts the queries twice): query i sits at
    i - u(i) m, its offset from the start of the chunk u whose neighbours it reads (m - 1 .. 2m - 2; 0 for the
    tokens that read nothing), neighbour byte p at p. So the neighbour's chunk N lines up with C_u, and the
    neighbour byte a reader would copy (the one after its own aligned byte) is always 1 position ahead.
    Returns (query positions (n,), key positions (neighbour_len,))."""
    u = chunk_of_token(n, chunk_size, device)
    q_pos = torch.where(u >= 0, torch.arange(n, device=device) - u * chunk_size, torch.zeros_like(u))
    return q_pos, torch.arange(neighbour_len, device=device)


def check_chunked(n: int, chunk_size: int, name: str = "sequence length") -> int:
    positive_int("chunk_size", chunk_size, "tokens")
    if n % chunk_size:
        raise ValueError(f"{name} {n} is not a multiple of chunk_size m={chunk_size}; pad or crop the sequence "
                         f"to {n - n % chunk_size} or {n - n % chunk_size + chunk_size} tokens")
    return n // chunk_size


def chunked_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int,
                            key_valid: torch.Tensor | None = None, scale: float | None = None):
    """CCA: out_i = softmax(q_i K_u^T * scale) V_u over the visible keys of chunk u = u(i), 0 when u < 0.

    q (B, H, N, D) decoder queries, N = L * m; k, v (B, H, L, R, D) / (B, H, L, R, Dv): the R keys of each
    chunk's neighbours (k neighbours x 2m bytes, concatenated); key_valid (B, L, R) bool, True = real byte
    (padding beyond a neighbour's length is False). Returns (out (B, H, N, Dv), lse (B, H, N); lse = -inf
    on the residual-only tokens 0..m-2).
    """
    b, h, n, d = q.shape
    num_chunks = check_chunked(n, chunk_size)
    if k.dim() != 5 or k.shape[:3] != (b, h, num_chunks) or k.shape[-1] != d or v.shape[:4] != k.shape[:4]:
        raise ValueError(f"k, v must be (B, H, L, R, D) = ({b}, {h}, {num_chunks}, R, {d}) for q {tuple(q.shape)} "
                         f"and chunk_size={chunk_size}; got k {tuple(k.shape)}, v {tuple(v.shape)}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    m = chunk_size
    shifted = torch.cat([q[:, :, m - 1 :], q.new_zeros(b, h, m - 1, d)], dim=2).view(b, h, num_chunks, m, d)
    scores = torch.einsum("bhumd,bhurd->bhumr", shifted, k) * scale
    if key_valid is not None:
        if key_valid.shape != (b, num_chunks, k.shape[3]) or key_valid.dtype != torch.bool:
            raise ValueError(f"key_valid must be bool (B, L, R) = ({b}, {num_chunks}, {k.shape[3]}), got "
                             f"{key_valid.dtype} {tuple(key_valid.shape)}")
        scores = scores.masked_fill(~key_valid[:, None, :, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, H, L, m)
    out = torch.einsum("bhumr,bhurv->bhumv", torch.exp(scores - lse[..., None]), v)
    # unshift: group u row j is token (u + 1) m - 1 + j; tokens 0..m-2 read nothing
    out = out.reshape(b, h, n, -1)[:, :, : n - (m - 1)]
    lse = lse.reshape(b, h, n)[:, :, : n - (m - 1)]
    out = torch.cat([out.new_zeros(b, h, m - 1, out.shape[-1]), out], dim=2)
    lse = torch.cat([lse.new_full((b, h, m - 1), float("-inf")), lse], dim=2)
    return out, lse


def cca_reference_mask(n: int, chunk_size: int, keys_per_chunk: int, key_valid: torch.Tensor | None = None):
    """Bool mask (B or 1, 1, N, L*R) for `reference_attention` over all chunks' keys concatenated: query i sees
    key j of chunk c(j) = j // R iff c(j) == u(i) (and the key is valid). The dense truth CCA is tested against."""
    u = chunk_of_token(n, chunk_size)
    c = torch.arange(n // chunk_size * keys_per_chunk) // keys_per_chunk
    mask = (u[:, None] == c[None, :])[None, None]
    if key_valid is not None:
        mask = mask & key_valid.reshape(key_valid.shape[0], 1, 1, -1)
    return mask
