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
# # 01 · LongNet dilated attention: the pattern explorer
#
# LongNet (Ding et al. 2023, [arXiv 2307.02486](https://arxiv.org/abs/2307.02486)) replaces dense attention by
# a **mix of dilated branches**. Branch $i$ has a segment length $w_i$ and a dilation rate $r_i$:
#
# 1. cut the sequence into segments of $w_i$ tokens (eq. 4): $\tilde Q_k = [Q_{k w_i}, Q_{k w_i + r_i}, \dots]$,
#    keeping every $r_i$-th row of segment $k$ (the same rows for $K$ and $V$) (eq. 5);
# 2. run dense attention inside each sparsified segment (eq. 6):
#    $\tilde O_k = \mathrm{softmax}(\tilde Q_k \tilde K_k^T)\tilde V_k$;
# 3. scatter the rows back (rows not kept get 0) and concatenate the segments (eq. 7);
# 4. combine the branches with weights proportional to their softmax denominators (eqs. 9-10):
#    $O = \sum_i \alpha_i O_i$, $\alpha_i = s_i / \sum_j s_j$, i.e. $\alpha_i = \mathrm{softmax}_i(\mathrm{lse}_i)$.
#
# Step 4 is exactly the log-sum-exp `merge` (`longlab.merge`): the result equals **one softmax over the
# concatenation of all branches' keys**, where a key that several branches show counts once per branch.
# With the geometric schedule $w_i = w_0\alpha^i$, $r_i = \alpha^i$ each branch costs $2 N d\, w_i / r_i^2$ FLOPs
# per head for $QK^T$, so the total grows linearly in $N$.
#
# **Head offsets.** Different heads keep different rows so that, together, they cover every position. LongNet's
# released code gives head $h$ the offset $h // \lceil H / r \rceil$ (contiguous blocks of heads, `offsets="reference"`,
# the default); the paper's text says $h \bmod r$ (`offsets="paper"`).
#
# Everything below is drawn from the very `Dilated` pattern object the kernel `longlab.dilated_attention` runs.

# %% tags=["parameters"]
# CI-sized defaults. Larger: N = 128, RUNTIME_SIZES = [4096, 16384] (minutes), or run the full benchmark:
#   longlab bench dilated          (N = 4k..64k, 8 heads, d = 64, w = [2048, 4096, 8192], r = [1, 2, 4])
W0, ALPHA, BRANCHES = 4, 2, 3      # w_i = W0 * ALPHA**i, r_i = ALPHA**i
N, HEADS, HEAD = 32, 4, 0          # sequence length, number of heads, head shown
CAUSAL, OFFSETS = False, "reference"
QUERY = 12                         # the query whose keys we list
BLOCK = 16                         # tile size of the block-mask figure (FlexAttention uses 128 at real sizes)
MASK_N = 256                       # sequence length of the masking-vs-gathering figure
FLOP_SIZES = [2**k for k in range(10, 21)]
RUNTIME_SIZES = [2048, 4096]       # measured here with w = [256, 512, 1024], r = [1, 2, 4]

# %%
import torch
from IPython.display import Markdown, display

import longlab
from longlab.analysis.complexity import masked_costs
from longlab.attention.patterns import Dense, Dilated, SlidingWindow
from longlab.bench.common import DEFAULT_DIR, read_csv
from longlab.bench.dilated import measure
from viz.dilated_explorer import (
    dilated_explorer,
    flops_figure,
    head_grid,
    markdown_table,
    masking_vs_gathering,
    query_keys,
    runtime_figure,
)

pattern = Dilated.geometric(W0, ALPHA, BRANCHES, causal=CAUSAL, offsets=OFFSETS)
pattern

# %% [markdown]
# ## 1. The pattern, coloured by branch
#
# Each cell (query $i$, key $j$) is coloured by the set of branches through which the chosen head sees key $j$;
# darker blends mark keys seen through several branches (multiplicity > 1). Move the sliders (in a live kernel).

# %%
dilated_explorer(W0, ALPHA, BRANCHES, N, HEADS, HEAD, CAUSAL, OFFSETS)

# %% [markdown]
# ## 2. Every head keeps different rows
#
# Small multiples for all heads: with `offsets="reference"` heads $0..\lceil H/r\rceil-1$ keep rows $\equiv 0$,
# the next block keeps rows $\equiv 1$, and so on; the union over heads covers every position in every branch.

# %%
display(head_grid(pattern, N, HEADS))
offsets = {name: {mode: Dilated(pattern.segment_lengths, pattern.dilation_rates, offsets=mode).head_offsets(b, HEADS)
                  for mode in ("reference", "paper")} for b, name in enumerate(pattern.branch_names())}
display(Markdown(markdown_table([{"branch": name, **{m: str(o) for m, o in modes.items()}}
                                 for name, modes in offsets.items()])))

# %% [markdown]
# ## 3. The keys one query sees

# %%
display(query_keys(pattern, N, HEADS, HEAD, QUERY))
keys = pattern.keys_for(QUERY, HEAD, HEADS, N)
distinct = len(set(torch.cat(list(keys.values())).tolist()))
counted = sum(len(v) for v in keys.values())
display(Markdown(f"Query {QUERY} of head {HEAD} sees **{distinct} distinct keys** out of {N}; the merge counts "
                 f"**{counted}** (a key shown by several branches counts once per branch). "
                 f"`dedupe=True` counts each key once."))

