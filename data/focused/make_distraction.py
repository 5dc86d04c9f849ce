"""Focused Transformer claim 1, distraction (arXiv 2307.03170, sec. 3 / fig. 2): r_d against d for a model
fine-tuned WITHOUT negatives (crossbatch d = 1) and the same model fine-tuned WITH crossbatch at d = 8.

r_d = attention mass of the memory layer's queries on the positive context (their own document's previous
window) divided by the mass on all d previous windows (the positive and d - 1 other documents'), averaged over
queries, heads and lanes (`longlab.memory.focused.crossbatch.distraction_ratio`). About 1/d for a model that cannot tell
its own document's keys from others'.

Both models start from the committed Memorizing checkpoint's weights (data/checkpoints/tiny_memorizing: 3 layers,
d_model 128, the middle layer becomes a Focused layer with the same q/k/v/out weights; its gate and temperature
are dropped), and are fine-tuned with the same seed, data order, steps and learning rate on the source corpus's
training files; only d differs. r_d is measured on files never trained on: standard-library .py files not in
the training split, each a different document.

    .venv/bin/python data/focused/make_distraction.py train --d 1     # ~10 min on one (shared) thread
    .venv/bin/python data/focused/make_distraction.py train --d 8
    .venv/bin/python data/focused/make_distraction.py measure          # writes data/focused/distraction.json
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from common import BASE, claim_parser, fine_tune, load_base_weights, parse

from longlab.io import write_json
from longlab.memory.focused.crossbatch import CrossbatchBatches, crossbatch_loss, measure_distraction
from longlab.models import TinyLM, load_checkpoint, save_checkpoint
from longlab.tasks import load_source_documents, split_source_documents

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKPOINTS = {1: ROOT / "data" / "checkpoints" / "focused_plain.safetensors",
               8: ROOT / "data" / "checkpoints" / "focused_crossbatch.safetensors"}
RESULT = HERE / "distraction.json"
D_VALUES = (1, 2, 4, 8, 16)


def focused_from_base() -> TinyLM:
    base, _ = load_checkpoint(BASE)
    return load_base_weights(TinyLM(dataclasses.replace(base.config, attention=("dense", "focused", "dense"))))


def held_out_documents(window: int) -> list[torch.Tensor]:
    """Every stdlib .py file of more than 2 windows that the training split never saw (one document each)."""
    train, _ = split_source_documents()
    seen = {d.name for d in train}
    docs = [d for d in load_source_documents(min_bytes=2 * window + 1) if d.name not in seen]
    return [d.tokens() for d in docs]


def train_variant(d: int, steps: int, window: int, lanes: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    model = focused_from_base().train()
    train_docs, _ = split_source_documents()
    batches = CrossbatchBatches([doc.tokens() for doc in train_docs], lanes, window, str(d), seed=seed)
    timing = fine_tune(model, lambda step: (crossbatch_loss(model, batches.batch(step)), {}), steps, lr,
                       log_every=25, label=f"d={d}", metric="train_loss")
    info = {"crossbatch_d": d, "steps": steps, "window": window, "lanes": lanes, "lr": lr, "seed": seed, **timing,
            "init": "data/checkpoints/tiny_memorizing.safetensors (middle layer -> focused)"}
    print(f"wrote {save_checkpoint(model, CHECKPOINTS[d], info)}")


def measure(window: int, lanes: int, batches: int, seed: int) -> dict:
    docs = held_out_documents(window)
    rows = {}
    for d, path in CHECKPOINTS.items():
        model, info = load_checkpoint(path)
        r = measure_distraction(model, docs, D_VALUES, lanes=lanes, batches=batches, seed=seed, window=window)
        rows[f"trained_d{d}"] = {"r_d": {str(k): v for k, v in r.items()}, "train": info}
        print(f"trained with d={d}: " + ", ".join(f"r_{k} = {v:.3f}" for k, v in r.items()), flush=True)
    base = focused_from_base()
    r = measure_distraction(base, docs, D_VALUES, lanes=lanes, batches=batches, seed=seed, window=window)
    rows["untrained"] = {"r_d": {str(k): v for k, v in r.items()}}
    print("before fine-tuning: " + ", ".join(f"r_{k} = {v:.3f}" for k, v in r.items()))
    plain, cross = rows["trained_d1"]["r_d"]["8"], rows["trained_d8"]["r_d"]["8"]
    result = {
        "claim": "r_d falls like 1/d without negatives; crossbatch d=8 keeps r_8 at least 2x the plain model's",
        "command": "python data/focused/make_distraction.py train --d 1; ... train --d 8; ... measure",
        "d_values": list(D_VALUES), "window": window, "lanes": lanes, "batches": batches, "seed": seed,
        "held_out_documents": len(docs), "models": rows, "r8_ratio_crossbatch_over_plain": cross / plain,
        "goal_r8_at_least_2x_met": cross / plain >= 2.0,
        "falls_like_1_over_d_without_negatives": all(abs(rows["trained_d1"]["r_d"][str(d)] - 1 / d) < 0.25 / d
                                                     for d in D_VALUES),
    }
    write_json(RESULT, result)
    print(f"r_8: crossbatch {cross:.3f} vs plain {plain:.3f} ({cross / plain:.2f}x); wrote {RESULT}")
    return result


def main() -> None:
    parser = claim_parser(__doc__)
    parser.add_argument("--d", type=int, choices=sorted(CHECKPOINTS), default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--window", type=int, default=128, help="tokens per window (training and measuring)")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--measure-lanes", type=int, default=16)
    parser.add_argument("--measure-batches", type=int, default=4)
    args = parse(parser)
    if args.stage == "train":
        train_variant(args.d, args.steps, args.window, args.lanes, args.lr, args.seed)
    else:
        measure(args.window, args.measure_lanes, args.measure_batches, args.seed)


if __name__ == "__main__":
    main()
