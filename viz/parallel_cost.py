"""Communication volume and work per rank for the sequence-parallel methods: formulas (lines) with the
counts `SimGroup` recorded (markers) on top, zigzag vs contiguous causal work, measured vs modelled time."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from longlab.parallel import ALL_METHODS, cost, get_method
from longlab.parallel.methods.ring import causal_pairs_per_rank
from viz.parallel_compare import method_options, simulated_bytes
from viz.theme import COLORS, axis_label, method_color

# one line per distinct volume (zigzag sends exactly what ring sends)
METHODS = tuple(name for name in ALL_METHODS if get_method(name).same_volume_as is None)


def _formula(method, world, seq_len, heads, head_dim, base):
    work = cost.Workload(seq_len, heads, head_dim, opts=method_options(method, seq_len, base))
    return max(cost.bytes_per_rank(method, world, work))


def _runs_at(method, world, seq_len, heads, base) -> bool:
    """Whether the method accepts these sizes (e.g. Ulysses needs P to divide H)."""
    try:
        get_method(method).validate(heads, seq_len, world, method_options(method, seq_len, base))
    except ValueError:
        return False
    return True


def volume_figure(seq_len=512, world=4, heads=8, head_dim=16, worlds=(2, 4, 8), seq_lens=(256, 512, 1024, 2048),
                  methods=METHODS, simulate_counts=True, base=64) -> go.Figure:
    """Two panels: bytes sent per rank (forward, float32) vs P at N=seq_len, and vs N at P=world.
    Lines: `cost` formulas; markers: bytes counted by the simulator (formula-only methods such as
    Megatron-SP have no markers and a muted line)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"vs ranks P (N = {seq_len})", f"vs length N (P = {world})"))
    for method in methods:
        runnable = get_method(method).runnable
        color = method_color(method) if runnable else COLORS["muted"]
        for col, xs, point in ((1, worlds, lambda p: (p, seq_len)), (2, seq_lens, lambda n: (world, n))):
            pts = [(x, *point(x)) for x in xs if _runs_at(method, *point(x), heads, base)]
            ys = [_formula(method, p, n, heads, head_dim, base) for _, p, n in pts]
            fig.add_trace(go.Scatter(x=[x for x, _, _ in pts], y=ys, mode="lines", name=method, legendgroup=method,
                                     showlegend=col == 1, line=dict(color=color)), row=1, col=col)
            if simulate_counts and runnable:
                sim = [max(simulated_bytes(method, p, n, heads, head_dim, base)) for _, p, n in pts]
                fig.add_trace(go.Scatter(x=[x for x, _, _ in pts], y=sim, mode="markers", name=f"{method} simulated",
                                         legendgroup=method, showlegend=col == 1,
                                         marker=dict(color=color, size=9, symbol="circle-open", line=dict(width=2))),
                              row=1, col=col)
    fig.update_layout(title=f"Bytes each rank sends per layer (forward), H={heads}, D={head_dim}, float32")
    fig.update_xaxes(type="log", dtick=0.30103)
    fig.update_yaxes(type="log", title_text=axis_label("bytes sent per rank", "B"), row=1, col=1)
    fig.update_yaxes(title_text=axis_label("bytes sent per rank", "B"), row=1, col=2)
    fig.update_xaxes(title_text=axis_label("ranks P", "processes"), row=1, col=1)
    fig.update_xaxes(title_text=axis_label("sequence length N", "tokens"), row=1, col=2)
    fig.update_layout(height=420)
    return fig


def causal_work_figure(seq_len=1024, world=4) -> go.Figure:
    """Causal query-key pairs each rank scores in ring attention: contiguous layout vs zigzag."""
    fig = go.Figure()
    for layout, name in (("contiguous", "ring"), ("zigzag", "zigzag")):
        counts = causal_pairs_per_rank(seq_len, world, layout)
        fig.add_trace(go.Bar(x=[f"rank {r}" for r in range(world)], y=counts, name=f"{layout} layout",
                             marker_color=method_color(name)))
    ideal = seq_len * (seq_len + 1) / 2 / world
    fig.add_hline(y=ideal, line_dash="dot", line_color=COLORS["muted"], annotation_text="perfect balance")
    fig.update_layout(title=f"Causal work per rank (N = {seq_len}, P = {world})", xaxis_title="rank",
                      yaxis_title=axis_label("query-key pairs scored", "pairs"))
    fig.update_layout(barmode="group")
    return fig


def measured_figure(rows) -> go.Figure:
    """Measured seconds per rank (bars, real gloo processes) beside the alpha-beta model of the communication
    alone (diamonds); rows from `viz.parallel_compare.measure_methods`."""
    fig = go.Figure()
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        fig.add_trace(go.Bar(x=[f"{method} r{r['rank']}" for r in mine], y=[r["measured_s"] for r in mine],
                             name=f"{method} measured", marker_color=method_color(method)))
        fig.add_trace(go.Scatter(x=[f"{method} r{r['rank']}" for r in mine], y=[r["model_comm_s"] for r in mine],
                                 mode="markers", name=f"{method} model (comm only)",
                                 marker=dict(symbol="diamond", size=10, color=COLORS["ink"])))
    fig.update_layout(title="Real gloo run: measured time per rank vs the alpha-beta communication model",
                      xaxis_title="method, rank", yaxis_title=axis_label("time", "s"))
    fig.update_yaxes(type="log")
    return fig
