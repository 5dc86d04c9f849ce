"""Dictionary lookup, the cheap synthetic task of the Focused Transformer paper (arXiv 2307.03170, sec. 5):
a context lists key -> value pairs; the model is then asked the value of one key. With memory layers, the pairs
can live in memory rather than the local window. Byte-level: keys and values are short random letter strings.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass

import torch

from ..checks import positive_int


@dataclass(frozen=True)
class DictionaryExample:
    prompt: str  # "abc:xyz;def:uvw;...|def:" (pairs, separator, query key)
    answer: str  # the queried key's value
    pairs: tuple  # ((key, value), ...) in prompt order

    def __repr__(self) -> str:
        return f"DictionaryExample({len(self.pairs)} pairs, {len(self.prompt)} chars, answer={self.answer!r})"


def make_dictionary(num_pairs: int, key_len: int = 3, value_len: int = 3, seed: int = 0) -> DictionaryExample:
    """Distinct random lowercase keys, random values, one queried key; deterministic given the seed."""
    for name, value in (("num_pairs", num_pairs), ("key_len", key_len), ("value_len", value_len)):
        positive_int(name, value)
    if num_pairs > 26**key_len:
        raise ValueError(f"num_pairs={num_pairs} exceeds the {26**key_len} distinct keys of length {key_len}")
    rng = random.Random(seed)
    keys: list[str] = []
    seen = set()
    while len(keys) < num_pairs:
        key = "".join(rng.choices(string.ascii_lowercase, k=key_len))
        if key not in seen:
            seen.add(key)
            keys.append(key)
    values = ["".join(rng.choices(string.ascii_lowercase, k=value_len)) for _ in keys]
    query = rng.randrange(num_pairs)
    body = ";".join(f"{k}:{v}" for k, v in zip(keys, values))
    return DictionaryExample(f"{body}|{keys[query]}:", values[query], tuple(zip(keys, values)))


def dictionary_batch(batch: int, num_pairs: int, key_len: int = 3, value_len: int = 3, seed: int = 0):
    """Token batch for training: (tokens (B, N) int64 bytes of prompt+answer, answer_mask (B, N) bool marking
    the answer bytes as prediction targets, i.e. target position t predicts tokens[t + 1])."""
    examples = [make_dictionary(num_pairs, key_len, value_len, seed=seed * 7919 + i) for i in range(batch)]
    texts = [(e.prompt + e.answer).encode("utf-8") for e in examples]
    tokens = torch.tensor([list(t) for t in texts], dtype=torch.long)  # all examples have the same length
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, -value_len:] = True
    return tokens, mask


def score_dictionary(generated: str, answer: str) -> bool:
    """Exact match of the first len(answer) generated characters."""
    return generated[: len(answer)] == answer
