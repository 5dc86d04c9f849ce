"""Focused Transformer claims 2 and 4: dictionary lookup far beyond the local context, and FoT's one softmax
against the Memorizing Transformer's gated layer on the same data and budget.

Task (`longlab.memory.focused.tasks`): window-aligned definitions "abcd:xyz;" (L = 64-byte windows, 7 per
window), questions "?abcd:" answered by the value. Training: crossbatch pairs (previous window = one window of
definitions, current window = questions about them, loss on the value bytes only), d = 1 until the lookup is
learned, then d = 8 (the paper's schedule for this task). Evaluation: a dictionary of 16 L or 64 L tokens is read
into memory, the local context holds only the question (so the definition lies 16 L / 64 L tokens back), the
model generates the value: exact-match accuracy, with memory and without (the same model, memory 0). Then the
memory-size sweep: accuracy against the number of dictionary tokens in memory, up to 1M tokens, exact top-k.

The gated comparison (claim 4) trains the same architecture with the Memorizing layer instead (memory filled with
the previous window, detached, as that layer trains), same batches, steps and learning rate.

    .venv/bin/python data/focused/make_dictionary.py train --layer focused --save-at 1000  # 404 s CPU
    .venv/bin/python data/focused/make_dictionary.py train --layer memorizing
    .venv/bin/python data/focused/make_dictionary.py measure      # writes data/focused/dictionary.json

The d = 1 branch for an equal-budget r_d comparison: train --schedule 1 --resume /tmp/focused_dictionary_step1000.pt
--out data/checkpoints/focused_dictionary_plain.safetensors (measure then records it). The recorded run did the
first and the last command; the d = 1 branch and the memorizing run were stopped for CPU.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from common import FOCUSED_DROPS, claim_parser, fine_tune, load_base_weights, parse, warmup_cosine

from longlab.io import write_json
from longlab.memory.focused.crossbatch import DSchedule, crossbatch_loss
from longlab.memory.focused.tasks import IGNORE, dictionary_accuracy, lookup_batch, make_window_dictionary
from longlab.memory.lanes import memory_lanes
from longlab.models import TinyLM, TinyLMConfig, load_checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKPOINTS = {"focused": ROOT / "data" / "checkpoints" / "focused_dictionary.safetensors",
               "memorizing": ROOT / "data" / "checkpoints" / "memorizing_dictionary.safetensors"}
PLAIN = ROOT / "data" / "checkpoints" / "focused_dictionary_plain.safetensors"  # the d = 1 branch
RESULT = HERE / "dictionary.json"
BASE = ROOT / "data" / "checkpoints" / "tiny_memorizing.safetensors"
WINDOW = 64


def make_model(layer: str, memory_size: int = 4096, init: bool = True) -> TinyLM:
    """3 layers (dense, `layer`, dense), d_model 128, 4 heads, L = 64; init: start from the committed source-code
    checkpoint's weights (data/checkpoints/tiny_memorizing, a pretrained byte LM, as the paper fine-tunes
    pretrained models); a Focused layer takes the kNN layer's q/k/v/out weights, a Memorizing layer all of it."""
    model = TinyLM(TinyLMConfig(context=WINDOW, d_model=128, n_layers=3, n_heads=4,
                                attention=("dense", layer, "dense"), memory_size=memory_size, memory_topk=32))
    return load_base_weights(model, FOCUSED_DROPS if layer == "focused" else set()) if init else model


def step_loss(model, layer: str, batch):
    if layer == "focused":
        return crossbatch_loss(model, batch)
    # Memorizing: its native regime, the previous window written into a detached memory, then the current window
    with memory_lanes(model, sizes=[4096] * batch.prev.shape[0], train=True) as run:
        with torch.no_grad():
            run(batch.prev)
        return run(batch.curr, batch.curr_y)[1]


def train_variant(layer: str, steps: int, lanes: int, lr: float, schedule: str, seed: int, init: bool,
                  local_defs: int, save_at: int | None = None, resume: str | None = None,
                  out: str | None = None) -> None:
    torch.manual_seed(seed)
    model = make_model(layer, init=init).train()
    rng = random.Random(seed)
    d_of = DSchedule(schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    first_step, history = 0, []
    if resume:  # a branch point written by --save-at: weights, optimizer and data stream exactly as they were
        state = torch.load(resume, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        first_step, history = state["step"], state["history"]

    def save_branch_point(step, optimizer, history):
        if save_at is not None and step == save_at:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.getstate(),
                        "step": step, "history": history}, f"/tmp/{layer}_dictionary_step{step}.pt")

    def step_loss_at(step):
        d = d_of(step) if layer == "focused" else 1
        return step_loss(model, layer, lookup_batch(lanes, WINDOW, d, rng, local_defs=local_defs)), {"d": d}

    timing = fine_tune(model, step_loss_at, steps, lr, schedule=warmup_cosine(lr, 50, steps), label=layer,
                       metric="value_loss", optimizer=optimizer, first_step=first_step, history=history,
                       before_step=save_branch_point)
    info = {"layer": layer, "steps": steps, "lanes": lanes, "lr": lr, "local_defs": local_defs,
            "schedule": schedule if layer == "focused"
            else "memory of the previous window (d = 1)", "seed": seed, "window": WINDOW,
            **timing, "init": "data/checkpoints/tiny_memorizing.safetensors" if init else "random"}
    print(f"wrote {save_checkpoint(model, out or CHECKPOINTS[layer], info)}")


