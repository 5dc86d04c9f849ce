"""Dilated attention at decode time: which cached keys a new token needs, and a KV cache that keeps only those.

In causal LongNet attention (arXiv 2307.02486) token t of head h, in branch (w_i, r_i), sits in segment
s = floor(t / w_i). It takes part in that branch only if its in-segment index is = offset_i(h) (mod r_i), and
then it attends to the earlier kept rows of the SAME segment: positions p in [s w_i, t] with
(p - s w_i) = offset_i(h) (mod r_i). So once a segment ends, none of its keys is ever needed again by that
branch: the cache of branch i holds at most w_i / r_i keys per head, and the whole cache at most
sum_i w_i / r_i entries per head, whatever the number of tokens decoded (a dense cache holds all N).
(The full forward clamps w_i to min(w_i, N); for causal attention that gives the same keys, see `needed_keys`.)

`DilatedDecodeCache.step` decodes one token exactly: per branch an exact `attend` over that branch's cached
keys, branches merged by lse (paper eq. 10), equal to row t of `dilated_attention(..., causal=True)`.
"""
from __future__ import annotations

import torch

from ..checks import int_at_least, positive_int
from .kernels import attend
from .merge import merge
from .patterns import Dilated


def needed_keys(pattern: Dilated, t: int, head: int, heads: int) -> dict[int, torch.Tensor]:
    """{branch: LongTensor of positions} token t of head `head` attends to (empty if the branch skips it)."""
    int_at_least("t", t, 0)
    out = {}
    for b, (w, r) in enumerate(zip(pattern.segment_lengths, pattern.dilation_rates)):
        off = pattern.head_offsets(b, heads)[head]
        start = (t // w) * w
        out[b] = (torch.arange(start + off, t + 1, r) if (t - start) % r == off
                  else torch.zeros(0, dtype=torch.long))
    return out


class DilatedDecodeCache:
    """Token-by-token causal dilated attention with a KV cache holding only the keys future tokens need.

    cache = DilatedDecodeCache(segment_lengths, dilation_rates, heads); then for each new token
    out_t, lse_t = cache.step(q_t, k_t, v_t) with q_t/k_t (B, H, 1, D), v_t (B, H, 1, Dv) -> (B, H, 1, Dv), (B, H, 1).
    """

    def __init__(self, segment_lengths, dilation_rates, heads: int, offsets="reference", scale=None):
        positive_int("heads", heads)
        self.pattern = Dilated(tuple(segment_lengths), tuple(dilation_rates), causal=True, offsets=offsets)
        self.heads, self.scale, self.length = heads, scale, 0
        # heads sharing an offset share positions: one cache tensor per (branch, offset)
        self.groups = []
        for b in range(self.pattern.num_branches):
            offs = self.pattern.head_offsets(b, heads)
            self.groups.append({o: [h for h in range(heads) if offs[h] == o] for o in sorted(set(offs))})
        self.keys = [{o: None for o in g} for g in self.groups]
        self.values = [{o: None for o in g} for g in self.groups]
        self.positions = [{o: [] for o in g} for g in self.groups]

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        if q.dim() != 4 or q.shape[1] != self.heads or q.shape[2] != 1:
            raise ValueError(f"step takes one token: q must be (B, H={self.heads}, 1, D), got {tuple(q.shape)}")
        t = self.length
        partials = []
        for b, (w, r) in enumerate(zip(self.pattern.segment_lengths, self.pattern.dilation_rates)):
            index = t % w
            out = q.new_zeros(*q.shape[:3], v.shape[-1])
            lse = q.new_full(q.shape[:3], float("-inf"))
            for off, heads in self.groups[b].items():
                if index == 0:  # a new segment: the old one's keys are never needed again
                    self.keys[b][off] = self.values[b][off] = None
                    self.positions[b][off] = []
                if index % r != off:
                    continue
                kh, vh = k[:, heads], v[:, heads]
                old_k, old_v = self.keys[b][off], self.values[b][off]
                self.keys[b][off] = kh if old_k is None else torch.cat([old_k, kh], dim=2)
                self.values[b][off] = vh if old_v is None else torch.cat([old_v, vh], dim=2)
                self.positions[b][off].append(t)
                o_g, l_g = attend(q[:, heads], self.keys[b][off], self.values[b][off], scale=self.scale)
                out[:, heads], lse[:, heads] = o_g, l_g
            partials.append((out, lse))
        self.length += 1
        return merge(partials)

    def cached_positions(self, head: int) -> list[set[int]]:
        """Per branch, the positions this head's cache holds now."""
        return [set(self.positions[b][off]) for b, off in
                ((b, self.pattern.head_offsets(b, self.heads)[head]) for b in range(self.pattern.num_branches))]

    def entries(self) -> int:
        """Cached (k, v) entries per batch element, summed over heads and branches."""
        return sum(len(pos) * len(self.groups[b][off])
                   for b, group in enumerate(self.positions) for off, pos in group.items())

    def unique_positions(self, head: int) -> int:
        """Distinct positions held for `head` (a key in two branches' caches counted once)."""
        return len(set().union(*self.cached_positions(head)))

    def max_entries_per_head(self) -> int:
        """The bound sum_i w_i / r_i on one head's cached entries, independent of N."""
        return sum(w // r for w, r in zip(self.pattern.segment_lengths, self.pattern.dilation_rates))

    def __repr__(self) -> str:
        return (f"DilatedDecodeCache(tokens={self.length}, entries={self.entries()}, "
                f"bound per head={self.max_entries_per_head()})")


def cache_size_curve(segment_lengths, dilation_rates, heads: int, n: int, offsets="reference") -> torch.Tensor:
    """int64 (N,): cached entries per head (averaged over heads, rounded down) after each of N decoded tokens,
    from the needed-keys rule alone (no tensors): the curve to plot against a dense cache's 1..N."""
    pattern = Dilated(tuple(segment_lengths), tuple(dilation_rates), causal=True, offsets=offsets)
    positive_int("n", n)
    sizes = torch.zeros(n, dtype=torch.long)
    for b, (w, r) in enumerate(zip(pattern.segment_lengths, pattern.dilation_rates)):
        offs = torch.tensor(pattern.head_offsets(b, heads))
        t = torch.arange(n)
        index = t % w  # rows of the current segment so far: index + 1; kept: those = off (mod r)
        kept = torch.where(index[None, :] >= offs[:, None], (index[None, :] - offs[:, None]) // r + 1, 0)
        sizes += kept.sum(0) // heads
    return sizes
