r"""The double pendulum on a cart (``diffenvs.envs.double_pendulum``): presets, agents' settings, protocol, reference.

Near upright the analytic answer is the cartpole's LQR construction on this linearisation about
:math:`\theta_1 = \theta_2 = 0` (:meth:`diffenvs.envs.double_pendulum.DoublePendulum.linearisation`)
with :math:`Q = \mathrm{diag}(10^{-4}, 100, 100, 0, 0, 0)`, :math:`R = 10^{-2}`. Its swing-up
from hanging has no closed form (reference optimum 0, a lower bound).

Not tuned yet: the neural-ODE settings below are the cartpole's swing-up settings, and the
budgets are modest, a smoke run of every agent rather than a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register, zoo_budget
from agents.cards.cartpole import RL, SWING_UP_OWN, critic_sections, neural_ode
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
from diffenvs.envs.double_pendulum import FORCE_WEIGHT, STATE_WEIGHTS, DoublePendulum

ENV_ID = "DiffDoublePendulum-v0"


# ---- LQR about upright -----------------------------------------------------------------
def lqr_weights() -> tuple[np.ndarray, np.ndarray]:
    """The double pendulum's quadratic-cost weights :math:`Q` (6 x 6) and :math:`R` (1 x 1)."""
    return np.diag(STATE_WEIGHTS), np.array([[FORCE_WEIGHT]])


def double_pendulum_state(observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""The state :math:`(x, \theta_1, \theta_2, \dot x, \dot\theta_1, \dot\theta_2)` (wrapped angles) from a
    double-pendulum observation ``(..., 9)``."""
    return (observation[..., 0], torch.atan2(observation[..., 2], observation[..., 1]),
            torch.atan2(observation[..., 4], observation[..., 3]), observation[..., 5], observation[..., 6],
            observation[..., 7])


def double_pendulum_lqr_policy(problem: DoublePendulum) -> LinearFeedback:
    """The LQR controller about upright for ``problem``'s constants and quadratic-cost weights."""
    a, b = problem.linearisation()
    gain, _ = lqr(a, b, *lqr_weights())
    return LinearFeedback(problem, gain, double_pendulum_state)


def wrapped_double_pendulum_states(states: np.ndarray) -> np.ndarray:
    """Double-pendulum states ``(k, 6)`` with both pole angles wrapped to (-pi, pi]."""
    return wrapped(states, 6, slice(1, 3))


def reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference:
    """Swing-up: the lower bound 0 (no controller). Quadratic cost: LQR and the finite-horizon Riccati cost."""
    problem = problem_as(DoublePendulum, env_id, env_kwargs)
    if problem.cost == "terminal":
        return Reference("swing-up", "no closed form for the swing-up of a double pendulum; the cost "
                         "theta1(T)^2 + theta2(T)^2 + theta1dot(T)^2 + theta2dot(T)^2 >= 0 and the upright "
                         "still state reaches 0, so the reference optimum is 0 (a lower bound)",
                         problem, None, zero_optimum, None, plane=(1, 2))
    return lqr_reference(problem, *problem.linearisation(), *lqr_weights(), double_pendulum_state,
                         wrapped_double_pendulum_states, "Q = diag(1e-4, 100, 100, 0, 0, 0), R = 1e-2", plane=(1, 2))


CARD = register(Card(
    env_id=ENV_ID,
    presets={"double-swingup": {"initial_noise": 0.0},
             "double-upright": {"initial_angle": 0.1, "initial_noise": 0.0, "cost": "quadratic", "max_steps": 100}},
    # per objective, the cartpole's neural-ODE settings (not tuned on this environment); rl-baselines3-zoo has no
    # double pendulum on a cart: Pendulum-v1's entries, as for the cartpole
    # the critic learners (RL baselines, SHAC) train on the scored terminal cost shaped for their own discount, as on
    # the cartpole (the optimum is the scored one for any gamma; before, they trained on the LQR running cost)
    agents={"neural-ode": neural_ode, "rl": RL,
            **critic_sections("theta1(T)^2 + theta2(T)^2 + theta1dot(T)^2 + theta2dot(T)^2", RL, SWING_UP_OWN)},
    # the starts are drawn, as on the cartpole: 100 test episodes
    protocol=Protocol(episodes=100),
    budgets={
        "quick": {"rl": Budget(10_000, QUICK_SECONDS, 2_000), "neural-ode": Budget(80_000, QUICK_SECONDS, 8_000)},
        # equal footing: the cartpole's common budget, 320k transitions (1,600 episodes of 200 steps), for every
        # learning agent (the neural-ODE agent fits its schedule to it: 200 Adam iterations of 8 trajectories),
        # except SAC and TD3 at the zoo's n_timesteps for Pendulum-v1
        "full": {"gradient": Budget(320_000, eval_every=16_000),
                 "zeroth-order": Budget(320_000, eval_every=16_000), "ppo": Budget(320_000, eval_every=16_000),
                 "sac": Budget(20_000, eval_every=2_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "td3": Budget(20_000, eval_every=2_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "neural-ode-default": Budget(100_000, eval_every=16_000,
                                              cap="500 iterations of one trajectory, as on the cartpole")},
    },
    reference=reference,
    controllers={"lqr": double_pendulum_lqr_policy},
    tests=TestSettings(short={"max_steps": 3}),
))
