"""The tour's table of contents: the methods longlab covers and the notebooks that exist right now.

Links are computed from the notebooks folder at run time, so a notebook added later appears by itself and
a method whose notebook is not written yet is marked "coming" instead of a dead link.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from longlab.table import format_table


@dataclass(frozen=True)
class Method:
    key: str  # theme.METHOD_COLORS key
    name: str
    idea: str
    paper: str
    url: str
    keywords: tuple[str, ...] = ()  # a notebook whose file name contains one of these covers the method
    notebook: str | None = None  # fixed notebook (when the tour itself shows it)


METHODS = (
    Method("dense", "Dense attention", "every token scores every token: exact, N^2 work and memory",
           "Vaswani et al. 2017", "https://arxiv.org/abs/1706.03762", notebook="00_tour.ipynb"),
    Method("sliding", "Sliding window", "each token sees the w tokens around it: N w work, local only",
           "Longformer, Beltagy et al. 2020", "https://arxiv.org/abs/2004.05150", notebook="00_tour.ipynb"),
    Method("dilated", "Dilated attention (LongNet)",
           "segments of growing length, rows thinned by growing rates, branches merged by lse: ~linear work",
           "LongNet, Ding et al. 2023", "https://arxiv.org/abs/2307.02486", ("dilated", "longnet")),
    Method("memorizing", "kNN memory (Memorizing Transformer)",
           "one layer also attends to the top-k of a FIFO memory of past (key, value) pairs, gated",
           "Wu et al. 2022", "https://arxiv.org/abs/2203.08913", ("knn_memory", "memorizing")),
    Method("focused", "Focused Transformer (LongLLaMA)",
           "memory and local keys in one softmax; crossbatch training against distraction",
           "Tworkowski et al. 2023", "https://arxiv.org/abs/2307.03170", ("focused", "crossbatch")),
    Method("longmem", "LongMem", "frozen backbone caches chunks of (key, value); a side network reads them",
           "Wang et al. 2023", "https://arxiv.org/abs/2306.07174", ("longmem",)),
    Method("retro", "RETRO", "retrieve neighbouring text chunks, chunked cross-attention to them",
           "Borgeaud et al. 2021", "https://arxiv.org/abs/2112.04426", ("retro",)),
    Method("ulysses", "Sequence parallel: DeepSpeed-Ulysses",
           "all-to-all turns a sequence split into a head split, full attention per head",
           "Jacobs et al. 2023", "https://arxiv.org/abs/2309.14509", ("sequence_parallel", "ulysses")),
    Method("ring", "Sequence parallel: ring attention (zigzag)",
           "k/v blocks travel around a ring of devices, partial results merged by lse",
           "Liu et al. 2023", "https://arxiv.org/abs/2310.01889", ("sequence_parallel", "ring")),
)


def notebook_title(path: Path) -> str:
    """First markdown heading of a notebook (without '#'), else its file stem."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return Path(path).stem
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", [])).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return Path(path).stem


def notebooks(folder: str | Path = ".") -> list[Path]:
    """Notebooks in `folder`, sorted by name (checkpoints excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} is not a directory; pass the notebooks folder")
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def find_notebook(method: Method, folder: str | Path = ".") -> str | None:
    """File name of the notebook covering `method`, or None when it is not written yet."""
    names = [p.name for p in notebooks(folder)]
    if method.notebook:
        return method.notebook if method.notebook in names else None
    for name in names:
        if any(k in name.lower() for k in method.keywords):
            return name
    return None


def methods_markdown(folder: str | Path = ".") -> str:
    """Markdown table: method, idea, paper link, notebook link (or *coming*)."""
    rows = []
    for m in METHODS:
        nb = find_notebook(m, folder)
        link = f"[{Path(nb).stem}]({nb})" if nb else "*coming*"
        rows.append({"method": m.name, "idea": m.idea, "paper": f"[{m.paper}]({m.url})", "notebook": link})
    return format_table(rows, markdown=True, formats=dict.fromkeys(rows[0], str))


def notebooks_markdown(folder: str | Path = ".") -> str:
    """Markdown list of every notebook present, linked, with its title."""
    items = [f"- [{p.stem}]({p.name}): {notebook_title(p)}" for p in notebooks(folder)]
    return "\n".join(items) if items else "*no notebooks found*"
