"""RL baselines: every algorithm trains on every environment; curves, objectives and stopping."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import diffenvs
from agents import rl
from agents.cards import cards
from agents.episodes import evaluate
from agents.registry import Budget


def tiny(env_id: str, algorithm: str) -> rl.Hyperparameters:
    """The table's row, with learning starting (and PPO updating) within a hundred steps."""
    return dataclasses.replace(rl.hyperparameters(env_id, algorithm), learning_starts=32, batch_size=25, n_steps=50,
                               n_epochs=2, buffer_size=1_000)


@pytest.mark.parametrize("algorithm", rl.ALGORITHMS)
@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
def test_every_baseline_trains_on_every_environment(env_id: str, algorithm: str) -> None:
    result = rl.train(env_id, algorithm, Budget(300, eval_every=150), seed=1, hp=tiny(env_id, algorithm), eval_episodes=1)
    assert result.transitions == 300
    assert [p["transitions"] for p in result.curve] == [150.0, 300.0]
    assert all(np.isfinite(p["cost"]) for p in result.curve)
    assert 0.0 < result.curve[0]["seconds"] < result.curve[1]["seconds"] == result.seconds
    env = gym.make(env_id)
    observation, _ = env.reset(seed=0)
    action = np.asarray(result.policy(observation))
    assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1.0)
    # learning happened: SAC and TD3 update from step 32 on, PPO after each 50-step rollout
    assert result.model.num_timesteps == 300 and result.model._n_updates > 0


def test_cartpole_trains_on_the_dense_cost_and_is_evaluated_on_the_default_objective() -> None:
    result = rl.train("DiffCartpole-v0", "td3", Budget(200, eval_every=200), hp=tiny("DiffCartpole-v0", "td3"),
                      eval_episodes=2)
    assert result.model.get_env().envs[0].unwrapped.problem.cost == "quadratic"
    default_cost = evaluate("DiffCartpole-v0", result.policy, 2).mean()
    assert result.curve[-1]["cost"] == pytest.approx(default_cost)
    assert rl.describe("DiffCartpole-v0", "td3")["trained_on"] == "quadratic (dense)"
    assert rl.describe("DiffZermelo-v0", "td3")["trained_on"] == "default"


def test_callback_stops_training_and_receives_the_curve_point() -> None:
    seen = []

    def on_step(step: int, metrics: dict[str, float]) -> bool:
        seen.append((step, metrics))
        return True

    result = rl.train("DiffZermelo-v0", "ppo", Budget(1_000, eval_every=50), callback=on_step,
                      hp=tiny("DiffZermelo-v0", "ppo"), eval_episodes=1)
    assert len(seen) == 1 and seen[0][0] == 50 and set(seen[0][1]) == {"transitions", "seconds", "cost"}
    assert result.transitions < 1_000 and len(result.curve) == 1


def test_curve_cost_replaces_the_default_evaluation() -> None:
    calls = []

    def curve_cost(policy) -> float:
        calls.append(policy)
        return 42.0

    result = rl.train("DiffIsochronism-v0", "ppo", Budget(100, eval_every=50), curve_cost=curve_cost,
                      hp=tiny("DiffIsochronism-v0", "ppo"), eval_episodes=1)
    # two points; the last is evaluated again once PPO's update after its last rollout is done
    assert len(calls) == 3 and [p["cost"] for p in result.curve] == [42.0, 42.0]


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        rl.train("DiffZermelo-v0", "dqn", Budget(10))
    with pytest.raises(ValueError, match="transitions"):
        Budget(0)
    with pytest.raises(TypeError, match="budget"):
        rl.train("DiffZermelo-v0", "ppo", 100)
    with pytest.raises(ValueError, match="gamma"):
        rl.Hyperparameters(gamma=1.5)
    with pytest.raises(ValueError, match="env_id"):
        rl.train("NoSuchEnv-v0", "ppo", Budget(10))


def test_every_card_names_registered_environments_and_algorithms() -> None:
    for env_id, card in cards().items():
        assert env_id in gym.registry and set(card.rl_hyperparameters) <= set(rl.ALGORITHMS)
        gym.make(env_id, **rl.training_objective(env_id).env_kwargs)  # the override is a valid keyword of the environment
