"""Real-process launches on a busy machine: many launches of every method while two CPU hogs run, with the
caller doing multi-threaded MKL work between launches (the state that made forked ranks deadlock).
No launch may hang and every output must equal single-device attention."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from test_parallel import OPTS, make_qkv, truth

from longlab.parallel import METHODS, launch, simulate

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

HOG = """
import time, torch
torch.set_num_threads(2)
a = torch.randn(2000, 2000)
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    a @ a
"""


@pytest.fixture
def cpu_hogs():
    """Two processes doing 2000 x 2000 float32 matmuls on 2 threads each; they stop by themselves after
    120 s and are killed when the test ends."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG.format(seconds=120)]) for _ in range(2)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=10)


def test_thirty_two_launches_under_load_never_hang_and_are_exact(cpu_hogs):
    start = time.monotonic()
    launches = 0
    for _ in range(2):
        for method in METHODS:
            for world in (2, 4):
                for causal in (False, True):
                    q, k, v = (t.detach() for t in make_qkv(32, batch=1, seed=launches))
                    # live MKL/OpenMP state in this process right before the ranks start: several threads
                    # (the simulator's ranks) and the reference's matrix products
                    sim_out, _ = simulate(method, q, k, v, world, causal=causal, **OPTS[method])
                    want = truth(method, q, k, v, causal)
                    out, trace = launch(method, q, k, v, world, causal=causal, timeout=60, **OPTS[method])
                    torch.testing.assert_close(out, want, rtol=0, atol=1e-10)
                    torch.testing.assert_close(sim_out, want, rtol=0, atol=1e-10)
                    assert trace.measured and len(trace.rank_times) == world
                    launches += 1
    assert launches == 32
    assert all(hog.poll() is None for hog in cpu_hogs)  # the load lasted the whole test
    print(f"{launches} launches under load in {time.monotonic() - start:.1f} s")
