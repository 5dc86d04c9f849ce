"""Walk through a sequence-parallel algorithm step by step: which rank holds which q/k/v blocks, drawn
from the trace `longlab.parallel.simulate` recorded (replayed by `longlab.parallel.holdings`)."""
from __future__ import annotations

from functools import lru_cache

import plotly.graph_objects as go

from longlab.parallel import METHODS, simulate
from longlab.parallel.holdings import holdings
from viz.parallel_compare import method_options, random_qkv
from viz.theme import COLORS, method_color
from viz.widgets import explorer

_LEVELS = ["nothing", "own shard", "received earlier", "arrived this step"]


@lru_cache(maxsize=64)
def recorded(method: str, world: int, seq_len: int, heads: int, causal: bool):
    """(trace, stages) for a small random run (cached: sliders redraw without re-running)."""
    q, k, v = random_qkv(seq_len, heads, head_dim=4)
    _, trace = simulate(method, q, k, v, world, causal=causal, **method_options(method, seq_len, base=seq_len // 4))
    return trace, holdings(trace, method)


def step_figure(trace, stages, method: str, step: int) -> go.Figure:
    """Heatmap rank x sequence chunk at stage `step` (0 = before any transfer); cell text = blocks held."""
    step = max(0, min(step, len(stages) - 1))
    stage = stages[step]
    world, chunks = len(stage.held), len(stage.held[0])
    z, text = [], []
    for r in range(world):
        row_z, row_t = [], []
        for c in range(chunks):
            held = stage.held[r][c]
            level = 3 if stage.new[r][c] else 1 if c in stage.own[r] else 2 if held else 0
            row_z.append(level)
            row_t.append("<br>".join(sorted(held)))
        z.append(row_z), text.append(row_t)
    scale = [[0.0, COLORS["empty"]], [0.249, COLORS["empty"]], [0.25, "#dbe4ff"], [0.499, "#dbe4ff"],
             [0.5, "#d3f9d8"], [0.749, "#d3f9d8"], [0.75, method_color(method)], [1.0, method_color(method)]]
    fig = go.Figure(go.Heatmap(
        z=z, text=text, texttemplate="%{text}", zmin=0, zmax=3, colorscale=scale, xgap=2, ygap=2,
        x=[f"chunk {c}" for c in range(chunks)], y=[f"rank {r}" for r in range(world)],
        colorbar=dict(tickvals=[0.4, 1.1, 1.9, 2.6], ticktext=_LEVELS, title="block"),
        hovertemplate="%{y}, %{x}<br>holds: %{text}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    if stage.step is None:
        title = f"{method}: before any transfer (each rank holds its own shard)"
    else:
        moved = sum(e.nbytes for e in stage.events)
        ops = sorted({e.op for e in stage.events})
        title = f"{method}: step {step} of {len(stages) - 1}, {', '.join(ops)}: {moved:,} bytes moved"
        lines = [f"rank {e.src} -> {e.dst}: {e.what} ({e.nbytes:,} B)" for e in stage.events[:6]]
        if len(stage.events) > 6:
            lines.append(f"... and {len(stage.events) - 6} more transfers")
        fig.add_annotation(text="<br>".join(lines), xref="paper", yref="paper", x=0, y=-0.32, showarrow=False,
                           align="left", xanchor="left", yanchor="top", font=dict(size=11, color=COLORS["muted"]))
    fig.update_layout(title=title, xaxis_title="sequence chunk (positions split into equal chunks)", yaxis_title="rank")
    fig.update_layout(height=220 + 55 * world, margin=dict(b=90 + 16 * min(len(stage.events), 7)))
    return fig


def trace_figure(method="ring", world=4, seq_len=64, heads=4, causal=False, step=1) -> go.Figure:
    """Run (cached) and draw stage `step`; a method/world mismatch (Ulysses with P not dividing H) is shown
    as a message figure, because that limit is part of the lesson."""
    try:
        trace, stages = recorded(method, world, seq_len, heads, causal)
    except ValueError as err:
        fig = go.Figure()
        fig.add_annotation(text=str(err), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_xaxes(visible=False).update_yaxes(visible=False)
        return fig.update_layout(title=f"{method} cannot run here")
    fig = step_figure(trace, stages, method, step)
    case = f"N = {seq_len}, H = {heads}, {'causal' if causal else 'full (non-causal)'} attention"
    return fig.update_layout(title=f"{fig.layout.title.text}<br><sup>{case}</sup>", margin=dict(t=90))


def trace_explorer(method="ring", world=4, seq_len=64, heads=4, causal=False, step=1, flag=None):
    """Sliders: method, P, N, heads, causal, step (steps past the last one show the last)."""
    import ipywidgets as w

    controls = {
        "method": w.Dropdown(options=list(METHODS), value=method, description="method"),
        "world": w.Dropdown(options=[2, 4, 8], value=world, description="P"),
        "seq_len": w.Dropdown(options=[32, 64, 128], value=seq_len, description="N"),
        "heads": w.Dropdown(options=[2, 4, 8], value=heads, description="heads"),
        "causal": w.Checkbox(value=causal, description="causal"),
        "step": w.IntSlider(value=step, min=0, max=8, description="step"),
    }
    return explorer(trace_figure, controls, flag=flag)
