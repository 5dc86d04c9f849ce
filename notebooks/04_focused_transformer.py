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
# # 04 · Focused Transformer: memory in one softmax, trained against distraction
#
# **The problem: distraction.** Give an attention layer a memory of many documents' (key, value) pairs and let its
# queries attend to all of them. While the memory is small, the few relevant keys (from this document) win the
# softmax. As it grows, irrelevant keys (other documents, or old parts of this one) that merely *look* similar
# pile up: relevant and irrelevant keys overlap in key space, and the attention mass spreads over thousands of
# distractors. The Focused Transformer (Tworkowski et al. 2023, [arXiv 2307.03170](https://arxiv.org/abs/2307.03170);
# the models are called LongLLaMA) measures this with the **distraction ratio** and fixes it in training.
#
# **What you will see.** The layer and its equation, checked against a dense reference; a crossbatch batch drawn
# lane by lane; $r_d$ curves of a model trained with and without negatives; dictionary lookups answered from
# memory far beyond the local window, with the retrieved definition shown as text; FoT against the Memorizing
# Transformer's gated layer. Symbols: a query $q$ scores a key $k_j$ by $q \cdot k_j / \sqrt{D}$ ($D$ the head
# dimension); a **window** is the $L$ tokens the model reads at once; a **lane** is one row of a batch.
#
# **The layer.** Local causal keys $K_\text{loc}$ (rotated by their position in the window, RoPE) and memory keys
# $K_\text{mem}$ (stored **un-rotated**, i.e. at position 0) go through **one** softmax with the same scale and no
# gate:
#
# $$\text{out}_i = \sum_{j} \frac{\exp(q_i \cdot k_j / \sqrt D)}{Z_i}\, v_j, \qquad
# Z_i = \sum_{j} \exp(q_i \cdot k_j / \sqrt D), \qquad j \in K_\text{mem} \cup \{\text{local } j \le i\}.$$
#
# In longlab that is `merge([attend(q, k, v, causal=True), memory partial])`: two exact partial attentions combined
# by their log-sum-exp. Memory entries come from the lane's own past windows (top-$k$ by inner product through
# `KVMemory`, or all of memory), read before the current window is written, never with gradient.
#
# **Crossbatch training, a contrastive signal.** During training there is no memory. Each lane is one document,
# read as two consecutive windows. The memory layer's queries in the current window of lane $i$ see, in the same
# one softmax, all keys of the previous window of $d$ lanes: lane $i$'s own (the **positive**, relevant) and $d-1$
# other lanes' (**negatives**, other documents). Gradients flow through both windows, so the keys and queries are
# shaped to tell relevant from irrelevant: the contrastive idea (as in InfoNCE) applied to attention.
# **Distraction ratio** $r_d$: the attention mass on the positive window divided by the mass on all $d$ windows;
# about $1/d$ for a model that cannot tell them apart.

# %% tags=["parameters"]
# CI-sized defaults (~30-60 s on 2 busy cores). Larger: R_LANES = 16, R_BATCHES = 4, QUESTIONS = 50,
# LIVE_WINDOWS = 64 (a dictionary 64 L tokens long in memory).
DISTRACTION = "../data/focused/distraction.json"
DICTIONARY = "../data/focused/dictionary.json"
PASSKEY = "../data/focused/passkey.json"
CHECKPOINTS = "../data/checkpoints"
R_LANES = 8                 # lanes (documents) per batch for the live r_d measurement (d up to R_LANES)
R_BATCHES = 1               # batches averaged
QUESTIONS = 10              # live dictionary questions per setting
LIVE_WINDOWS = 16           # dictionary length in windows of L tokens for the live lookups
LAYOUT_LANES = 8
THREADS = 1

# %%
import json
import math
import random
from pathlib import Path

import torch
from IPython.display import Markdown, display

from longlab.attention import reference_attention
from longlab.attention.reference import causal_mask
from longlab.memory.focused.crossbatch import make_layout, measure_distraction
from longlab.memory.focused.layer import FocusedAttention, read_into_memory
from longlab.memory.focused.tasks import KEY_CUT_REACH, dictionary_accuracy, local_context, make_window_dictionary
from longlab.memory.lanes import memory_lanes
from longlab.models import TinyLMConfig, load_checkpoint
from longlab.tasks import encode, load_source_documents, split_source_documents
from viz.dilated_explorer import markdown_table
from viz.focused import (
    accuracy_figure,
    crossbatch_layout_explorer,
    distraction_figure,
    head_mass_figure,
    retrieved_rows,
    value_loss_race_figure,
)
from viz.teaching import answer

