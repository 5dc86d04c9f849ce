"""Focused Transformer claims 2 and 4: dictionary lookup far beyond the local context, and FoT's one softmax against
the Memorizing Transformer's gated layer on the same data and budget.

Task (`longlab.memory.focused.tasks`): window-aligned definitions "abcd:xyz;" (L = 64-byte windows, 7 per window),
questions "?abcd:" answered by the value. Training: crossbatch pairs (previous window = one window of definitions,
current window = questions about them, loss on the value bytes only), d = 1 until the lookup is learned, then d =
8 (the paper's schedule for this task). Evaluation: a dictionary of 16 L or 64 L tokens is read into memory, the
local context holds the question after other keys' definitions (so the asked definition lies 16 L / 64 L tokens
back), the model generates the value: exact-match accuracy, with memory and without (the same model, memory 0).
Then the memory-size sweep: accuracy against the number of dictionary tokens in memory, up to 1M tokens, exact
top-k.

The first model (`data/checkpoints/focused_dictionary`, claim 4's one-softmax side, and where claim 2 starts):
2 layers (dense, focused) trained from scratch on 64-lane batches with short keys first (1, then 2, then 4
letters) at d = 1 until the lookup is learnt (6000 steps, 34 min on 2 threads), then d = 8 (the paper's schedule
for this task; 1500 steps at lr 1e-3):

    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch --kinds dense,MEMORY \
        --lanes 64 --local-defs 4 --key-schedule 1:1000,2:1600,4 --schedule 1 --steps 6000 --threads 2 \
        --out /tmp/focused_phase1.safetensors
    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch --kinds dense,MEMORY \
        --lanes 64 --local-defs 4 --schedule 8 --steps 1500 --lr 1e-3 --seed 1 --threads 2 \
        --continue-from /tmp/focused_phase1.safetensors

Claim 2's model (`data/checkpoints/focused_dictionary_hard_keys`) trains that model on, in four more phases:
with random keys one or two letters tell a window's 7 keys apart, so the model above matched only part of each
key, and its answers broke on the second value byte once hundreds of definitions were in memory (the record's
`near_miss_probe` and `per_byte_accuracy`). Half of the lanes now define near-miss keys (`--near-miss 0.5`:
keys that differ from each other in one letter); then a second dense layer is inserted below the focused layer,
starting as the identity (`--grow-at 1`, `longlab.models.grow_by_one_layer`), so that a value byte's key can
carry the letters of its definition's key; then d = 16, then d = 64 (every lane sees all 64 lanes' definition
windows, 4096 tokens, as many as a 64 L dictionary holds):

    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch --kinds dense,MEMORY \
        --lanes 64 --local-defs 4 --schedule 1:1000,8 --steps 3000 --lr 1e-3 --seed 2 --near-miss 0.5 \
        --continue-from data/checkpoints/focused_dictionary.safetensors --out /tmp/hard_phase3.safetensors
    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch \
        --kinds dense,dense,MEMORY --grow-at 1 --lanes 64 --local-defs 4 --schedule 8 --steps 2000 --lr 2e-3 \
        --seed 3 --near-miss 0.5 --continue-from /tmp/hard_phase3.safetensors --out /tmp/hard_phase4.safetensors
    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch \
        --kinds dense,dense,MEMORY --lanes 64 --local-defs 4 --schedule 16 --steps 1500 --lr 1e-3 --seed 4 \
        --near-miss 0.5 --threads 2 --continue-from /tmp/hard_phase4.safetensors --out /tmp/hard_phase5.safetensors
    .venv/bin/python data/focused/make_dictionary.py train --layer focused --from-scratch \
        --kinds dense,dense,MEMORY --lanes 64 --local-defs 4 --schedule 64 --steps 1500 --lr 1e-3 --seed 5 \
        --near-miss 0.5 --continue-from /tmp/hard_phase5.safetensors \
        --out data/checkpoints/focused_dictionary_hard_keys.safetensors

(one thread each, two runs sharing the 2 cores: 27 and 30 min; the inserted layer's lookup formed between steps
1400 and 1600 of its phase, value loss 0.32 -> 0.11, at lr 2e-3; at lr 1e-3 it had not formed by step 2000. The
d = 16 phase ended at value loss 0.09 with 78% / 48% exact match at 16 L / 64 L; the d = 64 phase took it to 0.0035
in 59 min on one thread, sharing the machine with a d = 32 run of the same phase: 0.0029, 97% / 100%, but 70% with
64k tokens in memory against 95% at d = 64.)

Questions are asked after a training-shaped local text (LOCAL_CONTEXT: definitions of other keys and answered
questions about them); the asked definition is only in memory.

The gated comparison (claim 4) trains the Memorizing layer (memory filled with the previous window, detached, as
that layer trains; two softmaxes mixed by a learned gate) with the claim-2 recipe: the same layers, batches, steps
and learning rates (the d schedule does not apply: its memory is the previous window only):

    .venv/bin/python data/focused/make_dictionary.py train --layer memorizing --from-scratch --kinds dense,MEMORY \
        --lanes 64 --local-defs 4 --key-schedule 1:1000,2:1600,4 --steps 6000 --threads 2 \
        --out /tmp/memorizing_phase1.safetensors
    .venv/bin/python data/focused/make_dictionary.py train --layer memorizing --from-scratch --kinds dense,MEMORY \
        --lanes 64 --local-defs 4 --steps 1500 --lr 1e-3 --seed 1 --threads 2 \
        --continue-from /tmp/memorizing_phase1.safetensors
    .venv/bin/python data/focused/make_dictionary.py measure      # writes data/focused/dictionary.json

Without --from-scratch, 3 layers (dense, memory, dense) are fine-tuned from the source checkpoint, the first
recipe: on 16-lane batches for 2000 steps neither layer learnt the lookup (value loss 3.151 one softmax, 3.142
gated, chance 3.258).

Options: --kinds (layer kinds, MEMORY = --layer, with --from-scratch), --key-schedule (key length by step),
--value-len, --lanes, --schedule (crossbatch d by step), --continue-from (a next phase; the records merge).
--save-at / --resume branch a run (e.g. a d = 1 branch for an equal-budget r_d comparison, --out
data/checkpoints/focused_dictionary_plain.safetensors, which measure then records)."""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from common import (
    FOCUSED_DROPS,
    claim_parser,
    fine_tune,
    load_base_weights,
    merge_phases,
    parse,
    warmup_cosine,
)

