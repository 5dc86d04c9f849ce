"""Figures for notebook 08 (related work and the seed's ideas), each drawn from the object its kernel runs.

- `linear_weights(q, k)`: softmax weights next to linear attention's phi(q).phi(k) weights (same q, k);
- `rerope_positions(n, window, leak)`: the relative position each (query, key) pair is rotated by;
- `pooled_keys(n, block, window)`: which exact keys and which pooled blocks each query sees;
- `floatlike_pattern(n, mantissa_bits)`: the float-like mask, with keys-per-query against N beside LongNet's;
- `page_scores(cache, q, pages_kept)`: every page's upper bound against its true best logit, kept pages marked;
- `decode_cache(segment_lengths, dilation_rates, heads, n)`: dilated decode cache size against a dense cache;
and `*_explorer` wrappers with sliders (static figures when headless).
"""
from __future__ import annotations

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from longlab.attention.dilated_decode import cache_size_curve
from longlab.attention.floatlike import FloatLike
from longlab.attention.linear import elu_feature_map
from longlab.attention.paged_kv import PagedKVCache
from longlab.attention.patterns import Dilated
from longlab.attention.pooling import pooled_key_set
from longlab.attention.rerope import rerope_relative
from viz.theme import COLORS, axis_label, branch_color
from viz.widgets import explorer, gaps


def _mask_heatmap(z, name, colorscale=None, zmax=None):
    return go.Heatmap(z=z, colorscale=colorscale or [[0, COLORS["empty"]], [1, branch_color(0)]], showscale=False,
                      zmin=0, zmax=zmax, hovertemplate=f"{name}: query %{{y}}, key %{{x}}: %{{z}}<extra></extra>")


