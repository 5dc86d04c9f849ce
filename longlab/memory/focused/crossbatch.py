"""Crossbatch training for the Focused Transformer (arXiv 2307.03170, sec. 3 and appendix).

A batch holds b lanes; each lane is one document, read as a pair of consecutive windows (C_prev, C_curr) of
that document (so a lane's previous window always belongs to its own document: it always has a positive).
In the memory layer, the queries of C_curr in lane i see their own causal keys plus ALL keys of C_prev of d
lanes: lane i itself (the positive) and d - 1 other lanes (negatives), in one softmax, with gradients through
both windows. The model learns to tell relevant keys (same document) from irrelevant ones: the contrastive
signal that keeps attention focused once memory holds many documents' keys.

    batches = CrossbatchBatches(docs, lanes=8, context=256, schedule="1:200,8", seed=0)
    b = batches.batch(step)                       # CrossbatchBatch: prev / curr windows + layout
    loss = crossbatch_loss(model, b)              # LM loss over both windows, model run on [prev; curr]

Distraction ratio r_d: attention mass on the positive context divided by the mass on all d contexts, averaged
over queries and heads (`distraction_ratio`); about 1/d for a model never trained with negatives.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ...checks import positive_int


@dataclass
class CrossbatchLayout:
    """Which previous windows each lane's current window sees. sources (b, d) int64: row i lists lane indices,
    sources[i, 0] == i (the positive), then d - 1 distinct other lanes (negatives); positive (b,) bool or None
    (False: lane i's previous window is not from its document, so it sees no crossbatch keys at all);
    docs (b,) int64 document index of each lane (or None)."""

    sources: torch.Tensor
    positive: torch.Tensor | None = None
    docs: torch.Tensor | None = None

    @property
    def lanes(self) -> int:
        return self.sources.shape[0]

    @property
    def d(self) -> int:
        return self.sources.shape[1]

    def lane_mask(self, window: int) -> torch.Tensor:
        """(b, b * window) bool: current lane i may see key j of the concatenated previous windows of all lanes."""
        b = self.lanes
        seen = torch.zeros(b, b, dtype=torch.bool)
        seen[torch.arange(b)[:, None], self.sources.cpu()] = True
        if self.positive is not None:
            seen &= self.positive.cpu()[:, None]
        return seen.repeat_interleave(window, dim=1)

    def __repr__(self) -> str:
        return f"CrossbatchLayout(lanes={self.lanes}, d={self.d})"


def make_layout(lanes: int, d: int, generator: random.Random | None = None, docs=None) -> CrossbatchLayout:
    """Lane i sees itself and d - 1 other lanes drawn without replacement (seeded); with `docs` (b,), never a lane
    of the same document (an error if too few lanes of other documents exist)."""
    positive_int("lanes", lanes)
    positive_int("d", d)
    if d > lanes:
        raise ValueError(f"crossbatch d={d} is larger than the batch ({lanes} lanes): each lane needs d - 1 other "
                         f"lanes as negatives; lower d or raise the batch")
    rng = generator or random.Random(0)
    doc_list = None if docs is None else [int(x) for x in docs]
    rows = []
    for i in range(lanes):
        others = [j for j in range(lanes) if j != i and (doc_list is None or doc_list[j] != doc_list[i])]
        if len(others) < d - 1:
            raise ValueError(f"lane {i} has only {len(others)} lanes of other documents; d={d} needs {d - 1}")
        rows.append([i] + rng.sample(others, d - 1))
    docs_t = None if docs is None else torch.tensor(doc_list, dtype=torch.long)
    return CrossbatchLayout(torch.tensor(rows, dtype=torch.long), torch.ones(lanes, dtype=torch.bool), docs_t)


class DSchedule:
    """d as a function of the training step. Spec "8": always 8; "1:200,8": 1 for steps < 200, then 8 (the paper's
    small first, then large); "2:100,4:300,16": 2, then 4 from step 100, then 16 from step 300."""

    def __init__(self, spec: str | int):
        self.spec = str(spec)
        self.stages: list[tuple[int, int]] = []  # (d, until step)
        parts = self.spec.split(",")
        try:
            for part in parts[:-1]:
                d, until = part.split(":")
                self.stages.append((int(d), int(until)))
            self.final = int(parts[-1])
        except ValueError as err:
            raise ValueError(f"crossbatch schedule {self.spec!r} is not 'D' or 'D1:STEPS,D2' (e.g. '8' or "
                             f"'1:200,8')") from err
        ds = [d for d, _ in self.stages] + [self.final]
        untils = [u for _, u in self.stages]
        if any(d < 1 for d in ds) or untils != sorted(set(untils)) or any(u < 1 for u in untils):
            raise ValueError(f"crossbatch schedule {self.spec!r}: every d must be >= 1 and the switch steps increase")

    def __call__(self, step: int) -> int:
        for d, until in self.stages:
            if step < until:
                return d
        return self.final

    @property
    def largest(self) -> int:
        return max([d for d, _ in self.stages] + [self.final])

    def then(self, after: DSchedule | str | int, at_step: int) -> DSchedule:
        """This schedule until `at_step`, then `after` with its steps counted from there: one schedule for a run
        continued in phases ("1:1000,8" then "16" at 4500 -> "1:1000,8:4500,16"); equal neighbours merge."""
        after = after if isinstance(after, DSchedule) else DSchedule(after)
        if at_step < 1:
            raise ValueError(f"a next phase starts at step >= 1, not {at_step}")
        stages = [(d, until) for d, until in self.stages if until < at_step] + [(self(at_step - 1), at_step)]
        stages += [(d, until + at_step) for d, until in after.stages]
        merged: list[tuple[int, int]] = []
        for d, until in stages:
            if merged and merged[-1][0] == d:
                merged[-1] = (d, until)
            else:
                merged.append((d, until))
        if merged and merged[-1][0] == after.final:
            merged.pop()
        return DSchedule(",".join([f"{d}:{until}" for d, until in merged] + [str(after.final)]))

    def __repr__(self) -> str:
        return f"DSchedule({self.spec!r})"


@dataclass
class CrossbatchBatch:
    """prev, prev_y, curr, curr_y (b, N) int64: each lane's two consecutive windows and their next-byte targets."""

    prev: torch.Tensor
    prev_y: torch.Tensor
    curr: torch.Tensor
    curr_y: torch.Tensor
    layout: CrossbatchLayout
    offsets: list

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of shape (2b, N): rows [previous windows; current windows], as the model runs them."""
        return torch.cat([self.prev, self.curr]), torch.cat([self.prev_y, self.curr_y])


class CrossbatchBatches:
    """Seeded crossbatch batches: each lane a distinct document (negatives never share the positive's document),
    each lane a random pair of consecutive windows of its document; d from a DSchedule (or an int)."""

    def __init__(self, docs: list[torch.Tensor], lanes: int, context: int, schedule="8", seed: int = 0):
        self.lanes, self.context = positive_int("lanes", lanes), positive_int("context", context, "tokens")
        self.schedule = schedule if isinstance(schedule, DSchedule) else DSchedule(schedule)
        if self.schedule.largest > lanes:
            raise ValueError(f"crossbatch d={self.schedule.largest} is larger than the batch ({lanes} lanes); lower "
                             f"d or raise the batch")
        self.index = [i for i, d in enumerate(docs) if d.numel() > 2 * context]
        self.docs = docs
        if len(self.index) < lanes:
            raise ValueError(f"crossbatch needs {lanes} documents longer than 2 x context = {2 * context} tokens "
                             f"(one per lane), found {len(self.index)}")
        self.rng = random.Random(seed)  # windows
        self.layout_rng = random.Random(seed + 1_000_003)  # negatives: windows do not depend on d

    def batch(self, step: int = 0, d: int | None = None) -> CrossbatchBatch:
        d = self.schedule(step) if d is None else d
        picks = self.rng.sample(self.index, self.lanes)
        n, rows, offsets = self.context, [[], [], [], []], []
        for doc in picks:
            tokens = self.docs[doc]
            o = self.rng.randrange(0, tokens.numel() - 2 * n)
            offsets.append(o)
            for row, start in zip(rows, (o, o + 1, o + n, o + n + 1)):
                row.append(tokens[start : start + n])
        layout = make_layout(self.lanes, d, self.layout_rng, docs=picks)
        return CrossbatchBatch(*(torch.stack(r) for r in rows), layout, offsets)


def crossbatch_loss(model, batch: CrossbatchBatch, return_retrievals: bool = False):
    """Mean LM loss over both windows of every lane, the model run on [prev; curr] with the batch's layout.
    With return_retrievals: (loss, {block index: LayerReads}) (extras["crossbatch_mass"] (b, H, N, d) and its log,
    extras["crossbatch_log_mass"])."""
    x, y = batch.inputs()
    out = model(x, y, crossbatch=batch.layout, return_retrievals=return_retrievals)
    return (out[1], out[2]) if return_retrievals else out[1]


def distraction_ratio(mass: torch.Tensor | None = None, positive: torch.Tensor | None = None, *,
                      log_mass: torch.Tensor | None = None) -> float:
    """r_d from crossbatch masses (b, H, N, d) (column 0 = the positive): mean over lanes, heads and queries of
    mass on the positive / mass on all d contexts. Lanes without a positive are left out.

    Prefer log_mass= (the layer's extras["crossbatch_log_mass"]): the ratio is then softmax(log_mass)[..., 0],
    exact even for queries whose mass outside the window is below float range (from `mass` those count as 0)."""
    if (mass is None) == (log_mass is None):
        raise TypeError("distraction_ratio needs exactly one of mass (b, H, N, d) or log_mass= (b, H, N, d)")
    if log_mass is not None:
        ratio = torch.softmax(log_mass.double(), dim=-1)[..., 0]
        if positive is None:  # lanes the layer marked as having no positive (all -inf) are left out
            positive = torch.isfinite(log_mass).any(-1).flatten(1).any(-1)
    else:
        ratio = mass[..., 0] / mass.sum(-1).clamp_min(torch.finfo(mass.dtype).tiny)
    if positive is not None:
        ratio = ratio[positive.to(ratio.device)]
    return float(ratio.double().mean())


@torch.no_grad()
def measure_distraction(model, docs: list[torch.Tensor], d_values=(1, 2, 4, 8, 16), lanes: int = 16,
                        batches: int = 2, layer: int | None = None, seed: int = 0, window: int | None = None) -> dict:
    """r_d for each d on held-out documents: the same seeded windows for every d (only the negatives change).
    Returns {d: r_d}, averaged over `batches` batches of `lanes` lanes (first focused layer unless `layer`);
    windows of `window` tokens (default config.context)."""
    was_training = model.training
    model.eval()
    try:
        results = {}
        for d in d_values:
            source = CrossbatchBatches(docs, lanes, window or model.config.context, str(d), seed=seed)
            values = []
            for _ in range(batches):
                _, reads = crossbatch_loss(model, source.batch(), return_retrievals=True)
                found = [r for r in reads.values() if "crossbatch_mass" in r.extras]
                if not found:
                    raise ValueError("model has no layer that reports crossbatch attention "
                                     "(attention=(..., 'focused'))")
                pick = found[0] if layer is None else reads[layer]
                values.append(distraction_ratio(log_mass=pick.extras["crossbatch_log_mass"]))
            results[d] = sum(values) / len(values)
        return results
    finally:
        model.train(was_training)
