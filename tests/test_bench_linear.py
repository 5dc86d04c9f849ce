"""The linear-attention benchmark plugin: rows with both timings, and the crossover rule."""
from __future__ import annotations

from longlab import plugins
from longlab.bench import linear


def test_rows_and_crossover():
    args = plugins.defaults(linear)
    args.sizes, args.repeats, args.heads, args.head_dim = [32, 64], 1, 1, 8
    rows = linear.main(args)
    assert [r["N"] for r in rows] == [32, 64] and all(r["attend_s"] > 0 and r["linear_s"] > 0 for r in rows)
    assert args.sizes == [32, 64]  # main never changes args
    times = [(1, 1, 2), (2, 2, 1), (3, 1, 2), (4, 3, 1), (5, 4, 1)]
    fake = [{"N": n, "attend_s": a, "linear_s": b} for n, a, b in times]
    assert linear.crossover(fake) == 4
    assert linear.crossover(fake[:3]) is None
