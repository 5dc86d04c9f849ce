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
# # 01 · LongNet dilated attention: the pattern explorer
#
# **The problem.** Dense attention scores all N² (query, key) pairs. Can a model keep every nearby key, still
# reach far ones, and pay only about N·(a constant) instead of N²? LongNet's answer is to thin the keys more and
# more with distance, in a few "branches", and to glue the branches back together exactly.
#
# **What you will see.** A worked example on 8 tokens with every intermediate number (gather, attend, scatter,
# merge), a check that merging by log-sum-exp equals one softmax over the union of the branches' keys, the
# pattern explorer, the kernel checked against the dense reference, the FLOPs against N, why gathering rows beats
# masking, and measured run times.
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
#    $O = \sum_i \beta_i O_i$, $\beta_i = s_i / \sum_j s_j$, i.e. $\beta_i = \mathrm{softmax}_i(\mathrm{lse}_i)$, where
#    $s_i = \sum_j e^{q \cdot k_j / \sqrt d}$ (over the keys branch $i$ shows the row; $d$ is the head width) is
#    branch $i$'s softmax denominator for that row and
#    $\mathrm{lse}_i = \log s_i$ its log-sum-exp (the kernel returns it next to the output).
#
# **The branches are combined by these lse weights $\beta_i$ (paper eq. 10), not concatenated** (as some summaries
# of LongNet say) and not averaged. Step 4 is exactly the log-sum-exp `merge` (`longlab.merge`): the result equals
# **one softmax over the concatenation of all branches' keys**, where a key that several branches show counts once
# per branch. (Below, $\alpha$ is only the ratio of the geometric schedule; $\beta_i$ are the branch weights.)
# With the geometric schedule $w_i = w_0\alpha^i$, $r_i = \alpha^i$ ($\alpha$ the common ratio) each branch costs
# $2 N d\, w_i / r_i^2$ FLOPs per head for $QK^T$ (the paper's count) and as much again for $PV$: longlab counts
# both, $4 N d\, w_i / r_i^2$ (the same convention as dense attention's $4 d N^2$ in notebook 00), so the total
# grows linearly in $N$.
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
RECORDED_CSV = "../data/bench/dilated_cpu.csv"  # committed `longlab bench dilated` run (path from notebooks/)
SCALE_CSV = "../data/bench/dilated_scale_cpu.csv"  # committed `longlab bench dilated --scale` run (4k..1M)

# %%
from pathlib import Path

import torch
from IPython.display import Markdown, display

import longlab
from longlab.analysis.complexity import masked_costs
from longlab.analysis.dilated_walkthrough import dilated_steps
from longlab.attention.flex import block_mask as flex_block_mask
from longlab.attention.patterns import Dense, Dilated, SlidingWindow
from longlab.bench.common import read_csv
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
from viz.scale import scale_record
from viz.teaching import answer

pattern = Dilated.geometric(W0, ALPHA, BRANCHES, causal=CAUSAL, offsets=OFFSETS)
pattern

# %% [markdown]
# ## 0. A worked example: N = 8, two branches, every number shown
#
# One head, d = 2, branches $(w, r) = (4, 1)$ and $(8, 2)$. **Gather**: branch 1 cuts the 8 tokens into two
# segments of 4 and keeps every row; branch 2 has one segment of 8 and keeps every 2nd row. **Attend**: dense
# softmax attention among the kept rows of each segment, giving each kept row an output and an lse. **Scatter**:
# back to positions; a row a branch does not keep gets out = 0 and lse = −∞ (weight 0). **Merge**: per row,
# $\beta_i = \mathrm{softmax}_i(\mathrm{lse}_i)$ and $O = \sum_i \beta_i O_i$. All computed by
# `longlab.analysis.dilated_walkthrough.dilated_steps`, which calls `longlab.attend` and `longlab.merge`:

