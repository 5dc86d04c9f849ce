"""RETRO chunked cross-attention and the RETRO-fitted model: exact vs the float64 dense reference (forward and
gradients), the causal shift u = floor((i + 1) / m) - 1, encoder causality, frozen decoder, errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention.reference import reference_attention
from longlab.attention.rope import apply_rope, rope_tables
from longlab.memory.retro.cca import cca_positions, cca_reference_mask, chunk_of_token, chunked_cross_attention
from longlab.memory.retro.model import ChunkedCrossAttention, RetroConfig, RetroFitted, check_neighbour_count
from longlab.models import TinyLM, TinyLMConfig


def test_chunk_of_token_is_the_paper_shift():
    assert chunk_of_token(12, 4).tolist() == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2]


@given(b=st.integers(1, 2), h=st.integers(1, 3), m=st.integers(1, 5), chunks=st.integers(1, 4),
       r=st.integers(1, 6), d=st.integers(1, 6), masked=st.booleans(), seed=st.integers(0, 2**16))
def test_cca_matches_reference_forward_and_grads(b, h, m, chunks, r, d, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    n = m * chunks
    q = torch.randn(b, h, n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b, h, chunks, r, d, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, h, chunks, r, d + 1, generator=gen, dtype=torch.float64, requires_grad=True)
    valid = None
    if masked:  # padding keys, at least one real key per chunk (a neighbour always has >= m bytes)
        valid = torch.rand(b, chunks, r, generator=gen) < 0.6
        valid[..., 0] = True
    out, lse = chunked_cross_attention(q, k, v, m, valid)
    mask = cca_reference_mask(n, m, r, valid)
    ref_out, ref_lse = reference_attention(q, k.flatten(2, 3), v.flatten(2, 3), mask=mask)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    rows = chunk_of_token(n, m) >= 0
    torch.testing.assert_close(lse[..., rows], ref_lse[..., rows], atol=1e-10, rtol=0)
    assert torch.isneginf(lse[..., ~rows]).all() and (out[..., ~rows, :] == 0).all()  # residual only
    w_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    w_lse = torch.randn(lse[..., rows].shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out * w_out).sum() + (lse[..., rows] * w_lse).sum(), (q, k, v))
    ref = torch.autograd.grad((ref_out * w_out).sum() + (ref_lse[..., rows] * w_lse).sum(), (q, k, v))
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_cca_float32_close_to_float64():
    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 2, 12, 8, generator=gen), torch.randn(2, 2, 3, 10, 8, generator=gen), \
        torch.randn(2, 2, 3, 10, 8, generator=gen)
    out, _ = chunked_cross_attention(q, k, v, 4)
    ref, _ = chunked_cross_attention(q.double(), k.double(), v.double(), 4)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


M, K, N = 4, 2, 16


def random_model(seed: int = 0) -> RetroFitted:
    torch.manual_seed(seed)
    decoder = TinyLM(TinyLMConfig(d_model=32, n_heads=2, n_layers=2, context=64))
    model = RetroFitted(decoder, RetroConfig(chunk_size=M, neighbours=K, heads=2))
    with torch.no_grad():  # the zero-initialised output maps would hide every dependency; randomise them
        for p in (model.cca.out.weight, model.mlp.down.weight):
            p.normal_(0, 0.3)
    return model.double()


def random_inputs(seed: int = 1, b: int = 2):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 256, (b, N), generator=gen)
    nb = torch.randint(0, 256, (b, N // M, K, 2 * M), generator=gen, dtype=torch.uint8)
    lengths = torch.randint(M, 2 * M + 1, (b, N // M, K), generator=gen)
    return idx, nb, lengths


@pytest.mark.parametrize("u", range(N // M))
def test_changing_chunk_u_neighbours_leaves_earlier_positions_unchanged(u):
    model = random_model()
    idx, nb, lengths = random_inputs()
    logits, _ = model(idx, nb, lengths)
    nb2 = nb.clone()
    nb2[:, u] = (nb2[:, u].long() + 1 + torch.arange(2 * M)).remainder(256).to(torch.uint8)
    logits2, _ = model(idx, nb2, lengths)
    first = (u + 1) * M - 1  # the first token allowed to read chunk u's neighbours
    assert torch.equal(logits[:, :first], logits2[:, :first])
    assert (logits[:, first:first + M] - logits2[:, first:first + M]).abs().amax(-1).gt(1e-6).all()


@pytest.mark.parametrize("u", range(N // M - 1))
def test_encoded_neighbours_of_chunk_u_do_not_depend_on_chunk_u_plus_1(u):
    model = random_model()
    idx, nb, lengths = random_inputs()
    idx2 = idx.clone()
    idx2[:, (u + 1) * M:] = (idx2[:, (u + 1) * M:] + 7) % 256
    enc = [model.encoder(nb, lengths, model.decoder_states(i).view(2, N // M, M, -1))[0] for i in (idx, idx2)]
    assert torch.equal(enc[0][:, : u + 1], enc[1][:, : u + 1])
    assert not torch.allclose(enc[0][:, u + 1], enc[1][:, u + 1])


def test_padding_is_a_length_and_byte_zero_is_real():
    model = random_model()
    idx, nb, lengths = random_inputs()
    base, _ = model(idx, nb, lengths)
    beyond = nb.clone()
    beyond[0, 1, 0, lengths[0, 1, 0]:] = 99  # bytes past a neighbour's length are invisible
    assert torch.equal(model(idx, beyond, lengths)[0], base)
    zero, one = nb.clone(), nb.clone()
    zero[0, 1, 0, 0], one[0, 1, 0, 0] = 0, 1
    assert not torch.allclose(model(idx, zero, lengths)[0], model(idx, one, lengths)[0])


def test_fresh_model_and_k0_equal_the_frozen_decoder():
    torch.manual_seed(0)
    decoder = TinyLM(TinyLMConfig(d_model=32, n_heads=2, n_layers=2, context=64))
    model = RetroFitted(decoder, RetroConfig(chunk_size=M, neighbours=K, heads=2))
    idx, nb, lengths = random_inputs()
    want = decoder(idx)[0]
    torch.testing.assert_close(model(idx, nb, lengths)[0], want, atol=0, rtol=0)
    torch.testing.assert_close(model(idx, nb[:, :, :0], lengths[:, :, :0])[0], want, atol=0, rtol=0)


def test_a_kNN_checkpoint_with_empty_memory_is_its_dense_decoder():
    torch.manual_seed(0)
    knn = TinyLM(TinyLMConfig(d_model=32, n_heads=2, n_layers=2, context=64, attention=("dense", "memorizing"),
                              memory_size=64))
    model = RetroFitted(knn, RetroConfig(chunk_size=M, heads=2))
    idx, _, _ = random_inputs()
    knn.reset_memory()
    torch.testing.assert_close(model(idx)[0], knn(idx, write_memory=False)[0], atol=1e-6, rtol=0)


def test_only_the_retrieval_block_trains():
    model = random_model()
    idx, nb, lengths = random_inputs()
    _, loss = model(idx, nb, lengths, targets=idx)
    loss.backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable and trainable.isdisjoint(id(p) for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_bad_input_errors():
    model = random_model()
    idx, nb, lengths = random_inputs()
    with pytest.raises(ValueError, match="not a multiple of chunk_size m=4"):
        model(idx[:, :15], nb, lengths)
    with pytest.raises(ValueError, match=r"neighbours must be \(B, L, k, 2m\)"):
        model(idx, nb[:, :, :, :M], lengths)
    with pytest.raises(ValueError, match="k=3 neighbours asked but only 2"):
        check_neighbour_count(3, 2)


def test_cca_positions_align_the_neighbour_chunk_with_the_query_chunk():
    q_pos, k_pos = cca_positions(12, 4, 8)
    # token i reads chunk u = floor((i+1)/4) - 1 and sits at i - 4u: 3..6 (0 for the tokens that read nothing)
    assert q_pos.tolist() == [0, 0, 0, 3, 4, 5, 6, 3, 4, 5, 6, 3] and k_pos.tolist() == list(range(8))


def test_cca_module_equals_reference_with_rotations_applied_once():
    """The layer = reference attention over all neighbours concatenated, the shift mask, q rotated at
    i - u(i) m and each neighbour byte at its index p (one rotation each, in float64)."""
    torch.manual_seed(0)
    d, heads, m, n_chunks, k, r = 16, 2, 4, 3, 2, 8
    layer = ChunkedCrossAttention(d, heads, m).double()
    torch.nn.init.normal_(layer.out.weight)
    x = torch.randn(2, m * n_chunks, d, dtype=torch.float64, requires_grad=True)
    enc = torch.randn(2, n_chunks, k, r, d, dtype=torch.float64, requires_grad=True)
    valid = torch.rand(2, n_chunks, k, r) < 0.7
    valid[..., 0] = True
    got = layer(x, enc, valid)
    q = layer.q(layer.norm(x)).view(2, -1, heads, d // heads).transpose(1, 2)
    kk, vv = layer.kv(enc).chunk(2, dim=-1)
    split = lambda t: t.reshape(2, n_chunks * k * r, heads, d // heads).transpose(1, 2)  # noqa: E731
    q_pos, k_pos = cca_positions(m * n_chunks, m, r)
    cos, sin = rope_tables(q_pos, d // heads, dtype=torch.float64)
    q = apply_rope(q, cos, sin)
    cos, sin = rope_tables(k_pos.repeat(n_chunks * k), d // heads, dtype=torch.float64)
    mask = cca_reference_mask(m * n_chunks, m, k * r, valid.reshape(2, n_chunks, k * r))
    out, _ = reference_attention(q, apply_rope(split(kk), cos, sin), split(vv), mask=mask)
    want = layer.out(out.transpose(1, 2).reshape(2, -1, d))
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    w = torch.randn_like(got)
    for g, h in zip(torch.autograd.grad((got * w).sum(), (x, enc)), torch.autograd.grad((want * w).sum(), (x, enc))):
        torch.testing.assert_close(g, h, atol=1e-10, rtol=0)
