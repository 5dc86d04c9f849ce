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


IDEAS = "08_ideas_lab.ipynb"  # related work and the seed's own ideas share one lab
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
    Method("linear", "Linear attention",
           "a feature map replaces softmax; running sums give O(N) work and a fixed decode state",
           "Katharopoulos et al. 2020", "https://arxiv.org/abs/2006.16236", notebook=IDEAS),
    Method("rerope", "ReRoPE (leaky ReRoPE)", "relative positions capped at a window w, so longer inputs look familiar",
           "Su 2023", "https://kexue.fm/archives/9708", notebook=IDEAS),
    Method("pooled", "Token pooling", "exact nearby keys plus mean-pooled blocks of far ones, in one softmax",
           "Rae et al. 2019", "https://arxiv.org/abs/1911.05507", notebook=IDEAS),
    Method("floatlike", "Float-like (log-spaced) sparsity",
           "every key closer than 2^m, then 2^m keys per octave of distance: O(N 2^m log N) pairs",
           "seed idea; cf. LogSparse, Li et al. 2019", "https://arxiv.org/abs/1907.00235", notebook=IDEAS),
    Method("paged", "Paged KV cache with page selection",
           "per-page key bounds pick the K pages worth reading at each decode step", "Quest, Tang et al. 2024",
           "https://arxiv.org/abs/2406.10774", notebook=IDEAS),
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
