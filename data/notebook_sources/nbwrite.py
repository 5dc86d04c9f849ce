"""Write a notebook from Python: the committed .ipynb files are generated, never hand-edited.

Kept out of notebooks/ so tests/test_notebooks.py (which runs every notebooks/*.ipynb) does not see it.
Use from a generator script next to this file:

    import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from nbwrite import md, params, code, write_notebook
    NOTEBOOK = "00_tour.ipynb"
    cells = [md("# Title"), params("N = 64"), code("print(N)")]
    if __name__ == "__main__":
        write_notebook(NOTEBOOK, cells)

Defining module-level NOTEBOOK and cells (and writing only under __main__) lets
tests/test_notebooks.py check that the committed notebook matches its generator.

`write_notebook` puts the file in notebooks/ (relative names), with no outputs and no execution counts,
the python3 kernelspec, and checks that the first code cell is the one tagged `parameters` (papermill
injects CI or user parameters right after it).
"""
from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def md(source: str):
    """A markdown cell (leading/trailing blank lines stripped)."""
    return nbformat.v4.new_markdown_cell(source.strip("\n"))


def code(source: str):
    """A code cell without outputs."""
    return nbformat.v4.new_code_cell(source.strip("\n"))


def params(source: str):
    """The code cell tagged `parameters` (small CI-sized defaults; document larger values in comments)."""
    cell = code(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def write_notebook(name: str | Path, cells: list) -> Path:
    """Validate and write cells as notebooks/<name> (or to `name` if it is absolute); returns the path."""
    codes = [c for c in cells if c.cell_type == "code"]
    if not codes or "parameters" not in codes[0].metadata.get("tags", []):
        raise ValueError("the first code cell must be params(...) (tagged `parameters`)")
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids keep regenerated notebooks diff-free
        cell.id = f"cell-{i:02d}"
    nbformat.validate(nb)
    path = Path(name) if Path(name).is_absolute() else NOTEBOOKS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
