"""atomic_write: a failed write leaves the old file intact and no temp files behind."""
from __future__ import annotations

import os

import pytest

from longlab.io import atomic_write


def test_replaces_file_and_keeps_old_one_on_error(tmp_path):
    target = tmp_path / "sub" / "saved.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("first"))
    assert target.read_text() == "first"

    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["saved.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual mode, not mkstemp's 0600
