"""Input checks at the boundary, written once: errors name the argument, the expectation and what came."""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np


def as_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape``, else ``ValueError`` (a short view of what came)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of numbers of shape {shape}, got {reprlib.repr(value)}") from error
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {array.shape}")
    return array


def as_finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape`` with finite entries, else ``ValueError``."""
    array = as_array(name, value, shape)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def check_options(options: dict | None, allowed: tuple[str, ...]) -> dict:
    """``options`` as a dict, refusing unknown keys."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"options has unknown keys {sorted(unknown)}; allowed: {list(allowed)}")
    return options
