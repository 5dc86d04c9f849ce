"""`longlab bench attend`: longlab's `attend` vs PyTorch SDPA, same inputs, same run.

Target: attend forward within 1.3x of SDPA at N = 8192, 8 heads, D = 64 on CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..attention import attend
from .common import add_shape_arguments, device_label, random_qkv, stamp, time_call

NAME = "attend"
HELP = "time attend() vs scaled_dot_product_attention for N = 1k..16k (forward, optional backward)"


def register(parser) -> None:
    add_shape_arguments(parser, sizes=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--backward", action="store_true", help="also time forward+backward")


def main(args) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    for n in tqdm(args.sizes, desc="bench attend", unit="N"):
        q, k, v = random_qkv(args.heads, n, args.head_dim, device)
        row = {"N": n, "heads": args.heads, "D": args.head_dim, "causal": args.causal, "device": device_label(device)}
        with torch.no_grad():
            t_sdpa = time_call(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=args.causal),
                               args.repeats, device=device)
            t_ours = time_call(lambda: attend(q, k, v, causal=args.causal), args.repeats, device=device)
        row.update(sdpa_fwd_s=t_sdpa, attend_fwd_s=t_ours, fwd_ratio=t_ours / t_sdpa)
        if args.backward:
            qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))

            def sdpa_fb():
                F.scaled_dot_product_attention(qg, kg, vg, is_causal=args.causal).sum().backward()

            def ours_fb():
                out, lse = attend(qg, kg, vg, causal=args.causal)
                (out.sum() + lse.sum()).backward()

            t_sdpa_fb = time_call(sdpa_fb, args.repeats, device=device)
            t_ours_fb = time_call(ours_fb, args.repeats, device=device)
            row.update(sdpa_fwdbwd_s=t_sdpa_fb, attend_fwdbwd_s=t_ours_fb, fwdbwd_ratio=t_ours_fb / t_sdpa_fb)
        rows.append({**row, **stamp()})
    return rows
