"""data/make_readme_figures.py builds labelled figures, and (where kaleido + Chromium exist) exports PNGs."""
import importlib.util
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "data" / "make_readme_figures.py"


def _load():
    spec = importlib.util.spec_from_file_location("make_readme_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_are_labelled():
    figs = _load().figures()
    assert set(figs) == {"dilated_pattern", "dense_cost", "readme"}
    for fig in figs.values():
        assert isinstance(fig, go.Figure) and fig.layout.title.text
        assert "(" in fig.layout.xaxis.title.text  # axis states its unit


def test_side_by_side_copies_traces():
    module = _load()
    figs = module.figures()
    before = figs["dense_cost"].to_json()
    combined = module.side_by_side(figs["dilated_pattern"], figs["dense_cost"])
    assert figs["dense_cost"].to_json() == before  # sources untouched
    assert len(combined.data) == len(figs["dilated_pattern"].data) + len(figs["dense_cost"].data)
    assert {t.xaxis or "x" for t in combined.data} == {"x", "x2", "x3"}
    assert combined.layout.xaxis2.type == combined.layout.xaxis3.type == "log"


@pytest.mark.slow
def test_export_png(tmp_path):
    pytest.importorskip("kaleido", reason="kaleido is not installed (extra `export`)")
    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        pytest.skip("kaleido needs a Chromium/Chrome on PATH")
    (path,) = _load().main(tmp_path, names=["dilated_pattern"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
