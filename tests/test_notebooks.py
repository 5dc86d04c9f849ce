"""Every notebooks/*.ipynb runs headless through papermill, and is committed clean.

- test_notebook_runs: papermill.execute_notebook with the notebook's default parameters (plus the CI
  overrides in CI_PARAMETERS), kernel python3, cwd notebooks/, store_widget_state=False (a FigureWidget
  would otherwise store ~5 MB of plotly.js), output to a temp dir. LONGLAB_HEADLESS=1 makes viz render plain
  go.Figure outputs instead of live widgets. Any cell error fails the test.
- test_notebook_is_clean: no outputs, no execution counts, first code cell tagged `parameters`.
- test_notebook_pair_in_sync: every notebook is a jupytext pair (notebooks/NAME.py, py:percent, the source that
  ruff lints, and notebooks/NAME.ipynb); their cells (type, source, tags) agree, and neither exists alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))
SOURCES = sorted(NOTEBOOK_DIR.glob("*.py"))

# Per-notebook parameter overrides for CI, e.g. {"01_dilated_attention.ipynb": {"N": 256}}.
# Prefer small defaults in the notebook's own `parameters` cell; use this only when a default must stay big.
CI_PARAMETERS: dict[str, dict] = {}


def _ids(paths):
    return [p.name for p in paths]


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("LONGLAB_HEADLESS", "1")
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(out), parameters=CI_PARAMETERS.get(path.name, {}), kernel_name="python3",
        cwd=str(NOTEBOOK_DIR), store_widget_state=False, progress_bar=False, log_output=False,
    )  # raises PapermillExecutionError on the first failing cell
    executed = json.loads(out.read_text(encoding="utf-8"))
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {[e.get('ename') for e in errors]}"
    ran = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in ran), f"{path.name}: some code cells did not run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), (
        f"{path.name}: the first code cell must be tagged `parameters` (papermill injects CI values after it)"
    )
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; clear them"


def _cells(nb) -> list[tuple[str, str, list]]:
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", [])) for c in nb["cells"]]


def test_every_notebook_has_a_source():
    assert SOURCES, "no notebooks/*.py sources found"
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS], (
        "every notebooks/NAME.ipynb needs its jupytext source notebooks/NAME.py and vice versa; "
        "create the missing one with `jupytext --sync` (pairing is configured in jupytext.toml)"
    )


@pytest.mark.parametrize("source", SOURCES, ids=_ids(SOURCES))
def test_notebook_pair_in_sync(source):
    jupytext = pytest.importorskip("jupytext")
    from_source = _cells(jupytext.read(source))
    committed = _cells(json.loads(source.with_suffix(".ipynb").read_text(encoding="utf-8")))
    assert committed == from_source, (
        f"notebooks/{source.stem}.ipynb differs from {source.name}; run `jupytext --sync notebooks/{source.name}`"
    )
