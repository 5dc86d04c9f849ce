"""LongMem (Wang et al. 2023, arXiv 2306.07174): a frozen TinyLM backbone, a trainable SideNet, a chunked memory.

    with no autograd:  H_0 .. H_L = backbone(idx)              frozen: no parameter requires grad
                       (k_m, v_m) = backbone layer m's pre-RoPE keys and values   -> the memory bank (detached)
    x_S = SideNet(H_0 .. H_L)          cross-network residuals; SideNet layer j reads the bank (longmem_attention)
    logits = frozen_head(frozen_norm(x_S))

Why freeze: the keys in memory were written by the backbone's layer m; the backbone never changes, so a key cached
a million tokens ago is exactly what layer m would write now (no staleness, see `longmem_staleness`). Memory is
read before the window is written; one ChunkBank per batch lane, cleared at each lane's document start.

    model = LongMem(backbone, LongMemConfig(reduction=2))   # memory in the SideNet's last layer
    logits, loss = model(idx, targets, doc_start=starts)       # as TinyLM; memory_lanes / loss_vs_memory work
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ...checks import int_at_least, positive_int
from ...io import atomic_write, write_json
from ...models.tiny import check_tokens
from .sidenet import SideNet

STATELESS_KINDS = ("dense", "sliding", "dilated", "linear", "pooled")  # backbone kinds kept as they are
FORMAT = "longlab.LongMem"


@dataclass
class LongMemConfig:
    """reduction r (backbone layers per SideNet layer); memory_layer j (SideNet layer with memory; None = the last);
    source_layer m (backbone layer whose keys/values are cached; None = the layer SideNet layer j was copied from);
    chunk_size csz; topk K retrieved tokens (multiple of csz); memory_size tokens per lane (multiple of csz).

    Why not j = 0 by default: SideNet layer 0 reads H_0, the token embedding, so its memory queries are a function
    of the current byte alone (every "e" sends the same query); it cannot look up the past by context."""

    reduction: int = 2
    memory_layer: int | None = None
    source_layer: int | None = None
    chunk_size: int = 4
    topk: int = 32
    memory_size: int = 16384
    context: int = 0  # filled from the backbone (windows are read at the backbone's context)

    def __post_init__(self):
        for name in ("reduction", "chunk_size", "topk"):
            positive_int(f"LongMemConfig.{name}", getattr(self, name))
        if self.memory_layer is not None:
            int_at_least("LongMemConfig.memory_layer", self.memory_layer, 0)
        int_at_least("LongMemConfig.memory_size", self.memory_size, 0, "tokens per lane")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def frozen_backbone(model):
    """A frozen copy of TinyLM `model` without memory: Memorizing layers become dense (with an empty memory a
    Memorizing layer IS its local causal attention, same q/k/v/out weights), stateless kinds stay. Every parameter
    has requires_grad False and the copy is in eval mode."""
    from ...models import TinyLM, TinyLMConfig

    kinds = []
    for i, kind in enumerate(model.config.attention):
        if kind == "memorizing":
            kinds.append("dense")
        elif kind in STATELESS_KINDS:
            kinds.append(kind)
        else:
            raise ValueError(f"backbone layer {i} is {kind!r}; a LongMem backbone needs memory-free layers "
                             f"({', '.join(STATELESS_KINDS)}) or Memorizing layers (run with empty memory)")
    frozen = TinyLM(TinyLMConfig.from_dict({**model.config.to_dict(), "attention": tuple(kinds)}))
    missing, unexpected = frozen.load_state_dict(model.state_dict(), strict=False)
    if missing or any(not name.endswith(("gate_bias", "log_tau")) for name in unexpected):
        raise ValueError(f"backbone weights do not fit: missing {missing}, unexpected {unexpected}")
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen.eval()


class LongMem(nn.Module):
    """Frozen backbone + SideNet with one memory-augmented layer. forward(idx (B, N), targets=None, positions=None,
    reduction="mean", doc_start=None, write_memory=True, return_retrievals=False) -> (logits, loss) like TinyLM
    (with return_retrievals: (logits, loss, {SideNet memory layer index: LayerReads}))."""

    def __init__(self, backbone, config: LongMemConfig | None = None):
        super().__init__()
        config = dataclasses.replace(config or LongMemConfig(), context=backbone.config.context)
        self.backbone = frozen_backbone(backbone)
        self.side = SideNet(self.backbone, config.reduction, config.memory_layer, config.memory_size, config.topk,
                            config.chunk_size)
        n = self.backbone.config.n_layers
        config.memory_layer = self.side.memory_layer
        if config.source_layer is None:
            config.source_layer = self.side.init_from[config.memory_layer]
        if isinstance(config.source_layer, bool) or not isinstance(config.source_layer, int) \
                or not 0 <= config.source_layer < n:
            raise ValueError(f"source_layer={config.source_layer!r} is out of range: the backbone has {n} layers; "
                             f"pick 0..{n - 1} (or None: the layer the memory SideNet layer was copied from)")
        self.config = config

    # ---- the frozen part -------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: its mode never changes
        return self

    def trainable_parameters(self) -> list:
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def backbone_states(self, idx: torch.Tensor, positions: torch.Tensor):
        """H_0 .. H_L (each (B, N, d)) and layer m's pre-RoPE (keys, values) (B, H, N, D), without autograd."""
        bb = self.backbone
        hidden = [bb.embed(idx)]
        for block in bb.blocks:
            hidden.append(block(hidden[-1], positions))
        source = bb.blocks[self.config.source_layer]
        _, keys, values = source.attn.project(source.norm1(hidden[self.config.source_layer]))
        return hidden, (keys, values)

    # ---- the model -------------------------------------------------------------------------------------
    def memory_layers(self) -> list:
        return [self.side.memory]

    def forward(self, idx, targets=None, positions=None, reduction: str = "mean", doc_start=None,
                write_memory: bool = True, return_retrievals: bool = False):
        check_tokens(idx, self.config.context)
        positions = torch.arange(idx.shape[1], device=idx.device) if positions is None else positions
        hidden, memory_kv = self.backbone_states(idx, positions)
        context = {"doc_start": doc_start, "write_memory": write_memory, "memory_kv": memory_kv,
                   "return_retrievals": return_retrievals}
        x = self.side(hidden, positions, context)
        reads = {}
        if return_retrievals:
            x, reads[self.config.memory_layer] = x
        logits = self.backbone.head(self.backbone.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
            loss = loss if reduction != "none" else loss.view_as(targets)
        return (logits, loss, reads) if return_retrievals else (logits, loss)

    def __repr__(self) -> str:
        c, side = self.config, sum(p.numel() for p in self.trainable_parameters())
        return (f"LongMem(frozen {self.backbone!r}; SideNet {len(self.side.blocks)} layers from backbone layers "
                f"{self.side.init_from}, {side / 1e6:.2f}M trainable params; memory: backbone layer {c.source_layer} "
                f"-> SideNet layer {c.memory_layer}, {c.memory_size} tokens/lane, chunks of {c.chunk_size}, "
                f"top {c.topk} tokens)")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_longmem(model: LongMem, path, backbone_path, info: dict | None = None) -> Path:
    """Write the SideNet weights only to `path` (.safetensors) and {config, backbone reference, info} to .json.
    The backbone is referenced by its path (relative to this checkpoint's folder) and sha256, never copied."""
    path, backbone_path = Path(path), Path(backbone_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bb = model.backbone.config
    meta = {"format": FORMAT, "config": model.config.to_dict(),
            "backbone": {"path": os.path.relpath(backbone_path.resolve(), path.parent.resolve()),
                         "sha256": file_sha256(backbone_path), "d_model": bb.d_model, "n_layers": bb.n_layers,
                         "n_heads": bb.n_heads},
            "info": info or {}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.side.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    write_json(path.with_suffix(".json"), meta)
    return path


def load_longmem(path, backbone_path=None) -> tuple[LongMem, dict]:
    """Rebuild a LongMem from `path` + its .json; the backbone from `backbone_path` or the recorded reference
    (its sha256 must match). Raises ValueError for a backbone of another shape. Returns (model in eval, meta)."""
    from ...models.train import load_checkpoint

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path.with_suffix('.json')} is not a LongMem checkpoint (format={meta.get('format')!r})")
    ref = meta["backbone"]
    backbone_path = Path(backbone_path) if backbone_path is not None else path.parent / ref["path"]
    backbone, _ = load_checkpoint(backbone_path)
    check_backbone(backbone, ref)
    if file_sha256(backbone_path) != ref["sha256"]:
        raise ValueError(f"{backbone_path} is not the backbone this SideNet was trained on (sha256 differs); pass "
                         f"the backbone recorded in {path.with_suffix('.json')}: {ref['path']}")
    model = LongMem(backbone, LongMemConfig(**{k: v for k, v in meta["config"].items() if k != "context"}))
    model.side.load_state_dict(load_file(str(path)))
    return model.eval(), meta


def check_backbone(backbone, ref: dict) -> None:
    """ValueError unless the backbone has the width, depth and heads the SideNet was built for."""
    c = backbone.config
    got = {"d_model": c.d_model, "n_layers": c.n_layers, "n_heads": c.n_heads}
    want = {k: ref[k] for k in got}
    if got != want:
        raise ValueError(f"backbone has {got} but the SideNet was built for {want}; a SideNet only runs beside the "
                         f"backbone width and depth it was copied from")