def linear_weights(q: torch.Tensor, k: torch.Tensor) -> go.Figure:
    """Causal weight matrices for q, k (N, D): softmax(q k^T / sqrt(D)) and phi(q) phi(k)^T normalised per row."""
    n = q.shape[0]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    soft = (q @ k.T / q.shape[1] ** 0.5).masked_fill(~causal, float("-inf")).softmax(-1)
    lin = (elu_feature_map(q) @ elu_feature_map(k).T) * causal
    lin = lin / lin.sum(-1, keepdim=True)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["softmax attention", "linear attention, phi = elu + 1"],
                        horizontal_spacing=0.08)
    for col, w in ((1, soft), (2, lin)):
        fig.add_trace(go.Heatmap(z=w.numpy(), zmin=0, zmax=1, colorscale="Blues", showscale=col == 2,
                                 colorbar=dict(title="weight"),
                                 hovertemplate="query %{y}, key %{x}: %{z:.3f}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed", title_text=axis_label("query position", "token"), col=1)
    fig.update_yaxes(autorange="reversed", col=2)
    fig.update_xaxes(title_text=axis_label("key position", "token"))
    fig.update_layout(title=f"The same q, k (N = {n}): linear attention's weights are flatter (no exponential)",
                      height=420, width=860)
    return fig


def rerope_positions(n: int = 48, window: int = 16, leak: float = 0.0) -> go.Figure:
    """Heatmap of rel(i, j) (the rotation between query i and key j) for RoPE and (leaky) ReRoPE; leak 0 = plain."""
    idx = torch.arange(n)
    dist = (idx[:, None] - idx[None, :]).clamp(min=0)
    rel = rerope_relative(dist, window, None if leak == 0 else leak)
    causal = idx[None, :] <= idx[:, None]
    name = "ReRoPE" if leak == 0 else f"leaky ReRoPE, s = {leak:g}"
    fig = make_subplots(rows=1, cols=2, subplot_titles=["RoPE: i - j", f"{name}: w = {window}"],
                        horizontal_spacing=0.08)
    for col, z in ((1, dist.double()), (2, rel)):
        fig.add_trace(go.Heatmap(z=gaps(z.numpy(), causal.numpy()), zmin=0, zmax=n - 1,
                                 colorscale="Viridis", showscale=col == 2,
                                 colorbar=dict(title="relative<br>position"),
                                 hovertemplate="query %{y}, key %{x}: rel %{z:.2f}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed", title_text=axis_label("query position i", "token"), col=1)
    fig.update_yaxes(autorange="reversed", col=2)
    fig.update_xaxes(title_text=axis_label("key position j", "token"))
    fig.update_layout(title=f"Relative position each pair is rotated by (N = {n}): at most {float(rel.max()):.1f} "
                            f"with {name}, {n - 1} with RoPE", height=430, width=880)
    return fig


def pooled_keys(n: int = 48, block: int = 4, window: int = 8) -> go.Figure:
    """query x [exact keys | pooled blocks] visibility (the key set `pooled_attention` uses)."""
    seen = pooled_key_set(n, block, window).int()
    blocks = seen.shape[1] - n
    fig = make_subplots(rows=1, cols=2, column_widths=[n, max(blocks, 1)], horizontal_spacing=0.05,
                        subplot_titles=[f"exact keys (window w = {window})", f"pooled blocks of p = {block}"])
    fig.add_trace(_mask_heatmap(seen[:, :n].numpy(), "exact", zmax=1), row=1, col=1)
    fig.add_trace(_mask_heatmap(seen[:, n:].numpy(), "pooled",
                                [[0, COLORS["empty"]], [1, branch_color(1)]], zmax=1), row=1, col=2)
    fig.update_yaxes(autorange="reversed", title_text=axis_label("query position", "token"), col=1)
    fig.update_yaxes(autorange="reversed", col=2)
    fig.update_xaxes(title_text=axis_label("key position", "token"), col=1)
    fig.update_xaxes(title_text=axis_label("block index b", "block"), col=2)
    fig.update_layout(title=f"Token pooling, N = {n}: {int(seen.sum())} scored pairs vs {n * (n + 1) // 2} dense",
                      height=430, width=880)
    return fig


def floatlike_pattern(n: int = 64, mantissa_bits: int = 1) -> go.Figure:
    """The causal float-like mask and the keys per query against N (float-like m, LongNet, dense)."""
    pattern = FloatLike(mantissa_bits, causal=True)
    mask = pattern.branch_masks(1, n)[0, 0].int()
    sizes = [2**k for k in range(6, 21)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=[f"float-like m = {mantissa_bits}, N = {n}", "keys per query (mean) vs N"])
    fig.add_trace(_mask_heatmap(mask.numpy(), "float-like", zmax=1), row=1, col=1)
    curves = {f"float-like m = {mantissa_bits}": [pattern.pairs(1, s) / s for s in sizes],
              "LongNet w0 = 64, 2^i": [Dilated.geometric(64, 2, max(1, s.bit_length() - 6), causal=True).pairs(1, s) / s
                                       for s in sizes],
              "dense": [(s + 1) / 2 for s in sizes]}
    for i, (name, ys) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=sizes, y=ys, name=name, mode="lines+markers", line=dict(color=branch_color(i))),
                      row=1, col=2)
    fig.update_yaxes(autorange="reversed", title_text=axis_label("query position", "token"), row=1, col=1)
    fig.update_xaxes(title_text=axis_label("key position", "token"), row=1, col=1)
    fig.update_xaxes(type="log", title_text=axis_label("sequence length N", "tokens"), row=1, col=2)
    fig.update_yaxes(type="log", title_text=axis_label("keys per query", "keys"), row=1, col=2)
    fig.update_layout(title="Dense nearby, 2^m keys per octave further out: O(2^m log N) keys per query",
                      height=440, width=920, legend=dict(x=0.58, y=0.98))
    return fig


