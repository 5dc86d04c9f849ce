"""Passkey retrieval (Landmark Attention, arXiv 2305.16300; LongLLaMA, arXiv 2307.03170): find a number hidden
in long filler text. Prompt = instruction line, filler of short plain sentences, one line stating a random pass
key (1..50000) twice, more filler, and a question. Accuracy = exact match of the generated number.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..checks import positive_int

INSTRUCTION = ("There is a pass key hidden in the text below, among many unimportant sentences. "
               "Find it and remember it; you will be asked for it at the end.\n")
FILLER = "The grass is green. The sky is blue. The sun is warm. Here we go. There and back again. "
KEY_LINE = "\nThe pass key is {key}. Remember it. {key} is the pass key.\n"
QUESTION = "\nWhat is the pass key? The pass key is "


def filler(chars: int) -> str:
    """The first `chars` characters of FILLER repeated (the text a prompt hides its key line in)."""
    return (FILLER * (chars // len(FILLER) + 1))[:chars]


def key_offsets(key: str) -> tuple[int, int]:
    """Offsets of the key's two occurrences in KEY_LINE.format(key=key) (the line holds no other digits)."""
    line = KEY_LINE.format(key=key)
    first = line.index(key)
    return first, line.index(key, first + len(key))


@dataclass(frozen=True)
class PasskeyExample:
    prompt: str
    answer: str  # the pass key as decimal text
    key_offset: int  # character offset of the key line in the prompt
    depth: float  # requested relative depth of the key line (0 = start, 1 = end)

    def __repr__(self) -> str:
        return f"PasskeyExample(len={len(self.prompt)} chars, key={self.answer}, depth={self.depth:.2f})"


def make_passkey(length: int, depth: float | None = None, seed: int = 0, instruction: bool = True) -> PasskeyExample:
    """One prompt of about `length` characters (never shorter than the fixed parts), key at relative `depth`
    (default: drawn uniformly from [0, 1] by the seeded generator). Deterministic given (length, depth, seed).

    instruction=False leaves out the ~140-character INSTRUCTION line, so that in a short prompt (a small model's
    context) most characters are filler and the key's depth changes its distance from the question."""
    positive_int("length", length, "characters")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth!r}")
    rng = random.Random(seed)
    key = rng.randint(1, 50000)
    depth = rng.random() if depth is None else depth
    key_line = KEY_LINE.format(key=key)
    head = INSTRUCTION if instruction else ""
    filler_chars = max(0, length - len(head) - len(key_line) - len(QUESTION))
    text = filler(filler_chars)
    cut = int(round(depth * filler_chars))
    prompt = head + text[:cut] + key_line + text[cut:] + QUESTION
    return PasskeyExample(prompt, str(key), len(head) + cut, depth)


def make_passkeys(length: int, count: int, seed: int = 0) -> list[PasskeyExample]:
    """`count` prompts at one length, depths evenly spread over [0, 1], keys seeded."""
    depths = [i / max(1, count - 1) for i in range(count)]
    return [make_passkey(length, d, seed=seed * 100003 + i) for i, d in enumerate(depths)]


def score_passkey(generated: str, answer: str) -> bool:
    """Exact match: the first integer in the generated continuation equals the pass key."""
    found = re.search(r"\d+", generated)
    return found is not None and found.group() == answer


def passkey_accuracy(generate, examples: list[PasskeyExample]) -> float:
    """Fraction of examples where generate(prompt) -> text scores as correct."""
    if not examples:
        raise ValueError("examples is empty; make some with make_passkeys(length, count)")
    return sum(score_passkey(generate(e.prompt), e.answer) for e in examples) / len(examples)
