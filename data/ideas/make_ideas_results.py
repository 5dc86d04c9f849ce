"""Regenerate the measured results of notebook 08 (related work and the seed's ideas) into data/ideas/*.json.

    .venv/bin/python data/ideas/make_ideas_results.py                  # all parts, ~5 min on one thread
    .venv/bin/python data/ideas/make_ideas_results.py extrapolation    # one part: extrapolation | paged | patterns
    .venv/bin/python data/ideas/make_ideas_results.py quality --kinds dense linear   # quality, ~5-10 min a kind
    .venv/bin/python data/ideas/make_ideas_results.py quality --save-models /tmp/ideas_models  # keep the weights
    OMP_NUM_THREADS=1 .venv/bin/longlab bench linear --out data/ideas --repeats 5   # speed (linear_cpu.csv)

- extrapolation.json: next-token loss against position on 8x the trained context (2048 tokens, trained 256) of
  the committed checkpoint (data/checkpoints/tiny_memorizing; its kNN layer with an empty memory is a dense
  layer), under RoPE, ReRoPE (w = 128), leaky ReRoPE (w = 128, s = 16) and a 256-token sliding window, on the
  first two 2049-byte windows of every held-out source file;
- paged.json: Quest-style page selection on 16k and 128k cached tokens (pages of 16): recall of the true
  top-32 keys, relative output error, bytes and seconds per decoded token against a dense cache, for the
  checkpoint's last-layer keys (pre-RoPE, read in 256-token windows over the held-out files) and for random
  Gaussian keys; 16 decoding queries taken right after the cache;
- quality_<kind>.json: the same TinyLM (2 layers, d 128, context 256) trained 300 steps (batch 8, seed 0) on the
  source corpus with each attention kind (dense, sliding 64, dilated at float-like m = 2's FLOPs, float-like m = 2,
  pooled p = 16 + window 64, linear); held-out loss, seconds (shared machine) and passkey by depth
  (`longlab.analysis.passkey_depth`: 251-byte instruction-free prompts, key line at depth 0 .. 1, i.e. 251 .. ~99
  tokens before the question's end, the same 32 keys at each depth: teacher-forced loss on the key's digits in
  nats/digit over all bytes and among the ten digits, the same for the key's repeat inside the key line, and
  greedy exact match); training is bit-reproducible at one thread, so the command reproduces the records;
- patterns.json: float-like (m = 0..3) against the LongNet schedule of nearest FLOPs at N = 2048, 4 heads:
  pairs, keys vs distance, dependency path length (N = 512), block density (64-blocks).
Times are measured on a shared 2-core machine (other jobs running): ratios within one run only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from longlab.analysis.extrapolation import binned, document_windows, loss_by_position, variant
from longlab.analysis.paged_eval import capture_qkv, selection_rows
from longlab.analysis.passkey_depth import passkey_by_depth
from longlab.analysis.pattern_compare import compare, longnet_at_equal_pairs
from longlab.attention.floatlike import FloatLike
from longlab.attention.patterns import Dense, Dilated
from longlab.models import TinyLM, TinyLMConfig, TrainConfig, load_checkpoint, save_checkpoint, train
from longlab.tasks import held_out_long_files, split_source_documents, unigram_loss

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE.parent / "checkpoints" / "tiny_memorizing.safetensors"
SCHEMES = {"rope": {}, "rerope": {"window": 128}, "leaky_rerope": {"window": 128, "leak": 16.0},
           "sliding": {"window": 256}}


def extrapolation(length: int = 2048, per_doc: int = 2, bin_width: int = 64) -> dict:
    model, _ = load_checkpoint(CHECKPOINT)
    seqs = document_windows(held_out_long_files(), length + 1, per_doc)
    curves = {}
    for scheme, kw in SCHEMES.items():
        loss = loss_by_position(variant(model, scheme, length, **kw), seqs)
        starts, means = binned(loss, bin_width)
        by_context = binned(loss, model.config.context)[1]
        curves[scheme] = {"settings": kw, "bin_start": starts, "loss": means, "loss_per_trained_context": by_context}
    return {"trained_context": model.config.context, "length": length, "sequences": int(seqs.shape[0]),
            "bin_width": bin_width, "curves": curves}


def paged(sizes=(16384, 131072), page_size: int = 16, kept=(1, 4, 16, 64, 256, 1024), queries: int = 16) -> dict:
    model, _ = load_checkpoint(CHECKPOINT)
    tokens = torch.cat([d.tokens() for d in held_out_long_files()])
    need = max(sizes) + 256
    q, k, v = capture_qkv(model, tokens[:need], layer=model.config.n_layers - 1)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        qs = q[:, n:n + 256:256 // queries].transpose(0, 1)  # (Q, H, D): queries right after the cache
        rows += selection_rows(k[:, :n], v[:, :n], qs, page_size, list(kept), label="checkpoint")
        rows += selection_rows(torch.randn(k[:, :n].shape, generator=gen), v[:, :n], qs, page_size, list(kept),
                               label="random")
    return {"page_size": page_size, "queries": queries, "layer": model.config.n_layers - 1, "rows": rows}


QUALITY_KINDS = ("dense", "sliding", "dilated", "floatlike", "pooled", "linear")


def quality_config(kind: str) -> TinyLMConfig:
    """The same TinyLM (2 layers, d 128, 4 heads, context 256) with one attention kind; dilated takes the LongNet
    schedule whose pairs are nearest to float-like m = 2's at N = 256 (equal FLOPs)."""
    base = dict(context=256, d_model=128, n_layers=2, n_heads=4, window=64, pool_block=16, float_mantissa=2)
    if kind == "dilated":
        equal = longnet_at_equal_pairs(256, FloatLike(2, causal=True).pairs(4, 256), 4)
        base.update(segment_lengths=equal.segment_lengths, dilation_rates=equal.dilation_rates)
    return TinyLMConfig(attention=kind, **base)


