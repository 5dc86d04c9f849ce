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
# # 03 · kNN memory: the Memorizing Transformer retrieval explorer
#
# The Memorizing Transformer (Wu et al. 2022, [arXiv 2203.08913](https://arxiv.org/abs/2203.08913)) gives one
# attention layer an **external memory**: the (key, value) pairs of every token it has already read in the current
# document, kept in a FIFO of fixed size, **without gradient**. For each query the layer
#
# 1. retrieves the top-$k$ ($k = 32$) memory keys by (normalized) inner product: an exact or approximate kNN search;
# 2. attends over those $k$ entries (memory keys carry no position);
# 3. mixes that with ordinary local causal attention through a learned per-head gate:
#    $\text{out} = g \cdot \text{mem} + (1 - g)\cdot\text{local}$, $g = \sigma(b_h)$.
#
# Memory is read before the current window is written, and cleared at each document boundary.
# **Paper claim:** perplexity falls as the memory grows (2k → 8k → 32k → 262k tokens).
#
# Here: a byte-level `TinyLM` of three layers (dense, **memorizing**, dense: like the paper, the kNN layer sits
# below the top) trained for about 13 minutes on one CPU thread on the standard library's own long `.py` files
# (`longlab.tasks.source_corpus`, shipped with every Python; source code is where the paper found memory helps
# most): first as a dense model, then its middle layer became the memorizing layer and was fine-tuned with a
# 16k-token memory on whole files read window by window. It is loaded from a small committed checkpoint.

# %% tags=["parameters"]
# CI-sized defaults (~15-30 s on 2 busy cores). Larger: EVAL_DOCS = 14, EVAL_BYTES = 32000,
# MEMORY_SIZES = [0, 1024, 4096, 16384] (the recorded measurement, ~4 min), RETRIEVAL_BYTES = 8192,
# SEARCH_KEYS = 16384.
CHECKPOINT = "../data/checkpoints/tiny_memorizing.safetensors"
EVAL_DOCS = 1                # held-out source files (path order) read for the loss-vs-memory curve
EVAL_BYTES = 4096            # bytes read from the start of each of them
MEMORY_SIZES = [0, 1024, 4096]  # memory tokens per head (0 = local attention only); try up to 16384
RETRIEVAL_BYTES = 1024       # bytes recorded for the retrieval explorer
RETRIEVAL_MEMORY = 1024      # memory size (tokens per head) while recording
SEARCH_KEYS = 2048           # memory keys per head for the exact-vs-approximate search comparison
TOP_K = 32
THREADS = 1                  # a 0.6M-parameter model gains nothing from more threads on a shared CPU

# %%
import torch
from IPython.display import Markdown, display

from longlab.memory import KVMemory
from longlab.memory.memory_eval import MemorySweep, loss_vs_memory, loss_vs_memory_docs
from longlab.memory.retrievals import record_retrievals
from longlab.models import load_checkpoint
from longlab.tasks import held_out_long_files
from viz.dilated_explorer import markdown_table
from viz.memory_explorer import (
    gates_figure,
    loss_vs_memory_sweep_figure,
    memory_helped_figure,
    recall_figure,
    retrieval_explorer,
)

torch.set_num_threads(THREADS)
model, info = load_checkpoint(CHECKPOINT)
docs = held_out_long_files(EVAL_DOCS)  # held-out files in path order: a rule fixed in advance
doc = docs[0]
tokens = doc.tokens()
pre = info.get("pretrain")
phases = (f"dense pretraining {pre['steps']} steps in {pre['elapsed_s']:.0f} s, memory fine-tuning " if pre else "")
display(Markdown(
    f"**{model}**: {phases}{info['train']['steps']} steps in {info['train']['elapsed_s']:.0f} s "
    f"({info['train']['threads']} CPU thread(s)): held-out loss **{info['val_loss']:.3f}** nats/byte vs "
    f"**{info['unigram_val_loss']:.3f}** for a unigram model. Document: `{doc.name}` ({tokens.numel():,} bytes)."))

# %% [markdown]
# ## 1. The memory store
#
# `KVMemory` is a per-head FIFO ring buffer of (key, value, position, document id). Search is exact and
# chunked (bounded memory even for a million keys) or goes through faiss. Nothing stored carries gradient.

