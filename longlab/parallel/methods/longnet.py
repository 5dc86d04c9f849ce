"""LongNet's distributed dilated attention (Ding et al. 2023, arXiv 2307.02486, sec. 3.1, fig. 4).

Per branch (w, r), with s = N / P positions per rank:
- every rank sparsifies its own shard first: head h keeps its rows (offset(h) + r*j), s/r of them;
- segments no longer than the shard (w <= s) are entirely local: no communication;
- a longer segment spans g = w / s ranks: those ranks (and only those) all-gather their sparse k/v, which
  is s/r rows each, so each rank sends (g - 1) s/r rows per head: with r growing like w this stays constant
  as N and P grow (the paper's constant per-rank volume);
- queries stay local. Causal: a rank uses the gathered keys from the segment start through its own shard
  and aligns the causal mask bottom-right (its queries are the last rows). The reference code's causal
  path drops the rank's own shard; this one does not.
Branch outputs are merged by log-sum-exp (paper eq. 10). The result equals `longlab.dilated_attention`.
"""
from __future__ import annotations

import torch

from ...attention.kernels import attend
from ...attention.merge import merge
from ...attention.patterns import Dilated
from ...attention.validate import check_qkv, expand_kv_heads
from ..comm.ops import all_gather_cat
from ..comm.protocol import Communicator, Tag
from ..spec import CommStep, MethodSpec, Workload

# The default schedule is `Dilated`'s own; every call without options, the `longlab parallel` command and
# the cost formulas read it from here.
_DEFAULT = Dilated()
DEFAULT_OPTIONS = {"segment_lengths": tuple(_DEFAULT.segment_lengths),
                   "dilation_rates": tuple(_DEFAULT.dilation_rates), "offsets": _DEFAULT.offsets}


def pattern_of(opts: dict, causal: bool = False) -> Dilated:
    """The `Dilated` pattern of resolved LongNet options."""
    return Dilated(tuple(opts["segment_lengths"]), tuple(opts["dilation_rates"]), causal, opts["offsets"])


def branch_plan(pattern: Dilated, branch: int, seq_len: int, world_size: int) -> tuple[str, list[list[int]] | None]:
    """('local', None) if the branch's segments fit in a shard, else ('gather', partition of ranks by segment).

    Raises ValueError when segments and shards do not tile each other (see `check_longnet`).
    """
    shard = seq_len // world_size
    w, r = pattern.segment_length(branch, seq_len), pattern.dilation_rates[branch]
    if w <= shard:
        if shard % w:
            raise ValueError(
                f"branch {branch}: segment length min(w, N)={w} must divide the shard length N/P={shard} "
                f"(or be a multiple of it); pick powers of two for w, N and P"
            )
        return "local", None
    if w % shard or shard % r:
        raise ValueError(
            f"branch {branch}: segment length min(w, N)={w} must be a multiple of the shard length N/P={shard}, "
            f"and the shard a multiple of the dilation rate {r}; pick powers of two for w, r, N and P"
        )
    span = w // shard
    return "gather", [list(range(a, min(a + span, world_size))) for a in range(0, world_size, span)]


def check_longnet(pattern: Dilated, seq_len: int, world_size: int) -> None:
    """LongNet distributed needs P | N and, per branch, segments and shards that tile each other."""
    if seq_len % world_size:
        raise ValueError(
            f"longnet needs the sequence length N={seq_len} divisible by world_size={world_size}; pad N"
        )
    for b in range(pattern.num_branches):
        branch_plan(pattern, b, seq_len, world_size)


