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

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from longlab.io import atomic_write
from longlab.memory.focused.crossbatch import crossbatch_loss
from longlab.memory.focused.tasks import passkey_batch, passkey_trial
from longlab.models import TinyLM, TinyLMConfig, load_checkpoint, save_checkpoint
from longlab.tasks import make_passkeys

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BASE = ROOT / "data" / "checkpoints" / "tiny_memorizing.safetensors"
CHECKPOINT = ROOT / "data" / "checkpoints" / "focused_passkey.safetensors"
RESULT = HERE / "passkey.json"
WINDOW = 128


def make_model() -> TinyLM:
    model = TinyLM(TinyLMConfig(context=WINDOW, d_model=128, n_layers=3, n_heads=4,
                                attention=("dense", "focused", "dense"), memory_size=16384, memory_topk=32))
    base, _ = load_checkpoint(BASE)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if missing or set(unexpected) != {"blocks.1.attn.gate_bias", "blocks.1.attn.log_tau"}:
        raise RuntimeError(f"weight transfer mismatch: {missing} {unexpected}")
    return model


def train(steps: int, lanes: int, lr: float, seed: int, local_share: float) -> None:
    torch.manual_seed(seed)
    model = make_model().train()
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    start, cpu_start, history, recent = time.perf_counter(), time.process_time(), [], []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        loss = crossbatch_loss(model, passkey_batch(lanes, WINDOW, rng, local_share=local_share))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [loss.item()])[-25:]
        if (step + 1) % 50 == 0 or step == steps - 1:
            history.append({"step": step + 1, "digit_loss": sum(recent) / len(recent),
                            "elapsed_s": time.perf_counter() - start})
            print(f"step {step + 1}: digit loss {history[-1]['digit_loss']:.4f} ({history[-1]['elapsed_s']:.0f} s)",
                  flush=True)
    info = {"steps": steps, "lanes": lanes, "lr": lr, "crossbatch_d": 1, "local_share": local_share, "seed": seed,
            "window": WINDOW,
            "threads": torch.get_num_threads(), "elapsed_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu_start, "history": history,
            "init": "data/checkpoints/tiny_memorizing.safetensors"}
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
    atomic_write(RESULT, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print(f"wrote {RESULT}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "measure"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--local-share", type=float, default=0.3,
                        help="share of current windows that repeat the key line before the question")
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "train":
        train(args.steps, args.lanes, args.lr, args.seed, args.local_share)
    else:
        measure(args.multiples, args.count, args.seed)


if __name__ == "__main__":
    main()
