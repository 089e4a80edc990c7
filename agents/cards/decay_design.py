"""Sequential design on du/dt = -θu (``diffenvs.envs.decay_design``, report §6): protocol, budgets, reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents import analytic
from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register
from agents.episodes import EVAL_SEED, Episode, evaluate, gym_policy
from agents.registry import Budget
from agents.rl_zoo import from_zoo
from diffenvs import problem_of

ENV_ID = "DiffDecayDesign-v0"


def reference(env_id: str, env_kwargs: dict[str, Any]) -> analytic.Reference:
    """The greedy design t = 1/θ̂; its cost on the same episodes is the reference (one-step optimal)."""
    problem = problem_of(env_id, **env_kwargs)
    greedy = analytic.GreedyDesign(problem)

    def greedy_cost(states: np.ndarray, seed: int = EVAL_SEED) -> dict[str, float | None]:  # the same Gymnasium episodes
        costs = evaluate(env_id, gym_policy(greedy, problem), len(states), env_kwargs, seed, states)
        return {"optimum": float(costs.mean())}

    def belief_probe(episode: Episode | None) -> tuple[str, np.ndarray, np.ndarray]:
        if episode is None:
            raise ValueError("this probe needs the reference's episode")
        return "measurement n, along the greedy design's episode", np.arange(len(episode.controls)), \
            episode.observations[:-1]

    return analytic.Reference("greedy-design", "measurement time t = 1/theta_hat, the maximiser of each measurement's "
                              "information (report §6); reference: its cost on the same episodes, one-step optimal",
                              problem, greedy, greedy_cost, belief_probe, plane=(0, 1))


#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1), the zoo's small
#: continuous-control task with a dense reward (here the information gain of each measurement). Two deviations scale
#: the zoo's 20k and 100k budgets to this card's 5k: TD3 collects random transitions for half the budget as the zoo
#: does (2500 of 5k, the zoo 10k of 20k), and PPO rollouts of 4 x 128 transitions (the zoo 4 x 1024) give ten updates,
#: where the zoo's rollouts would give one.
ZOO = {"ppo": from_zoo("ppo", "Pendulum-v1", n_steps=128), "sac": from_zoo("sac", "Pendulum-v1"),
       "td3": from_zoo("td3", "Pendulum-v1", learning_starts=2500)}

CARD = register(Card(
    env_id=ENV_ID,
    rl_hyperparameters=ZOO,
    protocol=Protocol(episodes=20),
    budgets={
        "quick": {"rl": Budget(2_000, QUICK_SECONDS, 500), "neural-ode": Budget(1_000, QUICK_SECONDS, 100)},
        # equal footing: every learning agent gets the same 5,000 transitions and the same curve grid
        "full": {"rl": Budget(5_000, eval_every=250), "zeroth-order": Budget(5_000, eval_every=250),
                 "gradient": Budget(5_000, eval_every=250)},
    },
    reference=reference,
    analytic={"greedy-design": analytic.GreedyDesign},
    tests=TestSettings(short={"max_steps": 3}),
))
