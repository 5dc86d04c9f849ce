"""Atomic file writes: nothing a user saved is ever left half-written."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, writer: Callable[[str], object]) -> Path:
    """Call writer(tmp_path) on a temp file beside `path`, then os.replace it into place.

    Readers see either the old file or the complete new one; on any error the temp file is removed and the
    old file is untouched. The new file gets the usual mode (mkstemp would leave 0600). Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path, obj, indent: int = 1) -> Path:
    """Write `obj` as JSON to `path` atomically (a crash never leaves a half-written record). Returns `path`."""
    import json

    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=indent) + "\n"))
