"""What a kNN memory retrieved, as text: rows a table can show (hover text is lost in static renders).

`retrieved_text_rows(retrievals, query, head)` lists, for one query byte and one head of a recorded
`longlab.memory.retrievals.Retrievals`, the top entries by attention weight: where each came from, how far back,
its cosine score and weight, and the bytes around it (the retrieved byte in brackets). `most_confident_query`
picks a query by a fixed rule (the highest top-1 cosine score over all recorded bytes and heads); `markdown_text`
escapes text for a Markdown table cell.
"""
from __future__ import annotations

import torch


def byte_context(tokens: torch.Tensor, pos: int, before: int = 16, after: int = 4) -> str:
    """Bytes tokens[pos - before : pos + after + 1] as text, the byte at `pos` in ⟦ ⟧, newlines as ⏎."""
    if not 0 <= pos < tokens.numel():
        raise ValueError(f"pos must be in [0, {tokens.numel()}), got {pos}")

    def text(lo, hi):
        raw = bytes(tokens[max(lo, 0) : max(hi, 0)].tolist()).decode("utf-8", errors="replace")
        return raw.replace("\n", "⏎").replace("\t", "⇥")

    return f"{text(pos - before, pos)}⟦{text(pos, pos + 1)}⟧{text(pos + 1, pos + after + 1)}"


def markdown_text(text: str) -> str:
    """`text` safe inside a Markdown table cell: Markdown and HTML specials backslash-escaped, so source code such
    as `a | b`, `__init__` or `<tag>` shows as written."""
    return "".join("\\" + ch if ch in "\\`*_[]|<>#~" else ch for ch in text)


def most_confident_query(retrievals) -> tuple[int, int]:
    """(query byte, head) with the highest top-1 cosine score among queries that retrieved anything."""
    top = torch.nan_to_num(retrievals.scores[..., 0], nan=float("-inf"))  # (H, T)
    if not torch.isfinite(top).any():
        raise ValueError("nothing was retrieved (memory empty for every query); record more than one window")
    flat = int(top.flatten().argmax())
    head, query = divmod(flat, top.shape[1])
    return query, head


def retrieved_text_rows(retrievals, query: int, head: int, top: int = 6, before: int = 16, after: int = 4
                        ) -> list[dict]:
    """Top `top` entries (by attention weight) that head `head` retrieved for query byte `query`."""
    if not 0 <= head < retrievals.heads:
        raise ValueError(f"head must be in [0, {retrievals.heads}), got {head}")
    got = retrievals.for_query(query)
    positions, scores, weights = got["positions"][head], got["scores"][head], got["weights"][head]
    valid = positions >= 0
    order = torch.argsort(torch.nan_to_num(weights, nan=-1.0), descending=True)
    rows = []
    for i in order.tolist():
        if not valid[i] or len(rows) >= top:
            continue
        pos = int(positions[i])
        rows.append({"retrieved byte": pos, "bytes back": query - pos, "cosine": round(float(scores[i]), 3),
                     "weight": round(float(weights[i]), 3),
                     "text around it": byte_context(retrievals.tokens, pos, before, after)})
    return rows