torch.set_num_threads(THREADS)
checkpoints = Path(CHECKPOINTS)

# %% [markdown]
# ## 1. One softmax, checked
#
# A small Focused layer in float64: it reads three windows into memory, then a fourth window attends to
# [all 24 memory keys, un-rotated; its own keys, causal]. The same numbers come out of the plain dense
# `reference_attention` over that key set (and with `topk` at least the memory size, top-$k$ keeps everything).

# %%
torch.manual_seed(0)
cfg = TinyLMConfig(context=8, d_model=16, n_heads=2, n_layers=1, attention="focused", memory_size=64, memory_topk=64)
layer = FocusedAttention(cfg).double()
xs = [torch.randn(1, 8, 16, dtype=torch.float64) for _ in range(4)]
pos = torch.arange(8)
with torch.no_grad():
    mem_k = torch.cat([layer.project(x)[1] for x in xs[:3]], dim=2)  # un-rotated keys, as stored
    mem_v = torch.cat([layer.project(x)[2] for x in xs[:3]], dim=2)
    for x in xs[:3]:
        layer(x, pos)
    stored = len(layer.memories[0])  # read before write: the 4th window sees these, then adds its own
    got = layer(xs[3], pos)
    q_raw, k_raw, v = layer.project(xs[3])
    q, k = layer.rotate(q_raw, k_raw, pos)
    mask = torch.cat([torch.ones(8, 24, dtype=torch.bool), causal_mask(8, 8)], dim=1)
    want, _ = reference_attention(q, torch.cat([mem_k, k], 2), torch.cat([mem_v, v], 2), mask=mask)
    error = (got - layer.merge_heads(want)).abs().max().item()
display(Markdown(f"Largest difference between the layer and the dense one-softmax reference: **{error:.1e}** "
                 f"(float64). Memory entries the 4th window read: {stored}; they carry gradient: "
                 f"**{layer.memories[0].keys.requires_grad}**."))

# %% [markdown]
# ## 2. A crossbatch batch
#
# Rows are the current windows (their queries), columns the previous windows (their keys). Dark: the lane's own
# previous window, the positive; light: the $d-1$ negatives, drawn from lanes of other documents (seeded). Move
# $d$: at $d = 1$ training sees only the positive (no contrast), at $d$ = the number of lanes every lane sees
# every previous window.
#
# **Try this** (answers computed below; click to open):
# 1. With 8 lanes and $d = 4$, how many previous-window keys does one current query see, for windows of $L = 128$?
# 2. If a model attended uniformly to all of them, what would $r_4$ be? And the model with $r_8 = 0.5$?
# 3. Why must a lane's positive be its *own document's* previous window, and what happens to a lane whose previous
#    window belongs to another document?

# %%
crossbatch_layout_explorer(lanes=LAYOUT_LANES, d=4)

# %% jupyter={"source_hidden": true}
example = make_layout(LAYOUT_LANES, 4, random.Random(0), docs=list(range(LAYOUT_LANES)))
display(answer(
    f"1. {example.d} windows x 128 keys = {example.d * 128} memory-like keys, plus its own causal local keys "
    f"(at most 128).\n\n"
    f"2. Uniform attention gives every window the same mass: $r_4$ = 1/4 = {1 / 4}. $r_8 = 0.5$ means half of the "
    f"mass on the 8 windows goes to the 1 relevant one, 4x the {1 / 8} of an unfocused model.\n\n"
    f"3. The positive teaches 'attend here'; if lane i's previous window came from another document, the keys "
    f"labelled positive would be irrelevant and training would reward distraction. longlab samples both windows "
    f"from one document (`CrossbatchBatches`), and a layout can also mark a lane as having no positive, which "
    f"then sees no crossbatch keys at all (tested)."))

