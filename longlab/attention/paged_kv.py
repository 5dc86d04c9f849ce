"""A paged KV cache with query-aware page selection (Quest, Tang et al. 2024, arXiv 2406.10774), for decoding.

Virtual memory for attention: the cache is a pool of fixed-size physical pages; a page table maps the
sequence's logical pages (tokens t*P .. t*P + P - 1) to physical ones. Each page also keeps, per head and per
dimension, the min and max of its keys. For a query q the page score

    u(q, page) = sum_d max(q_d * min_d, q_d * max_d)  >=  q . k   for every key k in the page

is an upper bound on every logit in the page (each term bounds q_d k_d). Decoding attends exactly (one
softmax, `attend`) over the top-K pages by u plus the current (newest, possibly partial) page; the other
pages are never read. K >= the number of pages gives dense attention. Layout: one sequence, per head;
keys (H, D), values (H, Dv) per token.
"""
from __future__ import annotations

import torch

from ..checks import positive_int
from .kernels import attend


class PagedKVCache:
    """Paged KV cache for one sequence: `capacity` tokens in pages of `page_size` (page_size must divide it).

    append(k (H, T, D), v (H, T, Dv)); attend(q (H, D), pages_kept) -> (out (H, Dv), lse (H), pages (H, K'));
    dense_attend(q) the same over every cached token.
    """

    def __init__(self, heads: int, head_dim: int, page_size: int, capacity: int, value_dim: int | None = None,
                 dtype=torch.float32, device=None):
        for name, value in (("heads", heads), ("head_dim", head_dim)):
            positive_int(name, value)
        positive_int("page_size", page_size, "tokens")
        positive_int("capacity", capacity, "tokens")
        if capacity % page_size:
            raise ValueError(f"page_size={page_size} does not divide the cache capacity={capacity}; pick a capacity "
                             f"that is a multiple of the page size (e.g. {-(-capacity // page_size) * page_size})")
        self.heads, self.head_dim, self.page_size, self.capacity = heads, head_dim, page_size, capacity
        self.value_dim = value_dim or head_dim
        pages = capacity // page_size
        kw = {"dtype": dtype, "device": device}
        self.k_pool = torch.zeros(pages, heads, page_size, head_dim, **kw)
        self.v_pool = torch.zeros(pages, heads, page_size, self.value_dim, **kw)
        self.k_min = torch.full((pages, heads, head_dim), float("inf"), **kw)
        self.k_max = torch.full((pages, heads, head_dim), float("-inf"), **kw)
        self.free = list(range(pages))
        self.page_table: list[int] = []  # logical page -> physical page
        self.length = 0

    @property
    def num_pages(self) -> int:
        """Logical pages in use (the last may be partial)."""
        return len(self.page_table)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add T tokens: k (H, T, D), v (H, T, Dv)."""
        if k.dim() != 3 or k.shape[0] != self.heads or k.shape[2] != self.head_dim:
            raise ValueError(f"k must be (H={self.heads}, T, D={self.head_dim}), got {tuple(k.shape)}")
        if v.shape != (self.heads, k.shape[1], self.value_dim):
            raise ValueError(f"v must be (H={self.heads}, T={k.shape[1]}, Dv={self.value_dim}), got {tuple(v.shape)}")
        if self.length + k.shape[1] > self.capacity:
            raise ValueError(f"cache full: {self.length} + {k.shape[1]} tokens > capacity={self.capacity}; "
                             f"make a larger cache")
        t = 0
        while t < k.shape[1]:
            slot = self.length % self.page_size
            if slot == 0:
                self.page_table.append(self.free.pop(0))
            phys = self.page_table[-1]
            take = min(self.page_size - slot, k.shape[1] - t)
            k_part = k[:, t:t + take].to(self.k_pool.dtype)
            self.k_pool[phys, :, slot:slot + take] = k_part
            self.v_pool[phys, :, slot:slot + take] = v[:, t:t + take].to(self.v_pool.dtype)
            self.k_min[phys] = torch.minimum(self.k_min[phys], k_part.amin(1))
            self.k_max[phys] = torch.maximum(self.k_max[phys], k_part.amax(1))
            self.length += take
            t += take

    def page_scores(self, q: torch.Tensor) -> torch.Tensor:
        """Upper bounds u (H, pages) for q (H, D): u >= q . k for every key of the page (logical order)."""
        phys = torch.tensor(self.page_table, dtype=torch.long, device=self.k_pool.device)
        lo, hi = self.k_min[phys].transpose(0, 1), self.k_max[phys].transpose(0, 1)  # (H, pages, D)
        qe = q.to(lo.dtype)[:, None, :]
        return torch.maximum(qe * lo, qe * hi).sum(-1)

    def select_pages(self, q: torch.Tensor, pages_kept: int) -> torch.Tensor:
        """Logical pages read for q (H, D): the top-`pages_kept` older pages by upper bound, plus the current
        (last) page. LongTensor (H, min(K, pages - 1) + 1), ascending."""
        positive_int("pages_kept", pages_kept, "pages")
        if self.length == 0:
            raise ValueError("the cache is empty; append keys before attending")
        older = self.num_pages - 1
        current = torch.full((self.heads, 1), older, dtype=torch.long, device=self.k_pool.device)
        if older == 0:
            return current
        top = self.page_scores(q)[:, :older].topk(min(pages_kept, older), dim=-1).indices
        return torch.cat([top, current], dim=1).sort(dim=1).values

    def token_positions(self, pages: torch.Tensor) -> torch.Tensor:
        """(H, K' * P) token positions of the given logical pages, with positions >= length cut off the end."""
        pos = (pages[..., None] * self.page_size + torch.arange(self.page_size, device=pages.device)).flatten(1)
        return pos[:, : pos.shape[1] - (self.num_pages * self.page_size - self.length)]

    def gather(self, pages: torch.Tensor):
        """Keys (H, T, D) and values (H, T, Dv) of the selected logical pages (H, K') through the page table."""
        table = torch.tensor(self.page_table, dtype=torch.long, device=pages.device)
        phys = table[pages]  # (H, K')
        head = torch.arange(self.heads, device=pages.device)[:, None]
        keys = self.k_pool[phys, head].flatten(1, 2)  # (H, K' * P, D)
        values = self.v_pool[phys, head].flatten(1, 2)
        valid = self.token_positions(pages).shape[1]  # the current page sorts last: its unused tail goes
        return keys[:, :valid], values[:, :valid]

    def attend(self, q: torch.Tensor, pages_kept: int, scale: float | None = None):
        """Exact attention of q (H, D) over the selected pages: (out (H, Dv), lse (H), pages (H, K'))."""
        pages = self.select_pages(q, pages_kept)
        keys, values = self.gather(pages)
        out, lse = attend(q[None, :, None, :].to(keys.dtype), keys[None], values[None], scale=scale)
        return out[0, :, 0], lse[0, :, 0], pages

    def dense_attend(self, q: torch.Tensor, scale: float | None = None):
        """Attention of q (H, D) over every cached token: (out (H, Dv), lse (H))."""
        all_pages = torch.arange(self.num_pages).expand(self.heads, -1)
        keys, values = self.gather(all_pages)
        out, lse = attend(q[None, :, None, :].to(keys.dtype), keys[None], values[None], scale=scale)
        return out[0, :, 0], lse[0, :, 0]

    def bytes_read(self, pages_kept: int | None) -> int:
        """Cache bytes one decoded token reads: the page metadata (min/max) plus the selected pages' keys and
        values (pages_kept=None: the dense cache, every token, no metadata)."""
        item = self.k_pool.element_size()
        per_token = self.heads * (self.head_dim + self.value_dim) * item
        if pages_kept is None:
            return self.length * per_token
        meta = self.num_pages * self.heads * 2 * self.head_dim * item
        current = self.length - (self.num_pages - 1) * self.page_size  # tokens in the newest page
        kept = min(pages_kept, self.num_pages - 1) * self.page_size + current
        return meta + kept * per_token

    def __repr__(self) -> str:
        return (f"PagedKVCache(tokens={self.length}/{self.capacity}, page_size={self.page_size}, "
                f"pages={self.num_pages}, heads={self.heads}, head_dim={self.head_dim})")


def topk_recall(q: torch.Tensor, keys: torch.Tensor, pages: torch.Tensor, page_size: int, top: int = 32) -> float:
    """Fraction of each head's true top-`top` keys by q . k (keys (H, N, D), q (H, D)) that lie in `pages`
    (H, K'), averaged over heads."""
    positive_int("top", top)
    best = (keys @ q[..., None]).squeeze(-1).topk(min(top, keys.shape[1]), dim=-1).indices  # (H, top)
    hit = (best // page_size)[..., None] == pages[:, None, :]
    return float(hit.any(-1).float().mean())
