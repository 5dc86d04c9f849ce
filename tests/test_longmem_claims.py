"""Re-check the LongMem claims recorded by `longlab train-sidenet` (data/longmem/claims.json): the numbers follow
from their rows, a CI-sized slice recomputed from the committed SideNet gives the recorded values, the backbone
file is the one trained beside and is unchanged, and staleness is 0 for the frozen backbone but not for a
Memorizing model that keeps training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longlab.memory.longmem.evaluate import backbone_unchanged, longmem_sweep
from longlab.memory.longmem.model import file_sha256, load_longmem
from longlab.memory.longmem.staleness import drift_probe, longmem_source_keys, probe_windows, tinylm_layer_keys
from longlab.memory.longmem.train import train_streams
from longlab.models import TrainConfig, load_checkpoint
from longlab.tasks import held_out_long_files, split_source_documents

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "data" / "longmem" / "claims.json"
SIDENET = ROOT / "data" / "checkpoints" / "longmem_sidenet.safetensors"


@pytest.fixture(scope="module")
def claims():
    return json.loads(CLAIMS.read_text())


@pytest.fixture(scope="module")
def loaded():
    return load_longmem(SIDENET)


def test_recorded_claims_hold_and_follow_from_their_rows(claims):
    ev = claims["eval"]
    sizes = ev["memory_sizes"]
    assert sizes == sorted(sizes) and sizes[0] == 0 and len(ev["documents"]) == 14
    for i, size in enumerate(sizes):  # the means are the means of the per-file rows
        assert ev["mean_loss"][i] == pytest.approx(sum(r[f"memory {size}"] for r in ev["documents"]) / 14, abs=1e-12)
    assert ev["mean_backbone"] == pytest.approx(sum(r["backbone"] for r in ev["documents"]) / 14, abs=1e-12)
    assert ev["mean_loss"][0] < ev["mean_backbone"], "the SideNet (no memory) must beat the frozen backbone alone"
    losses = ev["mean_loss"]
    assert all(a > b for a, b in zip(losses, losses[1:])), f"loss must fall as memory grows: {losses} for {sizes}"
    assert claims["config"]["memory_layer"] > 0  # layer 0's memory queries would see only the current byte
    attention = json.loads((SIDENET.parent / "tiny_memorizing.json").read_text())["config"]["attention"]
    assert claims["config"]["source_layer"] == attention.index("memorizing")  # keys trained to be searched
    assert "longlab train-sidenet" in claims["command"]


def test_staleness_and_identity_records(claims):
    frozen = claims["staleness"]["frozen_backbone"]["history"]
    assert len(frozen) >= 3 and all(r["drift"] == 0.0 and r["changed"] == 0.0 for r in frozen)
    moving = claims["staleness"]["memorizing"]["history"]
    assert moving[0]["drift"] == 0.0 and moving[-1]["drift"] > 1e-3 and moving[-1]["changed"] > 0.5
    backbone = claims["backbone"]
    assert backbone["bit_identical"] and backbone["tensors"] == backbone["identical"] > 0


def test_checkpoint_is_small_and_references_the_backbone(loaded, claims):
    model, meta = loaded
    assert SIDENET.stat().st_size <= 5e6
    backbone_path = SIDENET.parent / meta["backbone"]["path"]
    assert file_sha256(backbone_path) == claims["backbone"]["sha256"] == meta["backbone"]["sha256"]
    assert SIDENET.stat().st_size < backbone_path.stat().st_size  # SideNet only: the backbone is not copied
    same = backbone_unchanged(model, backbone_path)
    assert same["bit_identical"] and same["tensors"] == claims["backbone"]["tensors"]


def test_ci_slice_recomputes_to_the_recorded_values(loaded, claims):
    model, _ = loaded
    rec = claims["recheck"]
    docs = held_out_long_files(len(rec["files"]))
    assert [d.name for d in docs] == rec["files"]
    torch.set_num_threads(1)
    now = longmem_sweep(model, docs, rec["memory_sizes"], max_tokens=rec["bytes"], progress=False)
    for got, want in zip(now["documents"], rec["documents"]):
        assert got["backbone"] == pytest.approx(want["backbone"], abs=1e-4)
        for size in rec["memory_sizes"]:
            assert got[f"memory {size}"] == pytest.approx(want[f"memory {size}"], abs=1e-4)


def test_a_few_steps_move_memorizing_keys_but_never_the_frozen_backbone():
    model, meta = load_longmem(SIDENET)  # a fresh copy: this test trains it
    train_docs, val_docs = split_source_documents()
    windows = probe_windows(val_docs[0].tokens(), model.config.context, 1)
    frozen = drift_probe(longmem_source_keys, windows)
    frozen(model)
    memorizing, _ = load_checkpoint(SIDENET.parent / meta["backbone"]["path"])
    layer = memorizing.memory_layers()[0].layer_index
    run = train_streams(memorizing, list(memorizing.parameters()), [d.tokens() for d in train_docs[:4]], [],
                        TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup=1, eval_every=1, eval_windows=0),
                        probe=drift_probe(lambda m, w: tinylm_layer_keys(m, layer, w), windows), progress=False)
    assert run.history[-1]["drift"] > 1e-6 and run.history[-1]["changed"] > 0.5
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.1)  # a SideNet step changes no backbone key
    x, y = windows, windows.roll(-1, dims=1)
    model.train()
    loss = model(x, y)[1]
    loss.backward()
    optimizer.step()
    model.eval()
    assert frozen(model) == {"drift": 0.0, "drift_max": 0.0, "changed": 0.0}


def test_longer_read_backbone_equals_the_memorizing_record_without_memory():
    """eval_32000.json reads the bytes of the Memorizing checkpoint's recorded sweep: its frozen backbone (the
    Memorizing layers made dense) must give that record's memory-0 loss file by file."""
    longer = json.loads((CLAIMS.parent / "eval_32000.json").read_text())
    record = json.loads((SIDENET.parent / "tiny_memorizing.json").read_text())["info"]["memory_eval"]
    assert longer["eval_bytes"] == record["eval_bytes"] == 32000
    theirs = {row["document"]: row["memory 0"] for row in record["documents"] if row["document"] != "mean"}
    assert len(longer["documents"]) == len(theirs) == 14
    for row in longer["documents"]:
        assert row["backbone"] == pytest.approx(theirs[row["document"]], abs=1e-4)
    for i, size in enumerate(longer["memory_sizes"]):
        assert longer["mean_loss"][i] == pytest.approx(
            sum(r[f"memory {size}"] for r in longer["documents"]) / 14, abs=1e-12)
    assert all(loss < longer["mean_loss"][0] < longer["mean_backbone"] for loss in longer["mean_loss"][1:])
