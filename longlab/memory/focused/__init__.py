"""Focused Transformer (LongLLaMA): the one-softmax memory layer, crossbatch training, its tasks."""
