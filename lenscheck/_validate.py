"""Argument checks shared by the public functions: one message format everywhere."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_positive_int", "check_unit_interval", "describe"]


def describe(value: Any) -> str:
    """Short description of a value for error messages (type and, for tensors, shape)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "?")
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{value!r} ({type(value).__name__})"


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in [0, 1], else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {describe(value)}")
    v = float(value)
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def check_positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= 1, got {describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
