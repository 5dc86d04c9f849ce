"""`longlab train-retro`: RETRO-fit the committed TinyLM (frozen) with a chunk database over the standard library,
then measure the claims: loss with vs without retrieval, loss vs k, gain vs neighbour overlap, leakage.

Needs the database (`longlab retro build`, ~1 min). Windows come from `longlab.tasks.split_source_documents`:
training windows from the training files, evaluation windows from the held-out files (their first
--eval-bytes bytes). Evaluation neighbours never come from the window's own file, except in the leakage run.
Training departs from RETRO's rule on purpose: for a share --train-own-file of the training chunks the
neighbours are searched with the own file allowed. With the own file excluded, a 16-byte chunk's neighbours
(keyed by a bag of bytes) rarely contain its continuation, so the block learns to ignore them (a model trained
that way did no better with the exact continuation as its neighbour than with a retrieved one: 2.3291 vs
2.3292 nats/byte on the reading tokens, frozen 2.3918); training windows start on the
chunk grid, so an own-file search finds the chunk itself, whose continuation is the text to predict: that
teaches the block to copy when a neighbour matches. Evaluation is unchanged, so held-out numbers stay honest.
Writes the retrieval-block checkpoint, the claims JSON and the evaluation windows with their neighbours
(so `tests/test_retro_claim.py` re-checks the numbers without the 1 GB database).

    longlab train-retro                      # the recorded run: ~20 min on one thread of a busy 2-core machine
    longlab train-retro --train-windows 32 --steps 20 --eval-bytes 512 --out /tmp/retro   # a smoke run
"""
from __future__ import annotations

NAME = "train-retro"
HELP = "RETRO-fit the frozen TinyLM (CCA + neighbour encoder) and record loss with/without retrieval, k sweep"


def register(parser) -> None:
    parser.add_argument("--db", default=None, help="database folder (default ./data/retro/db_m16)")
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--context", type=int, default=256, help="window length N (multiple of --chunk)")
    parser.add_argument("--k", type=int, default=2, help="neighbours per chunk in training")
    parser.add_argument("--train-own-file", type=float, default=0.4,
                        help="share of TRAINING chunks whose neighbours may come from their own file (evaluation "
                             "always excludes it); 0 = RETRO's rule")
    parser.add_argument("--train-windows", type=int, default=320, help="training windows searched once")
    parser.add_argument("--eval-bytes", type=int, default=1024, help="evaluated bytes per held-out file")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seconds", type=float, default=1500.0, help="training time limit (a safety stop)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--encoder-layers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/retro", help="folder for retro_tiny.safetensors, claims, windows")


def _windows(db, encoder, docs, picks, args, k, allow_same_doc, cache):
    from ..memory.retro.data import RetroWindows, retrieve_windows

    if cache.exists():
        try:
            return RetroWindows.load(cache)
        except ValueError:
            pass
    windows = retrieve_windows(db, encoder, docs, picks, args.context, k, allow_same_doc=allow_same_doc)
    windows.save(cache)
    return windows


