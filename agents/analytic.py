r"""The analytic answer beside every environment: optimal controllers and optimal costs.

Each controller is a :class:`torch.nn.Module` from observations ``(B, obs)`` to physical
controls ``(B, m)``, clamped to the control bounds, so it runs on the gradient path
(:func:`diffenvs.rollout`) and, through :func:`agents.episodes.gym_policy`, on the
Gymnasium face. :func:`reference` gives the :class:`Reference` a run on an
environment is compared with; :func:`analytic_agent` the controller behind an agent name.

* Zermelo (report §4.2): Pontryagin's heading :math:`\cos u = -v/w(y)`,
  :math:`u \in (\pi/2, \pi]`, and the minimum deviation by quadrature
  :math:`x(\ell) = x_0 + \int_{y_0}^{\ell} \frac{v\cos u + w(y)}{v \sin u}\,dy`.
* Cartpole near upright (report §4.3): the linearisation :math:`\dot s = As + Bf` about
  :math:`\phi = 0`, the LQR gain :math:`K = R^{-1}B^\top P` from the continuous algebraic
  Riccati equation :math:`A^\top P + PA - PBR^{-1}B^\top P + Q = 0` with the report's
  :math:`Q = \mathrm{diag}(10^{-4}, 0, 100, 0)`, :math:`R = 10^{-2}`, its infinite-horizon
  cost :math:`s_0^\top P s_0`, and the finite-horizon cost :math:`s_0^\top P(0) s_0` of the
  Riccati ODE :math:`-\dot P = A^\top P + PA - PBR^{-1}B^\top P + Q`, :math:`P(T) = 0`
  (the optimum of the linear system with continuous control over :math:`T`).
* Double pendulum on a cart near upright: the same LQR construction on its linearisation
  about :math:`\theta_1 = \theta_2 = 0` (:meth:`diffenvs.envs.double_pendulum.DoublePendulum.linearisation`)
  with :math:`Q = \mathrm{diag}(10^{-4}, 100, 100, 0, 0, 0)`, :math:`R = 10^{-2}`. Its swing-up
  from hanging has no closed form either (reference optimum 0, a lower bound).
* Cartpole swing-up from hanging: no closed form. The cost
  :math:`\phi(T)^2 + \dot\phi(T)^2 \ge 0` and the report's swing-up reaches ~0, so the
  reference optimum is 0 (a lower bound) and there is no reference controller.
* Isochronism (report §3): the harmonic field :math:`f(x) = -(2\pi/T)^2 x`, whose every
  trajectory is :math:`T`-periodic: optimal cost 0.
* Decay design (report §6): the measurement time that maximises each measurement's
  information :math:`\tfrac12\log(1 + g^2 C/\sigma^2)`, :math:`g = -t e^{-\hat\theta t}`,
  is :math:`t = 1/\hat\theta` (where :math:`g^2` peaks). The greedy design is the
  reference; its cost on the evaluation episodes is the reference cost (one-step optimal,
  not a proven optimum of the whole sequence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.integrate
import scipy.linalg
import torch

from agents.episodes import EVAL_SEED, Episode, GymPolicy, gym_policy
from agents.registry import Agent, Budget, CurveCost, Trained, constant_curve, register
from diffenvs import problem_of
from diffenvs.core.numerics import TORCH, wrap_angle
from diffenvs.envs.cartpole import FORCE_WEIGHT, STATE_WEIGHTS, Cartpole, CartpoleParams
from diffenvs.envs.decay_design import DecayDesign
from diffenvs.envs.double_pendulum import FORCE_WEIGHT as DOUBLE_PENDULUM_FORCE_WEIGHT
from diffenvs.envs.double_pendulum import STATE_WEIGHTS as DOUBLE_PENDULUM_STATE_WEIGHTS
from diffenvs.envs.double_pendulum import DoublePendulum
from diffenvs.envs.isochronism import Isochronism, harmonic_force
from diffenvs.envs.zermelo import Zermelo, ZermeloParams, wind


# ---- Zermelo: Pontryagin ---------------------------------------------------------------
def pontryagin_heading(y: Any, params: ZermeloParams, ns: Any) -> Any:
    r"""Pontryagin's heading :math:`u = \arccos(-v/w(y)) \in (\pi/2, \pi)` (rad), as ``atan2(sqrt(w² - v²), -v)``."""
    v, w = params.boat_speed, wind(y, params, ns)
    return ns.atan2(ns.sqrt(w * w - v * v), -v + 0.0 * w)


