r"""How each hybrid model is trained and scored: Adam then L-BFGS on multiple shooting, the :math:`\lambda` sweep
with held-out points, and the choice of :math:`\lambda` by validation.

The loss is the sum of the members' losses, so Adam (elementwise) trains each member exactly as if alone; L-BFGS,
which is not elementwise, then runs member by member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

import torch
from tqdm import tqdm

from diffenvs.core.problem import check_integer, check_positive
from studies.ude.ensemble import Ensemble
from studies.ude.problem import SAVE_EVERY, make_network, missing_terms, regulariser_points, true_trajectory

__all__ = [
    "RecipeConfig", "AdamRecord", "LbfgsRecord", "HistoryRecord", "fit", "relative_rms", "holdout_mask", "evaluate",
    "sweep", "choose",
]


class AdamRecord(TypedDict):
    """One Adam iteration: every member's misfit and regulariser."""

    phase: Literal["adam"]
    horizon: int
    misfit: list[float]
    regulariser: list[float]


class LbfgsRecord(TypedDict):
    """One loss evaluation of L-BFGS on one member."""

    phase: Literal["lbfgs"]
    member: int
    misfit: float
    regulariser: float


HistoryRecord = AdamRecord | LbfgsRecord
Losses = Callable[[Ensemble], tuple[torch.Tensor, torch.Tensor]]
"""(misfit, regulariser) per member of an ensemble."""


@dataclass(frozen=True)
class RecipeConfig:
    """How each model is trained."""

    adam_iterations: int = 1000
    """Adam iterations (all members at once)."""
    lr: float = 0.02
    """Adam's first learning rate."""
    lr_final: float = 0.002
    """Adam's last learning rate: the rate decays geometrically from lr to this over the iterations."""
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


def _adam(ensemble: Ensemble, losses: Callable[[int], tuple[torch.Tensor, torch.Tensor]], weight: torch.Tensor,
          config: RecipeConfig, history: list[HistoryRecord], bar: tqdm) -> None:
    """Adam on all members at once, its rate decaying geometrically, over the stages of ``config.horizons``;
    ``losses(horizon)`` gives every member's (misfit, regulariser)."""
    optimiser = torch.optim.Adam(ensemble.parameters(), lr=config.lr)
    per_stage = [config.adam_iterations // len(config.horizons)] * len(config.horizons)
    per_stage[-1] += config.adam_iterations - sum(per_stage)
    decay = (config.lr_final / config.lr) ** (1 / max(1, config.adam_iterations - 1))
    for horizon, iterations in zip(config.horizons, per_stage):
        for _ in range(iterations):
            misfit, reg = losses(horizon)
            loss = (misfit + weight * reg).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for group in optimiser.param_groups:
                group["lr"] *= decay
            history.append({"phase": "adam", "horizon": horizon, "misfit": misfit.tolist(), "regulariser": reg.tolist()})
            bar.update()


def _lbfgs(member: Ensemble, losses: Losses, weight: float, iterations: int, history: list[HistoryRecord],
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
        mask: torch.Tensor | None = None, desc: str = "training") -> tuple[Ensemble, list[HistoryRecord]]:
    """Train one member per ``λ`` in ``lambdas`` on ``data`` (noisy states every 0.25 from t = 0), all from the same
    initial network (seed ``seed``): Adam (decaying rate) on multiple shooting, then L-BFGS (on ``lbfgs_horizon``).

    Returns the ensemble and its history: one record per iteration with the phase and each member's misfit and
    regulariser (L-BFGS records are per member). ``mask`` (bool, one per time) keeps the points the misfit counts.
    """
    weight = _check_lambdas(lambdas)
    ensemble = Ensemble.from_network(make_network(seed), len(weight))
    points = regulariser_points()
    history: list[HistoryRecord] = []
    bar = tqdm(total=config.adam_iterations + config.lbfgs_iterations * len(weight), desc=desc, leave=False)
    _adam(ensemble, lambda horizon: ensemble.losses(data, config.steps, points, horizon, mask), weight, config, history,
          bar)
    trained = []
    for index in range(len(weight)):
        member = ensemble.member(index)
        _lbfgs(member, lambda m: m.losses(data, config.steps, points, config.lbfgs_horizon, mask),
               float(weight[index]), config.lbfgs_iterations, history, index)
        bar.update(config.lbfgs_iterations)
        trained.append(member)
    bar.close()
    return Ensemble.stack(trained), history


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
          every: int = 5) -> tuple[list[dict[str, float]], Ensemble, list[HistoryRecord]]:
    """Train one model per ``λ`` on ``data`` without every ``every``-th point (:func:`holdout_mask`) and score each
    (:func:`evaluate`); ``clean`` are the noise-free states on the data's times and beyond.

    Returns one row per ``λ`` (``"lambda"`` and the scores of :func:`evaluate`), the ensemble, and its history.
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
