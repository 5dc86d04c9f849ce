"""Focused Transformer claim 3, passkey retrieval: accuracy against prompt length from L to 128 L (16,384 tokens
with L = 128), with memory (the prompt read into memory window by window, only the question kept local) and
without (the model sees its last window only), and the attention mass on the pass-key line per memory-layer head.

The model: 3 layers (dense, focused, dense), d_model 128, 4 heads, L = 128, started from the committed source-code
checkpoint (data/checkpoints/tiny_memorizing, a pretrained byte LM) and fine-tuned with crossbatch pairs
(`longlab.memory.focused.tasks.passkey_batch`: previous window = filler + key line, current window = filler +
question + answer, loss on the answer digits), d = 1 (all documents share one template, so another lane's key
line is no distractor that content could reject).

    .venv/bin/python data/focused/make_passkey.py train     # ~10 min on one shared thread
    .venv/bin/python data/focused/make_passkey.py measure   # writes data/focused/passkey.json
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from common import claim_parser, fine_tune, load_base_weights, parse, warmup_cosine

from longlab.io import write_json
from longlab.memory.focused.crossbatch import crossbatch_loss
from longlab.memory.focused.tasks import passkey_batch, passkey_trial
from longlab.models import TinyLM, TinyLMConfig, load_checkpoint, save_checkpoint
from longlab.tasks import make_passkeys

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "focused_passkey.safetensors"
RESULT = HERE / "passkey.json"
WINDOW = 128


def make_model() -> TinyLM:
    return load_base_weights(TinyLM(TinyLMConfig(context=WINDOW, d_model=128, n_layers=3, n_heads=4,
                                                 attention=("dense", "focused", "dense"), memory_size=16384,
                                                 memory_topk=32)))


def train(steps: int, lanes: int, lr: float, seed: int, local_share: float) -> None:
    torch.manual_seed(seed)
    model = make_model().train()
    rng = random.Random(seed)
    timing = fine_tune(model, lambda step: (crossbatch_loss(model, passkey_batch(lanes, WINDOW, rng,
                                                                                 local_share=local_share)), {}),
                       steps, lr, schedule=warmup_cosine(lr, 30, steps), label="passkey", metric="digit_loss")
    info = {"steps": steps, "lanes": lanes, "lr": lr, "crossbatch_d": 1, "local_share": local_share, "seed": seed,
            "window": WINDOW, **timing, "init": "data/checkpoints/tiny_memorizing.safetensors"}
    print(f"wrote {save_checkpoint(model, CHECKPOINT, info)}")


def measure(multiples: list[int], count: int, seed: int) -> dict:
    model, info = load_checkpoint(CHECKPOINT)
    curves = {"focused, memory": [], "focused, no memory (last window)": []}
    masses = {}
    for m in multiples:
        length = m * WINDOW
        examples = make_passkeys(length, count, seed=seed + m)
        for memory, name in ((True, "focused, memory"), (False, "focused, no memory (last window)")):
            start = time.perf_counter()
            results = [passkey_trial(model, e, memory) for e in examples]
            curves[name].append({"prompt_tokens": len(examples[0].prompt), "multiple_of_L": m,
                                 "accuracy": sum(ok for ok, _ in results) / len(results),
                                 "seconds": time.perf_counter() - start})
            if memory:
                got = [mass for _, mass in results if mass is not None]
                masses[str(m)] = torch.stack(got).mean(0).tolist() if got else None
            print(f"{name} at {m} L: {curves[name][-1]['accuracy']:.2f}", flush=True)
    result = {"claim": "passkey accuracy vs prompt length, L to >= 64 L (>= 16k tokens), with memory and without; "
                       "aim >= 80% at 64 L", "command": "python data/focused/make_passkey.py train; ... measure",
              "window_L": WINDOW, "examples_per_length": count, "seed": seed, "curves": curves,
              "key_line_mass_per_head": masses, "train": info}
    write_json(RESULT, result)
    print(f"wrote {RESULT}")
    return result


def main() -> None:
    parser = claim_parser(__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--local-share", type=float, default=0.3,
                        help="share of current windows that repeat the key line before the question")
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--count", type=int, default=10)
    args = parse(parser)
    if args.stage == "train":
        train(args.steps, args.lanes, args.lr, args.seed, args.local_share)
    else:
        measure(args.multiples, args.count, args.seed)


if __name__ == "__main__":
    main()
