"""Passkey by depth (longlab.analysis.passkey_depth): digit loss against a hand-computed cross-entropy, accuracy
against a hand-run greedy decode and against a copy model whose reach is known, distances, bad input."""
from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from longlab.analysis.passkey_depth import answer_losses, depth_examples, greedy_correct, passkey_by_depth
from longlab.models import TinyLM, TinyLMConfig
from longlab.tasks.corpus import decode, encode
from longlab.tasks.passkey import INSTRUCTION, KEY_LINE, QUESTION, make_passkey, score_passkey

CONTEXT, LENGTH = 168, 160
QUERY = "The pass key is "  # the question's last 16 bytes; in the key line they are followed by the key
CONFIDENCE = 5.0  # logit of the copied byte (all others 0)


class CopyModel(nn.Module):
    """Predicts the byte that followed the first earlier occurrence of the last len(QUERY) bytes, if that occurrence
    ended at most `reach` tokens back; else uniform logits. Copies the key where it can see it."""

    def __init__(self, reach: int):
        super().__init__()
        self.reach, self.config = reach, SimpleNamespace(context=CONTEXT)

    def forward(self, idx, **context):
        k, n = len(QUERY), idx.shape[1]
        logits = torch.zeros(1, n, 256, dtype=torch.float64)
        grams = idx[0].unfold(0, k, 1)  # (n - k + 1, k): gram g ends at token g + k - 1
        same = (grams[:, None] == grams[None, :]).all(-1)
        for g in range(grams.shape[0]):
            t = g + k - 1
            earlier = [h + k - 1 for h in range(g) if same[g, h] and t - (h + k - 1) <= self.reach]
            if earlier:
                logits[0, t, idx[0, earlier[0] + 1]] = CONFIDENCE
        return logits, None

    generate = TinyLM.generate


def small_lm(dtype=torch.float64) -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(TinyLMConfig(context=CONTEXT, d_model=16, n_layers=1, n_heads=2)).to(dtype)


def test_instruction_free_prompt_keeps_length_and_default():
    with_instruction, bare = make_passkey(400, 0.5, seed=2), make_passkey(400, 0.5, seed=2, instruction=False)
    assert with_instruction.prompt.startswith(INSTRUCTION) and not bare.prompt.startswith(INSTRUCTION)
    assert len(bare.prompt) == len(with_instruction.prompt) == 400 and bare.answer == with_instruction.answer
    assert bare.prompt[bare.key_offset:].startswith(KEY_LINE.format(key=bare.answer))
    assert bare.prompt.endswith(QUESTION)


def test_distances_match_key_line_position():
    rows = passkey_by_depth(small_lm(torch.float32), LENGTH, depths=(0.0, 0.5, 1.0), per_depth=3, seed=1)
    for row in rows:
        group = depth_examples(LENGTH, row["depth"], 3, seed=1)
        assert row["examples"] == 3
        expected = [len(e.prompt) - e.prompt.index("\nThe pass key is ") for e in group]
        assert row["distance_tokens"] == pytest.approx(sum(expected) / 3, abs=1e-12)
        if row["depth"] == 0.0:
            assert all(d == LENGTH for d in expected)  # key line first
        if row["depth"] == 1.0:  # key line right before the question
            assert expected == [len(KEY_LINE.format(key=e.answer)) + len(QUESTION) for e in group]
    assert rows[0]["distance_tokens"] > rows[1]["distance_tokens"] > rows[2]["distance_tokens"]


