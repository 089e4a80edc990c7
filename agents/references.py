r"""The analytic answer a run is compared with, and the generic mathematics behind the cards' answers.

Knows no environment: each card (:mod:`agents.cards`) builds its environment's
:class:`Reference` from these pieces and its own mathematics (Pontryagin's heading in the
Zermelo card, the cartpole's linearisation in the cartpole card, ...).

* :func:`lqr`: infinite-horizon LQR, the gain :math:`K = R^{-1}B^\top P` from the continuous
  algebraic Riccati equation :math:`A^\top P + PA - PBR^{-1}B^\top P + Q = 0`.
* :func:`finite_horizon_riccati`: :math:`P(t)` of the Riccati ODE
  :math:`-\dot P = A^\top P + PA - PBR^{-1}B^\top P + Q`, :math:`P(T) = 0`, whose
  :math:`s_0^\top P(0) s_0` is the optimum of the linear system with continuous control over
  :math:`T`.
* :class:`LinearFeedback`: the controller :math:`u = -Ks` on the state read from an observation.
* ``Reference.analytic`` builders: :func:`zero_optimum` (a cost whose optimum, or lower bound,
  is 0), :func:`quadratic_costs` (LQR's :math:`s_0^\top P s_0`), :func:`played_cost` (a
  reference controller's cost on the evaluation episodes themselves); and a probe,
  :func:`along_episode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.integrate
import scipy.linalg
import torch

from agents.episodes import EVAL_SEED, Episode, GymPolicy, evaluate, gym_policy
from diffenvs import problem_of
from diffenvs.core.numerics import wrap_angle
from diffenvs.core.problem import Problem

ProblemT = TypeVar("ProblemT", bound=Problem[Any])

Probe = Callable[[Episode | None], tuple[str, np.ndarray, np.ndarray]]
"""``probe(episode) -> (label, coordinates, observations)`` (see :class:`Reference`)."""

Numbers = dict[str, Any]
"""What ``Reference.analytic`` gives: at least ``"optimum"`` (a float, or ``None`` if unknown)."""

AnalyticCosts = Callable[..., Numbers]
"""``(states, seed=EVAL_SEED) -> numbers`` (see :class:`Reference`)."""


@dataclass
class Reference:
    """The analytic answer beside an environment, in the form a run is compared with.

    ``name`` names the reference agent; ``description`` says what the optimum is and how it
    is obtained; ``policy`` is the reference controller on the torch path (observations ->
    physical controls) or ``None`` where there is no closed form; ``analytic(states)`` gives
    the analytic numbers for the evaluation starts ``states`` (physical, ``(episodes, n)``),
    with at least ``"optimum"`` (the optimal cost, averaged over the starts; ``None`` if
    unknown); ``analytic(states, seed)`` plays episode ``i`` as ``reset(seed=seed + i)`` from
    ``states[i]``, which matters where noise in the episode, not only its start, is drawn
    from the seed (system identification, the decay design); ``probe(episode)`` gives
    ``(label, coordinates, observations)`` on which the learned and the reference controls are
    compared (``episode`` is the reference's own Gymnasium episode from the first start, ``None``
    without a policy); ``plane`` names two state indices drawn against each other.
    """

    name: str
    description: str
    problem: Problem[Any]
    policy: torch.nn.Module | None
    analytic: AnalyticCosts
    """``(states, seed=EVAL_SEED) -> numbers`` (see above)."""
    probe: Probe | None = None
    plane: tuple[int, int] | None = None

    @property
    def gym_policy(self) -> GymPolicy | None:
        return None if self.policy is None else gym_policy(self.policy, self.problem)


def problem_as(kind: type[ProblemT], env_id: str, env_kwargs: dict[str, Any]) -> ProblemT:
    """The problem behind ``env_id`` built with ``env_kwargs``, checked to be a ``kind`` (a card's own definition)."""
    problem = problem_of(env_id, **env_kwargs)
    if not isinstance(problem, kind):
        raise TypeError(f"env_id {env_id!r} must be a {kind.__name__} problem, got {type(problem).__name__}")
    return problem


# ---- Riccati and LQR -------------------------------------------------------------------
def lqr(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Infinite-horizon LQR: the gain :math:`K = R^{-1}B^\top P` and the Riccati solution :math:`P`."""
    p = scipy.linalg.solve_continuous_are(a, b, q, r)
    return np.linalg.solve(r, b.T @ p), p


def finite_horizon_riccati(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray, horizon: float,
                           times: np.ndarray | None = None) -> np.ndarray:
    r""":math:`P(t)` of the Riccati ODE :math:`-\dot P = A^\top P + PA - PBR^{-1}B^\top P + Q`, :math:`P(T) = 0`.

    Integrated backwards with ``scipy.integrate.solve_ivp`` (rtol 1e-10) and returned at
    ``times`` (default ``[0]``) as an array ``(len(times), n, n)``. The optimal cost of the
    linear system over :math:`[t, T]` from :math:`s` is :math:`s^\top P(t) s`.
    """
    n = a.shape[0]
    times = np.array([0.0]) if times is None else np.asarray(times, dtype=np.float64)
    r_inv = np.linalg.inv(r)

    def rhs(t: float, flat: np.ndarray) -> np.ndarray:
        p = flat.reshape(n, n)
        derivative: np.ndarray = -(a.T @ p + p @ a - p @ b @ r_inv @ b.T @ p + q)
        return derivative.ravel()

    if np.any((times < 0) | (times > horizon)):
        raise ValueError(f"times must lie in [0, horizon = {horizon}], got {times}")
    start = float(times.min())
    if start == horizon:
        return np.zeros((len(times), n, n))
    solution = scipy.integrate.solve_ivp(rhs, (horizon, start), np.zeros(n * n), method="DOP853", dense_output=True,
                                         rtol=1e-10, atol=1e-12)
    if not solution.success or solution.sol is None:
        raise RuntimeError(f"the Riccati ODE failed: {solution.message}")
    p = solution.sol(times).T.reshape(-1, n, n)
    return 0.5 * (p + p.transpose(0, 2, 1))


def wrapped(states: np.ndarray, size: int, angles: slice) -> np.ndarray:
    """States ``(k, size)`` (a copy, float64) with the columns ``angles`` wrapped to (-pi, pi]."""
    s = np.array(states, dtype=np.float64).reshape(-1, size)
    s[:, angles] = wrap_angle(s[:, angles], np)
    return s


StateReader = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
"""Observations ``(..., obs)`` -> the components of the state :math:`s` of a linear feedback (wrapped angles)."""


class LinearFeedback(torch.nn.Module):
    r"""The LQR controller :math:`u = -Ks` on the observed state, clamped to the problem's (one) control bounds.

    ``state`` maps observations ``(..., obs)`` to the components of :math:`s` (each card has its
    reader, e.g. the cartpole's :func:`agents.cards.cartpole.cartpole_state`).
    """

    gain: torch.Tensor
    read_state: StateReader

    def __init__(self, problem: Problem[Any], gain: np.ndarray, state: StateReader):
        super().__init__()
        self.problem = problem
        self.read_state = state
        self.register_buffer("gain", torch.as_tensor(np.asarray(gain, np.float64).reshape(1, -1)))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        state = torch.stack(self.read_state(observation), -1)
        force = -(state * self.gain.to(state.dtype)).sum(-1, keepdim=True)
        return force.clamp(self.problem.control_low[0], self.problem.control_high[0])


# ---- Reference.analytic and probes -------------------------------------------------------
def zero_optimum(states: np.ndarray, seed: int = EVAL_SEED) -> Numbers:
    """``Reference.analytic`` of a cost whose optimum, or lower bound, is 0 from every start and episode."""
    return {"optimum": 0.0}


def quadratic_costs(wrap: Callable[[np.ndarray], np.ndarray], p_finite: np.ndarray, p_infinite: np.ndarray,
                    gain: np.ndarray) -> AnalyticCosts:
    """``Reference.analytic`` of LQR about upright: the mean of s0' P s0 over the starts s0 = ``wrap(states)``.

    ``optimum`` uses P(0) of the finite-horizon Riccati ODE over T (the linear system's optimum with continuous
    control), ``infinite_horizon_lqr`` the algebraic Riccati solution; ``lqr_gain`` is the feedback K of u = -K s.
    """

    def costs(states: np.ndarray, seed: int = EVAL_SEED) -> Numbers:
        s = wrap(states)
        return {"optimum": float(np.mean(np.einsum("bi,ij,bj->b", s, p_finite, s))),
                "infinite_horizon_lqr": float(np.mean(np.einsum("bi,ij,bj->b", s, p_infinite, s))),
                "lqr_gain": gain.ravel().tolist()}

    return costs


def lqr_reference(problem: Problem[Any], a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray,
                  reader: StateReader, wrap: Callable[[np.ndarray], np.ndarray], weights: str,
                  plane: tuple[int, int]) -> Reference:
    r"""The reference of a quadratic cost about upright: LQR on the linearisation :math:`\dot s = As + Bu`.

    The controller is :math:`u = -Ks` with :math:`K = R^{-1}B^\top P` (:func:`lqr`, ``reader`` giving the state
    :math:`s` from an observation), the optimum :math:`s_0^\top P(0) s_0` of the finite-horizon Riccati ODE over the
    problem's horizon (:func:`finite_horizon_riccati`) at the starts ``wrap(states)``; ``weights`` states
    :math:`Q, R` for the description.
    """
    gain, p = lqr(a, b, q, r)
    p_finite = finite_horizon_riccati(a, b, q, r, problem.horizon)[0]
    return Reference(
        "lqr", f"LQR on the linearisation about upright ({weights}); optimum: s0' P(0) s0 of the finite-horizon "
        "Riccati ODE over T (the linear system's optimum with continuous control)",
        problem, LinearFeedback(problem, gain, reader), quadratic_costs(wrap, p_finite, p, gain),
        along_episode("t (s), along the LQR path", lambda e: e.times[:-1]), plane=plane)


def played_cost(env_id: str, env_kwargs: dict[str, Any], policy: Callable[[], GymPolicy]) -> AnalyticCosts:
    """``Reference.analytic`` of a reference controller without a closed-form cost: its mean cost on the same
    Gymnasium episodes (episode ``i`` from ``states[i]`` and ``reset(seed=seed + i)``).

    ``policy()`` builds the controller when the cost is first asked for (a planned one takes seconds).
    """

    def cost(states: np.ndarray, seed: int = EVAL_SEED) -> Numbers:
        costs = evaluate(env_id, policy(), len(states), env_kwargs, seed, states)
        return {"optimum": float(costs.mean())}

    return cost


@dataclass(frozen=True)
class Recorded:
    """A recorded Gymnasium episode's trajectory (:class:`agents.episodes.Episode` with ``record=True``)."""

    times: np.ndarray
    states: np.ndarray
    observations: np.ndarray
    controls: np.ndarray


def recorded(episode: Episode | None) -> Recorded:
    """The trajectory of ``episode``, which a probe needs recorded (a ``ValueError`` without one)."""
    if episode is None or episode.times is None or episode.states is None or episode.observations is None \
            or episode.controls is None:
        raise ValueError("this probe needs the reference's episode")
    return Recorded(episode.times, episode.states, episode.observations, episode.controls)


def along_episode(coordinate: str, column: Callable[[Recorded], np.ndarray]) -> Probe:
    """A probe: the observations of the reference's episode, labelled by ``column(trajectory)``."""

    def probe(episode: Episode | None) -> tuple[str, np.ndarray, np.ndarray]:
        played = recorded(episode)
        return coordinate, column(played), played.observations[:-1]

    return probe
