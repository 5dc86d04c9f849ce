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
# # 08 · Ideas lab: related work and the seed's own ideas, built exactly and measured
#
# **The problem.** Dense attention over $N$ tokens costs $O(N^2)$ work and an $O(N)$ key-value cache per
# decoded token, and a model trained on short windows breaks on longer ones. LongNet's dilated attention
# (notebook 01) is one answer. Six others are built here in longlab's interface, each checked against a
# float64 reference and measured:
#
# | idea | what it changes | cost per query |
# |---|---|---|
# | linear attention | the softmax kernel $e^{q\cdot k}$ becomes $\phi(q)\cdot\phi(k)$ | $O(D^2)$, any $N$ |
# | ReRoPE (+ leaky) | relative positions are capped at $w$ | dense, but never an unseen position |
# | token pooling | far keys are averaged in blocks of $p$ | $w + N/p$ |
# | float-like sparsity | keys on a floating-point grid of distances | $O(2^m \log N)$ |
# | paged KV selection | decode reads only the $K$ most promising pages | $K \cdot$ page size |
# | dilated decoding | the KV cache keeps only keys some later token needs | $\sum_i w_i / r_i$ cache |
#
# **What you will see:** for every idea, its equation, its pattern or cache drawn from the very object the kernel
# runs (with sliders), an exactness check computed on the spot, and the measured results recorded in
# `data/ideas/` (regenerate with `python data/ideas/make_ideas_results.py` and
# `OMP_NUM_THREADS=1 longlab bench linear --out data/ideas --repeats 5`).
#
# Symbols: $q_i, k_j, v_j \in \mathbb{R}^D$ are the query, key and value of tokens $i$ and $j$ in one head; $N$ is
# the sequence length; a *causal* query $i$ sees keys $j \le i$; $\mathrm{lse}_i = \log \sum_j e^{q_i\cdot k_j/\sqrt D}$
# is the log of the softmax normaliser, which lets two partial attentions over disjoint key sets be merged exactly
# (`longlab.merge`).

# %% tags=["parameters"]
# CI-sized defaults (each figure redraws in well under a second). Larger values are fine in a live kernel:
# N = 128 for the pattern figures, PAGED_TOKENS = 4096.
N = 48                    # sequence length of the pattern figures
WINDOW = 12               # ReRoPE window w / token pooling local window (tokens)
LEAK = 4.0                # leaky ReRoPE s (1 = RoPE; 0 in the slider means s = inf, plain ReRoPE)
POOL_BLOCK = 4            # token pooling block p
MANTISSA_BITS = 1         # float-like m
PAGE_SIZE, PAGES_KEPT = 16, 4
PAGED_TOKENS = 1024       # tokens in the live paged-cache demo
SEGMENTS, RATES, HEADS = (16, 32, 64), (1, 2, 4), 4   # the dilated decoding demo
SEED = 0
DATA = "../data/ideas"    # recorded results (relative to notebooks/)

# %%
import json
import math
from pathlib import Path

import numpy as np
import torch
from IPython.display import Markdown, display

from longlab import dilated_attention
from longlab.attention import reference_attention
from longlab.attention.dilated_decode import DilatedDecodeCache
from longlab.attention.floatlike import FloatLike, floatlike_attention
from longlab.attention.linear import LinearAttentionState, linear_attention, linear_attention_reference
from longlab.attention.paged_kv import PagedKVCache, topk_recall
from longlab.attention.pooling import pool_blocks, pooled_attention, pooled_key_set
from longlab.attention.rerope import rerope_attention, rerope_reference
from longlab.bench.common import read_csv
from longlab.bench.linear import crossover
from longlab.table import format_table
from viz.ideas_patterns import (
    decode_cache,
    floatlike_explorer,
    linear_weights,
    paged_explorer,
    pooled_explorer,
    rerope_explorer,
)
from viz.ideas_results import (
    extrapolation_figure,
    floatlike_vs_longnet_figure,
    linear_speed_figure,
    paged_figure,
    passkey_depth_figure,
    quality_figure,
)
from viz.teaching import answer

