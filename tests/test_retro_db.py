"""RETRO database: chunk layout, build (resumable, atomic shards), save/load round trip, search with
same-document exclusion against brute force, and the errors for bad input."""
from __future__ import annotations

import pytest
import torch

from longlab.memory.retro.build import build_database
from longlab.memory.retro.chunks import ChunkEntries, chunk_document, stdlib_python_files
from longlab.memory.retro.db import RetroDatabase
from longlab.memory.retro.encoder import ChunkEncoder
from longlab.memory.retro.shards import shard_name
from longlab.models import TinyLM, TinyLMConfig

M = 8


def small_encoder(seed: int = 0, layers: int = 1) -> ChunkEncoder:
    torch.manual_seed(seed)
    return ChunkEncoder(TinyLM(TinyLMConfig(d_model=32, n_heads=2, n_layers=1, context=64)), layers=layers,
                        name=f"random{seed}")


@pytest.fixture()
def corpus(tmp_path):
    """Six small 'documents' with shared lines (so neighbours exist across files) and a byte 0."""
    root = tmp_path / "corpus"
    (root / "pkg").mkdir(parents=True)
    gen = torch.Generator().manual_seed(1)
    shared = [f"    value_{i} = compute({i}, key)\n" for i in range(12)]
    for d in range(6):
        lines = [shared[int(j)] for j in torch.randint(0, 12, (20,), generator=gen)]
        text = f"# file {d}\n" + "".join(lines) + ("\x00tail" if d == 2 else "")
        (root / ("pkg" if d % 2 else "") / f"mod{d}.py").write_text(text)
    (root / "site-packages").mkdir()
    (root / "site-packages" / "skip.py").write_text("x = 1\n" * 50)
    return root


def test_chunk_document_layout_keeps_every_byte_value():
    data = bytes(range(256)) + b"\x00\x00abc"
    e = chunk_document(data, M, doc_id=3)
    n = len(data) // M
    assert len(e) == n and e.chunk_size == M
    for i in range(n):
        want = data[i * M : i * M + 2 * M]
        assert e.lengths[i] == len(want) and e.offsets[i] == i * M and e.doc_ids[i] == 3
        assert bytes(e.neighbours[i, : len(want)].tolist()) == want  # byte 0 is data, not padding
    assert e.lengths[-1] < 2 * M  # the last continuation is short, marked by length


def test_stdlib_files_skip_installed_packages(corpus):
    names = [n for n, _ in stdlib_python_files(corpus)]
    assert names == sorted(names) and len(names) == 6 and not any("site-packages" in n for n in names)


def brute_force(db: RetroDatabase, q: torch.Tensor, k: int, exclude):
    scores = q.double() @ db.memory.keys[0, : len(db)].double().T
    if exclude is not None:
        scores[db.entries.doc_ids[None, :] == exclude[:, None]] = -float("inf")
    return scores.topk(k, dim=1)


@pytest.mark.parametrize("allow_same_doc", [False, True])
def test_build_load_search_round_trip_matches_brute_force(corpus, tmp_path, allow_same_doc):
    enc = small_encoder()
    manifest = build_database(tmp_path / "db", enc, M, root=corpus, shard_chunks=40, progress=False)
    assert len(manifest["shards"]) > 1 and manifest["entries"] == sum(s["count"] for s in manifest["shards"])
    db = RetroDatabase.load(tmp_path / "db", identity=enc.identity)
    q_entries = torch.arange(0, len(db), 7)
    q = enc.encode(db.entries.chunks[q_entries])
    exclude = None if allow_same_doc else db.entries.doc_ids[q_entries]
    found = db.search(q, 5, exclude_docs=exclude)
    want_scores, want_index = brute_force(db, q, 5, exclude)
    torch.testing.assert_close(found.scores.double(), want_scores, atol=1e-5, rtol=0)
    if not allow_same_doc:
        assert (found.doc_ids != exclude[:, None]).all()
    else:
        assert (found.doc_ids == db.entries.doc_ids[q_entries, None]).any()  # its own chunk is found
    # the stored entry is what the index says: [chunk, continuation] of the source file
    e = found.indices[0, 0].item()
    src = (corpus / db.documents[db.entries.doc_ids[e]]).read_bytes()
    off = db.entries.offsets[e].item()
    assert bytes(found.tokens[0, 0, : found.lengths[0, 0]].tolist()) == src[off : off + 2 * M]
    # a second load (the save/load round trip) returns the same neighbours
    again = RetroDatabase.load(tmp_path / "db").search(q, 5, exclude_docs=exclude)
    assert torch.equal(again.indices, found.indices)


def test_build_resumes_and_skips_finished_shards(corpus, tmp_path):
    enc = small_encoder()
    first = build_database(tmp_path / "db", enc, M, root=corpus, shard_chunks=40, progress=False)
    (tmp_path / "db" / "manifest.json").unlink()
    (tmp_path / "db" / shard_name(1)).unlink()
    second = build_database(tmp_path / "db", enc, M, root=corpus, shard_chunks=40, progress=False)
    assert second["chunks_encoded"] == first["shards"][1]["count"]
    assert second["entries"] == first["entries"]


def test_corrupt_shard_error_names_the_file(corpus, tmp_path):
    build_database(tmp_path / "db", small_encoder(), M, root=corpus, shard_chunks=40, progress=False)
    path = tmp_path / "db" / shard_name(0)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=shard_name(0)):
        RetroDatabase.load(tmp_path / "db")


def test_refuses_another_encoder(corpus, tmp_path):
    build_database(tmp_path / "db", small_encoder(0), M, root=corpus, progress=False)
    other = small_encoder(1)
    with pytest.raises(ValueError, match="another encoder"):
        RetroDatabase.load(tmp_path / "db", identity=other.identity)
    db = RetroDatabase.load(tmp_path / "db")
    with pytest.raises(ValueError, match="another encoder"):
        db.search(other.encode(db.entries.chunks[:2]), 1, identity=other.identity)
    with pytest.raises(ValueError, match="another encoder"):  # same weights, other number of layers: another encoder
        RetroDatabase.load(tmp_path / "db", identity=small_encoder(0, layers=0).identity)


def test_bad_k_and_missing_database(corpus, tmp_path):
    enc = small_encoder()
    build_database(tmp_path / "db", enc, M, root=corpus, progress=False)
    db = RetroDatabase.load(tmp_path / "db")
    q = enc.encode(db.entries.chunks[:1])
    with pytest.raises(ValueError, match=r"k=100000 neighbours .* holds only"):
        db.search(q, 100_000)
    with pytest.raises(FileNotFoundError, match="retro build"):
        RetroDatabase.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="chunks must be an integer tensor"):
        enc.encode(torch.zeros(2, M))


def test_entries_cat_of_nothing_is_empty():
    assert len(ChunkEntries.cat([], M)) == 0
