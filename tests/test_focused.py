"""Focused Transformer layer (arXiv 2307.03170): one softmax over [un-rotated memory keys, causal local keys]
against the float64 reference (forward and gradients), top-k and all-of-memory retrieval, crossbatch against the
reference with an explicit lane mask, gradients into the previous windows but never into memory, r_d = 1/d for
identical contexts, crossbatch batches (positives from the same document, negatives never; seeded), clear errors."""
from __future__ import annotations

import random

import pytest
import torch

from longlab.attention import reference_attention
from longlab.attention.reference import causal_mask
from longlab.memory.focused.crossbatch import (
    CrossbatchBatches,
    DSchedule,
    crossbatch_loss,
    distraction_ratio,
    make_layout,
)
from longlab.memory.focused.layer import FocusedAttention, read_into_memory
from longlab.memory.lanes import memory_lanes
from longlab.memory.store import KVMemory
from longlab.models import TinyLM, TinyLMConfig

N, D_MODEL, HEADS = 8, 16, 2


def make_layer(memory_size=64, topk=64, **extra):
    torch.manual_seed(0)
    cfg = TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=1, attention="focused",
                       memory_size=memory_size, memory_topk=topk if topk else 1,
                       extra={"focused_topk": topk} if topk is None else extra)
    return FocusedAttention(cfg).double()


def windows(count, batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, N, D_MODEL, generator=gen, dtype=torch.float64) for _ in range(count)]


def reference_with_memory(layer, x, mem_k, mem_v):
    """Dense float64 softmax over [memory keys (un-rotated, all visible), local keys (rotated, causal)]."""
    q_raw, k_raw, v = layer.project(x)
    q, k = layer.rotate(q_raw, k_raw, torch.arange(N))
    keys, values = torch.cat([mem_k, k], dim=2), torch.cat([mem_v, v], dim=2)
    m = mem_k.shape[2]
    mask = torch.cat([torch.ones(N, m, dtype=torch.bool), causal_mask(N, N)], dim=1)
    out, _ = reference_attention(q, keys, values, mask=mask)
    return layer.merge_heads(out)


@pytest.mark.parametrize("topk", [64, 100, None])
def test_layer_equals_one_softmax_over_unrotated_memory_and_local_keys(topk):
    layer = make_layer(topk=topk)
    xs = windows(4)
    pos = torch.arange(N)
    stored_k, stored_v = [], []
    with torch.no_grad():
        for x in xs[:3]:
            _, k_raw, v = layer.project(x)
            stored_k.append(k_raw), stored_v.append(v)
            layer(x, pos)
    mem_k, mem_v = torch.cat(stored_k, 2), torch.cat(stored_v, 2)  # 24 <= topk: every entry retrieved
    x = xs[3].clone().requires_grad_(True)
    got = layer(x, pos)
    x_ref = xs[3].clone().requires_grad_(True)
    want = reference_with_memory(layer, x_ref, mem_k, mem_v)
    torch.testing.assert_close(got, want)
    grad = torch.randn_like(got)
    params = [layer.qkv.weight, layer.proj.weight]
    g_got = torch.autograd.grad(got, [x, *params], grad)
    g_want = torch.autograd.grad(want, [x_ref, *params], grad)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)
    assert all(not m.keys.requires_grad for m in layer.memories)  # memory never carries gradient


def test_topk_keeps_only_the_best_keys_and_reports_shares_of_the_one_softmax():
    layer = make_layer(topk=3)
    x1, x2 = windows(2)
    pos = torch.arange(N)
    with torch.no_grad():
        layer(x1, pos)
        out, reads = layer(x2, pos, return_retrievals=True)
        q_raw, k_raw, v = layer.project(x2)
        q, k = layer.rotate(q_raw, k_raw, pos)
        _, mk, mv = layer.project(x1)
        scores = torch.einsum("bhnd,bhmd->bhnm", q, mk) * layer.scale
        top = scores.topk(3, dim=-1).indices
        mask = torch.zeros(2, HEADS, N, N, dtype=torch.bool).scatter_(-1, top, True)
        full = torch.cat([mask, causal_mask(N, N).expand(2, HEADS, N, N)], dim=-1)
        want, lse = reference_attention(q, torch.cat([mk, k], 2), torch.cat([mv, v], 2), mask=full)
    torch.testing.assert_close(out, layer.merge_heads(want))
    rec = reads.lanes[0]
    assert rec.positions.shape == (HEADS, N, 3) and (rec.positions < N).all()  # read before write
    torch.testing.assert_close(rec.weights, torch.exp(rec.scores - lse[0][..., None]))
    assert (rec.weights.sum(-1) < 1).all()  # the rest of the mass went to local keys


