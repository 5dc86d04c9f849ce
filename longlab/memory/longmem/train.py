"""Training on document streams with a probe: the SideNet of LongMem (only its parameters learn) and, for the
staleness comparison, a Memorizing TinyLM whose whole network keeps learning.

Each batch lane reads one document window after window (`longlab.models.train.DocumentStreams`), so a lane's
memory holds that document's past and is cleared when the lane moves to the next document. AdamW, linear warmup
and cosine decay as `longlab.models.train.train`; `probe(model) -> dict` runs before the first step and at every
evaluation, and its numbers go into that history entry (e.g. the drift of cached keys).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ...models.train import DocumentStreams, TrainConfig, TrainResult, evaluate, scheduled_lr, seed_everything


def train_streams(model, parameters: list, train_docs: list, val_docs: list, config: TrainConfig,
                  probe: Callable | None = None, desc: str = "train", progress: bool = True) -> TrainResult:
    """Train `parameters` of `model` (the others stay as they are) on document streams; returns a TrainResult
    whose history rows hold step, train_loss, val_loss, elapsed_s and the probe's numbers (row step 0: before
    training, no losses)."""
    parameters = list(parameters)
    if not parameters or not all(p.requires_grad for p in parameters):
        raise ValueError("parameters must be a non-empty list of tensors with requires_grad=True (the ones to train)")
    seed_everything(config.seed)
    streams = DocumentStreams(train_docs, config.batch_size, model.config.context, config.seed)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))

    result, start, recent = TrainResult(), time.perf_counter(), []
    if probe is not None:
        result.history.append({"step": 0, "elapsed_s": 0.0, **probe(model)})
    model.train()
    bar = tqdm(range(config.steps), desc=desc, unit="step", disable=not progress)
    step = -1
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config, step)
        x, y, starts = next(streams)
        _, loss = model(x, y, doc_start=starts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        recent = (recent + [loss.item()])[-20:]
        elapsed = time.perf_counter() - start
        out_of_time = config.time_limit_s is not None and elapsed > config.time_limit_s
        if (step + 1) % config.eval_every == 0 or step == config.steps - 1 or out_of_time:
            row = {"step": step + 1, "train_loss": sum(recent) / len(recent)}
            if config.eval_windows:
                row["val_loss"] = evaluate(model, val_docs, config.eval_windows)  # training lanes kept
                bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
            if probe is not None:
                row.update(probe(model))
            model.train()
            result.history.append({**row, "elapsed_s": time.perf_counter() - start})
        if out_of_time:
            break
    result.elapsed_s, result.steps = time.perf_counter() - start, step + 1
    result.final_val_loss = result.history[-1].get("val_loss", float("nan"))
    return result
