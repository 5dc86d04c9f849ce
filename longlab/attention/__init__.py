"""Attention core: dense reference, fast exact `attend`, lse `merge` (and, from later issues, patterns/dilated)."""
from .kernels import attend
from .merge import merge
from .reference import causal_mask, reference_attention

__all__ = ["attend", "merge", "reference_attention", "causal_mask"]
