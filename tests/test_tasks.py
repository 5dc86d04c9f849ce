"""Tasks: the pydoc corpus, the standard-library source corpus, passkey prompts, dictionary lookup: determinism,
structure, scorers."""
from __future__ import annotations

import pytest
import torch

from longlab.tasks import (
    decode,
    dictionary_batch,
    encode,
    held_out_long_files,
    load_documents,
    load_source_documents,
    make_dictionary,
    make_passkey,
    make_passkeys,
    passkey_accuracy,
    score_dictionary,
    score_passkey,
    split_documents,
    split_source_documents,
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


def fake_stdlib(root):
    """A small tree with each kind of file the source corpus keeps or skips."""
    files = {"big.py": 400, "pkg/mod.py": 300, "small.py": 50, "test/test_big.py": 400, "pkg/tests/t.py": 400,
             "idlelib/idle_test/x.py": 400, "encodings/cp1.py": 400, "pydoc_data/topics.py": 400,
             "_sysconfigdata__linux.py": 400, "html/entities.py": 400, "site-packages/lib/m.py": 400,
             "notes.txt": 400}
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(("# " + name + "\n").ljust(size, "x"))
    return root


def test_source_corpus_keeps_hand_written_long_files_only(tmp_path):
    docs = load_source_documents(min_bytes=100, root=fake_stdlib(tmp_path))
    assert [d.name for d in docs] == ["big.py", "pkg/mod.py"]  # sorted by path; tests/generated/short skipped
    assert docs[0].text.startswith("# big.py") and len(docs[0].text) == 400
    assert [d.name for d in load_source_documents(min_bytes=0, root=tmp_path)] == ["big.py", "pkg/mod.py", "small.py"]
    with pytest.raises(ValueError, match="min_bytes"):
        load_source_documents(min_bytes=-1, root=tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        load_source_documents(root=tmp_path / "missing")


def test_source_split_is_deterministic_and_disjoint(tmp_path):
    root = tmp_path
    for i in range(13):
        (root / f"m{i:02d}.py").write_text("x" * 200)
    docs = load_source_documents(min_bytes=100, root=root)
    train, val = split_source_documents(list(reversed(docs)), val_every=6)  # input order does not matter
    assert [d.name for d in val] == ["m00.py", "m06.py", "m12.py"] and len(train) == 10
    assert split_source_documents(docs, val_every=6) == (train, val)
    assert [d.name for d in held_out_long_files(2, docs)] == ["m00.py", "m06.py"]
    with pytest.raises(ValueError, match="val_every"):
        split_source_documents(docs, val_every=1)
    with pytest.raises(ValueError, match="count"):
        held_out_long_files(0, docs)


def test_real_source_corpus_is_long_python_code():
    docs = load_source_documents()
    train, val = split_source_documents(docs)
    assert len(docs) > 40 and len(val) >= 8 and not {d.name for d in train} & {d.name for d in val}
    assert all(len(d.text.encode("utf-8")) >= 32_000 for d in docs)  # every file fills a 16k-token memory
    assert not any(d.name.startswith(("test/", "encodings/", "pydoc_data/")) for d in docs)
    assert held_out_long_files() == val
    assert sum("def " in d.text for d in docs) == len(docs)  # Python source, not data tables
