"""The method registry: one `MethodSpec` per method is all simulate, cost and the CLI need; options are
validated by the spec; the calibration file goes where the caller says."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_parallel import make_qkv

from longlab.attention.kernels import attend
from longlab.attention.reference import reference_attention
from longlab.parallel import REGISTRY, MethodSpec, cost, get_method, simulate
from longlab.parallel.comm import Tag
from longlab.parallel.comm.ops import all_gather_cat
from longlab.parallel.spec import CommStep


def _gather_attention(group, q, k, v, *, causal, scale, seq_len):
    """Every rank all-gathers k and v, then attends its own queries (non-causal only, for the test)."""
    kg = all_gather_cat(group, k, dim=2, tag=Tag("k", "k of rank {src}"))
    vg = all_gather_cat(group, v, dim=2, tag=Tag("v", "v of rank {src}"))
    return attend(q, kg, vg, scale=scale)[0]


def _gather_plan(world_size, w, opts):
    p = world_size
    shard = w.batch * w.hk * (w.seq_len // p) * w.elem_size
    return [CommStep("all_gather", [p - 1] * p, [(p - 1) * shard * dim] * p, name)
            for name, dim in (("k", w.head_dim), ("v", w.dv))]


GATHER = MethodSpec(name="gather", summary="all-gather k and v (test method)", sharding="contiguous",
                    plan=_gather_plan, attention=_gather_attention)


def test_a_method_is_one_spec_in_the_registry(monkeypatch):
    monkeypatch.setitem(REGISTRY, "gather", GATHER)
    q, k, v = make_qkv(32, heads=4, kv_heads=4)
    out, trace = simulate("gather", q, k, v, 4)
    torch.testing.assert_close(out, reference_attention(q, k, v)[0], rtol=0, atol=1e-10)
    work = cost.Workload(32, 4, 8, 4, batch=2, elem_size=8)
    assert trace.sent("forward") == cost.bytes_per_rank("gather", 4, work)  # the spec's formula = counted bytes
    assert {e.tensor for e in trace.events} == {"k", "v"}


def test_specs_validate_options_and_sizes():
    q, k, v = (t.detach() for t in make_qkv(16))
    with pytest.raises(TypeError, match=r"unknown options \['rates'\] for method 'longnet'.*segment_lengths"):
        simulate("longnet", q, k, v, 2, rates=(1,))
    with pytest.raises(ValueError, match="method must be one of .*'longnet'.* got 'megatron'"):
        simulate("megatron", q, k, v, 2)  # a formula, not a program
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        simulate("ring", q, k, v, 0)
    assert get_method("longnet").resolve({})["segment_lengths"] == (2048, 4096, 8192)  # one default schedule
    assert get_method("longnet").example_options(256, 64) == {"segment_lengths": (64, 128, 256),
                                                               "dilation_rates": (1, 2, 4)}


def test_every_runnable_spec_counts_what_its_formula_says():
    for name, spec in REGISTRY.items():
        if not spec.runnable:
            continue
        q, k, v = (t.detach().float() for t in make_qkv(64, heads=8, kv_heads=4, d=4, batch=1))
        opts = spec.example_options(64, 16)
        _, trace = simulate(name, q, k, v, 4, **opts)
        work = cost.Workload(64, 8, 4, 4, batch=1, elem_size=4, opts=opts)
        assert trace.sent("forward") == cost.bytes_per_rank(name, 4, work), name


def test_calibration_goes_where_the_caller_says(monkeypatch, tmp_path):
    from longlab.cli import main
    from longlab.parallel.run import cli

    written = []
    monkeypatch.setattr(cli, "calibrate", lambda path: written.append(path) or
                        {"alpha_s": 1e-5, "beta_s_per_byte": 1e-9, "bandwidth_GB_s": 1.0})
    monkeypatch.chdir(tmp_path)
    assert main(["parallel", "--calibrate"]) == 0
    assert main(["parallel", "--calibrate", "--calibration", str(tmp_path / "x" / "ab.json")]) == 0
    assert written == [str(Path("data") / "gloo_alpha_beta.json"), str(tmp_path / "x" / "ab.json")]
    assert not Path(written[0]).is_absolute()  # relative to the working directory, never the package
