"""Sequential design on du/dt = -θu (``diffenvs.decay_design``, report §6): protocol, budgets, reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents import analytic
from agents.cards import Card, Protocol, TestSettings, register
from agents.episodes import Episode, evaluate, gym_policy
from agents.neural_ode.config import tuned_run_transitions
from agents.registry import Budget
from diffenvs import problem_of

ENV_ID = "DiffDecayDesign-v0"


def reference(env_id: str, env_kwargs: dict[str, Any]) -> analytic.Reference:
    """The greedy design t = 1/θ̂; its cost on the same episodes is the reference (one-step optimal)."""
    problem = problem_of(env_id, **env_kwargs)
    greedy = analytic.GreedyDesign(problem)

    def greedy_cost(states: np.ndarray) -> dict[str, float | None]:  # the Gymnasium episodes from the same starts
        costs = evaluate(env_id, gym_policy(greedy, problem), len(states), env_kwargs, states=states)
        return {"optimum": float(costs.mean())}

    def belief_probe(episode: Episode | None) -> tuple[str, np.ndarray, np.ndarray]:
        if episode is None:
            raise ValueError("this probe needs the reference's episode")
        return "measurement n, along the greedy design's episode", np.arange(len(episode.controls)), \
            episode.observations[:-1]

    return analytic.Reference("greedy-design", "measurement time t = 1/theta_hat, the maximiser of each measurement's "
                              "information (report §6); reference: its cost on the same episodes, one-step optimal",
                              problem, greedy, greedy_cost, belief_probe, plane=(0, 1))


CARD = register(Card(
    env_id=ENV_ID,
    protocol=Protocol(episodes=20),
    budgets={
        "quick": {"rl": Budget(2_000, 30.0, 500), "neural-ode": Budget(1_000, 30.0, 100)},
        "full": {"rl": Budget(5_000, eval_every=250),
                 "neural-ode": Budget(tuned_run_transitions({}, 10), eval_every=50)},  # its default run
    },
    reference=reference,
    analytic={"greedy-design": analytic.GreedyDesign},
    tests=TestSettings(short={"max_steps": 3}),
))
