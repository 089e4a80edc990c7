"""RL baselines: every algorithm trains on every environment; curves, objectives and stopping."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import diffenvs
from agents import registry, rl
from agents.cards import cards
from agents.episodes import evaluate
from agents.registry import Budget
from agents.rl_zoo import ZOO, from_zoo


def tiny(env_id: str, algorithm: str) -> rl.Hyperparameters:
    """The card's settings on two environments, learning starting (and PPO updating) within a hundred steps, small networks."""
    hp = rl.hyperparameters(env_id, algorithm)
    small = dict(n_envs=2, batch_size=25, net_arch=(16, 16))
    if algorithm == "ppo":
        return dataclasses.replace(hp, n_steps=25, n_epochs=2, **small)
    return dataclasses.replace(hp, learning_starts=32, buffer_size=1_000, **small)


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


def test_cartpole_trains_on_the_shaped_cost_and_is_evaluated_on_the_default_objective() -> None:
    result = rl.train("DiffCartpole-v0", "td3", Budget(200, eval_every=200), hp=tiny("DiffCartpole-v0", "td3"),
                      eval_episodes=2)
    assert result.model.get_env().get_attr("problem")[0].cost == "terminal-shaped"
    default_cost = evaluate("DiffCartpole-v0", result.policy, 2).mean()
    assert result.curve[-1]["cost"] == pytest.approx(default_cost)
    assert rl.describe("DiffCartpole-v0", "td3")["trained_on"] == "terminal, shaped (gamma 0.98)"
    assert rl.describe("DiffDecayDesign-v0", "td3")["trained_on"] == "default"


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
    with pytest.raises(ValueError, match="n_epochs"):
        rl.Hyperparameters(n_epochs=3).sb3_arguments("sac", 1)
    with pytest.raises(ValueError, match="task"):
        from_zoo("sac", "NoSuchTask-v0")
    with pytest.raises(ValueError, match="policy_kwargs"):
        from_zoo("sac", "x", {"policy_kwargs": "dict(use_expln=True)"})
    with pytest.raises(ValueError, match="env_id"):
        rl.train("NoSuchEnv-v0", "ppo", Budget(10))


def test_every_card_names_registered_environments_and_algorithms() -> None:
    for env_id, card in cards().items():
        assert env_id in gym.registry and set(card.agents) <= set(registry.agents()) | set(registry.FAMILIES)
        assert all(rl.hyperparameters(env_id, algorithm) for algorithm in rl.ALGORITHMS)  # valid settings
        gym.make(env_id, **rl.training_objective(env_id).env_kwargs)  # the override is a valid keyword of the environment


def test_zoo_entries_become_sb3_arguments() -> None:
    td3 = from_zoo("td3", "Pendulum-v1")
    arguments = td3.sb3_arguments("td3", 2)
    assert arguments["policy_kwargs"] == {"net_arch": [400, 300]} and arguments["learning_starts"] == 10_000
    assert arguments["gamma"] == 0.98 and td3.n_timesteps == 20_000 and td3.zoo == "td3.yml:Pendulum-v1"
    np.testing.assert_array_equal(arguments["action_noise"]._sigma, [0.1, 0.1])
    ppo = from_zoo("ppo", "Pendulum-v1")
    assert ppo.n_envs == 4 and ppo.sb3_arguments("ppo", 1)["use_sde"] is True and not ppo.norm_obs
    swingup = from_zoo("ppo", "InvertedPendulumSwingupBulletEnv-v0")
    assert swingup.norm_obs and swingup.norm_reward and swingup.n_envs == 8
    decaying = from_zoo("sac", "LunarLanderContinuous-v3", {"learning_rate": "lin_7.3e-4",
                                                             "normalize": "dict(norm_obs=True, norm_reward=False)"})
    schedule = decaying.sb3_arguments("sac", 1)["learning_rate"]
    assert schedule(1.0) == pytest.approx(7.3e-4) and schedule(0.5) == pytest.approx(3.65e-4) and schedule(0.0) == 0.0
    assert decaying.norm_obs and not decaying.norm_reward
    assert set(rl.describe("DiffCartpole-v0", "ppo")) >= {"trained_on", "zoo", "n_envs", "gamma", "use_sde"}
    assert rl.describe("DiffCartpole-v0", "ppo")["zoo"] == "ppo.yml:Pendulum-v1"
    assert all(a in rl.ALGORITHMS for a, _ in ZOO)


def test_normalised_training_evaluates_with_the_frozen_observation_normalisation() -> None:
    hp = dataclasses.replace(tiny("DiffCartpole-v0", "ppo"), norm_obs=True, norm_reward=True)
    result = rl.train("DiffCartpole-v0", "ppo", Budget(100, eval_every=100), hp=hp, eval_episodes=1)
    normaliser = result.model.get_env()
    assert normaliser.norm_obs and normaliser.obs_rms.count > 100
    observation, _ = gym.make("DiffCartpole-v0").reset(seed=3)
    expected = result.model.predict(normaliser.normalize_obs(observation), deterministic=True)[0]
    np.testing.assert_allclose(result.policy(observation), expected, rtol=1e-5, atol=1e-6)
    normaliser.obs_rms.update(100.0 * np.ones((5, observation.shape[0])))  # later statistics do not move the policy's
    np.testing.assert_allclose(result.policy(observation), expected, rtol=1e-5, atol=1e-6)
    # the curve's last point is the returned policy under the protocol
    assert result.curve[-1]["cost"] == pytest.approx(evaluate("DiffCartpole-v0", result.policy, 1).mean())


def _sanity_script():
    spec = importlib.util.spec_from_file_location("rl_sanity", Path(__file__).resolve().parents[1] / "scripts" / "rl_sanity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # tyro resolves the config's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_sanity_script_trains_on_pendulum_and_writes_its_table(tmp_path: Path) -> None:
    rows = _sanity_script().main(["--algorithms", "sac", "--transitions", "200", "--eval-every", "200",
                                  "--episodes", "1", "--out", str(tmp_path)])
    assert [row["algorithm"] for row in rows] == ["sac"] and rows[0]["transitions"] == "200"
    text = (tmp_path / "rl_sanity.md").read_text()
    assert "| sac | sac.yml:Pendulum-v1 | 200 |" in text and "-157.0 ± 88.7 (20k)" in text
    with pytest.raises(SystemExit):
        _sanity_script().main(["--algorithms", "dqn"])
