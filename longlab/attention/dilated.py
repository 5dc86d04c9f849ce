"""LongNet dilated attention (Ding et al. 2023, arXiv 2307.02486), exact, on `attend` + an lse merge.

Per branch (w_i, r_i) the kept rows of each segment are gathered into dense blocks (see `dilated_layout`),
`attend` runs on them (exact gradients through out AND lse), and the branches are merged by log-sum-exp
(paper eq. 10: weights softmax over branches of their normalisers) straight into the output rows. The FLOPs
are the gathered ones, 2 N d sum_i w_i / r_i^2 per head for QK^T, not the N^2 of a masked dense kernel.

A second way to run the same maths: `backend="flex"` hands the pattern's closed-form mask to PyTorch's
FlexAttention (`flex.py`), for GPU users who want PyTorch's own fused sparse kernel.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import positive_int
from .dilated_layout import batch_rows, block_multiplicity, branch_blocks, gather
from .kernels import attend
from .merge import lse_weights
from .patterns import Dilated
from .validate import check_qkv, check_scale, expand_kv_heads

BACKENDS = ("gathered", "flex")


def _as_list(name: str, value) -> list:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of positive ints (one per branch), got {value!r}")
    return list(value)


def _biased_attention(q, k, v, log_weight, causal, scale):
    """Dense softmax over (..., m, m) scores + log_weight (used by dedupe); exact autograd, rows never empty."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale + log_weight
    if causal:
        m = q.shape[-2]
        upper = torch.ones(m, m, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(upper, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse[..., None]), v), lse


def _branch(q_flat, k_flat, v_flat, pattern, branch, heads, n, causal, scale, dedupe):
    """[(block, rows, out_b (B, G*S, m, Dv), lse_b (B, G*S, m))] for one branch; inputs are (B, H*N, D);
    rows index the flat (B*H*N) view (None for an identity block)."""
    results = []
    for block in branch_blocks(pattern, branch, heads, n):
        index = None if block.identity else batch_rows(block.flat_index(n, q_flat.device), q_flat.shape[0], heads * n)
        qb, kb, vb = (gather(t, block, index) for t in (q_flat, k_flat, v_flat))
        if dedupe:
            mult = block_multiplicity(pattern, block, heads, n).to(q_flat.device)  # (G, S, m, m)
            log_w = -mult.to(q_flat.dtype).log().reshape(1, -1, block.rows, block.rows)
            out_b, lse_b = _biased_attention(qb, kb, vb, log_w, causal, scale)
        else:
            out_b, lse_b = attend(qb, kb, vb, causal=causal, scale=scale)
        results.append((block, index, out_b, lse_b))
    return results


# Rows per run of the merge-as-you-go path (at most this, at most 1/16 of all rows, at least one segment):
# bounds its gathered q/k/v and partial outputs (2**19 rows of D = 64 float32 = 128 MiB each) while keeping
# each attend call large enough to run at full speed.
STREAM_ROWS = 2**19


def _merge_into(out, lse, out_b, lse_b):
    """In place: (out, lse) <- lse-merge of (out, lse) and the piece (out_b, lse_b); out (..., Dv) and lse (...)
    may be strided views of the running output. lse_b is finite: every kept row sees at least itself."""
    new = torch.logaddexp(lse, lse_b)
    out.mul_(torch.exp(lse - new)[..., None]).addcmul_(out_b, torch.exp(lse_b - new)[..., None])
    lse.copy_(new)


def _kept_rows(t, head, offset, segments, m, r):
    """(B, H, N, C) -> (B, segments, m, C): rows offset + r * (s * m + i) of `head`, a strided view (no copy)."""
    return t[:, head, : segments * m * r].unflatten(1, (segments, m, r))[:, :, :, offset]


