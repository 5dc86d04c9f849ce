"""Attention core: dense reference, fast exact `attend`, lse `merge`; sparsity `patterns`, LongNet `dilated`
(gathered, or FlexAttention via `flex`) and the other methods, one module each."""
from .kernels import attend
from .merge import merge
from .reference import causal_mask, reference_attention

__all__ = ["attend", "merge", "reference_attention", "causal_mask"]