# %% [markdown]
# ## 3. Distraction: $r_d$ with and without negatives
#
# Two copies of one model (the committed Memorizing checkpoint's weights, its middle layer turned into a Focused
# layer) were fine-tuned on the standard library's source files with the same seed, data and budget: one with
# crossbatch $d = 1$ (no negatives), one with $d = 8$. $r_d$ is measured on held-out source files (files the
# training split never saw), for $d = 1 \dots 16$. Recorded by `data/focused/make_distraction.py`; below the
# record, a small live rerun on the same checkpoints.

# %%
distraction = json.loads(Path(DISTRACTION).read_text())
models = distraction["models"]
curves = {"plain (trained d = 1)": models["trained_d1"]["r_d"], "focused (trained d = 8)": models["trained_d8"]["r_d"],
          "before fine-tuning": models["untrained"]["r_d"]}
display(distraction_figure(curves, title=f"recorded r_d ({distraction['held_out_documents']} held-out files, "
                                         f"windows of {distraction['window']} bytes)"))
plain8, cross8 = models["trained_d1"]["r_d"]["8"], models["trained_d8"]["r_d"]["8"]
display(Markdown(f"Recorded $r_8$: **{cross8:.3f}** trained with negatives vs **{plain8:.3f}** without "
                 f"({cross8 / plain8:.2f}x; the goal was at least 2x; 1/8 = 0.125 is no focus at all)."))

held_train, _ = split_source_documents()
seen = {d.name for d in held_train}
window = distraction["window"]
held = [d.tokens() for d in load_source_documents(min_bytes=2 * window + 1) if d.name not in seen]
live = {}
for name, file in (("plain (trained d = 1)", "focused_plain"), ("focused (trained d = 8)", "focused_crossbatch")):
    model, _ = load_checkpoint(checkpoints / f"{file}.safetensors")
    ds = [d for d in (1, 2, 4, 8, 16) if d <= R_LANES]
    live[name] = measure_distraction(model, held, ds, lanes=R_LANES, batches=R_BATCHES, window=window, seed=1)
display(distraction_figure(live, title=f"live rerun: {R_LANES} lanes x {R_BATCHES} batch(es), other windows"))

# %% [markdown]
# **Why no focus here.** $r_d = 1/d$ to three decimals is not a broken measurement: a hand-built layer whose
# queries match their own bytes gives $r_8 \approx 0.98$ through the same code (`tests/test_focused_distraction.py`).
# It is these weights. Crossbatch training rewards focus only through the LM loss, so the positive must be worth
# something to the model, and here it is not: the model cannot copy, not even 64 bytes repeated inside its own
# window. With negatives in view, the cheapest way to stop the distraction is to look less at all previous windows,
# and that is what the $d = 8$ model learnt. `data/focused/diagnose_distraction.py` records the numbers below; the
# three lines under the table are ceilings on the same windows: a perfectly sharp head matching the last $n$ bytes;
# an induction-like head that scores $\beta$ per byte of the longest common suffix (up to 16 bytes), so that long
# matches, rare in other documents, count most; and a head that copies nothing but scores $\beta$ times the cosine
# between the byte counts of the query's window so far and of the key's window up to the key (how alike the two
# windows look, something one uniform attention head below could supply). The last line sets the goal (twice the
# plain model's $r_8$) against the best of each: either a near-ideal copier or a sharp window-statistics matcher
# would reach it; these models learnt neither, because nothing in their loss paid for it.

# %%
diagnosis = json.loads(Path(DISTRACTION).with_name("distraction_diagnosis.json").read_text())
rows = ["| model | $r_8$ | $r_8$, positive = copy of the current window | mass on previous windows | positive worth "
        "(nats) | 64 bytes repeated in the window: loss first / again |", "|---|---|---|---|---|---|"]
for name, row in diagnosis["models"].items():
    copying = row["copy_loss_nats"]
    rows.append(f"| {name} | {row['r_8']:.3f} | {row['r_8_previous_window_is_a_copy_of_the_current']:.3f} | "
                f"{row['mass_on_previous_windows']:.3f} | {row['positive_gain_nats']:+.4f} | "
                f"{copying['in_window_first_time']:.2f} / {copying['in_window_repeated']:.2f} |")