def accuracy(model, windows: int, questions: int, memory: bool, seed: int, oldest: bool = True) -> float:
    """Questions about the oldest window's keys (definitions windows * L tokens back), or any key."""
    book = make_window_dictionary(windows, WINDOW, seed=seed)
    per_window = len(book.keys) // windows
    rng = random.Random(seed + 1)
    pool = range(per_window) if oldest else range(len(book.keys))
    picks = [rng.choice(pool) for _ in range(questions)]
    return dictionary_accuracy(model, book, picks, windows * WINDOW if memory else None, read=False)


@torch.no_grad()
def lookup_distraction(model, d_values=(1, 2, 4, 8, 16), lanes: int = 16, batches: int = 2, seed: int = 0) -> dict:
    """r_d on the lookup task at the answer positions only (the queries that need the positive window): the
    same dictionaries for every d, only the negatives (other lanes' definition windows) change."""
    out = {}
    for d in d_values:
        rng, values = random.Random(seed), []
        for _ in range(batches):
            batch = lookup_batch(lanes, WINDOW, d, rng)
            _, reads = crossbatch_loss(model.eval(), batch, return_retrievals=True)
            log_mass = reads[1].extras["crossbatch_log_mass"]  # (b, H, N, d); shares can fall below float range
            answer_rows = (batch.curr_y != IGNORE)[:, None, :].expand(-1, log_mass.shape[1], -1)
            ratio = torch.softmax(log_mass.double(), dim=-1)[..., 0]
            values.append(float(ratio[answer_rows].mean()))
        out[str(d)] = sum(values) / len(values)
    return out


def measure(questions: int, sweep: list[int], seed: int) -> dict:
    result = {"claim": "FoT answers lookups 16 L and 64 L tokens back with >= 90% exact match; without memory "
                       "chance; accuracy vs dictionary tokens in memory up to 1M (exact top-k)",
              "command": "python data/focused/make_dictionary.py train --layer focused; ... --layer memorizing; "
                         "... measure", "window_L": WINDOW, "questions": questions, "seed": seed, "models": {}}
    for layer, path in CHECKPOINTS.items():
        if not path.exists():
            continue
        model, info = load_checkpoint(path)
        torch.manual_seed(seed)
        row = {"train": info, "accuracy": {}}
        for windows in (16, 64):
            for memory in (True, False):
                key = f"{windows}L_{'memory' if memory else 'no_memory'}"
                row["accuracy"][key] = accuracy(model, windows, questions, memory, seed + windows)
                print(f"{layer}: {key}: {row['accuracy'][key]:.3f}", flush=True)
        if layer == "focused":
            row["sweep"] = []
            for tokens in sweep:
                windows = max(1, tokens // WINDOW)
                start = time.perf_counter()
                acc = accuracy(model, windows, questions, True, seed + 7 * windows, oldest=False)
                row["sweep"].append({"tokens_in_memory": windows * WINDOW, "accuracy": acc,
                                     "seconds": time.perf_counter() - start})
                print(f"sweep {windows * WINDOW} tokens: {acc:.3f} ({row['sweep'][-1]['seconds']:.0f} s)", flush=True)
        if layer == "focused":
            row["lookup_r_d"] = lookup_distraction(model, seed=seed)
            print(f"lookup r_d (d = 8 phase): {row['lookup_r_d']}", flush=True)
        result["models"][layer] = row
        write_json(RESULT, result)
    if PLAIN.exists():
        model, info = load_checkpoint(PLAIN)
        result["models"]["focused_plain"] = {"train": info, "lookup_r_d": lookup_distraction(model, seed=seed),
                                             "accuracy": {f"{w}L_memory": accuracy(model, w, questions, True,
                                                                                   seed + w) for w in (16, 64)}}
        print(f"plain branch: {result['models']['focused_plain']}", flush=True)
        write_json(RESULT, result)
    print(f"wrote {RESULT}")
    return result


def main() -> None:
    parser = claim_parser(__doc__)
    parser.add_argument("--layer", choices=sorted(CHECKPOINTS), default="focused")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", default="1:1000,8", help="crossbatch d schedule (focused)")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--sweep", type=int, nargs="+", default=[1024, 16384, 262144, 1048576])
    parser.add_argument("--from-scratch", action="store_true", help="random init instead of the source checkpoint")
    parser.add_argument("--save-at", type=int, default=None, help="also save the model as it is at this step")
    parser.add_argument("--resume", default=None, help="continue from a --save-at branch point (/tmp/*.pt)")
    parser.add_argument("--out", default=None, help="checkpoint path (default data/checkpoints/<layer>_dictionary)")
    parser.add_argument("--local-defs", type=int, default=2, help="definitions at the start of each current window")
    args = parse(parser)
    if args.stage == "train":
        train_variant(args.layer, args.steps, args.lanes, args.lr, args.schedule, args.seed, not args.from_scratch,
                      args.local_defs, args.save_at, args.resume, args.out)
    else:
        measure(args.questions, args.sweep, args.seed)


if __name__ == "__main__":
    main()
