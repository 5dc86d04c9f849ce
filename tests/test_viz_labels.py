"""Every axis of every viz figure says what it shows: an axis with tick labels has a title, and an axis of
numbers names its unit in parentheses, "quantity (unit)" (viz.theme.axis_label). Category axes (method names,
"head 0", ...) need a title but no unit. The figures are the cases of test_viz_json (one per figure function)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from test_viz_json import cases, memory_objects  # noqa: F401  (memory_objects is a fixture used below)


def _numeric(values) -> bool:
    if values is None:  # a heatmap without x/y: positions 0..n-1
        return True
    flat = np.asarray(values, dtype=object).ravel().tolist()
    return all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool)) for v in flat)


def _numeric_axis(arrays) -> bool:
    """True when the axis shows numbers: some trace puts values on it and all of them are numbers."""
    shown = [a for a in arrays if a is None or len(a)]
    return bool(shown) and all(_numeric(a) for a in shown)


def unlabelled_axes(fig) -> list[str]:
    """'xaxis2: ...' for every shown axis of `fig` that lacks a title, or a unit when it carries numbers."""
    problems = []
    layout = fig.layout.to_plotly_json()
    refs = sorted({getattr(t, f"{letter}axis", None) or letter for t in fig.data for letter in "xy"
                   if hasattr(t, f"{letter}axis")})
    for ref in refs:
        letter, number = ref[0], ref[1:]
        key = f"{letter}axis{number}"
        axis = layout.get(key, {})
        if axis.get("visible") is False or axis.get("showticklabels") is False:
            continue
        traces = [t for t in fig.data if (getattr(t, f"{letter}axis", None) or letter) == ref]
        title = (axis.get("title") or {}).get("text") or ""
        if not title.strip():
            problems.append(f"{key}: no title")
        elif _numeric_axis([getattr(t, letter, None) for t in traces]) and not re.search(r"\(.+\)", title):
            problems.append(f"{key}: '{title}' carries numbers but names no unit in parentheses")
    return problems


def test_every_axis_is_labelled_with_units(memory_objects):  # noqa: F811
    bad = {name: found for name, build in cases(memory_objects).items() if (found := unlabelled_axes(build()))}
    assert not bad, f"axes without a title or a unit: {bad}"


def test_the_check_finds_a_missing_title_and_unit():
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    assert unlabelled_axes(fig) == ["xaxis: no title", "yaxis: no title"]
    fig.update_layout(xaxis_title="time", yaxis_title="method")
    assert unlabelled_axes(fig) == ["xaxis: 'time' carries numbers but names no unit in parentheses",
                                    "yaxis: 'method' carries numbers but names no unit in parentheses"]
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).update_layout(xaxis_title="method", yaxis_title="time (s)")
    assert unlabelled_axes(fig) == []