def test_losses_equal_cross_entropy_of_each_prefix_float64():
    """Reference: one forward per prefix, log-softmax of its last position in float64 (over all 256 bytes, or over
    the ten digit bytes only), averaged by hand; tolerance 1e-10."""
    model = small_lm().eval()
    example = depth_examples(LENGTH, 0.25, 1, seed=3)[0]
    text, n = example.prompt + example.answer, len(example.answer)
    repeat = example.prompt.index(f"Remember it. {example.answer}") + len("Remember it. ")
    digits = [ord(c) for c in "0123456789"]

    def nats(start, digits_only):
        out = []
        for t in range(start, start + n):
            logits = model(encode(text[:t])[None])[0][0, -1]
            if digits_only:
                out.append(-torch.log_softmax(logits[digits], -1)[int(text[t])].item())
            else:
                out.append(-torch.log_softmax(logits, -1)[ord(text[t])].item())
        return sum(out) / n

    with torch.no_grad():
        expected = {"digit_loss": nats(len(example.prompt), False),
                    "digit_loss_given_digit": nats(len(example.prompt), True),
                    "repeat_loss_given_digit": nats(repeat, True)}
        assert answer_losses(model, example) == pytest.approx(expected, abs=1e-10)
    row = passkey_by_depth(model, LENGTH, depths=(0.25,), per_depth=1, seed=3)[0]
    assert {k: row[k] for k in expected} == pytest.approx(expected, abs=1e-10)
    # the full softmax spends extra nats on not expecting a digit: never below the digits-only loss
    assert expected["digit_loss"] > expected["digit_loss_given_digit"]


def test_accuracy_equals_hand_run_greedy_decode():
    model = small_lm().eval()
    group = depth_examples(LENGTH, 0.75, 4, seed=0)
    hits = []
    with torch.no_grad():
        for example in group:
            idx = encode(example.prompt)[None]
            for _ in range(len(example.answer) + 1):
                idx = torch.cat([idx, model(idx)[0][:, -1].argmax(-1, keepdim=True)], 1)
            hits.append(score_passkey(decode(idx[0, len(example.prompt):].tolist()), example.answer))
            assert greedy_correct(model, example) == hits[-1]
    assert passkey_by_depth(model, LENGTH, (0.75,), per_depth=4)[0]["accuracy"] == sum(hits) / 4


def test_copy_model_is_right_exactly_where_the_key_is_within_reach():
    """Accuracy 1 and loss log(1 + 255 e^-5) per digit (log(1 + 9 e^-5) among digits) where the key's first digit
    is within reach of the question's end, 0 and log 256 (log 10) where not."""
    reach, depths = 100, (0.0, 0.5, 0.75, 1.0)
    rows = passkey_by_depth(CopyModel(reach), LENGTH, depths, per_depth=4, seed=0)
    copied, blind = math.log1p(255 * math.exp(-CONFIDENCE)), math.log(256)
    for row in rows:
        group = depth_examples(LENGTH, row["depth"], 4, seed=0)
        seen = [len(e.prompt) - 1 - (e.key_offset + len("\n" + QUERY) - 1) <= reach for e in group]
        assert row["accuracy"] == sum(seen) / 4
        per_prompt = [copied if s else blind for s in seen]
        assert row["digit_loss"] == pytest.approx(sum(per_prompt) / 4, abs=1e-12)
        assert row["digit_loss_se"] == pytest.approx(statistics.stdev(per_prompt) / 2, abs=1e-12)
        given = [math.log1p(9 * math.exp(-CONFIDENCE)) if s else math.log(10) for s in seen]
        assert row["digit_loss_given_digit"] == pytest.approx(sum(given) / 4, abs=1e-12)
        assert row["repeat_loss_given_digit"] == pytest.approx(math.log(10), abs=1e-12)  # a 16-gram never repeats
    assert rows[0]["accuracy"] == 0.0 and rows[-1]["accuracy"] == 1.0  # the test covers both outcomes


def test_training_mode_restored():
    model = small_lm(torch.float32).train()
    passkey_by_depth(model, LENGTH, (1.0,), per_depth=1)
    assert model.training


@pytest.mark.parametrize("depths", [(0.5, 1.5), (-0.1,), (float("nan"),), ()])
def test_depth_outside_unit_interval_raises(depths):
    with pytest.raises(ValueError, match=r"depths must be .* in \[0, 1\]"):
        passkey_by_depth(CopyModel(10), LENGTH, depths, per_depth=1)


def test_prompt_longer_than_context_raises_naming_the_fix():
    with pytest.raises(ValueError, match=rf"more than the model's context={CONTEXT}; pass length <= {CONTEXT - 5}"):
        passkey_by_depth(CopyModel(10), CONTEXT, per_depth=1)
    with pytest.raises(ValueError, match="per_depth"):
        passkey_by_depth(CopyModel(10), LENGTH, per_depth=0)