ceiling = diagnosis["content_matching_ceiling"]["r_8_by_ngram"]
rows.append("\nIdeal content-matching head, $r_8$ by $n$: " + ", ".join(f"{n}: {r:.3f}" for n, r in ceiling.items()))
longest = diagnosis["longest_match_ceiling"]["r_8_by_beta_per_byte"]
rows.append("\nLongest-match head, $r_8$ by $\\beta$ per byte: "
            + ", ".join(f"{b}: {r:.3f}" for b, r in longest.items()))
statistics = diagnosis["window_statistics_ceiling"]["r_8_by_beta"]
rows.append("\nWindow-statistics head, $r_8$ by $\\beta$: " + ", ".join(f"{b}: {r:.3f}" for b, r in statistics.items()))
goal = 2 * diagnosis["models"]["trained_d1"]["r_8"]
rows.append(f"\nGoal {goal:.3f} (2x the plain model's $r_8$); best ideal n-byte head {max(ceiling.values()):.3f}, "
            f"best longest-match head {max(longest.values()):.3f}, "
            f"best window-statistics head {max(statistics.values()):.3f}.")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 4. Dictionary lookup far beyond the window
#
# The paper's synthetic task: definitions `abcd:xyz;` (window-aligned, 7 per $L = 64$-byte window), then a question
# `?abcd:` whose answer is the value. A small model with one **focused** layer was trained with crossbatch pairs
# (its recipe is printed below, from the record). To test it, a whole dictionary is read into memory window
# by window (`read_into_memory`), and the local context holds the question after a few definitions of **other**
# keys: the asked definition lies at least one window back, the oldest 16 $L$ or 64 $L$ tokens back. The same
# model with memory size 0 sees only that local text: chance ($26^{-3}$).

