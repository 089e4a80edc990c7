"""DiffDecayDesign-v0 and the design agent: checkers, faces, the Gaussian update, sensitivities, designs vs 1/θ̂."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import diffenvs
from diffenvs.core.numerics import SCALAR, TORCH
from diffenvs.core.problem import Held
from diffenvs.envs.decay_design import DecayDesign, DecayDesignParams
from studies.design import DesignConfig, information_gain, model_sensitivity, optimal_design, sequential_design

ENV_ID = "DiffDecayDesign-v0"


def test_registered_and_passes_both_checkers_without_warnings() -> None:
    assert ENV_ID in diffenvs.ENV_IDS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(gym.make(ENV_ID).unwrapped)
        sb3_check_env(gym.make(ENV_ID))


def test_vector_face_matches_n_single_envs() -> None:
    n, seed, steps = 3, 4, 12  # past the end of the first episodes (10 measurements): through an autoreset
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, 1)).astype(np.float32)
    vector = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make(ENV_ID) for _ in range(n)]
    obs, _ = vector.reset(seed=seed)
    np.testing.assert_allclose(obs, [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)], rtol=1e-6)
    ended, episodes_ended = np.zeros(n, bool), 0
    for k in range(steps):
        obs, reward, terminated, truncated, _ = vector.step(actions[k])
        for i, env in enumerate(singles):
            expected = (env.reset()[0], 0.0, False, False) if ended[i] else env.step(actions[k, i])[:4]
            np.testing.assert_allclose(obs[i], expected[0], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(reward[i], expected[1], rtol=1e-9, atol=1e-12)
            assert (terminated[i], truncated[i]) == expected[2:]
        ended = terminated | truncated
        episodes_ended += int(ended.sum())
    assert episodes_ended == n  # every episode ended at its 10th measurement and restarted


def test_update_is_the_conjugate_posterior_of_the_linearised_model_and_reward_is_its_entropy_drop() -> None:
    params = DecayDesignParams(theta_true=1.7, noise_std=0.05)
    env = gym.make(ENV_ID, params=params)
    env.reset(seed=3)
    mean, variance = env.unwrapped.state
    action = np.array([-0.78], np.float32)  # t = 5 (a + 1) / 2, about 0.55 s
    noise = env.unwrapped.episode_noise(1)[0, 0]
    _, reward, *_ = env.step(action)
    (t,) = env.unwrapped.problem.control_from_action((float(action[0]),), SCALAR)
    assert t == pytest.approx(0.55, abs=1e-6)
    y = math.exp(-params.theta_true * t) + params.noise_std * noise
    g = -t * math.exp(-mean * t)  # the linearised model: y = u(t; m) + g (θ - m) + σ ε
    precision = 1 / variance + g * g / params.noise_std**2  # information form of the Gaussian posterior
    posterior_mean = (mean / variance + g * (y - math.exp(-mean * t) + g * mean) / params.noise_std**2) / precision
    np.testing.assert_allclose(env.unwrapped.state, [posterior_mean, 1 / precision], rtol=1e-12)
    assert reward == pytest.approx(0.5 * math.log(variance * precision), rel=1e-12)


def test_measurement_noise_comes_from_the_seed() -> None:
    env = gym.make(ENV_ID)
    action = np.array([-0.8], np.float32)
    means = []
    for seed in (1, 1, 2):
        env.reset(seed=seed)
        means.append(env.step(action)[0][0])
    assert means[0] == means[1] != means[2]


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        DecayDesign(max_steps=0)
    with pytest.raises(ValueError, match="noise_std"):
        DecayDesign(params=DecayDesignParams(noise_std=0.0))
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="posterior_variance"):
        env.reset(options={"state": [2.0, 0.0]})


def test_torch_step_is_batched_and_differentiable() -> None:
    problem = DecayDesign()
    mean = torch.tensor([2.0, 1.5], dtype=torch.float64, requires_grad=True)
    variance = torch.tensor([1.0, 0.2], dtype=torch.float64)
    time = torch.tensor([0.5, 0.8], dtype=torch.float64, requires_grad=True)
    (mean1, variance1), reward, _ = problem.step(0.0, (mean, variance), Held((time,)), x0=None, params=problem.params,
                                                 ns=TORCH, terminal_due=False, noise=(torch.zeros(2, dtype=torch.float64),))
    assert mean1.shape == variance1.shape == reward.shape == (2,)
    (slope,) = torch.autograd.grad(reward.sum(), time)
    assert abs(slope[0].item()) < 1e-12  # t = 1/θ̂ maximises the information gain
    assert slope[1].item() < 0  # 0.8 > 1/1.5: measuring earlier gains more


# ---- the design agent -----------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["rk4", "dopri5"])
def test_sensitivity_through_the_solver_matches_the_closed_form(solver: str) -> None:
    config = DesignConfig(solver=solver, steps=40)
    t = torch.linspace(0.05, 4.0, 30, dtype=torch.float64)
    for theta in (1.7, 2.0):
        expected = -t * torch.exp(-theta * t)
        torch.testing.assert_close(model_sensitivity(t, theta, config), expected, rtol=1e-5, atol=1e-6)


def test_the_derivative_of_the_sensitivity_in_time_agrees_both_ways() -> None:
    config = DesignConfig(steps=40)
    slopes = {}
    for way in ("autograd", "schwarz"):
        t = torch.linspace(0.05, 4.0, 30, dtype=torch.float64, requires_grad=True)
        (slopes[way],) = torch.autograd.grad(model_sensitivity(t, 1.7, config, way).sum(), t)
    expected = (1.7 * t.detach() - 1) * torch.exp(-1.7 * t.detach())
    torch.testing.assert_close(slopes["autograd"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(slopes["schwarz"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(slopes["autograd"], slopes["schwarz"], rtol=1e-5, atol=1e-6)


def test_criterion_is_the_environments_reward() -> None:
    problem = DecayDesign()
    t = torch.tensor([0.3, 0.9], dtype=torch.float64)
    mean, variance = torch.tensor([2.0, 1.4], dtype=torch.float64), torch.tensor([1.0, 0.05], dtype=torch.float64)
    _, reward, _ = problem.step(0.0, (mean, variance), Held((t,)), x0=None, params=problem.params, ns=TORCH,
                                terminal_due=False)
    gain = information_gain(model_sensitivity(t, mean, DesignConfig(steps=30)), variance, problem.params.noise_std)
    torch.testing.assert_close(gain, reward, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("derivative", ["autograd", "schwarz"])
def test_one_design_step_agrees_with_the_analytic_optimum(derivative: str) -> None:
    means = np.array([2.0, 1.7])
    config = DesignConfig(derivative=derivative, tolerance=1e-3, patience=5)
    design = optimal_design(means, np.array([1.0, 0.01]), 0.05, config)
    np.testing.assert_allclose(design.times, 1.0 / means, rtol=0.01)
    assert design.iterations < config.max_iterations  # it stopped by the tolerance, not the budget


def test_sequential_design_on_the_gymnasium_face_and_the_vector_face_agree() -> None:
    config = DesignConfig(derivative="schwarz", tolerance=1e-3, patience=5)
    kwargs = dict(max_steps=2)
    single = sequential_design(gym.make(ENV_ID, **kwargs), config, seed=5)
    batch = sequential_design(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs),
                              config, seed=4)
    assert single.designs.shape == (2, 1) and batch.designs.shape == (2, 2)
    np.testing.assert_allclose(single.designs * single.means[:-1], 1.0, rtol=0.01)
    # the same seed draws the same noise: the second vector env is the single env's episode
    np.testing.assert_allclose(batch.means[:, 1], single.means[:, 0], rtol=1e-3)
    assert (np.diff(single.variances[:, 0]) < 0).all() and (single.rewards > 0).all()


def test_design_config_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="derivative"):
        DesignConfig(derivative="numeric")
    with pytest.raises(ValueError, match="max_iterations"):
        DesignConfig(max_iterations=0)
    with pytest.raises(ValueError, match="variances"):
        optimal_design(2.0, 0.0, 0.05, DesignConfig())
