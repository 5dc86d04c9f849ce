"""Token-dependency path length: how many attention layers until every token can reach every other.

Layer graph: an edge key j -> query i when some head's query i sees key j (the heads are summed into one
output, so information crosses through any head). Stacking L layers composes the graph L times. The path
length is the smallest L at which every source reaches every target it could reach under dense attention
(all tokens; causal: all later tokens). Dense attention: 1; a sliding window: about N / window; LongNet's
dilated mix: logarithmic in N (paper sec. 2.2 / Table 1: O(log N) dependency).
"""
from __future__ import annotations

import math

import torch

from ..attention.patterns import Pattern


def _compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Boolean matrix product (reach in a, then in b)."""
    return (a.to(torch.float32) @ b.to(torch.float32)) > 0


def dependency_path_length(pattern: Pattern, heads: int, n: int, max_layers: int | None = None) -> float:
    """Layers needed so every token reaches every token (causal: every later one); math.inf if never.

    Exact, by repeated squaring of the one-layer reach matrix (the residual stream keeps what a token already
    has, so reach includes the identity) and binary lifting: O(N^3 log L) work, fine for N up to ~2048.
    """
    union = pattern.branch_masks(heads, n).any(dim=0).any(dim=0)  # (N queries, N keys)
    step = union.T | torch.eye(n, dtype=torch.bool)  # step[j, i]: key j's information reaches query i
    pos = torch.arange(n)
    target = pos[None, :] >= pos[:, None] if pattern.causal else torch.ones(n, n, dtype=torch.bool)
    limit = max_layers if max_layers is not None else n

    def done(reach):
        return bool((reach | ~target).all())

    powers = [step]  # powers[k] = reach within 2^k layers
    while not done(powers[-1]):
        nxt = _compose(powers[-1], powers[-1])
        if torch.equal(nxt, powers[-1]) or 2 ** len(powers) > 2 * limit:
            return math.inf
        powers.append(nxt)
    layers, reach = 0, torch.eye(n, dtype=torch.bool)
    for k in range(len(powers) - 1, -1, -1):  # largest L with reach(L) incomplete, then L + 1
        cand = _compose(reach, powers[k])
        if not done(cand):
            reach, layers = cand, layers + 2**k
    return float(layers + 1) if layers + 1 <= limit else math.inf
