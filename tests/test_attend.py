"""attend: fast backends agree with the reference, forward and gradients through out AND lse."""
from __future__ import annotations

import pytest
import torch
from checks import assert_attention_matches
from conftest import devices
from hypothesis import given, settings
from hypothesis import strategies as st

from longlab.attention import attend, reference_attention

BACKENDS = ["cpu_flash", "math"]


def _inputs(b, h, nq, nk, d, dtype=torch.float64, seed=0, hk=None, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hk = hk or h
    q = torch.randn(b, h, nq, d, generator=g, dtype=dtype)
    k = torch.randn(b, hk, nk, d, generator=g, dtype=dtype)
    v = torch.randn(b, hk, nk, d, generator=g, dtype=dtype)
    return [t.to(device).requires_grad_() for t in (q, k, v)]


def _loss_weights(out, lse, seed=1):
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    w_lse = torch.randn(lse.shape, generator=g, dtype=lse.dtype).to(out.device)
    return w_out, w_lse


def _check_against_reference(q, k, v, causal, backend, atol):
    out, lse = attend(q, k, v, causal=causal, backend=backend)
    ref_out, ref_lse = reference_attention(q, k, v, causal=causal)
    finite = torch.isfinite(ref_lse)
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=0)
    assert torch.equal(torch.isfinite(lse), finite)
    torch.testing.assert_close(lse[finite], ref_lse[finite], atol=atol, rtol=0)
    w_out, w_lse = _loss_weights(out, lse)
    grads = torch.autograd.grad((out * w_out).sum() + (lse[finite] * w_lse[finite]).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref_out * w_out).sum() + (ref_lse[finite] * w_lse[finite]).sum(), (q, k, v))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=atol * 10, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    b=st.integers(1, 2), h=st.integers(1, 3), nq=st.integers(1, 40), nk=st.integers(1, 40),
    d=st.sampled_from([1, 4, 16]), causal=st.booleans(), seed=st.integers(0, 2**16),
)
def test_float64_matches_reference(backend, b, h, nq, nk, d, causal, seed):
    _check_against_reference(*_inputs(b, h, nq, nk, d, seed=seed), causal, backend, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("stride", [2, 5])
def test_strided_row_views_match_reference(backend, causal, stride):
    """Dilated branches hand `attend` views whose rows are `stride` rows apart (the CPU flash kernel reads them
    in place, without a copy): same values and gradients as the float64 reference on those rows."""
    g = torch.Generator().manual_seed(stride)
    base = [torch.randn(2, 3, 12 * stride, 8, generator=g, dtype=torch.float64, requires_grad=True)
            for _ in range(3)]
    views = [t.unflatten(2, (12, stride))[:, :, :, stride - 1] for t in base]  # rows stride-1, 2 stride-1, ...
    assert not views[0].is_contiguous() and views[0].stride(-1) == 1
    _check_against_reference(*views, causal, backend, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_float32_larger_matches_float64_reference(backend, causal):
    q, k, v = _inputs(2, 4, 300, 300, 32, dtype=torch.float32, seed=5)
    out, lse = attend(q, k, v, causal=causal, backend=backend, chunk_size=64)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref_out, ref_lse = reference_attention(q64, k64, v64, causal=causal)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=0)
    w_out, w_lse = _loss_weights(ref_out, ref_lse)
    grads = torch.autograd.grad((out * w_out.float()).sum() + (lse * w_lse.float()).sum(), (q, k, v))
    ref = torch.autograd.grad((ref_out * w_out).sum() + (ref_lse * w_lse).sum(), (q64, k64, v64))
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@settings(max_examples=20)
@given(
    h=st.integers(1, 4), group=st.sampled_from([1, 2]), nq=st.integers(1, 300), nk=st.integers(1, 300),
    d=st.sampled_from([1, 5, 8, 32, 64]), d_v=st.sampled_from([None, 3, 16]), causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cuda_float32_matches_float64_reference(h, group, nq, nk, d, d_v, causal, seed):
    # The CUDA efficient kernel (forward) + chunked exact backward, GQA, Dv != D, bottom-right causal.
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, h * group, nq, d, generator=g, dtype=torch.float64)
    k = torch.randn(2, h, nk, d, generator=g, dtype=torch.float64)
    v = torch.randn(2, h, nk, d_v or d, generator=g, dtype=torch.float64)
    ref64 = [t.clone().requires_grad_() for t in (q, k, v)]
    ours32 = [t.to("cuda", torch.float32).requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = reference_attention(*ref64, causal=causal)
    out, lse = attend(*ours32, causal=causal, backend="cuda")
    finite = torch.isfinite(ref_lse)
    torch.testing.assert_close(out.cpu().double(), ref_out, atol=2e-5, rtol=0)
    assert torch.equal(torch.isfinite(lse).cpu(), finite)
    torch.testing.assert_close(lse.cpu().double()[finite], ref_lse[finite], atol=2e-5, rtol=0)
    w_out, w_lse = _loss_weights(ref_out, ref_lse)
    ref_grads = torch.autograd.grad((ref_out * w_out).sum() + (ref_lse[finite] * w_lse[finite]).sum(), ref64)
    w_out32, w_lse32, finite32 = w_out.to(out), w_lse.to(lse), finite.to(lse.device)
    grads = torch.autograd.grad((out * w_out32).sum() + (lse[finite32] * w_lse32[finite32]).sum(), ours32)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.cpu().double(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal,nq,nk", [(False, 5, 7), (True, 6, 6), (True, 4, 7), (True, 7, 4)])
def test_gradcheck_through_out_and_lse(backend, causal, nq, nk):
    q, k, v = _inputs(1, 2, nq, nk, 3, seed=nq + nk)
    blind = max(0, nq - nk) if causal else 0  # rows that see no key have lse = -inf

    def fn(q, k, v):
        out, lse = attend(q, k, v, causal=causal, backend=backend, chunk_size=3)
        return out, lse[..., blind:]

    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_lse_gradient_is_not_ignored():
    """The stock flash autograd drops d(loss)/d(lse); attend must not (dq differs by ~30% if it did)."""
    q, k, v = _inputs(1, 2, 16, 16, 8, seed=7)
    _, lse = attend(q, k, v)
    dq = torch.autograd.grad(lse.sum(), q)[0]
    _, ref_lse = reference_attention(q, k, v)
    ref_dq = torch.autograd.grad(ref_lse.sum(), q)[0]
    assert ref_dq.abs().max() > 0.1
    torch.testing.assert_close(dq, ref_dq, atol=1e-10, rtol=0)


def test_grouped_query_attention():
    q, k, v = _inputs(1, 6, 10, 12, 4, seed=3, hk=2)
    _check_against_reference(q, k, v, True, "auto", atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("d_v", [2, 7])
def test_value_head_dim_may_differ(backend, d_v):
    q, k, _ = _inputs(1, 2, 6, 9, 4, seed=d_v)
    v = torch.randn(1, 2, 9, d_v, dtype=torch.float64, requires_grad=True)
    for causal in (False, True):
        got = attend(q, k, v, causal=causal, backend=backend)
        assert got[0].shape == (1, 2, 6, d_v)
        assert_attention_matches(got, reference_attention(q, k, v, causal=causal), (q, k, v), atol=1e-10)


def test_blind_queries_give_zero_and_neg_inf():
    q, k, v = _inputs(1, 1, 5, 2, 3, seed=4)
    out, lse = attend(q, k, v, causal=True)
    assert torch.all(out[..., :3, :] == 0) and torch.all(torch.isneginf(lse[..., :3]))
    assert torch.isfinite(lse[..., 3:]).all()


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: (torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4)), ValueError, "4 dims"),
        (lambda: (torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 5), torch.randn(1, 1, 3, 5)), ValueError, "head dim"),
        (lambda: (torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4).double(), torch.randn(1, 1, 3, 4)), TypeError,
         "dtypes differ"),
        (lambda: (torch.randn(1, 1, 0, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)), ValueError, "empty"),
        (lambda: (torch.randn(1, 3, 3, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)), ValueError, "multiple"),
        (lambda: (torch.randn(1, 1, 3, 4), torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)), ValueError, "batch"),
        (lambda: (torch.ones(1, 1, 3, 4, dtype=torch.long),) * 3, TypeError, "floating"),
        (lambda: ([[1.0]], torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)), TypeError, "torch.Tensor"),
        (lambda: (torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4, device="meta"), torch.randn(1, 1, 3, 4)),
         ValueError, "different devices"),
    ],
)
def test_bad_input_names_the_fix(make, error, match):
    with pytest.raises(error, match=match):
        attend(*make())


def test_bad_backend_and_chunk():
    q = torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match="backend"):
        attend(q, q, q, backend="triton")
    with pytest.raises(ValueError, match="chunk_size"):
        attend(q, q, q, backend="math", chunk_size=0)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices(device, dtype):
    q, k, v = _inputs(1, 2, 70, 70, 16, dtype=dtype, seed=9, device=device)
    atol = 1e-10 if dtype == torch.float64 else 2e-5
    out, lse = attend(q, k, v, causal=True)
    ref_out, ref_lse = reference_attention(q, k, v, causal=True)
    assert out.device.type == device
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=atol, rtol=0)
