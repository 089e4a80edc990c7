r"""Aggregate statistics over seeds, as Agarwal et al. (2021) advise, through the maintained ``rliable``.

* The interquartile mean (IQM) of :math:`n` values is the mean of the middle half: the 25%
  trimmed mean of ``scipy.stats.trim_mean`` (``rliable.metrics.aggregate_iqm``), which drops
  :math:`\lfloor n/4 \rfloor` values at each end. It is robust to one diverged seed and
  less noisy than the median.
* Its 95% confidence interval is the percentile interval of a stratified bootstrap
  (``rliable.library.get_interval_estimates``): runs are resampled with replacement within
  each stratum (an environment), never across.
* A performance profile (:func:`profile`) is the fraction of runs with a normalised gap
  :math:`\le \tau`, over :math:`\tau`, pooled across environments, with the same bootstrap
  drawn independently per environment (``StratifiedIndependentBootstrap``: environments may
  have different numbers of seeds).

Every bootstrap is seeded (:data:`BOOTSTRAP_SEED`), so a report is reproducible.
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


def iqm_ci(values: Values, reps: int | None = None) -> Estimate:
    """The IQM of ``values`` with its 95% bootstrap interval (``reps`` resamples, default :data:`REPS`).

    One value, or equal values: the value and a zero-width interval.
    """
    array = _checked(values)
    point = float(metrics.aggregate_iqm(array))
    if array.size == 1 or np.all(array == array[0]):
        return Estimate(point, point, point)
    low, high = _interval(array[:, None], lambda scores: np.array([metrics.aggregate_iqm(scores)]), reps)[:, 0]
    return Estimate(point, float(low), float(high))


def profile(gaps_per_env: Sequence[Values], taus: Values, reps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The performance profile :math:`P(\tau)` = fraction of runs (all environments pooled) with gap :math:`\le \tau`.

    ``gaps_per_env``: one sequence of final normalised gaps per environment. Returns
    ``(profile, interval)``: ``(len(taus),)`` and ``(2, len(taus))``, the 95% interval of a
    bootstrap stratified by environment.
    """
    strata = [_checked(gaps) for gaps in gaps_per_env]
    if not strata:
        raise ValueError("gaps_per_env must hold at least one environment's gaps")
    thresholds = np.asarray(taus, dtype=np.float64)

    def fraction(*resampled: np.ndarray) -> np.ndarray:
        pooled = np.concatenate(resampled)
        return (pooled[:, None] <= thresholds[None, :]).mean(axis=0)

    point = fraction(*strata)
    if all(s.size == 1 for s in strata):
        return point, np.stack([point, point])
    return point, _interval(list(strata), fraction, reps)


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
