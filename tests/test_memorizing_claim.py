"""The Memorizing Transformer claim on the committed checkpoint, test-sized (computed, never typed in): on held-out
text, the same model reads the same bytes with growing kNN memory. Measured here: every memory size lowers the
loss, and the loss falls at every step from 0 to 256 to 1024 tokens. (Beyond ~1k tokens this 0.4M-parameter
model's loss creeps back up by a few thousandths, where the paper's large models keep improving to 262k tokens;
notebook 03 prints those numbers. The larger source-code experiment, data/make_source_checkpoint.py, falls to 4k and is
flat from 4k to 16k: its record is checked below; the claim up to 16k tokens is still open.)
Regenerate the checkpoint with `python data/make_checkpoints.py` (see data/checkpoints/README.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longlab.memory.memory_eval import MemorySweep, loss_vs_memory, loss_vs_memory_docs
from longlab.models import TinyLM, TinyLMConfig, TrainConfig, load_checkpoint, train
from longlab.tasks import held_out_long_files, split_documents, unigram_loss
from longlab.tasks.corpus import Document

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "tiny_memorizing.safetensors"
SIZES = [0, 256, 1024, 4096]
EVAL_BYTES = 6144


@pytest.fixture(scope="module")
def checkpoint():
    if not CHECKPOINT.exists():
        pytest.fail(f"{CHECKPOINT} is missing; regenerate it with `python data/make_checkpoints.py`")
    return load_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def losses(checkpoint):
    model, _ = checkpoint
    _, val_docs = split_documents()
    longest = max(val_docs, key=lambda d: len(d.text))
    return loss_vs_memory(model, longest.tokens(), SIZES, max_tokens=EVAL_BYTES, progress=False).mean_losses()


def test_checkpoint_is_small_and_beats_unigram(checkpoint):
    model, info = checkpoint
    assert CHECKPOINT.stat().st_size < 5e6
    train_docs, val_docs = split_documents()
    unigram = unigram_loss(train_docs, val_docs)
    assert info["val_loss"] < unigram - 1.0  # recorded at training time on the same split
    assert info["val_loss_within_180s"]["val_loss"] < unigram - 0.5  # within the first 3 minutes of training
    longest = max(val_docs, key=lambda d: len(d.text)).tokens()
    x, y = longest[None, 1000:1256], longest[None, 1001:1257]
    model.reset_memory()
    with torch.no_grad():
        _, loss = model(x, y, doc_start=torch.tensor([True]))
    assert loss.item() < unigram - 1.0  # recomputed now


def test_loss_falls_as_memory_grows_to_1k(losses):
    by_size = dict(zip(SIZES, losses))
    assert by_size[0] > by_size[256] > by_size[1024], by_size
    assert by_size[0] - by_size[1024] > 0.03, by_size  # nats/byte: far above float noise


def test_every_memory_size_beats_no_memory(losses):
    by_size = dict(zip(SIZES, losses))
    assert all(by_size[size] < by_size[0] - 0.03 for size in SIZES[1:]), by_size


def test_sweep_is_the_mean_of_per_document_curves():
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                                memory_size=32, memory_topk=4)).eval()
    gen = torch.Generator().manual_seed(1)
    docs = [Document(f"d{i}", bytes(torch.randint(97, 123, (n,), generator=gen).tolist()).decode())
            for i, n in enumerate((81, 120))]
    sweep = loss_vs_memory_docs(model, docs, [0, 16, 48], progress=False)
    for row, doc in zip(sweep.losses, docs):
        want = loss_vs_memory(model, doc.tokens(), [0, 16, 48], progress=False).mean_losses()
        torch.testing.assert_close(row, torch.tensor(want, dtype=torch.float64))
    assert sweep.bytes_per_doc == [80, 112] and sweep.names == ["d0", "d1"]
    torch.testing.assert_close(torch.tensor(sweep.mean(), dtype=torch.float64), sweep.losses.mean(0))
    rows = sweep.rows(digits=None)
    assert rows[-1]["document"] == "mean" and rows[-1]["bytes"] == 192
    back = MemorySweep.from_record({"memory_sizes": sweep.memory_sizes, "documents": rows})
    assert back.names == sweep.names and torch.equal(back.losses, sweep.losses)
    assert "2 documents" in repr(sweep)
    from viz.memory_explorer import loss_vs_memory_sweep_figure

    fig = loss_vs_memory_sweep_figure(sweep)
    assert len(fig.data) == 3 and list(fig.data[-1].y) == pytest.approx(sweep.mean())
    assert "tokens per head" in fig.layout.xaxis.title.text
    with pytest.raises(ValueError, match="documents is empty"):
        loss_vs_memory_docs(model, [], [0, 16])


def test_source_code_record_follows_its_rule():
    """data/checkpoints/source_code_run.json (data/make_source_checkpoint.py, the experiment behind the open 16k
    claim) measured every held-out file by the stated rule, and its mean row is the mean of the files."""
    info = json.loads((CHECKPOINT.parent / "source_code_run.json").read_text())["info"]
    record = info["memory_eval"]
    sweep = MemorySweep.from_record(record)
    assert sweep.names == [d.name for d in held_out_long_files()] and record["memory_sizes"] == [0, 1024, 4096, 16384]
    assert set(sweep.bytes_per_doc) == {record["eval_bytes"]}
    assert sweep.mean() == pytest.approx(record["mean_loss"], abs=1e-9)
    mean = sweep.mean()
    assert mean[0] - mean[1] > 0.05 and mean[1] - mean[2] > 0.005  # falls to 4k; the 4k -> 16k step is open


def test_periodic_evaluation_keeps_the_training_memories():
    """train() evaluates every eval_every steps; that must not empty the lanes' memories (it once did, which capped
    the memory a model ever trained with at eval_every windows, whatever memory_size said)."""
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                                memory_size=1000, memory_topk=4))
    gen = torch.Generator().manual_seed(2)
    docs = [torch.randint(0, 256, (16 * 10 + 1,), generator=gen) for _ in range(2)]  # 10 windows per document
    train(model, docs, docs[:1], TrainConfig(steps=4, batch_size=2, lr=1e-3, warmup=1, eval_every=1, eval_windows=2),
          progress=False)
    assert [len(m) for m in model.memory_layers()[0].memories] == [4 * 16, 4 * 16]  # 4 windows read by each lane
