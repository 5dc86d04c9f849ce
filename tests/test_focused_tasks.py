"""Tasks for the Focused Transformer claims: window-aligned dictionaries, lookup and passkey crossbatch batches
whose targets are exactly the answer bytes, questions answered from memory, and clear errors."""
from __future__ import annotations

import random

import pytest
import torch

from longlab.memory.focused.tasks import (
    IGNORE,
    answer,
    dictionary_accuracy,
    key_cut_by_window,
    local_context,
    lookup_batch,
    make_window_dictionary,
    near_miss_keys,
    passkey_batch,
    passkey_trial,
)
from longlab.models import TinyLM, TinyLMConfig
from longlab.tasks import make_passkey


def test_window_dictionary_never_straddles_a_window():
    book = make_window_dictionary(3, 32, key_len=4, value_len=3, seed=1)
    assert len(book.text) == 96 and len(book.keys) == 9 == len(set(book.keys))
    for w in range(3):
        chunk = book.text[w * 32 : (w + 1) * 32]
        assert chunk.endswith(" " * 5) and chunk.count(";") == 3  # 3 definitions of 9 bytes + 5 spaces
    i = 4
    assert f"{book.keys[i]}:{book.values[i]};" in book.text and book.question(i) == f"?{book.keys[i]}:"
    with pytest.raises(ValueError, match="shorter than one definition"):
        make_window_dictionary(1, 8)


def hamming(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b))


def test_near_miss_keys_share_all_but_one_letter_with_a_root():
    keys = near_miss_keys(random.Random(3), 30, 4, bases=1)
    assert len(set(keys)) == 30 and all(len(k) == 4 for k in keys)
    assert max(hamming(a, b) for a in keys for b in keys) <= 2  # each is one letter away from the one root
    with pytest.raises(ValueError, match="near misses"):
        near_miss_keys(random.Random(0), 102, 4, bases=1)  # 1 root + 4 * 25 one-letter changes = 101 keys


def test_near_miss_lanes_define_keys_that_differ_in_few_letters_and_keep_their_targets():
    batch = lookup_batch(6, 64, 1, random.Random(4), local_defs=4, near_miss=1.0)
    for i in range(6):
        defs = bytes(batch.prev[i].tolist()).decode()
        keys = [p.split(":")[0] for p in defs.strip().split(";") if p]
        local = [p.split(":")[0] for p in bytes(batch.curr[i].tolist()).decode().split(";")[:4]]
        assert len(keys) == 7 and not set(keys) & set(local)
        # 11 keys from 2 roots: every key has another within 2 letters (random keys: almost never)
        every = keys + local
        assert all(min(hamming(a, b) for b in every if b != a) <= 2 for a in every)
    plain = lookup_batch(6, 64, 1, random.Random(4), local_defs=4)
    assert torch.equal(plain.prev, lookup_batch(6, 64, 1, random.Random(4), local_defs=4, near_miss=0.0).prev)
    assert not torch.equal(plain.prev, batch.prev)
    with pytest.raises(ValueError, match="share of lanes"):
        lookup_batch(2, 64, 1, random.Random(0), near_miss=1.5)


@pytest.mark.parametrize("near_miss", [0.0, 0.5])
def test_lookup_batch_targets_are_the_values_of_keys_defined_in_the_positive(near_miss):
    batch = lookup_batch(4, 64, 2, random.Random(0), near_miss=near_miss)
    assert batch.prev.shape == batch.curr.shape == (4, 64) and batch.layout.d == 2
    assert (batch.prev_y == IGNORE).all()
    for i in range(4):
        defs = bytes(batch.prev[i].tolist()).decode()
        asked = bytes(batch.curr[i].tolist()).decode()
        pairs = dict(p.split(":") for p in defs.strip().split(";") if p)
        targets = [(t, chr(int(y))) for t, y in enumerate(batch.curr_y[i]) if y != IGNORE]
        assert targets and all(t + 1 < 64 and asked[t + 1] == c for t, c in targets if t + 1 < 64)
        for start in [k for k, c in enumerate(asked) if c == "?"]:
            key = asked[start + 1 : start + 5]
            if start + 9 <= len(asked) and len(key) == 4:
                assert asked[start + 6 : start + 9].startswith(pairs[key][: len(asked[start + 6 : start + 9])])


