"""`import longlab` before torch turns on PyTorch's transparent-huge-page allocations (THP_MEM_ALLOC_ENABLE), which
the dilated scale benchmark relies on; a user's own setting of the variable wins. Checked on a real allocation in a
fresh interpreter: the kernel's AnonHugePages count for the process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
ALLOCATE = """
import longlab, os, torch
x = torch.ones(64 * 2**20 // 4)  # 64 MiB
huge_kib = sum(int(line.split()[1]) for line in open('/proc/self/smaps') if line.startswith('AnonHugePages'))
print(os.environ['THP_MEM_ALLOC_ENABLE'], huge_kib)
"""

pytestmark = pytest.mark.skipif(not THP.exists() or "[never]" in THP.read_text(),
                                reason="this kernel has no transparent huge pages")


def _run(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    flag, huge_kib = subprocess.run([sys.executable, "-c", ALLOCATE], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()
    return flag, int(huge_kib)


def test_import_longlab_backs_large_tensors_with_huge_pages():
    flag, huge_kib = _run(None)
    assert flag == "1"
    assert huge_kib >= 32 * 1024  # most of the 64 MiB tensor (2 MiB pages; the ends may stay small)


def test_a_users_own_setting_wins():
    flag, huge_kib = _run("0")
    assert flag == "0"
    if "[madvise]" in THP.read_text():  # with "always" the kernel uses huge pages for every process anyway
        assert huge_kib < 32 * 1024
