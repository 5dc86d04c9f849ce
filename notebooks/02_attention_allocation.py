# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: jupyter,tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · How attention is allocated over distance
#
# **The problem.** A sparse pattern decides, before any training, which keys a token can look at. Dilated attention
# keeps every nearby key but only a thinning fraction of far ones. Is that a good budget? Dense attention spends
# the same on every distance; a window spends nothing beyond its width. Where does dilated attention put its
# attention, how fast does it fall with distance, and what does a *trained* model do with the keys it is given?
#
# **What you will see.** The number of keys a query sees at each distance (with fitted decay laws and an
# explanation of their shape), the attention weight a kernel really spends there (random inputs, then a trained
# dense and a trained dilated TinyLM), and how many layers a token needs to reach any other.
#
# LongNet's design principle (Ding et al. 2023, [arXiv 2307.02486](https://arxiv.org/abs/2307.02486), sec. 2.2):
# *"attention allocation decreases exponentially as the distance between tokens grows"*. With the geometric
# schedule $w_i = w_0\alpha^i$, $r_i = \alpha^i$ ($w_i$ the segment length and $r_i$ the dilation rate of branch $i$,
# $\alpha$ the common ratio of both), branch $i$ reaches distances up to $w_i$ but sees only a
# $1/r_i$ fraction of the keys there, so each doubling of distance costs a constant factor of keys. This notebook
# **measures** that allocation instead of asserting it:
#
# * **structural**: for each distance $d = |i - j|$, how many keys at distance $d$ a query can see (averaged over
#   queries and heads), for dense attention, a sliding window and dilated mixes, with fitted exponential and
#   power laws;
# * **effective**: the attention weight the kernel actually puts at distance $d$ on random inputs
#   (rebuilt from the kernel's own lse: $p_{ij} = m_{ij} e^{s_{ij} - \mathrm{lse}_i}$);
# * **dependency path length**: how many layers until any token can influence any other, vs $N$.

# %% tags=["parameters"]
# CI-sized defaults. Larger: N = 2048 (allocation, ~10 s), PATH_SIZES up to 2048 (path length is O(N^3)).
W0, ALPHA, BRANCHES = 16, 2, 4     # w_i = W0 * ALPHA**i, r_i = ALPHA**i
N, HEADS, HEAD_DIM = 512, 4, 16
CAUSAL = False
PATH_SIZES = [64, 128, 256, 512]
SEED = 0

# %%
import math

import torch
from IPython.display import Markdown, display

from longlab.analysis.allocation import effective_allocation, fit_decay, keys_vs_distance, log_binned
from longlab.analysis.paths import dependency_path_length
from longlab.attention.floatlike import FloatLike
from longlab.attention.patterns import Dense, Dilated, SlidingWindow
from viz.allocation import allocation_explorer, effective_figure, path_length_figure, structural_figure
from viz.dilated_explorer import markdown_table
from viz.teaching import answer

dilated = Dilated.geometric(W0, ALPHA, BRANCHES, causal=CAUSAL)
patterns = {"dense": Dense(CAUSAL), f"sliding window {W0}": SlidingWindow(W0, CAUSAL),
            f"dilated w0={W0}, alpha={ALPHA}, {BRANCHES} branches": dilated,
            "float-like m=1 (notebook 08)": FloatLike(1, CAUSAL)}
dilated

# %% [markdown]
# ## 1. Structural allocation: keys a query can see at each distance
#
# Distances are averaged over geometric bins (dilation leaves keys only at multiples of $r_i$, a comb; the bin
# mean is the density of visible keys per unit distance). Dense attention sees about 2 keys at every distance
# (left and right; edge effects pull it down near $N$); a window sees 2 up to its width and nothing beyond;
# the dilated mix decays step by step. Sliders: $w_0$, $\alpha$, branches, $N$ (in a live kernel).
#
# **Try this** (answers computed below the figure and the fit; click to open):
# 1. Set $\alpha = 1$. What is left of the decay?
# 2. With $\alpha = 2$, move branches from 2 to 5, then try $\alpha = 3$: which fit (exponential or power law)
#    wins, and why does it change?
# 3. Double $N$ beyond the longest segment: what changes at short distances, what beyond $w_{\max}$?

