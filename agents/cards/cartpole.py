r"""The cartpole swing-up (``diffenvs.envs.cartpole``, report §4.3): presets, agents' settings, protocol, reference.

Near upright the analytic answer is LQR on the linearisation :math:`\dot s = As + Bf` about
:math:`\phi = 0`: the gain :math:`K = R^{-1}B^\top P` with the report's
:math:`Q = \mathrm{diag}(10^{-4}, 0, 100, 0)`, :math:`R = 10^{-2}`
(:func:`agents.references.lqr`), and the finite-horizon cost :math:`s_0^\top P(0) s_0` of the
Riccati ODE over :math:`T` (:func:`agents.references.finite_horizon_riccati`, the optimum of
the linear system with continuous control). The swing-up from hanging has no closed form: the
cost :math:`\phi(T)^2 + \dot\phi(T)^2 \ge 0` and the report's swing-up reaches ~0, so the
reference optimum is 0 (a lower bound) and there is no reference controller.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register, zoo_budget
from agents.references import (
    LinearFeedback,
    Reference,
    lqr,
    lqr_reference,
    problem_as,
    wrapped,
    zero_optimum,
)
from agents.registry import Budget
from diffenvs.envs.cartpole import FORCE_WEIGHT, STATE_WEIGHTS, Cartpole, CartpoleParams

ENV_ID = "DiffCartpole-v0"


# ---- LQR about upright -----------------------------------------------------------------
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


def cartpole_state(observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""The state :math:`(x, \dot x, \phi, \dot\phi)` (wrapped angle) from a cartpole observation ``(..., 6)``."""
    return (observation[..., 0], observation[..., 1], torch.atan2(observation[..., 3], observation[..., 2]),
            observation[..., 4])


def cartpole_lqr_policy(problem: Cartpole) -> LinearFeedback:
    """The LQR controller for ``problem``'s constants with the report's weights."""
    a, b = cartpole_linearisation(problem.params)
    gain, _ = lqr(a, b, *lqr_weights())
    return LinearFeedback(problem, gain, cartpole_state)


def wrapped_states(states: np.ndarray) -> np.ndarray:
    """Cartpole states ``(k, 4)`` with the pole angle wrapped to (-pi, pi]."""
    return wrapped(states, 4, slice(2, 3))


def reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference:
    """Swing-up: the lower bound 0 (no controller). Quadratic cost: LQR and the finite-horizon Riccati cost."""
    problem = problem_as(Cartpole, env_id, env_kwargs)
    if problem.cost == "terminal":
        return Reference("swing-up", "no closed form; the cost phi(T)^2 + phidot(T)^2 >= 0 and the report's "
                         "swing-up reaches ~0, so the reference optimum is 0 (a lower bound)",
                         problem, None, zero_optimum, None, plane=(2, 3))
    return lqr_reference(problem, *cartpole_linearisation(problem.params), *lqr_weights(), cartpole_state,
                         wrapped_states, "report's Q, R", plane=(2, 3))


# ---- the agents' settings ------------------------------------------------------------------
#: the neural-ODE agent's tuned settings per objective: the terminal swing-up cost, the LQR's quadratic cost
SWING_UP = dict(iterations=300, lbfgs_steps=5, learning_rate=0.05, final_learning_rate=0.001, batch_size=8)
QUADRATIC = dict(iterations=400, learning_rate=0.05, final_learning_rate=0.001, beta2=0.9, batch_size=8)


