"""`MethodSpec`: everything longlab knows about one sequence-parallel method, in one object.

The registry (`longlab.parallel.methods`) holds one spec per method; `simulate`, `launch`, `cost`, the
`longlab parallel` command and the figures all read it, so a new method is one file in `methods/`.
A spec gives: the name, how the sequence is sharded, the per-rank attention program, the options it takes
(with defaults) and their validation, and the formula of what it sends (`plan`, one `CommStep` per collective).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..checks import positive_int
from . import sharding as sharding_lib


@dataclass(frozen=True)
class CommStep:
    """One collective: per-rank message counts and bytes sent."""

    op: str
    messages: list[int]
    nbytes: list[int]
    what: str = ""


@dataclass(frozen=True)
class Workload:
    """Sizes of one attention layer's inputs (forward); opts: the method's options (defaults filled in later)."""

    seq_len: int
    heads: int
    head_dim: int = 64
    kv_heads: int | None = None
    value_dim: int | None = None
    batch: int = 1
    elem_size: int = 4
    opts: dict = field(default_factory=dict)

    @property
    def hk(self) -> int:
        return self.kv_heads or self.heads

    @property
    def dv(self) -> int:
        return self.value_dim or self.head_dim


@dataclass(frozen=True)
class MethodSpec:
    """One method.

    name: registry key; summary: one line for help texts; sharding: "balanced", "contiguous" or "zigzag"
    (`sharding.py`), None for a method that has a formula but no program (it cannot run);
    plan(world_size, work, opts) -> [CommStep]: the collectives of one layer's forward (bytes sent per rank);
    attention(group, q, k, v, *, causal, scale, seq_len, **opts) -> this rank's output shard;
    options: accepted option names -> defaults; check(heads, seq_len, world_size, opts): raise ValueError for
    sizes the method cannot run (sharding divisibility is checked for every method);
    demo_options(seq_len, base) -> options for a length-N demo (figures, notebooks), default: none;
    same_volume_as: another method that sends exactly the same bytes (figures draw one line for both).
    """

    name: str
    summary: str
    sharding: str | None
    plan: Callable
    attention: Callable | None = None
    options: Mapping = field(default_factory=dict)
    check: Callable | None = None
    demo_options: Callable | None = None
    same_volume_as: str | None = None

    @property
    def runnable(self) -> bool:
        return self.attention is not None

    def resolve(self, opts: Mapping) -> dict:
        """The options with defaults filled in; an unknown name is a TypeError listing the accepted ones."""
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            accepted = f"it takes {tuple(self.options)}" if self.options else "it takes no extra options"
            raise TypeError(f"unknown options {unknown} for method {self.name!r}; {accepted}")
        return {**self.options, **opts}

    def validate(self, heads: int, seq_len: int, world_size: int, opts: Mapping) -> dict:
        """Check sizes and options up front (in the caller's process, before any rank starts); return the
        resolved options."""
        positive_int("world_size", world_size)
        resolved = self.resolve(opts)
        if self.sharding is not None:
            sharding_lib.check_divisible(self.sharding, seq_len, world_size, self.name)
        if self.check is not None:
            self.check(heads, seq_len, world_size, resolved)
        return resolved

    def example_options(self, seq_len: int, base: int = 64) -> dict:
        """Options for a demo at length `seq_len` (LongNet: the paper's geometric schedule from `base`)."""
        return self.demo_options(seq_len, base) if self.demo_options is not None else {}
