"""Input checks shared by every attention entry point.

Errors name the argument, the value seen and the fix, as the design handbook asks.
"""
from __future__ import annotations

import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Validate attention inputs of shape q (B, H, Nq, D), k (B, Hk, Nk, D), v (B, Hk, Nk, Dv).

    Hk may divide H (grouped-query attention). Raises TypeError / ValueError naming the fix.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, N, D), got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have 4 dims (B, H, N, D), got shape {tuple(t.shape)}; "
                f"add a batch/head axis with .unsqueeze or reshape to (B, H, N, D)"
            )
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); cast them to one dtype")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v are on different devices ({q.device}, {k.device}, {v.device}); move them to one")
    if q.shape[0] != k.shape[0] or k.shape[0] != v.shape[0]:
        raise ValueError(f"batch sizes differ: q {q.shape[0]}, k {k.shape[0]}, v {v.shape[0]}; they must match")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k has {k.shape[1]} heads but v has {v.shape[1]}; k and v must have the same heads")
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"q has {q.shape[1]} heads, k/v have {k.shape[1]}: q heads must be a multiple of k/v heads "
            f"(grouped-query attention)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q head dim D={q.shape[-1]} differs from k head dim D={k.shape[-1]}; project them to the same D"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k has Nk={k.shape[2]} positions but v has {v.shape[2]}; they must match")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(
            f"empty sequence: q has N={q.shape[2]}, k has N={k.shape[2]}; attention needs at least one position"
        )
    if q.shape[-1] == 0:
        raise ValueError("head dim D is 0; use D >= 1")


def check_scale(scale: float | None, head_dim: int) -> float:
    """Return the softmax scale: `scale` if given (must be a positive finite number), else 1/sqrt(D)."""
    if scale is None:
        return head_dim**-0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if not (scale > 0 and scale != float("inf")):
        raise ValueError(f"scale must be a positive finite number, got {scale}; use None for 1/sqrt(D)")
    return float(scale)


def expand_kv_heads(k: torch.Tensor, heads: int) -> torch.Tensor:
    """Repeat k/v heads (B, Hk, N, D) -> (B, heads, N, D) for grouped-query attention (head h uses h // group)."""
    group = heads // k.shape[1]
    return k if group == 1 else k.repeat_interleave(group, dim=1)
