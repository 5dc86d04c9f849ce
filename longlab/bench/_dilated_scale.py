"""`longlab bench dilated --scale`: LongNet dilated attention from N = 4k to 1M tokens on this machine.

Workload: 8 heads, D = 64, float32, LongNet's geometric mix w_i = w0 * 2^i,
r_i = 2^i for every w_i <= N (w0 = 2048: 10 branches at N = 1,048,576, the last one w = N, so every token
reaches every other within the layer). One row per (N, causal) forward (no autograd: the streamed merge),
plus forward+backward rows at --backward-sizes (non-causal).
Dense SDPA is measured at --dense-sizes only (tens of seconds each at 64k); at every other N its time is
extrapolated by N^2 from the largest measured size and its peak linearly (flash SDPA keeps O(N) memory);
`sdpa_source` says which. Each row records the 1-minute load average before and after its measurement
(`os.getloadavg`): timings from a loaded machine (load >= 2.5 on 2 cores) are "measured under load".
Peak memory = bytes of tensors created during the call (longlab.analysis.memtrack), inputs excluded; it
does not depend on load.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..analysis.memtrack import timed_peak
from ..attention.dilated import dilated_attention
from ..attention.patterns import Dense, Dilated
from ..checks import positive_int
from .common import device_label, random_qkv, stamp

COLUMNS = ["N", "causal", "pass", "branches", "dilated_s", "dilated_peak_mib", "sdpa_s", "sdpa_peak_mib",
           "sdpa_source", "speedup", "flop_ideal_speedup", "load_before", "load_after"]
SIZES = [4096 * 2**i for i in range(9)]  # 4k .. 1M
QUIET_LOAD = 2.5  # 1-minute load average below which a 2-core machine counts as quiet


def longnet_branches(n: int, w0: int = 2048, ratio: int = 2) -> tuple[list[int], list[int]]:
    """LongNet's geometric mix for length n: segment lengths w0 * ratio^i and rates ratio^i for every
    w0 * ratio^i <= n (just [n], [1] when n < w0)."""
    positive_int("n", n), positive_int("w0", w0)
    if ratio < 2:
        raise ValueError(f"ratio must be an int >= 2, got {ratio!r}")
    lengths, rates = [], []
    w, r = w0, 1
    while w <= n:
        lengths.append(w), rates.append(r)
        w, r = w * ratio, r * ratio
    return (lengths, rates) if lengths else ([n], [1])


def _load() -> float:
    return os.getloadavg()[0]


def _best(fn, repeats: int, device) -> tuple[float, int, float, float]:
    """(best seconds, peak bytes, load before, load after) of `repeats` runs (one run for big problems)."""
    before = _load()
    runs = [timed_peak(fn, device) for _ in range(repeats)]
    return min(t for t, _ in runs), max(p for _, p in runs), before, _load()


def _calls(q, k, v, lengths, rates, causal, pass_):
    """(ours, sdpa): the dilated call of this row (forward without autograd, or forward+backward) and the
    dense SDPA forward on the same inputs."""
    if pass_ == "fwd":
        def ours():
            with torch.no_grad():
                dilated_attention(q, k, v, lengths, rates, causal=causal)
    else:
        qg, kg, vg = (t.requires_grad_() for t in (q, k, v))

        def ours():
            dilated_attention(qg, kg, vg, lengths, rates, causal=causal).sum().backward()
            qg.grad = kg.grad = vg.grad = None

    def sdpa():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return ours, sdpa


def measure_scale(sizes=SIZES, heads: int = 8, head_dim: int = 64, w0: int = 2048, ratio: int = 2,
                  causal_modes=(False, True), dense_sizes=(16384, 32768, 65536), backward_sizes=(262144,),
                  repeats: int = 2, device="cpu", progress: bool = True, on_row=None) -> list[dict]:
    """Rows of the scale benchmark (see the module docstring); repeats applies below N = 65536.
    on_row(rows so far): called after each measurement (e.g. to save partial results of a long run)."""
    device = torch.device(device)
    timed_peak(lambda: dilated_attention(*(torch.ones(1, 1, 8, 4),) * 3, [4], [2]))  # tracker's first-use costs
    jobs = [(n, c, "fwd") for n in sizes for c in causal_modes] + [(n, False, "fwd+bwd") for n in backward_sizes]
    dense: dict[bool, tuple[int, float, int]] = {}  # causal -> (N, seconds, peak) of the largest measured
    rows = []
    for n, causal, pass_ in tqdm(jobs, desc="bench dilated --scale", unit="case", disable=not progress):
        lengths, rates = longnet_branches(n, w0, ratio)
        q, k, v = random_qkv(heads, n, head_dim, device)
        reps = repeats if n < 65536 else 1
        ours, sdpa = _calls(q, k, v, lengths, rates, causal, pass_)
        t_ours, m_ours, load_before, load_after = _best(ours, reps, device)
        sdpa_s = sdpa_mib = source = ""
        if pass_ == "fwd" and n in dense_sizes:
            t_sdpa, m_sdpa, _, load_after = _best(sdpa, reps, device)
            dense[causal] = (n, t_sdpa, m_sdpa)
            sdpa_s, sdpa_mib, source = t_sdpa, m_sdpa / 2**20, "measured"
        del q, k, v, ours, sdpa
        pattern = Dilated(lengths, rates, causal=causal)
        rows.append({
            "N": n, "causal": causal, "pass": pass_, "branches": len(lengths), "dilated_s": t_ours,
            "dilated_peak_mib": m_ours / 2**20, "sdpa_s": sdpa_s, "sdpa_peak_mib": sdpa_mib, "sdpa_source": source,
            "speedup": "", "flop_ideal_speedup": Dense(causal).pairs(heads, n) / pattern.pairs(heads, n),
            "load_before": round(load_before, 2), "load_after": round(load_after, 2),
            "heads": heads, "D": head_dim, "segment_lengths": " ".join(map(str, lengths)),
            "dilation_rates": " ".join(map(str, rates)), "device": device_label(device),
            "threads": torch.get_num_threads(), **stamp(),
        })
        if on_row is not None:
            on_row(rows)
    for row in rows:  # dense at the sizes not measured: N^2 time, N memory, from the largest measured size
        if row["pass"] == "fwd" and row["sdpa_source"] == "" and row["causal"] in dense:
            n_ref, t_ref, m_ref = dense[row["causal"]]
            row["sdpa_s"] = t_ref * (row["N"] / n_ref) ** 2
            row["sdpa_peak_mib"] = m_ref * row["N"] / n_ref / 2**20
            row["sdpa_source"] = f"extrapolated from N={n_ref} (time x N^2, memory x N)"
        if row["sdpa_s"] != "":
            row["speedup"] = row["sdpa_s"] / row["dilated_s"]
    return rows


def quiet(rows) -> bool:
    """True when every row was measured with the 1-minute load average below QUIET_LOAD."""
    return all(float(r["load_before"]) < QUIET_LOAD and float(r["load_after"]) < QUIET_LOAD for r in rows)
