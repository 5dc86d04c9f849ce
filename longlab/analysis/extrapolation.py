"""Length extrapolation: loss against token position past the trained context, per position scheme.

A model trained on windows of C tokens is run on sequences of L = 8 C tokens. RoPE meets relative positions
it never saw; ReRoPE caps them at w (leaky: compresses them by s), a sliding window never looks further than
its window. The per-position loss (nats/token), averaged over documents, shows which stays flat.

`variant(model, scheme, ...)` returns a copy of a TinyLM with every attention layer dense (a memory layer
with an empty memory is a dense layer: same q/k/v/out weights) under the chosen scheme and a context of L.
"""
from __future__ import annotations

import dataclasses

import torch

from ..checks import positive_int
from ..models import TinyLM

SCHEMES = ("rope", "rerope", "leaky_rerope", "sliding")


def variant(model: TinyLM, scheme: str, length: int, window: int = 128, leak: float = 16.0) -> TinyLM:
    """The model's weights under `scheme` ("rope", "rerope" (w = window), "leaky_rerope" (w, s = leak), "sliding"
    (a causal window of `window` tokens)), able to read `length` tokens. Memory layers become dense layers."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    positive_int("length", length, "tokens")
    positive_int("window", window, "tokens")
    kind = "sliding" if scheme == "sliding" else "dense"
    config = dataclasses.replace(
        model.config, context=length, attention=(kind,) * model.config.n_layers, window=window,
        position="rerope" if "rerope" in scheme else "rope", rerope_window=window,
        rerope_leak=leak if scheme == "leaky_rerope" else None, extra=dict(model.config.extra))
    twin = TinyLM(config)
    missing, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    if missing or any(not name.endswith(("gate_bias", "log_tau")) for name in unexpected):
        raise ValueError(f"weights do not carry over: missing {missing}, unexpected {unexpected}")
    return twin.eval()


@torch.no_grad()
def loss_by_position(model: TinyLM, sequences: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """float64 (L - 1,): next-token loss at each position, averaged over sequences (S, L) int64."""
    total = torch.zeros(sequences.shape[1] - 1, dtype=torch.float64)
    for start in range(0, sequences.shape[0], batch):
        chunk = sequences[start:start + batch]
        _, loss = model(chunk[:, :-1], chunk[:, 1:], reduction="none")
        total += loss.double().sum(0)
    return total / sequences.shape[0]


def document_windows(docs, length: int, per_doc: int = 1) -> torch.Tensor:
    """(S, length) int64: the first `per_doc` non-overlapping windows of each document long enough."""
    rows = []
    for doc in docs:
        tokens = doc.tokens()
        for i in range(min(per_doc, len(tokens) // length)):
            rows.append(tokens[i * length:(i + 1) * length])
    if not rows:
        raise ValueError(f"no document has {length} tokens; use shorter windows")
    return torch.stack(rows)


def binned(values: torch.Tensor, width: int) -> tuple[list[int], list[float]]:
    """Mean of `values` over consecutive bins of `width` positions: (bin start positions, means)."""
    starts = list(range(0, values.shape[0], width))
    return starts, [float(values[s:s + width].mean()) for s in starts]
