"""Argument checks shared by the whole library (one place, so every error reads the same).

Each raises ValueError naming the argument, the value seen and what is accepted. Booleans are rejected
where an int is asked for (``True`` is an int in Python, never a meaningful size).
"""
from __future__ import annotations


def int_at_least(name: str, value, minimum: int = 1, unit: str = "") -> int:
    """Return ``value`` if it is an int >= ``minimum``; else raise ValueError naming ``name``.

    ``unit`` (e.g. "tokens", "bytes") is added to the message to say what the number counts.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        suffix = f" ({unit})" if unit else ""
        raise ValueError(f"{name} must be {what}{suffix}, got {value!r}")
    return value


def positive_int(name: str, value, unit: str = "") -> int:
    """Return ``value`` if it is an int >= 1; else raise ValueError naming ``name``."""
    return int_at_least(name, value, 1, unit)


def positive_number(name: str, value, unit: str = "") -> float:
    """Return ``float(value)`` if it is a finite number > 0; else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        suffix = f" ({unit})" if unit else ""
        raise ValueError(f"{name} must be a positive finite number{suffix}, got {value!r}")
    return float(value)
