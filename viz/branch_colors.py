"""Colour each query-key cell by the set of branches through which a head sees it: the one helper behind
every pattern heatmap (viz.pattern_heatmap, viz.dilated_explorer.head_grid).

A cell's branch set is a bitmask (bit b set = branch b shows the key). `BranchSets` lists the sets present,
their legend labels and colours; `category_z` turns the bitmasks into heatmap categories. Unseen cells are
None (JSON null, drawn as a gap) rather than NaN: NaN is not valid JSON, and a live FigureWidget sends its
data as JSON (jupyter-client warns "Out of range float values are not JSON compliant").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viz.theme import COLORS, branch_color


def _rgb(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], dtype=float)


def combo_color(branches: tuple[int, ...]) -> str:
    """Blend of the branches' colours, darkened by 18% per branch beyond the first."""
    mix = np.mean([_rgb(branch_color(b)) for b in branches], axis=0)
    mix *= 0.82 ** (len(branches) - 1)
    return "#" + "".join(f"{int(round(c)):02x}" for c in mix)


def branch_codes(masks: np.ndarray) -> np.ndarray:
    """masks: bool (branches, ...), e.g. `Pattern.branch_masks(heads, n)` (branches, H, N, N).
    Returns int64 (...): the bitmask of the branches that show each cell (0 = unseen)."""
    masks = np.asarray(masks).astype(np.int64)
    weights = 1 << np.arange(masks.shape[0], dtype=np.int64)
    return np.tensordot(weights, masks, axes=1)


@dataclass(frozen=True)
class BranchSets:
    """The non-empty branch sets present in some bitmask array, in increasing bitmask order."""

    codes: tuple[int, ...]  # bitmasks
    combos: tuple[tuple[int, ...], ...]  # branch indices of each set
    labels: tuple[str, ...]  # "w=4, r=1 + w=8, r=2 (x2)"
    colors: tuple[str, ...]

    @classmethod
    def of(cls, codes: np.ndarray, names: list[str]) -> BranchSets:
        present = tuple(sorted(int(c) for c in np.unique(codes) if c))
        combos = tuple(tuple(b for b in range(len(names)) if c >> b & 1) for c in present)
        labels = tuple(" + ".join(names[b] for b in combo) + (f" (x{len(combo)})" if len(combo) > 1 else "")
                       for combo in combos)
        return cls(present, combos, labels, tuple(combo_color(combo) for combo in combos))

    def colorscale(self) -> list:
        """Step colour scale: category k (z = k, with zmin=-0.5, zmax=len-0.5) gets colors[k]."""
        colors = self.colors or (COLORS["empty"],)
        k = len(colors)
        scale = []
        for i, color in enumerate(colors):
            scale += [[i / k, color], [(i + 1) / k, color]]
        return scale

    def heatmap_range(self) -> dict:
        """zmin/zmax that centre each category on its colour step."""
        return dict(zmin=-0.5, zmax=max(len(self.codes), 1) - 0.5)

    def category_z(self, codes: np.ndarray) -> np.ndarray:
        """object array shaped like `codes`: the index of each cell's set in `self.codes`, None if unseen."""
        index = np.full(codes.shape, -1, dtype=np.int64)
        for k, c in enumerate(self.codes):
            index[codes == c] = k
        z = index.astype(object)
        z[index < 0] = None
        return z

    def cell_labels(self, codes: np.ndarray) -> np.ndarray:
        """object array shaped like `codes`: each cell's set label ('' if unseen), for hover text."""
        lookup = dict(zip(self.codes, self.labels))
        return np.vectorize(lambda c: lookup.get(int(c), ""), otypes=[object])(codes)
