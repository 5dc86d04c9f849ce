"""Shared test settings: markers, CUDA skipping, one torch thread per xdist worker, hypothesis profile."""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Two xdist workers on two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(int(os.environ.get("LONGLAB_TEST_THREADS", "1")))

settings.register_profile(
    "longlab", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "longlab"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


def devices():
    """Devices to parametrize over: CPU always, CUDA (marked `cuda`) too."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
