"""The merge-as-you-go forward (no autograd) of dilated_attention: same result as the reference and as the
all-branches merge of the autograd path, chunked at any size, and a peak of O(N D), not O(branches N D)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dilated import assert_close_lse, configs, run_both

from longlab import dilated_attention
from longlab.analysis.memtrack import timed_peak
from longlab.attention import dilated


@settings(max_examples=40, deadline=None)
@given(cfg=configs(), stream_rows=st.integers(1, 40))
def test_stream_chunks_match_reference(cfg, stream_rows):
    """Cutting every block into runs of a few segments (down to one) changes nothing but rounding."""
    old = dilated.STREAM_ROWS
    dilated.STREAM_ROWS = stream_rows
    try:
        (ref_out, ref_lse), (out, lse) = run_both(cfg)
    finally:
        dilated.STREAM_ROWS = old
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    assert_close_lse(lse, ref_lse, 1e-10)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [96, 100])  # a multiple of every w, and one with partial segments
def test_stream_equals_autograd_path_and_its_grads_still_match(causal, n):
    """No-grad forward (streamed) == forward with autograd (all-branches merge); the autograd path's
    gradients equal the float64 reference's (the backward is untouched by streaming)."""
    from longlab import reference_attention
    from longlab.attention.patterns import Dilated

    gen = torch.Generator().manual_seed(n + causal)
    q, k, v = (torch.randn(2, 4, n, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    lengths, rates = [8, 16, 32], [1, 2, 4]
    with torch.no_grad():
        streamed, streamed_lse = dilated_attention(q, k, v, lengths, rates, causal=causal, return_lse=True)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = dilated_attention(qg, kg, vg, lengths, rates, causal=causal, return_lse=True)
    torch.testing.assert_close(streamed, out.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(streamed_lse, lse.detach(), atol=1e-12, rtol=1e-12)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(out, (qg, kg, vg), grad_out)
    qr, kr, vr = (t.clone().requires_grad_() for t in (q, k, v))
    mult = Dilated(lengths, rates, causal).multiplicity(4, n)
    ref, _ = reference_attention(qr, kr, vr, causal=causal, multiplicity=mult)
    ref_grads = torch.autograd.grad(ref, (qr, kr, vr), grad_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


def test_stream_peak_is_about_one_output():
    """Ten LongNet branches (w0 = 64, ratio 2, up to w = N): streamed peak stays near one output (plus one
    run of one branch), while the all-branches merge holds every branch's output."""
    n, heads, d = 32768, 2, 16
    lengths = [64 * 2**i for i in range(10)]
    rates = [2**i for i in range(10)]
    q, k, v = (torch.randn(1, heads, n, d) for _ in range(3))
    out_bytes = q.numel() * 4
    old = dilated.STREAM_ROWS
    dilated.STREAM_ROWS = 4096  # a run is 1/16 of the rows here, as 2**19 is of 8 heads x 1M
    try:
        with torch.no_grad():
            _, streamed = timed_peak(lambda: dilated_attention(q, k, v, lengths, rates))
    finally:
        dilated.STREAM_ROWS = old
    qg = q.clone().requires_grad_()
    _, all_branches = timed_peak(lambda: dilated_attention(qg, k, v, lengths, rates))
    assert streamed < 1.75 * out_bytes, (streamed, out_bytes)
    assert all_branches > 2.5 * out_bytes, (all_branches, out_bytes)
