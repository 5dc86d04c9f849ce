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
# **The problem.** A model with a context of C tokens forgets everything older: a function defined 5,000 bytes
# earlier is gone. Making C larger costs C² in attention. Can a model instead *look up* what it read long ago,
# the way you search your notes, at the cost of a nearest-neighbour search?
#
# **What you will see.** The memory store; what a trained model retrieves, as a timeline and as text; why the
# memory learns nothing by gradient (computed); exact vs approximate search; the paper's claim, loss falling as the
# memory grows, recorded and rerun live; where in the text memory helped; and how this differs from the Focused
# Transformer's single softmax. Symbols: a **KV cache / memory** holds the keys $k_j$ and values $v_j$ that past
# tokens produced in the attention layer; a query $q$ scores them by $q \cdot k_j$; "top-$k$" keeps the $k$ best.
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
SCALE_CSV = "../data/bench/memory_scale_cpu.csv"  # committed `longlab bench memory --scale` run (16k..16M keys)
THREADS = 1                  # a 0.6M-parameter model gains nothing from more threads on a shared CPU

# %%

import torch
from IPython.display import Markdown, display

from longlab.analysis.memory_gradient import memory_gradient_check
from longlab.analysis.retrieval_text import byte_context, markdown_text, most_confident_query, retrieved_text_rows
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
from viz.scale import scale_record
from viz.teaching import answer
from viz.tour import METHODS, find_notebook

torch.set_num_threads(THREADS)
model, info = load_checkpoint(CHECKPOINT)
docs = held_out_long_files(EVAL_DOCS)  # held-out files in path order: a rule fixed in advance
doc = docs[0]
tokens = doc.tokens()
pre = info.get("pretrain")
phases = (f"dense pretraining {pre['steps']} steps in {pre['elapsed_s']:.0f} s, memory fine-tuning " if pre else "")
display(Markdown(
    f"**{model}**: {phases}{info['train']['steps']} steps in {info['train']['elapsed_s']:.0f} s "
    f"({info['train']['threads']} CPU thread(s)): held-out loss at training time **{info['val_loss']:.3f}** "
    f"nats/byte vs **{info['unigram_val_loss']:.3f}** for a unigram model (which bytes: see the table below). "
    f"Document: `{doc.name}` ({tokens.numel():,} bytes)."))

# %% [markdown]
# **Which bytes, which memory?** The training-time number and the no-memory numbers of section 4 come from different
# evaluations. Recomputed here on the very bytes the training-time evaluation read (its first 32 windows of 256
# bytes: the start of the first held-out file), with and without memory, next to the recorded sweep:

# %%
first_bytes = 32 * model.config.context
same = loss_vs_memory(model, tokens, [0, 16384], max_tokens=first_bytes, progress=False).mean_losses()
sweep_rec = MemorySweep.from_record(info["memory_eval"])
doc_row = next(r for r in sweep_rec.rows(digits=None) if r["document"] == doc.name)
display(Markdown(markdown_table([
    {"evaluation": "training-time record (`val_loss`)", "bytes": f"first {first_bytes:,} of `{doc.name}`",
     "memory (tokens/head)": "16,384", "loss (nats/byte)": f"{info['val_loss']:.4f}"},
    {"evaluation": "recomputed now", "bytes": f"first {first_bytes:,} of `{doc.name}`",
     "memory (tokens/head)": "16,384", "loss (nats/byte)": f"{same[1]:.4f}"},
    {"evaluation": "recomputed now", "bytes": f"first {first_bytes:,} of `{doc.name}`",
     "memory (tokens/head)": "0", "loss (nats/byte)": f"{same[0]:.4f}"},
    {"evaluation": "recorded sweep (section 4)", "bytes": f"first {sweep_rec.bytes_per_doc[0]:,} of `{doc.name}`",
     "memory (tokens/head)": "0", "loss (nats/byte)": f"{doc_row['memory 0']:.4f}"},
    {"evaluation": "recorded sweep (section 4)",
     "bytes": f"first {sweep_rec.bytes_per_doc[0]:,} of each of {len(sweep_rec.names)} files",
     "memory (tokens/head)": "0", "loss (nats/byte)": f"{sweep_rec.mean()[0]:.4f}"}])))
display(Markdown(
    f"Same model, same definition of loss: the numbers differ because the bytes differ. The training-time "
    f"evaluation reads only the first {first_bytes:,} bytes of `{doc.name}`, which open with a licence header and "
    f"prose comments (`{bytes(tokens[:40].tolist()).decode(errors='replace').splitlines()[0]}` ...), harder for a "
    f"model of code than the code further on; the sweep reads {sweep_rec.bytes_per_doc[0]:,} bytes of every "
    f"held-out file. On the same bytes, memory lowers the loss by {same[0] - same[1]:.3f} nats/byte."))