# %%
toy = Dilated((4, 8), (1, 2), causal=False)
gen = torch.Generator().manual_seed(0)
tq, tk, tv = (torch.randn(1, 1, 8, 2, generator=gen, dtype=torch.float64) for _ in range(3))
steps = dilated_steps(tq, tk, tv, toy)
display(Markdown(markdown_table([
    {"branch": f"w = {br.segment_length}, r = {br.rate}", "gather: kept rows per segment": str(br.segments)}
    for br in steps.branches])))


def fmt(x):
    return "−∞" if x == float("-inf") else f"{x:.3f}"


kernel_out = longlab.dilated_attention(tq, tk, tv, [4, 8], [1, 2], return_lse=True)[0][0, 0]
display(Markdown(markdown_table([
    {"row": p, "lse₁": fmt(steps.branches[0].lse[p].item()), "lse₂": fmt(steps.branches[1].lse[p].item()),
     "β₁": fmt(steps.weights[0, p].item()), "β₂": fmt(steps.weights[1, p].item()),
     "O₁ (1st dim)": fmt(steps.branches[0].out[p, 0].item()), "O₂ (1st dim)": fmt(steps.branches[1].out[p, 0].item()),
     "merged O (1st dim)": fmt(steps.out[p, 0].item()), "kernel (1st dim)": fmt(kernel_out[p, 0].item())}
    for p in range(8)])))
display(Markdown(f"Odd rows are not kept by branch 2 (lse₂ = −∞), so β₁ = 1 and they are plain block attention. "
                 f"Merged vs `longlab.dilated_attention`: max difference "
                 f"**{(steps.out - kernel_out).abs().max().item():.1e}**."))

# %% [markdown]
# **Merging by lse = one softmax over the union.** Take row 6, kept by both branches: branch 1 shows it keys
# 4-7 (its segment), branch 2 keys 0, 2, 4, 6. Put all eight (key, value) pairs, duplicates included, into *one*
# softmax, and compare with the merge of the two chunks:

