"""Gathered layout of a dilated branch: which rows become which dense block (gather, don't mask).

A branch (w, r) cuts N into segments of w = min(w_i, N) and keeps, per head, the rows whose in-segment
index is = offset(head) (mod r). Because w is a multiple of r, the in-segment phase of every full segment
equals the global phase p mod r, so the kept rows of all full segments form ONE strided slice
`x[:, heads, o : S*w : r]`, which reshapes to (B, heads * S, w / r, D) dense blocks. Heads that share an
offset share a slice (reference offsets give contiguous head ranges, paper offsets give strided ones), so a
branch needs one block per distinct offset, plus one for the last partial segment when N is not a multiple
of w. The partial segment keeps only the rows that exist: padding is never created, so never attended.
For r = 1 with no partial segment the gather is a pure view.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Block:
    """One dense attention problem of a branch: rows start, start+step, ... < stop of the heads `heads`,
    split into `segments` independent segments of `rows` rows each (segments * rows rows in all)."""

    heads: object  # slice or LongTensor of head indices (all with the same offset)
    head_ids: tuple[int, ...]
    start: int
    stop: int
    step: int
    segments: int
    rows: int

    @property
    def total_rows(self) -> int:
        return self.segments * self.rows

    def covers_all(self, n: int) -> bool:
        """True when the block is every row of every head (r = 1, N a multiple of w): gather is a pure view."""
        return self.heads == slice(None) and self.start == 0 and self.step == 1 and self.stop == n

    def positions(self) -> torch.Tensor:
        """LongTensor (segments, rows) of the sequence positions of the block's rows."""
        return torch.arange(self.start, self.stop, self.step).view(self.segments, self.rows)


def _head_selector(heads: list[int], total: int):
    """A slice when `heads` is an arithmetic progression (cheap strided view), else an index tensor."""
    if heads == list(range(total)):
        return slice(None)
    if len(heads) == 1:
        return slice(heads[0], heads[0] + 1)
    step = heads[1] - heads[0]
    if step > 0 and all(b - a == step for a, b in zip(heads, heads[1:])):
        return slice(heads[0], heads[-1] + 1, step)
    return torch.tensor(heads, dtype=torch.long)


def branch_blocks(pattern, branch: int, heads: int, n: int) -> list[Block]:
    """The dense blocks that compute branch `branch` of a `Dilated` pattern for (H, N) = (heads, n)."""
    w = pattern.segment_length(branch, n)
    r = pattern.dilation_rates[branch]
    offsets = pattern.head_offsets(branch, heads)
    by_offset: dict[int, list[int]] = {}
    for h, o in enumerate(offsets):
        by_offset.setdefault(o, []).append(h)
    # w % r != 0 only when the clamp w = N < w_i bites: then the single segment is handled as "partial".
    full = n // w if w % r == 0 else 0
    tail_start, tail_len = full * w, n - full * w
    blocks = []
    for o in sorted(by_offset):
        hs = by_offset[o]
        sel = _head_selector(hs, heads)
        if full and o < w:
            blocks.append(Block(sel, tuple(hs), o, full * w, r, full, w // r))
        if tail_len > o:
            rows = -(-(tail_len - o) // r)
            blocks.append(Block(sel, tuple(hs), tail_start + o, n, r, 1, rows))
    return blocks


def gather(x: torch.Tensor, block: Block) -> torch.Tensor:
    """(B, H, N, D) -> (B, G * segments, rows, D): the block's rows as dense segments (a view when possible)."""
    picked = x[:, block.heads, block.start : block.stop : block.step]
    return picked.reshape(x.shape[0], -1, block.rows, x.shape[-1])


def block_multiplicity(pattern, block: Block, heads: int, n: int) -> torch.Tensor:
    """int64 (G, segments, rows, rows): through how many branches each (query row, key row) pair of the block
    is visible (used by dedupe to weight each copy 1/multiplicity, so each distinct key counts once)."""
    pos = block.positions()
    q_pos, k_pos = pos[:, :, None], pos[:, None, :]
    total = torch.zeros(len(block.head_ids), *q_pos.shape[:2], pos.shape[1], dtype=torch.long)
    for c in range(pattern.num_branches):
        w, r = pattern.segment_length(c, n), pattern.dilation_rates[c]
        offs = torch.tensor([pattern.head_offsets(c, heads)[h] for h in block.head_ids])[:, None, None, None]
        same = (q_pos // w) == (k_pos // w)
        kept = (((q_pos % w) % r) == offs) & (((k_pos % w) % r) == offs)
        total += (same & kept).long()
    return total
