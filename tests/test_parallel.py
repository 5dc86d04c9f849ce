"""Sequence parallelism in the simulated world: exactness (outputs and gradients), byte counts vs formulas,
all-to-all inversion, zigzag balance, input errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longlab.attention.patterns import Dilated
from longlab.attention.reference import reference_attention
from longlab.parallel import AlphaBeta, SimWorld, cost, get_method, sharding, simulate
from longlab.parallel.comm.ops import heads_to_seq, seq_to_heads
from longlab.parallel.holdings import holdings
from longlab.parallel.methods import METHODS
from longlab.parallel.methods.ring import causal_pairs_per_rank

LONGNET = {"segment_lengths": (4, 8, 32), "dilation_rates": (1, 2, 4)}
OPTS = {"ulysses": {}, "ring": {}, "zigzag": {}, "longnet": LONGNET}


def make_qkv(n, heads=8, kv_heads=4, d=8, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, n, d), (batch, kv_heads, n, d), (batch, kv_heads, n, d)]
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]


def truth(method, q, k, v, causal):
    if method == "longnet":
        pattern = Dilated(LONGNET["segment_lengths"], LONGNET["dilation_rates"], causal)
        mult = pattern.multiplicity(q.shape[1], q.shape[2])
        return reference_attention(q, k, v, multiplicity=mult)[0]
    return reference_attention(q, k, v, causal=causal)[0]


def assert_matches(method, world, causal, n=32, **shape):
    q, k, v = make_qkv(n, **shape)
    out, trace = simulate(method, q, k, v, world, causal=causal, **OPTS[method])
    assert_equals_single_device(method, out, q, k, v, causal)
    return trace


def assert_equals_single_device(method, out, q, k, v, causal, atol=1e-10):
    """`out` (from any world) equals single-device attention, and so do its gradients for a random
    upstream gradient; returns that gradient."""
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    ref = truth(method, q, k, v, causal)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    torch.testing.assert_close(out, ref, rtol=0, atol=atol)
    for name, a, b in zip("qkv", got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=f"d{name} differs")
    return grad


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_simulated_equals_single_device(method, world, causal):
    trace = assert_matches(method, world, causal)
    assert trace.sent("backward") != [0] * world  # gradients crossed the simulated network too


@pytest.mark.parametrize("method", METHODS)
def test_eight_simulated_ranks(method):
    assert_matches(method, 8, causal=True, n=64)


def test_longnet_equals_dilated_attention():
    dilated_attention = pytest.importorskip("longlab.attention.dilated").dilated_attention
    q, k, v = make_qkv(32, kv_heads=8)
    for causal in (False, True):
        out, _ = simulate("longnet", q, k, v, 4, causal=causal, **LONGNET)
        want = dilated_attention(q, k, v, list(LONGNET["segment_lengths"]), list(LONGNET["dilation_rates"]),
                                 causal=causal)
        want = want[0] if isinstance(want, tuple) else want
        torch.testing.assert_close(out, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [29, 30, 31])
def test_ulysses_uneven_length_pads_without_attending(n):
    # Padding rows are zeros: were they attended, softmax weights (and outputs) would change.
    for causal in (False, True):
        assert_matches("ulysses", 4, causal, n=n)


def test_ulysses_repeats_kv_heads_when_world_does_not_divide_them():
    assert_matches("ulysses", 4, False, heads=4, kv_heads=1)


def test_ulysses_rejects_heads_not_divisible_by_world():
    q, k, v = make_qkv(16, heads=6, kv_heads=6)
    with pytest.raises(ValueError, match=r"heads=6.*world_size=4"):
        simulate("ulysses", q, k, v, 4)


@pytest.mark.parametrize(
    ("method", "n", "world", "opts", "match"),
    [
        ("ring", 30, 4, {}, "N=30"),
        ("zigzag", 20, 4, {}, "divisible by 8"),
        ("longnet", 30, 4, LONGNET, "N=30"),
        ("longnet", 32, 4, {"segment_lengths": (6,), "dilation_rates": (1,)}, "segment length"),
        ("nope", 32, 2, {}, "method must be"),
    ],
)
def test_bad_inputs_raise(method, n, world, opts, match):
    q, k, v = make_qkv(n)
    with pytest.raises(ValueError, match=match):
        simulate(method, q, k, v, world, **opts)


def test_unknown_option_is_a_type_error():
    q, k, v = make_qkv(16)
    with pytest.raises(TypeError, match="segment_lengths"):
        simulate("ring", q, k, v, 2, segment_lengths=(4,))


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_all_to_all_then_inverse_is_bit_exact(world):
    x = torch.randn(2, 8, 5 * world, 3, dtype=torch.float32)
    parts = list(x.chunk(world, dim=2))
    sim = SimWorld(world)

    def roundtrip(group, part):
        mid = seq_to_heads(group, part)
        assert mid.shape == (2, 8 // world, 5 * world, 3)
        return heads_to_seq(group, mid)

    back = sim.run(roundtrip, [(p,) for p in parts])
    assert all(torch.equal(a, b) for a, b in zip(back, parts))
    # own chunk is kept, not sent: 2 all-to-alls, (P-1)/P of the shard each
    shard_bytes = parts[0].numel() * 4
    assert sim.trace.bytes_sent == [2 * shard_bytes * (world - 1) // world] * world


CASES = [(m, p, n) for m in METHODS for p in (2, 4, 8) for n in (32, 64)]
CASES += [("ulysses", 4, 30), ("ulysses", 8, 61)]


@pytest.mark.parametrize(("method", "world", "n"), CASES)
def test_counted_bytes_equal_cost_formulas(method, world, n):
    heads, kv_heads, d = 8, 4, 4
    q, k, v = (t.detach().float() for t in make_qkv(n, heads, kv_heads, d, batch=1))
    model = AlphaBeta(alpha=3e-5, beta=2e-9)
    _, trace = simulate(method, q, k, v, world, alpha=model.alpha, beta=model.beta, **OPTS[method])
    work = cost.Workload(n, heads, d, kv_heads, batch=1, elem_size=4, opts=OPTS[method])
    assert trace.bytes_sent == cost.bytes_per_rank(method, world, work)
    assert sum(trace.bytes_received) == sum(trace.bytes_sent)
    assert trace.time == pytest.approx(cost.comm_time(method, world, work, model), rel=1e-12)
    assert len(trace.steps) == len(cost.plan(method, world, work))


def test_longnet_volume_is_constant_per_rank_as_world_and_length_grow():
    # w/r constant across branches and N/P fixed: per-rank volume must not grow with N = P * shard.
    opts = {"segment_lengths": (64, 128, 256, 512), "dilation_rates": (1, 2, 4, 8)}
    volumes = {max(cost.bytes_per_rank("longnet", p, cost.Workload(64 * p, 8, opts=opts))) for p in (8, 16, 32, 64)}
    assert len(volumes) == 1
    ring = [max(cost.bytes_per_rank("ring", p, cost.Workload(64 * p, 8))) for p in (8, 16)]
    assert ring[1] > ring[0]  # ring's per-rank volume grows with N


def test_megatron_is_about_four_n_h():
    work = cost.Workload(4096, 16, 64, elem_size=1)
    assert max(cost.bytes_per_rank("megatron", 8, work)) == 4 * 7 * 4096 * 16 * 64 // 8
    ulysses = max(cost.bytes_per_rank("ulysses", 8, work))
    assert ulysses * 8 == pytest.approx(4 * 4096 * 16 * 64 * 7 / 8)  # 4Nh/P per link, (P-1)/P of it leaves


@pytest.mark.parametrize("world", [2, 4, 8])
def test_zigzag_balances_causal_pairs(world):
    n = 16 * world
    positions = sharding.split("zigzag", torch.arange(n).view(1, 1, n, 1), world)
    counted = [int((p.flatten() + 1).sum()) for p in positions]  # query i sees keys 0..i
    assert len(set(counted)) == 1
    assert causal_pairs_per_rank(n, world, "zigzag") == counted
    contiguous = [int((p.flatten() + 1).sum()) for p in sharding.split("contiguous", torch.arange(n).view(1, 1, n, 1),
                                                                       world)]
    assert causal_pairs_per_rank(n, world, "contiguous") == contiguous
    assert contiguous[-1] > contiguous[0] * world  # contiguous is badly unbalanced
    assert sum(counted) == sum(contiguous) == n * (n + 1) // 2


def test_layout_split_join_roundtrip():
    x = torch.arange(2 * 3 * 24 * 2.0).view(2, 3, 24, 2)
    for method in METHODS:
        name = get_method(method).sharding
        assert torch.equal(sharding.join(name, sharding.split(name, x, 4)), x)
    assert sharding.shard_sizes(10, 4) == [3, 3, 2, 2]


def test_simulated_hang_raises_instead_of_hanging():
    sim = SimWorld(2, timeout=0.5)

    def bad(group):
        if group.rank == 0:  # rank 1 never joins this collective
            group.barrier()

    with pytest.raises(TimeoutError, match="hung"):
        sim.run(bad, [(), ()])


def test_simulated_rank_error_names_the_rank():
    sim = SimWorld(2, timeout=5)

    def bad(group):
        if group.rank == 1:
            raise ValueError("boom")
        group.barrier()

    with pytest.raises(ValueError, match="rank 1: boom"):
        sim.run(bad, [(), ()])


def test_trace_records_what_moved():
    q, k, v = (t.detach() for t in make_qkv(16))
    _, trace = simulate("ring", q, k, v, 4)
    first = trace.at_step(0)
    assert {(e.src, e.dst) for e in first} == {(0, 1), (1, 2), (2, 3), (3, 0)}
    assert all(e.op == "ring_shift" and "k,v chunks" in e.what for e in first)
    assert all(e.tensor == "k,v" and e.blocks == (e.src,) for e in first)  # structured fields, nothing parsed
    assert "transfers" in repr(trace)


@settings(max_examples=10)
@given(world=st.sampled_from([1, 2, 3, 4]), n=st.integers(3, 24), causal=st.booleans(), seed=st.integers(0, 99))
def test_ulysses_any_length_any_world(world, n, causal, seed):
    heads = 12  # divisible by 1, 2, 3, 4
    q, k, v = (t.detach() for t in make_qkv(n, heads=heads, kv_heads=heads, batch=1, seed=seed))
    out, _ = simulate("ulysses", q, k, v, world, causal=causal)
    torch.testing.assert_close(out, reference_attention(q, k, v, causal=causal)[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["ring", "zigzag"])
def test_ring_with_three_ranks_and_grouped_kv(method):
    assert_matches(method, 3, True, n=36, heads=6, kv_heads=2)


def test_holdings_replay_the_trace():
    q, k, v = (t.detach() for t in make_qkv(16, heads=4, kv_heads=4, batch=1))
    _, trace = simulate("ulysses", q, k, v, 2)
    stages = holdings(trace, "ulysses")
    assert len(stages) == 1 + 4  # before, q, k, v, out
    after_qkv = stages[3].held
    assert after_qkv[0][1] == {"q[h0]", "k[h0]", "v[h0]"}  # rank 0: chunk 1, its own head block only
    _, trace = simulate("ring", q, k, v, 4)
    last = holdings(trace, "ring")[-1]
    # after P-1 shifts rank r holds its own shard and the k/v of chunk r+1 (the last visitor)
    assert [sorted(c for c in range(4) if "k,v" in last.held[r][c]) for r in range(4)] == [[1], [2], [3], [0]]


def test_viz_figures_are_drawn_from_the_trace():
    pytest.importorskip("plotly")
    from viz.parallel_cost import causal_work_figure, volume_figure
    from viz.parallel_trace import trace_figure

    fig = trace_figure("zigzag", 2, 16, 2, True, step=1)
    assert fig.data[0].type == "heatmap" and len(fig.data[0].z) == 2 and len(fig.data[0].z[0]) == 4
    assert "ring_shift" in fig.layout.title.text
    assert "cannot run" in trace_figure("ulysses", 4, 16, 2, False, 0).layout.title.text
    vol = volume_figure(64, 2, 2, 4, (2,), (64, 128), methods=("ring", "longnet"))
    sim = [t for t in vol.data if t.name.endswith("simulated")]
    lines = [t for t in vol.data if t.mode == "lines"]
    assert all(list(a.y) == list(b.y) for a, b in zip(sim, lines))  # simulated counts sit on the formulas
    assert len(causal_work_figure(64, 2).data) == 2


def test_longnet_paper_offsets_and_explicit_offsets():
    q, k, v = make_qkv(32, heads=4, kv_heads=4)
    for offsets in ("paper", [[0, 0, 0, 0], [1, 0, 1, 0], [3, 2, 1, 0]]):
        opts = dict(LONGNET, offsets=offsets)
        out, _ = simulate("longnet", q, k, v, 4, causal=True, **opts)
        mult = Dilated(LONGNET["segment_lengths"], LONGNET["dilation_rates"], True, offsets).multiplicity(4, 32)
        torch.testing.assert_close(out, reference_attention(q, k, v, multiplicity=mult)[0], rtol=0, atol=1e-10)


def test_launch_rejects_fork_and_nccl_without_gpus():
    from longlab.parallel import launch

    q, k, v = (t.detach() for t in make_qkv(8))
    with pytest.raises(ValueError, match="forkserver"):  # a forked busy parent can deadlock its children
        launch("ring", q, k, v, 2, start_method="fork")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl"):
            launch("ring", q, k, v, 2, backend="nccl")


def test_ring_without_overlap_is_the_same_computation():
    q, k, v = make_qkv(32)
    out, trace = simulate("zigzag", q, k, v, 4, causal=True, overlap=False)
    torch.testing.assert_close(out, reference_attention(q, k, v, causal=True)[0], rtol=0, atol=1e-10)
    assert trace.bytes_sent == simulate("zigzag", q, k, v, 4, causal=True)[1].sent("forward")