# %%
allocation_explorer(W0, ALPHA, BRANCHES, N, HEADS, causal=CAUSAL)

# %%
d, counts = keys_vs_distance(dilated, HEADS, N)
centres, means = log_binned(d, counts)
fits = fit_decay(centres, means)
bands = {}
for i in range(BRANCHES - 1):  # distance bands [w_i, alpha * w_i) below the longest segment
    lo = W0 * ALPHA**i
    band = (d >= lo) & (d < ALPHA * lo)
    bands[lo] = counts[band].mean()
steps = [bands[b] / bands[a] for a, b in zip(bands, list(bands)[1:])]
better = max(fits.values(), key=lambda f: f.r2)
display(Markdown(
    f"Dilated mix: a query sees **{counts.sum():.1f} distinct keys** on average (dense: {N}). "
    f"{fits['exponential'].describe()}; {fits['power'].describe()}; the better fit here is the "
    f"**{better.kind}** law. Per {ALPHA}-fold step in distance (from one branch's reach to the next) the keys "
    f"per unit distance shrink by " + (", ".join(f"{s:.2f}x" for s in steps) or "(one branch: no step)")
    + f"; the schedule predicts about 1/alpha^2 = {1 / ALPHA**2:.2f}x per step (each branch keeps 1/r_i of the "
    f"queries and 1/r_i of the keys): a constant factor per branch, i.e. geometric decay in the branch index, "
    f"and no key at all beyond the longest segment ({W0 * ALPHA ** (BRANCHES - 1)} tokens)."))

# %% [markdown]
# **Reading the fit.** A query and a key at distance $d$ meet in branch $i$ only when both rows are kept (each with
# probability $1/r_i$) and they fall in the same segment (probability $1 - d/w_i$ for $d < w_i$). So the keys per
# unit distance are about $\sum_{i:\,w_i > d} (1 - d/w_i)/r_i^2$. For $d$ between $w_{i-1}$ and $w_i$ the first
# branch that still reaches dominates, giving $1/r_i^2 = (w_0/w_i)^2 \approx (w_0/d)^2$: each $\alpha$-fold step in
# distance costs a factor $\alpha^2$, which is a **power law** $d^{-2}$ in distance (geometric, i.e. exponential,
# decay in the *branch index*: that is what the paper's "decreases exponentially" means), and it stops dead at the
# **cut-off** $w_{\max}$, the longest segment. The fitted exponent comes out below 2 because the shorter branches
# add their $(1 - d/w_i)$ tails. Which fit wins depends on how many octaves of distance the schedule spans: over a
# short span (few branches, small $\alpha$) the curve is dominated by the fall-off near the cut-off, which an
# exponential imitates well; once $w_{\max}/w_0 = \alpha^{\text{branches}-1}$ spans many octaves the straight line in
# log-log space (the power law) wins. The answers below compute it across the sliders' settings.

# %% jupyter={"source_hidden": true}
flat = Dilated.geometric(W0, 1, BRANCHES, causal=CAUSAL)
d1, c1 = keys_vs_distance(flat, HEADS, N)
winners = []
for alpha in (2, 3):
    for branches in (2, 3, 4, 5):
        n_fit = max(N, W0 * alpha ** (branches - 1))
        fit = fit_decay(*log_binned(*keys_vs_distance(Dilated.geometric(W0, alpha, branches, causal=CAUSAL),
                                                      HEADS, n_fit)))
        win = max(fit.values(), key=lambda f: f.r2)
        winners.append({"alpha": alpha, "branches": branches, "span w_max / w0": alpha ** (branches - 1),
                        "exponential R^2": round(fit["exponential"].r2, 3), "power R^2": round(fit["power"].r2, 3),
                        "power exponent": round(fit["power"].rate, 2), "wins": win.kind})
