"""`attend`: the fast exact attention every longlab method runs on.

One function, several backends behind it:
- "cpu_flash": PyTorch's blockwise CPU flash kernel (the one SDPA itself uses on CPU), which also returns lse;
- "cuda": PyTorch's memory-efficient CUDA kernel (forward returns lse; backward is its fused kernel, widened
  as below);
- "math": chunked plain math (query blocks of `chunk_size` rows), any device and dtype.
All of them use O(N * block) memory, never the full N x N matrix.

Gradients are exact through BOTH outputs. PyTorch's own autograd for the flash op ignores d(loss)/d(lse), which
every lse merge needs (dq comes out ~30% wrong), so `attend` is a custom autograd.Function. With g = dL/dlse the
score gradient is dS = P * (dP - (D - g)), D = rowsum(dO * O): the usual flash backward with D shifted by g.
On CPU we get that shift from the stock backward kernel by appending one zero column to q, k, v, a column of
ones to dO and a column of -g to O: then rowsum(dO' * O') = D - g while dP and P are unchanged. On CUDA the same
trick widens by 8 columns (the efficient kernel wants head dims that are multiples of 8).
"""
from __future__ import annotations

import torch

from ..checks import positive_int
from .merge import merge
from .validate import check_qkv, check_scale, expand_kv_heads

BACKENDS = ("auto", "cpu_flash", "cuda", "math")
DEFAULT_CHUNK = 1024


def _pick_backend(q: torch.Tensor, backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        if backend == "cpu_flash" and q.device.type != "cpu":
            raise ValueError(f"backend='cpu_flash' needs CPU tensors, got device {q.device}; use 'auto'")
        if backend == "cuda" and (q.device.type != "cuda" or q.dtype == torch.float64):
            raise ValueError("backend='cuda' needs CUDA tensors of float16/bfloat16/float32; use 'auto'")
        return backend
    if q.device.type == "cpu":
        return "cpu_flash"
    if q.device.type == "cuda" and q.dtype != torch.float64:
        return "cuda"
    return "math"


def _block_scores(q_blk, k, scale, causal, row_start):
    scores = torch.matmul(q_blk, k.transpose(-1, -2)) * scale
    if causal:
        rows = torch.arange(row_start, row_start + q_blk.shape[-2], device=q_blk.device)[:, None]
        cols = torch.arange(k.shape[-2], device=q_blk.device)[None, :]
        scores = scores.masked_fill(cols > rows, float("-inf"))
    return scores


def _safe(lse: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))


def _math_forward(q, k, v, causal, scale, chunk):
    n_q = q.shape[-2]
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    lse = q.new_empty(q.shape[:-1])
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        scores = _block_scores(q[..., start:stop, :], k, scale, causal, start)
        blk_lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - _safe(blk_lse)[..., None])
        out[..., start:stop, :] = torch.matmul(probs, v)
        lse[..., start:stop] = blk_lse
    return out, lse


def _math_backward(q, k, v, out, lse, d_out, d_lse, causal, scale, chunk):
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for start in range(0, q.shape[-2], chunk):
        stop = min(start + chunk, q.shape[-2])
        q_blk, do_blk = q[..., start:stop, :], d_out[..., start:stop, :]
        probs = torch.exp(_block_scores(q_blk, k, scale, causal, start) - _safe(lse[..., start:stop])[..., None])
        d_probs = torch.matmul(do_blk, v.transpose(-1, -2))
        shift = (do_blk * out[..., start:stop, :]).sum(-1) - d_lse[..., start:stop]
        d_scores = probs * (d_probs - shift[..., None])
        dq[..., start:stop, :] = torch.matmul(d_scores, k) * scale
        dk += torch.matmul(d_scores.transpose(-1, -2), q_blk) * scale
        dv += torch.matmul(probs.transpose(-1, -2), do_blk)
    return dq, dk, dv


def _rows_dense(t: torch.Tensor) -> torch.Tensor:
    """t itself when each row (last dim) is contiguous: the CPU flash kernel reads rows through strides, so the
    strided views of dilated branches need no copy (at N = 1M: 2404 instead of 2788 MiB peak)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _cpu_flash_forward(q, k, v, causal, scale):
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        *(_rows_dense(t) for t in (q, k, v)), 0.0, causal, scale=scale
    )
    return out, lse


def _widen(t: torch.Tensor, pad: int, first_column: torch.Tensor | None = None) -> torch.Tensor:
    """t with `pad` zero columns appended; the first of them set to `first_column` (shape t.shape[:-1]) if given."""
    extra = t.new_zeros(*t.shape[:-1], pad)
    if first_column is not None:
        extra[..., 0] = first_column
    return torch.cat([t, extra], dim=-1)


def _lse_aware_backward(kernel_backward, pad, q, k, v, out, d_out, d_lse):
    """dq, dk, dv with the lse gradient folded in (module docstring): widen, run the stock backward, cut back.
    kernel_backward(d_out', q', k', v', out') -> (dq', dk', dv')."""
    grads = kernel_backward(_widen(d_out, pad, torch.ones_like(d_lse)), _widen(q, pad), _widen(k, pad),
                            _widen(v, pad), _widen(out, pad, -d_lse))
    return tuple(g[..., :-pad] for g in grads)


def _cpu_flash_backward(q, k, v, out, lse, d_out, d_lse, causal, scale):
    def kernel(d_out_w, q_w, k_w, v_w, out_w):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            d_out_w, q_w, k_w, v_w, out_w, lse, 0.0, causal, scale=scale)

    return _lse_aware_backward(kernel, 1, q, k, v, out, d_out, d_lse)


def _cuda_forward(q, k, v, causal, scale):
    """(out, lse, saved): saved = the kernel's own padded float32 lse and RNG state, which its backward reads."""
    out, lse_padded, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(
        q.contiguous(), k.contiguous(), v.contiguous(), None, True, 0.0, causal, scale=scale
    )
    return out, lse_padded[..., : q.shape[-2]].to(q.dtype), (lse_padded, seed, offset)