def crossbatch_reference(layer, x, layout):
    """Reference: current lane i attends to [all previous windows' un-rotated keys, masked by the lane mask,
    its own causal rotated keys]; previous windows attend causally to themselves."""
    b = layout.lanes
    q_raw, k_raw, v = layer.project(x)
    q, k = layer.rotate(q_raw, k_raw, torch.arange(N))
    prev_out, _ = reference_attention(q[:b], k[:b], v[:b], causal=True)
    all_k = k_raw[:b].permute(1, 0, 2, 3).reshape(HEADS, b * N, -1)  # (H, b*N, D), lane-major
    all_v = v[:b].permute(1, 0, 2, 3).reshape(HEADS, b * N, -1)
    keys = torch.cat([all_k.expand(b, -1, -1, -1), k[b:]], dim=2)
    values = torch.cat([all_v.expand(b, -1, -1, -1), v[b:]], dim=2)
    mask = torch.cat([layout.lane_mask(N)[:, None, None, :].expand(b, 1, N, b * N),
                      causal_mask(N, N).expand(b, 1, N, N)], dim=-1)
    cur_out, _ = reference_attention(q[b:], keys, values, mask=mask)
    return layer.merge_heads(torch.cat([prev_out, cur_out]))


@pytest.mark.parametrize("d", [1, 2, 4])
def test_crossbatch_equals_reference_with_lane_mask_and_grads_reach_previous_windows(d):
    layer = make_layer()
    b = 4
    x = torch.randn(2 * b, N, D_MODEL, dtype=torch.float64, generator=torch.Generator().manual_seed(d),
                    requires_grad=True)
    layout = make_layout(b, d, docs=list(range(b)))
    got = layer(x, torch.arange(N), crossbatch=layout)
    x_ref = x.detach().clone().requires_grad_(True)
    want = crossbatch_reference(layer, x_ref, layout)
    torch.testing.assert_close(got, want)
    grad = torch.zeros_like(got)
    grad[b:] = torch.randn(b, N, D_MODEL, dtype=torch.float64)  # loss on the current windows only
    g_got, = torch.autograd.grad(got, x, grad)
    g_want, = torch.autograd.grad(want, x_ref, grad)
    torch.testing.assert_close(g_got, g_want)
    assert g_got[:b].abs().sum() > 0  # gradients flow into the previous windows (through their keys/values)
    assert len(layer.lanes) == 0  # crossbatch training never touches memory


def test_lane_without_positive_sees_no_crossbatch_keys():
    layer = make_layer()
    b = 3
    x = torch.randn(2 * b, N, D_MODEL, dtype=torch.float64)
    layout = make_layout(b, 2)
    layout.positive = torch.tensor([True, False, True])
    got = layer(x, torch.arange(N), crossbatch=layout)
    torch.testing.assert_close(got, crossbatch_reference(layer, x, layout))
    local = make_layer(memory_size=0)(x[b + 1 : b + 2], torch.arange(N))
    torch.testing.assert_close(got[b + 1 : b + 2], local)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 8])
def test_identical_contexts_give_r_d_exactly_one_over_d(d):
    layer = make_layer()
    prev = torch.randn(1, N, D_MODEL, dtype=torch.float64).expand(8, -1, -1)
    curr = torch.randn(8, N, D_MODEL, dtype=torch.float64)
    layout = make_layout(8, d)
    _, reads = layer(torch.cat([prev, curr]), torch.arange(N), crossbatch=layout, return_retrievals=True)
    mass = reads.extras["crossbatch_mass"]
    assert mass.shape == (8, HEADS, N, d)
    assert distraction_ratio(mass) == pytest.approx(1 / d, rel=1e-12, abs=1e-15)


def tiny_docs(count=12, length=5 * N + 1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (length,), generator=gen) for _ in range(count)]


