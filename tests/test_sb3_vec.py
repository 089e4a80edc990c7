"""The vector face as an SB3 VecEnv: equal to SB3's DummyVecEnv of single environments, and SB3's conventions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan

import diffenvs
from agents.sb3_vec import NativeVecEnv, make_vec_env


def dummy(env_id: str, n: int, seed: int, env_kwargs: dict) -> DummyVecEnv:
    vec_env = DummyVecEnv([lambda: gym.make(env_id, **env_kwargs) for _ in range(n)])
    vec_env.seed(seed)
    return vec_env


def play_both(env_id: str, env_kwargs: dict, n: int = 3, seed: int = 7, steps: int = 40) -> np.ndarray:
    """Step the native VecEnv and the DummyVecEnv with the same random actions; assert every output equal; the dones."""
    native, reference = make_vec_env(env_id, n, seed, env_kwargs), dummy(env_id, n, seed, env_kwargs)
    assert isinstance(native, NativeVecEnv)
    np.testing.assert_array_equal(native.reset(), reference.reset())
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (steps, n, *native.action_space.shape)).astype(np.float32)
    all_dones = []
    for action in actions:
        observation, reward, dones, infos = native.step(action)
        expected_observation, expected_reward, expected_dones, expected_infos = reference.step(action)
        np.testing.assert_allclose(observation, expected_observation, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(reward, expected_reward, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(dones, expected_dones)
        assert reward.dtype == expected_reward.dtype and dones.dtype == expected_dones.dtype
        for info, expected in zip(infos, expected_infos):
            # a priced time limit (Zermelo's completion) is terminal for the learner; elsewhere the flags agree
            assert info["TimeLimit.truncated"] == (expected["TimeLimit.truncated"] and not native.priced_time_limit)
            assert ("terminal_observation" in info) == ("terminal_observation" in expected)
            if "terminal_observation" in info:
                np.testing.assert_allclose(info["terminal_observation"], expected["terminal_observation"], rtol=1e-6, atol=1e-6)
        all_dones.append(dones)
    return np.array(all_dones)


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
def test_native_vec_env_equals_dummy_vec_env_through_autoresets(env_id: str) -> None:
    dones = play_both(env_id, {"max_steps": 6})
    assert dones.sum() >= 3 * 3  # every environment went through several autoresets


def test_partial_ends_restart_only_the_environments_that_ended() -> None:
    # Zermelo's episodes end when the bank is reached, at a step that depends on the headings
    dones = play_both("DiffZermelo-v0", {}, n=4, steps=300)
    partial = [d.any() and not d.all() for d in dones]
    assert any(partial)


def test_sb3_conventions() -> None:
    env_id = "DiffCartpole-v0"
    check_env(gym.make(env_id))  # the single Gymnasium face passes SB3's own checker
    vec_env = VecCheckNan(make_vec_env(env_id, 2, 3, {"max_steps": 2}), raise_exception=True)
    assert vec_env.observation_space == gym.make(env_id).observation_space
    assert vec_env.action_space == gym.make(env_id).action_space
    observation = vec_env.reset()
    assert observation.shape == (2, *vec_env.observation_space.shape) and observation.dtype == np.float32
    for _ in range(2):
        observation, reward, dones, infos = vec_env.step(np.zeros((2, 1), np.float32))
    assert dones.all() and len(infos) == 2
    assert all(vec_env.observation_space.contains(info["terminal_observation"]) for info in infos)
    assert all(vec_env.observation_space.contains(o) for o in observation)
    assert vec_env.get_attr("num_envs") == [2, 2] and vec_env.env_is_wrapped(gym.Wrapper) == [False, False]


def test_ids_without_a_vector_face_use_dummy_vec_env_and_bad_input_is_named() -> None:
    assert isinstance(make_vec_env("Pendulum-v1", 2, 0), DummyVecEnv)
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("DiffZermelo-v0", 0, 0)
    with pytest.raises(TypeError, match="vector_env"):
        NativeVecEnv(gym.make("DiffZermelo-v0"))


def test_restart_episodes_is_the_autoreset_draw_and_checks_its_indices() -> None:
    envs = gym.make_vec("DiffCartpole-v0", num_envs=3, vectorization_mode="vector_entry_point")
    with pytest.raises(gym.error.ResetNeeded):
        envs.unwrapped.restart_episodes([0])
    envs.reset(seed=5)
    first = envs.unwrapped.restart_episodes([1])  # episode 1 of environment 1
    single = gym.make("DiffCartpole-v0")
    single.reset(seed=6)
    expected, _ = single.reset()  # the second episode of a single env seeded 5 + 1
    np.testing.assert_array_equal(first[0], expected)
    with pytest.raises(ValueError, match="indices"):
        envs.unwrapped.restart_episodes([3])


def test_a_priced_time_limit_is_terminal_for_the_learner() -> None:
    """Zermelo's time limit pays the straight-across completion: the learner must not bootstrap past it."""
    native = make_vec_env("DiffZermelo-v0", 2, 0, {"max_steps": 5})
    reference = dummy("DiffZermelo-v0", 2, 0, {"max_steps": 5})
    native.reset(), reference.reset()
    upstream = np.ones((2, 1), dtype=np.float32)  # heading u = π never crosses: every episode meets the time limit
    for _ in range(5):
        _, reward, dones, infos = native.step(upstream)
        _, expected_reward, _, expected_infos = reference.step(upstream)
    np.testing.assert_allclose(reward, expected_reward, rtol=1e-6)  # the same completion is paid
    assert dones.all() and [i["TimeLimit.truncated"] for i in expected_infos] == [True, True]
    assert [i["TimeLimit.truncated"] for i in infos] == [False, False]
    assert not make_vec_env("DiffCartpole-v0", 2, 0, {}).priced_time_limit


def test_a_vector_env_that_restarts_by_itself_is_refused() -> None:
    vector = gym.make_vec("DiffZermelo-v0", num_envs=2, vectorization_mode="vector_entry_point",
                          autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="autoreset_mode"):
        NativeVecEnv(vector)
