"""One evaluation protocol for every agent: fixed starts, deterministic policy, on the Gymnasium face."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import diffenvs  # noqa: F401  (registers the ids)

#: evaluation episodes are reset with seeds EVAL_SEED, EVAL_SEED + 1, ... (disjoint from training seeds)
EVAL_SEED = 10_000

GymPolicy = Callable[[np.ndarray], np.ndarray]
"""Gymnasium observation -> Gymnasium action in [-1, 1] (deterministic)."""


def evaluate(env_id: str, policy: GymPolicy, episodes: int = 10, env_kwargs: dict[str, Any] | None = None,
             seed: int = EVAL_SEED, states: np.ndarray | None = None) -> np.ndarray:
    """Costs (minus returns) of ``episodes`` episodes of ``policy`` on the Gymnasium face of ``env_id``.

    Episode ``i`` starts from ``reset(seed=seed + i)``, or from ``states[i]`` when given.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    env = gym.make(env_id, **(env_kwargs or {}))
    costs = np.empty(episodes)
    for i in range(episodes):
        options = None if states is None else {"state": states[i]}
        observation, _ = env.reset(seed=seed + i, options=options)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total += reward
            done = terminated or truncated
        costs[i] = -total
    env.close()
    return costs