def test_crossbatch_batches_positives_same_document_negatives_never_and_seeded():
    docs = tiny_docs()
    a = CrossbatchBatches(docs, lanes=6, context=N, schedule="1:2,4", seed=3)
    b = CrossbatchBatches(docs, lanes=6, context=N, schedule="1:2,4", seed=3)
    for step in range(5):
        ba, bb = a.batch(step), b.batch(step)
        assert torch.equal(ba.prev, bb.prev) and torch.equal(ba.layout.sources, bb.layout.sources)  # seeded
        assert ba.layout.d == (1 if step < 2 else 4)
        lay = ba.layout
        assert (lay.sources[:, 0] == torch.arange(6)).all()
        for i in range(6):
            doc, o = docs[int(lay.docs[i])], ba.offsets[i]
            assert torch.equal(ba.prev[i], doc[o : o + N]) and torch.equal(ba.curr[i], doc[o + N : o + 2 * N])
            assert torch.equal(ba.curr_y[i], doc[o + N + 1 : o + 2 * N + 1])  # positive: the same document
            negatives = lay.sources[i, 1:]
            assert len(set(negatives.tolist())) == lay.d - 1 and i not in negatives.tolist()
            assert all(int(lay.docs[j]) != int(lay.docs[i]) for j in negatives)  # never the same document
    other = CrossbatchBatches(docs, lanes=6, context=N, schedule="4", seed=4).batch()
    assert not torch.equal(other.prev, CrossbatchBatches(docs, lanes=6, context=N, schedule="4", seed=3).batch().prev)


def test_schedules():
    assert [DSchedule("8")(s) for s in (0, 10_000)] == [8, 8]
    small_then_large = DSchedule("1:200,8")
    assert [small_then_large(s) for s in (0, 199, 200, 5000)] == [1, 1, 8, 8] and small_then_large.largest == 8
    assert [DSchedule("2:10,4:20,16")(s) for s in (0, 10, 19, 20)] == [2, 4, 4, 16]
    for bad in ("x", "0", "4:10,2:5,8", "1:0,8"):
        with pytest.raises(ValueError, match="schedule"):
            DSchedule(bad)


def test_schedules_compose_across_phases():
    assert DSchedule("1:1000,8").then("16", 4500).spec == "1:1000,8:4500,16"
    assert DSchedule("1").then("8", 6000).then("1:1000,8", 7500).spec == "1:6000,8:7500,1:8500,8"
    rng = random.Random(0)
    for _ in range(200):  # the composed schedule is the first until at_step, then the second shifted
        def spec():
            untils = sorted(rng.sample(range(1, 40), rng.randint(0, 3)))
            return ",".join([f"{rng.randint(1, 3)}:{u}" for u in untils] + [str(rng.randint(1, 3))])
        before, after, at = DSchedule(spec()), DSchedule(spec()), rng.randint(1, 50)
        both = before.then(after, at)
        assert [both(s) for s in range(100)] == [before(s) if s < at else after(s - at) for s in range(100)]
    with pytest.raises(ValueError, match="step >= 1"):
        DSchedule("8").then("16", 0)


def test_clear_errors():
    with pytest.raises(ValueError, match="larger than the batch"):
        make_layout(4, 5)
    with pytest.raises(ValueError, match="larger than the batch"):
        CrossbatchBatches(tiny_docs(), lanes=4, context=N, schedule="1:5,8")
    with pytest.raises(ValueError, match="other documents"):
        make_layout(3, 3, docs=[0, 0, 1])
    with pytest.raises(ValueError, match="2 x context"):
        CrossbatchBatches([torch.zeros(2 * N, dtype=torch.long)] * 4, lanes=2, context=N, schedule="2")
    layer = make_layer()
    with pytest.raises(ValueError, match="another width"):
        layer.lanes.set_sizes([16])
        layer.lanes[0].bank = KVMemory(16, 4, heads=HEADS, dtype=torch.float64).add(torch.randn(HEADS, 3, 4),
                                                                                   torch.randn(HEADS, 3, 4))
        layer(windows(1, batch=1)[0], torch.arange(N))
    with pytest.raises(ValueError, match="2 x 4 rows"):
        make_layer()(windows(1, batch=5)[0], torch.arange(N), crossbatch=make_layout(4, 2))
    with pytest.raises(ValueError, match="extra keys"):
        make_layer()(windows(1)[0], torch.arange(N), extra=(torch.zeros(2, HEADS, 3, 5), torch.zeros(2, HEADS, 3, 5)))
    with pytest.raises(ValueError, match="focused top-k"):
        TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=1, attention="focused",
                            extra={"focused_topk": 0}))