def pontryagin_deviation(params: ZermeloParams | None = None, y0: float = 0.0) -> float:
    r"""Minimum downstream travel (m) from height ``y0`` to the far bank, by quadrature.

    :math:`\int_{y_0}^{\ell} \frac{v\cos u(y) + w(y)}{v \sin u(y)}\,dy` with Pontryagin's
    heading (``scipy.integrate.quad``, the wind's peak given as a break point); ``params``
    defaults to ``ZermeloParams()``.
    """
    params = ZermeloParams() if params is None else params
    if not y0 < params.river_width:
        raise ValueError(f"y0 must be below the far bank {params.river_width}, got {y0}")

    def slope(y: float) -> float:
        u = pontryagin_heading(y, params, math)
        return (params.boat_speed * math.cos(u) + wind(y, params, math)) / (params.boat_speed * math.sin(u))

    points = [params.wind_centre] if y0 < params.wind_centre < params.river_width else None
    value, _ = scipy.integrate.quad(slope, y0, params.river_width, points=points, epsabs=1e-12, epsrel=1e-12, limit=200)
    return value


class PontryaginPolicy(torch.nn.Module):
    """Zermelo's optimal heading as a policy: observations ``(x, y)`` -> heading ``(B, 1)`` in rad."""

    def __init__(self, problem: Zermelo):
        super().__init__()
        self.problem = problem
        self.y_index = problem.observation_names.index("y")

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        y = observation[..., self.y_index]
        heading = pontryagin_heading(y, self.problem.params, TORCH)
        return heading.clamp(self.problem.control_low[0], self.problem.control_high[0]).unsqueeze(-1)


