"""Re-checks of the recorded results in data/ideas (CI-sized re-runs with margins, and consistency of the files)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longlab.analysis.extrapolation import binned, document_windows, loss_by_position, variant
from longlab.attention.floatlike import FloatLike
from longlab.attention.patterns import Dilated
from longlab.models import load_checkpoint
from longlab.tasks import held_out_long_files

DATA = Path(__file__).resolve().parent.parent / "data" / "ideas"
CHECKPOINT = DATA.parent / "checkpoints" / "tiny_memorizing.safetensors"


def _load(name):
    path = DATA / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing; regenerate with python data/ideas/make_ideas_results.py {name}")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(CHECKPOINT)[0]


def test_memory_layer_with_empty_memory_is_the_dense_variant(model):
    idx = held_out_long_files(1)[0].tokens()[:200][None]
    for layer in model.memory_layers():
        layer.set_memory_size(0)
    with torch.no_grad():
        torch.testing.assert_close(variant(model, "rope", 256)(idx)[0], model(idx)[0], atol=1e-5, rtol=0)


def test_extrapolation_recorded_and_rerun(model):
    rec = _load("extrapolation")
    curves = rec["curves"]
    ctx = rec["trained_context"]
    # before position w = 128 every scheme sees the same keys at the same relative positions
    first = [c["loss"][0] for c in curves.values()]
    assert rec["bin_width"] <= 128 and max(first) - min(first) < 1e-4
    # the known result: RoPE blows up past the trained length, ReRoPE stays flat
    rope, rerope = curves["rope"]["loss_per_trained_context"], curves["rerope"]["loss_per_trained_context"]
    assert rope[-1] > rope[0] + 1.0 and max(rerope) < rerope[0] + 0.1
    # CI-sized re-run: the first bin reproduces, and at 2x the context RoPE is already worse than ReRoPE
    seqs = document_windows(held_out_long_files(4), 2 * ctx + 1, 1)
    rope_loss = loss_by_position(variant(model, "rope", 2 * ctx), seqs)
    rerope_loss = loss_by_position(variant(model, "rerope", 2 * ctx, window=128), seqs)
    assert rope_loss[ctx:].mean() > rerope_loss[ctx:].mean() + 0.1
    torch.testing.assert_close(rope_loss[:128], rerope_loss[:128], atol=1e-4, rtol=0)  # positions < w identical
    # the recorded first bin, recomputed on the recorded sequences' first 65 tokens
    width = rec["bin_width"]
    starts = document_windows(held_out_long_files(), rec["length"] + 1, rec["sequences"] // 14)[:, :width + 1]
    again = loss_by_position(variant(model, "rope", width), starts).mean()
    assert abs(float(again) - curves["rope"]["loss"][0]) < 1e-4
    assert binned(rope_loss, 64)[0] == [0, 64, 128, 192, 256, 320, 384, 448]


def test_paged_recorded():
    rec = _load("paged")
    groups = {}
    for row in rec["rows"]:
        groups.setdefault((row["keys"], row["cached_tokens"]), []).append(row)
    assert {n for _, n in groups} == {16384, 131072}
    for rows in groups.values():
        recall = [r["recall_top32"] for r in rows]
        assert recall == sorted(recall)  # more pages kept, more of the true top keys
        assert all(r["bytes_read"] < r["dense_bytes"] for r in rows if r["fraction_read"] < 0.5)
        full = [r for r in rows if r["pages_kept"] >= r["pages"] - 1]
        assert all(r["recall_top32"] == 1.0 and r["relative_error"] < 1e-5 for r in full)


def test_patterns_recorded_pairs_recompute():
    for comp in _load("patterns")["comparisons"]:
        n, heads = comp["n"], comp["heads"]
        assert comp["float_like"]["pairs"] == FloatLike(comp["mantissa_bits"], causal=True).pairs(heads, n)
        longnet = eval(comp["longnet"]["pattern"], {"Dilated": Dilated})  # a repr of a frozen dataclass
        assert comp["longnet"]["pairs"] == longnet.pairs(heads, n)
        ratio = comp["float_like"]["pairs"] / comp["longnet"]["pairs"]
        assert 0.5 < ratio < 2  # equal FLOPs within the schedule grid's factor-2 steps
        assert float(comp["float_like"]["path_length_causal"]) < float("inf")


def test_linear_speed_recorded():
    from longlab.bench.common import read_csv
    from longlab.bench.linear import crossover

    path = DATA / "linear_cpu.csv"
    if not path.exists():
        pytest.fail(f"{path} is missing; regenerate with OMP_NUM_THREADS=1 longlab bench linear --out data/ideas")
    rows = [{"N": int(r["N"]), "attend_s": float(r["attend_s"]), "linear_s": float(r["linear_s"])}
            for r in read_csv(path)]
    assert [r["N"] for r in rows] == sorted(r["N"] for r in rows)
    cross = crossover(rows)
    assert cross is not None and cross <= 4096  # O(N) overtakes O(N^2) well inside the measured range
    # the gap widens with N: softmax time grows faster than linear time from the crossover on
    grow_soft = rows[-1]["attend_s"] / rows[0]["attend_s"]
    grow_lin = rows[-1]["linear_s"] / rows[0]["linear_s"]
    assert grow_soft > 4 * grow_lin


def test_quality_runs_recorded():
    import sys

    sys.path.insert(0, str(DATA))
    from make_ideas_results import QUALITY_KINDS, quality_config

    from longlab.models import TinyLM

    for kind in QUALITY_KINDS:
        rec = _load(f"quality_{kind}")
        run = rec["runs"][kind]
        assert run["model"] == repr(TinyLM(quality_config(kind)))  # the recorded model is the one the script builds
        assert run["history"][-1]["val_loss"] == run["val_loss"] and run["history"][-1]["step"] == rec["steps"]
        assert run["val_loss"] < rec["unigram_val_loss"] - 0.5  # every kind learned far past byte frequencies
        losses = [h["val_loss"] for h in run["history"]]
        assert losses[-1] < losses[0]
    dilated = _load("quality_dilated")["runs"]["dilated"]["pairs_per_layer"]
    floatlike = _load("quality_floatlike")["runs"]["floatlike"]["pairs_per_layer"]
    assert 0.5 < dilated / floatlike < 2  # equal FLOPs up to the schedule grid


def test_quality_passkey_by_depth_recorded():
    """Every quality run records passkey by depth on the prompts the script asks for: distances recomputed from
    the prompts, losses in their ranges (the loss over all bytes is never below the loss among the ten digits)."""
    import math
    import sys

    sys.path.insert(0, str(DATA))
    from make_ideas_results import PASSKEY, QUALITY_KINDS

    from longlab.analysis.passkey_depth import DEFAULT_DEPTHS, depth_examples

    for kind in QUALITY_KINDS:
        rec = _load(f"quality_{kind}")
        assert rec["passkey"] == PASSKEY
        rows = rec["runs"][kind]["passkey_by_depth"]
        assert [r["depth"] for r in rows] == list(DEFAULT_DEPTHS)
        for r in rows:
            group = depth_examples(PASSKEY["length"], r["depth"], PASSKEY["per_depth"], PASSKEY["seed"])
            assert r["examples"] == PASSKEY["per_depth"]
            assert r["distance_tokens"] == pytest.approx(sum(len(e.prompt) - e.key_offset for e in group) / len(group))
            assert r["digit_loss"] >= r["digit_loss_given_digit"] > 0 and r["repeat_loss_given_digit"] > 0
            assert all(0 < r[f"{name}_se"] < 1 for name in ("digit_loss", "digit_loss_given_digit"))
            assert 0 <= r["accuracy"] <= 1 and math.isfinite(r["digit_loss"])
