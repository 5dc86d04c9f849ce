"""The static site (viz.site): a small build, one notebook with its CI-sized defaults, checked as HTML.

Fast tests check the pieces (plotly outputs become divs, hidden sources are removed, explorer notes, .ipynb
links become .html); the slow test builds a real page through papermill + nbconvert with no network.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from viz.site import EXPLORER_NOTE, PLOTLY_FILE, _inject_head, build_site, notebook_paths, site_preprocess


def _notebook():
    nb = nbformat.v4.new_notebook()
    figure = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}], "layout": {"title": {"text": "t"}}}
    shown = nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.plotly.v1+json": figure})])
    explorer = nbformat.v4.new_code_cell("pattern_explorer(n=8)", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/plain": "x"})])
    hidden = nbformat.v4.new_code_cell("secret_answer_code()", metadata={"jupyter": {"source_hidden": True}})
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n[next](01_x.ipynb)"), shown, explorer, hidden]
    return nb


def test_preprocess_turns_figures_into_divs_and_marks_explorers_and_hidden_sources():
    nb = _notebook()
    out = site_preprocess(nb, "page")
    html = out.cells[1].outputs[0]["data"]["text/html"]
    assert 'id="page-figure-1"' in html and "Plotly.newPlot" in html and "<script src" not in html
    assert out.cells[2].outputs[0]["data"]["text/html"] == EXPLORER_NOTE
    assert out.cells[3].metadata["transient"]["remove_source"] is True
    assert "application/vnd.plotly.v1+json" in nb.cells[1].outputs[0]["data"]  # the input is not modified


def test_head_loads_local_plotly_first_and_links_point_to_pages():
    page = _inject_head('<html><head><script src="require.js"></script></head><a href="01_x.ipynb#s">'
                        '<a href="https://e.org/a.ipynb">')
    assert page.index(PLOTLY_FILE) < page.index("require.js")
    assert 'href="01_x.html#s"' in page and 'href="https://e.org/a.ipynb"' in page


def test_unknown_notebook_is_refused():
    with pytest.raises(ValueError, match="unknown notebooks"):
        notebook_paths(["99_missing"])


@pytest.mark.slow
@pytest.mark.notebook
def test_small_site_builds_one_notebook(tmp_path):
    pytest.importorskip("papermill")
    out = tmp_path / "site"
    results = build_site(out, only=["00_tour"], small=True, progress=False)
    assert [r.name for r in results] == ["00_tour"] and results[0].ok, results
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="00_tour.html"' in index and "Measured results" in index and "Methods" in index
    page = (out / "00_tour.html").read_text(encoding="utf-8")
    assert len(re.findall(r'class="plotly-graph-div"', page)) >= 2  # the cost figure and the pattern explorer
    assert f'<script src="{PLOTLY_FILE}"></script>' in page and (out / PLOTLY_FILE).stat().st_size > 1e6
    assert "Static view:" in page  # the explorer's default state, with the note that sliders need a kernel
    assert "Traceback" not in page and "Error" not in results[0].title
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page  # no warnings, no errors
    assert "Answer (computed)" in page and "flat_pairs" not in page  # folded answer shown, its source hidden
    assert not re.search(r'href="(?!https?:)[^"]+\.ipynb"', page)  # notebook links point to pages
