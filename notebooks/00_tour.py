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
# # longlab tour: what long sequences cost
#
# longlab is a small PyTorch package plus notebooks for learning how language models handle long inputs.
# Every number and figure below is computed by the library (`longlab/`) and drawn by `viz/`; the notebooks
# only call them. Run all cells (Run > Run All Cells), then play with the sliders at the end.

# %% tags=["parameters"]
# CI-sized defaults. Larger: N_MAX_LOG2 = 24 (16M tokens), DEMO_N = 96.
N_MIN_LOG2 = 10             # shortest sequence in the cost figure: 2**10 tokens
N_MAX_LOG2 = 20             # longest: 2**20 (about 1M) tokens
HEADS, HEAD_DIM = 32, 128   # one attention layer of a 7B-class model
DTYPE_BYTES = 2             # bf16 / fp16
ACCELERATOR_GB = 80         # memory of one large accelerator, GB (10^9 bytes)
DEMO_N, DEMO_HEADS = 32, 4  # pattern explorer: sequence length and number of heads

# %%
from IPython.display import Markdown, display

from longlab.analysis.dense_cost import dense_cost, dense_cost_table, format_bytes, format_count, max_n_for_memory
from longlab.attention.patterns import Dilated, SlidingWindow
from viz.complexity import dense_cost_figure, dense_cost_markdown
from viz.pattern_heatmap import pattern_explorer
from viz.tour import methods_markdown, notebooks_markdown

# %% [markdown]
# ## 1. Dense attention is quadratic
#
# Attention (Vaswani et al. 2017, eq. 1) scores every query against every key: `softmax(Q K^T / sqrt(d)) V`.
# For N tokens that is N^2 scores per head, each costing a d-long dot product for `Q K^T` and again for the
# weighted sum with `V`: **4 d N^2 FLOPs per head**. A naive kernel also stores the N x N score matrix.
# Memory-efficient kernels (FlashAttention; `longlab.attend` on CPU) avoid storing it, but still do every FLOP.

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
# Sparse patterns score fewer pairs. A sliding window keeps the w nearest keys (N w work); LongNet's
# dilated attention (Ding et al. 2023) mixes segments of growing length w_i with rows thinned by growing
# rates r_i, costing 2 N d sum_i(w_i / r_i^2) per head for `Q K^T`: linear in N once N exceeds the longest
# segment. The dotted curves are computed from the same pattern objects the kernels run.

# %%
patterns = {
    "sliding window 4096": SlidingWindow(window=4096),
    "LongNet dilated, w = 2k..32k, r = 1..16": Dilated((2048, 4096, 8192, 16384, 32768), (1, 2, 4, 8, 16)),
}
dense_cost_figure(ns, head_dim=HEAD_DIM, heads=HEADS, dtype_bytes=DTYPE_BYTES, patterns=patterns,
                  memory_line=ACCELERATOR_GB * 1e9, memory_line_label=f"{ACCELERATOR_GB} GB accelerator")

# %% [markdown]
# ## 2. Look at a pattern
#
# Each square is a (query, key) pair that head `head` scores. Colours name the branch that shows the key;
# blended, darker squares (with a number when N is small) are seen through several branches and so count
# several times in the softmax, exactly as the lse merge of branches does. Move the sliders: `pattern`
# switches dense / sliding window / dilated; a dilated pattern uses LongNet's geometric schedule
# w_i = w0 * ratio^i, r_i = ratio^i; different heads keep different rows (offsets).

# %%
pattern_explorer(kind="dilated", n=DEMO_N, heads=DEMO_HEADS, segment=4, ratio=2, branches=3)

# %% [markdown]
# ## 3. The methods
#
# How longlab's notebooks attack the cost: compute less (sparse patterns), remember more (memory and
# retrieval), or split the sequence over devices (sequence parallelism). Methods whose notebook is not written
# yet are marked *coming*.

# %%
display(Markdown(methods_markdown(".")))
display(Markdown("**All notebooks in this folder**\n\n" + notebooks_markdown(".")))