from longlab.io import write_json
from longlab.memory.focused.crossbatch import DSchedule, crossbatch_loss
from longlab.memory.focused.layer import read_into_memory
from longlab.memory.focused.tasks import (
    IGNORE,
    definitions_per_window,
    dictionary_accuracy,
    local_context,
    lookup_batch,
    make_window_dictionary,
    near_miss_keys,
)
from longlab.memory.lanes import memory_lanes
from longlab.models import TinyLM, TinyLMConfig, grow_by_one_layer, load_checkpoint, save_checkpoint
from longlab.tasks import encode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# claim 2 (focused), and claim 4's pair: the gated Memorizing layer trained with the same recipe and batches
CHECKPOINTS = {"focused": ROOT / "data" / "checkpoints" / "focused_dictionary.safetensors",
               "memorizing": ROOT / "data" / "checkpoints" / "memorizing_dictionary.safetensors",
               # claim 2's model: "focused" trained on with near-miss keys (hard negatives), then grown by a layer
               "focused_hard_keys": ROOT / "data" / "checkpoints" / "focused_dictionary_hard_keys.safetensors"}
CLAIM2_MODEL = "focused_hard_keys"
PLAIN = ROOT / "data" / "checkpoints" / "focused_dictionary_plain.safetensors"  # the d = 1 branch
RESULT = HERE / "dictionary.json"
BASE = ROOT / "data" / "checkpoints" / "tiny_memorizing.safetensors"
WINDOW = 64
# Each question is asked after 3 definitions of other keys and 2 answered questions about them, as in a training
# window (which starts with such definitions); the asked definition is only in memory, 16 L / 64 L back.
LOCAL_CONTEXT = {"defs": 3, "answered": 2}
DICTIONARY_STRIDE = 1000  # dictionary j of a length is seeded seed + windows + DICTIONARY_STRIDE * j


