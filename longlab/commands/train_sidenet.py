"""`longlab train-sidenet`: train LongMem's SideNet beside a frozen TinyLM backbone and record the claims.

The backbone (default: the committed Memorizing checkpoint, run without memory: every layer dense) stays frozen;
the SideNet (ceil(L / r) layers copied from the backbone, cross-network residuals) learns on the standard library's
long source files read as document streams, with a per-lane chunked memory of --memory tokens written from
backbone layer m (by default the backbone's Memorizing layer: its keys were trained to be searched without
positions) and read by the SideNet's last layer (layer 0 would query with the token embedding alone). Then, on
the held-out files (`longlab.tasks.held_out_long_files`, first --eval-bytes bytes, memory empty at each file's
start): the frozen backbone alone vs SideNet + memory of 0, 1k, 4k, 16k tokens; every
backbone tensor compared with the checkpoint file; and staleness: the drift of cached keys while the Memorizing
checkpoint keeps training, against the frozen backbone's (probed during SideNet training).
Writes the SideNet checkpoint (backbone referenced by path + sha256, not copied) and the claims JSON, which
`tests/test_longmem_claims.py` re-checks on a small slice.

    longlab train-sidenet                                      # the recorded run (~15 min on one thread)
    longlab train-sidenet --steps 5 --eval-files 1 --eval-bytes 2048 --staleness-steps 2 \\
        --out /tmp/sidenet.safetensors --claims /tmp/claims.json   # a smoke run
"""
from __future__ import annotations

NAME = "train-sidenet"
HELP = "train LongMem's SideNet beside a frozen TinyLM backbone; record loss vs memory, staleness, bit-identity"

DEFAULT_BACKBONE = "data/checkpoints/tiny_memorizing.safetensors"


