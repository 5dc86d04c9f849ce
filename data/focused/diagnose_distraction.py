"""Why r_d ~ 1/d for every distraction model (claim 1 of the Focused Transformer; see make_distraction.py): no
training, a few forward passes on the committed checkpoints, on held-out windows of the source corpus.

For each model (the converted base before fine-tuning, crossbatch d = 1, crossbatch d = 8), at d = 8:
- r_8 as recorded, and r_8 when each lane's previous window is replaced by a copy of its current window (the
  positive then holds exactly the bytes the queries are reading: a layer that matches content prefers it);
- the memory layer's total attention mass on the d previous windows (share of the one softmax), per slot;
- the current windows' LM loss with no previous window, with only the positive (d = 1), and with d = 8: how much
  the positive is worth to the model, i.e. how much reason the LM loss gives it to prefer the positive;
- whether the model can copy at all: the loss on 64 bytes repeated verbatim inside the window (first time, second
  time), and on a current window whose previous window is an exact copy of it (d = 1) against no previous window.
And three ceilings on the same windows: r_8 of an ideal content-matching head (score beta on keys whose last n
bytes equal the query's last n bytes, 0 elsewhere), of an induction-like head that scores beta per matching
byte of the longest common suffix (up to 16 bytes), so longer matches, which are rarer in other documents, weigh
more: what matching content can give on 128-byte code windows; and of a head that copies nothing but compares
window statistics (beta times the cosine between the byte counts of the query's window so far and of the key's
window up to the key), a feature one uniform attention head below the memory layer could supply.

    .venv/bin/python data/focused/diagnose_distraction.py      # ~1 min on one thread; writes distraction_diagnosis.json
"""
from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch
from make_distraction import CHECKPOINTS, focused_from_base, held_out_documents

from longlab.io import write_json
from longlab.memory.focused.crossbatch import CrossbatchBatch, CrossbatchBatches, distraction_ratio, make_layout
from longlab.models import load_checkpoint

HERE = Path(__file__).resolve().parent
RESULT = HERE / "distraction_diagnosis.json"
NGRAMS, SHARPNESS = (1, 2, 3, 4, 6), 12.0
LONGEST, PER_BYTE = 16, (0.5, 1.0, 2.0, 4.0)  # longest-match head: suffixes up to 16 bytes, beta per matching byte
STATISTICS_BETA = (8.0, 16.0, 32.0, 64.0)  # window-statistics head: beta per unit of cosine


def current_loss(model, batch: CrossbatchBatch, layout) -> float:
    x, y = batch.inputs()
    _, loss = model(x, y, crossbatch=layout, reduction="none")
    return float(loss[batch.layout.lanes:].mean())


def masses(model, batch: CrossbatchBatch) -> torch.Tensor:
    """(b, H, N, d) share of the memory layer's one softmax on each source window."""
    x, y = batch.inputs()
    _, _, reads = model(x, y, crossbatch=batch.layout, return_retrievals=True)
    return next(r.extras["crossbatch_mass"] for r in reads.values() if "crossbatch_mass" in r.extras)


