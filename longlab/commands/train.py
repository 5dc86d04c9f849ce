"""`longlab train`: train a TinyLM on the pydoc_data corpus, print losses against the unigram bar, save a checkpoint.

Example (a model with a Memorizing Transformer kNN layer on top; the committed checkpoint's recipe, which
trains on the standard library's .py files instead, is data/make_checkpoints.py):
    longlab train --attention dense memorizing --seconds 170 --out /tmp/tiny.safetensors
Focused Transformer with crossbatch training (d = 8 other-or-own previous windows per lane):
    longlab train --attention dense focused dense --crossbatch 8 --batch 8 --seconds 300
"""
from __future__ import annotations

NAME = "train"
HELP = "train a TinyLM on the pydoc_data corpus (seeded, time-limited) and save a safetensors checkpoint"


def register(parser) -> None:
    parser.add_argument("--attention", nargs="+", default=["dense", "dense"],
                        help="one attention kind per layer (dense, sliding, dilated, memorizing, ...)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--memory-size", type=int, default=16384, help="memory layers: tokens per head")
    parser.add_argument("--crossbatch", default=None, metavar="D",
                        help="focused layers: crossbatch training with d contexts per lane, fixed ('8') or small "
                             "first, then large ('1:200,8' = d 1 for 200 steps, then 8); needs --batch >= d")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=170.0, help="stop after this much training time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", choices=("pydoc", "source"), default="pydoc",
                        help="pydoc: the pydoc_data topics; source: the standard library's long .py files")
    parser.add_argument("--out", default=None, help="checkpoint path (.safetensors; a .json goes next to it)")


def main(args) -> int:
    import torch

    from ..models import TinyLM, TinyLMConfig, TrainConfig, save_checkpoint, train
    from ..tasks import split_documents, split_source_documents, unigram_loss

    torch.set_num_threads(args.threads)
    config = TinyLMConfig(context=args.context, d_model=args.d_model, n_layers=len(args.attention),
                          n_heads=args.heads, attention=tuple(args.attention), memory_size=args.memory_size)
    torch.manual_seed(args.seed)
    model = TinyLM(config)
    train_docs, val_docs = split_source_documents() if args.corpus == "source" else split_documents()
    unigram = unigram_loss(train_docs, val_docs)
    print(f"{model}\nunigram held-out loss: {unigram:.4f} nats/byte")
    result = train(model, [d.tokens() for d in train_docs], [d.tokens() for d in val_docs],
                   TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, eval_every=args.eval_every,
                               seed=args.seed, time_limit_s=args.seconds, crossbatch=args.crossbatch))
    for row in result.history:
        print(f"step {row['step']:5d}  {row['elapsed_s']:7.1f} s  train {row['train_loss']:.4f}  "
              f"held-out {row['val_loss']:.4f}")
    print(f"{result.steps} steps in {result.elapsed_s:.0f} s: held-out {result.final_val_loss:.4f} nats/byte "
          f"vs unigram {unigram:.4f} ({unigram - result.final_val_loss:+.4f})")
    if args.out:
        info = {"train": {"steps": result.steps, "elapsed_s": result.elapsed_s, "threads": args.threads,
                          "crossbatch": args.crossbatch,
                          "history": result.history}, "val_loss": result.final_val_loss, "unigram_val_loss": unigram}
        print(f"wrote {save_checkpoint(model, args.out, info)}")
    return 0
