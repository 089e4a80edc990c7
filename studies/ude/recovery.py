r"""Symbolic recovery: the trained :math:`\hat U` turned into equations over a polynomial library, and the recovered
equations solved.

:func:`select_equations` is the recipe: for each component and each number of terms :math:`k`, the support of
:math:`k` library terms whose least-squares fit to :math:`\hat U` along the model's trajectory leaves the least
residual (all supports are tried); every pair of such supports, one per component, is then fitted to the data (its
coefficients and the start state, by least squares of its solve) and the pair of least extended BIC (Chen and Chen,
*Extended Bayesian information criteria for model selection with large model spaces*, Biometrika 2008),
:math:`n \ln(\mathrm{RSS}/n) + p \ln n + 2 \sum_c \ln \binom{F}{k_c}` over the :math:`n` data values with
:math:`p` fitted numbers and :math:`k_c` of the library's :math:`F` terms in component :math:`c`, is the recovered
model. The last term counts the supports each candidate was chosen from: plain BIC, which counts one model per size,
let a term fitted to the noise through on 3 seeds in 10.
The candidates come from the network; the choice among them is made on the data, whose noise is
independent from point to point (the network's error is not: it is smooth along the orbit, so extra terms fitted to
it always lower the residual to :math:`\hat U`, and a threshold or criterion on that residual keeps them).

:func:`sparse_regression` (SINDy's sequentially thresholded least squares, by pysindy) is the earlier recipe, kept for
comparison: its threshold acts on unscaled coefficients, and on an orbit near the equilibrium, which is close to an
ellipse (a curve on which a polynomial of degree 2 vanishes), the library's columns are nearly dependent and the
threshold keeps the wrong terms.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from diffenvs.core.problem import check_integer, check_positive
from diffenvs.core.rollout import Adaptive
from diffenvs.derivatives import solve
from studies.ude.problem import SAVE_EVERY, TRUE_PARAMETERS

__all__ = ["SparseModel", "sparse_regression", "simulate_sparse", "best_supports", "fit_to_data", "Candidate",
           "select_equations"]


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
    states, targets = _check_pair(states, targets)
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


def _check_pair(states: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    states = np.asarray(states, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] != 2:
        raise ValueError(f"states must have shape (n, 2), got {states.shape}")
    if targets.ndim != 2 or targets.shape[0] != states.shape[0]:
        raise ValueError(f"targets must have shape ({states.shape[0]}, outputs), got {targets.shape}")
    return states, targets


def best_supports(states: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, degree: int = 2,
                  max_terms: int | None = None) -> list[list[np.ndarray]]:
    """For each output of ``targets`` ``(n, outputs)`` and each ``k`` from 1 to ``max_terms`` (default: the library's
    size), the coefficients ``(features,)`` of the least-squares fit on the support of ``k`` polynomials of ``states``
    that leaves the least residual, found by trying every support (the columns scaled to unit RMS first, for the
    conditioning of each solve; the residual of a support does not depend on the scaling)."""
    states, targets = _check_pair(states, targets)
    check_integer("degree", degree)
    library = _polynomial_library(torch.from_numpy(states), degree).numpy()
    features = library.shape[1]
    if max_terms is None:
        max_terms = features
    check_integer("max_terms", max_terms)
    if max_terms > features:
        raise ValueError(f"max_terms must be at most the library's {features} terms, got {max_terms}")
    scale = np.sqrt(np.mean(library * library, axis=0))
    scaled = library / np.where(scale > 0, scale, 1.0)
    found: list[list[np.ndarray]] = []
    for y in targets.T:
        per_size = []
        for k in range(1, max_terms + 1):
            best, best_residual = np.zeros(features), math.inf
            for support in itertools.combinations(range(features), k):
                columns = scaled[:, support]
                solution, *_ = np.linalg.lstsq(columns, y, rcond=None)
                residual = float(np.sum((columns @ solution - y) ** 2))
                if residual < best_residual:
                    best_residual = residual
                    best = np.zeros(features)
                    best[list(support)] = solution / np.where(scale[list(support)] > 0, scale[list(support)], 1.0)
            per_size.append(best)
        found.append(per_size)
    return found


def _solve(coefficients: torch.Tensor, start: torch.Tensor, degree: int, count: int, dt: float,
           steps: int) -> torch.Tensor:
    r"""States ``(count, ..., 2)`` of :math:`\dot u = (\alpha u_1, -\delta u_2) + C\,\Theta(u)` from ``start``
    ``(..., 2)``, ``coefficients`` :math:`C` ``(..., 2, features)``: RK4, ``steps`` steps per ``dt``."""
    alpha, _, _, delta = TRUE_PARAMETERS

    def field(x: torch.Tensor) -> torch.Tensor:
        known = torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1)
        return known + (coefficients @ _polynomial_library(x, degree)[..., None])[..., 0]

    x, states, h = start, [start], dt / steps
    for _ in range(count - 1):
        for _ in range(steps):
            k1 = field(x)
            k2 = field(x + 0.5 * h * k1)
            k3 = field(x + 0.5 * h * k2)
            k4 = field(x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        states.append(x)
    return torch.stack(states)


def fit_to_data(models: list[SparseModel], data: torch.Tensor, dt: float = SAVE_EVERY, steps: int = 4,
                iterations: int = 100) -> tuple[list[SparseModel], torch.Tensor, torch.Tensor]:
    r"""The non-zero coefficients of each model and its start state fitted to ``data`` ``(count, 2)`` (states every
    ``dt`` from t = 0) by least squares of the solve of :math:`\dot u = (\alpha u_1, -\delta u_2) + \text{model}(u)`
    (RK4, ``steps`` steps per ``dt``), all models at once: Levenberg--Marquardt from each model's coefficients and
    ``data[0]``, its Jacobian by forward-mode differentiation, each model's step taken only where it lowers that
    model's residual, until every model's step lowers its residual by less than a part in 1e8 or is refused at
    the largest damping, or after ``iterations``.

    Returns the fitted models, their start states ``(models, 2)`` and residual sums of squares ``(models,)``; a model
    whose solve from its first coefficients is not finite comes back as it came, with the residual ``inf``."""
    check_integer("steps", steps)
    check_integer("iterations", iterations, least=0)
    if data.ndim != 2 or data.shape[1] != 2 or len(data) < 2:
        raise ValueError(f"data must have shape (count, 2) with count >= 2, got {tuple(data.shape)}")
    if not models or len({(m.degree, m.coefficients.shape) for m in models}) != 1:
        raise ValueError("models must be a non-empty list of models over the same library")
    degree, shape = models[0].degree, models[0].coefficients.shape
    size = shape[0] * shape[1]
    data = data.to(torch.float64)
    coefficients = torch.stack([torch.as_tensor(m.coefficients, dtype=torch.float64).reshape(-1) for m in models])
    free = torch.cat([coefficients != 0, torch.ones(len(models), 2, dtype=torch.bool)], 1)  # (models, parameters)
    parameters = torch.cat([coefficients, data[0].expand(len(models), 2)], 1)

    def residual(p: torch.Tensor) -> torch.Tensor:
        """Residuals ``(models, 2 count)`` of parameters ``p`` ``(models, parameters)``."""
        states = _solve(p[:, :size].reshape(-1, *shape), p[:, size:], degree, len(data), dt, steps)
        return (states - data[:, None]).permute(1, 0, 2).reshape(len(p), -1)

    def jacobian(p: torch.Tensor) -> torch.Tensor:
        """Residuals' Jacobian ``(models, 2 count, parameters)`` by forward-mode differentiation: one copy of each
        model per parameter, each carrying that parameter's tangent, solved as one batch."""
        count = p.shape[1]
        copies = p[:, None, :].expand(-1, count, -1).clone()
        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(copies, torch.eye(count, dtype=p.dtype).expand_as(copies).clone())
            states = _solve(dual[..., :size].reshape(*copies.shape[:2], *shape), dual[..., size:], degree, len(data),
                            dt, steps)
            tangent = torch.autograd.forward_ad.unpack_dual(states).tangent  # (count, models, parameters, 2)
        return tangent.permute(1, 0, 3, 2).reshape(len(p), -1, count)

    batched = residual

    def cost(r: torch.Tensor) -> torch.Tensor:
        value = r.square().sum(1)
        return torch.where(torch.isfinite(value), value, torch.full_like(value, math.inf))

    with torch.no_grad():
        r = batched(parameters)
        current = cost(r)
        alive = torch.isfinite(current)
        damping = torch.full((len(models),), 1e-3, dtype=torch.float64)
        for _ in range(iterations):
            if not alive.any():
                break
            j = torch.where((free & alive[:, None])[:, None, :], jacobian(parameters), 0.0)
            j = torch.nan_to_num(j, nan=0.0, posinf=0.0, neginf=0.0)
            normal = j.transpose(1, 2) @ j
            diagonal = torch.diagonal(normal, dim1=1, dim2=2)
            system = normal + torch.diag_embed(damping[:, None] * (diagonal + 1e-12) + (~free | ~alive[:, None]).double())
            gradient = (j.transpose(1, 2) @ torch.nan_to_num(r, nan=0.0)[..., None])[..., 0]
            step = -torch.linalg.solve(system, gradient) * free
            trial = parameters + step
            r_trial = batched(trial)
            trial_cost = cost(r_trial)
            better = alive & (trial_cost < current)
            settled = ~alive | (damping >= 1e6) | (better & (current - trial_cost <= 1e-8 * current))
            parameters = torch.where(better[:, None], trial, parameters)
            r = torch.where(better[:, None], r_trial, r)
            current = torch.where(better, trial_cost, current)
            damping = torch.where(better, damping / 3, damping * 4).clamp(1e-12, 1e12)
            if settled.all():
                break
    fitted = [SparseModel(m.features, parameters[i, :size].reshape(shape).numpy().copy(), degree)
              for i, m in enumerate(models)]
    return fitted, parameters[:, size:].clone(), current


