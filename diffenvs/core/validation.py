"""Input checks at the boundary, written once: errors name the argument, the expectation and what came."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer: a Python or numpy int, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def finite_number(value: Any) -> bool:
    """Whether the real number ``value`` is finite (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def as_integer(name: str, value: Any, least: int | None = 1, *, or_none: bool = False,
               wrong_type: type[Exception] = ValueError) -> int:
    """``value`` as an ``int`` of at least ``least`` (``None``: any integer), else an error naming ``name``.

    Python and numpy integers count; bools do not. A value that is no integer raises
    ``wrong_type`` (``ValueError`` by default), one below ``least`` ``ValueError``. With
    ``or_none`` the expectation says ``None`` is allowed too (the caller lets ``None`` through).
    """
    kind = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(least, f"an integer >= {least}")
    expected = kind + (" or None" if or_none else "")
    if not is_integer(value):
        raise wrong_type(f"{name} must be {expected}, got {value!r}"
                         + (f" of type {type(value).__name__}" if wrong_type is TypeError else ""))
    if least is not None and value < least:
        raise ValueError(f"{name} must be {expected}, got {int(value)!r}")
    return int(value)


def check_integer(name: str, value: Any, least: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer of at least ``least`` (default: a positive integer).

    Python and numpy integers count; bools do not.
    """
    as_integer(name, value, least)


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite positive number (numpy scalars count, bools do not)."""
    if not (is_real(value) and finite_number(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def check_finite(name: str, value: float, *, least: float = -math.inf, bound: float = math.inf) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number ``>= least`` and at most ``bound`` in magnitude."""
    if not (is_real(value) and finite_number(value) and value >= least and abs(value) <= bound):
        expected = "a finite number" + (f" >= {least}" if least > -math.inf else "")
        expected += f" of magnitude at most {bound:.4g}" if bound < math.inf else ""
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


#: numpy's kinds of real numbers: signed and unsigned integers, floats (not bools, complex numbers, strings, objects)
REAL_KINDS = "iuf"


def as_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape``, else ``ValueError`` (a short view of what came).

    Only real numbers are taken: an array (or nested list) of bools, complex numbers, strings or other objects
    raises ``TypeError`` instead of being converted (``True`` is no 1.0, ``"0.5"`` no 0.5, and a complex number
    would lose its imaginary part).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:  # ragged lists; tensors on a GPU or requiring grad
        raise ValueError(f"{name} must be an array of numbers of shape {shape}, got {reprlib.repr(value)}") from error
    if raw.dtype.kind not in REAL_KINDS:
        raise TypeError(f"{name} must be an array of real numbers (ints or floats) of shape {shape}, got "
                        f"{reprlib.repr(value)} (numpy dtype {raw.dtype})")
    array = raw.astype(np.float64, copy=False)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {array.shape}")
    return array


def as_finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape`` with finite entries, else ``ValueError``."""
    array = as_array(name, value, shape)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def as_finite_batch(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape`` (rows first) with finite entries, else ``ValueError``.

    A batch can hold a million rows: the error names the shapes, or the number of rows that are
    not finite and the first of them (its index and its values), never the whole batch.
    """
    array = as_array(name, value, shape)
    bad = np.flatnonzero(~np.isfinite(array.reshape(shape[0], -1)).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} must be finite: {len(bad)} of {shape[0]} rows are not, the first is row {bad[0]}: "
                         f"{array[bad[0]].tolist()}")
    return array


def check_options(options: dict[str, Any] | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``options`` as a dict, refusing unknown keys."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"options has unknown keys {sorted(unknown)}; allowed: {list(allowed)}")
    return options
