"""Small models: TinyLM (byte-level decoder, attention chosen per layer) and its training loop."""
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
    "save_checkpoint", "load_checkpoint",
]
