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
# # longlab tour: what long sequences cost
#
# **The problem.** Language models are asked to read more and more at once: a long prompt with many
# documents, a whole book or code base, a dialogue that has gone on for hours. Two things go wrong as the input
# grows. The model must *not forget* what it read early (a name on page 1, a function defined 3,000 lines
# above), and it must *not get distracted* by the thousands of tokens that do not matter to the current one.
# And before either, the cost: standard attention compares every token with every other token, so doubling the
# input quadruples the work.
#
# **What you will see.** (0) a two-minute refresher of softmax attention and the log-sum-exp (lse) that every
# later notebook uses to glue partial attentions together; (1) the cost of dense attention, computed, up to a
# million tokens; (2) a sparse pattern you can play with; (3) the map of methods and the notebooks that cover
# them. longlab is a small PyTorch package plus notebooks: every number and figure below is computed by the
# library (`longlab/`) and drawn by `viz/`; the notebooks only call them. Run all cells (Run > Run All Cells),
# then play with the sliders.

# %% tags=["parameters"]
# CI-sized defaults. Larger: N_MAX_LOG2 = 24 (16M tokens), DEMO_N = 96.
N_MIN_LOG2 = 10             # shortest sequence in the cost figure: 2**10 tokens
N_MAX_LOG2 = 20             # longest: 2**20 (about 1M) tokens
HEADS, HEAD_DIM = 32, 128   # one attention layer of a 7B-class model
DTYPE_BYTES = 2             # bf16 / fp16
ACCELERATOR_GB = 80         # memory of one large accelerator, GB (10^9 bytes)
DEMO_N, DEMO_HEADS = 32, 4  # pattern explorer: sequence length and number of heads

# %%
import torch
from IPython.display import Markdown, display

import longlab
from longlab.analysis.dense_cost import dense_cost, dense_cost_table, format_bytes, format_count, max_n_for_memory
from longlab.attention.floatlike import FloatLike
from longlab.attention.patterns import Dilated, SlidingWindow
from viz.complexity import dense_cost_figure, dense_cost_markdown
from viz.pattern_heatmap import make_pattern, pattern_explorer
from viz.teaching import answer
from viz.tour import methods_markdown, notebooks_markdown

# %% [markdown]
# ## 0. Refresher: softmax attention and the log-sum-exp
#
# A head of width $d$ turns each token into a query $q_i$, a key $k_j$ and a value $v_j$ (vectors of $d$ numbers).
# Query $i$ scores every key it may see, $s_{ij} = q_i \cdot k_j / \sqrt d$, turns the scores into weights with a
# softmax, $p_{ij} = e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}$, and returns the weighted mean of the values,
# $o_i = \sum_j p_{ij} v_j$ (Vaswani et al. 2017, eq. 1; in matrix form $\mathrm{softmax}(QK^T/\sqrt d)\,V$).
# A layer runs $H$ such heads side by side.
#
# The softmax denominator, kept as a logarithm, is the **log-sum-exp**:
# $\mathrm{lse}_i = \log \sum_j e^{s_{ij}}$, so $p_{ij} = e^{s_{ij} - \mathrm{lse}_i}$. Kernels return it next to the
# output because it makes attention *splittable*: attend to two disjoint groups of keys $A$ and $B$ separately,
# getting $(o_A, \mathrm{lse}_A)$ and $(o_B, \mathrm{lse}_B)$; then the attention over $A \cup B$ is
#
# $$\mathrm{lse} = \log(e^{\mathrm{lse}_A} + e^{\mathrm{lse}_B}), \qquad
#   o = e^{\mathrm{lse}_A - \mathrm{lse}}\, o_A + e^{\mathrm{lse}_B - \mathrm{lse}}\, o_B .$$
#
# That is the **lse merge** (`longlab.merge`): dilated branches (notebook 01), memory plus local context
# (notebook 03), ring attention across devices (notebook 07) all use it. Checked on one query and six keys:

# %%
torch.manual_seed(0)
q, k, v = torch.randn(1, 1, 1, 2, dtype=torch.float64), *torch.randn(2, 1, 1, 6, 2, dtype=torch.float64)
scores = (q @ k.transpose(-1, -2) / 2**0.5)[0, 0, 0]
whole = longlab.attend(q, k, v, causal=False)  # (out, lse) over all six keys
halves = [longlab.attend(q, k[..., part, :], v[..., part, :], causal=False) for part in (slice(0, 3), slice(3, 6))]
merged = longlab.merge(halves)
display(Markdown(
    f"scores $s_j$ = {[round(x, 3) for x in scores.tolist()]}; softmax weights $p_j$ = "
    f"{[round(x, 3) for x in torch.softmax(scores, 0).tolist()]}; "
    f"lse = {torch.logsumexp(scores, 0).item():.4f} (kernel: {whole[1].item():.4f}).\n\n"
    f"Keys 0-2 alone: lse = {halves[0][1].item():.4f}; keys 3-5 alone: lse = {halves[1][1].item():.4f}; merged: "
    f"lse = {merged[1].item():.4f}, and the merged output differs from one softmax over all six keys by "
    f"**{(merged[0] - whole[0]).abs().max().item():.1e}** (float64 rounding)."))