def neural_ode(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Tuned per objective: the terminal swing-up cost, or the LQR's quadratic running cost."""
    return dict(QUADRATIC if env_kwargs.get("cost", "terminal") == "quadratic" else SWING_UP)


#: the critic-based learners (their card sections' names: the RL baselines, then SHAC)
CRITIC_LEARNERS = ("ppo", "sac", "td3", "shac")
#: SHAC's discount where its card section sets none: the paper's, ``agents.shac.ShacConfig.gamma`` (a card imports no
#: agent; ``tests/test_terminal_shaping.py`` checks that the two agree)
SHAC_GAMMA = 0.99


def learner_discount(agent: str, settings: Mapping[str, Any]) -> float:
    """The discount ``agent`` trains with given its card ``settings`` (the ``"rl"`` section updated by the agent's,
    or SHAC's own): their ``"gamma"``, else the RL baselines' rl-baselines3-zoo entry (``"zoo"``) or SB3's default, as
    :func:`agents.rl.hyperparameters` reads them, and SHAC's paper value :data:`SHAC_GAMMA`."""
    if settings.get("gamma") is not None:
        return float(settings["gamma"])
    if agent == "shac":
        return SHAC_GAMMA
    from agents.rl_zoo import ALGORITHMS, from_zoo  # the zoo's table (data, not an agent plug-in)

    gamma = from_zoo(agent, settings.get("zoo", "default")).gamma
    if gamma is None:
        return float(inspect.signature(ALGORITHMS[agent]).parameters["gamma"].default)
    return float(gamma)


def shaped_objective(gamma: float, cost: str) -> dict[str, Any]:
    """The training objective of a critic learner that discounts by ``gamma``: the scored terminal cost, shaped."""
    return {"env_kwargs": {"cost": "terminal-shaped", "discount": gamma}, "label": f"terminal, shaped (gamma {gamma})",
            "why": f"the scored cost {cost} is paid only at T; shaped with the potential -c(s) and the learner's "
                   f"discount {gamma}, each step pays c(s_k) - gamma c(s_k+1) and the discounted return is "
                   "c(s_0) - gamma^(K-1) c(s_K), so the optimum is the scored one"}


def critic_sections(cost: str, rl: Mapping[str, Any], own: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> dict[str, dict[str, Any]]:
    """The card sections ``"ppo"``, ``"sac"``, ``"td3"`` and ``"shac"`` (each ``own`` section, if given, with an
    ``"objective"``): each learner trains on the scored terminal ``cost`` shaped for its own discount
    (:func:`learner_discount` of the ``rl`` section updated by its own; SHAC's own alone), the environment's
    ``cost="terminal-shaped"``."""
    own = dict(own or {})
    sections = {}
    for agent in CRITIC_LEARNERS:
        section = dict(own.get(agent, {}))
        settings = section if agent == "shac" else {**rl, **section}
        sections[agent] = {**section, "objective": shaped_objective(learner_discount(agent, settings), cost)}
    return sections


#: One training objective for the swing-up, the scored one: every learner minimises phi(T)^2 + phidot(T)^2. The
#: gradient and zeroth-order agents train on it as it is; the critic learners (the RL baselines and SHAC) on its
#: potential-based shaping for their own discount (``cost="terminal-shaped"``, see diffenvs.envs.cartpole), whose
#: discounted return is c(s_0) - gamma^(K-1) c(s_K): over the fixed horizon, with t/T observed, its optimum is the
#: scored one for any gamma. (Before, they trained on the LQR running cost, Q = diag(1e-4, 0, 100, 0), R = 1e-2,
#: whose optimum is another policy than the scored cost's.)
#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1). Both swing an
#: underactuated pendulum up with one bounded force or torque; the zoo tunes Pendulum-v1 for 20k (SAC, TD3) and 100k
#: (PPO) transitions, the order of this card's budgets. The literal analogue, InvertedPendulumSwingupBulletEnv-v0, is
#: tuned for 300k (SAC, TD3) and 2M (PPO) transitions: its PPO rollouts of 8 x 2048 transitions would leave three
#: updates in the 60k budget. The zoo's discounts are kept for TD3 (0.98) and SAC (0.99). One deviation: the shaped
#: objective has the scored optimum at any discount, but at PPO's 0.9 the cost paid at step 100 weighs 0.9^99 = 3e-5 at
#: the first step, and a learner that looks ten steps ahead only follows the potential down, which a swing-up must
#: first climb; PPO trains with SAC's 0.99 (0.99^99 = 0.37), the least of the zoo's discounts that sees the horizon.
RL = {"zoo": "Pendulum-v1"}
#: the critic learners' own sections on the swing-ups (the deviation above)
SWING_UP_OWN = {"ppo": {"gamma": 0.99}}
CRITICS = critic_sections("phi(T)^2 + phidot(T)^2", RL, SWING_UP_OWN)


CARD = register(Card(
    env_id=ENV_ID,
    presets={"swingup": {"initial_noise": 0.0},
             "upright": {"initial_angle": 0.1, "initial_noise": 0.0, "cost": "quadratic"}},
    agents={"neural-ode": neural_ode, "rl": RL, **CRITICS},
    # the starts are drawn (initial_noise 0.05 on every coordinate): 100 test episodes
    protocol=Protocol(episodes=100),
    budgets={
        "quick": {"rl": Budget(10_000, QUICK_SECONDS, 2_000), "neural-ode": Budget(80_000, QUICK_SECONDS, 8_000)},
        # equal footing: the neural-ODE agent's tuned swing-up run (320k transitions) for every learning agent, except
        # SAC and TD3, capped at the zoo's 20k for Pendulum-v1 (an off-policy update per transition: 320k SAC
        # transitions would take about 1.5 h a seed on one core)
        # gradient: the tuned swing-up run at most, (300 Adam iterations + 5 L-BFGS steps x 20 evaluations)
        # x 8 trajectories x 100 steps
        "full": {"gradient": Budget((300 + 5 * 20) * 8 * 100, eval_every=8_000),
                 "zeroth-order": Budget(320_000, eval_every=8_000), "ppo": Budget(320_000, eval_every=8_000),
                 "sac": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "td3": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "neural-ode-default": Budget(100_000, eval_every=8_000,
                                              cap="1,000 iterations of one trajectory (a third of a second each)")},
    },
    reference=reference,
    controllers={"lqr": cartpole_lqr_policy},
    tests=TestSettings(short={"max_steps": 3}),
))
