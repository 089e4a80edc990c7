"""The double pendulum on a cart (``diffenvs.envs.double_pendulum``): presets, agents' settings, protocol, reference.

Not tuned yet: the neural-ODE settings below are the cartpole's swing-up settings, and the
budgets are modest, a smoke run of every agent rather than a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents import analytic
from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register
from agents.cards.cartpole import QUADRATIC, SWING_UP, ZOO
from agents.neural_ode.config import tuned_run_transitions
from agents.registry import Budget
from agents.rl import TrainingObjective
from diffenvs import problem_of

ENV_ID = "DiffDoublePendulum-v0"


def neural_ode(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Per objective, the cartpole's settings (not tuned on this environment)."""
    return dict(SWING_UP if env_kwargs.get("cost", "terminal") == "terminal" else QUADRATIC)


def reference(env_id: str, env_kwargs: dict[str, Any]) -> analytic.Reference:
    """Swing-up: the lower bound 0 (no controller). Quadratic cost: LQR and the finite-horizon Riccati cost."""
    problem = problem_of(env_id, **env_kwargs)
    if problem.cost == "terminal":
        return analytic.Reference("swing-up", "no closed form for the swing-up of a double pendulum; the cost "
                                  "theta1(T)^2 + theta2(T)^2 + theta1dot(T)^2 + theta2dot(T)^2 >= 0 and the upright "
                                  "still state reaches 0, so the reference optimum is 0 (a lower bound)",
                                  problem, None, analytic.zero_optimum, None, plane=(1, 2))
    a, b = problem.linearisation()
    q, r = analytic.double_pendulum_lqr_weights()
    gain, p = analytic.lqr(a, b, q, r)
    p_finite = analytic.finite_horizon_riccati(a, b, q, r, problem.horizon)[0]

    return analytic.Reference(
        "lqr", "LQR on the linearisation about upright (Q = diag(1e-4, 100, 100, 0, 0, 0), R = 1e-2); optimum: "
        "s0' P(0) s0 of the finite-horizon Riccati ODE over T (the linear system's optimum with continuous control)",
        problem, analytic.double_pendulum_lqr_policy(problem),
        analytic.quadratic_costs(analytic.wrapped_double_pendulum_states, p_finite, p, gain),
        analytic.along_episode("t (s), along the LQR path", lambda e: e.times[:-1]), plane=(1, 2))


CARD = register(Card(
    env_id=ENV_ID,
    presets={"double-swingup": {"initial_noise": 0.0},
             "double-upright": {"initial_angle": 0.1, "initial_noise": 0.0, "cost": "quadratic", "max_steps": 100}},
    neural_ode=neural_ode,
    rl_objective=TrainingObjective(
        {"cost": "quadratic"}, "quadratic (dense)",
        "the default pays the poles' squared angles and speeds only at T; the LQR running cost rewards uprightness "
        "each step"),
    # rl-baselines3-zoo has no double pendulum on a cart: Pendulum-v1's entries, as for the cartpole
    rl_hyperparameters=ZOO,
    protocol=Protocol(episodes=10),
    seeds={"full": 3},
    budgets={
        "quick": {"rl": Budget(10_000, QUICK_SECONDS, 2_000), "neural-ode": Budget(80_000, QUICK_SECONDS, 8_000)},
        "full": {"gradient": Budget(tuned_run_transitions(SWING_UP, 200), eval_every=16_000),
                 "zeroth-order": Budget(160_000, eval_every=16_000), "ppo": Budget(160_000, eval_every=16_000),
                 "sac": Budget(20_000, eval_every=2_000), "td3": Budget(20_000, eval_every=2_000),
                 "neural-ode-default": Budget(100_000, eval_every=16_000)},
    },
    reference=reference,
    analytic={"lqr": analytic.double_pendulum_lqr_policy},
    tests=TestSettings(short={"max_steps": 3}),
))
