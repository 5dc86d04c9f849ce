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
# # 05 · LongMem: a frozen backbone, a trainable SideNet, a chunked memory
#
# **The problem: stale memory.** A Memorizing Transformer (notebook 03) stores the keys $k_j$ that its attention
# layer wrote for past tokens and searches them later with new queries $q$. But that layer keeps training: after
# some updates the weights would write a *different* key for the same text, while the memory still holds the old
# one. Queries from the new weights then search keys made by old weights: the memory has gone **stale**.
#
# **The idea** (LongMem, Wang et al. 2023, [arXiv 2306.07174](https://arxiv.org/abs/2306.07174)): let a
# **frozen** model write the memory, so its keys can never go stale, and train only a small **SideNet** beside it
# that reads the memory. Symbols used below:
#
# - the **backbone** has $L$ layers; $H_0$ is its embedding output and $H_\ell$ the output of layer $\ell-1$
#   (so $H_L$ feeds its final norm and LM head); it is frozen (no gradient, no parameter update, ever);
# - **reduction** $r$: the SideNet has $S = \lceil L / r\rceil$ layers; layer $i$ starts as a copy of a backbone
#   layer and adds the **cross-network residual** $H_{hi_i} - H_{lo_i}$ with $(lo_i, hi_i) = (r i, \min(r(i+1), L))$;
#   it reads $H_0$ and writes through the frozen LM head;
# - backbone layer $m$ hands its pre-RoPE keys and values to a **memory bank** per batch lane, in **chunks** of
#   $csz$ tokens; a chunk's key is the mean of its token keys; a query takes the top $K/csz$ chunks by
#   $q\cdot\overline{k}_{\text{chunk}}$ and attends to their $K$ tokens;
# - SideNet layer $j$ fuses local causal attention $A$ (with RoPE positions) and memory attention $M$ (no
#   positions) by a learned gate per head: $\text{out} = (1-g_h)A + g_h M$, $g_h = \sigma(b_h)$, $b_h = 0$ at start.
#   $j$ is the SideNet's last layer, not layer 0: layer 0 reads $H_0$, the token embedding, so its queries would
#   depend on the current byte alone and could not look up the past by what came before. $m$ is the backbone's
#   Memorizing layer (notebook 03), whose keys were trained to be searched without positions.
#
# **What you will see.** Staleness measured (section 1); why the SideNet starts as the backbone, as arithmetic
# (section 2); the data flow drawn from the model object (section 3); token-to-chunk retrieval on a toy bank, then
# what the trained model retrieves, as text (section 4); gates, training curve, loss against memory size and the
# frozen backbone's bit-identity (sections 5-7). The SideNet here was trained by `longlab train-sidenet` beside the
# committed Memorizing checkpoint run without memory (all layers dense), on the standard library's long `.py` files.

# %% tags=["parameters"]
# CI-sized defaults (~1 min on 2 busy cores). Larger: EVAL_DOCS = 14, EVAL_BYTES = 16384,
# MEMORY_SIZES = [0, 1024, 4096, 16384] (the recorded sweep, ~9 min), RETRIEVAL_BYTES = 8192, STALE_STEPS = 20.
SIDENET = "../data/checkpoints/longmem_sidenet.safetensors"
CLAIMS = "../data/longmem/claims.json"
LONGER = "../data/longmem/eval_32000.json"  # data/longmem/eval_longer.py: the bytes of notebook 03's sweep
EVAL_DOCS = 1                   # held-out source files (path order) for the live loss-vs-memory rerun
EVAL_BYTES = 4096               # bytes read from the start of each
MEMORY_SIZES = [0, 1024, 4096]  # memory tokens per lane (0 = SideNet without memory); try up to 16384
RETRIEVAL_START = 16384         # byte of the file where the recorded read starts (past its licence header)
RETRIEVAL_BYTES = 2048          # bytes recorded for the retrieval table
RETRIEVAL_MEMORY = 4096         # memory tokens per lane while recording
STALE_STEPS = 3                 # live staleness check: extra training steps of the Memorizing checkpoint
THREADS = 1

# %%
import json
from pathlib import Path

import torch
from IPython.display import Markdown, display

