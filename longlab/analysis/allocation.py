"""How attention is allocated over distance: structurally (keys a query can see) and effectively (weight).

LongNet (arXiv 2307.02486, sec. 2.2) designs dilated attention so that "attention allocation decreases
exponentially as the distance between tokens grows". Two measurements, both read from a Pattern object:
- `keys_vs_distance`: for each distance d = |i - j|, the number of keys at distance d a query sees, averaged
  over queries and heads (union of branches, or counted once per branch);
- `effective_allocation`: the attention weight the kernel actually puts at distance d (averaged over
  queries and heads), from its own lse: p_ij = m_ij exp(s_ij - lse_i).
`log_binned` averages a per-distance curve over geometric bins; `fit_decay` fits y ~ A exp(-d / L) and
y ~ C d^(-beta) by least squares in log space and reports both with R^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..attention.patterns import Dilated, Pattern
from ..attention.reference import reference_attention


def _pattern_weights(pattern: Pattern, heads: int, n: int, union: bool) -> torch.Tensor:
    mult = pattern.branch_masks(heads, n).sum(dim=0, dtype=torch.int32)  # (H, N, N)
    return (mult > 0).to(torch.int32) if union else mult


def _distance_histogram(values: torch.Tensor, n: int) -> np.ndarray:
    """values (..., N, N) summed over leading dims -> (N,) totals per |i - j| = 0..N-1."""
    total = values.reshape(-1, n, n).sum(dim=0).double()
    idx = torch.arange(n)
    dist = (idx[:, None] - idx[None, :]).abs().flatten()
    return torch.bincount(dist, weights=total.flatten(), minlength=n).numpy()


def keys_vs_distance(pattern: Pattern, heads: int, n: int, union: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(d = 0..N-1, mean number of keys at distance |i - j| = d that a query sees), averaged over N queries
    and `heads` heads. union=False counts a key once per branch that shows it (the lse merge's weighting)."""
    counts = _distance_histogram(_pattern_weights(pattern, heads, n, union), n)
    return np.arange(n), counts / (heads * n)


@dataclass
class EffectiveAllocation:
    """Mean attention weight at distance d (sums to `covered` over d), from running the kernel."""

    distance: np.ndarray
    weight: np.ndarray
    covered: float  # fraction of (query, head) rows that see at least one key
    max_row_error: float  # max |sum_j p_ij - 1| over covered rows: the kernel's lse is the true normaliser

    def __repr__(self) -> str:
        return (f"EffectiveAllocation(N={len(self.distance)}, covered={self.covered:.3f}, "
                f"max_row_error={self.max_row_error:.2e})")


def effective_allocation(pattern: Pattern, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None,
                         dedupe: bool = False, scale: float | None = None) -> EffectiveAllocation:
    """Attention weight vs distance for inputs q, k (B, H, N, D) under `pattern`.

    Dilated patterns run `dilated_attention` (the kernel) for lse; other patterns run `reference_attention`
    with the pattern's multiplicity. Weights are rebuilt densely, p_ij = m_ij exp(q_i.k_j * scale - lse_i),
    so this is for teaching sizes (N up to a few thousand).
    """
    from ..attention.dilated import dilated_attention

    bsz, heads, n, dim = q.shape
    v = k if v is None else v
    scale = dim**-0.5 if scale is None else scale
    mult = _pattern_weights(pattern, heads, n, union=dedupe).to(q.dtype)
    if isinstance(pattern, Dilated):
        _, lse = dilated_attention(q, k, v, list(pattern.segment_lengths), list(pattern.dilation_rates),
                                   causal=pattern.causal, offsets=pattern.offsets, dedupe=dedupe, scale=scale,
                                   return_lse=True)
    else:
        _, lse = reference_attention(q, k, v, causal=pattern.causal, scale=scale, multiplicity=mult)
    totals = np.zeros(n)
    row_error, covered = 0.0, 0
    with torch.no_grad():
        for h in range(heads):
            scores = torch.matmul(q[:, h], k[:, h].transpose(-1, -2)) * scale  # (B, N, N)
            finite = torch.isfinite(lse[:, h])
            safe = torch.where(finite, lse[:, h], torch.zeros_like(lse[:, h]))
            probs = mult[h] * torch.exp(scores - safe[..., None]) * finite[..., None]
            totals += _distance_histogram(probs, n)
            row_sum = probs.sum(-1)[finite]
            if row_sum.numel():
                row_error = max(row_error, float((row_sum - 1).abs().max()))
            covered += int(finite.sum())
    return EffectiveAllocation(np.arange(n), totals / (bsz * heads * n), covered / (bsz * heads * n), row_error)