gen = torch.Generator().manual_seed(SEED)


def randn(*shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def recorded(name):
    return json.loads((Path(DATA) / f"{name}.json").read_text())


def max_error(a, b):
    return float((a - b).abs().max())


# %% [markdown]
# ## 1. Linear attention (Katharopoulos et al. 2020)
#
# **Problem.** Softmax attention must compare each query with every key. **Idea.** Replace the kernel
# $e^{q\cdot k}$ by $\phi(q)\cdot\phi(k)$ with a positive feature map $\phi(x) = \mathrm{elu}(x) + 1$. Then
#
# $$\mathrm{out}_i = \frac{\phi(q_i)^\top S_i}{\phi(q_i)^\top z_i},\qquad S_i = \sum_{j\le i}\phi(k_j)\,v_j^\top,
# \qquad z_i = \sum_{j\le i}\phi(k_j),$$
#
# and $S_i$ (a $D \times D$ matrix) and $z_i$ are running sums: $O(N D^2)$ work, and a decoding *state* of fixed
# size instead of a growing cache. A small worked example first: the weights both kernels give the same
# six tokens.

# %%
q6, k6 = randn(6, 4), randn(6, 4)
linear_weights(q6.float(), k6.float())

# %% [markdown]
# The same function in three forms (`longlab.attention.linear`): the chunked $O(N)$ form used for training, the
# recurrent form used for decoding (one token at a time) and the dense reference (the masked, row-normalised
# matrix above). They agree, on fresh random inputs:

# %%
q, k, v = randn(2, 3, N, 8), randn(2, 3, N, 8), randn(2, 3, N, 8)
chunked = linear_attention(q, k, v, causal=True, chunk_size=7)
state = LinearAttentionState()
steps = torch.cat([state.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]) for t in range(N)], -2)
dense = linear_attention_reference(q, k, v, causal=True)
display(Markdown(
    f"max |chunked - reference| = {max_error(chunked, dense):.1e}, max |recurrent - reference| = "
    f"{max_error(steps, dense):.1e}; the recurrent state holds {state.state_numel()} numbers after {N} tokens "
    f"(a softmax KV cache would hold {2 * 2 * 3 * N * 8})."))

# %% [markdown]
# **Measured: where does linear attention become faster than exact softmax attention?** (`longlab bench linear`,
# causal forward, 4 heads, D = 64, one CPU thread; recorded on a shared machine, so single timings are noisy.)

# %%
speed_csv = Path(DATA) / "linear_cpu.csv"
if speed_csv.exists():
    speed = read_csv(speed_csv)
    for row in speed:
        row["attend_s"], row["linear_s"] = float(row["attend_s"]), float(row["linear_s"])
    display(linear_speed_figure(speed))
    cross = crossover(speed)
    display(Markdown(f"Linear attention is faster from N = {cross} on in this run." if cross else
                     "Linear attention was never faster in this run."))
else:
    display(Markdown(f"No recorded run at {speed_csv}; run `longlab bench linear --out data/ideas`."))

# %% [markdown]
# ## 2. ReRoPE and leaky ReRoPE (Su 2023)
#
# **Problem.** With RoPE the logit of query $i$ and key $j$ depends on $i - j$ through a rotation
# $R(i - j)$. Past the trained length a model meets relative positions it never saw, and its loss blows up.
# **Idea.** Cap the relative position at a window $w$ (leaky: compress it by $s$ beyond $w$):
#
# $$\mathrm{rel}(i,j) = \begin{cases} i - j & i - j < w\\ w + (i - j - w)/s & \text{otherwise}\end{cases}
# \qquad (s = \infty:\ \text{plain ReRoPE}).$$
#
# Because $\langle R(a)q, R(b)k\rangle = \langle R(a-b)q, k\rangle$, this is **two ordinary attentions merged
# by lse**: a causal band of width $w$ with normal RoPE, and the keys further than $w$ with the query rotated to
# $w + (i - w)/s$ against keys rotated to $j/s$ (plain ReRoPE: query at $w$, keys un-rotated). The figure shows
# $\mathrm{rel}(i, j)$ for every pair.
#
# **Try this** (answers computed below; click to open):
# 1. Set s = 1. What does leaky ReRoPE become?
# 2. Set w ≥ N. Which pairs change?
# 3. With s = 4 and w = 12, which relative position does the pair (i = 47, j = 0) get?