@dataclass(frozen=True)
class Candidate:
    """One pair of supports of :func:`select_equations`, fitted to the data."""

    terms: tuple[int, int]
    """Number of terms of each component."""
    model: SparseModel
    """The coefficients fitted to the data."""
    start: tuple[float, float]
    """The start state fitted to the data."""
    rss: float
    """Residual sum of squares of its solve against the data."""
    bic: float
    """Extended Bayesian information criterion: ``n ln(rss / n) + p ln n + 2 sum_c ln binom(F, k_c)`` (``n`` data
    values, ``p`` fitted numbers, ``k_c`` of the library's ``F`` terms in component ``c``)."""


def select_equations(states: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, data: torch.Tensor,
                     degree: int = 2, max_terms: int | None = None, dt: float = SAVE_EVERY,
                     steps: int = 4) -> tuple[Candidate, list[Candidate]]:
    """The recovered model (module docstring): candidate supports from ``targets`` (the network on ``states``, see
    :func:`best_supports`), each pair fitted to ``data`` (:func:`fit_to_data`), the pair of least extended BIC chosen
    (the fewer terms on a tie).

    Returns the chosen candidate and every candidate, in order of the criterion."""
    states, targets = _check_pair(states, targets)
    if targets.shape[1] != 2:
        raise ValueError(f"targets must have shape ({states.shape[0]}, 2), got {targets.shape}")
    supports = best_supports(states, targets, degree, max_terms)
    names = _feature_names(degree)
    n = data.numel()
    pairs = list(itertools.product(enumerate(supports[0], 1), enumerate(supports[1], 1)))
    models = [SparseModel(names, np.stack([first, second]), degree) for (_, first), (_, second) in pairs]
    fitted, starts, rss = fit_to_data(models, data.to(torch.float64), dt, steps)
    candidates = []
    features = len(names)
    for ((k1, _), (k2, _)), model, start, value in zip(pairs, fitted, starts, rss.tolist()):
        penalty = (k1 + k2 + 2) * math.log(n) + 2 * (math.log(math.comb(features, k1)) + math.log(math.comb(features, k2)))
        bic = n * math.log(max(value, 1e-300) / n) + penalty if math.isfinite(value) else math.inf
        candidates.append(Candidate((k1, k2), model, (float(start[0]), float(start[1])), value, bic))
    candidates.sort(key=lambda c: (c.bic, sum(c.terms)))
    if not math.isfinite(candidates[0].bic):
        raise ValueError("no candidate's solve is finite: the network's terms do not make a usable model")
    return candidates[0], candidates