from longlab.memory.longmem.chunk_bank import ChunkBank
from longlab.memory.longmem.evaluate import backbone_unchanged, longmem_sweep
from longlab.memory.longmem.model import LongMem, LongMemConfig, load_longmem
from longlab.memory.longmem.staleness import drift_probe, probe_windows, tinylm_layer_keys
from longlab.memory.longmem.train import train_streams
from longlab.memory.retrievals import record_retrievals
from longlab.models import TinyLM, TinyLMConfig, TrainConfig, evaluate, load_checkpoint
from longlab.tasks import held_out_long_files, split_source_documents
from viz.dilated_explorer import markdown_table
from viz.longmem import (
    compare_memorizing_figure,
    dataflow_figure,
    letter_query,
    loss_vs_memory_figure,
    retrieved_chunks,
    retrieved_chunks_explorer,
    staleness_figure,
    text_before,
    training_curve_figure,
)
from viz.memory_explorer import gates_figure
from viz.teaching import answer

torch.set_num_threads(THREADS)
model, meta = load_longmem(SIDENET)
claims = json.loads(Path(CLAIMS).read_text())
backbone_path = Path(SIDENET).parent / meta["backbone"]["path"]
train_docs, val_docs = split_source_documents()
display(Markdown(f"**{model!r}**  \nSideNet trained {claims['train']['steps']} steps in "
                 f"{claims['train']['elapsed_s']:.0f} s on {claims['train']['threads']} CPU thread(s) of a shared "
                 f"machine; backbone `{backbone_path.name}` (sha256 {meta['backbone']['sha256'][:12]}…, referenced, "
                 f"not copied)."))

# %% [markdown]
# ## 1. Staleness, measured
#
# Probe text: the first windows of a held-out file. We record the keys that the Memorizing checkpoint's memory
# layer writes for it ("cached"), train the whole model a few more steps, and ask what the *current* weights would
# write for the same text. The drift is the mean of $1 - \cos(k_\text{cached}, k_\text{now})$ over heads and tokens.

# %%
memorizing, memorizing_info = load_checkpoint(backbone_path)
layer = memorizing.memory_layers()[0].layer_index
probe_text = probe_windows(val_docs[0].tokens(), memorizing.config.context, 2)
live = train_streams(memorizing, list(memorizing.parameters()), [d.tokens() for d in train_docs[:8]], [],
                     TrainConfig(steps=STALE_STEPS, batch_size=4, lr=1e-3, warmup=1, eval_every=1, eval_windows=0),
                     probe=drift_probe(lambda m, w: tinylm_layer_keys(m, layer, w), probe_text), progress=False)
frozen_keys = lambda: model.backbone_states(probe_text, torch.arange(probe_text.shape[1]))[1][0]  # noqa: E731
before = frozen_keys()
display(Markdown(
    f"After {STALE_STEPS} more steps (lr 1e-3), the Memorizing layer's keys for the same text drifted by "
    f"**{live.history[-1]['drift']:.2e}** (mean 1 − cos; worst key {live.history[-1]['drift_max']:.2e}). "
    f"The LongMem backbone's keys for it, recomputed now: bit-identical to the ones it wrote: "
    f"**{torch.equal(before, frozen_keys())}**. The recorded run, over more steps:"))
display(staleness_figure(claims["staleness"]))
stale_rows = claims["staleness"]["memorizing"]["history"]
display(Markdown(
    f"Recorded: after {stale_rows[-1]['step']} steps the Memorizing keys drift by {stale_rows[-1]['drift']:.3f} on "
    f"average and {stale_rows[-1]['drift_max']:.3f} at worst, and {100 * stale_rows[-1]['changed']:.0f}% of key "
    f"vectors changed; the frozen backbone's drift stays exactly "
    f"{max(r['drift'] for r in claims['staleness']['frozen_backbone']['history'])} through "
    f"{claims['train']['steps']} SideNet steps (0% changed)."))

# %% [markdown]
# ## 2. Worked example: the SideNet starts next to the backbone
#
# The residual spans tile $0..L$: $H_0 + \sum_i (H_{hi_i} - H_{lo_i}) = H_L$. So if every SideNet sublayer
# output were zero, the SideNet would return the backbone's own final hidden state. Checked on a small random
# backbone of 5 layers with $r = 2$ (spans (0, 2), (2, 4), (4, 5)):

# %%
torch.manual_seed(0)
toy = LongMem(TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=5)),
              LongMemConfig(reduction=2, memory_size=64, topk=8)).double()
toy.side.zero_sublayers()
idx = torch.randint(0, 256, (1, 16))
hidden, kv = toy.backbone_states(idx, torch.arange(16))
x_side = toy.side(hidden, torch.arange(16), {"memory_kv": kv})
display(Markdown(f"spans {toy.side.spans}; max |x_S − H_L| = **{(x_side - hidden[-1]).abs().max():.1e}** "
                 f"(float64 rounding), while |H_L| is up to {hidden[-1].abs().max():.2f}."))