# %%
def recorded(path):
    """The recorded JSON at `path`, or None (then the section says it was not recorded in this checkout)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


dictionary = recorded(DICTIONARY)
claim2 = (dictionary or {}).get("claim2_model", "focused")  # the model trained on for claim 2
# the record names each model's checkpoint, relative to the project root (two folders above `checkpoints`)
recorded_checkpoint = (dictionary or {}).get("models", {}).get(claim2, {}).get("checkpoint")
dict_checkpoint = checkpoints.parents[1] / recorded_checkpoint if recorded_checkpoint else None
if dictionary is None or claim2 not in dictionary["models"]:
    display(Markdown("*Not recorded in this checkout: run `data/focused/make_dictionary.py` (see its docstring).*"))
else:
    fot = dictionary["models"][claim2]
    acc = fot["accuracy"]
    each = fot.get("accuracy_per_dictionary", {})
    rows = [{"definitions": f"{w} L = {w * dictionary['window_L']:,} tokens back",
             "with memory": f"{acc[f'{w}L_memory']:.0%}", "without memory": f"{acc[f'{w}L_no_memory']:.0%}",
             "with memory, per dictionary": ", ".join(f"{a:.2f}" for a in each.get(f"{w}L_memory", [])),
             # the model it was trained on from (claim 4's, random keys only): what the hard keys changed
             **({"first model, with memory": f"{dictionary['models']['focused']['accuracy'][f'{w}L_memory']:.0%}"}
                if claim2 != "focused" and "focused" in dictionary["models"] else {})}
            for w in (16, 64)]
    display(Markdown(f"Exact-match accuracy, mean over {dictionary.get('dictionaries', 1)} dictionaries of "
                     f"{dictionary['questions']} questions each:\n\n" + markdown_table(rows)))
    history = fot["train"]["history"]
    train = fot["train"]
    kinds = train.get("kinds", "dense,MEMORY,dense").replace("MEMORY", "**focused**").replace(",", ", ")
    start = "from scratch" if train.get("init") == "random" else f"fine-tuned from `{train.get('init')}`"
    phases = train.get("phases", [train])
    near_steps = sum(p["steps"] for p in phases if p.get("near_miss"))
    near = [f"the last {near_steps} steps with near-miss keys in some lanes"] if near_steps else []
    grown = [f"one dense layer inserted at index {p['grown_at']} (starting as the identity)" for p in phases
             if p.get("grown_at") is not None]
    display(Markdown(f"Training: layers {kinds}, {start}, {train['steps']} steps of {train['lanes']} lanes, key "
                     f"length by step "
                     f"`{train.get('key_schedule', '4')}`, d schedule `{train['schedule']}`"
                     + "".join(f"; {part}" for part in near + grown) + "; value loss "
                     f"{history[0]['value_loss']:.3f} → {history[-1]['value_loss']:.3f} nats "
                     f"(chance: ln 26 = {math.log(26):.3f})."))
    probe = {name: m["near_miss_probe"] for name, m in dictionary["models"].items() if "near_miss_probe" in m}
    if probe:
        display(Markdown(
            "**Why long dictionaries are hard.** With random keys, one or two letters already tell the 7 keys of a "
            "training window apart, so a model can learn to match only part of a key, and a memory of hundreds of "
            "definitions then holds many keys that agree on that part. One window of definitions, all 7 keys asked, "
            "keys random against keys that differ from each other in one letter (`near_miss_keys`):\n\n"
            + markdown_table([{"model": name, **{kind: round(acc, 3) for kind, acc in row.items()}}
                              for name, row in probe.items()])))
    per_byte = {name: m["per_byte_accuracy"] for name, m in dictionary["models"].items()
                if "per_byte_accuracy" in m and name != "memorizing"}
    if per_byte:
        display(Markdown(
            "**Where lookups break, byte by byte** (teacher-forced: the true earlier value bytes given; questions "
            "about the oldest window's keys):\n\n"
            + markdown_table([{"model": name, "dictionary": f"{w} L",
                               **{f"value byte {i + 1}": round(a, 3) for i, a in enumerate(accs)}}
                              for name, rows in per_byte.items() for w, accs in rows.items()])))
    if fot.get("lookup_r_d"):  # distraction on the lookup task: share of attention on the asked window
        display(distraction_figure({"this model, lookup windows": fot["lookup_r_d"]},  # draws 1/d itself
                                   title="recorded: r_d at the answer bytes, own definitions window vs d - 1 others"))
    if fot.get("sweep"):
        display(accuracy_figure({"focused, memory": [(r["tokens_in_memory"], r["accuracy"]) for r in fot["sweep"]]},
                                title="recorded: lookup accuracy against dictionary tokens in memory (exact top-32)",
                                x_title="dictionary tokens in memory"))

# %% [markdown]
# **What did the layer retrieve?** For one question, the memory entries the focused layer's heads gave the most
# weight (their share of the one softmax) at the last byte of the question, with the bytes around each entry. In a
# model that has learnt the lookup, the definition of the asked key lights up: the retrieved byte is the first
# byte of its value. Live, on the recorded checkpoint (a fresh dictionary of `LIVE_WINDOWS` windows).

# %%
if dict_checkpoint is not None and dict_checkpoint.exists():
    model, info = load_checkpoint(dict_checkpoint)
    L = model.config.context
    book = make_window_dictionary(LIVE_WINDOWS, L, seed=123)
    oldest = len(book.keys) // LIVE_WINDOWS
    asked = random.Random(5).sample(range(oldest), min(QUESTIONS, oldest))
    shape = (dictionary or {}).get("local_context", {"defs": 0, "answered": 0})  # as the record asked
    context = local_context(book, seed=5, **shape)
    live_mem = dictionary_accuracy(model, book, asked, LIVE_WINDOWS * L, context=context)
    live_none = dictionary_accuracy(model, book, asked, None, context=context)
    display(Markdown(f"Live: {len(asked)} questions about the oldest window of a {LIVE_WINDOWS} L = "
                     f"{LIVE_WINDOWS * L:,}-token dictionary, each asked after the local text `{context}` (other "
                     f"keys only): accuracy **{live_mem:.2f}** with memory, **{live_none:.2f}** without."))
    question = context + book.question(asked[0])
    memory_layer = model.memory_layers()[0].layer_index
    text = encode(book.text)
    with memory_lanes(model, sizes=[LIVE_WINDOWS * L]):
        read_into_memory(model, text, keep_last=0)
        q_tokens = encode(question)[None]
        with torch.no_grad():
            logits, _, reads = model(q_tokens, return_retrievals=True)
    retrieval = reads[memory_layer].lanes[0]
    last = q_tokens.shape[1] - 1
    head = int(retrieval.weights[:, last].max(-1).values.argmax())
    where = book.text.index(book.keys[asked[0]] + ":")
    value_at = where + len(book.keys[asked[0]]) + 1
    hit = bool((retrieval.positions[:, last] == value_at).any())
    display(Markdown(f"Local window `{question}` (answer `{book.values[asked[0]]}`, its first byte at position "
                     f"{value_at}, {LIVE_WINDOWS * L - value_at:,} bytes before the question); the model's next "
                     f"byte: `{chr(int(logits[0, -1].argmax()))}`; some head retrieved the answer's first byte: "
                     f"**{hit}**. Head {head} (the most confident), top entries:\n\n"
                     + markdown_table(retrieved_rows(retrieval, text, last, head))))
else:
    display(Markdown("*No dictionary checkpoint in this checkout.*"))

# %% [markdown]
# ## 5. Passkey
#
# A number hidden in long filler text, asked for at the end (`longlab.tasks.passkey`). A small model with one
# focused layer and windows of $L = 128$ bytes was trained on pairs of windows (key line in the previous window,
# question and answer in the current one; its recipe is printed below, from the record). The prompt is read into
# memory; only the question stays local. Without memory the model sees its last window only. Recorded by
# `data/focused/make_passkey.py`; the bars show, per head of the memory layer, the attention mass on the pass-key
# line at the question's last byte (share of the one softmax, top-32 entries).

# %%
passkey = recorded(PASSKEY)
if passkey is None:
    display(Markdown("*Not recorded in this checkout: run `data/focused/make_passkey.py` (see its docstring).*"))
else:
    display(accuracy_figure({name: [(p["prompt_tokens"], p["accuracy"]) for p in pts]
                             for name, pts in passkey["curves"].items()},
                            title=f"recorded: passkey accuracy against prompt length ({passkey['examples_per_length']} "
                                  f"prompts per length, L = {passkey['window_L']})", x_title="prompt length (bytes)"))
    longest = max(passkey["key_line_mass_per_head"], key=int)
    if passkey["key_line_mass_per_head"][longest] is not None:
        display(head_mass_figure(torch.tensor(passkey["key_line_mass_per_head"][longest]),
                                 f"attention mass on the pass-key line per head, prompts of {longest} L"))
    train = passkey["train"]
    start = "from scratch" if train.get("init") == "random" else f"fine-tuned from `{train.get('init')}`"
    history = train["history"]
    kinds = train.get("kinds", "dense,focused,dense").replace("focused", "**focused**").replace(",", ", ")
    display(Markdown(f"Training: layers {kinds}, {start}, {train['steps']} steps of {train['lanes']} "
                     f"lanes, d = {train['crossbatch_d']}; loss on the answer bytes "
                     f"{history[0]['digit_loss']:.3f} → {history[-1]['digit_loss']:.3f} nats."))
    held = passkey["curves"]["focused, memory"]
    display(Markdown("With memory: " + ", ".join(f"{p['multiple_of_L']} L: {p['accuracy']:.0%}" for p in held) + "."))
    overlapped = passkey["curves"].get("focused, memory, read windows overlapping by L/2")
    if "key_cut" in held[0]:  # where it fails: keys cut by a read window's boundary
        share = lambda part: "-" if part["accuracy"] is None else f"{part['accuracy']:.0%} of {part['prompts']}"  # noqa: E731
        rows = []
        for i, p in enumerate(held):
            row = {"prompt": f"{p['multiple_of_L']} L = {p['prompt_tokens']:,} bytes",
                   "key intact": share(p["key_intact"]), "key cut by a boundary": share(p["key_cut"])}
            if overlapped:
                row["the same prompts, overlapping windows"] = f"{overlapped[i]['accuracy']:.0%}"
            rows.append(row)
        display(Markdown(
            "The prompt is read into memory in windows of $L$ bytes, and the dense layer below the memory layer sees "
            "only its own window. When a window boundary falls inside an occurrence of the key (or in the "
            f"{KEY_CUT_REACH} bytes before one), the bytes after it are stored without the bytes they follow, and "
            "the copy breaks. "
            "Reading windows that overlap by $L/2$ (`read_into_memory(..., overlap=L // 2)`: each window re-reads "
            "the last $L/2$ bytes and stores only its new ones, twice the reading compute) stores every byte with at "
            "least $L/2$ bytes before it:\n\n" + markdown_table(rows)))
    probe = passkey.get("one_L_instruction_probe")
    if probe:  # why 1 L is the weak point of both reads
        ask, swap = probe["instruction"], probe["filler_instead"]
        display(Markdown(
            f"At 1 L both reads are weak ({ask['plain']:.0%} plain, {ask['overlapped']:.0%} overlapping): the prompt "
            "has no filler, so the key line follows the instruction paragraph, which no training window shows. "
            f"The same {probe['prompts']} prompts with filler of the same length in place of the instruction: "
            f"{swap['plain']:.0%} plain, {swap['overlapped']:.0%} overlapping."))


# %% [markdown]
# ## 6. One softmax against a gate
#
# A fair race needs the same architecture, data and budget: the first two phases of section 4's recipe (2 layers
# from scratch, the same 64-lane lookup batches, steps and learning rates), once with the Focused layer and once with
# the Memorizing Transformer's gated kNN layer (memory of the previous window, detached, two softmaxes mixed by a
# learned gate). The two differ in more than the gate: crossbatch sends gradients into the previous window's keys,
# while the Memorizing layer's memory is detached, as in its paper. The Focused model's last 1500 steps saw 7
# negatives (d = 8), so its loss there is on a harder task; the column at the end of the first phase compares both
# at d = 1.

# %%
rows, histories = [], {}
for name, key in (("focused (one softmax)", "focused"), ("memorizing (gate)", "memorizing")):
    if dictionary is not None and key in dictionary["models"]:
        m = dictionary["models"][key]
        history = histories[name] = m["train"]["history"]
        first_phase = m["train"].get("phases", [m["train"]])[0]["steps"]  # both d = 1 up to here
        rows.append({"model": name,
                     f"value loss at step {first_phase}": round(next(r["value_loss"] for r in history
                                                                     if r["step"] == first_phase), 4),
                     "final value loss": round(history[-1]["value_loss"], 4),
                     "accuracy 16 L": m["accuracy"]["16L_memory"], "accuracy 64 L": m["accuracy"]["64L_memory"]})
if rows:
    display(Markdown(markdown_table(rows)))
    if len(rows) == 2:
        gap = rows[0]["final value loss"] - rows[1]["final value loss"]
        learnt = any(r["accuracy 16 L"] > 0 for r in rows)
        display(Markdown(f"Value loss, one softmax minus gate: {gap:+.3f} nats/byte (chance: ln 26 = "
                         f"{math.log(26):.3f}); " + ("at least one of them answers lookups from memory."
                                                     if learnt else "neither answers a lookup from memory at "
                                                     "this budget, so the race has no winner yet.")))
    display(value_loss_race_figure(histories, math.log(26),
                                   "the same lookup batches: value loss while training, one softmax vs gate"))
else:
    display(Markdown("*Not recorded in this checkout: `data/focused/make_dictionary.py train --layer memorizing`.*"))

# %% [markdown]
# ## What to remember
#
# - FoT's memory layer puts memory keys (un-rotated) and local keys (rotated) into one softmax with one scale and
#   no gate: exactly `merge` of two partial attentions.
# - A memory full of other documents' keys distracts: without training against it, attention mass on the relevant
#   context falls like $1/d$.
# - Crossbatch training shows each query its own previous window next to other documents' windows, with gradients:
#   contrastive training that keeps attention focused, with no memory needed during training.
# - At inference, `read_into_memory` lets a model answer about text far beyond its window. How the prompt is cut
#   into windows matters: a stored key carries only the context of its own window, so overlapping windows (section
#   5) keep keys intact.
# - A memory of many entries needs keys that are matched whole. Training windows whose keys differ in one letter
#   (hard negatives) and a second layer below the memory layer, so that every value byte's key carries its
#   definition's key, lifted lookups far back above the first model's (section 4's table has both); crossbatch
#   with as many negatives as the test-time memory holds (the last phase's d in the recipe line) did the rest. The
#   sweep shows where that training stops carrying: a memory many times larger than any seen in training.