def register(parser) -> None:
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="TinyLM checkpoint (.safetensors + .json)")
    parser.add_argument("--memory", type=int, default=16384, help="memory tokens per lane while training")
    parser.add_argument("--reduction", type=int, default=2, help="r: backbone layers per SideNet layer")
    parser.add_argument("--memory-layer", type=int, default=None,
                        help="SideNet layer with memory attention (default: the last; layer 0 reads the token "
                             "embedding, so its queries see only the current byte)")
    parser.add_argument("--source-layer", type=int, default=None,
                        help="backbone layer whose keys/values are cached (default: the backbone's Memorizing layer, "
                             "whose keys were trained to be searched without positions; else the layer the memory "
                             "SideNet layer copies)")
    parser.add_argument("--chunk", type=int, default=4, help="csz, tokens per memory chunk")
    parser.add_argument("--topk", type=int, default=32, help="K, retrieved tokens per query (K / csz chunks)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seconds", type=float, default=600.0, help="training time limit (a safety stop)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-windows", type=int, default=16, help="held-out windows per evaluation in training")
    parser.add_argument("--eval-bytes", type=int, default=16384, help="bytes read from each held-out file")
    parser.add_argument("--eval-files", type=int, default=None, help="first N held-out files (default: all)")
    parser.add_argument("--sizes", default="0,1024,4096,16384", help="memory sizes evaluated (tokens)")
    parser.add_argument("--staleness-steps", type=int, default=60, help="Memorizing continued-training steps")
    parser.add_argument("--staleness-every", type=int, default=10)
    parser.add_argument("--probe-windows", type=int, default=4, help="windows of probe text for key drift")
    parser.add_argument("--recheck-files", type=int, default=2, help="CI-sized slice recorded for the test")
    parser.add_argument("--recheck-bytes", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/checkpoints/longmem_sidenet.safetensors")
    parser.add_argument("--claims", default="data/longmem/claims.json")


def main(args) -> int:
    import time
    from pathlib import Path

    import torch

    from ..io import write_json
    from ..memory.longmem.evaluate import backbone_unchanged, longmem_sweep
    from ..memory.longmem.model import LongMem, LongMemConfig, file_sha256, save_longmem
    from ..memory.longmem.staleness import (
        drift_probe,
        longmem_source_keys,
        probe_windows,
        tinylm_layer_keys,
    )
    from ..memory.longmem.train import train_streams
    from ..models.train import TrainConfig, load_checkpoint
    from ..tasks.source_corpus import held_out_long_files, split_source_documents

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    train_docs, val_docs = split_source_documents()
    train_tokens, val_tokens = [d.tokens() for d in train_docs], [d.tokens() for d in val_docs]
    backbone, _ = load_checkpoint(args.backbone)
    if args.source_layer is None and backbone.memory_layers():
        args.source_layer = backbone.memory_layers()[0].layer_index
    torch.manual_seed(args.seed)
    model = LongMem(backbone, LongMemConfig(reduction=args.reduction, memory_layer=args.memory_layer,
                                            source_layer=args.source_layer, chunk_size=args.chunk, topk=args.topk,
                                            memory_size=args.memory))
    print(model)
    windows = probe_windows(val_tokens[0], model.config.context, args.probe_windows)
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=20, eval_every=args.eval_every,
                            eval_windows=args.eval_windows, seed=args.seed, time_limit_s=args.seconds)
    trained = train_streams(model, model.trainable_parameters(), train_tokens, val_tokens, train_cfg,
                            probe=drift_probe(longmem_source_keys, windows), desc="train SideNet")
    identity = backbone_unchanged(model, args.backbone)
    print(f"backbone after SideNet training: {identity}")

    held_out = held_out_long_files(args.eval_files)
    sweep = longmem_sweep(model, held_out, sizes, max_tokens=args.eval_bytes)
    recheck_docs = held_out[: args.recheck_files]
    recheck = longmem_sweep(model, recheck_docs, sizes[:-1] if len(sizes) > 2 else sizes,
                            max_tokens=args.recheck_bytes, progress=False)

    memorizing, _ = load_checkpoint(args.backbone)  # the same checkpoint, now every weight trainable
    layer = memorizing.memory_layers()[0].layer_index if memorizing.memory_layers() else model.config.source_layer
    stale_cfg = TrainConfig(steps=args.staleness_steps, batch_size=args.batch, lr=args.lr, warmup=1,
                            eval_every=args.staleness_every, eval_windows=0, seed=args.seed)
    stale = train_streams(memorizing, [p for p in memorizing.parameters()], train_tokens, val_tokens, stale_cfg,
                          probe=drift_probe(lambda m, w: tinylm_layer_keys(m, layer, w), windows),
                          desc="continue Memorizing")
    given = {k: v for k, v in vars(args).items() if k not in ("command", "out", "claims")}
    claims = {
        "command": "longlab train-sidenet " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items()
                                                       if v is not None),
        "model": repr(model), "trainable_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "backbone": {"path": args.backbone, "sha256": file_sha256(args.backbone), **identity},
        "config": model.config.to_dict(), "spans": model.side.spans, "init_from": model.side.init_from,
        "train": {"steps": trained.steps, "elapsed_s": round(trained.elapsed_s, 1), "batch": args.batch,
                  "lr": args.lr, "threads": args.threads, "seed": args.seed, "memory": args.memory,
                  "history": trained.history},
        "gate": model.side.memory.gate().tolist(),
        "eval": {"rule": "held-out files of split_source_documents in path order, first eval_bytes bytes each, "
                 "memory empty at each file's start; windows as memory_eval.loss_vs_memory",
                 "eval_bytes": args.eval_bytes, **sweep},
        "recheck": {"files": [d.name for d in recheck_docs], "bytes": args.recheck_bytes, **recheck},
        "staleness": {"probe": f"first {args.probe_windows} windows of {val_docs[0].name}",
                      "memorizing": {"layer": layer, "lr": args.lr, "history": stale.history},
                      "frozen_backbone": {"layer": model.config.source_layer,
                                          "history": [{k: r[k] for k in ("step", "drift", "drift_max", "changed")}
                                                      for r in trained.history]}},
        "total_s": round(time.perf_counter() - start, 1),
    }
    save_longmem(model, args.out, args.backbone, {"claims": args.claims, "command": claims["command"],
                                                  "train_history": trained.history})
    claims_path = Path(args.claims)
    claims_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(claims_path, claims)
    means = ", ".join(f"{s}: {v:.4f}" for s, v in zip(sizes, sweep["mean_loss"]))
    print(f"held-out mean loss: frozen backbone {sweep['mean_backbone']:.4f}; SideNet + memory {{{means}}} nats/byte")
    print(f"key drift after {stale.steps} Memorizing steps: {stale.history[-1]['drift']:.3g}; frozen backbone after "
          f"{trained.steps} SideNet steps: {trained.history[-1]['drift']:.3g}; wrote {args.out}, {args.claims}")
    return 0