# %%
rerope_explorer(N, WINDOW, LEAK)

# %% jupyter={"source_hidden": true}
qr, kr, vr = randn(1, 2, N, 8), randn(1, 2, N, 8), randn(1, 2, N, 8)
same_as_rope = max_error(rerope_attention(qr, kr, vr, WINDOW, 1.0)[0], rerope_attention(qr, kr, vr, N)[0])
display(answer(
    f"1. s = 1 gives w + (i - j - w) = i - j: plain RoPE. The kernel agrees with RoPE to "
    f"{same_as_rope:.1e} (max difference here).\n\n"
    f"2. None: with w ≥ N every pair is inside the band, so ReRoPE is RoPE (the far part is empty).\n\n"
    f"3. rel = 12 + (47 - 12) / 4 = {12 + (47 - 12) / 4:g}, against 47 for RoPE."))

# %% [markdown]
# **Exact.** The two-partial kernel against the dense float64 reference that rotates every query by
# $\mathrm{rel}(i,j)$ pair by pair:

# %%
for leak in (None, LEAK):
    out, lse = rerope_attention(qr, kr, vr, WINDOW, leak)
    ref_out, ref_lse = rerope_reference(qr, kr, vr, WINDOW, leak)
    display(Markdown(f"s = {leak or 'inf'}: max |out - reference| = {max_error(out, ref_out):.1e}, "
                     f"max |lse - reference| = {max_error(lse, ref_lse):.1e}"))

# %% [markdown]
# **Measured: length extrapolation.** The committed TinyLM (`data/checkpoints`, trained on 256-byte windows of
# Python source; its kNN layer with an empty memory is a dense layer) read 2048-byte windows of held-out files,
# 8x its context, with each position scheme (`TinyLMConfig(position="rerope", rerope_window=w, rerope_leak=s)`):

# %%
extrap = recorded("extrapolation")
display(extrapolation_figure(extrap))
curves = extrap["curves"]
ctx = extrap["trained_context"]
rows = [{"scheme": name, **{f"{i * ctx}-{(i + 1) * ctx}": f"{x:.2f}" for i, x in
                             enumerate(c["loss_per_trained_context"])}} for name, c in curves.items()]
display(Markdown("Loss (nats/token) per span of positions as long as the trained context:\n\n"
                 + format_table(rows, markdown=True)))
rope_last = curves["rope"]["loss_per_trained_context"][-1]
rerope_last = curves["rerope"]["loss_per_trained_context"][-1]
display(Markdown(
    f"RoPE's loss rises from {curves['rope']['loss_per_trained_context'][0]:.2f} to {rope_last:.2f} nats over the "
    f"last {ctx} positions; ReRoPE ends at {rerope_last:.2f}, no worse than inside its training length. The sliding "
    f"window of {curves['sliding']['settings']['window']} does as well as ReRoPE here "
    f"({curves['sliding']['loss_per_trained_context'][-1]:.2f}): this small model gets little from tokens more than "
    f"one context back, so ReRoPE's gain is *not breaking*, not reading further."))

# %% [markdown]
# ## 3. Token pooling (compressed memory)
#
# **Problem.** Keep some view of the far past without paying for every far key. **Idea.** Average keys and values
# over blocks of $p$ tokens, $\tilde k_b = \frac1p\sum_{t=bp}^{bp+p-1} k_t$ (same for $v$); query $i$ sees its
# last $w$ keys exactly and every pooled block that ends before that window ($bp + p - 1 \le i - w$), in one
# softmax (two partial attentions merged by lse). A causal query never sees a block that ends after it, and
# $p = 1$ is dense attention.
#
# **Try this:** 1. set p = 1: what do the two panels add up to? 2. With p = 4, w = 5, which tokens does query 22
# see neither exactly nor through a block?

