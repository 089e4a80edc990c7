r"""The Zermelo river crossing (``diffenvs.envs.zermelo``, report §4.2): presets, agents' settings, protocol, reference.

The analytic answer is Pontryagin's heading :math:`\cos u = -v/w(y)`, :math:`u \in (\pi/2, \pi]`,
and the minimum deviation (the cost, :math:`x(\ell) - x_0`) by quadrature
:math:`\int_{y_0}^{\ell} \frac{v\cos u + w(y)}{v \sin u}\,dy
= \int_{y_0}^{\ell} \frac{\sqrt{w(y)^2 - v^2}}{v}\,dy` from each start :math:`(x_0, y_0)`.

Protocol. The starts are drawn uniformly on the segment :math:`x_0 = 0`,
:math:`y_0 \in [0, 0.5]` m by the near bank (:data:`START_BOX`, the environment's
``initial_y_spread``), so that the validation starts (learning curves), the test starts
(final score) and the training starts differ; 100 episodes per evaluation. The optimum
depends on :math:`y_0` (1.4126 m from the bank, 1.1833 m from :math:`y_0 = 0.5`). The start's
:math:`x_0` is not drawn: the problem is the same at every :math:`x` (the cost is the
deviation :math:`x - x_0`), so drawing it would only add an input the policy must learn to
ignore (the environment's ``initial_x_spread`` draws it where that is wanted: with
:math:`x_0 \in [-0.5, 0.5]` the tuned neural-ODE agent ended 2.25%, 0.97% and 1.45% above
Pontryagin on seeds 0-2, against 0.89%, 0.75% and 0.81% with :math:`x_0 = 0`). The wind is
not drawn: it is a constant of the problem (``ZermeloParams``), not part of the state the
starts draw, and one environment instance has one wind.

Discount and reward. The crossing's cost is paid as :math:`-\Delta x` per step and the time
limit pays the straight-across completion :math:`\Delta x(y_T)` at its last step. A discount
:math:`\gamma < 1` shrinks payments by how late they come, so it rewards postponing them:
holding the heading upstream (never crossing) pays about 0.1 m/s of drift and the
completion 500 steps later, and its *discounted* cost is below Pontryagin's for every
:math:`\gamma` below about 0.997 (from :math:`(0, 0)` at 0.99: 0.215 against 0.561; at the
zoo's PPO 0.9: 0.020 against 0.038; at TD3's 0.98: 0.100 against 0.270), although its cost
is 3.52 m against 1.41 m. So every critic-based learner (the RL baselines and SHAC) trains
with :math:`\gamma = 1`, a stated change from the zoo's Pendulum-v1 discounts (PPO 0.9, TD3
0.98, SAC 0.99) and SHAC's 0.99, on the environment's ``cost="completion-shaped"``: the
deviation shaped with the completed crossing :math:`C = x + \Delta x(y)` as potential,
:math:`r_k = C(s_k) - C(s_{k+1})`, whose undiscounted return is :math:`C(s_0)` (fixed by the
start) minus the scored cost, for every policy: the scored optimum. The shaping makes the
per-step reward say what the default reward says only at the time limit: drifting upstream
costs :math:`w - v` per second, Pontryagin's heading gains. (With :math:`\gamma = 1` on the
default reward, TD3 still ended at the upstream policy, 3.20 m over 10 evaluation episodes after
its 20k transitions; on the shaped reward it ended at 1.39 m, optimum 1.29 m; PPO ended
near the upstream policy on both after 60k, seed 0.) The episode is at most 500 steps and the
time is observed, so the undiscounted return is finite and well defined for the critics;
the priced time limit is not bootstrapped (:mod:`agents.sb3_vec`).
``tests/test_objectives.py`` plays the simple policies and Pontryagin's on each learner's
discounted objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.integrate
import torch

from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register, zoo_budget
from agents.references import EVAL_SEED, Numbers, Reference, along_episode, problem_as
from agents.registry import Budget
from diffenvs.core.numerics import SCALAR, TORCH, ArrayNamespace
from diffenvs.envs.zermelo import Zermelo, ZermeloParams, wind

ENV_ID = "DiffZermelo-v0"


# ---- Pontryagin ------------------------------------------------------------------------
def pontryagin_heading(y: Any, params: ZermeloParams, ns: ArrayNamespace) -> Any:
    r"""Pontryagin's heading :math:`u = \arccos(-v/w(y)) \in (\pi/2, \pi)` (rad), as ``atan2(sqrt(w² - v²), -v)``."""
    v, w = params.boat_speed, wind(y, params, ns)
    return ns.atan2(ns.sqrt(w * w - v * v), -v + 0.0 * w)


