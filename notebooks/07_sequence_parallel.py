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
# # 07 · Sequence parallelism: Ulysses, ring (zigzag) and LongNet, simulated and real
#
# **The problem.** One sequence is too long for one device: its activations (and the attention work) do not fit.
# So we cut it into P pieces on P devices ("ranks"), N/P tokens each. Attention, though, needs every query to
# meet every key: something has to move between ranks, and how much moves, how much each rank must hold, and
# whether it is still exact decide which method to use.
#
# **Symbols.** N tokens; H heads of D dimensions each, so a token's q (or k, or v) has **h = H·D** numbers (the
# model width); P ranks, each starting with N·h/P numbers per tensor.
#
# **What you will see.** Each method checked against one device (forward and gradients), a step-by-step replay of
# who holds which block, the bytes each rank sends and the memory it must hold as N and P grow, the causal
# load balance of zigzag, and a real run on gloo processes. Three answers:
#
# * **DeepSpeed-Ulysses** ([Jacobs et al. 2023](https://arxiv.org/abs/2309.14509)): an all-to-all turns
#   "my positions, all heads" into "all positions, my H/P heads"; plain attention per head; an all-to-all back.
# * **Ring attention** ([Liu et al. 2023](https://arxiv.org/abs/2310.01889)): queries stay put, key/value
#   blocks travel around the ring for P-1 steps; partial results merge exactly by log-sum-exp. The
#   **zigzag** layout (rank r holds chunks r and 2P-1-r) balances causal work.
#   The merge is the online softmax (Milakov & Gimelshein 2018): rank r keeps a running output $o$ and
#   log-sum-exp $\ell$ (the log of its softmax denominator so far, $\ell_i = \log\sum_j e^{q_i\cdot k_j/\sqrt D}$ over
#   the keys seen), and after attending its queries to the visiting block $t$, with partial result $(o_t, \ell_t)$,
#   $$\ell' = \log\left(e^{\ell} + e^{\ell_t}\right), \qquad o' = e^{\ell - \ell'}\, o + e^{\ell_t - \ell'}\, o_t .$$
#   After P-1 steps $o$ is exactly softmax attention over all keys (notebook 00 checks the two-block case).
# * **LongNet** ([Ding et al. 2023](https://arxiv.org/abs/2307.02486), sec. 3.1): dilated attention makes
#   each segment's keys sparse *before* they travel; only ranks that share a segment exchange them.
#
# Each algorithm is written **once** against a small `Communicator` protocol and runs in two worlds:
# `SimGroup` (all ranks as threads of this kernel, every transfer recorded, an alpha-beta clock) and
# `TorchGroup` (real processes talking through `torch.distributed`'s gloo backend).

# %% tags=["parameters"]
# CI-sized defaults (the whole notebook runs in well under 30 s). Bigger: SEQ = 128, VOLUME_N = 4096,
# VOLUME_WORLDS = (2, 4, 8, 16), REAL_N = 8192.
METHOD, WORLD, SEQ, HEADS, CAUSAL, STEP = "zigzag", 4, 64, 4, True, 1   # step-by-step walk-through
CHECK_N, CHECK_WORLDS = 64, (2, 4, 8)                                   # exactness table (float64)
VOLUME_N, VOLUME_P, VOLUME_HEADS, VOLUME_HEAD_DIM = 512, 4, 8, 16       # communication volume figure
VOLUME_WORLDS, VOLUME_LENGTHS = (2, 4, 8), (256, 512, 1024, 2048)
WORK_N, WORK_P = 1024, 4                                                # causal work per rank
REAL_WORLD, REAL_N, REAL_HEADS, REAL_HEAD_DIM = 2, 1024, 4, 32          # the real gloo run
CALIBRATION = "../data/gloo_alpha_beta.json"  # alpha/beta measured by `longlab parallel --calibrate`

# %%
import torch
from IPython.display import Markdown, display

import longlab
from longlab.analysis.activation_memory import activation_bytes_per_rank, activation_elements_per_rank
from longlab.analysis.dense_cost import format_bytes
from longlab.parallel import cost, load_alpha_beta, simulate
from longlab.parallel.methods.ring import causal_pairs_per_rank
from viz.dilated_explorer import markdown_table
from viz.parallel_compare import measure_methods, method_options, random_qkv
from viz.parallel_cost import causal_work_figure, measured_figure, volume_figure
from viz.parallel_trace import trace_explorer
from viz.teaching import answer

