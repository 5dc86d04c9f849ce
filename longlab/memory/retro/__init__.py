"""RETRO: chunk database over the standard library, chunked cross-attention, RETRO-fitting."""
