"""Small models: TinyLM (byte-level decoder, attention chosen per layer) and its training loop.

Beside TinyLM: LongMem (a frozen TinyLM backbone + a trainable SideNet with a chunked memory) lives in
`longlab.memory.longmem.model` (it builds on this package, so it is not imported here); its memory-augmented layer is
also the TinyLM attention kind "longmem" (`attention_kinds()`)."""
from .grow import grow_by_one_layer
from .registry import attention_class, attention_kinds, register_attention
from .tiny import TinyLM, TinyLMConfig
from .train import (
                    DocumentStreams,
                    TrainConfig,
                    TrainResult,
                    evaluate,
                    load_checkpoint,
                    random_windows,
                    save_checkpoint,
                    train,
)

__all__ = [
    "TinyLM", "TinyLMConfig", "register_attention", "attention_kinds", "attention_class",
    "TrainConfig", "TrainResult", "train", "evaluate", "random_windows", "DocumentStreams",
    "save_checkpoint", "load_checkpoint", "grow_by_one_layer",
]