# %% [markdown]
# ## 3. The data flow, drawn from the model object
#
# Boxes and arrows come from `model.side.spans`, `model.side.init_from`, `model.config.source_layer` and
# `model.config.memory_layer`: the same fields the forward pass uses.

# %%
dataflow_figure(model)

# %% [markdown]
# ## 4. Token-to-chunk retrieval
#
# A toy bank first: 3 chunks of $csz = 2$ tokens with 2-dimensional keys, one query. The chunk key is the mean of
# its token keys, the score $q\cdot\overline{k}$; with $K = 2$ tokens asked, the single best chunk is retrieved
# and expanded back into its 2 tokens.

# %%
bank = ChunkBank(capacity=6, head_dim=2, heads=1, chunk_size=2)
toy_keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 2.0], [-1.0, 0.0], [3.0, -3.0]]])
bank.add(toy_keys, toy_keys.clone())
q_toy = torch.tensor([[[1.0, 0.5]]])
means = toy_keys[0].view(3, 2, 2).mean(1)
hits = bank.search(q_toy, 2)
display(Markdown(markdown_table([{"chunk": c, "token keys": toy_keys[0, 2 * c: 2 * c + 2].tolist(),
                                  "mean key": means[c].tolist(), "q · mean": float(q_toy[0, 0] @ means[c])}
                                 for c in range(3)])
                 + f"\n\nRetrieved token positions: {hits.positions[0, 0].tolist()}, keys {hits.keys[0, 0].tolist()}."))

# %% [markdown]
# Now the trained model on a held-out file: it reads part of the file window by window (256 bytes each) with a
# `RETRIEVAL_MEMORY`-token memory, and we keep what SideNet layer $j$ retrieved for every byte. The table shows,
# for the byte and head whose best chunk holds a letter and gets the most attention (a rule fixed in advance;
# chunks of pure indentation are the most common and least telling hits in code), the retrieved chunks as text,
# best first, with the score of the chunk and the attention weight its tokens got together.
#
# **Try this** (answers computed below; click to open):
# 1. Move the query slider into the first 256 bytes. What is retrieved, and why?
# 2. Which head relies most on memory after training (section 5), and how far did its gate move from 1/2?
# 3. In section 6's live rerun, did the memory of 4,096 tokens ever evict a chunk on a 4,096-byte read?

# %%
doc = held_out_long_files(1)[0]
ret = record_retrievals(model, doc.tokens()[RETRIEVAL_START:], memory_size=RETRIEVAL_MEMORY,
                        max_tokens=RETRIEVAL_BYTES, progress=False)
query, head = letter_query(ret, model.config.chunk_size)
display(Markdown(f"`{doc.name}` read from byte {RETRIEVAL_START:,} on (byte numbers below count from there; "
                 f"␣ is a space, ⏎ a newline); query byte {query}, head {head}, the text up to it: "
                 f"`…{text_before(ret, query)}`\n\n"
                 + markdown_table(retrieved_chunks(ret, query, head, model.config.chunk_size))))
retrieved_chunks_explorer(ret, model.config.chunk_size, query=query, head=head)

# %% [markdown]
# ## 5. Gates and training
#
# $g_h$ is the share of memory attention in head $h$'s output; all started at 1/2.

# %%
display(gates_figure(model.side.memory.gate()))
backbone_val = evaluate(model.backbone, [d.tokens() for d in val_docs], 16)
training_curve_figure(claims["train"]["history"], backbone_val)

# %% [markdown]
# ## 6. Loss against memory size
#
# The recorded sweep (`longlab train-sidenet`): every held-out file, memory empty at each file's start, each
# memory size one batch lane of the same text (as notebook 03). Then a small live rerun with the parameters above.

# %%
ev = claims["eval"]
display(loss_vs_memory_figure(ev, f"recorded: mean over {len(ev['documents'])} held-out files, first "
                                  f"{ev['eval_bytes']:,} bytes each"))