PASSKEY = dict(length=251, per_depth=32, seed=0)  # 251 bytes + a key of <= 5 digits fit the 256-token context


def quality(kinds=QUALITY_KINDS, steps: int = 300, seed: int = 0, save_dir: Path | None = None) -> dict:
    """Same budget (steps, batch, lr, seed, data order) per attention kind; held-out loss, seconds, history, and
    passkey by depth (measured after training). save_dir: also write each model as <save_dir>/quality_<kind>."""
    train_docs, val_docs = split_source_documents()
    train_tokens, val_tokens = [d.tokens() for d in train_docs], [d.tokens() for d in val_docs]
    runs = {}
    for kind in kinds:
        torch.manual_seed(seed)
        config = quality_config(kind)
        model = TinyLM(config)
        pairs = {"dense": Dense(True).pairs(4, 256), "floatlike": FloatLike(2, True).pairs(4, 256),
                 "dilated": Dilated(config.segment_lengths, config.dilation_rates, causal=True).pairs(4, 256)}
        result = train(model, train_tokens, val_tokens, TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup=20,
                                                                      eval_every=100, eval_windows=256, seed=seed))
        passkey = passkey_by_depth(model, **PASSKEY)
        runs[kind] = {"model": repr(model), "pairs_per_layer": pairs.get(kind), "val_loss": result.final_val_loss,
                      "elapsed_s": round(result.elapsed_s, 1), "history": result.history, "passkey_by_depth": passkey}
        if save_dir is not None:
            save_checkpoint(model, Path(save_dir) / f"quality_{kind}.safetensors", {"val_loss": result.final_val_loss})
    return {"steps": steps, "batch_size": 8, "eval_windows": 256, "passkey": PASSKEY, "runs": runs,
            "unigram_val_loss": unigram_loss(train_docs, val_docs)}


def patterns(n: int = 2048, path_n: int = 512) -> dict:
    return {"comparisons": [compare(n, m, heads=4, path_n=path_n) for m in range(4)]}


PARTS = {"extrapolation": extrapolation, "paged": paged, "patterns": patterns, "quality": quality}


def strict_json(value):
    """inf / nan as the strings "inf" / "nan" (JSON has no such numbers; float("inf") reads them back)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", help=f"any of {list(PARTS)} (default: all)")
    parser.add_argument("--kinds", nargs="+", default=list(QUALITY_KINDS), help="quality: attention kinds to train")
    parser.add_argument("--save-models", type=Path, default=None, help="quality: folder to write the trained models")
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    torch.set_num_threads(1)
    for part in args.parts or list(PARTS):
        start = time.perf_counter()
        if part == "quality":  # one file per kind, so each run stays a few minutes and can be redone alone
            for kind in args.kinds:
                result = quality((kind,), save_dir=args.save_models)
                result.update(command=f"python data/ideas/make_ideas_results.py quality --kinds {kind}",
                              torch=torch.__version__)
                path = HERE / f"quality_{kind}.json"
                path.write_text(json.dumps(strict_json(result), indent=1) + "\n")
                print(f"wrote {path}")
            continue
        result = PARTS[part]()
        result.update(command=f"python data/ideas/make_ideas_results.py {part}", torch=torch.__version__,
                      elapsed_s=round(time.perf_counter() - start, 1))
        path = HERE / f"{part}.json"
        path.write_text(json.dumps(strict_json(result), indent=1) + "\n")
        print(f"wrote {path} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
