"""FlexAttention as a second way to run LongNet: closed-form block masks that scale, same results as gathering.

CPU: FlexAttention runs compiled (forward only, no lse in torch 2.13); the first compile takes tens of
seconds, hence `slow`. CUDA: outputs, lse and gradients against the gathered kernel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from longlab.attention.dilated import DilatedAttention, dilated_attention
from longlab.attention.flex import EAGER_LIMIT, block_mask, pattern_attention
from longlab.attention.patterns import Dilated

flex = pytest.importorskip("torch.nn.attention.flex_attention")
MEASURE = """
import json, resource, sys, time
from longlab.attention.flex import block_mask
from longlab.attention.patterns import Dilated
n, heads = int(sys.argv[1]), int(sys.argv[2])
pattern = Dilated((2048, 4096, 8192), (1, 2, 4), causal=True)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.time()
mask = block_mask(pattern, heads, n, compiled=True)
print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base,
                  "seconds": time.time() - start, "shape": list(mask.shape),
                  "kv_blocks": mask.kv_num_blocks.sum().item() + mask.full_kv_num_blocks.sum().item()}))
"""


def _qkv(heads, n, dim=16, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, heads, n, dim, generator=gen).to(device) for _ in range(3)]


@pytest.mark.slow
def test_flex_equals_gathered_dilated_on_cpu():
    """Compiled FlexAttention with the closed-form block mask = dilated_attention, both dedupe modes."""
    lengths, rates, n = (16, 32, 64), (1, 2, 4), 300  # 300: a partial last segment and a partial last tile
    q, k, v = _qkv(4, n)
    with torch.no_grad():
        # causal, dedupe (union mask), reference offsets, with the block mask built the compiled (scalable) way
        pattern = Dilated(lengths, rates, causal=True)
        out = pattern_attention(q, k, v, pattern, dedupe=True, mask=block_mask(pattern, 4, n, compiled=True))
        expected = dilated_attention(q, k, v, lengths, rates, causal=True, dedupe=True)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        # non-causal, paper offsets, keys counted once per branch (the score_mod), through the public option
        out = dilated_attention(q, k, v, lengths, rates, offsets="paper", backend="flex")
        expected = dilated_attention(q, k, v, lengths, rates, offsets="paper")
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_block_mask_memory_stays_far_below_the_dense_mask():
    """N = 16384, 8 heads: a dense (H, N, N) bool mask alone is 2 GiB (the int64 index arithmetic 8x more);
    the closed-form mask_mod, compiled, stays under 2 GiB peak resident memory, compile included."""
    n, heads = 16384, 8
    result = subprocess.run([sys.executable, "-c", MEASURE, str(n), str(heads)], capture_output=True, text=True,
                            env={**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}, timeout=800)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["shape"] == [1, heads, n, n]
    assert measured["peak_bytes"] < 2 * 2**30, measured
    # Non-empty 128-tiles: every tile on or below the diagonal inside a segment of 8192 (the widest branch; its
    # rate 4 keeps rows in every tile), none outside: (N / 8192) segments of 64 * 65 / 2 tiles, per head.
    assert measured["kv_blocks"] == heads * (n // 8192) * (64 * 65 // 2)


@pytest.mark.slow
def test_bench_dilated_times_flex_next_to_the_gathered_kernel():
    from longlab.bench.dilated import measure

    rows = measure([256], heads=2, head_dim=16, segment_lengths=(32, 64), dilation_rates=(1, 2),
                   causal_modes=(True,), backward_sizes=(256,), repeats=1, progress=False, flex=True)
    forward, backward = rows
    assert forward["flex_s"] > 0 and forward["flex_mask_s"] > 0 and forward["flex_max_diff"] < 1e-5
    assert backward["pass"] == "fwd+bwd" and backward["flex_s"] == ""  # CPU FlexAttention is forward only


def test_flex_refuses_what_cpu_cannot_do():
    q, k, v = _qkv(2, 16)
    pattern = Dilated((4, 8), (1, 2))
    with pytest.raises(ValueError, match="returns no lse"):
        pattern_attention(q, k, v, pattern, return_lse=True)
    with pytest.raises(ValueError, match="forward only"):
        dilated_attention(q.requires_grad_(), k, v, [4, 8], [1, 2], backend="flex")
    with pytest.raises(ValueError, match="backend must be one of"):
        dilated_attention(q, k, v, [4, 8], [1, 2], backend="masked")
    with pytest.raises(ValueError, match="backend must be one of"):
        DilatedAttention(16, 2, [4, 8], [1, 2], backend="sparse")
    with pytest.raises(TypeError, match="pattern must be a longlab Pattern"):
        block_mask("dilated", 2, 16)


def test_small_block_masks_are_built_eagerly_and_cached():
    pattern = Dilated((16, 32), (1, 2))
    assert 4 * 128 * 128 <= EAGER_LIMIT
    first = block_mask(pattern, 4, 128, 32)
    assert block_mask(pattern, 4, 128, 32) is first
    assert torch.equal(first.to_dense()[0].bool(), pattern.block_occupancy(4, 128, 32))


@pytest.mark.cuda
@pytest.mark.parametrize("causal, dedupe, offsets", [(True, True, "reference"), (False, False, "paper")])
def test_flex_equals_gathered_dilated_on_cuda(causal, dedupe, offsets):
    lengths, rates, n = (64, 128, 256), (1, 2, 4), 1000
    q, k, v = (t.requires_grad_() for t in _qkv(8, n, 32, "cuda"))
    grads = []
    results = []
    for backend in ("flex", "gathered"):
        out, lse = dilated_attention(q, k, v, lengths, rates, causal=causal, offsets=offsets, dedupe=dedupe,
                                     return_lse=True, backend=backend)
        (out.square().sum() + lse.sum()).backward()
        results.append((out.detach(), lse.detach()))
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    torch.testing.assert_close(results[0], results[1], atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=2e-3, rtol=2e-3)
