"""The Focused Transformer benchmark plugin at toy size: decode rows per memory size and method, with the dense
KV-cache baseline and its ratio; crossbatch step rows per d; args untouched."""
from __future__ import annotations

from longlab import plugins
from longlab.bench import focused


def test_rows_at_toy_size():
    args = plugins.defaults(focused)
    args.memory, args.methods, args.d, args.lanes, args.window = [256, 512], ["topk", "all"], [1, 2], 2, 16
    args.d_model, args.heads, args.topk, args.repeats, args.dense_max = 16, 2, 4, 1, 300
    rows = focused.main(args)
    decode = [r for r in rows if r["stage"] == "decode"]
    assert [(r["method"], r["memory_tokens"]) for r in decode] == [
        ("dense KV cache (same total context)", 256), ("focused exact top-4", 256), ("focused all of memory", 256),
        ("focused exact top-4", 512), ("focused all of memory", 512)]  # 512 + 16 > dense_max: no dense row
    assert all(r["ms"] > 0 for r in rows) and decode[1]["ratio_vs_dense"] > 0 and decode[3]["ratio_vs_dense"] == ""
    train = [r for r in rows if r["stage"] == "train step"]
    assert [r["d"] for r in train] == [0, 1, 2] and train[0]["ratio_vs_dense"] == 1.0
    assert args.memory == [256, 512]  # main never changes args
