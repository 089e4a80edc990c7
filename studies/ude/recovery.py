r"""Symbolic recovery: the trained :math:`\hat U` turned into equations by sparse regression over a polynomial
library (SINDy's sequentially thresholded least squares), and the recovered equations solved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffenvs.core.problem import check_integer, check_positive
from diffenvs.core.rollout import Adaptive
from diffenvs.derivatives import solve
from studies.ude.problem import TRUE_PARAMETERS

__all__ = ["SparseModel", "sparse_regression", "simulate_sparse"]


@dataclass(frozen=True)
class SparseModel:
    """Coefficients ``(outputs, features)`` over the polynomial library's ``features`` (names in ``u1``, ``u2``)."""

    features: tuple[str, ...]
    coefficients: np.ndarray
    degree: int

    def terms(self) -> list[dict[str, float]]:
        """The non-zero terms of each output, name to coefficient."""
        return [{f: float(c) for f, c in zip(self.features, row) if c != 0} for row in self.coefficients]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The library evaluated at states ``(..., 2)`` times the coefficients: ``(..., outputs)``."""
        library = _polynomial_library(x, self.degree)
        return library @ torch.as_tensor(self.coefficients, dtype=x.dtype).T


def _polynomial_library(x: torch.Tensor, degree: int) -> torch.Tensor:
    columns = [x[..., 0] ** (d - j) * x[..., 1] ** j for d in range(degree + 1) for j in range(d + 1)]
    return torch.stack(columns, -1)


def _feature_names(degree: int) -> tuple[str, ...]:
    names = []
    for d in range(degree + 1):
        for j in range(d + 1):
            parts = [f"u1^{d - j}" if d - j > 1 else "u1" if d - j == 1 else "", f"u2^{j}" if j > 1 else "u2" if j == 1 else ""]
            names.append(" ".join(p for p in parts if p) or "1")
    return tuple(names)


def sparse_regression(states: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, degree: int = 2,
                      threshold: float = 0.1, alpha: float = 1e-5) -> SparseModel:
    r"""Sequentially thresholded least squares (SINDy's STLSQ, by pysindy) of ``targets`` ``(n, outputs)`` on the
    polynomials of ``states`` ``(n, 2)`` up to ``degree``: coefficients below ``threshold`` in magnitude are cut and
    the rest refitted, until nothing changes. Features are not normalised, so ``threshold`` is in the targets' units
    per unit of the monomial."""
    try:
        import pysindy
    except ImportError as error:
        raise ImportError('the sparse regression needs the optional extra \'ude\' (pysindy): pip install "diffenvs[ude]"') \
            from error
    states = np.asarray(states, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] != 2:
        raise ValueError(f"states must have shape (n, 2), got {states.shape}")
    if targets.ndim != 2 or targets.shape[0] != states.shape[0]:
        raise ValueError(f"targets must have shape ({states.shape[0]}, outputs), got {targets.shape}")
    check_integer("degree", degree)
    check_positive("threshold", threshold)
    library = _polynomial_library(torch.from_numpy(states), degree).numpy()
    optimiser = pysindy.STLSQ(threshold=threshold, alpha=alpha, normalize_columns=False, max_iter=50)
    optimiser.fit(library, targets)
    return SparseModel(_feature_names(degree), np.array(optimiser.coef_, dtype=np.float64), degree)


def simulate_sparse(model: SparseModel, u0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    r"""States ``(len(times), 2)`` of :math:`\dot u = (\alpha u_1, -\delta u_2) + \text{model}(u)` (dopri5, rtol 1e-8)."""
    alpha, _, _, delta = TRUE_PARAMETERS
    field = lambda t, x, theta: torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1) + model(x)
    return solve(field, u0.reshape(1, 2), times, solver=Adaptive("dopri5", rtol=1e-8, atol=1e-10))[:, 0]