def make_model(layer: str, memory_size: int = 4096, init: bool = True, kinds: str = "dense,MEMORY,dense") -> TinyLM:
    """Layers `kinds` (MEMORY = `layer`; default 3: dense, `layer`, dense), d_model 128, 4 heads, L = 64; init:
    start from the committed source-code checkpoint's weights (data/checkpoints/tiny_memorizing, a pretrained
    byte LM, as the paper fine-tunes pretrained models; the default kinds only); a Focused layer takes the kNN
    layer's q/k/v/out weights, a Memorizing layer all of it."""
    attention = tuple(layer if kind == "MEMORY" else kind for kind in kinds.split(","))
    if init and attention != ("dense", layer, "dense"):
        raise ValueError(f"the source checkpoint has 3 layers (dense, memory, dense); {kinds!r} needs --from-scratch")
    model = TinyLM(TinyLMConfig(context=WINDOW, d_model=128, n_layers=len(attention), n_heads=4,
                                attention=attention, memory_size=memory_size, memory_topk=32))
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
                  out: str | None = None, kinds: str = "dense,MEMORY,dense", key_schedule: str = "4",
                  value_len: int = 3, continue_from: str | None = None, near_miss: float = 0.0,
                  grow_at: int | None = None) -> None:
    torch.manual_seed(seed)
    if continue_from and grow_at is not None:  # the next phase has one more layer, starting as the identity
        model = grow_by_one_layer(load_checkpoint(continue_from)[0], grow_at).train()
        if ",".join(model.config.attention) != kinds.replace("MEMORY", layer):
            raise ValueError(f"growing {continue_from} at {grow_at} gives {model.config.attention}, not {kinds}")
    else:
        model = make_model(layer, init=init, kinds=kinds).train()
    if continue_from and grow_at is None:  # a next phase (e.g. d = 8 once the lookup is learnt), fresh optimizer
        model.load_state_dict(load_checkpoint(continue_from)[0].state_dict())
    rng = random.Random(seed)
    d_of, key_len_of = DSchedule(schedule), DSchedule(key_schedule)  # key length: short keys first (curriculum)
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
        d, key_len = (d_of(step) if layer == "focused" else 1), key_len_of(step)
        batch = lookup_batch(lanes, WINDOW, d, rng, key_len, value_len, local_defs=local_defs, near_miss=near_miss)
        return step_loss(model, layer, batch), {"d": d, "key_len": key_len}

    timing = fine_tune(model, step_loss_at, steps, lr, schedule=warmup_cosine(lr, 50, steps), label=layer,
                       metric="value_loss", optimizer=optimizer, first_step=first_step, history=history,
                       before_step=save_branch_point)
    info = {"layer": layer, "steps": steps, "lanes": lanes, "lr": lr, "local_defs": local_defs, "kinds": kinds,
            "key_schedule": key_schedule, "key_len": key_len_of(steps), "value_len": value_len, "near_miss": near_miss,
            "schedule": schedule if layer == "focused"
            else "memory of the previous window (d = 1)", "seed": seed, "window": WINDOW,
            **timing, "init": "data/checkpoints/tiny_memorizing.safetensors" if init else "random",
            "continued_from": continue_from, "grown_at": grow_at}
    if continue_from:
        info = merge_dictionary_phases(load_checkpoint(continue_from)[1], info)
    print(f"wrote {save_checkpoint(model, out or CHECKPOINTS[layer], info)}")


def merge_dictionary_phases(before: dict, after: dict) -> dict:
    """`merge_phases`, with the d and key-length schedules as one schedule over both phases (steps counted from
    the first phase's start); the Memorizing layer's d is the same text in every phase."""
    def both(field: str) -> str:
        first, then = before.get(field, "4"), after.get(field, "4")
        if first == then and not first[0].isdigit():
            return first
        return DSchedule(first).then(then, before["steps"]).spec
    return {**merge_phases(before, after), "schedule": both("schedule"), "key_schedule": both("key_schedule")}


def task_shape(info: dict) -> dict:
    """Key and value lengths of the task a checkpoint was trained on (older records: 4 and 3)."""
    return {"key_len": info.get("key_len", 4), "value_len": info.get("value_len", 3)}


def accuracy(model, windows: int, questions: int, memory: bool, seed: int, oldest: bool = True,
             key_len: int = 4, value_len: int = 3) -> float:
    """Questions about the oldest window's keys (definitions windows * L tokens back), or any key."""
    book = make_window_dictionary(windows, WINDOW, key_len, value_len, seed=seed)
    per_window = len(book.keys) // windows
    rng = random.Random(seed + 1)
    pool = range(per_window) if oldest else range(len(book.keys))
    picks = [rng.choice(pool) for _ in range(questions)]
    context = local_context(book, seed=seed, **LOCAL_CONTEXT)
    return dictionary_accuracy(model, book, picks, windows * WINDOW if memory else None, read=False, context=context)


