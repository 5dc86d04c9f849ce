"""Passkey retrieval by key depth for a model whose whole prompt fits its context (Landmark Attention,
arXiv 2305.16300, sec. 4.2: accuracy against where the key sits in the prompt).

    rows = passkey_by_depth(model, length=251, depths=(0, 0.25, 0.5, 0.75, 1.0), per_depth=32)
    # [{"depth": 0.0, "distance_tokens": 251.0, "digit_loss": 2.1, "accuracy": 0.0, ...}, ...]

Prompts are `make_passkey(..., instruction=False)`: filler, the key line, filler, the question, so that in a short
(256-byte) context the key's depth sets how far back it is. Per depth, with the same keys at every depth (example i
uses seed `seed * 100003 + i`):
- distance_tokens: mean tokens from the start of the key line to the end of the prompt (the question's end);
- digit_loss: teacher-forced cross-entropy of the answer digits given the prompt, nats per digit,
  -(1/|a|) sum_t log p(a_t | prompt, a_<t), averaged over examples (each loss has a `<name>_se`: its standard
  error over the examples, NaN for one example);
- digit_loss_given_digit: the same with the softmax restricted to the ten digit bytes, log p(a_t | a_t is a digit):
  what the model knows about *which* digits, ln 10 = 2.30 with no idea, 0 when it copies the key. The rest,
  digit_loss - digit_loss_given_digit = -log P(a digit comes next), is the cost of not expecting a number;
- repeat_loss_given_digit: digit_loss_given_digit on the key's second occurrence inside the key line
  ("... {key}. Remember it. {key} is ..."), ~20 tokens after the first at every depth: can the model copy a
  number at all, at a distance every pattern sees;
- accuracy: greedy exact match (`TinyLM.generate` for |a| + 1 bytes, scored by `score_passkey`: the first
  integer in the continuation equals the key, so a longer number is wrong).
A model trained briefly on other text may never copy the key: the losses are the graded measure that can still
differ between attention patterns (a 64-token window cannot see a key line 150 tokens back in one layer).
"""
from __future__ import annotations

import math

import torch

from ..checks import positive_int
from ..tasks.corpus import decode, encode
from ..tasks.passkey import KEY_LINE, PasskeyExample, make_passkey, score_passkey

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
DIGITS = encode("0123456789")  # byte tokens 48..57


def depth_examples(length: int, depth: float, per_depth: int, seed: int = 0) -> list[PasskeyExample]:
    """`per_depth` instruction-free prompts of `length` characters with the key line at `depth` (same keys at
    every depth for the same seed)."""
    return [make_passkey(length, depth, seed=seed * 100003 + i, instruction=False) for i in range(per_depth)]


def check_fits(example: PasskeyExample, context: int) -> torch.Tensor:
    """Tokens of prompt + answer (L,); ValueError if they exceed the model's context."""
    tokens = encode(example.prompt + example.answer)
    if tokens.numel() > context:
        raise ValueError(f"prompt of {len(encode(example.prompt))} tokens plus the {len(example.answer)}-digit answer "
                         f"is {tokens.numel()} tokens, more than the model's context={context}; pass length <= "
                         f"{context - 5} (5 digits is the longest key)")
    return tokens


def _nats(logits: torch.Tensor, targets: torch.Tensor, digits_only: bool) -> float:
    """Mean -log p(target) over positions, logits (n, vocab) in float64; digits_only: softmax over '0'..'9'."""
    logits = logits.double()
    if digits_only:
        return float(-torch.log_softmax(logits[:, DIGITS], -1).gather(-1, targets[:, None] - DIGITS[0]).mean())
    return float(-torch.log_softmax(logits, -1).gather(-1, targets[:, None]).mean())


def answer_losses(model, example: PasskeyExample) -> dict:
    """Teacher-forced losses in nats per digit from one forward over prompt + answer[:-1] (logits at position t
    predict token t + 1): digit_loss, digit_loss_given_digit (answer) and repeat_loss_given_digit (the key's second
    occurrence in the key line)."""
    tokens = check_fits(example, model.config.context)
    n_prompt, n_answer = tokens.numel() - len(example.answer), len(example.answer)
    logits, _ = model(tokens[None, :-1], write_memory=False)
    answer = slice(n_prompt - 1, n_prompt - 1 + n_answer)
    before, between, _ = KEY_LINE.split("{key}")
    repeat = example.key_offset + len(before) + n_answer + len(between)
    if example.prompt[repeat:repeat + n_answer] != example.answer:
        raise RuntimeError("passkey.KEY_LINE must state the key twice ('... {key} ... {key} ...')")
    return {"digit_loss": _nats(logits[0, answer], tokens[n_prompt:], False),
            "digit_loss_given_digit": _nats(logits[0, answer], tokens[n_prompt:], True),
            "repeat_loss_given_digit": _nats(logits[0, repeat - 1:repeat - 1 + n_answer],
                                             tokens[repeat:repeat + n_answer], True)}


def greedy_correct(model, example: PasskeyExample) -> bool:
    """Greedy |answer| + 1 bytes after the prompt (the extra byte shows whether the number ends) match the key."""
    check_fits(example, model.config.context)
    prompt = encode(example.prompt)[None]
    out = model.generate(prompt, len(example.answer) + 1)
    return score_passkey(decode(out[0, prompt.shape[1]:].tolist()), example.answer)


def passkey_by_depth(model, length: int, depths=DEFAULT_DEPTHS, per_depth: int = 16, seed: int = 0) -> list[dict]:
    """Per depth: mean key distance (tokens), the losses of `answer_losses` (nats/digit, mean and standard error)
    and greedy accuracy over `per_depth` prompts
    of `length` characters (= byte tokens). The prompt plus its answer must fit model.config.context.

    model: a TinyLM-like module (forward(idx (1, L)) -> (logits (1, L, 256), _), generate, config.context).
    """
    positive_int("length", length, "characters")
    positive_int("per_depth", per_depth, "prompts")
    depths = [float(d) for d in depths]
    bad = [d for d in depths if not 0.0 <= d <= 1.0 or math.isnan(d)]
    if not depths or bad:
        raise ValueError(f"depths must be a non-empty list of relative key depths in [0, 1] (0 = prompt start, "
                         f"1 = just before the question), got {bad or depths!r}")
    examples = {d: depth_examples(length, d, per_depth, seed) for d in depths}
    for group in examples.values():  # refuse before any model work
        for example in group:
            check_fits(example, model.config.context)
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad():
            for d, group in examples.items():
                losses = [answer_losses(model, e) for e in group]
                correct = [greedy_correct(model, e) for e in group]
                row = {"depth": d, "examples": len(group),
                       "distance_tokens": sum(len(e.prompt) - e.key_offset for e in group) / len(group)}
                for name in losses[0]:
                    values = torch.tensor([loss[name] for loss in losses], dtype=torch.float64)
                    row[name] = values.mean().item()
                    row[f"{name}_se"] = (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else math.nan
                row["accuracy"] = sum(correct) / len(correct)
                rows.append(row)
    finally:
        model.train(was_training)
    return rows
