"""Tasks: the pydoc corpus, passkey prompts, dictionary lookup: determinism, structure, scorers."""
from __future__ import annotations

import pytest
import torch

from longlab.tasks import (
    decode,
    dictionary_batch,
    encode,
    load_documents,
    make_dictionary,
    make_passkey,
    make_passkeys,
    passkey_accuracy,
    score_dictionary,
    score_passkey,
    split_documents,
    unigram_loss,
)


def test_corpus_is_real_text_split_into_documents():
    docs = load_documents()
    assert len(docs) > 50 and len({d.name for d in docs}) == len(docs)
    assert max(len(d.text) for d in docs) > 30_000  # long enough for memory experiments
    train, val = split_documents(docs)
    assert not {d.name for d in train} & {d.name for d in val} and len(train) + len(val) == len(docs)
    assert max(len(d.text) for d in val) == max(len(d.text) for d in docs)  # the longest is held out
    assert split_documents(docs) == (train, val)


def test_encode_decode_round_trip_and_unigram_bar():
    text = "Assert statements — insert debugging assertions"
    tokens = encode(text)
    assert tokens.dtype == torch.long and int(tokens.max()) < 256 and decode(tokens) == text
    train, val = split_documents()
    loss = unigram_loss(train, val)
    assert 2.5 < loss < 4.5  # English bytes: ~3.3 nats; uniform would be log(256) = 5.55


def test_passkey_prompt_structure_and_determinism():
    ex = make_passkey(2000, depth=0.25, seed=3)
    assert ex == make_passkey(2000, depth=0.25, seed=3) and ex != make_passkey(2000, depth=0.25, seed=4)
    assert 1 <= int(ex.answer) <= 50000 and abs(len(ex.prompt) - 2000) <= 1
    assert ex.prompt.count(ex.answer) >= 2  # stated twice
    assert ex.prompt.rstrip().endswith("The pass key is")
    assert ex.prompt[ex.key_offset:].lstrip().startswith("The pass key is " + ex.answer)
    early, late = make_passkey(4000, 0.0, 1), make_passkey(4000, 1.0, 1)
    assert early.key_offset < 200 < 3500 < late.key_offset


def test_passkey_scoring_and_accuracy():
    assert score_passkey(" 123. ok", "123") and not score_passkey(" 1234", "123") and not score_passkey("none", "1")
    examples = make_passkeys(500, 4, seed=0)
    assert [round(e.depth, 2) for e in examples] == [0.0, 0.33, 0.67, 1.0]
    oracle = {e.prompt: e.answer for e in examples}
    assert passkey_accuracy(lambda p: oracle[p], examples) == 1.0
    assert passkey_accuracy(lambda p: "7", examples) == 0.0
    with pytest.raises(ValueError, match="length"):
        make_passkey(0)


def test_dictionary_task():
    ex = make_dictionary(10, seed=5)
    assert ex == make_dictionary(10, seed=5)
    keys = [k for k, _ in ex.pairs]
    assert len(set(keys)) == 10
    query = ex.prompt.split("|")[1].rstrip(":")
    assert dict(ex.pairs)[query] == ex.answer and score_dictionary(ex.answer + "xyz", ex.answer)
    tokens, mask = dictionary_batch(4, 6, seed=1)
    assert tokens.shape == (4, 6 * 8 - 1 + 1 + 4 + 3) and mask.sum() == 4 * 3
    assert decode(tokens[0][mask[0]]) == make_dictionary(6, seed=1 * 7919).answer
    with pytest.raises(ValueError, match="num_pairs"):
        make_dictionary(27, key_len=1)
