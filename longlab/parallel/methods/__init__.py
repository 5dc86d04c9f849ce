"""The method registry: one `MethodSpec` per sequence-parallel method (see `spec.py`).

To add a method: write `methods/<name>.py` with its rank program, its `plan` (bytes per collective) and a
`SPEC`, and list the spec in `SPECS` below. `simulate`, `launch`, `cost`, `longlab parallel` and the figures
pick it up from here.
"""
from __future__ import annotations

from ..spec import MethodSpec
from . import longnet, megatron, ring, ulysses

SPECS: tuple[MethodSpec, ...] = (ulysses.SPEC, megatron.SPEC, ring.RING, ring.ZIGZAG, longnet.SPEC)
REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in SPECS}
ALL_METHODS = tuple(REGISTRY)  # every method with a cost formula
METHODS = tuple(spec.name for spec in SPECS if spec.runnable)  # methods that run (simulate / launch)


def get_method(name) -> MethodSpec:
    """The spec registered under `name`; ValueError listing the registered names otherwise."""
    if isinstance(name, MethodSpec):
        return name
    if name not in REGISTRY:
        raise ValueError(f"method must be one of {ALL_METHODS}, got {name!r}")
    return REGISTRY[name]


__all__ = ["SPECS", "REGISTRY", "METHODS", "ALL_METHODS", "get_method", "MethodSpec"]
