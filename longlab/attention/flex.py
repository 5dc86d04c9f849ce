"""FlexAttention (PyTorch's own block-sparse attention kernel) over a sparsity pattern: the second way to run
LongNet, beside the gathered kernel of `dilated.py`.

- `block_mask(pattern, heads, n)`: FlexAttention's BlockMask from the pattern's closed-form `mask_mod`.
  Eager `create_block_mask` evaluates the mask on the whole (H, N, N) grid (8 heads at N = 65536: 32 GiB of
  bools, more for the int64 index arithmetic); compiled (`torch.compile(create_block_mask)`, PyTorch's own
  recommendation) the mask is fused into the per-tile reduction and memory stays O(H (N / block)^2).
- `pattern_attention(q, k, v, pattern)`: `flex_attention` with that block mask. dedupe=True: every visible
  key counts once (the union mask). dedupe=False: a key seen through m branches counts m times (a score_mod
  adds log m), which is what the lse merge of branches computes, i.e. `dilated_attention`'s default.

Who wants it: GPU users who prefer PyTorch's fused kernel. It computes every tile that holds one visible
pair, so for a dilated pattern it does more work than gathering rows (notebook 01, section 6). On CPU it runs
compiled, forward only (torch 2.13 has no CPU backward for FlexAttention); on CUDA it is differentiable.
"""
from __future__ import annotations

import torch

from ..checks import positive_int
from .pattern_base import Pattern

EAGER_LIMIT = 2**24  # H * N * N up to this: build the block mask eagerly (no compile wait; ~128 MiB at most)
_CACHE: dict = {}
_CACHE_SIZE = 8


def _flex():
    try:
        from torch.nn.attention import flex_attention as module
    except ImportError as err:  # torch < 2.5
        raise ImportError("FlexAttention needs torch >= 2.5 (torch.nn.attention.flex_attention)") from err
    return module


def _compiled(name: str):
    """torch.compile of a flex_attention function, made once per process. dynamic=False: each new shape or
    mod compiles afresh; with automatic dynamic shapes a second variant was seen to hit a C++ codegen error
    in inductor's CPU FlexAttention template (torch 2.13, "cur_kvSplitSize4 was not declared")."""
    key = ("compiled", name)
    if key not in _CACHE:
        _CACHE[key] = torch.compile(getattr(_flex(), name), dynamic=False)
    return _CACHE[key]


def block_mask(pattern: Pattern, heads: int, n: int, block: int = 128, device="cpu", compiled: bool | None = None):
    """FlexAttention BlockMask (batch 1, broadcast over the batch) of `pattern`'s union mask for H heads, N tokens.

    block: tile size (FlexAttention's default 128). compiled: None = eager when heads * n * n <= EAGER_LIMIT
    (teaching sizes), compiled above (bounded memory; the first compile takes a while on CPU). Masks are
    cached per (pattern, heads, n, block, device).
    """
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a longlab Pattern (Dense, SlidingWindow, Dilated, ...), got {pattern!r}")
    positive_int("heads", heads), positive_int("n", n), positive_int("block", block)
    compiled = heads * n * n > EAGER_LIMIT if compiled is None else compiled
    key = (repr(pattern), heads, n, block, str(torch.device(device)), compiled)
    if key not in _CACHE:
        build = _compiled("create_block_mask") if compiled else _flex().create_block_mask
        if len(_CACHE) >= _CACHE_SIZE + 2:  # +2: the two compiled functions stay
            del _CACHE[next(k for k in _CACHE if k[0] != "compiled")]
        _CACHE[key] = build(pattern.mask_mod(heads, n), 1, heads, n, n, device=device, BLOCK_SIZE=block)
    return _CACHE[key]


def multiplicity_score_mod(pattern: Pattern, heads: int, n: int):
    """score_mod(score, b, h, q_idx, kv_idx) = score + log(number of branches showing kv_idx to q_idx).

    Turns one softmax over the union into the lse merge of the branches (a key in m branches weighs m times);
    -inf where no branch shows the key (the block mask hides those anyway). None for one branch."""
    mods = pattern.branch_mask_mods(heads, n)
    if len(mods) == 1:
        return None

    def multiplicity(score, b, h, q_idx, kv_idx):
        count = sum(mod(b, h, q_idx, kv_idx).to(score.dtype) for mod in mods)
        return score + torch.log(count)

    return multiplicity


def pattern_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern, dedupe: bool = False,
                      scale: float | None = None, mask=None, return_lse: bool = False):
    """Softmax attention restricted to `pattern`, by FlexAttention (compiled): out, or (out, lse).

    Shapes: q, k, v (B, H, N, D) (k/v heads already expanded to H); out (B, H, N, D), lse (B, H, N), natural
    log. dedupe: count a key once (True) or once per branch that shows it (False). mask: a prebuilt
    `block_mask(pattern, H, N, device=q.device)` (built and cached here when None). Rows that see no key
    give out 0. On CPU (torch 2.13) compiled FlexAttention is inference only and returns no lse: both raise
    a ValueError here rather than deep inside the compiler.
    """
    if q.device.type == "cpu":
        if return_lse:
            raise ValueError("FlexAttention on CPU returns no lse (torch 2.13); use return_lse=False, a CUDA "
                             "device, or the gathered kernel (backend='gathered')")
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            raise ValueError("FlexAttention on CPU is forward only (torch 2.13); call it under torch.no_grad(), "
                             "on a CUDA device, or use the gathered kernel (backend='gathered') for gradients")
    heads, n = q.shape[1], q.shape[2]
    mask = block_mask(pattern, heads, n, device=q.device) if mask is None else mask
    score_mod = None if dedupe else multiplicity_score_mod(pattern, heads, n)
    flex_attention = _compiled("flex_attention")
    if not return_lse:
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, scale=scale)
    try:
        from torch.nn.attention.flex_attention import AuxRequest
    except ImportError:  # torch < 2.9: the older keyword
        out, lse = flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, scale=scale, return_lse=True)
    else:
        out, aux = flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, scale=scale,
                                  return_aux=AuxRequest(lse=True))
        lse = aux.lse
    return out, lse.to(q.dtype)
