"""`longlab bench retro` on a tiny corpus: one build row, one search row per backend, exact recall 1."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from longlab import plugins
from longlab.bench import retro


def test_bench_retro_rows(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for d in range(4):
        (root / f"m{d}.py").write_text("".join(f"x_{d}_{i} = call({i})\n" for i in range(60)))
    args = plugins.defaults(retro)
    args.root, args.db, args.queries = str(root), str(tmp_path / "absent"), 8
    args.checkpoint = str(Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "tiny_memorizing.safetensors")
    args.backends = ["torch"] + (["faiss:flat"] if importlib.util.find_spec("faiss") else [])
    rows = retro.main(args)
    assert [r["stage"] for r in rows] == ["build"] + ["search"] * len(args.backends)
    assert rows[0]["chunks_per_s"] > 0 and rows[1]["entries"] == rows[0]["entries"]
    assert all(r["recall_vs_exact"] == 1.0 for r in rows[1:])
    assert len({frozenset(r) for r in rows}) == 1  # same keys in every row
    assert not any(tmp_path.glob("retro_bench_*"))
