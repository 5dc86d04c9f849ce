"""RetroWindows helpers behind the copy check and the training mix: the exact-continuation neighbours line up
with what each reading token predicts (through CCA's positions), and `mixed` swaps whole neighbour lists."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longlab.memory.retro.cca import cca_positions, chunk_of_token
from longlab.memory.retro.data import RetroWindows, exact_continuation_windows, window_starts


def random_windows(p: int, n_chunks: int, k: int, m: int, seed: int = 0, tokens=None) -> RetroWindows:
    gen = torch.Generator().manual_seed(seed)
    shape = (p, n_chunks, k)
    tokens = torch.randint(0, 256, (p, n_chunks * m + 1), generator=gen) if tokens is None else tokens
    return RetroWindows(tokens, torch.randint(0, 5, (p,), generator=gen), torch.randint(0, 99, (p,), generator=gen),
                        torch.randint(0, 256, (*shape, 2 * m), generator=gen).to(torch.uint8),
                        torch.randint(m, 2 * m + 1, shape, generator=gen), torch.randint(0, 5, shape, generator=gen),
                        torch.randint(0, 999, shape, generator=gen), torch.rand(shape, generator=gen))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 8), n_chunks=st.integers(1, 6), seed=st.integers(0, 1000))
def test_exact_continuation_holds_every_readers_target_one_cca_position_ahead(m, n_chunks, seed):
    """Token i reads chunk u(i) and sits at CCA position q(i); the byte it must predict (tokens[i + 1]) is the
    neighbour's byte q(i) + 1, inside the valid length. This is the alignment a copying reader relies on."""
    w = exact_continuation_windows(random_windows(3, n_chunks, 2, m, seed), m)
    n = n_chunks * m
    assert w.neighbours.shape == (3, n_chunks, 1, 2 * m) and w.max_k == 1
    q_pos, _ = cca_positions(n, m, 2 * m)
    u_of = chunk_of_token(n, m)
    checked = 0
    for i in range(n):
        u = int(u_of[i])
        if u < 0:
            continue
        p = int(q_pos[i]) + 1
        assert p < int(w.lengths[0, u, 0])
        assert torch.equal(w.neighbours[:, u, 0, p].long(), w.tokens[:, i + 1])
        assert torch.equal(w.neighbours[:, u, 0, p - 1].long(), w.tokens[:, i])  # the aligned byte: the reader's own
        checked += 1
    assert checked == n - (m - 1)
    # the last chunk's continuation is the one byte after the window: length m + 1
    assert w.lengths[:, -1, 0].tolist() == [m + 1] * 3
    assert (w.nb_doc_ids[..., 0] == w.doc_ids[:, None]).all()


def test_mixed_swaps_whole_neighbour_lists_for_the_seeded_share():
    m, p, n_chunks, k = 4, 50, 8, 2
    a = random_windows(p, n_chunks, k, m, seed=1)
    b = random_windows(p, n_chunks, k, m, seed=2, tokens=a.tokens)
    mix = a.mixed(b, 0.3, seed=5)
    from_b = (mix.nb_offsets == b.nb_offsets).all(-1)
    from_a = (mix.nb_offsets == a.nb_offsets).all(-1)
    assert (from_a ^ from_b).all()  # random offsets in 0..998: no (window, chunk) list equals both
    for name in ("neighbours", "lengths", "nb_doc_ids", "scores"):
        got, want_a, want_b = (getattr(w, name) for w in (mix, a, b))
        assert torch.equal(got[from_b], want_b[from_b]) and torch.equal(got[from_a], want_a[from_a])
    assert abs(from_b.float().mean().item() - 0.3) < 0.07  # 400 chunks
    assert torch.equal(a.mixed(b, 0.3, seed=5).nb_offsets, mix.nb_offsets)  # seeded
    assert torch.equal(a.mixed(b, 0.0).neighbours, a.neighbours) and torch.equal(a.mixed(b, 1.0).scores, b.scores)
    assert torch.equal(mix.tokens, a.tokens) and torch.equal(mix.doc_ids, a.doc_ids)


def test_mixed_and_own_file_share_errors_and_counts():
    a = random_windows(4, 3, 2, 4, seed=1)
    with pytest.raises(ValueError, match="fraction=1.5"):
        a.mixed(a, 1.5)
    with pytest.raises(ValueError, match="same windows"):
        a.mixed(random_windows(4, 3, 2, 4, seed=9), 0.5)
    own = a.nb_doc_ids.clone()
    own[:2] = a.doc_ids[:2, None, None]
    a.nb_doc_ids = own
    expected = (own == a.doc_ids[:, None, None]).float().mean().item()
    assert a.own_file_share() == pytest.approx(expected) and expected >= 0.5


def test_aligned_window_starts_sit_on_the_chunk_grid_and_fit():
    lengths = [100, 5000, 777, 12345]
    plain = window_starts(lengths, 200, 64, seed=3)
    grid = window_starts(lengths, 200, 64, seed=3, align=16)
    assert [d for d, _ in grid] == [d for d, _ in plain]  # same documents, starts rounded down
    assert [s for _, s in grid] == [s // 16 * 16 for _, s in plain]
    assert all(s % 16 == 0 and s + 64 + 1 <= lengths[d] for d, s in grid)
    assert any(s % 16 for _, s in plain)
    with pytest.raises(ValueError, match="align"):
        window_starts(lengths, 2, 64, align=0)
