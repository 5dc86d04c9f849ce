"""`longlab bench linear`: causal linear attention (O(N), chunked) vs exact softmax `attend` (O(N^2)), same inputs.

Where does linear attention start to win? Rows give both forward times and their ratio for each N; the
crossover is the first N where `linear_s < attend_s`. (Linear attention is a different function: this is
speed only; quality is a separate question.)
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..attention import attend
from ..attention.linear import linear_attention
from .common import add_shape_arguments, device_label, random_qkv, stamp, time_call

NAME = "linear"
HELP = "time causal linear attention vs softmax attend for N = 256..16k (speed crossover)"
COLUMNS = ["N", "heads", "D", "device", "attend_s", "linear_s", "linear_over_attend"]


def register(parser) -> None:
    add_shape_arguments(parser, sizes=[256, 512, 1024, 2048, 4096, 8192, 16384], heads=4)
    parser.add_argument("--chunk", type=int, default=64, help="linear attention rows per chunk")


def main(args) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    for n in tqdm(args.sizes, desc="bench linear", unit="N"):
        q, k, v = random_qkv(args.heads, n, args.head_dim, device)
        with torch.no_grad():
            t_attend = time_call(lambda: attend(q, k, v, causal=True), args.repeats, device=device)
            t_linear = time_call(lambda: linear_attention(q, k, v, causal=True, chunk_size=args.chunk),
                                 args.repeats, device=device)
        rows.append({"N": n, "heads": args.heads, "D": args.head_dim, "device": device_label(device),
                     "attend_s": t_attend, "linear_s": t_linear, "linear_over_attend": t_linear / t_attend,
                     **stamp()})
    return rows


def crossover(rows: list[dict]) -> int | None:
    """The smallest N from which linear attention stays faster than attend (None if it never does)."""
    for i, row in enumerate(rows):
        if all(r["linear_s"] < r["attend_s"] for r in rows[i:]):
            return row["N"]
    return None
