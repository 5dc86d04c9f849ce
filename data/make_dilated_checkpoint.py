"""Regenerate data/checkpoints/tiny_dilated.{safetensors,json}: a byte-level TinyLM whose every layer is LongNet
dilated attention, trained like the dense pretraining phase of tiny_memorizing (same corpus, sizes, optimiser,
seed), so notebook 02 can put a trained dilated model's attention allocation next to a trained dense one.

Recipe (step-bounded and seeded; one CPU thread): 3 layers, d_model 128, 4 heads, context 256; every layer dilated
with segments (32, 64, 128, 256) and rates (1, 2, 4, 8) (geometric, w0 = 32, ratio 2), causal; trained on random
windows of the standard library's long .py files (longlab.tasks.split_source_documents) for --steps steps at lr
--lr, batch 8. The record keeps the held-out loss, the unigram bar and the dense model's loss after the same
number of pretraining steps (read from tiny_memorizing.json) for comparison.

    .venv/bin/python data/make_dilated_checkpoint.py        # ~8 min on one thread (466 s measured, shared machine)
    .venv/bin/python data/make_dilated_checkpoint.py --steps 20 --out /tmp/dil.safetensors   # smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from longlab.models import TinyLM, TinyLMConfig, TrainConfig, save_checkpoint, train
from longlab.tasks import split_source_documents, unigram_loss

HERE = Path(__file__).resolve().parent
CONFIG = TinyLMConfig(context=256, d_model=128, n_layers=3, n_heads=4, attention=("dilated",) * 3,
                      segment_lengths=(32, 64, 128, 256), dilation_rates=(1, 2, 4, 8))


def dense_reference(steps: int) -> dict | None:
    """The dense pretraining phase of tiny_memorizing at the same step count (same corpus, sizes, lr, seed)."""
    path = HERE / "checkpoints" / "tiny_memorizing.json"
    if not path.exists():
        return None
    pre = json.loads(path.read_text())["info"].get("pretrain") or {}
    rows = [h for h in pre.get("history", []) if h["step"] <= steps]
    return {"source": "tiny_memorizing.json pretrain (3 dense layers)", **rows[-1]} if rows else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "checkpoints" / "tiny_dilated.safetensors"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_docs, val_docs = split_source_documents()
    torch.manual_seed(args.seed)
    model = TinyLM(CONFIG)
    print(model)
    result = train(model, [d.tokens() for d in train_docs], [d.tokens() for d in val_docs],
                   TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=20, eval_every=100,
                               eval_windows=32, seed=args.seed))
    given = sys.argv[1:] if argv is None else list(argv)
    kept = [a for i, a in enumerate(given) if a != "--out" and (i == 0 or given[i - 1] != "--out")]
    info = {
        "corpus": f"longlab.tasks.split_source_documents(): {len(train_docs)} train / {len(val_docs)} held-out files",
        "train": {"steps": result.steps, "elapsed_s": round(result.elapsed_s, 1), "threads": args.threads,
                  "batch_size": args.batch, "lr": args.lr, "seed": args.seed, "history": result.history},
        "val_loss": result.final_val_loss,
        "unigram_val_loss": unigram_loss(train_docs, val_docs),
        "dense_reference": dense_reference(result.steps),
        "command": " ".join(["python data/make_dilated_checkpoint.py", *kept]),
    }
    path = save_checkpoint(model, args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k != "train"}, indent=1))
    print(f"{result.steps} steps in {result.elapsed_s:.0f} s; wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
