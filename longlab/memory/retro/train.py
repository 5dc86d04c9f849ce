"""Train the retrieval block of a RetroFitted model (decoder frozen) and measure what retrieval buys.

`train_retro` is a seeded AdamW loop with tqdm over pre-retrieved windows (`RetroWindows`). `per_token_loss`
gives the loss of every predicted byte for a number of neighbours k (k = 0 is the frozen decoder);
`chunk_gains` turns two such losses into RETRO's per-chunk view: the gain on the m tokens that read chunk
u's neighbours, against how much of the predicted bytes the neighbours contain (longest common substring).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ...io import atomic_write, write_json
from .cca import chunk_of_token


def train_retro(model, windows, steps: int = 400, batch: int = 8, lr: float = 2e-3, k: int | None = None,
                seed: int = 0, time_limit_s: float | None = None, warmup: int = 20, progress: bool = True) -> dict:
    """Train model.trainable_parameters() on random batches of `windows`; returns {steps, elapsed_s, history}."""
    random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    k = model.config.neighbours if k is None else k
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    history, start, running = [], time.perf_counter(), []
    bar = tqdm(range(steps), desc="train-retro", unit="step", disable=not progress)
    step = 0
    for step in bar:
        index = torch.randint(0, len(windows), (batch,), generator=gen)
        x, y, nb, lengths = windows.batch(index, k)
        _, loss = model(x, nb, lengths, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % 25 == 0:
            history.append({"step": step + 1, "train_loss": sum(running) / len(running),
                            "elapsed_s": round(time.perf_counter() - start, 1)})
            bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}")
            running = []
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            break
    model.eval()
    return {"steps": step + 1, "elapsed_s": round(time.perf_counter() - start, 1), "history": history}


@torch.no_grad()
def per_token_loss(model, windows, k: int, batch: int = 16) -> torch.Tensor:
    """(P, N) cross-entropy in nats of every predicted byte with the first k neighbours (k = 0: none)."""
    model.eval()
    out = []
    for s in range(0, len(windows), batch):
        x, y, nb, lengths = windows.batch(torch.arange(s, min(s + batch, len(windows))), k)
        out.append(model(x, nb, lengths, targets=y, reduction="none")[1])
    return torch.cat(out)


def longest_common_substring(a: bytes, b: bytes) -> int:
    """Length of the longest byte string occurring in both a and b (dynamic programming, O(len a * len b))."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def chunk_gains(windows, loss_without: torch.Tensor, loss_with: torch.Tensor, k: int, chunk_size: int) -> dict:
    """Per (window, chunk u >= 0): mean loss gain over the tokens that read chunk u's neighbours
    (i with u(i) = u), and the overlap = max over the k neighbours of the longest common substring between
    the neighbour's bytes [N, F] and the bytes those tokens predict. Lists of equal length."""
    p, n = loss_without.shape
    u_of = chunk_of_token(n, chunk_size)
    gains, overlaps, where = [], [], []
    for w in range(p):
        for u in range(n // chunk_size):
            rows = (u_of == u).nonzero().squeeze(1)
            predicted = bytes(windows.tokens[w, rows + 1].tolist())
            overlap = max(longest_common_substring(bytes(windows.neighbours[w, u, j, : windows.lengths[w, u, j]]
                                                         .tolist()), predicted) for j in range(k))
            gains.append((loss_without[w, rows] - loss_with[w, rows]).mean().item())
            overlaps.append(overlap)
            where.append([w, u])
    return {"gain": gains, "overlap": overlaps, "window_chunk": where}


def binned_gain(gains: list[float], overlaps: list[int], edges=(0, 4, 8, 12, 1000)) -> list[dict]:
    """Mean gain per overlap bin [lo, hi) and each bin's share of the total gain (sum over chunks)."""
    g, o = torch.tensor(gains), torch.tensor(overlaps)
    total = g.sum().item()
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (o >= lo) & (o < hi)
        rows.append({"overlap": f"{lo}-{min(hi, 10**3) - 1}" if hi < 1000 else f">={lo}", "chunks": int(sel.sum()),
                     "mean_gain": g[sel].mean().item() if sel.any() else float("nan"),
                     "share_of_gain": g[sel].sum().item() / total if total else float("nan")})
    return rows


def save_retro(model, path, info: dict, decoder_path=None) -> Path:
    """Save ONLY the trained retrieval block (the frozen decoder is its own checkpoint) + a .json beside it.

    `decoder_path` (the frozen decoder's checkpoint) is recorded relative to the saved file, so `load_retro`
    finds it from any working directory."""
    import os

    path = Path(path)
    tensors = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    meta = {"format": "longlab.RetroFitted", "config": model.config.to_dict(), "info": info}
    if decoder_path is not None:
        meta["decoder"] = os.path.relpath(Path(decoder_path).resolve(), path.resolve().parent)
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    write_json(path.with_suffix(".json"), meta)
    return path


def load_retro(path, decoder_path=None):
    """(RetroFitted in eval mode, info) from `save_retro` files + the frozen decoder checkpoint: `decoder_path`,
    else the one recorded beside the block (relative to it), else DEFAULT_CHECKPOINT (relative to the cwd)."""
    import json

    from ...models.train import load_checkpoint
    from .encoder import DEFAULT_CHECKPOINT
    from .model import RetroConfig, RetroFitted

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("format") != "longlab.RetroFitted":
        raise ValueError(f"{path.with_suffix('.json')} is not a RetroFitted description")
    if decoder_path is None:
        decoder_path = path.parent / meta["decoder"] if "decoder" in meta else DEFAULT_CHECKPOINT
    decoder, _ = load_checkpoint(decoder_path)
    model = RetroFitted(decoder, RetroConfig(**meta["config"]))
    try:
        state = load_file(str(path))
    except Exception as err:
        raise ValueError(f"{path} is not a readable retrieval-block checkpoint (truncated or corrupt?): {err}") from err
    missing, unexpected = model.load_state_dict(state, strict=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if unexpected or trainable & set(missing):
        lost = sorted(trainable & set(missing))
        raise ValueError(f"{path} does not match RetroConfig {meta['config']}: missing {lost}, unexpected {unexpected}")
    return model.eval(), meta["info"]