# %% [markdown]
# ## 4. The kernel computes exactly this pattern
#
# `dilated_attention` gathers each branch's kept rows into dense blocks, runs the exact flash kernel `attend` on
# them (gradients flow through both the output and the lse), scatters back and merges by lse. Checked here
# against the dense float64 reference with the pattern's multiplicity mask, on fresh random inputs:

# %%
q, k, v = (torch.randn(2, HEADS, N, 8, dtype=torch.float64) for _ in range(3))
rows = []
for dedupe in (False, True):
    out, lse = longlab.dilated_attention(q, k, v, list(pattern.segment_lengths), list(pattern.dilation_rates),
                                         causal=CAUSAL, offsets=OFFSETS, dedupe=dedupe, return_lse=True)
    mult = pattern.multiplicity(HEADS, N)
    ref_out, ref_lse = longlab.reference_attention(q, k, v, causal=CAUSAL,
                                                   multiplicity=(mult > 0).long() if dedupe else mult)
    finite = torch.isfinite(ref_lse)
    rows.append({"dedupe": dedupe, "max |out - reference|": float((out - ref_out).abs().max()),
                 "max |lse - reference|": float((lse[finite] - ref_lse[finite]).abs().max())})
display(Markdown(markdown_table(rows)))

# %% [markdown]
# ## 5. FLOPs grow linearly
#
# FLOPs of $QK^T$ and $PV$ (all heads), counted by each pattern object from its own index sets:

# %%
big = {"dense": Dense(), "sliding window 2048": SlidingWindow(2048),
       "dilated w=[2048, 4096, 8192], r=[1, 2, 4]": Dilated((2048, 4096, 8192), (1, 2, 4))}
display(flops_figure(big, FLOP_SIZES, head_dim=64, heads=8))
dil = big["dilated w=[2048, 4096, 8192], r=[1, 2, 4]"]
for n in (16384, 65536):
    ratio = Dense().flops(n, 64, 8) / dil.flops(n, 64, 8)
    display(Markdown(f"N = {n}: dense / dilated FLOPs = **{ratio:.2f}x**; the paper's estimate "
                     f"4 N d sum(w_i / r_i^2) = {dil.flops_formula(n, 64, 8):.3e}, "
                     f"counted = {dil.flops(n, 64, 8):.3e}."))

# %% [markdown]
# ## 6. Why gather rows instead of masking
#
# A masked kernel (e.g. FlexAttention with a `mask_mod`) skips only **tiles** that are entirely masked. Dilated
# rows are spread over the whole segment, so almost every tile inside a segment holds some kept pair: the
# block-sparse kernel still computes nearly all of each segment. Gathering the kept rows into small dense blocks
# computes only the pairs the pattern keeps.

# %%
mask_pattern = Dilated.geometric(16, ALPHA, BRANCHES + 1, causal=CAUSAL, offsets=OFFSETS)
display(masking_vs_gathering(mask_pattern, MASK_N, HEADS, HEAD, BLOCK))
costs = masked_costs(mask_pattern, HEADS, MASK_N, head_dim=64, block=BLOCK)
try:  # FlexAttention's own BlockMask for the same mask_mod (works on CPU in torch >= 2.5)
    block_mask = mask_pattern.flex_block_mask(HEADS, MASK_N, BLOCK)
    source = f"FlexAttention `create_block_mask` reports {block_mask.sparsity():.1f}% of tiles skipped"
except Exception as err:  # noqa: BLE001 - report and fall back to the pattern's own tile count
    source = f"FlexAttention unavailable ({type(err).__name__}); tile count from the pattern object"
display(Markdown(
    f"{source}; the pattern's own count says {100 * (1 - mask_pattern.block_density(HEADS, MASK_N, BLOCK)):.1f}%. "
    f"A block-masked kernel does **{costs['block mask'] / costs['gathered']:.1f}x** the FLOPs of the gathered one "
    f"(dense masking: {costs['dense mask'] / costs['gathered']:.1f}x)."))

# %% [markdown]
# ## 7. Measured runtime (small, CI-sized)
#
# Dense SDPA vs `dilated_attention` with the same causality, forward, 8 heads, d = 64 (segment lengths scaled
# down to fit CI). The full benchmark (N up to 65536, forward and forward+backward, peak memory) is
# `longlab bench dilated`; its recorded CSV is shown after, when present.

# %%
measured = measure(RUNTIME_SIZES, heads=8, head_dim=64, segment_lengths=(256, 512, 1024), dilation_rates=(1, 2, 4),
                   repeats=1, progress=False)
display(runtime_figure(measured, title="Measured here (noisy on a shared machine)"))
display(Markdown(markdown_table(measured, ["N", "causal", "pass", "dilated_s", "sdpa_s", "speedup",
                                           "flop_ideal_speedup"])))

# %%
recorded = DEFAULT_DIR / "dilated_cpu.csv"
if recorded.exists():
    table = read_csv(recorded)
    display(runtime_figure(table, title=f"Recorded benchmark ({recorded.name}, {table[0]['device']})"))
    display(Markdown(markdown_table(table, ["N", "causal", "pass", "dilated_s", "sdpa_s", "speedup",
                                            "flop_ideal_speedup", "dilated_peak_mib", "sdpa_peak_mib"])))
