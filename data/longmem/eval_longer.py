"""Loss vs memory of the committed SideNet on longer reads: every held-out file's first --eval-bytes bytes (32,000
= notebook 03's Memorizing sweep, so the two compare byte for byte), memory 0 / 1k / 4k / 16k, next to the frozen
backbone. Writes data/longmem/eval_<bytes>.json.

    .venv/bin/python data/longmem/eval_longer.py            # ~15 min on one thread of a shared machine
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from longlab.io import write_json
from longlab.memory.longmem.evaluate import longmem_sweep
from longlab.memory.longmem.model import load_longmem
from longlab.tasks import held_out_long_files

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(HERE.parent / "checkpoints" / "longmem_sidenet.safetensors"))
    parser.add_argument("--eval-bytes", type=int, default=32000)
    parser.add_argument("--sizes", default="0,1024,4096,16384")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, _ = load_longmem(args.checkpoint)
    sizes = [int(s) for s in args.sizes.split(",")]
    sweep = longmem_sweep(model, held_out_long_files(), sizes, max_tokens=args.eval_bytes)
    given = sys.argv[1:] if argv is None else list(argv)
    record = {"command": " ".join(["python data/longmem/eval_longer.py", *given]), "model": repr(model),
              "rule": "held-out files of split_source_documents in path order, first eval_bytes bytes each, memory "
                      "empty at each file's start; windows as memory_eval.loss_vs_memory",
              "eval_bytes": args.eval_bytes, **sweep, "eval_s": round(time.perf_counter() - start, 1)}
    out = HERE / f"eval_{args.eval_bytes}.json"
    write_json(out, record)
    print(f"backbone {sweep['mean_backbone']:.4f}; " + ", ".join(
        f"{s}: {v:.4f}" for s, v in zip(sizes, sweep["mean_loss"])) + f"; wrote {out}")


if __name__ == "__main__":
    main()
