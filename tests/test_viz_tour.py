"""viz.tour: the methods table links notebooks that exist and marks the rest as coming."""
import json

import pytest

from viz import tour
from viz.theme import METHOD_COLORS


def _notebook(path, title):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", "text"]}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_links_existing_and_marks_missing(tmp_path):
    _notebook(tmp_path / "00_tour.ipynb", "Tour")
    _notebook(tmp_path / "01_dilated_attention.ipynb", "Dilated attention")
    _notebook(tmp_path / "09_passkey.ipynb", "Passkey retrieval")
    table = tour.methods_markdown(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    assert len(rows) == len(tour.METHODS)
    assert "[01_dilated_attention](01_dilated_attention.ipynb)" in rows["Dilated attention (LongNet)"]
    assert "[00_tour](00_tour.ipynb)" in rows["Dense attention"]
    assert rows["RETRO"].endswith("*coming* |")
    listing = tour.notebooks_markdown(tmp_path)
    assert "- [09_passkey](09_passkey.ipynb): Passkey retrieval" in listing.splitlines()


def test_title_fallback_and_bad_folder(tmp_path):
    (tmp_path / "broken.ipynb").write_text("not json")
    assert tour.notebook_title(tmp_path / "broken.ipynb") == "broken"
    assert tour.notebooks_markdown(tmp_path).startswith("- [broken](broken.ipynb): broken")
    with pytest.raises(ValueError, match="directory"):
        tour.methods_markdown(tmp_path / "missing")


def test_every_method_has_a_colour_and_a_paper():
    for m in tour.METHODS:
        assert m.key in METHOD_COLORS
        # arXiv for every paper; ReRoPE was published only as its author's post
        assert m.url.startswith("https://arxiv.org/abs/") or (m.key, m.url) == ("rerope", "https://kexue.fm/archives/9708")
        assert m.keywords or m.notebook