def near_miss_probe(model, dictionaries: int = 10, key_len: int = 4, value_len: int = 3) -> dict:
    """Accuracy on one window of definitions (all 7 keys asked, after LOCAL_CONTEXT) when its keys are random,
    against keys that differ from each other in one letter (`near_miss_keys`): a model that matches only part of
    a key tells random keys apart but not near misses, and a long dictionary holds many near misses."""
    out = {}
    for kind in ("random keys", "near-miss keys"):
        hits = []
        for j in range(dictionaries):
            per_window = definitions_per_window(WINDOW, key_len, value_len)
            keys = near_miss_keys(random.Random(f"near_miss_probe:{j}"), per_window, key_len) \
                if kind == "near-miss keys" else None
            book = make_window_dictionary(1, WINDOW, key_len, value_len, seed=j, keys=keys)
            context = local_context(book, seed=j, **LOCAL_CONTEXT)
            hits.append(dictionary_accuracy(model, book, list(range(per_window)), WINDOW, context=context))
        out[kind] = sum(hits) / len(hits)
    return out


@torch.no_grad()
def per_byte_accuracy(model, windows_list=(1, 16, 64), dictionaries: int = 3, key_len: int = 4,
                      value_len: int = 3) -> dict:
    """Teacher-forced accuracy of each value byte (the true earlier bytes given), questions about the oldest
    window's keys asked after LOCAL_CONTEXT: where exact-match lookups break, byte by byte."""
    out = {}
    for windows in windows_list:
        right, asked = torch.zeros(value_len), 0
        for j in range(dictionaries):
            seed = 500 + DICTIONARY_STRIDE * j + windows
            book = make_window_dictionary(windows, WINDOW, key_len, value_len, seed=seed)
            context = local_context(book, seed=seed, **LOCAL_CONTEXT)
            with memory_lanes(model, sizes=[windows * WINDOW]):
                read_into_memory(model, encode(book.text), keep_last=0)
                for i in range(len(book.keys) // windows):
                    tokens = encode(context + book.question(i) + book.values[i])[None]
                    logits, _ = model(tokens[:, :-1], write_memory=False)
                    right += (logits[0, -value_len:].argmax(-1) == tokens[0, -value_len:]).float()
                    asked += 1
        out[str(windows)] = (right / asked).tolist()
    return out


@torch.no_grad()
def lookup_distraction(model, d_values=(1, 2, 4, 8, 16), lanes: int = 16, batches: int = 2, seed: int = 0,
                       key_len: int = 4, value_len: int = 3) -> dict:
    """r_d on the lookup task at the answer positions only (the queries that need the positive window): the
    same dictionaries for every d, only the negatives (other lanes' definition windows) change."""
    out = {}
    for d in d_values:
        rng, values = random.Random(seed), []
        for _ in range(batches):
            batch = lookup_batch(lanes, WINDOW, d, rng, key_len, value_len)
            _, reads = crossbatch_loss(model.eval(), batch, return_retrievals=True)
            log_mass = reads[model.memory_layers()[0].layer_index].extras["crossbatch_log_mass"]  # (b, H, N, d)
            answer_rows = (batch.curr_y != IGNORE)[:, None, :].expand(-1, log_mass.shape[1], -1)
            ratio = torch.softmax(log_mass.double(), dim=-1)[..., 0]
            values.append(float(ratio[answer_rows].mean()))
        out[str(d)] = sum(values) / len(values)
    return out


def measure(questions: int, sweep: list[int], seed: int, dictionaries: int) -> dict:
    result = {"claim": "FoT answers lookups 16 L and 64 L tokens back with >= 90% exact match; without memory "
                       "chance; accuracy vs dictionary tokens in memory up to 1M (exact top-k)",
              "command": "python data/focused/make_dictionary.py train --layer focused --from-scratch ... (see "
                         "its docstring); ... train --layer focused; ... train --layer memorizing; ... measure",
              "window_L": WINDOW, "questions": questions, "seed": seed, "local_context": LOCAL_CONTEXT,
              "dictionaries": dictionaries, "dictionary_seed_stride": DICTIONARY_STRIDE,
              "claim2_model": CLAIM2_MODEL, "models": {}}
    for layer, path in CHECKPOINTS.items():  # "layer": the record's model name
        if not path.exists():
            continue
        model, info = load_checkpoint(path)
        shape = task_shape(info)
        torch.manual_seed(seed)
        row = {"checkpoint": str(path.relative_to(ROOT)), "train": info, "accuracy": {}, "accuracy_per_dictionary": {}}
        for windows in (16, 64):
            for memory in (True, False):
                key = f"{windows}L_{'memory' if memory else 'no_memory'}"
                # accuracy varies a lot between dictionaries: the mean over several (the first as recorded before)
                each = [accuracy(model, windows, questions, memory, seed + windows + DICTIONARY_STRIDE * j, **shape)
                        for j in range(dictionaries)]
                row["accuracy"][key], row["accuracy_per_dictionary"][key] = sum(each) / len(each), each
                print(f"{layer}: {key}: {row['accuracy'][key]:.3f} {each}", flush=True)
        row["near_miss_probe"] = near_miss_probe(model, **shape)
        print(f"{layer}: one window, random against near-miss keys: {row['near_miss_probe']}", flush=True)
        if layer == CLAIM2_MODEL:
            row["sweep"] = []
            for tokens in sweep:
                windows = max(1, tokens // WINDOW)
                start = time.perf_counter()
                acc = accuracy(model, windows, questions, True, seed + 7 * windows, oldest=False, **shape)
                row["sweep"].append({"tokens_in_memory": windows * WINDOW, "accuracy": acc,
                                     "seconds": time.perf_counter() - start})
                print(f"sweep {windows * WINDOW} tokens: {acc:.3f} ({row['sweep'][-1]['seconds']:.0f} s)", flush=True)
        row["per_byte_accuracy"] = per_byte_accuracy(model.eval(), **shape)
        print(f"{layer}: per value byte, teacher-forced: {row['per_byte_accuracy']}", flush=True)
        if layer == CLAIM2_MODEL:
            row["lookup_r_d"] = lookup_distraction(model, seed=seed, **shape)
            print(f"lookup r_d: {row['lookup_r_d']}", flush=True)
        result["models"][layer] = row
        write_json(RESULT, result)
    if PLAIN.exists():
        model, info = load_checkpoint(PLAIN)
        shape = task_shape(info)
        result["models"]["focused_plain"] = {
            "train": info, "lookup_r_d": lookup_distraction(model, seed=seed, **shape),
            "accuracy": {f"{w}L_memory": accuracy(model, w, questions, True, seed + w, **shape) for w in (16, 64)}}
        print(f"plain branch: {result['models']['focused_plain']}", flush=True)
        write_json(RESULT, result)
    print(f"wrote {RESULT}")
    return result


def main() -> None:
    parser = claim_parser(__doc__)
    parser.add_argument("--layer", choices=["focused", "memorizing"], default="focused")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", default="1:1000,8", help="crossbatch d schedule (focused)")
    parser.add_argument("--questions", type=int, default=20, help="questions per dictionary")
    parser.add_argument("--dictionaries", type=int, default=5, help="dictionaries per length (16 L, 64 L)")
    parser.add_argument("--sweep", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 262144, 1048576])
    parser.add_argument("--from-scratch", action="store_true", help="random init instead of the source checkpoint")
    parser.add_argument("--save-at", type=int, default=None, help="also save the model as it is at this step")
    parser.add_argument("--resume", default=None, help="continue from a --save-at branch point (/tmp/*.pt)")
    parser.add_argument("--out", default=None, help="checkpoint path (default data/checkpoints/<layer>_dictionary)")
    parser.add_argument("--local-defs", type=int, default=2, help="definitions at the start of each current window")
    parser.add_argument("--kinds", default="dense,MEMORY,dense", help="layer kinds, MEMORY = --layer (from scratch)")
    parser.add_argument("--key-schedule", default="4", help="key length by step, e.g. '2:1000,3:1600,4'")
    parser.add_argument("--value-len", type=int, default=3, help="bytes per value")
    parser.add_argument("--continue-from", default=None, help="start from this checkpoint's weights (a next phase)")
    parser.add_argument("--grow-at", type=int, default=None,
                        help="with --continue-from: --kinds has one layer more, inserted here as the identity")
    parser.add_argument("--near-miss", type=float, default=0.0,
                        help="share of lanes whose keys differ from each other in one letter (hard negatives)")
    args = parse(parser)
    if args.stage == "train":
        train_variant(args.layer, args.steps, args.lanes, args.lr, args.schedule, args.seed, not args.from_scratch,
                      args.local_defs, args.save_at, args.resume, args.out, args.kinds, args.key_schedule,
                      args.value_len, args.continue_from, args.near_miss, args.grow_at)
    else:
        measure(args.questions, args.sweep, args.seed, args.dictionaries)


if __name__ == "__main__":
    main()