# %%
pooled_explorer(N, POOL_BLOCK, WINDOW)

# %% jupyter={"source_hidden": true}
seen = pooled_key_set(24, 4, 5)
exact = set(seen[22, :24].nonzero().flatten().tolist())
blocks = seen[22, 24:].nonzero().flatten().tolist()
covered = exact | {t for b in blocks for t in range(4 * b, 4 * b + 4)}
display(answer(
    f"1. With p = 1 each block is one key: the window plus the blocks are all keys j ≤ i, dense causal attention "
    f"(checked below).\n\n"
    f"2. Query 22 sees keys {sorted(exact)} exactly and blocks {blocks} (tokens 0-{4 * max(blocks) + 3}); tokens "
    f"{sorted(set(range(23)) - covered)} fall in a block that straddles its window (block {max(blocks) + 1} ends "
    f"after the window starts), so it sees them in neither. The gap is always shorter than one block."))

# %%
qp, kp, vp = randn(1, 2, N, 8), randn(1, 2, N, 8), randn(1, 2, N, 8)
out, lse = pooled_attention(qp, kp, vp, POOL_BLOCK, WINDOW)
keys = torch.cat([kp, pool_blocks(kp, POOL_BLOCK)], 2)
values = torch.cat([vp, pool_blocks(vp, POOL_BLOCK)], 2)
ref_out, _ = reference_attention(qp, keys, values, mask=pooled_key_set(N, POOL_BLOCK, WINDOW))
dense_gap = max_error(pooled_attention(qp, kp, vp, 1, WINDOW)[0], reference_attention(qp, kp, vp, causal=True)[0])
display(Markdown(f"max |pooled - reference over the explicit key set| = {max_error(out, ref_out):.1e}; "
                 f"p = 1 against dense causal attention: {dense_gap:.1e}."))

# %% [markdown]
# ## 4. Float-like (log-spaced) sparsity: the seed's idea
#
# **Problem.** LongNet thins far keys by segment and rate, so a query's reach depends on where it sits in its
# segment. **Idea.** Keep keys at the relative distances a floating-point number with $m$ mantissa bits can
# represent: every $d < 2^m$, then $2^m$ distances per octave $[2^e, 2^{e+1})$, spaced $2^{e-m}$ apart. Every query
# gets the same shape, about $2^m(\log_2 N - m + 2)$ keys, $O(N 2^m \log N)$ pairs in all. In closed form (the
# `mask_mod` FlexAttention needs): $d$ is kept iff $d = 0$ or $d < \mathrm{lowbit}(d)\,2^{m+1}$, with
# $\mathrm{lowbit}(d) = d\ \&\ {-d}$. The kernel gathers each query's keys (never an $N\times N$ mask).
#
# **Try this:** 1. m = 0: which distances are kept? 2. How many keys does the last query of N = 2^20 tokens see
# with m = 2?

# %%
floatlike_explorer(64, MANTISSA_BITS)

# %% jupyter={"source_hidden": true}
zero = FloatLike(0, causal=True)
display(answer(
    f"1. m = 0 keeps d = 0 and the powers of two, one key per octave (LogSparse's pattern): query 39 sees keys "
    f"{sorted(zero.key_index(40)[0][39].tolist())}.\n\n"
    f"2. {int(FloatLike(2, causal=True).keys_per_query(2**20)[-1])} keys out of {2**20:,}."))

# %%
qf, kf, vf = randn(1, 2, N, 8), randn(1, 2, N, 8), randn(1, 2, N, 8)
out, lse = floatlike_attention(qf, kf, vf, MANTISSA_BITS, causal=True)
mask = FloatLike(MANTISSA_BITS, causal=True).multiplicity(2, N) > 0
ref_out, ref_lse = reference_attention(qf, kf, vf, mask=mask)
display(Markdown(f"Gathered kernel vs dense reference with the pattern's mask: max |out| error "
                 f"{max_error(out, ref_out):.1e}, max |lse| error {max_error(lse, ref_lse):.1e}."))

