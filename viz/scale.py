"""Figures of the scale benchmarks (`longlab bench dilated --scale`, `longlab bench memory --scale`), drawn from
their recorded CSV rows (strings, as `longlab.bench.common.read_csv` returns them) or from fresh rows."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from longlab.bench._dilated_scale import QUIET_LOAD  # the load average below which a 2-core machine is quiet
from longlab.bench._memory_scale import FLOAT32_SCAN  # the search without its bfloat16 screen

from .theme import BRANCH_COLORS, COLORS, axis_label, method_color


def _true(value) -> bool:
    return str(value) in ("True", "true", "1")


def load_note(rows) -> str:
    """'quiet machine' or 'measured under load (1-min load average up to X)', from the rows' load columns."""
    worst = max(max(float(r["load_before"]), float(r["load_after"])) for r in rows)
    return "quiet machine" if worst < QUIET_LOAD else f"measured under load (1-min load average up to {worst:.1f})"


def dilated_scale_figure(rows, title: str = "LongNet on a laptop") -> go.Figure:
    """Forward time and peak memory against N (log-log): dilated (full and causal) vs dense SDPA, the dense
    points measured (markers) or extrapolated by N^2 / N (dashed)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("forward time", "peak memory beyond the inputs"))
    fwd = [r for r in rows if r["pass"] == "fwd"]
    for causal, dash in ((False, "solid"), (True, "dot")):
        part = sorted((r for r in fwd if _true(r["causal"]) == causal), key=lambda r: int(r["N"]))
        mode = "causal" if causal else "full"
        n = [int(r["N"]) for r in part]
        for col, key in ((1, "dilated_s"), (2, "dilated_peak_mib")):
            fig.add_trace(go.Scatter(x=n, y=[float(r[key]) for r in part], mode="lines+markers",
                                     name=f"dilated ({mode})", legendgroup=f"dilated {mode}", showlegend=col == 1,
                                     line={"color": method_color("dilated"), "dash": dash}), row=1, col=col)
        for measured in (True, False):
            pts = [r for r in part if r["sdpa_s"] != "" and (r["sdpa_source"] == "measured") == measured]
            label = f"dense SDPA ({mode}, {'measured' if measured else 'extrapolated'})"
            for col, key in ((1, "sdpa_s"), (2, "sdpa_peak_mib")):
                fig.add_trace(go.Scatter(
                    x=[int(r["N"]) for r in pts], y=[float(r[key]) for r in pts], name=label, legendgroup=label,
                    showlegend=col == 1, mode="markers" if measured else "lines",
                    marker={"color": method_color("dense"), "size": 9, "symbol": "circle" if not causal else "square"},
                    line={"color": method_color("dense"), "dash": "dash" if not causal else "dashdot"}), row=1, col=col)
    for col, unit in ((1, "s"), (2, "MiB")):
        fig.update_xaxes(type="log", title_text=axis_label("sequence length N", "tokens"), row=1, col=col)
        fig.update_yaxes(type="log", title_text=axis_label("time" if col == 1 else "peak memory", unit),
                         row=1, col=col)
    fig.update_layout(title=f"{title}: 8 heads, d = 64 ({load_note(rows)})", width=1000, height=440)
    return fig


def _per_query_ms(row) -> float:
    """Search time per query in milliseconds (rows of different sizes may use different query counts)."""
    return 1000 * float(row["search_s"]) / int(row["queries"])


def memory_scale_figure(rows, title: str = "kNN memory search at scale") -> go.Figure:
    """Left: exact top-k search time per query against memory size (longlab vs faiss brute force) and the best
    faiss IVF setting reaching recall >= 0.95; right: recall@k against search time per query of faiss IVF over
    nprobe at each size. Per query, because the largest memories may be searched with fewer queries."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("search time against memory size",
                                                        "approximate search: recall against time"))
    sizes = sorted({int(r["keys"]) for r in rows})
    for method, color, dash in (("exact (KVMemory)", method_color("memorizing"), None),
                                (FLOAT32_SCAN, method_color("memorizing"), "dot"),
                                ("faiss flat (knn_inner_product)", method_color("dense"), None)):
        part = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["keys"]))
        if not part:  # older records have no float32-only rows
            continue
        fig.add_trace(go.Scatter(x=[int(r["keys"]) for r in part], y=[_per_query_ms(r) for r in part],
                                 mode="lines+markers", name=method, line={"color": color, "dash": dash},
                                 text=[f"{r['queries']} queries" for r in part]), row=1, col=1)
    best = []
    for i, n in enumerate(sizes):
        ivf = [r for r in rows if int(r["keys"]) == n and r["method"].startswith("faiss ivf")]
        if not ivf:
            continue
        good = [r for r in ivf if float(r["recall"]) >= 0.95]
        if good:
            best.append(min(good, key=lambda r: float(r["search_s"])))
        fig.add_trace(go.Scatter(x=[_per_query_ms(r) for r in ivf], y=[float(r["recall"]) for r in ivf],
                                 mode="lines+markers", name=f"faiss IVF, {n:,} keys",
                                 text=[r["method"].split()[-1] for r in ivf],
                                 line={"color": BRANCH_COLORS[(i + 2) % len(BRANCH_COLORS)]}), row=1, col=2)
    if best:
        fig.add_trace(go.Scatter(x=[int(r["keys"]) for r in best], y=[_per_query_ms(r) for r in best],
                                 mode="lines+markers", name="faiss IVF, fastest with recall >= 0.95",
                                 line={"color": COLORS["accent"], "dash": "dash"}), row=1, col=1)
    time_title = axis_label("search time per query", "ms")
    fig.update_xaxes(type="log", title_text=axis_label("memory size", "keys"), row=1, col=1)
    fig.update_yaxes(type="log", title_text=time_title, row=1, col=1)
    fig.update_xaxes(type="log", title_text=time_title, row=1, col=2)
    fig.update_yaxes(title_text=axis_label("recall@k", "fraction of exact top-k"), range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=f"{title} ({load_note(rows)})", width=1000, height=440)
    return fig


