"""What the Focused Transformer claim scripts share: the pretrained source checkpoint, the weight transfer into a
model with a Focused (or Memorizing) middle layer, and one fine-tuning loop with its timing record."""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from longlab.models import TinyLM, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "data" / "checkpoints" / "tiny_memorizing.safetensors"
# The source checkpoint's middle layer is a Memorizing layer; a Focused layer has no gate and no temperature.
FOCUSED_DROPS = {"blocks.1.attn.gate_bias", "blocks.1.attn.log_tau"}


def load_base_weights(model: TinyLM, allowed_unexpected: set[str] = FOCUSED_DROPS) -> TinyLM:
    """Copy the committed pretrained byte LM (data/checkpoints/tiny_memorizing) into `model`, as the paper
    fine-tunes pretrained models; any tensor missing, or unexpected beyond `allowed_unexpected`, is an error."""
    base, _ = load_checkpoint(BASE)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if missing or set(unexpected) - allowed_unexpected:
        raise RuntimeError(f"weight transfer from {BASE.name} mismatch: missing {missing}, unexpected {unexpected}")
    return model


def warmup_cosine(lr: float, warmup: int, steps: int) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then cosine from lr down to lr / 10 at `steps`."""
    return lambda step: lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))


def fine_tune(model: TinyLM, step_loss: Callable[[int], tuple[torch.Tensor, dict]], steps: int, lr: float, *,
              schedule: Callable[[int], float] | None = None, log_every: int = 50, label: str = "",
              metric: str = "loss", optimizer: torch.optim.Optimizer | None = None, first_step: int = 0,
              history: list | None = None,
              before_step: Callable[[int, torch.optim.Optimizer, list], None] | None = None) -> dict:
    """AdamW fine-tuning for `steps` steps; step_loss(step) -> (loss, fields to log). Gradients clipped at 1.0.

    Every `log_every` steps one history row {step, **fields, <metric>: mean of the last 25 losses, elapsed_s}.
    Returns the timing record a checkpoint's JSON keeps: threads, elapsed_s, cpu_s and the history."""
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    start, cpu_start, history, recent = time.perf_counter(), time.process_time(), history or [], []
    for step in range(first_step, steps):
        if before_step is not None:
            before_step(step, optimizer, history)
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
        loss, fields = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [loss.item()])[-25:]
        if (step + 1) % log_every == 0 or step == steps - 1:
            history.append({"step": step + 1, **fields, metric: sum(recent) / len(recent),
                            "elapsed_s": time.perf_counter() - start})
            shown = "".join(f" {k}={v}" for k, v in fields.items())
            print(f"{label} step {step + 1}{shown}: {metric} {history[-1][metric]:.4f} "
                  f"({history[-1]['elapsed_s']:.0f} s)", flush=True)
    return {"threads": torch.get_num_threads(), "elapsed_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu_start, "history": history}


def merge_phases(before: dict, after: dict) -> dict:
    """The training record of a run continued from another (--continue-from): one history with the second
    phase's steps counted on from the first's, the total steps, and each phase's settings under "phases"."""
    offset = before["steps"]
    settings = lambda info: {k: v for k, v in info.items() if k not in ("history", "phases")}  # noqa: E731
    return {**after, "steps": offset + after["steps"],
            "history": before["history"] + [{**r, "step": r["step"] + offset} for r in after["history"]],
            "phases": before.get("phases", [settings(before)]) + [settings(after)]}


def claim_parser(doc: str) -> argparse.ArgumentParser:
    """The claim scripts' command line: a stage (train or measure), then --threads and --seed; the script adds
    its own options. `parse` applies --threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("train", "measure"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