# %%
row = 6
chunks = [steps.branches[0].segments[row // 4], steps.branches[1].segments[0]]
union = torch.tensor([p for chunk in chunks for p in chunk])  # concatenation: keys 4 and 6 appear twice
scores = (tq[0, 0, row] @ tk[0, 0, union].T) / 2**0.5
one_softmax = torch.softmax(scores, 0) @ tv[0, 0, union]
display(Markdown(
    f"Keys in the one softmax: {union.tolist()}; weights {[round(x, 3) for x in torch.softmax(scores, 0).tolist()]}. "
    f"lse of that softmax {torch.logsumexp(scores, 0).item():.4f} = merged lse {steps.lse[row].item():.4f} = "
    f"log(e^lse₁ + e^lse₂) = {torch.logaddexp(steps.branches[0].lse[row], steps.branches[1].lse[row]).item():.4f}; "
    f"outputs differ by **{(one_softmax - steps.out[row]).abs().max().item():.1e}**. A key shown by two branches "
    f"simply counts twice."))

# %% [markdown]
# ## 1. The pattern, coloured by branch
#
# Each cell (query $i$, key $j$) is coloured by the set of branches through which the chosen head sees key $j$;
# darker blends mark keys seen through several branches (multiplicity > 1). Move the sliders (in a live kernel).
#
# **Try this** (answers computed below; click to open):
# 1. Set N = 8 (below the longest segment, 16). What does the clamp $w_i \to \min(w_i, N)$ do to the branches?
# 2. Tick `causal`: how many distinct keys does query 12 of head 0 see now?
# 3. Compare α = 2 and α = 3 (3 branches, N = 32): which reaches further, which scores more pairs?

# %%
dilated_explorer(W0, ALPHA, BRANCHES, N, HEADS, HEAD, CAUSAL, OFFSETS)

# %% jupyter={"source_hidden": true}
short = Dilated.geometric(W0, ALPHA, BRANCHES, offsets=OFFSETS)
clamped = [short.segment_length(b, 8) for b in range(BRANCHES)]
causal_keys = Dilated.geometric(W0, ALPHA, BRANCHES, causal=True, offsets=OFFSETS).keys_for(QUERY, 0, HEADS, N)
open_keys = Dilated.geometric(W0, ALPHA, BRANCHES, causal=False, offsets=OFFSETS).keys_for(QUERY, 0, HEADS, N)
by_ratio = {a: Dilated.geometric(W0, a, BRANCHES, offsets=OFFSETS) for a in (2, 3)}
display(answer(
    f"1. At N = 8 the segment lengths {list(short.segment_lengths)} become {clamped} (rates "
    f"{list(short.dilation_rates)}): every branch whose w_i ≥ N covers the whole sequence, thinned by its rate. "
    f"Nothing reaches beyond N, so the extra branches only add thinned copies of the same keys.\n\n"
    f"2. Causal: query {QUERY} of head 0 sees {len(set(torch.cat(list(causal_keys.values())).tolist()))} distinct "
    f"keys (all ≤ {QUERY}), against {len(set(torch.cat(list(open_keys.values())).tolist()))} without the causal "
    f"mask: the future half of each kept segment is gone.\n\n"
    f"3. α = 2: longest segment {by_ratio[2].segment_lengths[-1]}, {by_ratio[2].pairs(HEADS, N):,} pairs over "
    f"{HEADS} heads; α = 3: longest segment {min(by_ratio[3].segment_lengths[-1], N)} (w = "
    f"{by_ratio[3].segment_lengths[-1]} clamped to N = {N}), {by_ratio[3].pairs(HEADS, N):,} pairs. A larger α "
    f"reaches further with the same number of branches, and since branch i costs about N w0 / α^i (w_i / r_i^2), "
    f"its far branches are cheaper: it scores "
    f"{'fewer' if by_ratio[3].pairs(HEADS, N) < by_ratio[2].pairs(HEADS, N) else 'more'} pairs here. The price: "
    f"far keys are thinned more, so less attention can go to them."))

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
    rows.append({"dedupe": dedupe, "max ∣out − reference∣": float((out - ref_out).abs().max()),  # ∣: not a pipe
                 "max ∣lse − reference∣": float((lse[finite] - ref_lse[finite]).abs().max())})
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
    display(Markdown(f"N = {n}: dense / dilated FLOPs = **{ratio:.2f}x**; the paper's estimate (doubled for PV) "
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
    block_mask = flex_block_mask(mask_pattern, HEADS, MASK_N, BLOCK)
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
recorded = Path(RECORDED_CSV)
if recorded.exists():
    table = read_csv(recorded)
    display(runtime_figure(table, title=f"Recorded benchmark ({recorded.name}, {table[0]['device']})"))
    display(Markdown(markdown_table(table, ["N", "causal", "pass", "dilated_s", "sdpa_s", "speedup",
                                            "flop_ideal_speedup", "dilated_peak_mib", "sdpa_peak_mib"])))

# %% [markdown]
# ## 8. LongNet on a laptop: one million tokens
#
# LongNet's claim is scale. `longlab bench dilated --scale` runs its geometric mix w_i = 2048 · 2^i, r_i = 2^i
# up to w = N (10 branches at N = 1,048,576, so every token reaches every other within one layer), 8 heads,
# d = 64, forward on this 2-core CPU, from N = 4k to 1M. Without autograd the branches are merged as they are
# computed (a running out and lse, eq. 10 one piece at a time), so memory stays about one output, not one per
# branch. Dense SDPA is measured at 16k-64k and extrapolated beyond (N² time, N memory): dashed lines.
# Each row records the machine's load average, so you can tell a quiet run from a loaded one.

# %%
display(*scale_record(SCALE_CSV, "dilated"))

# %% [markdown]
# ## What to remember
#
# - Each branch gathers every r_i-th row of segments of w_i tokens and runs dense attention there; rows are
#   scattered back and branches are merged with weights β_i = softmax_i(lse_i) (eq. 10), not concatenated.
# - The lse merge equals one softmax over all branches' keys, a key shown by several branches counting once per branch.
# - Cost 4 N d Σ w_i / r_i² per head: linear in N; gathering rows does only that work, masking does not.
