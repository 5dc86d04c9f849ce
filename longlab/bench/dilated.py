"""`longlab bench dilated`: LongNet dilated attention vs dense SDPA with the same causality, same run.

Config: 8 heads, D = 64, float32, segment_lengths [2048, 4096, 8192], dilation_rates [1, 2, 4].
Targets on the 2-core CPU: N = 16384 non-causal >= 4.0x faster than SDPA (FLOP ideal 4.57x); N = 65536
non-causal and causal >= 15x (ideal 18.3x); time(65536) / time(16384) <= 4.6; forward+backward at 65536 >= 8x.
`speedup` = sdpa_s / dilated_s; `flop_ideal_speedup` = dense pairs / dilated pairs from the pattern objects.
Peak memory = bytes of tensors created during the call (see longlab.analysis.memtrack), inputs excluded.
Dense SDPA at N = 65536 takes ~40 s forward on a quiet 2-core CPU, so large sizes run once (no warm-up);
smaller sizes alternate dilated and SDPA runs and keep the fastest of each. `--threads 1` is steadier on a
machine shared with other work (two threads wait on each other whenever one is descheduled).

`--flex` (default on; `--no-flex` skips it): the same forward by PyTorch's FlexAttention with the pattern's
block mask (`dilated_attention(backend="flex")`, same results): `flex_s` times the kernel with the mask
prebuilt, `flex_mask_s` the first mask build (compile included), `flex_max_diff` = max |flex - gathered|.
FlexAttention computes every tile holding a visible pair, so expect it slower than gathering on CPU.

`--scale`: LongNet on a laptop, N = 4k..1M with the geometric mix up to w = N, dense SDPA measured at
16k-64k and extrapolated by N^2, load average per row; see `longlab.bench._dilated_scale`.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..analysis.memtrack import timed_peak
from ..attention.dilated import dilated_attention
from ..attention.flex import block_mask, pattern_attention
from ..attention.patterns import Dense, Dilated
from ._dilated_scale import COLUMNS as SCALE_COLUMNS
from ._dilated_scale import SIZES as SCALE_SIZES
from ._dilated_scale import measure_scale
from .common import add_shape_arguments, device_label, random_qkv, stamp, time_call

NAME = "dilated"
HELP = "time LongNet dilated attention vs dense SDPA (forward, forward+backward, peak memory), N = 4k..64k"
COLUMNS = ["N", "causal", "pass", "dilated_s", "sdpa_s", "speedup", "flop_ideal_speedup", "dilated_peak_mib",
           "sdpa_peak_mib", "growth_vs_prev", "flex_s", "flex_max_diff"]
LARGE = 32768  # from this N on: one timed run, no warm-up (dense SDPA is tens of seconds)


def register(parser) -> None:
    add_shape_arguments(parser, sizes=[4096, 16384, 65536],
                        repeats_help="best of this many alternating runs below N = 32768")
    parser.add_argument("--quick", action="store_true", help="small smoke run: N = 2048, 8192, forward only")
    parser.add_argument("--segment-lengths", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--dilation-rates", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--backward-sizes", type=int, nargs="*", default=[16384, 65536],
                        help="sizes (among --sizes) also timed forward+backward, non-causal")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--flex", action=argparse.BooleanOptionalAction, default=True,
                        help="also time FlexAttention with the pattern's block mask (forward rows)")
    scale = parser.add_argument_group("--scale: LongNet's mix w0 * 2^i, r = 2^i up to w = N, N = 4k..1M "
                                      "(CSV dilated_scale_<device>.csv; see longlab.bench._dilated_scale)")
    scale.add_argument("--scale", action="store_true", help="run the scale benchmark instead")
    scale.add_argument("--scale-sizes", type=int, nargs="+", default=SCALE_SIZES)
    scale.add_argument("--w0", type=int, default=2048, help="first segment length of the geometric mix")
    scale.add_argument("--dense-sizes", type=int, nargs="*", default=[16384, 32768, 65536],
                       help="sizes where dense SDPA is measured (elsewhere extrapolated by N^2)")
    scale.add_argument("--scale-backward-sizes", type=int, nargs="*", default=[262144],
                       help="sizes also timed forward+backward (non-causal)")


def _measure_pair(ours, sdpa, n, repeats, device):
    """((seconds, peak bytes) for ours, same for sdpa). Small N: one warm-up each, then `repeats` rounds that
    alternate the two (both see the same machine load) and keep the fastest (noise only ever adds time).
    Large N on CPU: a single run each, no warm-up."""
    small = n < LARGE or torch.device(device).type == "cuda"  # a GPU runs even dense 65536 in well under a second
    rounds = repeats if small else 1
    if small:
        timed_peak(ours, device), timed_peak(sdpa, device)
    runs = [(timed_peak(ours, device), timed_peak(sdpa, device)) for _ in range(rounds)]
    best = [(min(r[i][0] for r in runs), max(r[i][1] for r in runs)) for i in (0, 1)]
    return best[0], best[1]


def _forward_fns(q, k, v, lengths, rates, causal):
    def ours():
        with torch.no_grad():
            dilated_attention(q, k, v, lengths, rates, causal=causal)

    def sdpa():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return ours, sdpa


def _backward_fns(q, k, v, lengths, rates, causal):
    qg, kg, vg = (t.detach().clone().requires_grad_() for t in (q, k, v))

    def ours():
        dilated_attention(qg, kg, vg, lengths, rates, causal=causal).sum().backward()

    def sdpa():
        F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal).sum().backward()

    return ours, sdpa


def _measure_flex(q, k, v, pattern, repeats, device) -> dict:
    """flex_s (best of `repeats` after one warm-up call that compiles), flex_mask_s, flex_max_diff."""
    with torch.no_grad():
        start = time.perf_counter()
        mask = block_mask(pattern, q.shape[1], q.shape[2], device=device)
        mask_s = time.perf_counter() - start
        out = pattern_attention(q, k, v, pattern, mask=mask)
        t_flex = min(time_call(lambda: pattern_attention(q, k, v, pattern, mask=mask), 1, warmup=0, device=device)
                     for _ in range(repeats))
        gathered = dilated_attention(q, k, v, list(pattern.segment_lengths), list(pattern.dilation_rates),
                                     causal=pattern.causal)
    return {"flex_s": t_flex, "flex_mask_s": mask_s, "flex_max_diff": (out - gathered).abs().max().item()}


def measure(sizes, heads: int = 8, head_dim: int = 64, segment_lengths=(2048, 4096, 8192),
            dilation_rates=(1, 2, 4), causal_modes=(False, True), backward_sizes=(), repeats: int = 3,
            device="cpu", progress: bool = True, flex: bool = False) -> list[dict]:
    """Time dilated_attention vs SDPA on random (1, heads, N, head_dim) inputs; one row per (N, causal, pass).
    flex: also time FlexAttention on the forward rows (columns empty elsewhere)."""
    device = torch.device(device)
    segment_lengths, dilation_rates = list(segment_lengths), list(dilation_rates)
    timed_peak(lambda: dilated_attention(*(torch.ones(1, 1, 8, 4),) * 3, [4], [2]))  # first-use costs of the tracker
    jobs = [(n, c, "fwd") for n in sizes for c in causal_modes]
    jobs += [(n, False, "fwd+bwd") for n in sizes if n in backward_sizes]
    rows, last = [], {}
    for n, causal, pass_ in tqdm(jobs, desc="bench dilated", unit="case", disable=not progress):
        q, k, v = random_qkv(heads, n, head_dim, device)
        make = _forward_fns if pass_ == "fwd" else _backward_fns
        ours, sdpa = make(q, k, v, segment_lengths, dilation_rates, causal)
        (t_ours, m_ours), (t_sdpa, m_sdpa) = _measure_pair(ours, sdpa, n, repeats, device)
        pattern = Dilated(segment_lengths, dilation_rates, causal=causal)
        ideal = Dense(causal).pairs(heads, n) / pattern.pairs(heads, n)
        prev = last.get((causal, pass_))
        flex_cols = dict.fromkeys(("flex_s", "flex_mask_s", "flex_max_diff"), "")
        if flex and pass_ == "fwd":
            flex_cols = _measure_flex(q, k, v, pattern, repeats if n < LARGE else 1, device)
        rows.append({
            "N": n, "causal": causal, "pass": pass_, "dilated_s": t_ours, "sdpa_s": t_sdpa,
            "speedup": t_sdpa / t_ours, "flop_ideal_speedup": ideal,
            "dilated_peak_mib": m_ours / 2**20, "sdpa_peak_mib": m_sdpa / 2**20,
            "growth_vs_prev": "" if prev is None else f"{t_ours / prev[1]:.3g} for N x{n // prev[0]}", **flex_cols,
            "heads": heads, "D": head_dim, "segment_lengths": " ".join(map(str, segment_lengths)),
            "dilation_rates": " ".join(map(str, dilation_rates)), "device": device_label(device),
            "threads": torch.get_num_threads(), **stamp(),
        })
        last[(causal, pass_)] = (n, t_ours)
    return rows


def mode(args) -> tuple[str, list[str] | None]:
    """CSV name and table columns: the scale benchmark writes its own file."""
    return ("dilated_scale", SCALE_COLUMNS) if args.scale else (NAME, COLUMNS)


def main(args) -> list[dict]:
    if args.scale:
        if args.threads:
            torch.set_num_threads(args.threads)
        causal_modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
        return measure_scale(args.scale_sizes, args.heads, args.head_dim, args.w0, 2, causal_modes,
                             args.dense_sizes, args.scale_backward_sizes, args.repeats, args.device)
    sizes, backward_sizes, repeats = ([2048, 8192], [], 1) if args.quick else (args.sizes, args.backward_sizes,
                                                                                 args.repeats)
    if args.threads:
        torch.set_num_threads(args.threads)
    causal_modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    rows = measure(sizes, args.heads, args.head_dim, args.segment_lengths, args.dilation_rates, causal_modes,
                   backward_sizes, repeats, args.device, flex=args.flex)
    return rows