def pontryagin_deviation(params: ZermeloParams | None = None, y0: float = 0.0) -> float:
    r"""Minimum downstream travel (m) from height ``y0`` to the far bank, by quadrature.

    :math:`\int_{y_0}^{\ell} \frac{v\cos u(y) + w(y)}{v \sin u(y)}\,dy` (the integrand is
    :math:`\sqrt{w^2 - v^2}/v`) with Pontryagin's
    heading (``scipy.integrate.quad``, the wind's peak given as a break point); ``params``
    defaults to ``ZermeloParams()``.
    """
    params = ZermeloParams() if params is None else params
    if not y0 < params.river_width:
        raise ValueError(f"y0 must be below the far bank {params.river_width}, got {y0}")

    def slope(y: float) -> float:
        u = pontryagin_heading(y, params, SCALAR)
        return float((params.boat_speed * SCALAR.cos(u) + wind(y, params, SCALAR)) / (params.boat_speed * SCALAR.sin(u)))

    points = [params.wind_centre] if y0 < params.wind_centre < params.river_width else None
    value, _ = scipy.integrate.quad(slope, y0, params.river_width, points=points, epsabs=1e-12, epsrel=1e-12, limit=200)
    return float(value)


class PontryaginPolicy(torch.nn.Module):
    """Zermelo's optimal heading as a policy: observations ``(x, y, t/T)`` -> heading ``(B, 1)`` in rad (it reads y)."""

    def __init__(self, problem: Zermelo):
        super().__init__()
        self.problem = problem
        self.y_index = problem.observation_names.index("y")

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        y = observation[..., self.y_index]
        heading: torch.Tensor = pontryagin_heading(y, self.problem.params, TORCH)
        return heading.clamp(self.problem.control_low[0], self.problem.control_high[0]).unsqueeze(-1)


def reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference:
    """Pontryagin's heading; the optimum is the deviation x(ℓ) - x0 by quadrature from each start (it depends on y0
    alone), averaged over the starts."""
    problem = problem_as(Zermelo, env_id, env_kwargs)
    params = problem.params

    def optimum(states: np.ndarray, seed: int = EVAL_SEED) -> Numbers:
        return {"optimum": float(np.mean([pontryagin_deviation(params, float(s[1])) for s in states]))}

    return Reference(
        "pontryagin", "Pontryagin heading cos u = -v/w(y); optimum: the deviation x(ℓ) - x0 by quadrature",
        problem, PontryaginPolicy(problem), optimum,
        along_episode("y (m), along the Pontryagin path", lambda e: e.states[:-1, 1]), plane=(0, 1))


#: the neural-ODE agent's tuned settings: 300-step rollouts (6 s), long enough to cross from any start; one start per
#: iteration, drawn from the protocol's (seeds 0-2 from the protocol's starts: 0.89%, 0.75%, 0.81% above Pontryagin over
#: 100 evaluation episodes; 0.34% from the fixed start (0, 0), seed 0)
TUNED = dict(iterations=200, learning_rate=0.05, final_learning_rate=0.002, steps=300)

#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1). The zoo has no
#: 2-D navigation task at this scale. Its small continuous tasks are Pendulum-v1 (a dense reward, like the crossing's
#: -dx per step; tuned for 20k transitions, this card's budget) and MountainCarContinuous-v0, whose entries are tuned
#: for hard exploration of a sparse reward (SAC ent_coef 0.1, gSDE with log_std_init -3.67) that the crossing does
#: not pose: it pays -dx every step, and the straight-across completion if the time limit comes first. One deviation:
#: gamma = 1 instead of the zoo's (PPO 0.9, TD3 0.98, SAC 0.99), since any discount below about 0.997 makes never
#: crossing the best discounted policy (the module docstring).
ZOO = {"zoo": "Pendulum-v1", "gamma": 1.0,
       "objective": {"env_kwargs": {"cost": "completion-shaped"}, "label": "deviation, shaped by the completion",
                     "why": "gamma = 1 on the deviation shaped with the straight-across completion as potential: the "
                            "scored optimum, and upstream drift costs every step instead of only at the time limit"}}

#: SHAC's settings: the paper's, but gamma = 1 (0.99 in the paper), for the reason of the module docstring; it trains on
#: the ``"rl"`` section's objective, the shaped deviation
SHAC = {"gamma": 1.0}

#: the protocol's starts (m): x0 = 0, y0 uniform on [0, 0.5], by the near bank
START_BOX = {"initial_y_spread": 0.5}

CARD = register(Card(
    env_id=ENV_ID,
    agents={"neural-ode": TUNED, "rl": ZOO, "shac": SHAC},
    # random starts in the box: 100 episodes per evaluation
    protocol=Protocol(env_kwargs=START_BOX, episodes=100),
    budgets={
        "quick": {"rl": Budget(5_000, QUICK_SECONDS, 1_000), "neural-ode": Budget(15_000, QUICK_SECONDS, 1_500)},
        # equal footing: the neural-ODE agent's tuned run (60k transitions) for every learning agent, except SAC and
        # TD3, which keep the zoo's 20k for Pendulum-v1, the budget their settings are published for (the table
        # marks it); 10 seeds of each
        # gradient: the tuned run, 200 Adam iterations x 1 trajectory x 300 steps
        "full": {"gradient": Budget(200 * 1 * 300, eval_every=3_000),
                 "zeroth-order": Budget(60_000, eval_every=3_000), "ppo": Budget(60_000, eval_every=3_000),
                 "sac": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "td3": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000))},
    },
    reference=reference,
    controllers={"pontryagin": PontryaginPolicy},
    # the bank is crossed inside the three checked steps: the event location is differentiated
    tests=TestSettings(short={"max_steps": 3}, gradcheck_start=((0.3, 1.99), (0.4, 1.985))),
))