# %% [markdown]
# ## 1. The memory store
#
# `KVMemory` is a per-head FIFO ring buffer of (key, value, position, document id). Search is exact and
# chunked (bounded memory even for a million keys) or goes through faiss. Nothing stored carries gradient (checked
# on the trained model right after this demo).

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
# **No gradient reaches memory.** The model reads window 1 (256 bytes), which writes its keys and values into the
# memory, then window 2, which reads them. With autograd on, we ask for the gradient of window 2's loss with respect
# to window 1's token embeddings (`longlab.analysis.memory_gradient`):

# %%
grad_check = memory_gradient_check(model, tokens, memory_size=RETRIEVAL_MEMORY)
display(Markdown(
    f"Forward: window 1 changes window 2's loss through the memory, {grad_check.loss_without_memory:.4f} → "
    f"{grad_check.loss_with_memory:.4f} nats/byte. Backward: the {grad_check.stored_tensors} tensors stored in "
    f"memory carry autograd history: **{grad_check.stored_requires_grad}**; a gradient from window 2's loss reaches "
    f"window 1: **{grad_check.gradient_reaches_window1}** (autograd finds no path), while inside window 2 the "
    f"gradient flows as usual (norm {grad_check.local_gradient_norm:.3f}). So training shapes how the layer *reads* "
    f"memory (its queries, gate and temperature) but never what was written: old entries are fixed, and can go "
    f"stale as the weights change (the reason LongMem freezes its backbone)."))

# %% [markdown]
# ## 2. What does a query retrieve?
#
# The model reads the document window by window (each window is the local context); the memorizing layer
# records, for every byte, the 32 memory entries each head retrieved. Move the slider to pick a query byte:
# the timeline shows *where* in the document the retrieved entries come from (marker size = attention weight),
# the bars their cosine scores. In the first window the memory is still empty (read happens before write).
#
# **Try this** (answers computed below; click to open):
# 1. Put the query slider in the first window (bytes 0-255). What is retrieved, and why?
# 2. Look at the gates $g = \sigma(b_h)$ below the explorer: which head relies most on memory?
# 3. In section 4's live rerun, why can a memory larger than the bytes read (say 16,384 tokens on a 4,096-byte
#    read) not beat a smaller one?

# %%
ret = record_retrievals(model, tokens, memory_size=RETRIEVAL_MEMORY, max_tokens=RETRIEVAL_BYTES, progress=False)
retrieval_explorer(ret)

# %% [markdown]
# The same information as text (hover text is lost in a static page): for the query byte and head with the most
# confident retrieval (highest top-1 cosine score, a rule fixed in advance), the entries with the largest attention
# weights and the bytes around them (the retrieved byte in ⟦ ⟧, ⏎ a newline):

# %%
query_byte, query_head = most_confident_query(ret)
text_rows = [{**row, "text around it": markdown_text(row["text around it"])}
             for row in retrieved_text_rows(ret, query_byte, query_head)]
display(Markdown(f"Query byte {query_byte} (head {query_head}): {markdown_text(byte_context(ret.tokens, query_byte))}"
                 "\n\n" + markdown_table(text_rows)))

# %%
display(gates_figure(ret.gates))
back = (ret.positions >= 0)
distance = (torch.arange(ret.tokens.numel())[None, :, None] - ret.positions).float()[back]
display(Markdown(f"Retrieved entries lie on average **{distance.mean():.0f}** bytes before their query "
                 f"(median {distance.median():.0f}); all come from document id(s) "
                 f"{sorted(set(ret.doc_ids[back].tolist()))} because memory is cleared at document starts."))

# %% jupyter={"source_hidden": true}
context = model.config.context
first_window = int((ret.positions[:, :context] >= 0).sum())
gates = ret.gates.tolist()
display(answer(
    f"1. In the first window every head retrieves {first_window} entries: the layer reads memory *before* writing "
    f"the current window, and at a document start the memory is empty; the first {context} bytes use local "
    f"attention only.\n\n"
    f"2. Gates per head: {', '.join(f'{g:.2f}' for g in gates)}; head {max(range(len(gates)), key=gates.__getitem__)}"
    f" puts the largest share ({max(gates):.2f}) of its output on the memory read, head "
    f"{min(range(len(gates)), key=gates.__getitem__)} the smallest ({min(gates):.2f}).\n\n"
    f"3. A memory of M tokens differs from a smaller one of M' only after more than M' tokens were written, i.e. "
    f"on the bytes after about M' + {context}. A {EVAL_BYTES:,}-byte read holds at most {EVAL_BYTES:,} tokens, so "
    f"every memory of ≥ {EVAL_BYTES:,} tokens sees exactly the same entries: the curve must be flat there."))