def test_explicit_extra_context_equals_reference():
    layer = make_layer(memory_size=0)
    x = windows(1)[0]
    gen = torch.Generator().manual_seed(5)
    k_x, v_x = (torch.randn(2, HEADS, 5, D_MODEL // HEADS, dtype=torch.float64, generator=gen) for _ in range(2))
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    got = layer(x, torch.arange(N), extra=(k_x, v_x, mask))
    q_raw, k_raw, v = layer.project(x)
    q, k = layer.rotate(q_raw, k_raw, torch.arange(N))
    full = torch.cat([mask[:, None, None, :].expand(2, 1, N, 5), causal_mask(N, N).expand(2, 1, N, N)], dim=-1)
    want, _ = reference_attention(q, torch.cat([k_x, k], 2), torch.cat([v_x, v], 2), mask=full)
    torch.testing.assert_close(got, layer.merge_heads(want))


def test_tinylm_crossbatch_loss_trains_and_read_into_memory_keeps_the_tail():
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=2, attention=("dense", "focused"),
                                memory_size=64, memory_topk=4))
    batch = CrossbatchBatches(tiny_docs(), lanes=4, context=N, schedule="2", seed=0).batch()
    loss = crossbatch_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.blocks[1].attn.qkv.weight.grad.abs().sum() > 0
    prompt = torch.randint(0, 256, (3 * N + 5,))
    with memory_lanes(model, sizes=[64]) as run:
        tail = read_into_memory(model, prompt, keep_last=5)
        assert torch.equal(tail[0], prompt[-5:]) and len(run.layers[0].memories[0]) == 3 * N
        out = model.generate(tail, 4)
        assert out.shape == (1, 9)
    assert len(model.memory_layers()[0].lanes) == 0  # memory_lanes gave the (empty) lanes back
    with pytest.raises(ValueError, match="keep_last"):
        read_into_memory(model, prompt, keep_last=N + 1)


def test_train_cli_with_crossbatch(tmp_path, capsys):
    from longlab.cli import main
    from longlab.models import load_checkpoint

    out = tmp_path / "fot.safetensors"
    assert main(["train", "--attention", "dense", "focused", "--d-model", "16", "--heads", "2", "--context", "16",
                 "--steps", "3", "--batch", "4", "--crossbatch", "1:2,4", "--eval-every", "3", "--memory-size", "64",
                 "--out", str(out)]) == 0
    assert "3 steps" in capsys.readouterr().out
    model, info = load_checkpoint(out)
    assert model.config.attention == ("dense", "focused") and info["train"]["crossbatch"] == "1:2,4"
    with pytest.raises(ValueError, match="needs a Focused Transformer layer"):
        from longlab.models import TrainConfig, train

        train(TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=1)), tiny_docs(), tiny_docs(2),
              TrainConfig(steps=1, batch_size=2, crossbatch="2"), progress=False)


