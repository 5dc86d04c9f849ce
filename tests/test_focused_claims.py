"""Focused Transformer claims: the recorded results in data/focused/*.json (written by the scripts next to them,
with the command that regenerates them) are read back and re-checked at CI size on the committed checkpoints.
A claim that was not reached is recorded as not reached; these tests check that the record is what the
checkpoints give, and the claims that were reached."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from longlab.memory.focused.crossbatch import measure_distraction
from longlab.models import load_checkpoint
from longlab.tasks import load_source_documents, split_source_documents

ROOT = Path(__file__).resolve().parents[1]
DATA, CHECKPOINTS = ROOT / "data" / "focused", ROOT / "data" / "checkpoints"


def record(name: str) -> dict:
    path = DATA / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; regenerate it with `python data/focused/make_{name}.py` (see its docstring)")
    return json.loads(path.read_text())


def checkpoint(name: str):
    path = CHECKPOINTS / f"{name}.safetensors"
    assert path.exists() and path.stat().st_size < 5e6, f"{path} missing or larger than 5 MB"
    return load_checkpoint(path)


@pytest.mark.slow
def test_distraction_record_and_recheck():
    rec = record("distraction")
    window = rec["window"]
    plain = rec["models"]["trained_d1"]["r_d"]
    for d in rec["d_values"]:  # without negatives r_d falls like 1/d (the paper's observation)
        assert abs(plain[str(d)] - 1 / d) < 0.25 / d
    ratio = rec["models"]["trained_d8"]["r_d"]["8"] / plain["8"]
    assert rec["goal_r8_at_least_2x_met"] == (ratio >= 2.0)
    train, _ = split_source_documents()
    seen = {d.name for d in train}
    held = [d.tokens() for d in load_source_documents(min_bytes=2 * window + 1) if d.name not in seen]
    for key, name in (("trained_d1", "focused_plain"), ("trained_d8", "focused_crossbatch")):
        model, info = checkpoint(name)
        assert info["crossbatch_d"] == int(key[-1])
        live = measure_distraction(model, held, (1, 2, 8), lanes=8, batches=1, window=window, seed=2)
        assert live[1] == pytest.approx(1.0)
        for d in (2, 8):  # CI-sized rerun (8 lanes, other windows) agrees with the record within a margin
            assert abs(live[d] - rec["models"][key]["r_d"][str(d)]) < 0.1 * 8 / d, (key, d, live)


@pytest.mark.slow
def test_passkey_record_and_recheck():
    import sys

    from longlab.memory.focused.tasks import passkey_trial
    from longlab.tasks import make_passkeys

    sys.path.insert(0, str(DATA))
    try:
        from make_passkey import instruction_probe
    finally:
        sys.path.remove(str(DATA))
    rec = record("passkey")
    window = rec["window_L"]
    mem = {p["multiple_of_L"]: p for p in rec["curves"]["focused, memory"]}
    assert max(mem) >= 64 and mem[max(mem)]["prompt_tokens"] >= 16_000  # swept from L to >= 64 L, >= 16k tokens
    none = {p["multiple_of_L"]: p for p in rec["curves"]["focused, no memory (last window)"]}
    for m, point in mem.items():  # the split by window boundaries adds up to the whole
        cut, intact = point["key_cut"], point["key_intact"]
        assert cut["prompts"] + intact["prompts"] == rec["examples_per_length"]
        hits = sum(part["accuracy"] * part["prompts"] for part in (cut, intact) if part["prompts"])
        assert hits / rec["examples_per_length"] == pytest.approx(point["accuracy"])
        if m >= 16:  # the key is out of the last window (but for the prompt with the key at the very end)
            assert none[m]["accuracy"] <= 0.1
    model, info = checkpoint("focused_passkey")
    assert info["window"] == window == model.config.context
    for m in (16, 64):  # CI-sized rerun on fresh prompts agrees with the record within a margin
        examples = make_passkeys(m * window, 8, seed=1000 + m)
        live = sum(passkey_trial(model, e, memory=True)[0] for e in examples) / len(examples)
        assert abs(live - mem[m]["accuracy"]) <= 0.4, (m, live, mem[m])
    # the claim (>= 80% at 64 L) is reached when the read windows overlap by L/2, so that no key is stored
    # without the bytes before it; re-checked live on fresh prompts
    overlapped = {p["multiple_of_L"]: p for p in rec["curves"]["focused, memory, read windows overlapping by L/2"]}
    assert overlapped[64]["accuracy"] >= 0.8 and overlapped[max(overlapped)]["prompt_tokens"] >= 16_000
    examples = make_passkeys(64 * window, 8, seed=2064)
    live = sum(passkey_trial(model, e, memory=True, overlap=window // 2)[0] for e in examples) / len(examples)
    assert live >= 0.75, live
    # 1 L is the weak point of both reads because its key line follows the instruction paragraph, which no training
    # window shows: with filler of the same length in its place the same prompts are answered
    probe = rec["one_L_instruction_probe"]
    assert probe["instruction"] == {"plain": mem[1]["accuracy"], "overlapped": overlapped[1]["accuracy"]}
    for reading in ("plain", "overlapped"):
        assert probe["filler_instead"][reading] >= 0.9
        assert probe["instruction"][reading] <= probe["filler_instead"][reading] - 0.3
    live = instruction_probe(model, 16, seed=3001)
    assert min(live["filler_instead"].values()) >= 0.8, live
    assert live["instruction"]["overlapped"] <= live["filler_instead"]["overlapped"] - 0.3, live


@pytest.mark.slow
def test_dictionary_record_and_recheck():
    import random

    from longlab.memory.focused.tasks import dictionary_accuracy, local_context, make_window_dictionary

    rec = record("dictionary")
    fot = rec["models"][rec["claim2_model"]]  # the model trained on for claim 2 (hard keys, one more layer)
    window = rec["window_L"]
    assert {"16L_memory", "16L_no_memory", "64L_memory", "64L_no_memory"} <= set(fot["accuracy"])
    assert fot["accuracy"]["16L_no_memory"] <= 0.05 and fot["accuracy"]["64L_no_memory"] <= 0.05  # chance: 26^-3
    assert fot["accuracy"]["16L_memory"] >= 0.9 and fot["accuracy"]["64L_memory"] >= 0.9  # the goal
    assert max(r["tokens_in_memory"] for r in fot["sweep"]) >= 1_000_000  # the sweep reached 1M tokens
    model, info = checkpoint(Path(fot["checkpoint"]).stem)  # the record names its checkpoint
    assert info["window"] == window == model.config.context and info["layer"] == "focused"
    assert set(fot["per_byte_accuracy"]) == {"1", "16", "64"} and set(fot["near_miss_probe"]) == {
        "random keys", "near-miss keys"}
    # the diagnosis the recipe answers: the first model broke on near-miss keys, this one less
    first = rec["models"]["focused"]["near_miss_probe"]["near-miss keys"]
    assert fot["near_miss_probe"]["near-miss keys"] > first
    # the record's dictionary, local text and first 5 of its questions (accuracy varies a lot between dictionaries)
    seed = rec["seed"] + 16
    book = make_window_dictionary(16, window, info.get("key_len", 4), info.get("value_len", 3), seed=seed)
    pick = random.Random(seed + 1)
    asked = [pick.choice(range(len(book.keys) // 16)) for _ in range(5)]  # keys of the oldest window: 16 L back
    context = local_context(book, seed=seed, **rec.get("local_context", {"defs": 0, "answered": 0}))
    live = dictionary_accuracy(model, book, asked, 16 * window, context=context)
    assert abs(live - fot["accuracy_per_dictionary"]["16L_memory"][0]) <= 0.4  # dictionary 0 is the one rebuilt
    each = fot["accuracy_per_dictionary"]["16L_memory"]
    assert len(each) == rec["dictionaries"] and fot["accuracy"]["16L_memory"] == pytest.approx(sum(each) / len(each))
    assert dictionary_accuracy(model, book, asked, None, context=context) <= 0.2


@pytest.mark.slow
def test_one_softmax_against_gate_record_and_recheck():
    """Claim 4: FoT's one-softmax layer and the Memorizing Transformer's gated layer, trained on the same lookup
    batches with the same budget (layers, steps, lanes, learning rates, key schedule, seed), both recorded with
    their value loss and accuracy; the gated checkpoint re-measured at CI size agrees with its record."""
    import random

    from longlab.memory.focused.tasks import dictionary_accuracy, local_context, make_window_dictionary

    rec = record("dictionary")
    fot, gate = rec["models"]["focused"], rec["models"]["memorizing"]
    for field in ("steps", "lanes", "lr", "seed", "local_defs", "window", "kinds", "key_schedule", "init"):
        assert fot["train"][field] == gate["train"][field], field
    assert (fot["train"]["layer"], gate["train"]["layer"]) == ("focused", "memorizing")
    for model_rec in (fot, gate):
        assert model_rec["train"]["history"][-1]["step"] == model_rec["train"]["steps"]
        assert {"16L_memory", "16L_no_memory", "64L_memory", "64L_no_memory"} <= set(model_rec["accuracy"])
    model, info = checkpoint("memorizing_dictionary")
    assert info["layer"] == "memorizing" and model.config.context == rec["window_L"]
    window = rec["window_L"]
    book = make_window_dictionary(16, window, seed=78)
    asked = random.Random(1).sample(range(len(book.keys) // 16), 5)  # the oldest window: 16 L back
    context = local_context(book, seed=78, **rec.get("local_context", {"defs": 0, "answered": 0}))
    live = dictionary_accuracy(model, book, asked, 16 * window, context=context)
    assert abs(live - gate["accuracy"]["16L_memory"]) <= 0.4