# %% [markdown]
# ## 1. Same answer as one device
#
# For every method and world size we run the simulated world on float64 inputs and compare with
# single-device attention (`longlab.attend`; for LongNet `longlab.dilated_attention` with the same segments
# and rates), forward and gradients. The gradients also travel: the backward of an all-to-all is the inverse
# all-to-all, of an all-gather a reduce-scatter, of a ring shift the reverse shift.

# %%
rows = ["| method | P | causal | max abs error, out | max abs error, grads | bytes sent per rank (fwd + bwd) |",
        "|---|---|---|---|---|---|"]
for method in ("ulysses", "ring", "zigzag", "longnet"):
    for world in CHECK_WORLDS:
        q, k, v = (t.double().requires_grad_() for t in random_qkv(CHECK_N, 8, head_dim=8, seed=world))
        opts = method_options(method, CHECK_N, base=CHECK_N // 4)
        out, trace = simulate(method, q, k, v, world, causal=CAUSAL, **opts)
        if method == "longnet":
            ref, _ = longlab.dilated_attention(q, k, v, list(opts["segment_lengths"]), list(opts["dilation_rates"]),
                                              causal=CAUSAL, return_lse=True)
        else:
            ref, _ = longlab.attend(q, k, v, causal=CAUSAL)
        g = torch.randn_like(out)
        got, want = torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)
        err_out = (out - ref).abs().max().item()
        err_grad = max((a - b).abs().max().item() for a, b in zip(got, want))
        rows.append(f"| {method} | {world} | {CAUSAL} | {err_out:.1e} | {err_grad:.1e} | {max(trace.bytes_sent):,} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 2. Step by step: who holds what
#
# Pick a method, P, N, heads and causal; the step slider walks through the transfers the simulator recorded.
# Each cell is a (rank, sequence chunk) pair and lists the blocks that rank holds. Ulysses' all-to-alls leave
# every rank with *all* chunks but only its head block (`q[h1]` = q of head block 1); ring attention keeps one
# visiting k/v block at a time; LongNet's all-gathers move only sparse rows, and only inside a segment.
# Ulysses with P not dividing H refuses to run: the head count is its hard limit.
#
# **Try this** (answers computed below; click to open):
# 1. Choose `ulysses` with P = 8 and 4 heads. What happens, and why?
# 2. Choose `ring` with P = 4, then P = 8: how many transfer steps does a rank make, and do its bytes sent grow?
# 3. Double N for `ring` and for `ulysses`: what happens to each rank's bytes sent and to the memory it holds?

# %%
trace_explorer(METHOD, WORLD, SEQ, HEADS, CAUSAL, STEP)

# %% jupyter={"source_hidden": true}
try:
    simulate("ulysses", *random_qkv(SEQ, 4, head_dim=8, seed=0), 8, causal=CAUSAL)
    refused = "it ran (unexpected)"
except ValueError as err:
    refused = f"it refuses: *{err}*."
ring_steps = {p: len(cost.plan("ring", p, cost.Workload(SEQ, HEADS))) for p in (4, 8)}
ring_bytes = {p: max(cost.bytes_per_rank("ring", p, cost.Workload(SEQ, HEADS))) for p in (4, 8)}
grow = {m: max(cost.bytes_per_rank(m, 4, cost.Workload(2 * SEQ, HEADS))) / max(cost.bytes_per_rank(
    m, 4, cost.Workload(SEQ, HEADS))) for m in ("ring", "ulysses")}
hold = {m: activation_elements_per_rank(m, 2 * SEQ, HEADS, 64, 4) / activation_elements_per_rank(m, SEQ, HEADS, 64, 4)
        for m in ("ring", "ulysses")}
display(answer(
    f"1. Ulysses with P = 8 and 4 heads: {refused} After its all-to-all each rank owns H/P whole heads, so P "
    f"cannot exceed (and must divide) H.\n\n"
    f"2. Ring: {ring_steps[4]} transfer steps at P = 4, {ring_steps[8]} at P = 8 (P - 1: the k/v blocks of every "
    f"other rank visit once); bytes sent per rank {ring_bytes[4]:,} → {ring_bytes[8]:,} "
    f"(x{ring_bytes[8] / ring_bytes[4]:.2f}: about 2Nh(P-1)/P, nearly flat in P).\n\n"
    f"3. Doubling N multiplies bytes sent per rank by x{grow['ring']:.1f} (ring) and x{grow['ulysses']:.1f} "
    f"(Ulysses), and memory held per rank by x{hold['ring']:.1f} and x{hold['ulysses']:.1f}: everything per rank "
    f"is linear in N; only adding ranks brings it back down."))

# %% [markdown]
# ## 3. How many bytes move
#
# With h = H·D the width of one token's q, k or v: per layer (forward), each rank sends (formulas in
# `longlab.parallel.cost`, exact for the code above):
# Ulysses 4 all-to-alls of (P-1)/P of its shard, 4Nh(P-1)/P² ≈ 4Nh/P per rank (the paper's "4Nh/P per link");
# Megatron-SP's all-gathers and reduce-scatters 4Nh(P-1)/P ≈ 4Nh, whatever P; ring P-1 k/v blocks, 2Nh(P-1)/P ≈ 2Nh;
# LongNet's sparse k/v gathers, which stay flat as N grows when the dilation grows with the segment length.
# Lines are the formulas, circles the bytes `SimGroup` counted on real tensors.

# %%
volume_figure(VOLUME_N, VOLUME_P, VOLUME_HEADS, VOLUME_HEAD_DIM, VOLUME_WORLDS, VOLUME_LENGTHS)

# %%
def work(n, m):
    return cost.Workload(n, VOLUME_HEADS, VOLUME_HEAD_DIM, opts=method_options(m, n))
per_rank = {m: [max(cost.bytes_per_rank(m, VOLUME_P, work(n, m))) for n in VOLUME_LENGTHS] for m in cost.METHODS}
growth = {m: v[-1] / v[0] for m, v in per_rank.items()}
display(Markdown(
    f"From N = {VOLUME_LENGTHS[0]} to {VOLUME_LENGTHS[-1]} "
    f"({VOLUME_LENGTHS[-1] // VOLUME_LENGTHS[0]}x) at P = {VOLUME_P}, "
    "bytes per rank grow " + ", ".join(f"**{m}** {g:.2f}x" for m, g in growth.items()) + ". "
    f"At N = {VOLUME_LENGTHS[-1]}, Ulysses sends {per_rank['ring'][-1] / per_rank['ulysses'][-1]:.1f}x less than ring "
    f"and {per_rank['megatron'][-1] / per_rank['ulysses'][-1]:.1f}x less than Megatron-SP."
))

# %% [markdown]
# ### What each rank must hold
#
# Splitting the sequence is done for memory first: each rank starts with N·h/P numbers per tensor. During
# attention it holds more, depending on the method (`longlab.analysis.activation_memory`, forward, one layer,
# float32 like the bytes above): Ulysses q, k, v, out of all N tokens for H/P heads (4Nh/P); ring its own q, k,
# v, out shard plus one visiting k/v block (6Nh/P); Megatron-SP the all-gathered input (Nh) plus its heads'
# q, k, v, out (4Nh/P). Next to it, the bytes each rank sends (from the same cost plans as the figure):

# %%
def memory_rows(pairs):
    rows = []
    for n, p in pairs:
        row = {"N": n, "P": p, "N·h/P (one shard)": format_bytes(4 * n * VOLUME_HEADS * VOLUME_HEAD_DIM / p)}
        for m in ("ulysses", "ring", "megatron"):
            row[f"{m}: holds"] = format_bytes(activation_bytes_per_rank(m, n, VOLUME_HEADS, VOLUME_HEAD_DIM, p, 4))
            row[f"{m}: sends"] = format_bytes(max(cost.bytes_per_rank(m, p, work(n, m))))
        rows.append(row)
    return rows


single = activation_bytes_per_rank("single device", VOLUME_LENGTHS[-1], VOLUME_HEADS, VOLUME_HEAD_DIM, 1, 4)
worlds_ok = [p for p in VOLUME_WORLDS if VOLUME_HEADS % p == 0]
display(Markdown(
    f"**Against P** (N = {VOLUME_LENGTHS[-1]}, {VOLUME_HEADS} heads x {VOLUME_HEAD_DIM}; one device would hold "
    f"{format_bytes(single)}):\n\n" + markdown_table(memory_rows([(VOLUME_LENGTHS[-1], p) for p in worlds_ok]))
    + f"\n\n**Against N** (P = {VOLUME_P}):\n\n"
    + markdown_table(memory_rows([(n, VOLUME_P) for n in VOLUME_LENGTHS]))))

# %% [markdown]
# ## 4. Causal work: contiguous vs zigzag
#
# With causal attention and contiguous shards, rank P-1's queries see every key while rank 0's see only its
# own: the last rank does most of the work and everybody waits for it. Zigzag gives rank r chunks r and
# 2P-1-r, one early and one late, and the pair counts come out identical.

# %%
contiguous = causal_pairs_per_rank(WORK_N, WORK_P, "contiguous")
zigzag = causal_pairs_per_rank(WORK_N, WORK_P, "zigzag")
display(Markdown(f"Slowest / fastest rank: contiguous **{max(contiguous) / min(contiguous):.1f}x**, "
                 f"zigzag **{max(zigzag) / min(zigzag):.2f}x** (N = {WORK_N}, P = {WORK_P})."))
causal_work_figure(WORK_N, WORK_P)

# %% [markdown]
# ## 5. For real: gloo processes on this machine
#
# `launch` runs the very same code on `REAL_WORLD` processes (gloo over loopback). The ranks fork from a
# clean helper process (a fork server that has imported torch once and never computes), so a launch starts
# in a fraction of a second; the first one also starts the helper. Forking this kernel itself would be
# unsafe: after any matrix product it can deadlock a child. `start_method="spawn"` works too (slower start).
# The model below is the alpha-beta cost of the communication alone, with alpha and beta measured on this
# machine by `longlab parallel --calibrate` (saved in `data/gloo_alpha_beta.json`). On a CPU the attention
# compute dominates the measured time; on GPUs with a fast link the balance shifts.

# %%
model = load_alpha_beta(CALIBRATION)
measured = measure_methods(["ulysses", "ring", "zigzag", "longnet"], REAL_WORLD, REAL_N, REAL_HEADS,
                           REAL_HEAD_DIM, causal=True, model=model)
assert all(r["bytes_sent"] == r["formula_bytes"] for r in measured)  # measured bytes = formula, every rank
table = ["| method | rank | measured (s) | bytes sent | model comm (s) |", "|---|---|---|---|---|"]
table += [f"| {r['method']} | {r['rank']} | {r['measured_s']:.4f} | {r['bytes_sent']:,} | {r['model_comm_s']:.5f} |"
          for r in measured]
display(Markdown(f"alpha = {model.alpha:.3g} s, beta = {model.beta:.3g} s/byte\n\n" + "\n".join(table)))
measured_figure(measured)

# %% [markdown]
# ## 6. When does each method win?
#
# * **Ulysses** moves the least per rank (about 4Nh/P elements, falling as P grows) and runs stock attention per
#   head, so any attention kernel works unchanged. But it cannot use more ranks than heads (P must divide H;
#   with grouped-query attention, small k/v head counts get repeated), and its all-to-alls block: nothing
#   to overlap them with.
# * **Ring** sends more (P-1 k/v blocks per rank, about 2Nh whatever P) but point to point, to one neighbour,
#   and each transfer overlaps the current block's compute: when a block's attention takes longer than its
#   transfer, communication is free. No head-count limit, so it scales to any P; use zigzag when causal.
# * **LongNet distributed** only pays for the sparse keys of segments longer than a shard, and only between
#   ranks of the same segment: with dilation growing like the segment length the per-rank volume stays
#   nearly constant as N grows, the property that lets the paper reach a billion tokens. The price is that
#   attention itself is sparse (dilated), not dense.
# * **Megatron-SP** (formula only here) all-gathers and reduce-scatters activations around the attention
#   and MLP blocks: about 4Nh per rank per layer, independent of P, which is why Ulysses was proposed.

# %% [markdown]
# ## What to remember
#
# - Every method here is exact: ring and LongNet glue partial attentions with the lse (online-softmax) merge,
#   Ulysses re-splits by heads; gradients travel back along the reversed transfers.
# - Per rank, Ulysses sends and holds about 1/P of the sequence (but P <= H); ring sends about 2Nh whatever P,
#   holds 6Nh/P, and overlaps its transfers with compute; Megatron-SP holds the whole gathered input.
# - Causal attention needs zigzag (chunks r and 2P-1-r) to keep every rank equally busy.