@pytest.mark.cuda
@pytest.mark.parametrize("topk", [4, None])
def test_focused_model_gives_the_same_losses_on_cuda(topk):
    import copy

    cfg = TinyLMConfig(context=32, d_model=32, n_heads=2, n_layers=2, attention=("dense", "focused"),
                       memory_size=64, memory_topk=4, extra={"focused_topk": topk})
    torch.manual_seed(0)
    cpu_model = TinyLM(cfg).eval()
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    tokens = torch.randint(0, 256, (2, 4 * 32 + 1), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for w in range(4):  # memory fills past its 64 entries: FIFO eviction and retrieval on the GPU too
            x, y = tokens[:, w * 32 : (w + 1) * 32], tokens[:, w * 32 + 1 : (w + 1) * 32 + 1]
            _, want = cpu_model(x, y, reduction="none")
            _, got = gpu_model(x.cuda(), y.cuda(), reduction="none")
            torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
    batch = CrossbatchBatches(tiny_docs(length=5 * 32 + 1), lanes=4, context=32, schedule="4", seed=0).batch()
    want = crossbatch_loss(cpu_model, batch)
    gpu_batch = copy.deepcopy(batch)
    gpu_batch.prev, gpu_batch.prev_y, gpu_batch.curr, gpu_batch.curr_y = (
        t.cuda() for t in (batch.prev, batch.prev_y, batch.curr, batch.curr_y))
    torch.testing.assert_close(crossbatch_loss(gpu_model, gpu_batch).cpu(), want, atol=1e-4, rtol=1e-4)


def test_read_into_memory_without_reads_stores_the_same_entries():
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=3,
                                attention=("dense", "focused", "dense"), memory_size=64, memory_topk=4)).eval()
    prompt = torch.randint(0, 256, (5 * N + 3,))
    stored = []
    for read in (True, False):
        with memory_lanes(model, sizes=[64]) as run:
            read_into_memory(model, prompt, keep_last=3, read=read)
            bank = run.layers[0].memories[0]
            stored.append((bank.keys[:, : len(bank)].clone(), bank.values[:, : len(bank)].clone()))
    torch.testing.assert_close(stored[0], stored[1], rtol=0, atol=0)
    two = TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=2, attention="focused"))
    with pytest.raises(ValueError, match="one memory layer"):
        read_into_memory(two, prompt, keep_last=3, read=False)


def test_overlapped_read_stores_each_token_once_with_overlap_tokens_before_it():
    """Every window after the first re-reads `overlap` tokens and writes only the new ones: the memory holds each
    prompt token once, in order, and a token's entry equals the one a plain read of the prompt started `overlap`
    tokens before its window gives (the window it was computed in)."""
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=2,
                                attention=("dense", "focused"), memory_size=256, memory_topk=4)).eval()
    with torch.no_grad():  # every weight random (a fresh TinyLM's zero output projections would hide the context)
        for weight in model.parameters():
            weight.normal_(0, 0.3)
    overlap, prompt = 5, torch.randint(0, 256, (4 * N + 7,))

    def read(tokens, **kw):
        with memory_lanes(model, sizes=[256]) as run:
            read_into_memory(model, tokens, keep_last=0, **kw)
            bank = run.layers[0].memories[0]
            return bank.keys[:, : len(bank)].clone(), bank.values[:, : len(bank)].clone(), len(bank)

    keys, values, stored = read(prompt, overlap=overlap)
    assert stored == prompt.numel()
    plain_keys, _, _ = read(prompt)
    torch.testing.assert_close(keys[:, :N], plain_keys[:, :N], rtol=0, atol=0)  # the first window: no overlap
    assert not torch.equal(keys[:, N], plain_keys[:, N])  # a plain read stores token N without what precedes it
    start, new = N, N - overlap
    while start < prompt.numel():
        shifted_keys, shifted_values, _ = read(prompt[start - overlap :])
        count = min(new, prompt.numel() - start)
        torch.testing.assert_close(keys[:, start : start + count], shifted_keys[:, overlap : overlap + count])
        torch.testing.assert_close(values[:, start : start + count], shifted_values[:, overlap : overlap + count])
        start += new
    for bad in (N, -1, True):
        with pytest.raises(ValueError, match="overlap must be an int"):
            read_into_memory(model, prompt, keep_last=0, overlap=bad)
    gated = TinyLM(TinyLMConfig(context=N, d_model=D_MODEL, n_heads=HEADS, n_layers=2,
                                attention=("dense", "memorizing"), memory_size=64))
    with pytest.raises(ValueError, match="one Focused memory layer"):
        read_into_memory(gated, prompt, keep_last=0, overlap=overlap)


def test_all_of_memory_records_its_best_entries_only_when_asked():
    layer = make_layer(topk=None)
    x1, x2 = windows(2)
    pos = torch.arange(N)
    with torch.no_grad():
        layer(x1, pos)
        plain = layer(x2, pos, write_memory=False)
        out, reads = layer(x2, pos, return_retrievals=True)
    rec = reads.lanes[1]
    assert rec.positions.shape == (HEADS, N, N) and (rec.weights > 0).all() and (rec.weights.sum(-1) < 1).all()
    torch.testing.assert_close(out, plain)