# %% [markdown]
# ## 1. Dense attention is quadratic
#
# For N tokens dense attention scores N^2 (query, key) pairs per head. **One FLOP convention throughout
# longlab:** a scored pair costs a d-long dot product for `Q K^T` (d multiply-adds = 2d FLOPs) plus the same again
# for its share of `P V`, so **4 d per pair**: dense attention costs **4 d N^2 FLOPs per head**, every sparse
# pattern 4 d times the pairs it scores (`Pattern.flops`). A naive kernel also stores the N x N score matrix.
# Memory-efficient kernels (FlashAttention; `longlab.attend` on CPU) avoid storing it, but still do every FLOP.
# The table's last column is the **KV cache**: while generating, a model keeps the keys and values of every past
# token of every layer so each new token attends to them without recomputing them: 2 N H d numbers per layer.

# %%
ns = [2**k for k in range(N_MIN_LOG2, N_MAX_LOG2 + 1)]
rows = dense_cost_table(ns, head_dim=HEAD_DIM, heads=HEADS, dtype_bytes=DTYPE_BYTES)
display(Markdown(dense_cost_markdown(rows)))

# %%
accelerator = f"{ACCELERATOR_GB} GB ({format_bytes(ACCELERATOR_GB * 1e9)})"
double = dense_cost(2 * ns[-1], head_dim=HEAD_DIM, heads=HEADS, dtype_bytes=DTYPE_BYTES)
n_fit = max_n_for_memory(ACCELERATOR_GB * 1e9, heads=HEADS, dtype_bytes=DTYPE_BYTES)
display(Markdown(
    f"Doubling N from {ns[-1]:,} to {2 * ns[-1]:,} multiplies the FLOPs by "
    f"**{double['flops'] / rows[-1]['flops']:.1f}x** and the score matrix by "
    f"**{double['score_bytes'] / rows[-1]['score_bytes']:.1f}x**, but the KV cache only by "
    f"**{double['kv_cache_bytes'] / rows[-1]['kv_cache_bytes']:.1f}x**. "
    f"One layer's score matrix stops fitting in an {accelerator} accelerator at "
    f"**N = {n_fit + 1:,} tokens**; at N = {ns[-1]:,} that layer needs "
    f"{format_count(rows[-1]['flops'])}FLOP."
))

# %% [markdown]
# Sparse patterns score fewer pairs. A sliding window of width w keeps the keys less than w positions away (2w - 1
# of them, w when causal): about 4 d N (2w - 1) FLOPs per head;
# LongNet's dilated attention (Ding et al. 2023) mixes segments of growing length w_i with rows thinned by
# growing rates r_i. In the same convention (`Q K^T` plus `P V`) it costs **4 N d sum_i(w_i / r_i^2)** per head;
# the paper writes 2 N d sum_i(w_i / r_i^2) because it counts `Q K^T` alone. Linear in N once N exceeds the
# longest segment. All curves are counted from the same pattern objects the kernels run.

# %%
patterns = {
    "sliding window 4096": SlidingWindow(window=4096),
    "LongNet dilated, w = 2k..32k, r = 1..16": Dilated((2048, 4096, 8192, 16384, 32768), (1, 2, 4, 8, 16)),
    "float-like m = 7 (notebook 08)": FloatLike(7),
}
dense_cost_figure(ns, head_dim=HEAD_DIM, heads=HEADS, dtype_bytes=DTYPE_BYTES, patterns=patterns,
                  memory_line=ACCELERATOR_GB * 1e9, memory_line_label=f"{ACCELERATOR_GB} GB accelerator")

# %%
dilated_big = patterns["LongNet dilated, w = 2k..32k, r = 1..16"]
n_top = ns[-1]
display(Markdown(
    f"Same convention everywhere, at N = {n_top:,} ({HEADS} heads, d = {HEAD_DIM}): dense 4 d N^2 H = "
    f"{format_count(4 * HEAD_DIM * n_top**2 * HEADS)}FLOP (figure: {format_count(rows[-1]['flops'])}FLOP); dilated "
    f"4 N d sum(w_i / r_i^2) H = {format_count(dilated_big.flops_formula(n_top, HEAD_DIM, HEADS))}FLOP, counted pair "
    f"by pair {format_count(dilated_big.flops(n_top, HEAD_DIM, HEADS))}FLOP (equal: "
    f"{dilated_big.flops_formula(n_top, HEAD_DIM, HEADS) == dilated_big.flops(n_top, HEAD_DIM, HEADS)}; they differ "
    f"only when a segment length does not divide N or a rate does not divide its segment); dense / dilated = "
    f"**{rows[-1]['flops'] / dilated_big.flops(n_top, HEAD_DIM, HEADS):.0f}x**."))

