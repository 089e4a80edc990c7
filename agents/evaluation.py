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


def run_episodes(env_id: str, policy: GymPolicy, episodes: int = 10, env_kwargs: dict[str, Any] | None = None,
                 seed: int = EVAL_SEED, states: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Costs (minus returns) of ``episodes`` episodes of ``policy`` on the Gymnasium face of ``env_id``, and
    whether each one ended by termination (rather than truncation).

    Episode ``i`` starts from ``reset(seed=seed + i)``, or from ``states[i]`` when given.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    env = gym.make(env_id, **(env_kwargs or {}))
    costs, ended = np.empty(episodes), np.zeros(episodes, dtype=bool)
    for i in range(episodes):
        options = None if states is None else {"state": states[i]}
        observation, _ = env.reset(seed=seed + i, options=options)
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total += reward
        costs[i], ended[i] = -total, terminated
    env.close()
    return costs, ended


def evaluate(env_id: str, policy: GymPolicy, episodes: int = 10, env_kwargs: dict[str, Any] | None = None,
             seed: int = EVAL_SEED, states: np.ndarray | None = None) -> np.ndarray:
    """Costs (minus returns) of ``episodes`` episodes of ``policy`` on the Gymnasium face of ``env_id``
    (:func:`run_episodes` without the way they ended)."""
    return run_episodes(env_id, policy, episodes, env_kwargs, seed, states)[0]