def _stream_merge(q_flat, k_flat, v_flat, pattern, heads, n, causal, scale, dedupe, dv):
    """Forward without autograd: merge each piece into a running (out, lse) as soon as it is computed (paper
    eq. 10 one piece at a time: lse <- log(e^lse + e^lse_b), out <- out e^(lse_old - lse) + out_b e^(lse_b - lse)).
    Blocks are cut into runs of whole segments of about STREAM_ROWS rows, so the peak is the output plus one
    run: O(N D), not O(branches N D). Same result as `_merge_branches` up to rounding.

    A branch's full segments keep, per head, the rows offset + r t: a strided view. They are attended and merged
    head by head through such views (no index gathers, the merge in place: ~3x faster than index_select /
    index_copy on CPU); only a partial last segment goes through row indices."""
    bsz = q_flat.shape[0]
    rows_total = bsz * heads * n
    flat = [t.reshape(rows_total, t.shape[-1]) for t in (q_flat, k_flat, v_flat)]
    blocks = [block for b in range(pattern.num_branches) for block in branch_blocks(pattern, b, heads, n)]
    blocks.sort(key=lambda block: not block.identity)  # an identity block (r = 1, N % w == 0) seeds the output
    out = lse = None
    if blocks and blocks[0].identity and not dedupe:
        m = blocks[0].rows
        out, lse = attend(*(t.view(1, -1, m, t.shape[-1]) for t in flat), causal=causal, scale=scale)
        out, lse, blocks = out.reshape(rows_total, dv), lse.reshape(rows_total), blocks[1:]
    if out is None:
        out, lse = q_flat.new_zeros(rows_total, dv), q_flat.new_full((rows_total,), float("-inf"))
    per_head = [t.reshape(bsz, heads, n, t.shape[-1]) for t in (q_flat, k_flat, v_flat)]
    per_head.append(out.view(bsz, heads, n, dv))  # views: the merge writes through them
    per_head.append(lse.view(bsz, heads, n, 1))
    for block in blocks:
        m = block.rows
        log_w = None
        if dedupe:
            mult = block_multiplicity(pattern, block, heads, n).to(q_flat.device)  # (G, S, m, m)
            log_w = -mult.to(q_flat.dtype).log()
        step = max(1, min(STREAM_ROWS, rows_total // 16) // m)  # a run: at most 1/16 of the rows

        def run(qb, kb, vb, bias):  # bias: the dedupe log-weights of these segments (broadcast over the batch)
            if dedupe:
                return _biased_attention(qb, kb, vb, bias, causal, scale)
            return attend(qb, kb, vb, causal=causal, scale=scale)

        if block.strided is not None:
            r, offsets = block.strided
            for g, (h, o) in enumerate(zip(block.head_ids, offsets)):
                q_h, k_h, v_h, out_h, lse_h = (_kept_rows(t, h, o, block.segments, m, r) for t in per_head)
                for start in range(0, block.segments, step):
                    stop = min(block.segments, start + step)
                    bias = None if log_w is None else log_w[g, start:stop]
                    out_b, lse_b = run(q_h[:, start:stop], k_h[:, start:stop], v_h[:, start:stop], bias)
                    _merge_into(out_h[:, start:stop], lse_h[:, start:stop, :, 0], out_b, lse_b)
            continue
        # a partial last segment (every full block, identity included, went through the strided views)
        index = batch_rows(block.flat_index(n, q_flat.device), bsz, heads * n)
        segments = index.numel() // m  # over batch, heads and segments
        if log_w is not None:  # (1, B * G * S, m, m) in the order of the gathered rows
            flat_w = log_w.reshape(1, -1, m, m).expand(bsz, -1, -1, -1).reshape(1, -1, m, m)
        for start in range(0, segments, step):
            stop = min(segments, start + step)
            rows = index[start * m: stop * m]
            qb, kb, vb = (t.index_select(0, rows).view(1, -1, m, t.shape[-1]) for t in flat)
            out_b, lse_b = run(qb, kb, vb, None if log_w is None else flat_w[:, start:stop])
            del qb, kb, vb
            running, old = out.index_select(0, rows), lse.index_select(0, rows)
            _merge_into(running, old, out_b.reshape(-1, dv), lse_b.reshape(-1))
            out.index_copy_(0, rows, running)
            lse.index_copy_(0, rows, old)
            del out_b, lse_b, running
    return out.view(bsz, heads, n, dv), lse.view(bsz, heads, n)


def _merge_branches(branches, bsz, heads, n, dv, like):
    """LSE-merge of all branches' blocks straight into one (B, H, N, Dv) output (paper eq. 10).

    Same maths as `merge` on scattered per-branch tensors, without materialising a zero-filled full-size
    output per branch: only the small (B, H*N) lse maps are scattered; each block's output is weighted and
    index_add-ed into its rows (backward: one index_select). Uncovered rows keep weight 0; rows covered by no
    branch give out 0, lse -inf. Exact gradients, through lse too.
    """
    lse_maps = []  # each flat (B*H*N,): row-major over (B, H*N), so `rows` indexes it directly
    for results in branches:
        flat = like.new_full((bsz * heads * n,), float("-inf"))
        for block, rows, _, l_b in results:
            l_flat = l_b.reshape(-1)
            flat = l_flat if block.identity else flat.index_copy(0, rows, l_flat)
        lse_maps.append(flat)
    weights, lse = lse_weights(torch.stack(lse_maps), dim=0)  # (branches, B*H*N): 0 where a branch misses a row
    out = None
    for weight, results in zip(weights, branches):
        for block, rows, o_b, _ in results:
            rows_weight = weight if block.identity else weight.index_select(0, rows)
            contrib = o_b.reshape(-1, dv) * rows_weight[:, None]
            if block.identity:  # the r = 1 branch covers every row: no scatter at all
                out = contrib if out is None else out + contrib
                continue
            if out is None:
                out = like.new_zeros(bsz * heads * n, dv)
            out.index_add_(0, rows, contrib)
    if out is None:  # no branch keeps any row (e.g. N < every head's offset)
        out = like.new_zeros(bsz * heads * n, dv)
    return out.view(bsz, heads, n, dv), lse.view(bsz, heads, n)


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths,
    dilation_rates,
    causal: bool = False,
    offsets="reference",
    dedupe: bool = False,
    scale: float | None = None,
    return_lse: bool = False,
    backend: str = "gathered",
):
    """LongNet multi-branch dilated self-attention (arXiv 2307.02486, eqs. 4-10).

    Shapes: q (B, H, N, D), k and v (B, Hk, N, D / Dv) with Hk dividing H (grouped-query heads are repeated);
    returns out (B, H, N, Dv), and lse (B, H, N) when `return_lse`.

    Branch i: segments of w_i = min(segment_lengths[i], N); inside a segment head h keeps the rows whose
    in-segment index is = offset_i(h) (mod r_i = dilation_rates[i]); kept rows attend densely (causally when
    `causal`: causal among kept rows = causal on positions) within their segment (eqs. 4-7). The last
    partial segment (N not a multiple of w_i) keeps only real rows: no padding is attended.
    Branches are merged by lse (eq. 10), so a key seen through several branches counts once per branch, as in
    the paper and its reference code. `dedupe=True` counts every visible key once (union of the branches'
    key sets; each copy is weighted 1 / multiplicity inside the blocks). dedupe runs plain-math blocks that
    hold each block's (w_i / r_i)^2 scores: meant for teaching and test sizes, not N = 64k.
    offsets: "reference" (h // ceil(H / r), LongNet's code), "paper" (h mod r) or [[offset per head] per branch].
    Rows a head covers in no branch give out = 0 and lse = -inf (never NaN). Gradients are exact.
    Semantics = `reference_attention(..., multiplicity=Dilated(...).multiplicity(H, N))` (or `> 0` if dedupe).
    backend: "gathered" (the above: any device, exact gradients) or "flex": PyTorch's FlexAttention with the
    pattern's block mask and, unless dedupe, a log-multiplicity score_mod, same results (`flex.py`). flex runs
    compiled; the block mask is built once per (pattern, H, N) and cached. It computes every tile holding a
    visible pair (more FLOPs than gathering). On CPU (torch 2.13) it is forward only and gives no lse.
    """
    check_qkv(q, k, v)
    if q.shape[2] != k.shape[2]:
        raise ValueError(
            f"dilated attention is self-attention: q has N={q.shape[2]} but k/v have N={k.shape[2]}; "
            f"pass q, k, v of the same sequence length"
        )
    scale = check_scale(scale, q.shape[-1])
    for name, flag in (("causal", causal), ("dedupe", dedupe), ("return_lse", return_lse)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    pattern = Dilated(_as_list("segment_lengths", segment_lengths), _as_list("dilation_rates", dilation_rates),
                      causal=causal, offsets=offsets)
    heads = q.shape[1]
    for b in range(pattern.num_branches):
        pattern.head_offsets(b, heads)  # validates explicit offset lists against H
    k, v = expand_kv_heads(k, heads), expand_kv_heads(v, heads)
    if backend == "flex":
        from .flex import pattern_attention

        return pattern_attention(q, k, v, pattern, dedupe=dedupe, scale=scale, return_lse=return_lse)
    bsz, n = q.shape[0], q.shape[2]
    q_flat, k_flat, v_flat = (t.reshape(bsz, heads * n, t.shape[-1]) for t in (q, k, v))
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        # No backward to feed: merge as we go (peak O(N D)). With autograd every branch's output is saved
        # for the backward anyway, so the all-branches merge below costs no extra memory there.
        out, lse = _stream_merge(q_flat, k_flat, v_flat, pattern, heads, n, causal, scale, dedupe, v.shape[-1])
        return (out, lse) if return_lse else out
    branches = [_branch(q_flat, k_flat, v_flat, pattern, b, heads, n, causal, scale, dedupe)
                for b in range(pattern.num_branches)]
    # A branch whose single block is the identity (r = 1, N % w == 0) goes first and seeds the output.
    branches.sort(key=lambda res: not (res and res[0][0].identity))
    out, lse = _merge_branches(branches, bsz, heads, n, v.shape[-1], q)
    return (out, lse) if return_lse else out


class DilatedAttention(nn.Module):
    """Multi-head LongNet dilated self-attention with input/output projections (arXiv 2307.02486, eq. 10-11).

    Drop-in for `nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)` used as self-attention:
    `forward(query, key=None, value=None, ...)` takes (B, N, E) and returns (out (B, N, E), None).
    key/value default to query; attention weights are never materialised (need_weights must be False) and
    attn_mask / key_padding_mask are not supported (use `causal`). `dropout` applies to the attention output
    before out_proj (the weights are never formed, so they cannot be dropped as nn.MultiheadAttention does).
    """

    def __init__(self, embed_dim: int, num_heads: int, segment_lengths=(2048, 4096, 8192),
                 dilation_rates=(1, 2, 4), causal: bool = False, offsets="reference", dedupe: bool = False,
                 bias: bool = True, dropout: float = 0.0, device=None, dtype=None, backend: str = "gathered"):
        super().__init__()
        positive_int("embed_dim", embed_dim), positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        # Validate the pattern once here so a bad config fails at construction, not at the first forward.
        self.pattern = Dilated(_as_list("segment_lengths", segment_lengths),
                               _as_list("dilation_rates", dilation_rates), causal=causal, offsets=offsets)
        for b in range(self.pattern.num_branches):
            self.pattern.head_offsets(b, num_heads)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.causal, self.offsets, self.dedupe, self.dropout, self.backend = causal, offsets, dedupe, dropout, backend
        self.batch_first = True
        kw = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)

    def extra_repr(self) -> str:
        p = self.pattern
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, segment_lengths={list(p.segment_lengths)}, "
                f"dilation_rates={list(p.dilation_rates)}, causal={self.causal}, offsets={self.offsets!r}, "
                f"dedupe={self.dedupe}, backend={self.backend!r}")

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, E) -> (B, H, N, D)
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=False, attn_mask=None,
                is_causal=None):
        """query/key/value (B, N, E) -> (out (B, N, E), None)."""
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must be (B, N, {self.embed_dim}) (batch_first), got {tuple(query.shape)}")
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError("DilatedAttention does not take attn_mask/key_padding_mask; use causal=True at init")
        if need_weights:
            raise ValueError("DilatedAttention never materialises attention weights; call with need_weights=False")
        if is_causal is not None and bool(is_causal) != self.causal:
            raise ValueError(f"is_causal={is_causal} disagrees with causal={self.causal} set at construction")
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (self._split(proj(x)) for proj, x in ((self.q_proj, query), (self.k_proj, key),
                                                        (self.v_proj, value)))
        p = self.pattern
        out = dilated_attention(q, k, v, list(p.segment_lengths), list(p.dilation_rates), causal=self.causal,
                                offsets=self.offsets, dedupe=self.dedupe, backend=self.backend)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], self.embed_dim)
        out = nn.functional.dropout(out, self.dropout, self.training)
        return self.out_proj(out), None
