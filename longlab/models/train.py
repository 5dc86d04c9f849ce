"""A small, seeded training loop for TinyLM with tqdm progress, periodic evaluation and safetensors checkpoints.

Models without memory train on random windows of the documents. Models with memory layers train on
document *streams*: each batch lane reads one document window after window (so memory fills with the
document's past) and the lane's memory is cleared when it moves to a new document. With
`TrainConfig.crossbatch` (Focused Transformer layers) each lane is a pair of consecutive windows of one
document and the memory layer's current window also sees the previous windows of d lanes (no memory used;
`longlab.memory.focused.crossbatch`).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from ..io import atomic_write
from ..memory.focused.crossbatch import CrossbatchBatches, crossbatch_loss
from ..memory.lanes import memory_lanes
from .tiny import TinyLM, TinyLMConfig


@dataclass
class TrainConfig:
    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_windows: int = 32
    seed: int = 0
    time_limit_s: float | None = None  # stop early (still evaluating) when training takes longer than this
    crossbatch: str | int | None = None  # Focused Transformer crossbatch d schedule ("8", "1:200,8"); None = off


@dataclass
class TrainResult:
    history: list = field(default_factory=list)  # dicts: step, train_loss, val_loss, elapsed_s
    elapsed_s: float = 0.0
    steps: int = 0
    final_val_loss: float = float("nan")


def scheduled_lr(config: TrainConfig, step: int) -> float:
    """Learning rate at `step`: linear warm-up over config.warmup steps, then cosine decay to 0.1 x config.lr."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    frac = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def random_windows(docs: list[torch.Tensor], batch: int, context: int, gen: torch.Generator):
    """x, y (batch, context): random windows from documents picked proportionally to their length."""
    docs = [d for d in docs if d.numel() > context]
    if not docs:
        raise ValueError(f"no document is longer than context={context} tokens; lower the context")
    lengths = torch.tensor([d.numel() - context for d in docs], dtype=torch.float)
    picks = torch.multinomial(lengths, batch, replacement=True, generator=gen)
    xs, ys = [], []
    for p in picks.tolist():
        start = int(torch.randint(0, docs[p].numel() - context, (1,), generator=gen))
        xs.append(docs[p][start : start + context])
        ys.append(docs[p][start + 1 : start + context + 1])
    return torch.stack(xs), torch.stack(ys)


class DocumentStreams:
    """`batch` lanes, each reading a document in consecutive windows; documents in a seeded random order.

    next() -> (x, y (batch, context), doc_start (batch,) bool: the lane just began a new document).
    """

    def __init__(self, docs: list[torch.Tensor], batch: int, context: int, seed: int = 0):
        self.docs = [d for d in docs if d.numel() > context]
        if not self.docs:
            raise ValueError(f"no document is longer than context={context} tokens")
        self.batch, self.context, self.rng = batch, context, random.Random(seed)
        self.order: list[int] = []
        self.lanes = [self._new_doc() for _ in range(batch)]  # [doc index, offset]

    def _new_doc(self) -> list:
        if not self.order:
            self.order = list(range(len(self.docs)))
            self.rng.shuffle(self.order)
        return [self.order.pop(), 0]

    def __iter__(self):
        return self

    def __next__(self):
        xs, ys, starts = [], [], []
        for lane in range(self.batch):
            doc, offset = self.lanes[lane]
            if offset + self.context + 1 > self.docs[doc].numel():
                self.lanes[lane] = [doc, offset] = self._new_doc()
            starts.append(offset == 0)
            tokens = self.docs[doc]
            xs.append(tokens[offset : offset + self.context])
            ys.append(tokens[offset + 1 : offset + self.context + 1])
            self.lanes[lane][1] = offset + self.context
        return torch.stack(xs), torch.stack(ys), torch.tensor(starts)