# %% [markdown]
# **Measured: float-like against LongNet at equal FLOPs** ($N = 2048$, 4 heads; for each $m$ the LongNet
# geometric schedule with the nearest pair count). Allocation against distance, dependency path length (layers
# until every token reaches every later one, at $N = 512$) and block density (64 x 64 tiles a block-sparse
# kernel must compute):

# %%
patterns_rec = recorded("patterns")
display(floatlike_vs_longnet_figure(patterns_rec))
rows = []
for comp in patterns_rec["comparisons"]:
    for key, name in (("float_like", f"float-like m = {comp['mantissa_bits']}"), ("longnet", "  LongNet")):
        part = comp[key]
        rows.append({"pattern": name, "pairs": f"{part['pairs']:,}", "path (causal)": part["path_length_causal"],
                     "path (non-causal)": part["path_length_noncausal"],
                     "block density": f"{part['block_density']:.2f}"})
display(Markdown(format_table(rows, markdown=True)))
display(Markdown(
    "At equal FLOPs float-like keeps fewer keys nearby and more far away (a straight line on log-log axes: "
    "about 2^m keys per octave), reaches every later token in a few layers, and needs fewer tiles. "
    "Causal LongNet (reference head offsets, 4 heads) never connects some pairs: a token at a segment start sees "
    "only rows of its own phase in every longer branch (path length inf)."))

# %% [markdown]
# ## 5. Paged KV cache with page selection (Quest, Tang et al. 2024)
#
# **Problem.** Each decoded token reads the whole KV cache: memory traffic grows with $N$. **Idea** (virtual
# memory for attention): store the cache in fixed-size pages with a page table; keep each page's per-dimension
# key minimum and maximum. For a query $q$,
#
# $$u(q, \text{page}) = \sum_d \max(q_d \min_d, q_d \max_d) \ \ge\ q\cdot k \quad\text{for every key } k
# \text{ in the page},$$
#
# so the pages with the largest bound are the only ones that *can* hold the largest logits. Attend exactly over
# the top-$K$ pages plus the current one. Bars: each page's bound; dots: its true best logit (always below).
#
# **Try this:** 1. Raise K to the number of pages: what does the output become? 2. Halve the page size: do the
# bounds get tighter or looser?

# %%
walk = randn(2, PAGED_TOKENS, 16).cumsum(1) * 0.2  # keys with locality (a random walk), as real keys have
values_demo, q_demo = randn(2, PAGED_TOKENS, 16), randn(2, 16)
paged_explorer(walk.float(), values_demo.float(), q_demo.float(), PAGE_SIZE, PAGES_KEPT)