# ---- Cartpole: LQR ---------------------------------------------------------------------
def cartpole_linearisation(params: CartpoleParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`(A, B)` of the cartpole linearised about upright, state :math:`s = (x, \dot x, \phi, \dot\phi)`.

    With :math:`\sin\phi \approx \phi`, :math:`\cos\phi \approx 1` and second-order terms
    dropped, equations (4.9) become :math:`\ddot x = (f - mg\phi)/M` and
    :math:`\ddot\phi = ((M + m)g\phi - f)/(LM)`; ``params`` defaults to ``CartpoleParams()``.
    """
    params = CartpoleParams() if params is None else params
    m, big_m, length, g = params.pole_mass, params.cart_mass, params.pole_length, params.gravity
    a = np.array([[0.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, -m * g / big_m, 0.0],
                  [0.0, 0.0, 0.0, 1.0],
                  [0.0, 0.0, (big_m + m) * g / (length * big_m), 0.0]])
    b = np.array([[0.0], [1.0 / big_m], [0.0], [-1.0 / (length * big_m)]])
    return a, b


def lqr_weights() -> tuple[np.ndarray, np.ndarray]:
    """The report's LQR weights :math:`Q` (4 x 4) and :math:`R` (1 x 1), the cartpole's quadratic cost."""
    return np.diag(STATE_WEIGHTS), np.array([[FORCE_WEIGHT]])


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
        return -(a.T @ p + p @ a - p @ b @ r_inv @ b.T @ p + q).ravel()

    if np.any((times < 0) | (times > horizon)):
        raise ValueError(f"times must lie in [0, horizon = {horizon}], got {times}")
    start = float(times.min())
    if start == horizon:
        return np.zeros((len(times), n, n))
    solution = scipy.integrate.solve_ivp(rhs, (horizon, start), np.zeros(n * n), method="DOP853", dense_output=True,
                                         rtol=1e-10, atol=1e-12)
    if not solution.success:
        raise RuntimeError(f"the Riccati ODE failed: {solution.message}")
    p = solution.sol(times).T.reshape(-1, n, n)
    return 0.5 * (p + p.transpose(0, 2, 1))


def cartpole_state(observation: Any, ns: Any = TORCH) -> tuple[Any, Any, Any, Any]:
    r"""The state :math:`(x, \dot x, \phi, \dot\phi)` (wrapped angle) from a cartpole observation ``(..., 6)``."""
    return (observation[..., 0], observation[..., 1], ns.atan2(observation[..., 3], observation[..., 2]),
            observation[..., 4])


class LinearFeedback(torch.nn.Module):
    r"""The LQR controller :math:`f = -Ks` on the observed state, clamped to ``±max_force``.

    ``state`` maps observations ``(..., obs)`` to the components of :math:`s` (wrapped
    angles); the default reads a cartpole observation (:func:`cartpole_state`).
    """

    def __init__(self, problem: Any, gain: np.ndarray, state: Callable[[torch.Tensor], tuple[Any, ...]] | None = None):
        super().__init__()
        self.problem = problem
        self.state = cartpole_state if state is None else state
        self.register_buffer("gain", torch.as_tensor(np.asarray(gain, np.float64).reshape(1, -1)))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        state = torch.stack(self.state(observation), -1)
        force = -(state * self.gain.to(state.dtype)).sum(-1, keepdim=True)
        return force.clamp(self.problem.control_low[0], self.problem.control_high[0])


def cartpole_lqr_policy(problem: Cartpole) -> LinearFeedback:
    """The LQR controller for ``problem``'s constants with the report's weights."""
    a, b = cartpole_linearisation(problem.params)
    gain, _ = lqr(a, b, *lqr_weights())
    return LinearFeedback(problem, gain)


def wrapped_states(states: np.ndarray) -> np.ndarray:
    """Cartpole states ``(k, 4)`` with the pole angle wrapped to (-pi, pi]."""
    s = np.array(states, dtype=np.float64).reshape(-1, 4)
    s[:, 2] = wrap_angle(s[:, 2], np)
    return s


# ---- Double pendulum on a cart: LQR about upright ------------------------------------
def double_pendulum_lqr_weights() -> tuple[np.ndarray, np.ndarray]:
    """The double pendulum's quadratic-cost weights :math:`Q` (6 x 6) and :math:`R` (1 x 1)."""
    return np.diag(DOUBLE_PENDULUM_STATE_WEIGHTS), np.array([[DOUBLE_PENDULUM_FORCE_WEIGHT]])


def double_pendulum_state(observation: Any, ns: Any = TORCH) -> tuple[Any, ...]:
    r"""The state :math:`(x, \theta_1, \theta_2, \dot x, \dot\theta_1, \dot\theta_2)` (wrapped angles) from a
    double-pendulum observation ``(..., 9)``."""
    return (observation[..., 0], ns.atan2(observation[..., 2], observation[..., 1]),
            ns.atan2(observation[..., 4], observation[..., 3]), observation[..., 5], observation[..., 6],
            observation[..., 7])


def double_pendulum_lqr_policy(problem: DoublePendulum) -> LinearFeedback:
    """The LQR controller about upright for ``problem``'s constants and quadratic-cost weights."""
    a, b = problem.linearisation()
    gain, _ = lqr(a, b, *double_pendulum_lqr_weights())
    return LinearFeedback(problem, gain, double_pendulum_state)


def wrapped_double_pendulum_states(states: np.ndarray) -> np.ndarray:
    """Double-pendulum states ``(k, 6)`` with both pole angles wrapped to (-pi, pi]."""
    s = np.array(states, dtype=np.float64).reshape(-1, 6)
    s[:, 1:3] = wrap_angle(s[:, 1:3], np)
    return s


# ---- Isochronism: the harmonic field ---------------------------------------------------
class HarmonicField(torch.nn.Module):
    r"""The isochronous force field :math:`f(x) = -(2\pi/T)^2 x` on the observed position, clamped to ``±max_force``."""

    def __init__(self, problem: Isochronism):
        super().__init__()
        self.problem = problem

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        force = harmonic_force(observation[..., :1], self.problem.params)
        return force.clamp(self.problem.control_low[0], self.problem.control_high[0])


# ---- Decay design: the greedy optimal measurement time ----------------------------------
class GreedyDesign(torch.nn.Module):
    r"""The measurement time :math:`t = 1/\hat\theta` (s) from the belief ``(θ̂, C)``, clamped to ``[0, t_max]``.

    :math:`g^2 = t^2 e^{-2\hat\theta t}` peaks at :math:`t = 1/\hat\theta`; a belief with
    :math:`\hat\theta \le 1/t_{\max}` gets :math:`t_{\max}`.
    """

    def __init__(self, problem: DecayDesign):
        super().__init__()
        self.problem = problem

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        low, high = self.problem.control_low[0], self.problem.control_high[0]
        mean = observation[..., :1]
        time = torch.where(mean * high > 1.0, 1.0 / mean.clamp_min(1.0 / high), torch.full_like(mean, high))
        return time.clamp(low, high)


# ---- the reference a run is compared with ---------------------------------------------
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
    problem: Any
    policy: torch.nn.Module | None
    analytic: Callable[..., dict[str, float | None]]
    """``(states, seed=EVAL_SEED) -> numbers`` (see above)."""
    probe: Callable[[Episode | None], tuple[str, np.ndarray, np.ndarray]] | None = None
    plane: tuple[int, int] | None = None

    @property
    def gym_policy(self) -> GymPolicy | None:
        return None if self.policy is None else gym_policy(self.policy, self.problem)



Probe = Callable[["Episode | None"], tuple[str, np.ndarray, np.ndarray]]
"""``probe(episode) -> (label, coordinates, observations)`` (see :class:`Reference`)."""


def zero_optimum(states: np.ndarray, seed: int = EVAL_SEED) -> dict[str, float | None]:
    """``Reference.analytic`` of a cost whose optimum, or lower bound, is 0 from every start and episode."""
    return {"optimum": 0.0}


def quadratic_costs(wrap: Callable[[np.ndarray], np.ndarray], p_finite: np.ndarray, p_infinite: np.ndarray,
                    gain: np.ndarray) -> Callable[..., dict[str, Any]]:
    """``Reference.analytic`` of LQR about upright: the mean of s0' P s0 over the starts s0 = ``wrap(states)``.

    ``optimum`` uses P(0) of the finite-horizon Riccati ODE over T (the linear system's optimum with continuous
    control), ``infinite_horizon_lqr`` the algebraic Riccati solution; ``lqr_gain`` is the feedback K of u = -K s.
    """

    def costs(states: np.ndarray, seed: int = EVAL_SEED) -> dict[str, Any]:
        s = wrap(states)
        return {"optimum": float(np.mean(np.einsum("bi,ij,bj->b", s, p_finite, s))),
                "infinite_horizon_lqr": float(np.mean(np.einsum("bi,ij,bj->b", s, p_infinite, s))),
                "lqr_gain": gain.ravel().tolist()}

    return costs


def along_episode(coordinate: str, column: Callable[[Episode], np.ndarray]) -> Probe:
    """A probe: the observations of the reference's episode, labelled by ``column(episode)``."""

    def probe(episode: Episode | None) -> tuple[str, np.ndarray, np.ndarray]:
        if episode is None:
            raise ValueError("this probe needs the reference's episode")
        return coordinate, column(episode), episode.observations[:-1]

    return probe


def reference(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Reference | None:
    """The analytic reference of ``env_id`` built with ``env_kwargs`` (its card's); ``None`` where there is none."""
    from agents.cards import card

    return card(env_id).reference(env_id, dict(env_kwargs or {}))


def analytic_agent(name: str, env_id: str, env_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The analytic controller ``name`` of ``env_id``'s card (e.g. ``"lqr"`` for the cartpole)."""
    from agents.cards import card, cards

    controllers = card(env_id).analytic
    if name not in controllers:
        owners = [c.env_id for c in cards().values() if name in c.analytic]
        if owners:
            raise ValueError(f"agent {name!r} is the analytic answer of {' and '.join(owners)} only, got env_id {env_id!r}")
        raise ValueError(f"agent must be one of the analytic controllers of {env_id} {tuple(controllers)}, got {name!r}")
    return controllers[name](problem_of(env_id, **(env_kwargs or {})))


def _train(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    answer = reference(env_id, env_kwargs)
    return constant_curve(answer.gym_policy, curve_cost, {"controller": answer.name})


def _has_controller(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    answer = reference(env_id, env_kwargs)
    return answer is not None and answer.policy is not None


AGENT = register(Agent("analytic", "reference", "the closed-form optimal controller of the environment's card "
                       "(Pontryagin, harmonic field, LQR, greedy design)", _train, _has_controller, cost=0.1))
