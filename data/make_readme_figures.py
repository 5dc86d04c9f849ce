"""Export the README pictures to data/figures/*.png: `make figures` (or run this file with .venv/bin/python).

The figures are the same viz functions the tour notebook shows. Static export uses kaleido 1.x, which
drives a Chromium it finds by itself (Debian's /usr/bin/chromium here); install the `export` extra.
"""
from __future__ import annotations

from pathlib import Path

from longlab.attention.patterns import Dilated, SlidingWindow
from viz.complexity import dense_cost_figure
from viz.pattern_heatmap import make_pattern, pattern_heatmap

OUT = Path(__file__).resolve().parent / "figures"


def figures() -> dict:
    """name -> go.Figure for every README picture."""
    return {
        "dilated_pattern": pattern_heatmap(make_pattern("dilated", segment=4, ratio=2, branches=3), 32, heads=4),
        "dense_cost": dense_cost_figure(
            [2**k for k in range(10, 21)],
            patterns={"sliding window 4096": SlidingWindow(window=4096),
                      "LongNet dilated, w = 2k..32k, r = 1..16": Dilated((2048, 4096, 8192, 16384, 32768),
                                                                        (1, 2, 4, 8, 16))}),
    }


def main(out: Path = OUT, names: list[str] | None = None) -> list[Path]:
    """Write the PNGs (all, or only `names`) into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures().items():
        if names is not None and name not in names:
            continue
        path = out / f"{name}.png"
        fig.write_image(path, scale=1)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
