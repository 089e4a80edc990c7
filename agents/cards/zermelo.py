"""The Zermelo river crossing (``diffenvs.envs.zermelo``, report §4.2): presets, agents' settings, protocol, reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents import analytic
from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register
from agents.episodes import EVAL_SEED
from agents.neural_ode.config import tuned_run_transitions
from agents.registry import Budget
from agents.rl import ALGORITHMS
from agents.rl_zoo import from_zoo
from diffenvs import problem_of

ENV_ID = "DiffZermelo-v0"

#: the neural-ODE agent's tuned settings: 300-step rollouts (6 s), long enough to cross; one start (deterministic)
TUNED = dict(iterations=200, learning_rate=0.05, final_learning_rate=0.002, steps=300)


def reference(env_id: str, env_kwargs: dict[str, Any]) -> analytic.Reference:
    """Pontryagin's heading; the optimum is the deviation x(ℓ) by quadrature from each start."""
    problem = problem_of(env_id, **env_kwargs)
    params = problem.params

    def optimum(states: np.ndarray, seed: int = EVAL_SEED) -> dict[str, float | None]:
        return {"optimum": float(np.mean([s[0] + analytic.pontryagin_deviation(params, float(s[1])) for s in states]))}

    return analytic.Reference(
        "pontryagin", "Pontryagin heading cos u = -v/w(y); optimum: the deviation x(ℓ) by quadrature",
        problem, analytic.PontryaginPolicy(problem), optimum,
        analytic.along_episode("y (m), along the Pontryagin path", lambda e: e.states[:-1, 1]), plane=(0, 1))


#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1). The zoo has no
#: 2-D navigation task at this scale. Its small continuous tasks are Pendulum-v1 (a dense reward, like the crossing's
#: -dx per step; tuned for 20k transitions, this card's budget) and MountainCarContinuous-v0, whose entries are tuned
#: for hard exploration of a sparse reward (SAC ent_coef 0.1, gSDE with log_std_init -3.67) that the crossing does
#: not pose: it pays -dx every step, and the straight-across completion if the time limit comes first.
ZOO = {algorithm: from_zoo(algorithm, "Pendulum-v1") for algorithm in ALGORITHMS}

CARD = register(Card(
    env_id=ENV_ID,
    neural_ode=lambda env_kwargs: dict(TUNED),
    rl_hyperparameters=ZOO,
    # the start is deterministic, so one episode of a deterministic policy is exact
    protocol=Protocol(episodes=1),
    # five seeds for the agents whose runs train for minutes (neural-ODE, SAC, ...), ten for those under a minute
    seeds={"full": {"rl": 5, "neural-ode": 5, "neural-ode-default": 5}},
    budgets={
        "quick": {"rl": Budget(5_000, QUICK_SECONDS, 1_000), "neural-ode": Budget(15_000, QUICK_SECONDS, 1_500)},
        # equal footing: the neural-ODE agent's tuned run (60k transitions) for every learning agent, except SAC and
        # TD3, capped at the zoo's 20k for Pendulum-v1: an off-policy update per transition runs at ~60 (SAC) and
        # ~300 (TD3) transitions/s on one core, so 60k SAC transitions x 5 seeds alone would take 1.4 h
        "full": {"gradient": Budget(tuned_run_transitions(TUNED, TUNED["steps"]), eval_every=3_000),
                 "zeroth-order": Budget(60_000, eval_every=3_000), "ppo": Budget(60_000, eval_every=3_000),
                 "sac": Budget(20_000, eval_every=1_000), "td3": Budget(20_000, eval_every=1_000)},
    },
    reference=reference,
    analytic={"pontryagin": analytic.PontryaginPolicy},
    # the bank is crossed inside the three checked steps: the event location is differentiated
    tests=TestSettings(short={"max_steps": 3}, gradcheck_start=((0.3, 1.99), (0.4, 1.985))),
))