def main(args) -> int:
    import time
    from pathlib import Path

    import torch

    from ..io import write_json
    from ..memory.retro.data import exact_continuation_windows, window_starts
    from ..memory.retro.db import RetroDatabase
    from ..memory.retro.encoder import DEFAULT_CHECKPOINT, ChunkEncoder
    from ..memory.retro.model import RetroConfig, RetroFitted
    from ..memory.retro.train import binned_gain, chunk_gains, per_token_loss, save_retro, train_retro
    from ..models.train import load_checkpoint
    from ..tasks.source_corpus import split_source_documents
    from .retro import default_folder

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    folder = Path(args.db or default_folder(args.chunk))
    out = Path(args.out)
    encoder = ChunkEncoder.from_checkpoint()
    db = RetroDatabase.load(folder, identity=encoder.identity, progress=True)
    print(db)
    train_docs, val_docs = split_source_documents()
    kmax = max(4, args.k)
    tag = f"N{args.context}_s{args.seed}"
    # training windows start on the database's chunk grid, like the evaluation windows: a chunk searched with
    # its own file allowed then finds itself, and its neighbour's continuation is the text to predict
    train_picks = window_starts([len(d.tokens()) for d in train_docs], args.train_windows, args.context, args.seed,
                                align=args.chunk)
    eval_picks = window_starts([len(d.tokens()) for d in val_docs], None, args.context, max_bytes=args.eval_bytes)
    train_w = _windows(db, encoder, train_docs, train_picks, args, args.k, False,
                       folder / f"train_{args.train_windows}_{tag}_a{args.chunk}.safetensors")
    if args.train_own_file > 0:
        own_w = _windows(db, encoder, train_docs, train_picks, args, args.k, True,
                         folder / f"train_{args.train_windows}_{tag}_a{args.chunk}_ownfile.safetensors")
        train_w = train_w.mixed(own_w, args.train_own_file, args.seed)
    eval_w = _windows(db, encoder, val_docs, eval_picks, args, kmax, False,
                      folder / f"eval_{args.eval_bytes}_{tag}.safetensors")
    leak_w = _windows(db, encoder, val_docs, eval_picks, args, args.k, True,
                      folder / f"leak_{args.eval_bytes}_{tag}.safetensors")
    retrieval_s = time.perf_counter() - start
    decoder, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    torch.manual_seed(args.seed)
    model = RetroFitted(decoder, RetroConfig(chunk_size=args.chunk, neighbours=args.k,
                                             encoder_layers=args.encoder_layers))
    print(model)
    trained = train_retro(model, train_w, args.steps, args.batch, args.lr, seed=args.seed, time_limit_s=args.seconds)
    losses = {k: per_token_loss(model, eval_w, k) for k in sorted({0, 1, 2, 4, args.k})}
    leak = per_token_loss(model, leak_w, args.k)
    shuffled = per_token_loss(model, eval_w.shuffled(args.seed), args.k)
    exact = per_token_loss(model, exact_continuation_windows(eval_w, args.chunk), 1)
    readers = slice(args.chunk - 1, None)  # the tokens that read a neighbour
    gains = chunk_gains(eval_w, losses[0], losses[args.k], args.k, args.chunk)
    mean = {str(k): v.mean().item() for k, v in losses.items()}
    claims = {
        "command": "longlab train-retro " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                      if k in ("train_windows", "train_own_file", "steps",
                                                               "seconds", "seed")),
        "database": {"entries": len(db), "documents": len(db.documents), "chunk_size": db.chunk_size,
                     "document_names": db.documents,
                     "encoder": db.identity},
        "model": repr(model), "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "train": {**trained, "windows": len(train_w), "k": args.k, "batch": args.batch, "lr": args.lr,
                  "threads": args.threads, "seed": args.seed, "own_file_fraction": args.train_own_file,
                  "own_file_neighbours": train_w.own_file_share(),
                  "rule": "training chunks: own-file neighbours allowed for a seeded share own_file_fraction "
                  "(RetroWindows.mixed), excluded for the rest; evaluation always excludes the own file"},
        "eval": {"files": [d.name for d in val_docs], "bytes_per_file": args.eval_bytes, "windows": len(eval_w),
                 "tokens": losses[0].numel(), "rule": "held-out files of split_source_documents, consecutive "
                 "windows over their first eval_bytes bytes; neighbours from the window's own file excluded"},
        "loss_without_retrieval": mean["0"], "loss_with_retrieval": mean[str(args.k)],
        "loss_by_k": mean,
        "control_shuffled_neighbours": {
            "loss": shuffled.mean().item(), "rule": "each chunk reads another (window, chunk)'s neighbours "
            "(RetroWindows.shuffled(seed)); the gain that survives this is the added block, not retrieval",
            "retrieval_gain": shuffled.mean().item() - mean[str(args.k)]},
        "leakage": {"loss_same_doc_allowed": leak.mean().item(), "loss_same_doc_excluded": mean[str(args.k)],
                    "neighbours_from_own_file": leak_w.own_file_share()},
        "copy_check": {
            "rule": "tokens that read a neighbour (positions >= m - 1) of the held-out windows; k = 1 neighbour: "
            "the window's own next bytes [C_u, C_u+1] (exact_continuation_windows), the retrieved one, or none",
            "loss_frozen": losses[0][:, readers].mean().item(),
            "loss_retrieved_k1": losses[1][:, readers].mean().item(),
            "loss_exact_continuation": exact[:, readers].mean().item()},
        "gain_vs_overlap": {"k": args.k, "bins": binned_gain(gains["gain"], gains["overlap"]), **gains},
        "retrieval_s": round(retrieval_s, 1), "total_s": round(time.perf_counter() - start, 1),
    }
    save_retro(model, out / "retro_tiny.safetensors", {"claims": "retro_claims.json", "command": claims["command"]},
               decoder_path=DEFAULT_CHECKPOINT)
    eval_w.save(out / "eval_windows.safetensors")
    leak_w.save(out / "leak_windows.safetensors")
    write_json(out / "retro_claims.json", claims)
    print(f"held-out loss: frozen {mean['0']:.4f}, with retrieval (k={args.k}) {mean[str(args.k)]:.4f} nats/byte; "
          f"by k {', '.join(f'{k}: {v:.4f}' for k, v in mean.items())}; same-doc allowed {leak.mean().item():.4f}; "
          f"shuffled neighbours {shuffled.mean().item():.4f}; readers with the exact continuation as neighbour "
          f"{claims['copy_check']['loss_exact_continuation']:.4f} vs frozen {claims['copy_check']['loss_frozen']:.4f}")
    for row in claims["gain_vs_overlap"]["bins"]:
        print(f"overlap {row['overlap']:>6} bytes: {row['chunks']:4d} chunks, mean gain {row['mean_gain']:+.4f}, "
              f"share of gain {row['share_of_gain']:.2f}")
    return 0