# %% [markdown]
# ## 2. Look at a pattern
#
# Each square is a (query, key) pair that head `head` scores. Colours name the branch that shows the key;
# blended, darker squares (with a number when N is small) are seen through several branches and so count
# several times in the softmax, exactly as the lse merge of branches does. Move the sliders: `pattern`
# switches dense / sliding window / dilated; a dilated pattern uses LongNet's geometric schedule
# w_i = w0 * α^i, r_i = α^i (α, the slider `ratio α`, is the common ratio of both); different heads keep
# different rows (offsets).
#
# **Try this** (answers below, computed; click to open):
# 1. Set `ratio α` = 1. What does the dilated pattern become, and what happens to its cost? Why?
# 2. Keep α = 2 and double N (32 → 64). By how much grow the pairs of dense attention and of the dilated mix?
# 3. Switch to `sliding` with window 6: which keys can token 0 never reach, in one layer?

# %%
pattern_explorer(kind="dilated", n=DEMO_N, heads=DEMO_HEADS, segment=4, ratio=2, branches=3)

# %% jupyter={"source_hidden": true}
flat = make_pattern("dilated", segment=4, ratio=1, branches=3)
geo = make_pattern("dilated", segment=4, ratio=2, branches=3)
blocks = make_pattern("dilated", segment=4, ratio=1, branches=1)
flat_pairs, block_pairs = flat.pairs(DEMO_HEADS, DEMO_N), blocks.pairs(DEMO_HEADS, DEMO_N)
pairs = {name: [p.pairs(DEMO_HEADS, n) for n in (DEMO_N, 2 * DEMO_N)]
         for name, p in (("dense", make_pattern("dense")), ("dilated", geo))}
reach = make_pattern("sliding", window=6).keys_for(0, 0, DEMO_HEADS, DEMO_N)
seen = sorted(set(torch.cat(list(reach.values())).tolist()))
display(answer(
    f"1. With α = 1 every branch is w = 4, r = 1: three copies of the same block-diagonal pattern (blocks of 4 "
    f"tokens). It scores {flat_pairs:,} pairs = {flat_pairs // block_pairs}x one block pattern ({block_pairs:,}): "
    f"cheap, but no token sees past its block, and "
    f"the lse merge counts each key three times, which changes nothing (same weights). Growing α is what buys "
    f"reach (w_i grows) while the thinning (r_i grows) keeps each branch's cost at N w_i / r_i^2.\n"
    f"2. Dense: {pairs['dense'][0]:,} → {pairs['dense'][1]:,} pairs "
    f"(**{pairs['dense'][1] / pairs['dense'][0]:.1f}x**); dilated: {pairs['dilated'][0]:,} → {pairs['dilated'][1]:,} "
    f"(**{pairs['dilated'][1] / pairs['dilated'][0]:.1f}x**): linear once N exceeds the longest segment "
    f"({geo.segment_lengths[-1]}).\n"
    f"3. Token 0 of head 0 sees keys {seen}: the other {DEMO_N - len(seen)} of the {DEMO_N} keys are out of reach "
    f"in one layer (information can still hop one window further per layer)."))

# %% [markdown]
# ## 3. The methods
#
# How longlab's notebooks attack the cost: compute less (sparse patterns), remember more (memory and
# retrieval), or split the sequence over devices (sequence parallelism). Each method links the notebook that
# covers it (notebooks 04 Focused Transformer, 05 LongMem and 06 RETRO; related work such as ReRoPE, linear
# attention, token pooling and paged sparse KV lives in the ideas lab, [08_ideas_lab](08_ideas_lab.ipynb));
# a method whose notebook is not in this folder yet is marked *coming*.

# %%
display(Markdown(methods_markdown(".")))
display(Markdown("**All notebooks in this folder**\n\n" + notebooks_markdown(".")))

# %% [markdown]
# ## What to remember
#
# - Dense attention costs 4 d N^2 FLOPs per head (`Q K^T` plus `P V`): doubling N quadruples the work; the KV
#   cache grows only linearly.
# - Attention over a union of key sets is the lse merge of attentions over the parts: the glue of every method here.
# - Sparse patterns (window, dilated) score fewer pairs; memory methods keep far context as retrievable (k, v);
#   sequence parallelism splits N over devices. Each trades exactness, reach or communication.