@torch.no_grad()
def evaluate(model: TinyLM, docs: list[torch.Tensor], max_windows: int = 32) -> float:
    """Mean loss (nats/byte) over consecutive non-overlapping windows of the documents (first `max_windows`).

    Memory layers see each document from its start, in order, memory cleared between documents. Runs inside
    `memory_lanes`: the caller's lanes (e.g. the training lanes' half-read documents) come back untouched.
    """
    context, total, count, windows = model.config.context, 0.0, 0, 0
    with memory_lanes(model) as run:  # fresh lanes; the caller's (e.g. training lanes) come back untouched
        for tokens in docs:
            run.reset()
            for start in range(0, tokens.numel() - context, context):
                if windows >= max_windows:
                    break
                x = tokens[None, start : start + context]
                y = tokens[None, start + 1 : start + context + 1]
                _, loss = run(x, y, doc_start=torch.tensor([start == 0]))
                total, count, windows = total + loss.item() * y.numel(), count + y.numel(), windows + 1
    return total / max(count, 1)


def train(model: TinyLM, train_docs: list[torch.Tensor], val_docs: list[torch.Tensor],
          config: TrainConfig | None = None, progress: bool = True) -> TrainResult:
    """Train with AdamW (linear warmup, cosine decay); evaluates every `eval_every` steps and at the end."""
    config = config or TrainConfig()
    gen = seed_everything(config.seed)
    context = model.config.context
    streams = batches = None
    if config.crossbatch is not None:
        if not any(getattr(layer, "supports_crossbatch", False) for layer in model.memory_layers()):
            raise ValueError("crossbatch training needs a Focused Transformer layer: attention=(..., 'focused', ...)")
        batches = CrossbatchBatches(train_docs, config.batch_size, context, config.crossbatch, config.seed)
    elif model.memory_layers():
        streams = DocumentStreams(train_docs, config.batch_size, context, config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.95))

    result, start_time, recent = TrainResult(), time.perf_counter(), []
    model.train()
    bar = tqdm(range(config.steps), desc="train TinyLM", unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config, step)
        if batches is not None:
            loss = crossbatch_loss(model, batches.batch(step))
        elif streams is None:
            x, y = random_windows(train_docs, config.batch_size, context, gen)
            _, loss = model(x, y)
        else:
            x, y, starts = next(streams)
            _, loss = model(x, y, doc_start=starts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        recent = (recent + [loss.item()])[-20:]
        elapsed = time.perf_counter() - start_time
        out_of_time = config.time_limit_s is not None and elapsed > config.time_limit_s
        last = step == config.steps - 1 or out_of_time
        if (step + 1) % config.eval_every == 0 or last:
            val = evaluate(model, val_docs, config.eval_windows)  # leaves the training lanes' memories intact
            result.history.append({"step": step + 1, "train_loss": sum(recent) / len(recent), "val_loss": val,
                                   "elapsed_s": time.perf_counter() - start_time})
            bar.set_postfix(train=f"{result.history[-1]['train_loss']:.3f}", val=f"{val:.3f}")
        if out_of_time:
            break
    result.elapsed_s = time.perf_counter() - start_time
    result.steps = step + 1
    result.final_val_loss = result.history[-1]["val_loss"]
    return result


def save_checkpoint(model: TinyLM, path, info: dict | None = None) -> Path:
    """Write weights to `path` (.safetensors) and {config, info} to the same name with .json; atomic writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "longlab.TinyLM", "config": model.config.to_dict(), "info": info or {}}
    for target, writer in ((path, lambda tmp: save_model(model, tmp)),
                           (path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))):
        atomic_write(target, writer)
    return path


def load_checkpoint(path, device=None) -> tuple[TinyLM, dict]:
    """Rebuild a TinyLM from `path` (.safetensors) + its .json; returns (model in eval mode, info dict)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"checkpoint needs both {path} and {meta_path}; regenerate it "
                                f"(see data/checkpoints/README.md)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "longlab.TinyLM":
        raise ValueError(f"{meta_path} is not a TinyLM checkpoint description (format={meta.get('format')!r})")
    model = TinyLM(TinyLMConfig.from_dict(meta["config"]))
    try:
        load_model(model, str(path), device=str(device or "cpu"))
    except Exception as err:  # safetensors raises several types for truncated / mismatched files
        raise ValueError(f"{path} does not match its config {meta_path} or is corrupt: {err}") from err
    return model.eval(), meta["info"]
