r"""Aggregate statistics over seeds, as Agarwal et al. (2021) advise, through the maintained ``rliable``.

* The interquartile mean (IQM) of :math:`n` values is the mean of the middle half: the 25%
  trimmed mean of ``scipy.stats.trim_mean`` (``rliable.metrics.aggregate_iqm``), which drops
  :math:`\lfloor n/4 \rfloor` values at each end. It is robust to one diverged seed and
  less noisy than the median.
* Its 95% confidence interval is the percentile interval of a stratified bootstrap
  (``rliable.library.get_interval_estimates``): runs are resampled with replacement within
  each stratum (an environment), never across.
* A performance profile (:func:`profile`) is the fraction of runs with a normalised gap
  :math:`\le \tau`, over :math:`\tau`: the fraction within each environment, averaged over the
  environments with equal weights (an environment with more seeds does not count more), with the
  bootstrap drawn independently per environment (``StratifiedIndependentBootstrap``).
* An IQM curve (:func:`iqm_curve`) is the IQM over all runs at each point of a shared grid, each
  point with its own interval (runs resampled per point, as rliable's sample-efficiency curves).
* The probability of improvement (:func:`probability_of_improvement`) is
  :math:`P(X > Y) = \frac{1}{nm}\sum_{i,j} [\mathbb{1}(x_i > y_j) + \tfrac12 \mathbb{1}(x_i = y_j)]`,
  the Mann-Whitney statistic (``rliable.metrics.probability_of_improvement``), with the two sets
  of runs resampled independently.

Every bootstrap is seeded (:data:`BOOTSTRAP_SEED`), so a report is reproducible. The IQM inside the bootstraps
(of a set of final scores and of the curves) is :func:`trimmed_iqm`, scipy's own arithmetic without the per-call
handling of its arguments (``scipy.stats.trim_mean`` called there took 226 of a report's 307 s); a test checks the
two agree bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from rliable import library, metrics

#: numbers, as a sequence or an array (flattened)
Values = Sequence[float] | np.ndarray

#: bootstrap resamples of every interval
REPS = 2_000
#: coverage of every interval
CONFIDENCE = 0.95
#: seed of every bootstrap's generator
BOOTSTRAP_SEED = 0


class Estimate(NamedTuple):
    """A point estimate and its confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float


def iqm(values: Values) -> float:
    """The interquartile mean of ``values`` (the 25% trimmed mean)."""
    return float(metrics.aggregate_iqm(_checked(values)))


def trimmed_iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray:
    r"""``scipy.stats.trim_mean(scores, 0.25, axis)`` for a float64 numpy array, by the same operations (a partition
    at the cuts :math:`\lfloor n/4 \rfloor` and :math:`n - \lfloor n/4 \rfloor - 1`, then the mean between them), so
    the same bits, without scipy's per-call checks: the bootstraps call it hundreds of thousands of times."""
    if axis is None:
        scores, axis = scores.ravel(), 0
    count = scores.shape[axis]
    cut = int(0.25 * count)
    kept = np.partition(scores, (cut, count - cut - 1), axis)
    return np.asarray(np.mean(kept.take(np.arange(cut, count - cut), axis=axis), axis=axis))


def iqm_ci(values: Values, reps: int | None = None) -> Estimate:
    """The IQM of ``values`` with its 95% bootstrap interval (``reps`` resamples, default :data:`REPS`).

    One value, or equal values: the value and a zero-width interval.
    """
    array = _checked(values)
    point = float(metrics.aggregate_iqm(array))
    if array.size == 1 or np.all(array == array[0]):
        return Estimate(point, point, point)
    low, high = _interval(array[:, None], lambda scores: np.array([trimmed_iqm(scores)]), reps)[:, 0]
    return Estimate(point, float(low), float(high))


def profile(gaps_per_env: Sequence[Values], taus: Values, reps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The performance profile :math:`P(\tau) = \frac{1}{E}\sum_e \frac{1}{n_e}\#\{i: g_{e,i} \le \tau\}`: the
    fraction of runs with gap :math:`\le \tau` in each environment, averaged with equal weights over the :math:`E`
    environments.

    ``gaps_per_env``: one sequence of final normalised gaps per environment. Returns
    ``(profile, interval)``: ``(len(taus),)`` and ``(2, len(taus))``, the 95% interval of a
    bootstrap stratified by environment.
    """
    strata = [_checked(gaps) for gaps in gaps_per_env]
    if not strata:
        raise ValueError("gaps_per_env must hold at least one environment's gaps")
    thresholds = np.asarray(taus, dtype=np.float64)

    def fraction(*resampled: np.ndarray) -> np.ndarray:
        return np.mean([(gaps[:, None] <= thresholds[None, :]).mean(axis=0) for gaps in resampled], axis=0)

    point = fraction(*strata)
    if all(s.size == 1 for s in strata):
        return point, np.stack([point, point])
    return point, _interval(list(strata), fraction, reps)


def iqm_curve(values: np.ndarray, reps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The IQM over runs at each point of a curve, and its 95% bootstrap interval.

    ``values``: ``(runs, points)``, finite. Returns ``(iqm, interval)`` of shapes ``(points,)`` and
    ``(2, points)``; runs are resampled independently at each point. One run: a zero-width band.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"values must be a non-empty (runs, points) array, got shape {array.shape}")
    _checked(array)

    def per_point(scores: np.ndarray) -> np.ndarray:
        return trimmed_iqm(scores, axis=0)

    point = per_point(array)
    if array.shape[0] == 1:
        return point, np.stack([point, point])
    return point, _interval(array, per_point, reps)


def probability_of_improvement(x: Values, y: Values, reps: int | None = None) -> Estimate:
    """:math:`P(X > Y)` of one score of ``x`` over one of ``y`` (higher is better; pass ``-gap`` for gaps), with its
    95% interval from resampling each set independently. One run on each side: a zero-width interval."""
    xs, ys = _checked(x)[:, None], _checked(y)[:, None]

    def probability(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(a, b)])

    point = float(probability(xs, ys)[0])
    if xs.shape[0] == 1 and ys.shape[0] == 1:
        return Estimate(point, point, point)
    low, high = _interval([xs, ys], probability, reps)[:, 0]
    return Estimate(point, float(low), float(high))


def _interval(scores: np.ndarray | list[np.ndarray], function: Callable[..., np.ndarray], reps: int | None
              ) -> np.ndarray:
    """rliable's stratified bootstrap interval ``(2, ...)`` of ``function`` on ``scores``, seeded.

    rliable 1.2 draws its resampling indices from numpy's global generator whatever ``random_state``
    says, so the global generator is seeded here and restored afterwards: the same scores always give
    the same interval, and the caller's random stream is left as it was.
    """
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():  # arch warns that it will prefer numpy Generators to the RandomState passed
            warnings.simplefilter("ignore", FutureWarning)
            _, intervals = library.get_interval_estimates(
                {"runs": scores}, function, reps=reps or REPS, confidence_interval_size=CONFIDENCE,
                random_state=np.random.RandomState(BOOTSTRAP_SEED))
    finally:
        np.random.set_state(state)
    return np.asarray(intervals["runs"])


def _checked(values: Values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError("values must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"values must be finite, got {array.tolist()}")
    return array