long = Dilated.geometric(W0, ALPHA, BRANCHES, causal=CAUSAL)
w_max = long.segment_lengths[-1]
d2, c2 = keys_vs_distance(long, HEADS, 2 * N)
display(answer(
    f"1. α = 1 makes every branch the same: w = {W0}, r = 1. A query sees {c1[1:W0].mean():.2f} keys per unit "
    f"distance below {W0} and {c1[W0:].sum():.0f} beyond: the {BRANCHES} branches all show the same block of {W0} "
    f"tokens (the lse merge counts each key {BRANCHES} times, which leaves the weights unchanged). A block-local "
    f"window: no decay, no reach.\n\n"
    f"2. Which fit wins (W0 = {W0}, N = max({N}, w_max)):\n\n" + markdown_table(winners) + "\n\n"
    f"The power law takes over once the span w_max / w0 reaches "
    f"{min(r['span w_max / w0'] for r in winners if r['wins'] == 'power')}; its exponent climbs towards 2 as the span "
    f"grows.\n\n"
    f"3. At N = {2 * N} the keys per unit distance at distances 1-8 are {c2[1:9].mean():.3f} (at N = {N}: "
    f"{counts[1:9].mean():.3f}) and beyond w_max = {w_max}: {c2[w_max:].sum():.1f} keys: longer inputs add segments, "
    f"not reach. Only a longer branch (more branches or a larger w0) reaches further."))

# %% [markdown]
# Counting each key once per branch that shows it (what the lse merge weights by) instead of once:

# %%
display(structural_figure({"dilated, distinct keys": dilated, "float-like m=1 (notebook 08)": FloatLike(1, CAUSAL)},
                          HEADS, N, fit=None))
display(structural_figure({"dilated, counted per branch": dilated}, HEADS, N, union=False, fit=None))

# %% [markdown]
# ## 2. Effective allocation: where the kernel's attention weight goes
#
# Random $q, k, v$ (batch 2) go through the kernel (`dilated_attention`, or the masked reference for dense and
# window patterns); the weights are rebuilt from the kernel's lse, so each row sums to 1 exactly when the lse is
# the true normaliser (checked below). On random inputs the scores carry no information, so the weight follows
# the structural allocation: the kernel spends its attention exactly where the pattern puts keys. (A trained
# model's attention adds content-driven locality on top: see the optional cell below.)