def page_scores(cache: PagedKVCache, q: torch.Tensor, pages_kept: int, head: int = 0) -> go.Figure:
    """Per page of one head: the upper bound u(q, page) and the true best logit max q.k in it; kept pages marked."""
    bounds = cache.page_scores(q)[head]
    keys, _ = cache.gather(torch.arange(cache.num_pages).expand(cache.heads, -1))
    logits = keys[head] @ q[head]
    pad = cache.num_pages * cache.page_size - logits.shape[0]
    best = torch.nn.functional.pad(logits, (0, pad), value=float("-inf")).view(-1, cache.page_size).amax(-1)
    kept = cache.select_pages(q, pages_kept)[head].tolist()
    pages = list(range(cache.num_pages))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=pages, y=bounds.tolist(), name="upper bound u(q, page)",
                         marker_color=[branch_color(1) if p in kept else COLORS["muted"] for p in pages]))
    fig.add_trace(go.Scatter(x=pages, y=best.tolist(), mode="markers", name="true max q.k in the page",
                             marker=dict(color=branch_color(0), size=7)))
    fig.update_layout(title=f"Head {head}: {len(kept)} of {cache.num_pages} pages read (orange: top-{pages_kept} "
                            f"by bound + the current page)", height=380, width=880, barmode="overlay",
                      xaxis_title=axis_label("logical page", "page"),
                      yaxis_title=axis_label("score q . k (before the 1/sqrt(D) scale)", "a.u."),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def decode_cache(segment_lengths=(16, 32, 64), dilation_rates=(1, 2, 4), heads: int = 4, n: int = 256) -> go.Figure:
    """Entries per head a dilated decode cache holds after each token, against a dense cache (all tokens)."""
    sizes = cache_size_curve(segment_lengths, dilation_rates, heads, n)
    bound = sum(w // r for w, r in zip(segment_lengths, dilation_rates))
    t = list(range(1, n + 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=t, name="dense cache (every token)", line=dict(color=COLORS["muted"])))
    fig.add_trace(go.Scatter(x=t, y=sizes.tolist(), name="dilated: keys still needed",
                             line=dict(color=branch_color(0))))
    fig.add_trace(go.Scatter(x=[1, n], y=[bound, bound], name=f"bound sum w/r = {bound}", mode="lines",
                             line=dict(color=branch_color(1), dash="dash")))
    fig.update_layout(title=f"Dilated decoding cache, w = {list(segment_lengths)}, r = {list(dilation_rates)}: "
                            f"bounded, not growing with N", height=380, width=880,
                      xaxis_title=axis_label("tokens decoded", "tokens"),
                      yaxis_title=axis_label("cached entries per head", "keys"))
    return fig


def _slider(value, lo, hi, step=1, description=""):
    import ipywidgets as w

    return w.IntSlider(value=value, min=lo, max=hi, step=step, description=description)


def rerope_explorer(n=48, window=16, leak=0.0, flag=None):
    import ipywidgets as w

    return explorer(rerope_positions, {"n": _slider(n, 8, 128, 8, "N"), "window": _slider(window, 1, 64, 1, "w"),
                                       "leak": w.FloatSlider(value=leak, min=0, max=16, step=1,
                                                             description="s (0 = inf)")},
                    flag)


def pooled_explorer(n=48, block=4, window=8, flag=None):
    return explorer(pooled_keys, {"n": _slider(n, 8, 128, 8, "N"), "block": _slider(block, 1, 16, 1, "p"),
                                  "window": _slider(window, 1, 32, 1, "w")}, flag)


def floatlike_explorer(n=64, mantissa_bits=1, flag=None):
    return explorer(floatlike_pattern, {"n": _slider(n, 16, 256, 16, "N"),
                                        "mantissa_bits": _slider(mantissa_bits, 0, 5, 1, "m")}, flag)


def paged_explorer(keys, values, q, page_size=16, pages_kept=4, flag=None):
    """Sliders for the page size and the pages kept K over fixed keys (H, N, D), values and a query (H, D)."""
    def figure(page_size, pages_kept):
        n = keys.shape[1]
        cache = PagedKVCache(keys.shape[0], keys.shape[2], page_size, -(-n // page_size) * page_size,
                             value_dim=values.shape[2], dtype=keys.dtype)
        cache.append(keys, values)
        return page_scores(cache, q, pages_kept)

    return explorer(figure, {"page_size": _slider(page_size, 4, 64, 4, "page size"),
                             "pages_kept": _slider(pages_kept, 1, 32, 1, "K")}, flag)