ordered = all(a > b for a, b in zip(ev["mean_loss"], ev["mean_loss"][1:]))
best = min(range(len(ev["mean_loss"])), key=lambda i: ev["mean_loss"][i])
with_memory = ev["mean_loss"][1:]
display(Markdown(
    f"Frozen backbone alone: **{ev['mean_backbone']:.4f}** nats/byte; SideNet + memory: "
    + ", ".join(f"{s:,} tokens **{v:.4f}**" for s, v in zip(ev["memory_sizes"], ev["mean_loss"]))
    + f". The SideNet without memory already beats the backbone by {ev['mean_backbone'] - ev['mean_loss'][0]:.4f} "
    f"(it is a trained addition on this corpus); memory takes another "
    f"{ev['mean_loss'][0] - ev['mean_loss'][best]:.4f} off (best at {ev['memory_sizes'][best]:,} tokens). "
    f"Loss falls strictly as memory grows (the paper's claim): **{ordered}**. Most of the gain comes with the first "
    f"{ev['memory_sizes'][1]:,} tokens; the larger sizes add {with_memory[0] - min(with_memory):.4f} more: on these "
    f"{ev['eval_bytes']:,}-byte reads a bigger bank differs only by the older tokens it still holds late in a file."))

# %%
live_sweep = longmem_sweep(model, held_out_long_files(EVAL_DOCS), MEMORY_SIZES, max_tokens=EVAL_BYTES,
                           progress=False)
loss_vs_memory_figure(live_sweep, f"live: {EVAL_DOCS} file(s), first {EVAL_BYTES:,} bytes")

# %% [markdown]
# **Against the Memorizing Transformer, on the same bytes.** `data/longmem/eval_longer.py` read the first 32,000
# bytes of every held-out file with this SideNet: the bytes of the Memorizing checkpoint's recorded sweep
# (notebook 03). That checkpoint's weights are this backbone's, so with memory 0 it *is* the backbone alone: the two
# records must agree there (checked below and in `tests/test_longmem_claims.py`).

# %%
longer = json.loads(Path(LONGER).read_text())
memo = memorizing_info["memory_eval"]
display(compare_memorizing_figure(longer, memo))
display(Markdown(
    f"Backbone alone: {longer['mean_backbone']:.4f} here vs {memo['mean_loss'][0]:.4f} in the Memorizing record "
    f"(difference {abs(longer['mean_backbone'] - memo['mean_loss'][0]):.1e}). With a 16,384-token memory: LongMem "
    f"{longer['mean_loss'][-1]:.4f}, Memorizing {memo['mean_loss'][-1]:.4f} nats/byte. The Memorizing model was "
    f"fine-tuned whole, {memorizing_info['train']['steps']} steps with memory; this SideNet had "
    f"{claims['train']['steps']} steps and a frozen backbone; from 1,024 tokens on its curve falls by "
    f"{longer['mean_loss'][1] - longer['mean_loss'][-1]:.4f} (Memorizing: "
    f"{memo['mean_loss'][1] - memo['mean_loss'][-1]:.4f})."))

# %% [markdown]
# ## 7. The backbone is bit-identical after training
#
# Every tensor of the backbone inside the trained model, compared with the checkpoint file it was loaded from:

# %%
same = backbone_unchanged(model, backbone_path)
display(Markdown(f"now: {same['identical']} of {same['tensors']} tensors identical; recorded right after training: "
                 f"{claims['backbone']['identical']} of {claims['backbone']['tensors']}."))

# %% jupyter={"source_hidden": true}
context = model.config.context
first = int((ret.positions[:, :context] >= 0).sum())
gates = model.side.memory.gate().tolist()
top = max(range(len(gates)), key=lambda h: gates[h])
held = (EVAL_BYTES // context - 1) * context
display(answer(
    f"1. In the first window nothing is retrieved ({first} entries over all heads and bytes): the layer reads the "
    f"bank *before* the window is written, and the bank was emptied at the file's start.\n"
    f"2. Head {top}: g = {gates[top]:.3f}, {gates[top] - 0.5:+.3f} from the start value 1/2 (all heads: "
    f"{', '.join(f'{g:.3f}' for g in gates)}).\n"
    f"3. No: when the last window is read the bank holds {held:,} tokens, fewer than 4,096, so nothing was "
    f"evicted; a 4,096-token and a 16,384-token bank see the same chunks on this read."))

# %% [markdown]
# ## What to remember
#
# - A memory written by a layer that keeps training goes stale (keys drift from what the weights now write);
#   LongMem writes memory with a frozen backbone, so its cached keys stay exactly valid.
# - The SideNet is small, starts from backbone layers, and adds residuals $H_{hi}-H_{lo}$ that telescope to the
#   backbone's output; only it (and the memory gate) learns.
# - Memory is chunked per lane: search $K/csz$ chunk means, attend to $K$ tokens, fused with local attention by a
#   per-head gate. The layer that reads memory must have seen context: queries from the token embedding alone
#   (SideNet layer 0) retrieve the same chunks for every occurrence of a byte, and more memory then does not help.
#   Memory lowered the loss here, and more memory lowered it further, by little: section 6 measures it.
