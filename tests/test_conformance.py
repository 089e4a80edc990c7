"""Conformance of every registered id: checkers, determinism, faces agreeing, gradients."""

from __future__ import annotations

import dataclasses
import math
import warnings

import gymnasium as gym
import numpy as np
import oscillator
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import diffenvs
from agents.cards import card
from diffenvs.core.problem import OdeProblem
from diffenvs.envs.cartpole import CartpoleParams
from diffenvs.envs.zermelo import ZermeloParams

OSCILLATOR = oscillator.ENV_ID
DampedOscillator, DampedOscillatorEnv, DampedOscillatorVectorEnv = (
    oscillator.DampedOscillator, oscillator.DampedOscillatorEnv, oscillator.DampedOscillatorVectorEnv)
IDS = diffenvs.registered_ids()


def run_actions(env: gym.Env, seed: int, actions: np.ndarray):
    """Observations, rewards and states of an episode (stops at its end)."""
    obs, _ = env.reset(seed=seed)
    observations, rewards, states = [obs], [], [env.unwrapped.state]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs), rewards.append(reward), states.append(env.unwrapped.state)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards), np.array(states)


def random_actions(env_id: str, steps: int, seed: int = 0, batch: tuple[int, ...] = ()) -> np.ndarray:
    space = gym.make(env_id).action_space
    return np.random.default_rng(seed).uniform(-1, 1, (steps, *batch, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("env_id", IDS)
def test_env_checkers_pass_without_warnings(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(gym.make(env_id).unwrapped)
        sb3_check_env(gym.make(env_id))


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_dtypes_and_documented_attributes(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert env.observation_space.dtype == np.float32 and env.action_space.dtype == np.float32
    assert obs.dtype == np.float32 and obs in env.observation_space and info == {}
    problem = env.unwrapped.problem
    assert env.unwrapped.state.shape == (problem.state_dim,) and env.unwrapped.state.dtype == np.float64
    assert env.unwrapped.dt == problem.dt > 0
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory_bit_for_bit(env_id: str) -> None:
    actions = random_actions(env_id, 60)
    first = run_actions(gym.make(env_id), 7, actions)
    second = run_actions(gym.make(env_id), 7, actions)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = run_actions(gym.make(env_id), 8, actions)
    problem = gym.make(env_id).unwrapped.problem
    if problem.initial_draws[1] or problem.step_noise:  # a random start or noise: another seed differs
        assert not np.array_equal(first[2], other[2])


@pytest.mark.parametrize("env_id", IDS)
def test_reset_from_a_given_state(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    state = env.unwrapped.state * 0.5 + 0.01
    env.reset(options={"state": state})
    np.testing.assert_array_equal(env.unwrapped.state, state)
    with pytest.raises(ValueError, match="state"):
        env.reset(options={"state": np.full(state.shape, np.nan)})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"state": np.zeros(state.shape[0] + 1)})
    with pytest.raises(ValueError, match="unknown keys"):
        env.reset(options={"start": state})


@pytest.mark.parametrize("env_id", IDS)
def test_bad_actions_are_refused_and_change_nothing(env_id: str) -> None:
    env = gym.make(env_id)
    with pytest.raises(ResetNeeded):
        env.step(env.action_space.sample())
    env.reset(seed=0)
    before = env.unwrapped.state.copy()
    bad = np.full(env.action_space.shape, np.nan, np.float32)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(np.zeros(env.action_space.shape[0] + 1, np.float32))
    np.testing.assert_array_equal(env.unwrapped.state, before)
    env.step(env.action_space.sample())  # still usable


@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_rendering_is_headless(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.min() < frame.max()  # something is drawn


@pytest.mark.parametrize("env_id", IDS)
def test_vector_face_equals_n_single_envs(env_id: str) -> None:
    """N single envs seeded s, s+1, ... and one vector env seeded s, through autoresets."""
    n, seed = 3, 11
    vector = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make(env_id) for _ in range(n)]
    steps = 2 * singles[0].unwrapped.problem.max_steps + 5 if env_id != "DiffZermelo-v0" else 260
    actions = random_actions(env_id, steps, batch=(n,))
    obs, _ = vector.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_allclose(obs, np.array(single_obs), rtol=1e-6, atol=1e-7)
    needs_reset = np.zeros(n, bool)
    episodes_ended = 0
    for k in range(steps):
        obs, reward, terminated, truncated, _ = vector.step(actions[k])
        for i, env in enumerate(singles):
            if needs_reset[i]:
                expected = (env.reset()[0], 0.0, False, False)
            else:
                expected = env.step(actions[k, i])[:4]
            np.testing.assert_allclose(obs[i], expected[0], rtol=1e-6, atol=1e-6, err_msg=f"step {k} env {i}")
            np.testing.assert_allclose(reward[i], expected[1], rtol=1e-7, atol=1e-9)
            assert (terminated[i], truncated[i]) == (expected[2], expected[3])
        needs_reset = terminated | truncated
        episodes_ended += int(needs_reset.sum())
    assert episodes_ended >= n  # the comparison went through autoresets


def test_vector_face_errors() -> None:
    vector = gym.make_vec("DiffCartpole-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ResetNeeded):
        vector.step(np.zeros((2, 1), np.float32))
    vector.reset(seed=0)
    with pytest.raises(ValueError, match="actions must have shape"):
        vector.step(np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="actions must be finite"):
        vector.step(np.array([[0.0], [np.inf]], np.float32))
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("DiffCartpole-v0", num_envs=0, vectorization_mode="vector_entry_point")


def physical_controls(problem, actions: np.ndarray) -> torch.Tensor:
    """Physical controls of Gymnasium actions, through the definition's own map."""
    a = torch.as_tensor(actions, dtype=torch.float64)
    return torch.stack(problem.control_from_action(a.unbind(-1), diffenvs.core.numerics.TORCH), -1)


@pytest.mark.parametrize("env_id", IDS)
def test_sampled_rollout_equals_env_step(env_id: str) -> None:
    env = gym.make(env_id)
    problem = env.unwrapped.problem
    steps = min(problem.max_steps, 120)
    actions = random_actions(env_id, steps, seed=1)
    env.reset(seed=5)
    x0 = torch.as_tensor(env.unwrapped.state)[None]
    noise = torch.as_tensor(env.unwrapped.episode_noise(steps))[:, None] if problem.step_noise else None
    _, rewards, states = run_actions(env, 5, actions)
    trajectory = diffenvs.rollout(problem, physical_controls(problem, actions)[:, None], x0, steps=steps, noise=noise)
    k = len(rewards)
    np.testing.assert_allclose(trajectory.states[: k + 1, 0].numpy(), states, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(trajectory.rewards[:k, 0].numpy(), rewards, rtol=1e-10, atol=1e-10)


def tensor_params(problem) -> tuple[list[str], list[torch.Tensor]]:
    """The definition's constants as float64 tensors that require grad."""
    names, values = [], []
    for field in dataclasses.fields(problem.params):
        value = getattr(problem.params, field.name)
        if isinstance(value, (float, np.ndarray)):
            names.append(field.name)
            values.append(torch.tensor(np.asarray(value, np.float64), requires_grad=True))
    return names, values


def gradcheck_start(env_id: str) -> torch.Tensor:
    """Two start states for gradcheck: the card's, else a drawn start and a shifted copy of it."""
    given = card(env_id).tests.gradcheck_start
    if given is not None:
        return torch.tensor(given, dtype=torch.float64)
    env = gym.make(env_id)
    env.reset(seed=2)
    state = env.unwrapped.state
    return torch.tensor(np.stack([state, state + 0.1 * (np.arange(len(state)) % 2)]), dtype=torch.float64)


@pytest.mark.parametrize("env_id", IDS)
def test_gradcheck_short_rollout(env_id: str) -> None:
    problem = diffenvs.problem_of(env_id, **card(env_id).tests.short)  # a few steps that end the episode
    x0 = gradcheck_start(env_id).requires_grad_(True)
    steps = problem.max_steps
    low, high = (torch.tensor(b, dtype=torch.float64) for b in (problem.control_low, problem.control_high))
    controls = (low + (high - low) * torch.rand(steps, 2, problem.control_dim, dtype=torch.float64) * 0.8 + 0.1 * (high - low))
    controls.requires_grad_(True)
    names, values = tensor_params(problem)
    noise = torch.randn(steps, 2, problem.step_noise, dtype=torch.float64) if problem.step_noise else None

    def total_reward(x0, controls, *values):
        params = dataclasses.replace(problem.params, **dict(zip(names, values)))
        trajectory = diffenvs.rollout(problem, controls, x0, steps=steps, params=params, noise=noise)
        return trajectory.rewards.sum(0), trajectory.states[-1]

    check = diffenvs.rollout(problem, controls, x0.detach(), steps=steps)
    assert bool(check.done[-1].all())  # the crossing (Zermelo) or the horizon is inside the checked steps
    assert bool((check.rewards != 0).any())
    assert torch.autograd.gradcheck(total_reward, (x0, controls, *values), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("env_id", [i for i in IDS if isinstance(diffenvs.problem_of(i), OdeProblem)])
def test_gradcheck_dynamics(env_id: str) -> None:
    problem = diffenvs.problem_of(env_id)
    x = torch.randn(3, problem.state_dim, dtype=torch.float64, requires_grad=True)
    u = torch.rand(3, problem.control_dim, dtype=torch.float64, requires_grad=True)
    names, values = tensor_params(problem)

    def dynamics(x, u, *values):
        return problem.dynamics(0.0, x, u, dataclasses.replace(problem.params, **dict(zip(names, values))))

    assert dynamics(x, u, *values).shape == x.shape
    assert torch.autograd.gradcheck(dynamics, (x, u, *values))


class SmallPolicy(torch.nn.Module):
    """2x16 tanh network with outputs squashed into the control bounds."""

    def __init__(self, problem) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(len(problem.observation_names), 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, problem.control_dim))
        self.low = torch.tensor(problem.control_low, dtype=torch.float64)
        self.high = torch.tensor(problem.control_high, dtype=torch.float64)
        self.double()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.net(observation))


@pytest.mark.parametrize("control", ["sampled", "feedback"])
@pytest.mark.parametrize("env_id", [i for i in IDS if isinstance(diffenvs.problem_of(i), OdeProblem)])
def test_adjoint_gradients_agree_with_direct_backprop(env_id: str, control: str) -> None:
    problem = diffenvs.problem_of(env_id)
    policy = SmallPolicy(problem)
    x0 = gradcheck_start(env_id).requires_grad_(True)
    steps = 4

    def gradients(solver):
        costs = diffenvs.rollout(problem, policy, x0, steps=steps, control=control, solver=solver).costs.sum()
        return torch.autograd.grad(costs, [x0, *policy.parameters()])

    tolerance = dict(rtol=1e-10, atol=1e-12)
    direct = gradients(diffenvs.Adaptive(**tolerance))
    adjoint = gradients(diffenvs.Adjoint(**tolerance))
    for a, b in zip(direct, adjoint):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    rk4 = gradients(diffenvs.RK4())  # the fixed step agrees to its own truncation error
    for a, b in zip(direct, rk4):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_nonfinite_state_truncates_with_info() -> None:
    env = gym.make("DiffCartpole-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="float32 range"):
        env.reset(seed=0, options={"state": [0.0, 0.0, 1.0, 1e160]})
    env.reset(seed=0, options={"state": [0.0, 0.0, 1.0, 1e30]})
    obs, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert truncated and not terminated and info["nonfinite_state"] and reward == 0.0
    assert np.isfinite(obs).all() and np.isfinite(env.unwrapped.state).all()
    with pytest.raises(ResetNeeded):
        env.step(np.zeros(1, np.float32))

    vector = gym.make_vec("DiffCartpole-v0", num_envs=2, vectorization_mode="vector_entry_point")
    vector.reset(seed=0, options={"state": [[0.0, 0.0, 1.0, 1e30], [0.0, 0.0, 1.0, 0.0]]})
    obs, reward, terminated, truncated, info = vector.step(np.zeros((2, 1), np.float32))
    assert truncated.tolist() == [True, False] and info["nonfinite_state"].tolist() == [True, False]
    assert np.isfinite(obs).all() and np.isfinite(reward).all()


@pytest.mark.parametrize(
    ("env_id", "params", "message"),
    [
        ("DiffCartpole-v0", CartpoleParams(pole_length=-1.0), "params.pole_length"),
        ("DiffCartpole-v0", CartpoleParams(gravity=math.nan), "params.gravity"),
        ("DiffZermelo-v0", ZermeloParams(river_width=-2.0), "params.river_width"),
        ("DiffZermelo-v0", ZermeloParams(wind_min=0.5), "boat_speed < wind_min"),
    ],
)
def test_bad_constants_are_refused_naming_the_field(env_id: str, params: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, params=params)


#: each built-in id's deprecated horizon argument, a value, the max_steps it means, and its deprecated attribute
RENAMED = {
    "DiffCartpole-v0": ("horizon", 0.2, 10, None),
    "DiffZermelo-v0": ("time_limit", 3.0, 150, "horizon"),
    "DiffIsochronism-v0": ("steps", 100, 100, "max_steps"),
    "DiffLinearSysID-v0": ("steps", 12, 12, "max_steps"),
    "DiffDecayDesign-v0": ("measurements", 4, 4, "max_steps"),
}


@pytest.mark.parametrize("env_id", IDS)
def test_one_horizon_convention_with_the_old_names_deprecated(env_id: str) -> None:
    problem = diffenvs.problem_of(env_id)
    assert isinstance(problem.max_steps, int) and problem.dt > 0
    assert problem.horizon == pytest.approx(problem.max_steps * problem.dt, rel=1e-15)
    assert dataclasses.replace(problem, max_steps=7).max_steps == 7
    with pytest.raises(ValueError, match="max_steps"):
        diffenvs.problem_of(env_id, max_steps=0)
    with pytest.raises(ValueError, match="max_steps"):
        diffenvs.problem_of(env_id, max_steps=20.0)
    if env_id not in RENAMED:
        return
    old, value, max_steps, attribute = RENAMED[env_id]
    with pytest.warns(FutureWarning, match=f"{old}=.*max_steps"):
        renamed = diffenvs.problem_of(env_id, **{old: value})
    assert renamed.max_steps == max_steps
    assert repr(renamed) == repr(diffenvs.problem_of(env_id, max_steps=max_steps))
    with pytest.warns(FutureWarning, match=old):
        assert dataclasses.replace(problem, **{old: value}).max_steps == max_steps
    with pytest.warns(FutureWarning, match=old):
        env = gym.make(env_id, **{old: value})
    assert env.unwrapped.problem.max_steps == max_steps
    if attribute is not None:
        with pytest.warns(FutureWarning, match=f"{old} is deprecated; read {attribute}"):
            assert getattr(renamed, old) == getattr(renamed, attribute)


def test_default_horizons_are_unchanged() -> None:
    expected = {"DiffCartpole-v0": (100, 0.02, 2.0), "DiffZermelo-v0": (500, 0.02, 10.0),
                "DiffIsochronism-v0": (1000, 2 * math.pi / 1000, 2 * math.pi), "DiffLinearSysID-v0": (100, 1.0, 100.0),
                "DiffDecayDesign-v0": (10, 1.0, 10.0), "DiffDoublePendulum-v0": (200, 0.02, 4.0)}
    for env_id, (max_steps, dt, horizon) in expected.items():
        problem = diffenvs.problem_of(env_id)
        assert (problem.max_steps, problem.dt, problem.horizon) == (max_steps, dt, horizon)


def test_a_problem_registered_from_outside_the_package_has_every_face() -> None:
    """The oscillator above is registered by this file alone: ids, make, make_vec, problem_of and its class's id."""
    assert OSCILLATOR in diffenvs.registered_ids() and OSCILLATOR not in diffenvs.ENV_IDS
    assert diffenvs.registered_ids()[:len(diffenvs.ENV_IDS)] == diffenvs.ENV_IDS
    assert DampedOscillator.env_id == OSCILLATOR and diffenvs.problem_of(OSCILLATOR, max_steps=7).max_steps == 7
    assert isinstance(gym.make(OSCILLATOR).unwrapped, DampedOscillatorEnv)
    assert gym.spec(OSCILLATOR).entry_point == f"{oscillator.__name__}:DampedOscillatorEnv" and gym.spec(OSCILLATOR).to_json()
    vector = gym.make_vec(OSCILLATOR, num_envs=2, vectorization_mode="vector_entry_point")
    assert isinstance(vector, DampedOscillatorVectorEnv) and vector.reset(seed=0)[0].shape == (2, 2)
    assert DampedOscillator.whole_horizon_solve and not diffenvs.envs.zermelo.Zermelo.whole_horizon_solve
    for env_id in diffenvs.ENV_IDS:
        assert diffenvs.problem_of(env_id).env_id == env_id
    with pytest.raises(ValueError, match="env_id must be one of"):
        diffenvs.problem_of("DiffNothing-v0")
