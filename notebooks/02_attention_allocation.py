# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# LongNet's design principle (Ding et al. 2023, [arXiv 2307.02486](https://arxiv.org/abs/2307.02486), sec. 2.2):
# *"attention allocation decreases exponentially as the distance between tokens grows"*. With the geometric
# schedule $w_i = w_0\alpha^i$, $r_i = \alpha^i$, branch $i$ reaches distances up to $w_i$ but sees only a
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
from longlab.attention.patterns import Dense, Dilated, SlidingWindow
from viz.allocation import allocation_explorer, effective_figure, path_length_figure, structural_figure
from viz.dilated_explorer import markdown_table

dilated = Dilated.geometric(W0, ALPHA, BRANCHES, causal=CAUSAL)
patterns = {"dense": Dense(CAUSAL), f"sliding window {W0}": SlidingWindow(W0, CAUSAL),
            f"dilated w0={W0}, alpha={ALPHA}, {BRANCHES} branches": dilated}
dilated

# %% [markdown]
# ## 1. Structural allocation: keys a query can see at each distance
#
# Distances are averaged over geometric bins (dilation leaves keys only at multiples of $r_i$, a comb; the bin
# mean is the density of visible keys per unit distance). Dense attention sees about 2 keys at every distance
# (left and right; edge effects pull it down near $N$); a window sees 2 up to its width and nothing beyond;
# the dilated mix decays step by step. Sliders: $w_0$, $\alpha$, branches, $N$ (in a live kernel).

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
# Counting each key once per branch that shows it (what the lse merge weights by) instead of once:

# %%
display(structural_figure({"dilated, distinct keys": dilated}, HEADS, N, fit=None))
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
    rows.append({"pattern": name, "rows covered": res.covered, "max |row sum - 1|": res.max_row_error,
                 "weight within 16 tokens": float(res.weight[:16].sum()), "weight beyond N/2": float(far)})
display(Markdown(markdown_table(rows)))

# %% [markdown]
# **Optional: a trained model.** When the tiny byte-level LM checkpoint exists
# (`data/checkpoints/tiny_memorizing.safetensors`, trained on the standard library's own Python files), the next
# cell measures the same curve on its first dense layer's real queries and keys over held-out Python files;
# without the file it does nothing.

# %%
from pathlib import Path

import longlab

CHECKPOINT = Path(longlab.__file__).resolve().parents[1] / "data" / "checkpoints" / "tiny_memorizing.safetensors"
if CHECKPOINT.exists():  # optional cell: skipped when the checkpoint is absent
    from longlab.analysis.allocation import capture_qk
    from longlab.models import load_checkpoint
    from longlab.tasks import held_out_long_files

    model, _ = load_checkpoint(CHECKPOINT)
    layer = model.config.attention.index("dense")
    docs = held_out_long_files(8)
    idx = torch.stack([doc.tokens()[: model.config.context] for doc in docs])
    q_t, k_t, v_t = capture_qk(model, idx, layer)
    shape = q_t.shape
    random_qkv = (torch.randn(shape, generator=gen) for _ in range(3))
    trained = {f"dense, trained tiny LM (layer {layer})": effective_allocation(Dense(causal=True), q_t, k_t, v_t),
               "dense, random q and k": effective_allocation(Dense(causal=True), *random_qkv)}
    display(effective_figure(trained, title=f"Trained vs random attention over distance (N = {shape[2]}, causal)"))
    res = next(iter(trained.values()))
    fits_t = fit_decay(*log_binned(res.distance, res.weight))
    best_t = max(fits_t.values(), key=lambda f: f.r2)
    display(Markdown(f"Trained layer: {fits_t['exponential'].describe()}; {fits_t['power'].describe()}; better: "
                     f"**{best_t.kind}**. Weight within 8 tokens: **{res.weight[:8].sum():.2f}** "
                     f"(random inputs: {trained['dense, random q and k'].weight[:8].sum():.2f})."))


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