def _fold_segments(x, n_seg):
    """(B, H, n_seg * m, D) -> (B * n_seg, H, m, D): one attention batch entry per segment."""
    b, h, rows, d = x.shape
    return x.reshape(b, h, n_seg, rows // n_seg, d).transpose(1, 2).reshape(b * n_seg, h, rows // n_seg, d)


def _unfold_segments(x, batch):
    n_seg = x.shape[0] // batch
    _, h, m = x.shape[:3]
    tail = x.shape[3:]
    return x.reshape(batch, n_seg, h, m, *tail).transpose(1, 2).reshape(batch, h, n_seg * m, *tail)


def longnet_attention(
    group: Communicator,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths=DEFAULT_OPTIONS["segment_lengths"],
    dilation_rates=DEFAULT_OPTIONS["dilation_rates"],
    causal: bool = False,
    offsets=DEFAULT_OPTIONS["offsets"],
    scale: float | None = None,
) -> torch.Tensor:
    """This rank's output shard of LongNet dilated attention (eqs. 4-10), sequence split contiguously.

    q (B, H, s, D), k/v (B, Hk, s, D/Dv) with s = N / P (rank r holds positions r*s .. r*s + s - 1).
    Returns (B, H, s, Dv). Grouped-query k/v are repeated to H heads (heads of one group may keep different
    rows). Rows a head keeps in no branch give 0. Requirements: see `check_longnet`.
    """
    check_qkv(q, k, v)
    world, rank = group.world_size, group.rank
    batch, heads, shard = q.shape[:3]
    n = shard * world
    pattern = Dilated(tuple(segment_lengths), tuple(dilation_rates), causal, offsets)
    check_longnet(pattern, n, world)
    k, v = expand_kv_heads(k, heads), expand_kv_heads(v, heads)
    partials = []
    for b in range(pattern.num_branches):
        kind, groups = branch_plan(pattern, b, n, world)
        w, rate = pattern.segment_length(b, n), pattern.dilation_rates[b]
        offs = torch.tensor(pattern.head_offsets(b, heads), device=q.device)
        rows = offs[:, None] + rate * torch.arange(shard // rate, device=q.device)  # (H, s/r) local rows kept

        def sparse(x, rows=rows):
            return x.gather(2, rows[None, :, :, None].expand(x.shape[0], -1, -1, x.shape[-1]))

        qs, ks, vs = sparse(q), sparse(k), sparse(v)
        if kind == "local":
            n_seg = shard // w
            out_s, lse_s = attend(
                _fold_segments(qs, n_seg), _fold_segments(ks, n_seg), _fold_segments(vs, n_seg),
                causal=causal, scale=scale,
            )
            out_s, lse_s = _unfold_segments(out_s, batch), _unfold_segments(lse_s, batch)
        else:
            label = f"sparse {{}} branch {b} (w={w}, r={rate})"
            kg = all_gather_cat(group, ks, dim=2, groups=groups, tag=Tag("sparse k", label.format("k"), branch=b))
            vg = all_gather_cat(group, vs, dim=2, groups=groups, tag=Tag("sparse v", label.format("v"), branch=b))
            if causal:  # keys from the segment start through this rank; queries are the last rows
                start = next(g for g in groups if rank in g)[0]
                keep = (rank - start + 1) * qs.shape[2]
                kg, vg = kg[:, :, :keep], vg[:, :, :keep]
            out_s, lse_s = attend(qs, kg, vg, causal=causal, scale=scale)
        index = rows[None].expand(batch, -1, -1)
        out = out_s.new_zeros(batch, heads, shard, out_s.shape[-1]).scatter(2, index[..., None].expand_as(out_s), out_s)
        lse = lse_s.new_full((batch, heads, shard), float("-inf")).scatter(2, index, lse_s)
        partials.append((out, lse))
    return merge(partials)[0]


def check(heads: int, seq_len: int, world_size: int, opts: dict) -> None:
    """Segments and shards must tile each other (see `branch_plan`)."""
    check_longnet(pattern_of(opts), seq_len, world_size)


def plan(world_size: int, w: Workload, opts: dict) -> list[CommStep]:
    """Per branch with w > N/P: all-gathers of the sparse k and v within the segment's g ranks:
    (g-1) B H (N/P / r) (D + Dv) e bytes per rank; branches that fit in a shard send nothing."""
    p = world_size
    pattern = pattern_of(opts)
    shard = w.seq_len // p
    steps = []
    for b in range(pattern.num_branches):
        kind, groups = branch_plan(pattern, b, w.seq_len, p)
        if kind == "local":
            continue
        rows = shard // pattern.dilation_rates[b]
        size_of = {r: len(g) for g in groups for r in g}
        for name, dim in (("k", w.head_dim), ("v", w.dv)):
            chunk = w.batch * w.heads * rows * dim * w.elem_size
            steps.append(CommStep("all_gather", [size_of[r] - 1 for r in range(p)],
                                  [(size_of[r] - 1) * chunk for r in range(p)], f"sparse {name} branch {b}"))
    return steps


def geometric_schedule(seq_len: int, base: int = 64) -> dict:
    """The paper's geometric schedule up to N: segments base * 2^i (the last one = N), rates 2^i, so w/r is
    constant (= base) in every branch. With N/P >= the largest rate, every branch fits `branch_plan`."""
    if seq_len <= base:
        return {"segment_lengths": (seq_len,), "dilation_rates": (1,)}
    segments, rates, w, r = [], [], base, 1
    while w < seq_len:
        segments.append(w), rates.append(r)
        w, r = 2 * w, 2 * r
    segments.append(seq_len), rates.append(r)
    return {"segment_lengths": tuple(segments), "dilation_rates": tuple(rates)}


def _attention(group, q, k, v, *, causal, scale, seq_len, segment_lengths, dilation_rates, offsets):
    return longnet_attention(group, q, k, v, segment_lengths, dilation_rates, causal=causal, offsets=offsets,
                             scale=scale)


SPEC = MethodSpec(
    name="longnet",
    summary="LongNet distributed dilated attention: sparse k/v all-gathered only within a segment's ranks",
    sharding="contiguous",
    plan=plan,
    attention=_attention,
    options=DEFAULT_OPTIONS,
    check=check,
    demo_options=geometric_schedule,
)