# %%
demo = KVMemory(capacity=6, key_dim=4, heads=2)
demo.add(torch.randn(2, 4, 4), torch.randn(2, 4, 4), doc_ids=0)
demo.add(torch.randn(2, 4, 4), torch.randn(2, 4, 4), doc_ids=1)  # 8 entries into 6 slots: 2 oldest evicted
hit = demo.search(torch.randn(2, 1, 4), k=3, normalize=True)
print(demo)
print("positions kept, oldest first:", demo.positions[demo.order()].tolist())
print("top-3 positions per head:", hit.positions[:, 0].tolist())
print("their cosine scores:", [[f"{s:.3f}" for s in head] for head in hit.scores[:, 0].tolist()])

# %% [markdown]
# ## 2. What does a query retrieve?
#
# The model reads the document window by window (each window is the local context); the memorizing layer
# records, for every byte, the 32 memory entries each head retrieved. Move the slider to pick a query byte:
# the timeline shows *where* in the document the retrieved entries come from (marker size = attention weight),
# the bars their cosine scores. In the first window the memory is still empty (read happens before write).

# %%
ret = record_retrievals(model, tokens, memory_size=RETRIEVAL_MEMORY, max_tokens=RETRIEVAL_BYTES, progress=False)
retrieval_explorer(ret)

# %%
display(gates_figure(ret.gates))
back = (ret.positions >= 0)
distance = (torch.arange(ret.tokens.numel())[None, :, None] - ret.positions).float()[back]
display(Markdown(f"Retrieved entries lie on average **{distance.mean():.0f}** bytes before their query "
                 f"(median {distance.median():.0f}); all come from document id(s) "
                 f"{sorted(set(ret.doc_ids[back].tolist()))} because memory is cleared at document starts."))

# %% [markdown]
# ## 3. Exact vs approximate search
#
# At 262k memory tokens the paper uses approximate kNN (ScaNN). Here: the layer's real memory keys, searched
# exactly (`torch`, chunked matmul + top-k) and by faiss (`flat` exact, `hnsw` graph, `ivf` clusters): recall
# is the fraction of the exact top-k each index finds. (`longlab bench memory` times 1M keys against faiss.)

# %%
try:
    from longlab.memory.recall import compare_search
    keys = ret.memory.keys[:, : len(ret.memory)]
    n_keys = min(SEARCH_KEYS, keys.shape[1] - 64)
    rows = compare_search(keys[:, :n_keys], keys[:, -64:], k=TOP_K)
    display(recall_figure(rows))
except ImportError as err:
    display(Markdown(f"*faiss is not installed ({err}); only exact search is available.* "
                     "Approximate indexes trade recall for speed; install `longlab[faiss]` to measure it."))


# %% [markdown]
# ## 4. Loss vs memory size (the paper's claim)
#
# Every memory size reads the same bytes with the same local windows, as batch lanes of one pass, so
# differences come from memory alone; each file is read from its start with an empty memory. A memory of
# $M$ tokens differs from a smaller one only once more than the smaller one has been read, so the large sizes need
# long files: the full measurement (recorded in the checkpoint's JSON by `data/make_checkpoints.py`) reads the
# first 32,000 bytes of **every** held-out file. The first figure is that record, the second a small live rerun.

# %%
def describe(sizes, losses):
    steps = [a - b for a, b in zip(losses, losses[1:])]
    return (f"mean loss {' → '.join(f'{l:.4f}' for l in losses)} nats/byte for memory {sizes}; "
            f"change at each step {', '.join(f'{-d:+.4f}' for d in steps)}; falls at every step: "
            f"**{all(d > 0 for d in steps)}**")


recorded = MemorySweep.from_record(info["memory_eval"])
display(loss_vs_memory_sweep_figure(recorded, title=f"recorded: loss vs memory size, {len(recorded.names)} held-out "
                                                    f"files x {recorded.bytes_per_doc[0]:,} bytes"))
display(Markdown(markdown_table(recorded.rows())))
display(Markdown(f"Recorded over all held-out files: {describe(recorded.memory_sizes, recorded.mean())}."))
sweep = loss_vs_memory_docs(model, docs, MEMORY_SIZES, max_tokens=EVAL_BYTES, progress=False)
display(loss_vs_memory_sweep_figure(sweep))
display(Markdown(f"Live ({len(docs)} file(s) x {sweep.bytes_per_doc[0]:,} bytes): "
                 f"{describe(MEMORY_SIZES, sweep.mean())}."))

# %% [markdown]
# ## 5. Where did memory help?
#
# Loss without memory minus loss with the largest memory, byte by byte (grey) and smoothed (orange): above zero,
# memory lowered the loss. Hover over the peaks to read which bytes memory helped to predict.

# %%
curve = loss_vs_memory(model, tokens, MEMORY_SIZES, max_tokens=EVAL_BYTES, progress=False)
display(memory_helped_figure(curve, size_index=-1, smooth=32))
