"""The gradient path refuses bad input by name, and clips controls as ``env.step`` does."""

from __future__ import annotations

import math

import pytest

import diffenvs


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1e-6, 0.0, True], ids=["inf", "nan", "negative", "zero", "bool"])
def test_tolerances_must_be_finite_positive_numbers(name: str, value: float) -> None:
    for solver in (diffenvs.Adaptive, diffenvs.Adjoint):
        with pytest.raises(ValueError, match=f"{name} must be a positive number, finite, got {value!r}"):
            solver(**{name: value})
