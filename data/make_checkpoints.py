"""Regenerate data/checkpoints/tiny_memorizing.{safetensors,json}: a byte-level TinyLM with one Memorizing
Transformer kNN layer, trained on the standard library's own long source files (longlab.tasks.source_corpus),
plus the measured numbers (unigram bar, loss vs memory size on every held-out file, the pydoc "< 3 minutes" run).

Recipe (step-bounded and seeded, so a rerun with the same torch on the same kind of CPU gives the same weights):
  1. 3 layers (dense, memorizing, dense): the kNN layer sits below the top, as in the paper (layer 9 of 12).
     First all three layers are dense and pretrained on random windows (--pretrain-steps, lr --pretrain-lr);
  2. the middle layer becomes the kNN layer (same q/k/v/out weights, new gate and temperature) and the model is
     fine-tuned on document streams with a --train-memory token memory (--steps, lr --lr): each batch lane
     reads one file window after window, memory cleared at file boundaries (the paper fine-tunes too, sec. 4);
  3. loss vs memory size (0, 1k, 4k, 16k tokens) on every held-out file's first --eval-bytes bytes;
  4. the pydoc_data claim: a 2-layer dense TinyLM trained from scratch for --pydoc-seconds on that English
     corpus, against its unigram bar (numbers only; 0 skips it).

    .venv/bin/python data/make_checkpoints.py             # ~21 min on one thread (3 + 10 + 4.5 + 3)
    .venv/bin/python data/make_checkpoints.py --steps 20 --pretrain-steps 20 --eval-bytes 2048 --pydoc-seconds 0 \\
        --out /tmp/ckpt.safetensors                       # a quick smoke run elsewhere
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from longlab.memory.memory_eval import loss_vs_memory_docs
from longlab.models import TinyLM, TinyLMConfig, TrainConfig, save_checkpoint, train
from longlab.tasks import held_out_long_files, split_documents, split_source_documents, unigram_loss

HERE = Path(__file__).resolve().parent
CONFIG = TinyLMConfig(context=256, d_model=128, n_layers=3, n_heads=4, attention=("dense", "memorizing", "dense"),
                      memory_size=16384, memory_topk=32)
EVAL_SIZES = (0, 1024, 4096, 16384)


def history(result) -> dict:
    return {"steps": result.steps, "elapsed_s": round(result.elapsed_s, 1), "val_loss": result.final_val_loss,
            "history": result.history}


def pydoc_three_minutes(seconds: float, seed: int) -> dict:
    """The pydoc_data claim: a 2-layer dense TinyLM from scratch, time-bounded, against the unigram bar."""
    train_docs, val_docs = split_documents()
    torch.manual_seed(seed)
    model = TinyLM(dataclasses.replace(CONFIG, n_layers=2, attention=("dense", "dense")))
    config = TrainConfig(steps=2000, batch_size=8, lr=4e-3, warmup=20, eval_every=25, eval_windows=32, seed=seed,
                         time_limit_s=seconds)
    result = train(model, [d.tokens() for d in train_docs], [d.tokens() for d in val_docs], config)
    within = [h for h in result.history if h["elapsed_s"] <= 180]
    return {"model": repr(model), "unigram_val_loss": unigram_loss(train_docs, val_docs),
            "val_loss_within_180s": within[-1] if within else None, **history(result)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="dense pretraining steps (0: none)")
    parser.add_argument("--pretrain-lr", type=float, default=4e-3)
    parser.add_argument("--steps", type=int, default=650, help="memorizing fine-tune steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the fine-tune (cosine decay)")
    parser.add_argument("--train-memory", type=int, default=16384,
                        help="memory tokens per head while training (= the largest evaluated)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (1: on a shared 2-core CPU, 2 threads ran 3-5x slower here)")
    parser.add_argument("--eval-bytes", type=int, default=32000,
                        help="bytes read from the start of each held-out file (every one has >= 32,000)")
    parser.add_argument("--pydoc-seconds", type=float, default=170.0, help="the pydoc '< 3 minutes' run (0: skip)")
    parser.add_argument("--out", default=str(HERE / "checkpoints" / "tiny_memorizing.safetensors"),
                        help="weights (.safetensors) and, next to them, the record (.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_docs, val_docs = split_source_documents()
    train_tokens, val_tokens = [d.tokens() for d in train_docs], [d.tokens() for d in val_docs]
    torch.manual_seed(args.seed)
    model = TinyLM(dataclasses.replace(CONFIG, memory_size=args.train_memory))
    pretrain = None
    if args.pretrain_steps > 0:
        dense = TinyLM(dataclasses.replace(CONFIG, attention=("dense",) * CONFIG.n_layers))
        pretrain = train(dense, train_tokens, val_tokens,
                         TrainConfig(steps=args.pretrain_steps, batch_size=args.batch, lr=args.pretrain_lr, warmup=20,
                                     eval_every=100, eval_windows=32, seed=args.seed))
        missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False)
        if unexpected or any(not name.endswith(("gate_bias", "log_tau")) for name in missing):
            raise RuntimeError(f"dense -> memorizing weight transfer mismatch: {missing} {unexpected}")
    print(model)
    result = train(model, train_tokens, val_tokens,
                   TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=20, eval_every=50,
                               eval_windows=32, seed=args.seed))
    start = time.perf_counter()
    sweep = loss_vs_memory_docs(model, held_out_long_files(), EVAL_SIZES, max_tokens=args.eval_bytes)
    layer = model.memory_layers()[0]
    info = {
        "corpus": "longlab.tasks.split_source_documents() (standard-library .py files >= 32,000 bytes, Python "
                  f"{sys.version.split()[0]}): {len(train_docs)} train / {len(val_docs)} held-out files",
        "pretrain": None if pretrain is None else {"lr": args.pretrain_lr, **history(pretrain)},
        "train": {"threads": args.threads, "batch_size": args.batch, "lr": args.lr, "seed": args.seed,
                  "train_memory": args.train_memory, **history(result)},
        "val_loss": result.final_val_loss,
        "unigram_val_loss": unigram_loss(train_docs, val_docs),
        "gate": layer.gate().tolist(), "temperature": layer.log_tau.exp().tolist(),
        "memory_eval": {"rule": "every held-out file (path order), its first eval_bytes bytes, memory empty at start",
                        "eval_bytes": args.eval_bytes, "memory_sizes": sweep.memory_sizes,
                        "documents": sweep.rows(digits=None), "mean_loss": sweep.mean(),
                        "eval_s": round(time.perf_counter() - start, 1)},
    }
    if args.pydoc_seconds > 0:
        info["pydoc_3min"] = pydoc_three_minutes(args.pydoc_seconds, args.seed)
    given = sys.argv[1:] if argv is None else list(argv)
    kept = [a for i, a in enumerate(given) if a != "--out" and (i == 0 or given[i - 1] != "--out")]
    info["command"] = " ".join(["python data/make_checkpoints.py", *kept])  # --out only says where it went
    path = save_checkpoint(model, args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k not in ("train", "pretrain")}, indent=1)[:6000])
    print(f"fine-tuned {result.steps} steps in {result.elapsed_s:.0f} s; wrote {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
