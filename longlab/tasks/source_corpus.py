"""A corpus of LONG documents every Python installation ships: the standard library's own .py source files.

Source code is the Memorizing Transformer's best case (arXiv 2203.08913, sec. 4: GitHub and formal maths gain
the most from memory): names defined far back in a file are used again much later. Each file of at least
`min_bytes` bytes is one document (CPython 3.11.7: 83 files of 32-229 KB, 5.5 MB). Skipped, because they are
not hand-written code or are the other corpus: test suites (`test`, `tests`, `idle_test` folders), generated
codec tables (`encodings/`), `pydoc_data/` (the English corpus of `longlab.tasks.corpus`), the generated
`_sysconfigdata*` files, `html/entities.py` (a data table) and installed packages (`site-packages`).
The file list follows the running interpreter's standard library (sorted by path, so it is deterministic for
one Python version).
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

from ..checks import int_at_least, positive_int
from .corpus import Document

SKIP_FOLDERS = ("test", "tests", "idle_test", "encodings", "pydoc_data", "site-packages", "__pycache__")
SKIP_FILES = ("html/entities.py",)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def load_source_documents(min_bytes: int = 32_000, root=None) -> list[Document]:
    """Standard-library .py files with at least `min_bytes` bytes as Documents named by their path relative to
    the stdlib folder (e.g. "argparse.py"), sorted by that path. `root` overrides the folder (for tests)."""
    int_at_least("min_bytes", min_bytes, 0, "bytes")
    root = stdlib_root() if root is None else Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a folder; leave it None for the standard library")
    docs = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        parts = name.split("/")
        if any(p in SKIP_FOLDERS for p in parts[:-1]) or name in SKIP_FILES or parts[-1].startswith("_sysconfigdata"):
            continue
        if path.stat().st_size < min_bytes:
            continue
        try:
            docs.append(Document(name, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:  # none in CPython 3.11; skip rather than guess an encoding
            continue
    return docs


def split_source_documents(docs: list[Document] | None = None,
                           val_every: int = 6) -> tuple[list[Document], list[Document]]:
    """Deterministic train/validation split of the source files: in path order, every `val_every`-th file
    (indices 0, val_every, ...) is held out. Path order mixes sizes and packages into both halves."""
    int_at_least("val_every", val_every, 2)
    docs = load_source_documents() if docs is None else sorted(docs, key=lambda d: d.name)
    val = [d for i, d in enumerate(docs) if i % val_every == 0]
    train = [d for i, d in enumerate(docs) if i % val_every != 0]
    return train, val


def held_out_long_files(count: int | None = None, docs: list[Document] | None = None) -> list[Document]:
    """The documents loss-vs-memory curves are measured on, by a rule fixed in advance: the held-out files of
    `split_source_documents` in path order (all of them, or the first `count`). Every one has >= 32,000 bytes."""
    if count is not None:
        positive_int("count", count, "files; or None for all")
    _, val = split_source_documents(docs)
    return val if count is None else val[:count]
