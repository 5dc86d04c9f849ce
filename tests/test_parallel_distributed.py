"""Sequence parallelism on real processes (torch.distributed, gloo, ranks forked from a fork server): exactness,
bytes vs the simulator, failure handling. Each launch takes a fraction of a second (the first one also starts
the fork server)."""
from __future__ import annotations

import os
import time

import pytest
import torch
from test_parallel import OPTS, assert_equals_single_device, make_qkv

from longlab.parallel import launch, simulate
from longlab.parallel.comm.ops import heads_to_seq, seq_to_heads
from longlab.parallel.methods import METHODS

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_real_processes_equal_single_device_and_simulator(method, world):
    for causal in (False, True):
        q, k, v = make_qkv(32, batch=1)
        out, trace = launch(method, q, k, v, world, causal=causal, timeout=60, **OPTS[method])
        grad = assert_equals_single_device(method, out, q, k, v, causal)
        sim_out, sim_trace = simulate(method, q, k, v, world, causal=causal, **OPTS[method])
        torch.autograd.grad(sim_out, (q, k, v), grad)
        # measured bytes (what each process handed to gloo) match the simulator, forward and backward
        assert trace.sent("forward") == sim_trace.sent("forward")
        assert trace.sent("backward") == sim_trace.sent("backward")
        assert trace.measured and trace.time > 0 and len(trace.rank_times) == world


def _roundtrip(group, q, k, v, causal=False, scale=None):
    back = heads_to_seq(group, seq_to_heads(group, q))
    if not torch.equal(back, q):
        raise AssertionError("all-to-all then its inverse changed the data")
    return back


def test_real_all_to_all_inverse_is_bit_exact():
    q = torch.randn(1, 4, 12, 3)
    out, trace = launch(_roundtrip, q, q, q, 4, timeout=30, layout="ring")
    assert torch.equal(out, q)
    assert trace.bytes_sent == [2 * q[:, :, :3].numel() * 4 * 3 // 4] * 4


def _raises_on_rank_one(group, q, k, v, causal=False, scale=None):
    if group.rank == 1:
        raise ValueError("rank one is broken")
    group.barrier()  # the others wait for rank 1 forever (gloo timeout is long): the parent must stop them
    return q


def _hangs_on_rank_zero(group, q, k, v, causal=False, scale=None):
    if group.rank == 0:
        time.sleep(60)
    return q


def _dies_on_rank_one(group, q, k, v, causal=False, scale=None):
    if group.rank == 1:
        os._exit(3)  # killed without a word (like an OOM kill)
    group.barrier()
    return q


@pytest.mark.parametrize("program,error,match,timeout,limit_s", [
    (_dies_on_rank_one, RuntimeError, r"rank 1 died \(exit code 3\)", 20, 15),
    (_raises_on_rank_one, RuntimeError, r"(?s)rank 1 raised.*rank one is broken", 20, 15),
    (_hangs_on_rank_zero, TimeoutError, r"ranks \[0(, 1)?\] did not finish within timeout=2", 2, 10),
], ids=["dies silently", "raises", "hangs"])
def test_a_failing_rank_ends_the_launch_with_a_clear_error(program, error, match, timeout, limit_s):
    q = torch.randn(1, 2, 8, 4)
    start = time.monotonic()
    with pytest.raises(error, match=match):
        launch(program, q, q, q, 2, timeout=timeout, layout="ring")
    assert time.monotonic() - start < limit_s


def test_cli_prints_bytes_per_rank_beside_the_formula(capsys):
    from longlab.cli import main

    assert main(["parallel", "--method", "ring", "--world", "2", "--seq", "64", "--heads", "2", "--head-dim", "8",
                 "--causal", "--timeout", "30"]) == 0
    text = capsys.readouterr().out
    block = 2 * 32 * 16 * 4  # one k/v shard: Hk=2, N/P=32, D+Dv=16, float32
    assert text.count(f"{block:,}") >= 4  # sent and formula, both ranks


def test_calibration_fits_alpha_beta_and_saves_json(tmp_path):
    import json

    from longlab.parallel.calibrate import calibrate, fit_alpha_beta

    model = fit_alpha_beta([100, 1000, 10000], [1e-4 + 100e-9, 1e-4 + 1000e-9, 1e-4 + 10000e-9])
    assert model.alpha == pytest.approx(1e-4) and model.beta == pytest.approx(1e-9)
    result = calibrate(sizes=(64, 4096, 65536), repeats=2, path=tmp_path / "ab.json")
    saved = json.loads((tmp_path / "ab.json").read_text())
    assert saved["alpha_s"] == result["alpha_s"] > 0 and saved["beta_s_per_byte"] > 0
