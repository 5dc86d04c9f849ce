"""Focused Transformer memory attention (Tworkowski et al. 2023, arXiv 2307.03170; LongLLaMA).

The local causal keys and the memory keys go through ONE softmax with the same 1/sqrt(D) scale and no gate:
"no distinction between local context and memory". With longlab's exact pieces that is

    out, lse = merge([attend(q, k, v, causal=True),        # local partial: keys rotated by in-window position
                      memory partial (out_m, lse_m)])       # memory keys stored un-rotated (position 0)

so the result equals one dense softmax over [memory keys, causal local keys] (tested against float64
`reference_attention`). Queries keep their in-window rotation; memory keys carry no position.
Memory retrieval: top-k by inner product through `KVMemory` (the paper, k = 32 at inference), or all of memory
(`topk=None`, what the released LongLLaMA code does). Lanes, document resets and read-before-write come from
`MemoryLayer`; memory is bounded (FIFO), unlike the released code.

Explicit extra context: forward(..., extra=(k (B, H, M, D) un-rotated, v (B, H, M, D), mask (B, M) bool or None))
adds M keys per lane to the same softmax, with gradients (the reference for crossbatch).
Crossbatch training: forward(..., crossbatch=CrossbatchLayout) on a batch of 2b rows [previous windows;
current windows]: current row i also sees, in its one softmax, the un-rotated keys of the previous windows of
the lanes in layout.sources[i] (its own first: the positive; then d - 1 negatives), with gradients through both
windows; memory is not used (as in the paper). See `longlab.memory.focused.crossbatch`.

`read_into_memory(model, tokens, keep_last)` feeds a long prompt into memory window by window and returns the
last `keep_last` tokens, the local context from which `model.generate` continues.
"""
from __future__ import annotations

import math

import torch

from ...attention import attend, merge
from ..base import LaneRead, MemoryLayer
from ..lanes import Retrieval, memory_layers

RECORD_K = 32  # entries recorded per query when the layer attends to all of memory (topk=None)


