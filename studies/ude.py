r"""A universal differential equation for Lotka--Volterra: training recipe, regulariser sweep, symbolic recovery.

The data (the forum post's problem) come from

.. math:: \dot u_1 = \alpha u_1 - \beta u_1 u_2, \qquad \dot u_2 = \gamma u_1 u_2 - \delta u_2,
          \qquad (\alpha, \beta, \gamma, \delta) = (1.3, 0.9, 0.8, 1.8),

saved every 0.25 on :math:`t \in [0, 5]` with noise of 0.5% of each component's mean. The model
knows :math:`\alpha u_1` and :math:`-\delta u_2` and learns the rest with a 2-5-5-5-2 network
:math:`\hat U` (activations :math:`e^{-x^2}`):
:math:`\dot u = (\alpha u_1, -\delta u_2) + \hat U(u)`. The loss of a weight vector :math:`w` is

.. math:: L(w) = \operatorname{mean}_k\,(X_k - \hat X_k(w))^2
          + \lambda \sum_{x \in \{0, 0.1, \dots, 10\}} \big\|\partial \hat U/\partial u\,(x, 1)\big\|_F^2 .

As in Rackauckas et al., *Universal Differential Equations for Scientific Machine Learning*
(2020), training is Adam then L-BFGS on the solver's output, and the trained :math:`\hat U` is
then turned into equations by sparse regression over a polynomial library (SINDy). The misfit is
taken by multiple shooting: solves of a few intervals, each from a data point (Adam: one interval,
then four; L-BFGS: two). On this orbit one solve over all of :math:`[0, 5]` (single shooting) is
the harder landscape: L-BFGS from Adam's weights stalled there at a misfit 2--15 times the noise.

Here several values of :math:`\lambda` train at once as an *ensemble*: every weight carries a
leading dimension, one member per :math:`\lambda`, the network and its input Jacobian are
batched matrix products (the Jacobian by forward-mode tangent propagation, so the gradient of
the regulariser is forward-over-reverse, equal to :func:`diffenvs.derivatives.input_jacobian`),
and the RK4 solve steps all members together. The loss is the sum of the members' losses, so
Adam (elementwise) trains each member exactly as if alone; L-BFGS, which is not elementwise,
then runs member by member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from diffenvs.core.problem import check_integer, check_positive
from diffenvs.core.rollout import Adaptive
from diffenvs.derivatives import input_jacobian, solve

__all__ = [
    "TRUE_PARAMETERS", "lotka_volterra", "make_data", "true_trajectory", "Rbf", "make_network", "regulariser_points",
    "regulariser", "true_regulariser", "missing_terms", "Ensemble", "RecipeConfig", "fit", "evaluate", "sweep",
    "choose", "holdout_mask", "relative_rms", "SparseModel", "sparse_regression", "simulate_sparse",
]

TRUE_PARAMETERS = (1.3, 0.9, 0.8, 1.8)  # α, β, γ, δ
SAVE_EVERY = 0.25
NOISE = 5e-3


# ---- the problem -----------------------------------------------------------------------------
def lotka_volterra(t: torch.Tensor, x: torch.Tensor, theta: Any = None) -> torch.Tensor:
    """The true vector field, batched over leading dimensions of ``x``."""
    alpha, beta, gamma, delta = TRUE_PARAMETERS
    u1, u2 = x[..., 0], x[..., 1]
    return torch.stack([alpha * u1 - beta * u1 * u2, gamma * u1 * u2 - delta * u2], -1)


def true_trajectory(u0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The noise-free states ``(len(times), 2)`` from ``u0`` ``(2,)``: dopri5 at rtol 1e-10."""
    return solve(lotka_volterra, u0.reshape(1, 2), times, solver=Adaptive("dopri5", rtol=1e-10, atol=1e-12))[:, 0]


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Times ``(21,)`` (every 0.25 on ``[0, 5]``), noise-free states ``(21, 2)`` (:func:`true_trajectory`), noisy data
    ``(21, 2)``: the post's recipe, seeded. The start state is ``5 * rand(2)``, the noise ``5e-3 * mean(X) * randn``."""
    generator = torch.Generator().manual_seed(seed)
    u0 = 5.0 * torch.rand(1, 2, generator=generator, dtype=torch.float64)
    times = torch.arange(21, dtype=torch.float64) * SAVE_EVERY
    clean = true_trajectory(u0[0], times)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return times, clean, clean + NOISE * clean.mean(0) * noise