# %% [markdown]
# ## 3. Exact vs approximate search
#
# At 262k memory tokens the paper uses approximate kNN (ScaNN). Here: the layer's real memory keys, searched
# exactly (`torch`: blocks of scores, keeping only the groups of keys that can still enter a query's top-k) and
# by faiss (`flat` exact, `hnsw` graph, `ivf` clusters): recall is the fraction of the exact top-k each index
# finds. (`longlab bench memory` times 1M keys against faiss.)

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
# ### Search at scale: 16k to 16M keys (recorded)
#
# The Focused Transformer's memories reach millions of tokens. `longlab bench memory --scale` fills one head of
# D = 64 keys and values up to 16,777,216 entries and asks top-32 for 1024 queries: exact (`KVMemory`), faiss
# brute force on the same key buffer, and faiss IVF behind the same `KVMemory` API with more or fewer lists
# scanned (`nprobe`): each point of the right panel is one nprobe, further right = slower and more exact.
#
# How the exact search gets under the float32 matmul's cost: on CPUs that multiply bfloat16 in hardware it first
# scores every key in bfloat16 (a cheaper matmul), keeps $4k$ candidates per query, rescores only those in float32,
# and then *proves* for each query that no key left out could have made its top-$k$: a left-out key screened at
# most the lowest kept score $c$, and rounding moves a score by at most $\varepsilon\,|q|\,\max_j|k_j|$
# ($\varepsilon \approx 3 \cdot 2^{-8}$), so if the $k$-th best rescored score is at least $c$ plus that bound, the
# answer is exact. Queries that fail the proof (keys bunched within rounding) are searched again in float32. The
# dotted line is the same search without the screen.
#
# Keeping candidates is cheap too: each block of scores is cut into groups of 32 keys, and only groups whose maximum
# reaches a query's running threshold (its $k$-th best so far) are kept. Once every threshold is positive, those
# maxima are taken on the scores' bits read as integers of the same width: a positive float orders like its bits,
# a negative one reads as a negative integer, and the CPU finds an integer maximum far faster than a bfloat16 one.

# %%
display(*scale_record(SCALE_CSV, "memory"))


# %% [markdown]
# ## 4. Loss vs memory size (the paper's claim)
#
# The memorizing layer mixes memory and local attention through a learned gate, two softmaxes kept apart. The
# Focused Transformer (notebook 04) instead puts memory keys and local keys into **one** softmax, so the two compete
# for the same attention mass and no gate is needed; it then has to train against "distraction" by irrelevant
# memory keys (crossbatch training). The link to that notebook is computed below.
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
context = model.config.context
reach = [f"{big:,} vs {small:,}: about {max(0, sweep.bytes_per_doc[0] - small - context):,} bytes"
         for small, big in zip(MEMORY_SIZES, MEMORY_SIZES[1:])]
display(Markdown(f"Live ({len(docs)} file(s) x {sweep.bytes_per_doc[0]:,} bytes): "
                 f"{describe(MEMORY_SIZES, sweep.mean())}. What this size can show: each larger memory can only differ "
                 f"from the next smaller one on the bytes read after the smaller one filled up ({'; '.join(reach)}), "
                 f"on {len(docs)} file(s) instead of {len(recorded.names)}: a small rerun shows the direction of the "
                 f"effect on this file, not the size of the recorded mean; for that, use the larger parameters."))
focused = find_notebook(next(m for m in METHODS if m.key == "focused"), ".")
display(Markdown("Gate vs one softmax: " + (f"see [{focused}]({focused})." if focused else
                                             "notebook 04 (Focused Transformer) is not in this folder yet.")))

# %% [markdown]
# ## 5. Where did memory help?
#
# Loss without memory minus loss with the largest memory, byte by byte (grey) and smoothed (orange): above zero,
# memory lowered the loss. Hover over the peaks to read which bytes memory helped to predict; the table below
# lists the top ones as text.

# %%
curve = loss_vs_memory(model, tokens, MEMORY_SIZES, max_tokens=EVAL_BYTES, progress=False)
display(memory_helped_figure(curve, size_index=-1, smooth=32))
helped = curve.helped(-1)
display(Markdown(markdown_table([
    {"predicted byte": int(t) + 1, "loss without memory": round(float(curve.token_losses[0, t]), 3),
     f"with {MEMORY_SIZES[-1]:,}": round(float(curve.token_losses[-1, t]), 3),
     "text (predicted byte in ⟦ ⟧)": markdown_text(byte_context(curve.tokens, int(t) + 1, before=28, after=0))}
    for t in torch.topk(helped, 6).indices.tolist()])))

# %% [markdown]
# ## What to remember
#
# - A kNN memory keeps past (key, value) pairs of one layer; each query attends to its top-k matches, mixed with
#   local attention by a learned per-head gate (Memorizing Transformer), read before write, cleared per document.
# - Memory passes information forward but no gradient backward: stored entries are fixed once written.
# - Loss falls as memory grows only on text longer than the smaller memory; compare numbers only on the same bytes.
