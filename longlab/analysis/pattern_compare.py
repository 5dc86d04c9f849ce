"""Float-like (log-spaced) sparsity against LongNet's dilated mix at equal FLOPs.

`longnet_at_equal_pairs(n, pairs)` picks, among LongNet's geometric schedules (w_i = w0 2^i, r_i = 2^i, up to
a segment covering N), the one whose scored pairs are closest to `pairs`; `compare(n, m)` then reports for
both patterns the pairs, keys per query against distance (log-binned), the dependency path length and the
block density of the union mask. (Causal LongNet's graph is not connected: a token at a segment start sees
only rows of its own phase in every longer branch, so some earlier tokens never reach it: path length inf.)
"""
from __future__ import annotations

import dataclasses
import math

from ..attention.floatlike import FloatLike
from ..attention.patterns import Dilated
from ..checks import positive_int
from .allocation import keys_vs_distance, log_binned
from .paths import dependency_path_length


def longnet_schedules(n: int, heads: int, causal: bool = True) -> list[Dilated]:
    """LongNet geometric schedules w0 * 2^i, rates 2^i, with w0 a power of two <= N and the last segment >= N."""
    out = []
    w0 = 2
    while w0 <= n:
        branches = max(1, math.ceil(math.log2(n / w0)) + 1)
        out.append(Dilated.geometric(w0, 2, branches, causal=causal))
        w0 *= 2
    return out


def longnet_at_equal_pairs(n: int, pairs: int, heads: int, causal: bool = True) -> Dilated:
    """The LongNet schedule with the pair count (over `heads` heads) closest to `pairs` (in log ratio)."""
    return min(longnet_schedules(n, heads, causal), key=lambda p: abs(math.log(p.pairs(heads, n) / pairs)))


def compare(n: int, mantissa_bits: int, heads: int = 4, path_n: int = 512, block: int = 64) -> dict:
    """Float-like m vs the LongNet schedule of nearest FLOPs at length n (causal)."""
    positive_int("n", n)
    float_like = FloatLike(mantissa_bits, causal=True)
    pairs = float_like.pairs(heads, n)
    longnet = longnet_at_equal_pairs(n, pairs, heads)
    result = {"n": n, "heads": heads, "mantissa_bits": mantissa_bits}
    for name, pattern in (("float_like", float_like), ("longnet", longnet)):
        d, per = keys_vs_distance(pattern, heads, n, union=True)
        centers, binned = log_binned(d[1:], per[1:], bins_per_octave=1)
        small = FloatLike(mantissa_bits, True) if name == "float_like" else longnet_at_equal_pairs(
            path_n, FloatLike(mantissa_bits, True).pairs(heads, path_n), heads)
        result[name] = {
            "pattern": repr(pattern), "pairs": pattern.pairs(heads, n),
            "flops_per_head_dim": pattern.flops(n, 1, heads),
            "keys_vs_distance": {"distance": [float(c) for c in centers], "keys": [float(b) for b in binned]},
            # causal LongNet leaves some later tokens unreachable at any depth (inf); the non-causal twin is finite
            "path_length_at": path_n, "path_length_causal": dependency_path_length(small, heads, path_n),
            "path_length_noncausal": dependency_path_length(dataclasses.replace(small, causal=False), heads, path_n),
            "block_density": pattern.block_density(heads, n, block), "block": block,
        }
    return result