class Rbf(torch.nn.Module):
    """The post's activation, :math:`e^{-x^2}`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


def make_network(seed: int) -> torch.nn.Sequential:
    """2-5-5-5-2 with :math:`e^{-x^2}` activations, Glorot-uniform weights and zero biases (Lux's defaults)."""
    torch.manual_seed(seed)
    network = torch.nn.Sequential(torch.nn.Linear(2, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(),
                                  torch.nn.Linear(5, 2)).double()
    for layer in network:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return network


def regulariser_points() -> torch.Tensor:
    """The post's grid: first input 0, 0.1, ..., 10, second input 1.0; shape ``(101, 2)``."""
    x = torch.arange(101, dtype=torch.float64) / 10
    return torch.stack([x, torch.ones_like(x)], -1)


def regulariser(network: torch.nn.Module, weights: dict[str, torch.Tensor], points: torch.Tensor, mode: str,
                input_step: float = 1e-4) -> torch.Tensor:
    r""":math:`\sum_i \|\partial U/\partial u\,(x_i)\|_F^2` by ``mode``.

    ``"forward"``/``"reverse"``: exact, :func:`diffenvs.derivatives.input_jacobian`;
    ``"loop"``: exact, one ``torch.autograd.grad(create_graph=True)`` per point and output (as
    the post's ``map``); ``"differences"``: central differences in each input, step ``input_step``.
    """
    if mode in ("forward", "reverse"):
        return input_jacobian(network, points, params=weights, mode=mode).square().sum()
    call = lambda x: torch.func.functional_call(network, weights, (x,))
    if mode == "loop":
        total = points.new_zeros(())
        for point in points:
            x = point.detach().clone().requires_grad_(True)
            out = call(x[None])[0]
            for i in range(out.shape[0]):
                (row,) = torch.autograd.grad(out[i], x, create_graph=True)
                total = total + row.square().sum()
        return total
    if mode != "differences":
        raise ValueError(f"mode must be one of ('forward', 'reverse', 'loop', 'differences'), got {mode!r}")
    eye = torch.eye(points.shape[1], dtype=points.dtype)
    columns = [(call(points + input_step * e) - call(points - input_step * e)) / (2 * input_step) for e in eye]
    return torch.stack(columns, -1).square().sum()


def true_regulariser(points: torch.Tensor) -> float:
    r"""The regulariser of the true missing terms, whose Jacobian is
    :math:`[[-\beta u_2, -\beta u_1], [\gamma u_2, \gamma u_1]]`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    u1, u2 = points[:, 0], points[:, 1]
    return float(((beta**2 + gamma**2) * (u1 * u1 + u2 * u2)).sum())


def missing_terms(states: torch.Tensor) -> torch.Tensor:
    r"""The terms the network stands for: :math:`(-\beta u_1 u_2, \gamma u_1 u_2)`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    product = states[..., 0] * states[..., 1]
    return torch.stack([-beta * product, gamma * product], -1)


# ---- the ensemble of hybrid models -----------------------------------------------------------
class Ensemble:
    """``members`` copies of the hybrid model, one weight set each, stepped together.

    ``weights`` is a list of ``(W, b)`` per layer with shapes ``(members, out, in)`` and ``(members, out)``.
    """

    def __init__(self, weights: list[tuple[torch.Tensor, torch.Tensor]]):
        self.weights = weights

    @classmethod
    def from_network(cls, network: torch.nn.Module, members: int) -> Ensemble:
        """Every member starts from ``network``'s weights (leaves with ``requires_grad``)."""
        if not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        layers = [m for m in network if isinstance(m, torch.nn.Linear)]
        weights = [(layer.weight.detach().expand(members, -1, -1).clone().requires_grad_(True),
                    layer.bias.detach().expand(members, -1).clone().requires_grad_(True)) for layer in layers]
        return cls(weights)

    @property
    def members(self) -> int:
        return self.weights[0][0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in self.weights for t in pair]

    def member(self, index: int) -> Ensemble:
        """Member ``index`` alone, as a one-member ensemble sharing no storage (fresh leaves)."""
        return Ensemble([(w[index:index + 1].detach().clone().requires_grad_(True),
                          b[index:index + 1].detach().clone().requires_grad_(True)) for w, b in self.weights])

    def network(self, x: torch.Tensor, jacobian: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        r""":math:`\hat U(x)` for ``x`` of shape ``(members, batch, 2)``, and its input Jacobian
        ``(members, batch, 2, 2)`` by forward-mode tangents if ``jacobian``."""
        h, tangent = x, None
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            z = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
            if jacobian:
                tangent = w[:, None].expand(-1, x.shape[1], -1, -1) if tangent is None else w[:, None] @ tangent
            if i < last:
                h = torch.exp(-z * z)
                if jacobian:
                    tangent = (-2 * z * h)[..., None] * tangent
            else:
                h = z
        return h, tangent

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """The hybrid vector field for states ``(members, batch, 2)``."""
        alpha, _, _, delta = TRUE_PARAMETERS
        learned, _ = self.network(x)
        return torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1) + learned

    def solve(self, u0: torch.Tensor, count: int, dt: float = SAVE_EVERY, steps: int = 2) -> torch.Tensor:
        """States at ``0, dt, ..., (count-1) dt`` from ``u0`` (``(2,)``, or ``(batch, 2)``) by RK4 with ``steps``
        steps per ``dt``; shape ``(count, members, batch, 2)`` (``batch`` 1 for a single start)."""
        x = u0.reshape(1, -1, 2).expand(self.members, -1, -1)
        h = dt / steps
        states = [x]
        for _ in range(count - 1):
            for _ in range(steps):
                k1 = self.field(x)
                k2 = self.field(x + 0.5 * h * k1)
                k3 = self.field(x + 0.5 * h * k2)
                k4 = self.field(x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            states.append(x)
        return torch.stack(states)

    def regulariser(self, points: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \|\partial \hat U/\partial u\,(x_i)\|_F^2` per member, shape ``(members,)``."""
        _, jac = self.network(points.expand(self.members, -1, -1), jacobian=True)
        return jac.square().sum((1, 2, 3))

    def losses(self, data: torch.Tensor, steps: int, points: torch.Tensor, horizon: int | None = None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(misfit, regulariser) per member. The misfit is the mean square error on the points of ``data`` that
        ``mask`` keeps (default all) of one solve from ``data[0]`` (single shooting, ``horizon`` None), or of solves
        of ``horizon`` intervals from every kept point (multiple shooting: each segment starts on the data)."""
        if mask is None:
            mask = torch.ones(len(data), dtype=torch.bool)
        if horizon is None:
            prediction = self.solve(data[0], len(data), steps=steps)[:, :, 0]
            return (prediction - data[:, None]).square().mean(2)[mask].mean(0), self.regulariser(points)
        horizon = min(horizon, len(data) - 1)
        targets = data.unfold(0, horizon + 1, 1).permute(2, 0, 1)  # (horizon + 1, segments, 2)
        kept = mask.unfold(0, horizon + 1, 1).T  # (horizon + 1, segments)
        starts = kept[0]
        targets, counted = targets[:, starts], kept[1:, starts].to(data.dtype)
        prediction = self.solve(targets[0], horizon + 1, steps=steps)  # (horizon + 1, members, segments, 2)
        square = (prediction[1:] - targets[1:, None]).square().mean(3)  # (horizon, members, segments)
        misfit = (square * counted[:, None]).sum((0, 2)) / counted.sum()
        return misfit, self.regulariser(points)


# ---- the recipe ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecipeConfig:
    """How each model is trained."""

    adam_iterations: int = 1000
    """Adam iterations (all members at once)."""
    lr: float = 0.02
    """Adam's first learning rate."""
    lr_final: float = 0.002
    """Adam's last learning rate: the rate decays geometrically from ``lr`` to this over the iterations."""
    lbfgs_iterations: int = 300
    """L-BFGS iterations (strong Wolfe line search) after Adam, member by member."""
    horizons: tuple[int, ...] = (1, 4)
    """Multiple shooting for Adam: its iterations are split equally over fits of segments of these many intervals,
    each segment starting on a data point."""
    lbfgs_horizon: int | None = 2
    """Segments of L-BFGS's misfit, in intervals (multiple shooting), or None: one solve from the first point. Two
    intervals bridge a held-out point: with one, the interval into and the interval out of it are fitted by nothing."""
    steps: int = 2
    """RK4 steps per 0.25 between saved times."""

    def __post_init__(self) -> None:
        check_integer("adam_iterations", self.adam_iterations, least=0)
        check_integer("lbfgs_iterations", self.lbfgs_iterations, least=0)
        check_integer("steps", self.steps)
        check_positive("lr", self.lr)
        check_positive("lr_final", self.lr_final)
        if self.lbfgs_horizon is not None:
            check_integer("lbfgs_horizon", self.lbfgs_horizon)
        if not self.horizons or any(not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be a non-empty tuple of positive integers, got {self.horizons!r}")


def _check_lambdas(lambdas: Sequence[float]) -> torch.Tensor:
    if len(lambdas) == 0 or any(not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) for v in lambdas):
        raise ValueError(f"lambdas must be a non-empty sequence of finite non-negative numbers, got {lambdas!r}")
    return torch.tensor([float(v) for v in lambdas], dtype=torch.float64)


def _lbfgs(member: Ensemble, losses: Any, weight: float, iterations: int, history: list[dict[str, Any]],
           index: int) -> None:
    """L-BFGS (strong Wolfe) on one member in place; a run that ends on non-finite weights is undone."""
    if iterations == 0:
        return
    optimiser = torch.optim.LBFGS(member.parameters(), lr=1, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        misfit, reg = losses(member)
        loss = misfit[0] + weight * reg[0]
        if torch.isfinite(loss):
            loss.backward()
        history.append({"phase": "lbfgs", "member": index, "misfit": misfit.item(), "regulariser": reg.item()})
        return loss

    before = [p.detach().clone() for p in member.parameters()]
    optimiser.step(closure)
    if not all(torch.isfinite(p).all() for p in member.parameters()):
        with torch.no_grad():
            for p, q in zip(member.parameters(), before):
                p.copy_(q)


def fit(data: torch.Tensor, lambdas: Sequence[float], seed: int, config: RecipeConfig,
        mask: torch.Tensor | None = None, desc: str = "training") -> tuple[Ensemble, list[dict[str, Any]]]:
    """Train one member per ``λ`` in ``lambdas`` on ``data`` (noisy states every 0.25 from t = 0), all from the same
    initial network (seed ``seed``): Adam (decaying rate) on multiple shooting, then L-BFGS (on ``lbfgs_horizon``).

    Returns the ensemble and its history: one record per iteration with the phase and each member's misfit and
    regulariser (L-BFGS records are per member). ``mask`` (bool, one per time) keeps the points the misfit counts.
    """
    weight = _check_lambdas(lambdas)
    ensemble = Ensemble.from_network(make_network(seed), len(weight))
    points = regulariser_points()
    history: list[dict[str, Any]] = []
    optimiser = torch.optim.Adam(ensemble.parameters(), lr=config.lr)
    per_stage = [config.adam_iterations // len(config.horizons)] * len(config.horizons)
    per_stage[-1] += config.adam_iterations - sum(per_stage)
    bar = tqdm(total=config.adam_iterations + config.lbfgs_iterations * len(weight), desc=desc, leave=False)
    decay = (config.lr_final / config.lr) ** (1 / max(1, config.adam_iterations - 1))
    for horizon, iterations in zip(config.horizons, per_stage):
        for _ in range(iterations):
            misfit, reg = ensemble.losses(data, config.steps, points, horizon, mask)
            loss = (misfit + weight * reg).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for group in optimiser.param_groups:
                group["lr"] *= decay
            history.append({"phase": "adam", "horizon": horizon, "misfit": misfit.tolist(), "regulariser": reg.tolist()})
            bar.update()
    trained = []
    for index in range(len(weight)):
        member = ensemble.member(index)
        _lbfgs(member, lambda m: m.losses(data, config.steps, points, config.lbfgs_horizon, mask),
               float(weight[index]), config.lbfgs_iterations, history, index)
        bar.update(config.lbfgs_iterations)
        trained.append(member)
    bar.close()
    stacked = Ensemble([(torch.cat([m.weights[k][0] for m in trained]).detach(),
                         torch.cat([m.weights[k][1] for m in trained]).detach()) for k in range(len(trained[0].weights))])
    return stacked, history


def relative_rms(estimate: torch.Tensor, truth: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """RMS of ``estimate - truth`` over ``dims`` divided by the RMS of ``truth`` over them."""
    return (estimate - truth).square().mean(dims).sqrt() / truth.square().mean(dims).sqrt()


def holdout_mask(count: int, every: int = 5) -> torch.Tensor:
    """Training points of ``count`` times: all but every ``every``-th (indices ``every - 1``, ``2 every - 1``, ...);
    the first point, the start of every solve, is always kept."""
    check_integer("every", every, least=2)
    mask = torch.ones(count, dtype=torch.bool)
    mask[every - 1::every] = False
    return mask


@torch.no_grad()
def evaluate(ensemble: Ensemble, data: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor,
             steps: int) -> dict[str, list[float]]:
    """Per member: RMS misfit of one solve from ``data[0]`` on the training points (``mask``) and on the held-out
    ones (``~mask``, nan if none), the learned terms' relative RMS error along the true trajectory on the data's time
    range (201 points), and the relative RMS error of the solve against the noise-free states beyond the data
    (``clean[len(data):]``, nan if none)."""
    prediction = ensemble.solve(data[0], len(clean), steps=steps)[:, :, 0]  # (times, members, 2)
    square = (prediction[: len(data)] - data[:, None]).square().mean(2)  # (times, members)
    train = square[mask].mean(0).sqrt()
    validation = square[~mask].mean(0).sqrt() if (~mask).any() else torch.full_like(train, math.nan)
    dense = true_trajectory(clean[0], torch.linspace(0, SAVE_EVERY * (len(data) - 1), 201, dtype=torch.float64))
    learned, _ = ensemble.network(dense.expand(ensemble.members, -1, -1))
    truth = missing_terms(dense)[None]
    terms = relative_rms(learned, truth, (1, 2))
    per_component = relative_rms(learned, truth, (1,))
    beyond = clean[len(data):]
    extrapolation = (relative_rms(prediction[len(data):], beyond[:, None], (0, 2)) if len(beyond)
                     else torch.full_like(train, math.nan))
    return {"train_rms": train.tolist(), "validation_rms": validation.tolist(), "terms_relative_rms": terms.tolist(),
            "terms_relative_rms_u1": per_component[:, 0].tolist(), "terms_relative_rms_u2": per_component[:, 1].tolist(),
            "extrapolation_relative_rms": extrapolation.tolist()}


def sweep(data: torch.Tensor, clean: torch.Tensor, lambdas: Sequence[float], seed: int, config: RecipeConfig,
          every: int = 5) -> tuple[list[dict[str, float]], Ensemble, list[dict[str, Any]]]:
    """Train one model per ``λ`` on ``data`` without every ``every``-th point (:func:`holdout_mask`) and score each
    (:func:`evaluate`); ``clean`` are the noise-free states on the data's times and beyond.

    Returns one row per ``λ``, the ensemble, and its history.
    """
    mask = holdout_mask(len(data), every)
    ensemble, history = fit(data, lambdas, seed, config, mask, desc=f"λ sweep, {len(lambdas)} models")
    scores = evaluate(ensemble, data, clean, mask, config.steps)
    rows = [{"lambda": float(v), **{k: s[i] for k, s in scores.items()}} for i, v in enumerate(lambdas)]
    return rows, ensemble, history


def choose(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """The row of least validation error (the larger ``λ`` on a tie); rows with a non-finite error are never chosen."""
    finite = [r for r in rows if math.isfinite(r["validation_rms"])]
    if not finite:
        raise ValueError("no row has a finite validation_rms: every model diverged")
    return min(finite, key=lambda r: (r["validation_rms"], -r["lambda"]))


# ---- symbolic recovery -----------------------------------------------------------------------
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