def test_passkey_batch_targets_the_digits_and_the_stop_and_uses_d_one():
    batch = passkey_batch(3, 128, random.Random(2))
    assert batch.layout.d == 1
    for i in range(3):
        line = bytes(batch.prev[i].tolist()).decode()
        key = line.split("The pass key is ")[1].split(".")[0]
        digits = "".join(chr(int(y)) for y in batch.curr_y[i] if y != IGNORE)
        assert digits == key + "." and "What is the pass key?" in bytes(batch.curr[i].tolist()).decode()
    with pytest.raises(ValueError, match="shorter than the key line"):
        passkey_batch(1, 32, random.Random(0))
    again = passkey_batch(3, 128, random.Random(2), repeat_targets=True)  # the same draws, plus the repeat
    assert torch.equal(again.curr_y, batch.curr_y) and torch.equal(again.prev, batch.prev)
    for i in range(3):
        text = bytes(again.prev[i].tolist()).decode()
        key = text.split("The pass key is ")[1].split(".")[0]
        targets = [(t + 1, chr(int(y))) for t, y in enumerate(again.prev_y[i]) if y != IGNORE]
        at = text.index(f"Remember it. {key}") + len("Remember it. ")
        assert targets == [(at + j, c) for j, c in enumerate(key)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyLM(TinyLMConfig(context=64, d_model=32, n_heads=2, n_layers=3, attention=("dense", "focused", "dense"),
                               memory_size=256, memory_topk=4)).eval()


def test_questions_run_from_memory_and_prompts_need_a_question(model):
    book = make_window_dictionary(4, 32, seed=3)
    acc = dictionary_accuracy(model, book, [0, 1], memory_size=128)
    assert 0.0 <= acc <= 1.0 and len(model.memory_layers()[0].lanes) == 0  # the caller's lanes came back
    assert len(answer(model, book.text + book.question(0), 3, 128, keep_last=6)) == 3
    with pytest.raises(ValueError, match="no question"):
        answer(model, book.text, 3, 128, keep_last=6)
    example = make_passkey(200, 0.5, seed=1)
    ok, mass = passkey_trial(model, example, memory=True)
    assert isinstance(ok, bool) and mass.shape == (2,) and (mass >= 0).all() and (mass <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="no question"):
        passkey_trial(model, type(example)(example.prompt[:-60], example.answer, example.key_offset, 0.5), True)
    with pytest.raises(ValueError, match="questions is empty"):
        dictionary_accuracy(model, book, [], 128)


def test_local_context_is_training_shaped_and_never_holds_the_asked_definition(model):
    book = make_window_dictionary(2, 64, seed=4)
    context = local_context(book, defs=3, answered=2, seed=1)
    defs = context.split("?")[0].rstrip(";").split(";")
    keys = [d.split(":")[0] for d in defs]
    assert len(defs) == 3 and not set(keys) & set(book.keys)  # fresh keys only
    assert context.count("?") == 2 and context.endswith(";") and f"?{keys[0]}:{defs[0].split(':')[1]};" in context
    assert local_context(book, 0, 0) == "" and local_context(book, 3, 2, seed=1) == context  # seeded
    with pytest.raises(ValueError, match="answered <= defs"):
        local_context(book, 2, 3)
    # the same seed as the dictionary must not replay its random draws: values of fresh definitions that equal
    # some dictionary value would leak answers (a stream shared with the book made all 60 of these collide;
    # independent draws collide with probability 112 / 26**3 each, about 0.4 expected in all)
    collisions = 0
    for seed in range(20):
        big = make_window_dictionary(16, 64, seed=seed)
        fresh = local_context(big, 3, 2, seed=seed).split("?")[0].rstrip(";").split(";")
        collisions += sum(d.split(":")[1] in set(big.values) for d in fresh)
    assert collisions <= 2
    with pytest.raises(ValueError, match="do not fit"):
        dictionary_accuracy(model, book, [0], 128, context="x" * 60)


def test_key_cut_by_window_matches_a_byte_by_byte_scan():
    from longlab.tasks.passkey import KEY_LINE

    for seed in range(6):
        example = make_passkey(3000, seed / 5, seed=seed)
        line = KEY_LINE.format(key=example.answer)
        starts = [example.key_offset + line.index(example.answer),
                  example.key_offset + line.index(f"it. {example.answer}") + 4]
        for window in (32, 64, 100, 128, 256):
            scanned = any(b > 0 and b % window == 0 for s in starts for b in range(s - 6, s + len(example.answer) + 1))
            assert key_cut_by_window(example, window) == scanned, (seed, window)
    example = make_passkey(3000, 0.5, seed=3)  # a boundary right at the key's first byte cuts it
    assert key_cut_by_window(example, example.key_offset + KEY_LINE.format(key=example.answer).index(example.answer))

