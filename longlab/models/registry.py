"""Registry of attention kinds a TinyLM layer can use, by name.

An entry is a class (or factory) `cls(config, layer_index) -> nn.Module` whose forward is
`forward(x (B, N, d_model), positions (N,), **context) -> (B, N, d_model)`, or a lazy "module:attr" string so
optional pieces (the memory layers) load only when a model uses them. Other files add kinds with
`register_attention("name", cls_or_path)`.
"""
from __future__ import annotations

import importlib

_KINDS: dict[str, object] = {
    "dense": "longlab.models.layers:DenseAttention",
    "sliding": "longlab.models.layers:SlidingWindowAttention",
    "dilated": "longlab.models.layers:DilatedAttentionLayer",
    "linear": "longlab.models.idea_layers:LinearAttentionLayer",
    "pooled": "longlab.models.idea_layers:PooledAttentionLayer",
    "floatlike": "longlab.models.idea_layers:FloatLikeAttentionLayer",
    "memorizing": "longlab.memory.memorizing:MemorizingAttention",
    "focused": "longlab.memory.focused.layer:FocusedAttention",
    "longmem": "longlab.memory.longmem.attention:LongMemAttention",
}


def register_attention(name: str, factory) -> None:
    """Make `name` usable in TinyLMConfig.attention; factory is a class/callable or a "module:attr" path."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"attention kind name must be a non-empty string, got {name!r}")
    _KINDS[name] = factory


def attention_kinds() -> list[str]:
    """Names accepted in TinyLMConfig.attention."""
    return sorted(_KINDS)


def attention_class(name: str):
    """Resolve a registered kind to its class/factory (importing lazily)."""
    if name not in _KINDS:
        raise ValueError(f"unknown attention kind {name!r}; choose one of {attention_kinds()} "
                         f"or add one with longlab.models.register_attention")
    entry = _KINDS[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ImportError(f"attention kind {name!r} needs {entry}, which is not available: {err}") from err
        _KINDS[name] = entry
    return entry
