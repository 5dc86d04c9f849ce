"""Assertions shared by the attention tests."""
from __future__ import annotations

import torch


def assert_attention_matches(got, want, inputs, atol: float) -> None:
    """got/want = (out, lse) computed from the same `inputs`: equal values and equal gradients of
    sum(out) + sum(lse) with respect to every input (so the lse path of the backward is checked too)."""
    (out, lse), (ref_out, ref_lse) = got, want
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=atol, rtol=0)
    grads = torch.autograd.grad(out.sum() + lse.sum(), inputs)
    ref_grads = torch.autograd.grad(ref_out.sum() + ref_lse.sum(), inputs)
    for got_grad, want_grad in zip(grads, ref_grads):
        torch.testing.assert_close(got_grad, want_grad, atol=atol, rtol=0)
