"""Gathered layout of a dilated branch: which rows become which dense block (gather, don't mask).

A branch (w, r) cuts N into segments of w = min(w_i, N) and keeps, per head, the rows whose in-segment
index is = offset(head) (mod r). Because w is a multiple of r, every full segment keeps the same number
w / r of rows for every head, whatever its offset: all heads' kept rows of all full segments form ONE dense
problem of shape (B, H * S, w / r, D), gathered with a single index_select on the flat (B * H * N, D) view of the
input (its backward is a single index_add). The last partial segment (N not a multiple of w) keeps
ceil((len - offset) / r) rows, which depends on the offset: heads are grouped by that count into small extra
blocks. Only real rows are gathered: padding is never created, so never attended. For r = 1 with no partial
segment the gather is the identity (a pure view).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Block:
    """One dense attention problem of a branch: for each head in `head_ids`, the sequence positions
    `positions[g]` (segments x rows, ascending), each segment attending only within itself."""

    head_ids: tuple[int, ...]
    positions: torch.Tensor  # LongTensor (G, segments, rows)
    identity: bool = False  # every row of every head, in order: gather/scatter are views
    # (r, offsets) for the full segments of a branch: head h keeps rows offsets[h] + r * t, t < segments * w / r,
    # a strided view of that head's rows (what the no-grad stream merge uses instead of index gathers)
    strided: tuple | None = None

    @property
    def segments(self) -> int:
        return self.positions.shape[1]

    @property
    def rows(self) -> int:
        return self.positions.shape[2]

    def flat_index(self, n: int, device=None) -> torch.Tensor:
        """Indices into the (B, H * N, D) view of a (B, H, N, D) tensor: head h, position p -> h * N + p."""
        heads = torch.tensor(self.head_ids)[:, None, None]
        return (heads * n + self.positions).flatten().to(device)


def branch_blocks(pattern, branch: int, heads: int, n: int) -> list[Block]:
    """The dense blocks that compute branch `branch` of a `Dilated` pattern for (H, N) = (heads, n)."""
    w = pattern.segment_length(branch, n)
    r = pattern.dilation_rates[branch]
    offsets = pattern.head_offsets(branch, heads)
    # w % r != 0 only when the clamp w = N < w_i bites: then the single segment is handled as "partial".
    full = n // w if w % r == 0 else 0
    tail_start, tail_len = full * w, n - full * w
    blocks = []
    if full:
        starts = torch.arange(full)[None, :, None] * w + torch.tensor(offsets)[:, None, None]
        positions = starts + r * torch.arange(w // r)[None, None, :]  # (H, S, w / r)
        blocks.append(Block(tuple(range(heads)), positions, identity=(r == 1 and tail_len == 0),
                            strided=(r, tuple(offsets))))
    by_count: dict[int, list[int]] = {}
    for h, o in enumerate(offsets):
        if tail_len > o:
            by_count.setdefault(-(-(tail_len - o) // r), []).append(h)
    for count, hs in sorted(by_count.items()):
        starts = torch.tensor([tail_start + offsets[h] for h in hs])[:, None, None]
        blocks.append(Block(tuple(hs), starts + r * torch.arange(count)[None, None, :]))
    return blocks


def batch_rows(index: torch.Tensor, batch: int, rows_per_batch: int) -> torch.Tensor:
    """Row indices into the flat (B * H * N, ...) view for a per-batch index into (H * N): batch b, row i ->
    b * H * N + i. Selecting along dim 0 of a flat view runs ~2x faster on CPU than along dim 1 of (B, H*N, D)."""
    if batch == 1:
        return index
    return (torch.arange(batch, device=index.device)[:, None] * rows_per_batch + index).flatten()


def gather(x_flat: torch.Tensor, block: Block, rows: torch.Tensor | None) -> torch.Tensor:
    """(B, H * N, D) -> (B, G * segments, rows, D): the block's rows as dense segments (a view if identity).
    `rows` = batch_rows(block.flat_index(N), B, H * N)."""
    bsz, hn, d = x_flat.shape
    picked = x_flat if block.identity else x_flat.reshape(bsz * hn, d).index_select(0, rows)
    return picked.view(bsz, -1, block.rows, d)


def block_multiplicity(pattern, block: Block, heads: int, n: int) -> torch.Tensor:
    """int64 (G, segments, rows, rows): through how many branches each (query row, key row) pair of the block
    is visible (used by dedupe to weight each copy 1/multiplicity, so each distinct key counts once)."""
    q_pos, k_pos = block.positions[..., :, None], block.positions[..., None, :]
    total = torch.zeros(*block.positions.shape, block.rows, dtype=torch.long)
    for c in range(pattern.num_branches):
        w, r = pattern.segment_length(c, n), pattern.dilation_rates[c]
        offs = torch.tensor([pattern.head_offsets(c, heads)[h] for h in block.head_ids])[:, None, None, None]
        same = (q_pos // w) == (k_pos // w)
        kept = (((q_pos % w) % r) == offs) & (((k_pos % w) % r) == offs)
        total += (same & kept).long()
    return total
