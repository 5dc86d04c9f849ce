"""Hypothesis strategies shared by the pattern and kernel tests."""
from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def dilated_branches(draw, max_branches=4, max_multiple=8, max_heads=6):
    """(segment_lengths, dilation_rates, heads, offsets) of a random valid LongNet pattern: rates 1-4 (3 included,
    so H is often not a multiple of r), each length a multiple of its rate, offsets "reference", "paper" or an
    explicit per-branch, per-head list."""
    branches = draw(st.integers(1, max_branches))
    rates = [draw(st.sampled_from([1, 2, 3, 4])) for _ in range(branches)]
    lengths = [r * draw(st.integers(1, max_multiple)) for r in rates]
    heads = draw(st.integers(1, max_heads))
    mode = draw(st.sampled_from(["reference", "paper", "list"]))
    offsets = [[draw(st.integers(0, r - 1)) for _ in range(heads)] for r in rates] if mode == "list" else mode
    return lengths, rates, heads, offsets