def _cuda_backward(q, k, v, out, saved, d_out, d_lse, causal, scale):
    lse_padded, seed, offset = saved

    def kernel(d_out_w, q_w, k_w, v_w, out_w):
        return torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            d_out_w, q_w, k_w, v_w, None, out_w, lse_padded, seed, offset, 0.0, [True, True, True, False], causal,
            scale=scale)[:3]

    return _lse_aware_backward(kernel, 8, q, k, v, out, d_out, d_lse)  # 8: the kernel wants head dims % 8 == 0


class _Attend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, backend, chunk):
        saved = ()
        if backend == "cpu_flash":
            out, lse = _cpu_flash_forward(q, k, v, causal, scale)
        elif backend == "cuda":
            out, lse, saved = _cuda_forward(q, k, v, causal, scale)
        else:
            out, lse = _math_forward(q, k, v, causal, scale, chunk)
        ctx.save_for_backward(q, k, v, out, lse, *saved)
        ctx.causal, ctx.scale, ctx.backend, ctx.chunk = causal, scale, backend, chunk
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        q, k, v, out, lse, *saved = ctx.saved_tensors
        d_out = torch.zeros_like(out) if d_out is None else d_out
        d_lse = torch.zeros_like(lse) if d_lse is None else d_lse.to(lse.dtype)
        if ctx.backend == "cpu_flash":
            grads = _cpu_flash_backward(q, k, v, out, lse, d_out, d_lse, ctx.causal, ctx.scale)
        elif ctx.backend == "cuda":
            grads = _cuda_backward(q, k, v, out, saved, d_out, d_lse, ctx.causal, ctx.scale)
        else:
            grads = _math_backward(q, k, v, out, lse, d_out, d_lse, ctx.causal, ctx.scale, ctx.chunk)
        return (*grads, None, None, None, None)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax attention returning (out, lse), differentiable through both.

    Shapes (as `F.scaled_dot_product_attention`): q (B, H, Nq, D), k (B, Hk, Nk, D), v (B, Hk, Nk, Dv),
    Hk dividing H (grouped-query); out (B, H, Nq, Dv), lse (B, H, Nq) = log sum_j exp(q_i . k_j * scale).
    Implements Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V (Vaswani et al. 2017, eq. 1).

    causal: query i sees keys j <= i + (Nk - Nq) (aligned bottom-right, so when Nq != Nk the last query
        sees every key). Queries that see no key (possible only when Nq > Nk) give out = 0, lse = -inf.
    backend: "auto" (CPU flash kernel on CPU, efficient kernel on CUDA, math otherwise), or force one of
        "cpu_flash", "cuda", "math". chunk_size: query rows per block for the math backend.
    """
    check_qkv(q, k, v)
    scale = check_scale(scale, q.shape[-1])
    positive_int("chunk_size", chunk_size, "query rows")
    backend = _pick_backend(q, backend)
    k, v = expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])
    n_q, n_k = q.shape[-2], k.shape[-2]

    def run(q_, k_, v_, causal_):
        return _Attend.apply(q_, k_, v_, causal_, scale, backend, chunk_size)

    d_qk, d_v = q.shape[-1], v.shape[-1]
    # The CPU flash kernel wants one head dim for q, k and v; the CUDA efficient kernel wants head dims that
    # are multiples of 8 ("cutlassF: no kernel found" otherwise). Zero columns change neither the scores
    # (scale is already fixed from the true D) nor the output's first Dv columns.
    width = max(d_qk, d_v) if backend == "cpu_flash" else -(-max(d_qk, d_v) // 8) * 8
    if backend in ("cpu_flash", "cuda") and (d_qk, d_v) != (width, width):
        widen = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[-1]))  # noqa: E731
        out, lse = attend(widen(q), widen(k), widen(v), causal, scale, backend, chunk_size)
        return out[..., :d_v], lse

    if not causal or n_q == n_k:
        return run(q, k, v, causal)
    if n_k > n_q:
        # Bottom-right causal = every query sees the first Nk - Nq keys, then a square causal block.
        prefix = run(q, k[..., : n_k - n_q, :], v[..., : n_k - n_q, :], False)
        square = run(q, k[..., n_k - n_q :, :], v[..., n_k - n_q :, :], True)
        return merge([prefix, square])
    # Nq > Nk: the first Nq - Nk queries see nothing; the rest form a square causal block.
    blind = n_q - n_k
    out_tail, lse_tail = run(q[..., blind:, :], k, v, True)
    out = torch.cat([out_tail.new_zeros(*q.shape[:2], blind, v.shape[-1]), out_tail], dim=-2)
    lse = torch.cat([lse_tail.new_full((*q.shape[:2], blind), float("-inf")), lse_tail], dim=-1)
    return out, lse