@torch.no_grad()
def diagnose(model, batch: CrossbatchBatch) -> dict:
    model.eval()
    lanes = batch.layout.lanes
    mass = masses(model, batch)
    copied = copy.copy(batch)
    copied.prev, copied.prev_y = batch.curr.clone(), batch.curr_y.clone()
    blind = copy.deepcopy(batch.layout)
    blind.positive = torch.zeros(lanes, dtype=torch.bool)
    per_head = mass[..., 0] / mass.sum(-1)
    no_prev, positive = current_loss(model, batch, blind), current_loss(model, batch, make_layout(lanes, 1))
    half = batch.curr[:, : batch.curr.shape[1] // 2]
    repeated = torch.cat([half, half], 1)
    _, in_window = model(repeated[:, :-1], repeated[:, 1:], reduction="none")
    n = half.shape[1]
    return {
        "r_8": distraction_ratio(mass),
        "r_8_previous_window_is_a_copy_of_the_current": distraction_ratio(masses(model, copied)),
        "r_8_per_head": [float(per_head[:, h].mean()) for h in range(mass.shape[1])],
        "mass_on_previous_windows": float(mass.sum(-1).mean()),
        "mass_per_slot_positive_first": [float(m) for m in mass.mean((0, 1, 2))],
        "current_window_loss_nats": {"no_previous_window": no_prev, "positive_only": positive,
                                     "d8": current_loss(model, batch, batch.layout)},
        "positive_gain_nats": no_prev - positive,
        "copy_loss_nats": {
            "in_window_first_time": float(in_window[:, : n - 1].mean()),
            "in_window_repeated": float(in_window[:, n - 1 :].mean()),
            "previous_window_is_an_exact_copy": current_loss(model, copied, make_layout(lanes, 1)),
            "no_previous_window": current_loss(model, copied, blind),
        },
    }


def ngram_ids(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """(b, N) id of the n bytes ending at each position (bytes before the window count as a pad value)."""
    ids = torch.zeros_like(tokens)
    for shift in range(n):
        ids = ids * 257 + torch.nn.functional.pad(tokens, (shift, 0), value=256)[:, : tokens.shape[1]]
    return ids


def content_matching_ceiling(batch: CrossbatchBatch, n: int, beta: float) -> float:
    """r_d of a head scoring beta on keys whose last n bytes equal the query's, 0 on the others."""
    window = batch.curr.shape[1]
    queries, keys = ngram_ids(batch.curr, n), ngram_ids(batch.prev, n)
    matches = (queries[:, :, None, None] == keys[batch.layout.sources][:, None]).sum(-1).double()  # (b, N, d)
    mass = (window - matches) + matches * math.exp(beta)
    return distraction_ratio(mass)


def longest_match_ceiling(batch: CrossbatchBatch, beta: float, max_n: int = LONGEST) -> float:
    """r_d of a head scoring beta * (length of the longest common suffix of query and key, at most max_n bytes)."""
    length = 0
    for n in range(1, max_n + 1):  # a common suffix of n bytes has every shorter one too: the sum is its length
        queries, keys = ngram_ids(batch.curr, n), ngram_ids(batch.prev, n)
        length = length + (queries[:, :, None, None] == keys[batch.layout.sources][:, None]).double()  # (b,N,d,N)
    mass = torch.exp(beta * length).sum(-1)  # (b, N, d)
    return distraction_ratio(mass)


def byte_counts_so_far(tokens: torch.Tensor) -> torch.Tensor:
    """(b, N, 256) unit-length vector of the byte counts of each window up to and including each position."""
    counts = torch.nn.functional.one_hot(tokens, 256).double().cumsum(1)
    return counts / counts.norm(dim=-1, keepdim=True)


def window_statistics_ceiling(batch: CrossbatchBatch, beta: float) -> float:
    """r_d of a head scoring beta * cos(byte counts of the query's window so far, of the key's window up to the key):
    no byte of the key is matched, only how alike the two windows' byte statistics are."""
    queries, keys = byte_counts_so_far(batch.curr), byte_counts_so_far(batch.prev)[batch.layout.sources]
    cosine = torch.einsum("bnv,bdmv->bndm", queries, keys)  # (b, N, d, N)
    mass = torch.exp(beta * (cosine - 1)).sum(-1)  # shifted by the largest possible score: no overflow
    return distraction_ratio(mass)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = CrossbatchBatches(held_out_documents(args.window), args.lanes, args.window, "8", seed=args.seed).batch()
    models = {"untrained": focused_from_base()}
    models.update({f"trained_d{d}": load_checkpoint(path)[0] for d, path in CHECKPOINTS.items()})
    rows = {}
    for name, model in models.items():
        rows[name] = diagnose(model, batch)
        row = rows[name]
        copied = row["r_8_previous_window_is_a_copy_of_the_current"]
        print(f"{name}: r_8 {row['r_8']:.3f}, with a copied positive {copied:.3f}; mass on previous windows "
              f"{row['mass_on_previous_windows']:.3f}; positive worth {row['positive_gain_nats']:+.4f} nats")
        loss = row["copy_loss_nats"]
        print(f"    copying: 64 bytes repeated in the window {loss['in_window_first_time']:.3f} -> "
              f"{loss['in_window_repeated']:.3f} nats; an exact copy as the previous window "
              f"{loss['previous_window_is_an_exact_copy']:.3f} vs none {loss['no_previous_window']:.3f} nats")
    ceiling = {str(n): content_matching_ceiling(batch, n, SHARPNESS) for n in NGRAMS}
    print("ideal content-matching head, r_8 by n: " + ", ".join(f"{n}: {r:.3f}" for n, r in ceiling.items()))
    longest = {str(beta): longest_match_ceiling(batch, beta) for beta in PER_BYTE}
    print("longest-match head, r_8 by beta per byte: " + ", ".join(f"{b}: {r:.3f}" for b, r in longest.items()))
    statistics = {str(beta): window_statistics_ceiling(batch, beta) for beta in STATISTICS_BETA}
    print("window-statistics head, r_8 by beta: " + ", ".join(f"{b}: {r:.3f}" for b, r in statistics.items()))
    record = {
        "question": "why r_d ~ 1/d for every distraction model (make_distraction.py)",
        "command": "python data/focused/diagnose_distraction.py",
        "window": args.window, "lanes": args.lanes, "seed": args.seed, "d": 8, "models": rows,
        "content_matching_ceiling": {"sharpness_beta": SHARPNESS, "r_8_by_ngram": ceiling},
        "longest_match_ceiling": {"max_suffix_bytes": LONGEST, "r_8_by_beta_per_byte": longest},
        "window_statistics_ceiling": {"r_8_by_beta": statistics},
    }
    write_json(RESULT, record)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