def log_binned(distance: np.ndarray, values: np.ndarray, bins_per_octave: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Average `values` over geometric bins of distance >= 1 -> (bin centre, mean). Smooths the comb that
    dilation leaves (keys only at multiples of r) into a density per unit distance."""
    d = np.asarray(distance, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = d >= 1
    d, y = d[keep], y[keep]
    if d.size == 0:
        return np.array([]), np.array([])
    edges = 2.0 ** np.arange(0, np.log2(d.max()) + 1.0 / bins_per_octave + 1e-9, 1.0 / bins_per_octave)
    edges = np.unique(np.floor(edges))
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (d >= lo) & (d < hi)
        if sel.any():
            centres.append(np.sqrt(lo * (hi - 1)) if hi - 1 > lo else lo)
            means.append(y[sel].mean())
    last = d >= edges[-1]
    if last.any():
        centres.append(d[last].mean())
        means.append(y[last].mean())
    return np.array(centres), np.array(means)


@dataclass
class DecayFit:
    """y ~ amplitude * exp(-d / length) ('exponential') or y ~ amplitude * d^(-exponent) ('power')."""

    kind: str
    amplitude: float
    rate: float  # 1 / length for exponential, exponent beta for power law
    r2: float  # coefficient of determination in log space

    def predict(self, d) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        if self.kind == "exponential":
            return self.amplitude * np.exp(-self.rate * d)
        return self.amplitude * d ** (-self.rate)

    def describe(self) -> str:
        if self.kind == "exponential":
            return f"exp fit: {self.amplitude:.3g} * exp(-d / {1 / self.rate:.3g}), R^2 = {self.r2:.3f}"
        return f"power fit: {self.amplitude:.3g} * d^-{self.rate:.3g}, R^2 = {self.r2:.3f}"


def fit_decay(distance, values) -> dict[str, DecayFit]:
    """Least-squares fits of log y against d (exponential) and against log d (power law), on d >= 1, y > 0."""
    d = np.asarray(distance, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = (d >= 1) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        raise ValueError(f"fit_decay needs at least 2 points with d >= 1 and y > 0, got {int(keep.sum())}")
    d, log_y = d[keep], np.log(y[keep])
    fits = {}
    for kind, x in (("exponential", d), ("power", np.log(d))):
        slope, intercept = np.polyfit(x, log_y, 1)
        resid = log_y - (slope * x + intercept)
        ss_tot = ((log_y - log_y.mean()) ** 2).sum()
        r2 = 1.0 - (resid**2).sum() / ss_tot if ss_tot > 0 else 1.0
        fits[kind] = DecayFit(kind, float(np.exp(intercept)), float(-slope), float(r2))
    return fits


def capture_qk(model, idx: torch.Tensor, layer: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a TinyLM on idx (B, N) and return the (q, k, v) (B, H, N, D) its layer `layer` attends with
    (after RoPE), by wrapping that layer's `mix`. The model is left unchanged."""
    attn = model.blocks[layer].attn
    seen = {}
    original = attn.mix

    def spy(q, k, v):
        seen["qkv"] = (q.detach(), k.detach(), v.detach())
        return original(q, k, v)

    attn.mix = spy
    try:
        with torch.no_grad():
            model(idx)
    finally:
        del attn.mix  # back to the class method
    if "qkv" not in seen:
        raise ValueError(f"layer {layer} ({type(attn).__name__}) did not call mix(q, k, v); pick a plain layer")
    return seen["qkv"]
