"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs", arXiv 2006.16236, eqs. 4-9, 16-20).

softmax(q.k) is replaced by the kernel phi(q).phi(k) with phi(x) = elu(x) + 1 (positive), so

    out_i = phi(q_i)^T S_i / phi(q_i)^T z_i,   S_i = sum_{j <= i} phi(k_j) v_j^T,   z_i = sum_{j <= i} phi(k_j)

(causal; non-causal sums over all j). The sums are associative: the cost is O(N D Dv), linear in N.
Three forms of the same function, tested against each other and against `linear_attention_reference`:
- `linear_attention`: chunked. Inside a chunk of C rows the causal part is a small C x C masked product;
  across chunks a running state (S, z) carries the prefix (O(N C D + N D Dv) work).
- `LinearAttentionState.step`: the recurrent form for decoding, one token at a time with O(D Dv) state.
- `linear_attention_reference`: the dense weights phi(Q) phi(K)^T masked and normalised per row.
There is no softmax normaliser, so these return `out` only (no lse to merge).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import positive_int
from .validate import check_qkv, expand_kv_heads

DEFAULT_LINEAR_CHUNK = 64


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 (paper eq. 7): positive, so every kernel weight phi(q).phi(k) is > 0."""
    return F.elu(x) + 1


def _check(q, k, v, causal):
    check_qkv(q, k, v)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal linear attention is self-attention: q has N={q.shape[2]}, k has N={k.shape[2]}; "
                         f"pass equal lengths or causal=False")
    return expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])


def linear_attention_reference(q, k, v, causal: bool = False, eps: float = 0.0) -> torch.Tensor:
    """Dense truth: A = phi(Q) phi(K)^T (masked causally), out = (A / rowsum(A)) V. Shapes as `linear_attention`.

    O(N^2) memory; use it in float64 for tests."""
    k, v = _check(q, k, v, causal)
    weights = elu_feature_map(q) @ elu_feature_map(k).transpose(-1, -2)
    if causal:
        n = q.shape[2]
        weights = weights * torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return (weights / (weights.sum(-1, keepdim=True) + eps)) @ v


def linear_attention(q, k, v, causal: bool = False, chunk_size: int = DEFAULT_LINEAR_CHUNK,
                     eps: float = 0.0) -> torch.Tensor:
    """Linear attention out (B, H, Nq, Dv) for q (B, H, Nq, D), k (B, Hk, Nk, D), v (B, Hk, Nk, Dv), O(N) time.

    causal: row i uses keys j <= i (Nq == Nk). chunk_size: rows per chunk of the causal form (C: work
    O(N C D) inside chunks plus O(N D Dv) for the state). eps is added to the denominator (0 = exact; phi > 0
    keeps it positive). Gradients come from autograd through the chunked sums (exact).
    """
    k, v = _check(q, k, v, causal)
    positive_int("chunk_size", chunk_size)
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    if not causal:
        state = fk.transpose(-1, -2) @ v  # (B, H, D, Dv) = sum_j phi(k_j) v_j^T
        norm = fk.sum(-2)  # (B, H, D)
        return (fq @ state) / ((fq * norm[..., None, :]).sum(-1, keepdim=True) + eps)
    n = q.shape[2]
    state = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    norm = q.new_zeros(*q.shape[:2], q.shape[-1])
    outs = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        fq_c, fk_c, v_c = fq[..., start:stop, :], fk[..., start:stop, :], v[..., start:stop, :]
        local = (fq_c @ fk_c.transpose(-1, -2)).tril()  # causal weights inside the chunk
        numer = local @ v_c + fq_c @ state
        denom = local.sum(-1) + (fq_c * norm[..., None, :]).sum(-1)
        outs.append(numer / (denom[..., None] + eps))
        state = state + fk_c.transpose(-1, -2) @ v_c
        norm = norm + fk_c.sum(-2)
    return torch.cat(outs, dim=-2)


class LinearAttentionState:
    """Recurrent (RNN) form for causal decoding (paper eqs. 18-20): S += phi(k) v^T, z += phi(k), one token a step.

    state = LinearAttentionState(); out_t = state.step(q_t, k_t, v_t) with q_t/k_t (B, H, 1, D), v_t (B, H, 1, Dv)
    -> out_t (B, H, 1, Dv). Memory is O(H D Dv) whatever the number of tokens seen (`tokens`).
    """

    def __init__(self, eps: float = 0.0):
        self.eps, self.state, self.norm, self.tokens = eps, None, None, 0

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k, v = _check(q, k, v, True)
        if q.shape[2] != 1:
            raise ValueError(f"step takes one token: q must be (B, H, 1, D), got {tuple(q.shape)}; "
                             f"use linear_attention for a whole sequence")
        fq, fk = elu_feature_map(q), elu_feature_map(k)
        if self.state is None:
            self.state = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
            self.norm = q.new_zeros(*q.shape[:2], 1, q.shape[-1])
        self.state = self.state + fk.transpose(-1, -2) @ v
        self.norm = self.norm + fk
        self.tokens += 1
        return (fq @ self.state) / ((fq * self.norm).sum(-1, keepdim=True) + self.eps)

    def state_numel(self) -> int:
        """Numbers held: H * (D * Dv + D) per batch element, independent of the tokens decoded."""
        return 0 if self.state is None else self.state.numel() + self.norm.numel()

    def __repr__(self) -> str:
        shape = None if self.state is None else tuple(self.state.shape)
        return f"LinearAttentionState(tokens={self.tokens}, state={shape})"
