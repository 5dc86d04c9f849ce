"""Rotary position embedding (RoPE, Su et al. 2021, arXiv 2104.09864, eq. 34), rotate-half layout."""
from __future__ import annotations

import torch


def rope_tables(positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype=None):
    """cos, sin tables of shape (*positions.shape, head_dim) for integer positions.

    Frequency of pair i is base^(-2i / head_dim); the two halves of the head dim form the rotated pairs.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {head_dim}; pick d_model / n_heads even")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    dtype = dtype or torch.get_default_dtype()
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, N, D) by position: x * cos + rotate_half(x) * sin; cos/sin (N, D) or (B, 1, N, D)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