# %%
gen = torch.Generator().manual_seed(SEED)
q, k, v = (torch.randn(2, HEADS, N, HEAD_DIM, generator=gen) for _ in range(3))
results = {name: effective_allocation(p, q, k, v) for name, p in patterns.items()}
display(effective_figure(results))
rows = []
for name, res in results.items():
    c, m = log_binned(res.distance, res.weight)
    far = res.weight[N // 2:].sum()
    rows.append({"pattern": name, "rows covered": res.covered, "max ∣row sum − 1∣": res.max_row_error,
                 "weight within 16 tokens": float(res.weight[:16].sum()), "weight beyond N/2": float(far)})
display(Markdown(markdown_table(rows)))

# %% [markdown]
# **Trained models: dense and dilated.** Two byte-level TinyLMs of the same size (3 layers, 4 heads, context 256)
# trained on the standard library's own Python files: `tiny_memorizing` (its first layer is dense) and
# `tiny_dilated` (every layer dilated, segments 32-256, rates 1-8; `data/make_dilated_checkpoint.py`). The next
# cell runs both on held-out Python files, captures the first layer's real queries and keys, and measures the
# same curve, next to random inputs through the same patterns (what the structure alone would give). Without the
# checkpoint files it does nothing.

# %%
from pathlib import Path

import longlab

CHECKPOINTS = Path(longlab.__file__).resolve().parents[1] / "data" / "checkpoints"
if (CHECKPOINTS / "tiny_memorizing.safetensors").exists() and (CHECKPOINTS / "tiny_dilated.safetensors").exists():
    from longlab.analysis.allocation import capture_qk
    from longlab.models import load_checkpoint
    from longlab.tasks import held_out_long_files

    docs = held_out_long_files(8)
    trained = {}
    for name in ("tiny_memorizing", "tiny_dilated"):
        model, _ = load_checkpoint(CHECKPOINTS / f"{name}.safetensors")
        cfg = model.config
        layer = 0
        pattern = (Dilated(cfg.segment_lengths, cfg.dilation_rates, causal=True) if cfg.attention[layer] == "dilated"
                   else Dense(causal=True))
        idx = torch.stack([doc.tokens()[: cfg.context] for doc in docs])
        q_t, k_t, v_t = capture_qk(model, idx, layer)
        kind = cfg.attention[layer]
        trained[f"{kind}, trained ({name} layer {layer})"] = effective_allocation(pattern, q_t, k_t, v_t)
        random_qkv = [torch.randn(q_t.shape, generator=gen) for _ in range(3)]
        trained[f"{kind}, random q and k"] = effective_allocation(pattern, *random_qkv)
    n_t = q_t.shape[2]
    display(effective_figure(trained, title=f"Trained vs random attention over distance (N = {n_t}, causal)"))
    rows_t = []
    for name, res in trained.items():
        fit_t = fit_decay(*log_binned(res.distance, res.weight))
        rows_t.append({"model": name, "weight within 8 tokens": round(float(res.weight[:8].sum()), 3),
                       "weight beyond 32 tokens": round(float(res.weight[32:].sum()), 3),
                       "better fit": max(fit_t.values(), key=lambda f: f.r2).kind,
                       "power exponent": round(fit_t["power"].rate, 2)})
    display(Markdown(markdown_table(rows_t)))
    dil_t = trained[next(k for k in trained if k.startswith("dilated, trained"))]
    dense_t = trained[next(k for k in trained if k.startswith("dense, trained"))]
    display(Markdown(
        f"Both trained layers put far more weight on the nearest 8 bytes than their structure alone would (dense: "
        f"{dense_t.weight[:8].sum():.2f} vs {trained['dense, random q and k'].weight[:8].sum():.2f} on random inputs; "
        f"dilated: {dil_t.weight[:8].sum():.2f} vs {trained['dilated, random q and k'].weight[:8].sum():.2f}). "
        f"Training adds content-driven locality on top of whatever the pattern allows. Beyond 32 bytes the trained "
        f"dense layer still spends {dense_t.weight[32:].sum():.3f} of its weight, the trained dilated layer "
        f"{dil_t.weight[32:].sum():.3f}: where the pattern thins far keys, the trained model leans even harder on "
        f"the near ones."))


# %% [markdown]
# ## 3. Token-dependency path length
#
# One layer lets information flow from key $j$ to query $i$ when some head's query $i$ sees $j$. Stacking layers
# composes these graphs; the path length is the number of layers until every token can reach every other
# (causal: every later one). Dense: 1. A sliding window of width $w$: about $N / w$. Dilated with branches up to
# $N$ ($w_i = w_0\alpha^i$ until $w_i \ge N$): logarithmic in $N$ (LongNet's Table 1: $O(\log N)$).

# %%
def dilated_for(n):
    branches = max(1, math.ceil(math.log(max(n / W0, 1), ALPHA)) + 1)
    return Dilated.geometric(W0, ALPHA, branches, causal=CAUSAL)

table = {"dense": [], f"sliding window {W0}": [], f"dilated w0={W0}, alpha={ALPHA}, branches up to N": []}
for n in PATH_SIZES:
    for name, p in zip(table, (Dense(CAUSAL), SlidingWindow(W0, CAUSAL), dilated_for(n))):
        table[name].append((n, dependency_path_length(p, HEADS, n)))
display(path_length_figure(table))
display(Markdown(markdown_table([{"N": n, **{name: pts[i][1] for name, pts in table.items()}}
                                 for i, n in enumerate(PATH_SIZES)])))

# %% [markdown]
# ## What to remember
#
# - A geometric schedule ($w_i = w_0\alpha^i$, $r_i = \alpha^i$) gives keys per unit distance falling about as
#   $d^{-2}$ (a factor $\alpha^2$ per $\alpha$-fold distance), with a hard cut-off at the longest segment.
# - Which decay law fits best depends on how many octaves the schedule spans; "exponential" in the paper means per
#   branch, not per token of distance.
# - Trained models concentrate weight near the query far beyond what the pattern imposes, dense or dilated.
# - Dilated attention keeps a logarithmic path length: any token reaches any other in O(log N) layers.