def masked_partial(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float):
    """(out, lse) of q (B, H, N, D) over keys k / v (B, H, M, D) (no causality), mask (B, M) bool or None
    (True = visible). Rows that see no key give out = 0, lse = -inf (they then add nothing to a merge)."""
    if mask is None:
        return attend(q, k, v, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    out = torch.matmul(torch.exp(scores - safe[..., None]), v)
    return out, lse


class FocusedAttention(MemoryLayer):
    """FoT memory layer for TinyLM: forward(x (B, N, d), positions (N,), doc_start=None, write_memory=True,
    doc_ids=None, return_retrievals=False, extra=None, crossbatch=None) -> (B, N, d) (or (out, LayerReads)).

    Memory size from config.memory_size; top-k from config.extra["focused_topk"] (None = all of memory), else
    config.memory_topk."""

    supports_crossbatch = True

    def __init__(self, config, layer_index: int = 0):
        super().__init__(config, layer_index)
        self.topk = config.extra.get("focused_topk", config.memory_topk)
        if self.topk is not None and (isinstance(self.topk, bool) or not isinstance(self.topk, int) or self.topk < 1):
            raise ValueError(f"focused top-k must be a positive int or None (all of memory), got {self.topk!r}")
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def uses_memory(self, crossbatch=None, **context) -> bool:
        return crossbatch is None and self.lanes.enabled

    # ---- memory ----------------------------------------------------------------------------------------
    def read_lane(self, bank, q_raw, q) -> LaneRead:
        """Memory partial of one lane, queries with their rotation against un-rotated keys, the one scale."""
        if bank.key_dim != self.head_dim or bank.heads != self.n_heads:
            raise ValueError(f"memory holds keys of {bank.heads} heads x {bank.key_dim} dims; this layer has "
                             f"{self.n_heads} x {self.head_dim}: a memory of another width")
        if self.topk is None:  # all of memory: one non-causal attention over every stored key
            n = len(bank)
            keys, values = bank.keys[None, :, :n], bank.values[None, :, :n]
            if torch.is_grad_enabled():  # autograd keeps them for the backward; the write that follows changes them
                keys, values = keys.clone(), values.clone()
            out, lse = attend(q[None], keys, values, scale=self.scale)
            return LaneRead(out[0], lse[0], None)  # the record (best entries) is searched only when asked
        found = bank.search(q, self.topk)  # top-k by inner product, no gradient (indices only matter)
        logits = torch.einsum("hnd,hnkd->hnk", q, found.keys) * self.scale  # gradient flows to q only
        lse = torch.logsumexp(logits, dim=-1)
        out = torch.einsum("hnk,hnkd->hnd", torch.softmax(logits, dim=-1), found.values)
        return LaneRead(out, lse, Retrieval(found.positions, found.doc_ids, logits.detach(), logits.detach()))

    # ---- the one softmax --------------------------------------------------------------------------------
    def combine(self, q, k, v, reads, *, k_raw=None, record=False, extra=None, crossbatch=None, **context):
        out, lse = attend(q, k, v, causal=True, scale=self.scale)
        if record and self.topk is None and reads is not None:  # all of memory: record its best entries
            for i, r in enumerate(reads):
                if r is not None:
                    found = self.lanes[i].bank.search(q[i].detach(), RECORD_K)
                    logits = found.scores * self.scale
                    r.record = Retrieval(found.positions, found.doc_ids, logits, logits)
        if crossbatch is not None:
            return self._crossbatch(q, k_raw, v, out, lse, crossbatch, record)
        if extra is not None:
            out, lse = self._extra(q, out, lse, extra)
        if reads is not None and any(r is not None for r in reads):
            outs, lses = [], []
            for i, r in enumerate(reads):
                if r is None:
                    outs.append(out[i]), lses.append(lse[i])
                    continue
                o, s = merge([(out[i], lse[i]), (r.out, r.lse)])
                if r.record is not None:  # each entry's share of the one softmax
                    r.record.weights = torch.exp(r.record.scores - s.detach()[..., None])
                outs.append(o), lses.append(s)
            out = torch.stack(outs)
        return out

    def _extra(self, q, out, lse, extra):
        if not (isinstance(extra, (tuple, list)) and len(extra) in (2, 3)):
            raise TypeError("extra must be (keys, values) or (keys, values, mask): keys / values (B, H, M, D) "
                            "un-rotated, mask (B, M) bool")
        k_x, v_x, mask = (*extra, None) if len(extra) == 2 else extra
        b, h, _, d = q.shape
        if k_x.dim() != 4 or (k_x.shape[0], k_x.shape[1], k_x.shape[3]) != (b, h, d) or v_x.shape[:3] != k_x.shape[:3]:
            raise ValueError(f"extra keys / values must be (B, H, M, D) = ({b}, {h}, M, {d}), got "
                             f"{tuple(k_x.shape)} / {tuple(v_x.shape)}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (b, k_x.shape[2])):
            raise ValueError(f"extra mask must be bool (B, M) = ({b}, {k_x.shape[2]}), got {mask.dtype} "
                             f"{tuple(mask.shape)}")
        return merge([(out, lse), masked_partial(q, k_x, v_x, mask, self.scale)])

    def _crossbatch(self, q, k_raw, v, out, lse, layout, record):
        """Rows [0, b) are previous windows (local attention only), rows [b, 2b) current windows that also see
        the previous windows of layout.sources (b, d) (column 0: their own, the positive)."""
        b = layout.lanes
        if q.shape[0] != 2 * b:
            raise ValueError(f"crossbatch with {b} lanes needs a batch of 2 x {b} rows [previous; current], got "
                             f"{q.shape[0]}")
        k_prev, v_prev = k_raw[:b], v[:b]  # un-rotated keys of the previous windows, with gradients
        src = layout.sources.to(q.device)
        d, n = src.shape[1], k_raw.shape[2]
        gather = lambda t: t[src].permute(0, 2, 1, 3, 4).reshape(b, t.shape[1], d * n, t.shape[3])  # noqa: E731
        k_x, v_x = gather(k_prev), gather(v_prev)
        q_cur = q[b:]
        x_out, x_lse = attend(q_cur, k_x, v_x, scale=self.scale)
        if layout.positive is not None and not bool(layout.positive.all()):  # no positive: the lane sees none
            blind = ~layout.positive.to(q.device)[:, None, None]
            x_lse = x_lse.masked_fill(blind, float("-inf"))
            x_out = x_out.masked_fill(blind[..., None], 0.0)
        cur_out, cur_lse = merge([(out[b:], lse[b:]), (x_out, x_lse)])
        out = torch.cat([out[:b], cur_out])
        if not record:
            return out
        with torch.no_grad():  # share of the whole softmax on each source context (b, H, N, d), kept as a log:
            # a query that barely looks outside its window has shares below float range, their ratios do not
            scores = torch.matmul(q_cur, k_x.transpose(-1, -2)) * self.scale
            log_mass = torch.logsumexp(scores.unflatten(-1, (d, n)), dim=-1) - cur_lse[..., None]
            if layout.positive is not None:
                log_mass = log_mass.masked_fill(~layout.positive.to(q.device)[:, None, None, None], float("-inf"))
        return out, {"crossbatch_mass": log_mass.exp(), "crossbatch_log_mass": log_mass}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, topk={'all' if self.topk is None else self.topk}, one softmax, no gate"


@torch.no_grad()
def read_into_memory(model, tokens: torch.Tensor, keep_last: int, read: bool = True, overlap: int = 0) -> torch.Tensor:
    """Feed all but the last `keep_last` tokens of `tokens` (N,) or (B, N) into the model's memory, window by
    window (config.context tokens each, the last one possibly shorter), and return the kept tail (B, keep_last):
    the local context from which `model.generate` continues. The memory lanes must already be there (e.g.
    inside `memory_lanes(model, sizes=[...])`) or are made at the layers' capacity.

    read=False skips the memory reads while filling (much faster for large memories). With ONE memory layer this
    stores exactly the same entries: that layer's keys and values come from the layers below it, which do not
    depend on memory; with several memory layers it would not, so it is refused.

    overlap > 0: each window after the first starts `overlap` tokens early and writes only its new tokens, so
    every stored key was computed with at least `overlap` tokens before it in the window (the layers below the
    memory layer see only their window: without overlap, the first tokens of a window are stored without the
    bytes they follow). Costs context / (context - overlap) times the compute; one Focused memory layer only."""
    layers = memory_layers(model)
    if not layers:
        raise ValueError("model has no memory layer; build it with attention=(..., 'focused')")
    if not read and len(layers) > 1:
        raise ValueError("read=False is exact only for a model with one memory layer (the keys a memory layer "
                         "writes depend on the reads of the memory layers below it)")
    tokens = tokens[None] if tokens.dim() == 1 else tokens
    context = model.config.context
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or not 0 <= keep_last <= context:
        raise ValueError(f"keep_last must be an int in [0, context={context}] (the tokens left in the local "
                         f"window), got {keep_last!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < context:
        raise ValueError(f"overlap must be an int in [0, context={context}) (tokens each window re-reads), "
                         f"got {overlap!r}")
    if overlap and (len(layers) > 1 or not all(isinstance(layer, FocusedAttention) for layer in layers)):
        raise ValueError("overlap needs a model with one Focused memory layer (its keys come from the layers "
                         "below it; other layers' writes or several memory layers would differ)")
    if tokens.shape[1] < keep_last:
        raise ValueError(f"prompt has {tokens.shape[1]} tokens, fewer than keep_last={keep_last}")
    head = tokens[:, : tokens.shape[1] - keep_last]
    start = 0
    while start < head.shape[1]:
        lead = min(overlap, start)  # tokens re-read before the new ones (none in the first window)
        window = head[:, start - lead : start - lead + context]
        model(window, read_memory=read, write_from=lead)
        start += window.shape[1] - lead
    return tokens[:, head.shape[1]:]
