"""`import longlab` before torch turns on PyTorch's transparent-huge-page allocations (THP_MEM_ALLOC_ENABLE), which
the dilated scale benchmark relies on; a user's own setting of the variable wins. Checked on a real allocation in a
fresh interpreter: the kernel's own view (/proc/self/smaps) of the mapping that holds a 64 MiB tensor, which is
eligible for huge pages only when PyTorch asked for them (madvise). Eligibility, not the huge pages actually
granted, is asserted: those also depend on how fragmented the machine's memory is."""
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
ptr, inside, eligible = x.data_ptr(), False, None
for line in open('/proc/self/smaps'):
    head = line.split()[0]
    if '-' in head and not head.endswith(':'):  # a mapping's first line: start-end perms ...
        low, high = (int(v, 16) for v in head.split('-'))
        inside = low <= ptr < high
    elif inside and head == 'THPeligible:':
        eligible = line.split()[1]
print(os.environ['THP_MEM_ALLOC_ENABLE'], eligible)
"""

pytestmark = pytest.mark.skipif(not THP.exists() or "[madvise]" not in THP.read_text(),
                                reason="needs transparent huge pages in madvise mode (with 'always' every mapping is "
                                       "eligible, with 'never' none is)")


def _run(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    return subprocess.run([sys.executable, "-c", ALLOCATE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_import_longlab_makes_large_tensors_eligible_for_huge_pages():
    assert _run(None) == ["1", "1"]


def test_a_users_own_setting_wins():
    assert _run("0") == ["0", "0"]
