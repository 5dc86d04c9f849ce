"""RETRO-fitting a frozen TinyLM (Borgeaud et al. 2021, arXiv 2112.04426, sec. 2.4 and 4.2 "Retrofitting").

The frozen decoder runs as trained; after its last block a retrieval block is added, and only it learns:

    E_u = Encoder(neighbours of chunk u, conditioned on H_u)      bidirectional, cross-attends to H_u
    x  <- x + CCA(norm(x), E)                                     chunked cross-attention (cca.py)
    x  <- x + MLP(norm(x))                                        only on tokens that read a neighbour
    logits = frozen head(frozen final norm(x))

H_u are the frozen decoder's hidden states of chunk u (tokens u m .. (u+1) m - 1), so E_u depends only on
chunk u and the tokens before it. Both output projections start at zero: before training, and with k = 0
neighbours, the model IS the frozen decoder. Neighbour padding is a length, never a pad byte.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...attention.rope import apply_rope, rope_tables
from ...checks import int_at_least, positive_int
from ...models.layers import MLP
from .cca import cca_positions, check_chunked, chunk_of_token, chunked_cross_attention


@dataclass
class RetroConfig:
    chunk_size: int = 16  # m, bytes per chunk (the database's)
    neighbours: int = 2  # k used in training
    heads: int = 4
    encoder_layers: int = 1
    mlp_ratio: int = 2

    def __post_init__(self):
        for name in ("chunk_size", "neighbours", "heads", "encoder_layers", "mlp_ratio"):
            positive_int(f"RetroConfig.{name}", getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:  # (..., n, d) -> (..., heads, n, d / heads)
    return x.unflatten(-1, (heads, -1)).transpose(-2, -3)


def _join(x: torch.Tensor) -> torch.Tensor:  # (..., heads, n, dh) -> (..., n, heads * dh)
    return x.transpose(-2, -3).flatten(-2)


class EncoderLayer(nn.Module):
    """Neighbour tokens: bidirectional self-attention (RoPE, padding masked) + cross-attention to H_u + MLP.
    forward(y (S, R, d), valid (S, R) bool, cond (S, m, d)) -> (S, R, d), S = batch * chunks * neighbours."""

    def __init__(self, d: int, heads: int, ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.cq, self.ckv, self.cproj = nn.Linear(d, d, bias=False), nn.Linear(d, 2 * d, bias=False), nn.Linear(d, d)
        self.mlp = MLP(d, ratio)

    def forward(self, y, valid, cond):
        q, k, v = (_split(t, self.heads) for t in self.qkv(self.norm1(y)).chunk(3, dim=-1))
        cos, sin = rope_tables(torch.arange(y.shape[1], device=y.device), q.shape[-1], dtype=q.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = y + self.proj(_join(F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])))
        cq = _split(self.cq(self.norm2(y)), self.heads)
        ck, cv = (_split(t, self.heads) for t in self.ckv(cond).chunk(2, dim=-1))
        y = y + self.cproj(_join(F.scaled_dot_product_attention(cq, ck, cv)))
        return y + self.mlp(self.norm3(y))


class NeighbourEncoder(nn.Module):
    """Encode retrieved [chunk, continuation] bytes, conditioned on the retrieving chunk's decoder states.

    forward(tokens (B, L, k, R) int, lengths (B, L, k), chunk_states (B, L, m, d)) -> (B, L, k, R, d).
    Byte embeddings are the frozen decoder's (passed in), so neighbours and text share one byte space."""

    def __init__(self, embed: nn.Embedding, d: int, heads: int, layers: int, ratio: int):
        super().__init__()
        self.embed = embed  # frozen, owned by the decoder
        self.layers = nn.ModuleList(EncoderLayer(d, heads, ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens, lengths, chunk_states):
        b, n_chunks, k, r = tokens.shape
        valid = torch.arange(r, device=tokens.device) < lengths[..., None]  # (B, L, k, R)
        y = self.embed(tokens.long()).flatten(0, 2)
        cond = chunk_states[:, :, None].expand(-1, -1, k, -1, -1).flatten(0, 2)
        flat_valid = valid.flatten(0, 2)
        for layer in self.layers:
            y = layer(y, flat_valid, cond)
        return self.norm(y).view(b, n_chunks, k, r, -1), valid


class ChunkedCrossAttention(nn.Module):
    """x (B, N, d) decoder states, encoded (B, L, k, R, d), valid (B, L, k, R) -> (B, N, d) update (eq. 3-4).
    Relative positions as in RETRO's CCA, through RoPE applied once (see `cca_positions`)."""

    def __init__(self, d: int, heads: int, chunk_size: int):
        super().__init__()
        self.heads, self.chunk_size = heads, chunk_size
        self.norm = nn.LayerNorm(d)
        # no output bias: a token that reads nothing must get exactly 0 (the residual only)
        self.q, self.kv, self.out = (nn.Linear(d, d, bias=False), nn.Linear(d, 2 * d, bias=False),
                                     nn.Linear(d, d, bias=False))
        nn.init.zeros_(self.out.weight)

    def rotated(self, x, encoded):
        """q (B, H, N, dh) and k, v (B, H, L, k R, dh), q and k rotated by `cca_positions` (once)."""
        b, n_chunks, k, r, d = encoded.shape
        q = _split(self.q(self.norm(x)), self.heads)
        kk, vv = (_split(t, self.heads) for t in self.kv(encoded).chunk(2, dim=-1))  # (B, L, k, H, R, dh)
        q_pos, k_pos = cca_positions(x.shape[1], self.chunk_size, r, x.device)
        cos, sin = rope_tables(q_pos, q.shape[-1], dtype=q.dtype)
        q = apply_rope(q, cos, sin)
        cos, sin = rope_tables(k_pos, q.shape[-1], dtype=q.dtype)
        kk = apply_rope(kk, cos, sin)
        flat = lambda t: t.permute(0, 3, 1, 2, 4, 5).reshape(b, self.heads, n_chunks, k * r, -1)  # noqa: E731
        return q, flat(kk), flat(vv)

    def forward(self, x, encoded, valid):
        b, n_chunks, k, r, d = encoded.shape
        q, kk, vv = self.rotated(x, encoded)
        out, _ = chunked_cross_attention(q, kk, vv, self.chunk_size, valid.reshape(b, n_chunks, k * r))
        return self.out(_join(out))


def dense_decoder(model):
    """The frozen decoder as plain dense layers: a kNN-memory layer with an empty memory is exactly its local
    causal attention, so its q/k/v/out weights load into a dense layer (its gate and temperature are unused)."""
    from ...models import TinyLM, TinyLMConfig

    config = TinyLMConfig.from_dict({**model.config.to_dict(), "attention": "dense"})
    dense = TinyLM(config)
    dense.load_state_dict(model.state_dict(), strict=False)
    for p in dense.parameters():
        p.requires_grad_(False)
    return dense.eval()


class RetroFitted(nn.Module):
    """Frozen TinyLM decoder + trainable neighbour encoder, CCA and MLP (only these have requires_grad).

    forward(idx (B, N), neighbours (B, L, k, 2m) bytes, lengths (B, L, k), targets=None) -> (logits, loss);
    N = L m. k = 0 (or neighbours=None) gives exactly the frozen decoder."""

    def __init__(self, decoder, config: RetroConfig):
        super().__init__()
        self.config = config
        self.decoder = dense_decoder(decoder)
        d = self.decoder.config.d_model
        self.encoder = NeighbourEncoder(self.decoder.embed, d, config.heads, config.encoder_layers, config.mlp_ratio)
        self.cca = ChunkedCrossAttention(d, config.heads, config.chunk_size)
        self.mlp_norm, self.mlp = nn.LayerNorm(d), MLP(d, config.mlp_ratio)
        nn.init.zeros_(self.mlp.down.weight)
        nn.init.zeros_(self.mlp.down.bias)

    def trainable_parameters(self) -> list:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        self.decoder.eval()  # frozen: no dropout/statistics ever change
        return self

    def decoder_states(self, idx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.decoder.embed(idx)
            positions = torch.arange(idx.shape[1], device=idx.device)
            for block in self.decoder.blocks:
                x = block(x, positions)
        return x

    def forward(self, idx, neighbours=None, lengths=None, targets=None, reduction: str = "mean"):
        m = self.config.chunk_size
        n_chunks = check_chunked(idx.shape[1], m)
        x = self.decoder_states(idx)
        if neighbours is not None and neighbours.shape[2] > 0:
            if neighbours.shape[:2] != (idx.shape[0], n_chunks) or neighbours.shape[3] != 2 * m:
                raise ValueError(f"neighbours must be (B, L, k, 2m) = ({idx.shape[0]}, {n_chunks}, k, {2 * m}), "
                                 f"got {tuple(neighbours.shape)}")
            encoded, valid = self.encoder(neighbours, lengths, x.view(x.shape[0], n_chunks, m, -1))
            x = x + self.cca(x, encoded, valid)
            reads = (chunk_of_token(x.shape[1], m, x.device) >= 0).to(x.dtype)[:, None]
            x = x + self.mlp(self.mlp_norm(x)) * reads  # tokens 0..m-2 read nothing: they stay the frozen model's
        logits = self.decoder.head(self.decoder.norm(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)
        return logits, loss if reduction != "none" else loss.view_as(targets)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.trainable_parameters())
        return (f"RetroFitted(frozen {self.decoder!r}, trainable {n / 1e6:.2f}M params: encoder x"
                f"{self.config.encoder_layers}, CCA, MLP; m={self.config.chunk_size}, k={self.config.neighbours})")


def check_neighbour_count(k: int, available: int) -> int:
    int_at_least("k", k, 0)
    if k > available:
        raise ValueError(f"k={k} neighbours asked but only {available} were retrieved per chunk; retrieve more "
                         f"(--k) or lower k")
    return k


