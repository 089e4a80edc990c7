"""The cartpole swing-up (``diffenvs.envs.cartpole``, report §4.3): presets, agents' settings, protocol, reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents import analytic
from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register
from agents.neural_ode.config import tuned_run_transitions
from agents.registry import Budget
from agents.rl import ALGORITHMS, TrainingObjective
from agents.rl_zoo import from_zoo
from diffenvs import problem_of

ENV_ID = "DiffCartpole-v0"


#: the neural-ODE agent's tuned settings per objective: the terminal swing-up cost, the LQR's quadratic cost
SWING_UP = dict(iterations=300, lbfgs_steps=5, learning_rate=0.05, final_learning_rate=0.001, batch_size=8)
QUADRATIC = dict(iterations=400, learning_rate=0.05, final_learning_rate=0.001, beta2=0.9, batch_size=8)


def neural_ode(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Tuned per objective: the terminal swing-up cost, or the LQR's quadratic running cost."""
    return dict(SWING_UP if env_kwargs.get("cost", "terminal") == "terminal" else QUADRATIC)


def reference(env_id: str, env_kwargs: dict[str, Any]) -> analytic.Reference:
    """Swing-up: the lower bound 0 (no controller). Quadratic cost: LQR and the finite-horizon Riccati cost."""
    problem = problem_of(env_id, **env_kwargs)
    if problem.cost == "terminal":
        return analytic.Reference("swing-up", "no closed form; the cost phi(T)^2 + phidot(T)^2 >= 0 and the report's "
                                  "swing-up reaches ~0, so the reference optimum is 0 (a lower bound)",
                                  problem, None, analytic.zero_optimum, None, plane=(2, 3))
    a, b = analytic.cartpole_linearisation(problem.params)
    q, r = analytic.lqr_weights()
    gain, p = analytic.lqr(a, b, q, r)
    p_finite = analytic.finite_horizon_riccati(a, b, q, r, problem.horizon)[0]

    return analytic.Reference(
        "lqr", "LQR on the linearisation about upright (report's Q, R); optimum: s0' P(0) s0 of the "
        "finite-horizon Riccati ODE over T (the linear system's optimum with continuous control)",
        problem, analytic.LinearFeedback(problem, gain), analytic.quadratic_costs(analytic.wrapped_states, p_finite, p, gain),
        analytic.along_episode("t (s), along the LQR path", lambda e: e.times[:-1]), plane=(2, 3))


#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1). Both swing an
#: underactuated pendulum up with one bounded force or torque, and the baselines train on a dense quadratic cost of the
#: form of Pendulum's reward; the zoo tunes Pendulum-v1 for 20k (SAC, TD3) and 100k (PPO) transitions, the order of
#: this card's budgets. The literal analogue, InvertedPendulumSwingupBulletEnv-v0, is tuned for 300k (SAC, TD3) and 2M
#: (PPO) transitions: its PPO rollouts of 8 x 2048 transitions would leave three updates in the 60k budget.
ZOO = {algorithm: from_zoo(algorithm, "Pendulum-v1") for algorithm in ALGORITHMS}


CARD = register(Card(
    env_id=ENV_ID,
    presets={"swingup": {"initial_noise": 0.0},
             "upright": {"initial_angle": 0.1, "initial_noise": 0.0, "cost": "quadratic"}},
    neural_ode=neural_ode,
    rl_objective=TrainingObjective(
        {"cost": "quadratic"}, "quadratic (dense)",
        "the default pays -(phi(T)^2 + phidot(T)^2) only at T; the LQR running cost rewards uprightness each step"),
    rl_hyperparameters=ZOO,
    protocol=Protocol(episodes=20),
    # five seeds for the agents whose runs train for minutes (RL, neural-ODE), ten for SHAC, ES and CMA-ES
    seeds={"full": {"rl": 5, "neural-ode": 5, "neural-ode-default": 5}},
    budgets={
        "quick": {"rl": Budget(10_000, QUICK_SECONDS, 2_000), "neural-ode": Budget(80_000, QUICK_SECONDS, 8_000)},
        # equal footing: the neural-ODE agent's tuned swing-up run (320k transitions) for every learning agent, except
        # SAC and TD3, capped at the zoo's 20k for Pendulum-v1 (an off-policy update per transition: 320k SAC
        # transitions would take about 1.5 h a seed on one core)
        "full": {"gradient": Budget(tuned_run_transitions(SWING_UP, 100), eval_every=8_000),
                 "zeroth-order": Budget(320_000, eval_every=8_000), "ppo": Budget(320_000, eval_every=8_000),
                 "sac": Budget(20_000, eval_every=1_000), "td3": Budget(20_000, eval_every=1_000),
                 # the untuned agent's batch of one takes a third of a second an iteration: 1,000 iterations
                 "neural-ode-default": Budget(100_000, eval_every=8_000)},
    },
    reference=reference,
    analytic={"lqr": analytic.cartpole_lqr_policy},
    tests=TestSettings(short={"max_steps": 3}),
))
