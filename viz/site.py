"""Build the static site: execute every notebook headless, export it to HTML with interactive plotly figures.

    python -m viz.site                      # every notebook, larger documented parameters (SITE_PARAMETERS)
    python -m viz.site --small --only 00_tour --out /tmp/site    # one notebook, its CI-sized defaults

Steps per notebook (notebooks/NAME.ipynb -> OUT/NAME.html):
1. papermill runs it with LONGLAB_HEADLESS=1 (viz returns plain figures, not live widgets), cwd notebooks/,
   with SITE_PARAMETERS[NAME] unless --small; the executed copy goes to OUT/executed/NAME.ipynb;
2. `site_preprocess` turns every plotly figure output (application/vnd.plotly.v1+json) into a <div> drawn by
   Plotly.newPlot, so zoom and hover work in a plain browser; plotly.js is one local file (OUT/plotly.min.js)
   loaded before require.js by every page (no network needed for figures); cells marked
   `jupyter: {source_hidden: true}` lose their source (their folded answers stay); explorer cells get a note
   that the figure is the default state and sliders need a kernel;
3. nbconvert's HTMLExporter (lab template) writes the page; links to NAME.ipynb become NAME.html.
Then `viz.site_index` writes OUT/index.html: notebooks (with run time or failure), methods, measured results.
The committed notebooks are never touched (they stay without outputs).
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"

# Larger parameters documented in each notebook's `parameters` cell, chosen so the whole site builds in a few
# minutes on a laptop CPU; notebooks not listed run with their defaults.
SITE_PARAMETERS: dict[str, dict] = {
    "00_tour": {"N_MAX_LOG2": 24, "DEMO_N": 64},
    "01_dilated_attention": {"N": 64},
    "02_attention_allocation": {"N": 1024, "PATH_SIZES": [64, 128, 256, 512, 1024]},
    "03_knn_memory": {"EVAL_DOCS": 2, "EVAL_BYTES": 8192, "RETRIEVAL_BYTES": 2048},
    "07_sequence_parallel": {"SEQ": 128, "VOLUME_N": 4096, "VOLUME_WORLDS": [2, 4, 8, 16]},
}

EXPLORER_NOTE = ("<p class=\"longlab-static-note\"><b>Static view:</b> the figure below shows the explorer's default "
                 "settings. Its sliders need a running kernel: <code>make lab</code> opens this notebook live.</p>")
PLOTLY_FILE = "plotly.min.js"
_EXPLORER = re.compile(r"\b\w*explorer\(")


@dataclass
class PageResult:
    name: str
    title: str
    seconds: float
    error: str | None = None  # first line of the failure, None when the notebook ran through

    @property
    def ok(self) -> bool:
        return self.error is None


def _plotly_html(figure: dict, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, validate=False,
                       config={"responsive": True, "displaylogo": False})


def site_preprocess(nb, page: str):
    """A copy of the executed notebook `nb` (nbformat node) ready for static HTML (see module docstring)."""
    nb = copy.deepcopy(nb)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        outputs = []
        if _EXPLORER.search(cell.source) and cell.get("outputs"):
            outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": EXPLORER_NOTE}})
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.plotly.v1+json" in data:
                count += 1
                figure = data["application/vnd.plotly.v1+json"]
                out = {"output_type": "display_data", "metadata": {},
                       "data": {"text/html": _plotly_html(figure, f"{page}-figure-{count}")}}
            outputs.append(out)
        cell.outputs = outputs
    return nb


def _inject_head(page_html: str) -> str:
    """plotly.js before anything else in <head> (before require.js, so it defines window.Plotly), a small style,
    and .ipynb links turned into .html links."""
    head = (f"<script src=\"{PLOTLY_FILE}\"></script>\n<style>.longlab-static-note{{background:#fff8e1;"
            "border-left:4px solid #e69f00;padding:6px 10px;margin:4px 0;font-size:13px}}</style>\n")
    page_html = page_html.replace("<head>", "<head>\n" + head, 1)
    return re.sub(r'href="(?!https?:)([^"#]+)\.ipynb(#[^"]*)?"', r'href="\1.html\2"', page_html)


def export_html(nb, page: str) -> str:
    """Static HTML page for an executed notebook."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(site_preprocess(nb, page))
    return _inject_head(body)


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def build_page(path: Path, out: Path, parameters: dict, timeout: int) -> PageResult:
    """Execute one notebook and write OUT/NAME.html; a failing notebook still gets a page (with the error)."""
    import nbformat
    import papermill

    executed = out / "executed" / path.name
    start = time.perf_counter()
    error = None
    os.environ["LONGLAB_HEADLESS"] = "1"  # the kernel inherits it: static figures, no live widgets
    try:
        papermill.execute_notebook(str(path), str(executed), parameters=parameters, kernel_name="python3",
                                   cwd=str(path.parent), store_widget_state=False, progress_bar=False,
                                   log_output=False, execution_timeout=timeout)
    except Exception as err:  # noqa: BLE001 - recorded on the index page; the build reports failure at the end
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    seconds = time.perf_counter() - start
    nb = nbformat.read(executed if executed.exists() else path, as_version=4)
    (out / f"{path.stem}.html").write_text(export_html(nb, path.stem), encoding="utf-8")
    return PageResult(path.stem, _title(nb, path.stem), seconds, error)


def notebook_paths(only: list[str] | None = None) -> list[Path]:
    paths = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        names = {Path(name).stem for name in only}
        unknown = names - {p.stem for p in paths}
        if unknown:
            raise ValueError(f"unknown notebooks {sorted(unknown)}; choose from {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in names]
    return paths


def build_site(out: str | Path = ROOT / "site", only: list[str] | None = None, small: bool = False,
               timeout: int = 900, progress: bool = True) -> list[PageResult]:
    """Execute and export the notebooks into `out` (recreated), copy plotly.js, write index.html."""
    import plotly

    from viz.site_index import write_index

    out = Path(out)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout must be a positive number of seconds per cell, got {timeout!r}")
    paths = notebook_paths(only)
    if out.exists():
        shutil.rmtree(out)
    (out / "executed").mkdir(parents=True)
    shutil.copy(Path(plotly.__file__).parent / "package_data" / PLOTLY_FILE, out / PLOTLY_FILE)
    results = []
    for path in paths:
        params = {} if small else SITE_PARAMETERS.get(path.stem, {})
        if progress:
            print(f"site: running {path.name} {params or '(defaults)'} ...", flush=True)
        result = build_page(path, out, params, timeout)
        if progress:
            print(f"site:   {'ok' if result.ok else 'FAILED ' + result.error} in {result.seconds:.0f} s",
                  flush=True)
        results.append(result)
    write_index(out, results, small=small)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "site"), help="output folder (recreated)")
    parser.add_argument("--only", nargs="+", default=None, help="notebook names (e.g. 00_tour); default: all")
    parser.add_argument("--small", action="store_true", help="run with the notebooks' CI-sized defaults")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = build_site(args.out, args.only, args.small, args.timeout)
    failed = [r.name for r in results if not r.ok]
    print(f"site: {len(results) - len(failed)}/{len(results)} notebooks in {time.perf_counter() - start:.0f} s -> "
          f"{Path(args.out) / 'index.html'}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