def dilated_scale_summary(rows) -> str:
    """Markdown sentences computed from the dilated scale rows: the largest N forward (time, peak, branches),
    causal, dense extrapolated there, forward+backward rows, and whether the machine was quiet."""
    fwd = [r for r in rows if r["pass"] == "fwd"]
    top = max(int(r["N"]) for r in fwd)
    at_top = {_true(r["causal"]): r for r in fwd if int(r["N"]) == top}
    lines = []
    for causal, r in sorted(at_top.items()):
        dense = (f"; dense SDPA {float(r['sdpa_s']):,.3g} s ({r['sdpa_source']}), dense / dilated = "
                 f"{float(r['sdpa_s']) / float(r['dilated_s']):,.3g}x" if r["sdpa_s"] != "" else "")
        lines.append(f"- N = {top:,} ({'causal' if causal else 'full'}), {r['branches']} branches: "
                     f"**{float(r['dilated_s']):,.1f} s**, peak **{float(r['dilated_peak_mib']) / 1024:.2f} GiB** "
                     f"beyond the inputs{dense}.")
    for r in (r for r in rows if r["pass"] == "fwd+bwd"):
        lines.append(f"- forward + backward at N = {int(r['N']):,}: {float(r['dilated_s']):,.1f} s, peak "
                     f"{float(r['dilated_peak_mib']) / 1024:.2f} GiB.")
    lines.append(f"- Timings: {load_note(rows)}; peak memory does not depend on load.")
    return "\n".join(lines)


def memory_scale_summary(rows) -> str:
    """Markdown sentences computed from the memory scale rows at the largest memory size."""
    top = max(int(r["keys"]) for r in rows)
    at = {r["method"]: r for r in rows if int(r["keys"]) == top}
    exact = at["exact (KVMemory)"]
    lines = [f"- {top:,} keys: exact top-{exact['k']} for {exact['queries']} queries in "
             f"**{float(exact['search_s']):,.1f} s**, resident memory {float(exact['rss_gib']):.1f} GiB "
             f"(keys and values), adding at {float(exact['add_keys_per_s']) / 1e6:.1f}M keys/s."]
    scan = at.get(FLOAT32_SCAN)
    if scan:
        lines.append(f"- The same search without the bfloat16 screen (a float32 scan of every key): "
                     f"{float(scan['search_s']):,.1f} s, so the screen makes it "
                     f"{float(scan['search_s']) / float(exact['search_s']):.2f}x faster; "
                     f"{float(scan['same_neighbours']):.4f} of its neighbours are the screened search's.")
    flat = at.get("faiss flat (knn_inner_product)")
    if flat:
        lines.append(f"- faiss brute force on the same keys: {float(flat['search_s']):,.1f} s "
                     f"(longlab / faiss = {float(exact['search_s']) / float(flat['search_s']):.2f}), "
                     f"{float(flat['same_neighbours']):.4f} of its neighbours are longlab's.")
    ivf = [r for r in rows if int(r["keys"]) == top and r["method"].startswith("faiss ivf")]
    if ivf:
        good = [r for r in ivf if float(r["recall"]) >= 0.95]
        pick = min(good, key=lambda r: float(r["search_s"])) if good else max(ivf, key=lambda r: float(r["recall"]))
        lines.append(f"- faiss IVF: {'fastest with recall@k >= 0.95' if good else 'best recall'} is "
                     f"{pick['method'].split()[-1]}: recall {float(pick['recall']):.3f} at "
                     f"{float(pick['speedup_vs_exact']):.1f}x the exact speed (index built once in "
                     f"{float(pick['build_s']):,.0f} s).")
    for method in ("save (streaming safetensors)", "load (streaming safetensors)"):
        if method in at:
            lines.append(f"- {method}: {float(at[method]['search_s']):,.1f} s, peak tensors "
                         f"{float(at[method]['peak_mib']) / 1024:.2f} GiB.")
    lines.append(f"- Timings: {load_note(rows)}; memory numbers do not depend on load.")
    return "\n".join(lines)


_SCALE_VIEWS = {"dilated": (dilated_scale_figure, dilated_scale_summary, "LongNet on a laptop"),
                "memory": (memory_scale_figure, memory_scale_summary, "kNN memory at scale")}


def scale_record(csv_path, kind: str) -> list:
    """What a notebook displays for a recorded `longlab bench <kind> --scale` run (kind 'dilated' or 'memory'):
    [figure, Markdown summary], or one Markdown line saying how to record it when the CSV is absent."""
    from pathlib import Path

    from IPython.display import Markdown

    from longlab.bench.common import read_csv

    if kind not in _SCALE_VIEWS:
        raise ValueError(f"kind={kind!r} is not a scale benchmark; use one of {sorted(_SCALE_VIEWS)}")
    figure, summary, title = _SCALE_VIEWS[kind]
    path = Path(csv_path)
    if not path.exists():
        return [Markdown(f"*No recorded scale run at {path}; run `longlab bench {kind} --scale`.*")]
    rows = read_csv(path)
    return [figure(rows, title=f"{title} ({path.name})"), Markdown(summary(rows))]
