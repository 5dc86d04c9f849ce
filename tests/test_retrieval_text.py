"""Retrieved memory entries as table rows with their text (longlab.analysis.retrieval_text)."""
from __future__ import annotations

import pytest
import torch

from longlab.analysis.retrieval_text import (
    byte_context,
    markdown_text,
    most_confident_query,
    retrieved_text_rows,
)
from longlab.memory.retrievals import Retrievals


def _retrievals():
    tokens = torch.tensor(list(b"def f(x):\n    return x\ndef g(y):\n"), dtype=torch.long)
    heads, t, k = 2, tokens.numel(), 3
    positions = torch.full((heads, t, k), -1)
    scores = torch.full((heads, t, k), float("nan"))
    weights = torch.full((heads, t, k), float("nan"))
    positions[1, 24] = torch.tensor([0, 4, -1])  # the second "def" retrieves the first "d" and "f"
    scores[1, 24] = torch.tensor([0.9, 0.5, float("nan")])
    weights[1, 24] = torch.tensor([0.2, 0.7, float("nan")])
    return Retrievals(positions, scores, weights, positions.clone(), torch.zeros(heads), tokens, 8, 0)


def test_rows_sorted_by_weight_with_text_and_distance():
    ret = _retrievals()
    assert most_confident_query(ret) == (24, 1)
    rows = retrieved_text_rows(ret, 24, 1)
    assert [r["retrieved byte"] for r in rows] == [4, 0]  # weight 0.7 first; the empty slot is skipped
    assert rows[0]["bytes back"] == 20 and rows[0]["cosine"] == 0.5
    assert rows[1]["text around it"] == "⟦d⟧ef f"
    assert byte_context(ret.tokens, 9, before=3, after=2) == "x):⟦⏎⟧  "


def test_markdown_text_escapes_table_and_html_specials():
    assert markdown_text("a | b <x> __init__") == "a \\| b \\<x\\> \\_\\_init\\_\\_"
    assert markdown_text("plain text, 1.5") == "plain text, 1.5"


def test_bad_input():
    ret = _retrievals()
    with pytest.raises(ValueError, match="head"):
        retrieved_text_rows(ret, 24, 5)
    with pytest.raises(ValueError, match="pos"):
        byte_context(ret.tokens, 999)
    ret.scores[:] = float("nan")
    with pytest.raises(ValueError, match="nothing was retrieved"):
        most_confident_query(ret)