# %% jupyter={"source_hidden": true}
cache = PagedKVCache(2, 16, PAGE_SIZE, PAGED_TOKENS, dtype=torch.float64)
cache.append(walk, values_demo)
dense_out, _ = cache.dense_attend(q_demo)
all_out, _, _ = cache.attend(q_demo, cache.num_pages)
gaps = {}
for size in (PAGE_SIZE, PAGE_SIZE // 2):
    c = PagedKVCache(2, 16, size, PAGED_TOKENS, dtype=torch.float64)
    c.append(walk, values_demo)
    best = (walk @ q_demo[..., None]).squeeze(-1).view(2, -1, size).amax(-1)
    gaps[size] = float((c.page_scores(q_demo) - best).mean())
display(answer(
    f"1. Dense attention: with K = all {cache.num_pages} pages the output matches the dense cache to "
    f"{max_error(all_out, dense_out):.1e}.\n\n"
    f"2. Tighter: the mean gap between bound and true best logit is {gaps[PAGE_SIZE]:.2f} with pages of "
    f"{PAGE_SIZE} and {gaps[PAGE_SIZE // 2]:.2f} with pages of {PAGE_SIZE // 2} (fewer keys per min/max), at twice "
    f"the metadata."))

# %%
for kept in (1, 4, 16):
    out, _, pages = cache.attend(q_demo, kept)
    display(Markdown(f"K = {kept}: recall of the true top-32 keys {topk_recall(q_demo, walk, pages, PAGE_SIZE):.2f}, "
                     f"reads {cache.bytes_read(kept) / cache.bytes_read(None):.0%} of the dense cache's bytes."))

# %% [markdown]
# **Measured at 16k and 128k cached tokens** (the checkpoint's last-layer keys over held-out source files, and
# random Gaussian keys, pages of 16):

# %%
paged_rec = recorded("paged")
display(paged_figure(paged_rec))
rows = [{"keys": r["keys"], "cached": f"{r['cached_tokens']:,}", "K": r["pages_kept"],
         "recall@32": f"{r['recall_top32']:.2f}", "rel. error": f"{r['relative_error']:.2f}",
         "MB read": f"{r['bytes_read'] / 2**20:.1f} / {r['dense_bytes'] / 2**20:.0f}",
         "ms/token": f"{r['paged_s'] * 1e3:.1f} / {r['dense_s'] * 1e3:.0f}"}
        for r in paged_rec["rows"] if r["keys"] == "checkpoint"]
display(Markdown("Checkpoint keys (MB and ms: paged / dense; ms measured on a shared machine):\n\n"
                 + format_table(rows, markdown=True)))

# %% [markdown]
# The bound ranks pages far better than chance but not perfectly: a page's min/max box spans 16 keys in every
# dimension, so many pages look promising. Recall grows with $K$; the bytes read are the metadata (1/16 of the
# dense cache here) plus the pages read.
#
# ## 6. Dilated attention at decode time: the seed's question
#
# **Problem.** LongNet is defined on a whole sequence. When tokens come one by one, which cached keys does the
# new token need? **Answer.** Token $t$ in branch $(w_i, r_i)$ sits in segment $\lfloor t / w_i \rfloor$; it takes part
# only if its in-segment index is $\equiv$ offset$(h)$ (mod $r_i$), and then it attends to the earlier kept rows of
# the **same segment**. When a segment ends, none of its keys is needed again by that branch, so the cache holds
# at most $\sum_i w_i / r_i$ entries per head, whatever $N$:

# %%
decode_cache(SEGMENTS, RATES, HEADS, 4 * max(SEGMENTS))

# %% [markdown]
# Decoding token by token with that cache equals the full causal forward (`dilated_attention(causal=True)`):

# %%
qd, kd, vd = (randn(1, HEADS, 2 * max(SEGMENTS), 8) for _ in range(3))
decoder = DilatedDecodeCache(SEGMENTS, RATES, HEADS)
steps = [decoder.step(qd[..., t:t + 1, :], kd[..., t:t + 1, :], vd[..., t:t + 1, :]) for t in range(qd.shape[2])]
full = dilated_attention(qd, kd, vd, list(SEGMENTS), list(RATES), causal=True)
display(Markdown(
    f"max |token-by-token - full forward| = {max_error(torch.cat([o for o, _ in steps], 2), full):.1e} over "
    f"{qd.shape[2]} tokens; the cache now holds {decoder.entries() // HEADS} entries per head "
    f"(bound {decoder.max_entries_per_head()}), a dense cache {qd.shape[2]}."))

# %% [markdown]
# ## 7. Quality at the same budget
#
# The same TinyLM (2 layers, d = 128, 4 heads, context 256) trained for the same 300 steps (batch 8, seed 0, same
# data order) on the standard library's source files with each attention kind; the dilated mix uses the LongNet
# schedule whose pairs are nearest to float-like m = 2 at N = 256 (equal FLOPs). Held-out loss against training
# time (one thread on a shared machine: read the times as rough):

# %%
runs = {}
for path in sorted(Path(DATA).glob("quality_*.json")):
    rec = json.loads(path.read_text())
    runs.update(rec["runs"])
    unigram = rec["unigram_val_loss"]
if runs:
    display(quality_figure(runs, unigram))
    rows = [{"kind": kind, "held-out loss": f"{run['val_loss']:.3f}", "seconds": f"{run['elapsed_s']:.0f}",
             "pairs per layer": run["pairs_per_layer"] or "-"} for kind, run in runs.items()]
    display(Markdown(format_table(rows, markdown=True)))
    best = min(runs, key=lambda kind: runs[kind]["val_loss"])
    steps = next(iter(runs.values()))["history"][-1]["step"]
    display(Markdown(f"Lowest held-out loss after {steps} steps: **{best}** (one seed each, so small gaps are not "
                     f"evidence of a difference)."))
    if {"dense", "linear"} <= set(runs):
        # linear vs dense at equal training time: dense's loss interpolated at linear's final time
        t_lin, hist = runs["linear"]["elapsed_s"], runs["dense"]["history"]
        at_t = float(np.interp(t_lin, [h["elapsed_s"] for h in hist], [h["val_loss"] for h in hist]))
        display(Markdown(
            f"Equal steps: dense {runs['dense']['val_loss']:.3f} vs linear {runs['linear']['val_loss']:.3f} nats. "
            f"Equal time: when linear finished ({t_lin:.0f} s) dense was at about {at_t:.3f} (interpolated between "
            f"its evaluations): per second of training, linear is "
            f"{'ahead' if runs['linear']['val_loss'] < at_t else 'behind'} at this size."))
else:
    display(Markdown("No quality runs recorded; run `python data/ideas/make_ideas_results.py quality`."))

# %% [markdown]
# ### Passkey by depth
#
# After training, each model answers passkey prompts with the key line at five depths, the same keys at every
# depth. A prompt and its answer must fit the 256-token context, so the prompts leave out the usual instruction
# line: filler, the key line `The pass key is 12345. Remember it. 12345 is the pass key.`, more filler, and the
# question `What is the pass key? The pass key is `. The question ends with the 16 bytes that precede the key in
# the key line, so a model that finds its current context earlier in the prompt and copies what followed (an
# induction head) can answer; a sliding window of 64 tokens cannot look that far back in one layer. Measured by
# `longlab.analysis.passkey_depth.passkey_by_depth`:
# - greedy exact match, as in the passkey literature;
# - the teacher-forced loss on the key's digits given the prompt, in nats per digit. Among the ten digits, a
#   model with no idea of the key pays $\ln 10 \approx 2.30$ and one that copies it pays 0; over all 256 bytes it
#   also pays $-\log P(\text{a digit comes next})$;
# - as a control, the loss among digits on the key's repeat inside the key line, about 20 tokens after its first
#   statement: a distance every pattern sees. A model that cannot copy there cannot copy from further away.

# %%
passkey = {kind: run["passkey_by_depth"] for kind, run in runs.items() if run.get("passkey_by_depth")}
if passkey:
    display(passkey_depth_figure(runs))
    LN10 = math.log(10)

    def below_chance(row, field):  # lower than ln 10 by more than two standard errors
        return row[field] < LN10 - 2 * row[f"{field}_se"]

    def mean_se(row, field):
        return f"{row[field]:.2f} ± {row[field + '_se']:.2f}"

    def spread(field):
        values = [r[field] for rows in passkey.values() for r in rows]
        return f"{min(values):.2f} to {max(values):.2f}"

    first = next(iter(passkey.values()))
    far, near = first[0], first[-1]
    rows = [{"kind": kind,
             f"digits, depth {far['depth']:g}": mean_se(r[0], "digit_loss_given_digit"),
             f"digits, depth {near['depth']:g}": mean_se(r[-1], "digit_loss_given_digit"),
             "repeat (mean)": f"{sum(x['repeat_loss_given_digit'] for x in r) / len(r):.2f}",
             "all bytes (mean)": f"{sum(x['digit_loss'] for x in r) / len(r):.2f}",
             "exact match": f"{sum(x['accuracy'] for x in r) / len(r):.0%}"} for kind, r in passkey.items()]
    display(Markdown(format_table(rows, markdown=True)))
    best = max(((r["accuracy"], kind, r["depth"]) for kind, rs in passkey.items() for r in rs))
    knows = sorted({kind for kind, rs in passkey.items() for r in rs if below_chance(r, "digit_loss_given_digit")})
    copies = sorted({kind for kind, rs in passkey.items() for r in rs if below_chance(r, "repeat_loss_given_digit")})
    deep = [kind for kind, rs in passkey.items()
            if abs(rs[0]["digit_loss_given_digit"] - rs[-1]["digit_loss_given_digit"])
            > 2 * math.hypot(rs[0]["digit_loss_given_digit_se"], rs[-1]["digit_loss_given_digit_se"])]
    expects = {kind: sum(r["digit_loss"] - r["digit_loss_given_digit"] for r in rs) / len(rs)
               for kind, rs in passkey.items()}
    lines = [
        f"The key line starts {far['distance_tokens']:.0f} tokens before the question's end at depth {far['depth']:g} "
        f"and {near['distance_tokens']:.0f} on average at depth {near['depth']:g}; {far['examples']} keys per depth.",
        "Exact match: " + ("no model reproduces a key at any depth." if best[0] == 0 else
                           f"best {best[0]:.0%} ({best[1]}, depth {best[2]:g})."),
        f"Loss among the ten digits: {spread('digit_loss_given_digit')} nats/digit over all kinds and depths "
        f"(ln 10 = {LN10:.2f}); " + (f"below chance by more than two standard errors for {', '.join(knows)}."
                                     if knows else "no model is below chance by more than two standard errors."),
        f"The control, the key's repeat about 20 tokens on: {spread('repeat_loss_given_digit')} nats/digit; "
        + (f"{', '.join(copies)} copy it better than chance." if copies else
           "no model copies even a number it saw 20 tokens earlier, a distance every pattern sees."),
        (f"Depth matters (depth {far['depth']:g} vs {near['depth']:g}, more than two standard errors) for "
         f"{', '.join(deep)}." if deep else
         f"For no kind does the loss among digits change between depth {far['depth']:g} and {near['depth']:g} by more "
         f"than two standard errors."),
        f"Over all bytes: {spread('digit_loss')} nats/digit, of which the cost of not expecting a number after "
        f"`The pass key is `, -log P(digit), averages {min(expects.values()):.2f} ({min(expects, key=expects.get)}) "
        f"to {max(expects.values()):.2f} ({max(expects, key=expects.get)}) nats.",
    ]
    if not knows and not copies:
        lines.append("So after this budget none of these models retrieves a key, and passkey by depth cannot rank "
                     "the attention patterns; the held-out loss above is the comparison this run supports. A model "
                     "must first learn to copy (an induction head) before a key's depth can matter.")
    display(Markdown("\n\n".join(lines)))
else:
    display(Markdown("No passkey records; run `python data/ideas/make_ideas_results.py quality`."))

# %% [markdown]
# ## 8. Bad input names the fix

# %%
bad = {
    "m < 0": lambda: FloatLike(-1),
    "w < 1": lambda: rerope_attention(qr, kr, vr, 0),
    "page size not dividing the cache": lambda: PagedKVCache(1, 8, 5, 12),
    "K < 1": lambda: cache.attend(q_demo, 0),
    "pooled block larger than N": lambda: pooled_attention(qp, kp, vp, N + 1, WINDOW),
}
rows = []
for case, call in bad.items():
    try:
        call()
        rows.append({"input": case, "error": "(no error!)"})
    except (ValueError, TypeError) as err:
        rows.append({"input": case, "error": f"{type(err).__name__}: {err}"})
display(Markdown(format_table(rows, markdown=True)))

# %% [markdown]
# ## What to remember
#
# - Linear attention trades the softmax for a fixed-size running state: exact in its own terms, O(N), but a
#   different function; ReRoPE keeps softmax and only rewrites positions, exactly, as two lse-merged attentions.
# - Capping relative positions (ReRoPE) stops the loss blow-up past the trained length; reading *further* needs a
#   model that uses far context.
# - Sparsity that follows distance on a float grid gives every query the same log-spaced reach; page bounds and
#   dilated segments decide which cached keys decoding must read or keep.
